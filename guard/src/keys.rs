//! Public signing keys as JWKs (RFC 7517), and the set of them a verifier
//! trusts, each pinned to its one algorithm.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The algorithms tokens may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// EdDSA over Ed25519 (the default).
    EdDSA,
    /// ECDSA over P-256 with SHA-256.
    ES256,
}

impl KeyAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EdDSA => "EdDSA",
            KeyAlgorithm::ES256 => "ES256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(KeyAlgorithm::EdDSA),
            "ES256" => Some(KeyAlgorithm::ES256),
            _ => None,
        }
    }

    pub fn jose(self) -> Algorithm {
        match self {
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            KeyAlgorithm::ES256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public signing key as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl PublicJwk {
    /// An Ed25519 public key (32 bytes), named by its RFC 7638 thumbprint.
    pub fn ed25519(public: &[u8; 32]) -> Self {
        Self::named(PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(public),
            y: None,
            kid: String::new(),
            alg: Some(KeyAlgorithm::EdDSA.as_str().into()),
            use_: Some("sig".into()),
        })
    }

    /// A P-256 public key by its affine coordinates, named by its RFC 7638
    /// thumbprint.
    pub fn p256(x: &[u8; 32], y: &[u8; 32]) -> Self {
        Self::named(PublicJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: Some(URL_SAFE_NO_PAD.encode(y)),
            kid: String::new(),
            alg: Some(KeyAlgorithm::ES256.as_str().into()),
            use_: Some("sig".into()),
        })
    }

    fn named(mut jwk: PublicJwk) -> Self {
        jwk.kid = jwk.thumbprint();
        jwk
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the required
    /// members in lexicographic order, no whitespace.
    pub fn thumbprint(&self) -> String {
        let canonical = match &self.y {
            Some(y) => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
                self.crv, self.kty, self.x, y
            ),
            None => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#,
                self.crv, self.kty, self.x
            ),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The algorithm this key verifies: the curve decides, and an `alg`
    /// member, when present, must agree.
    pub fn algorithm(&self) -> Result<KeyAlgorithm, KeyError> {
        let by_curve = match (self.kty.as_str(), self.crv.as_str()) {
            ("OKP", "Ed25519") => KeyAlgorithm::EdDSA,
            ("EC", "P-256") => KeyAlgorithm::ES256,
            _ => return Err(KeyError::Unsupported),
        };
        match &self.alg {
            Some(alg) if KeyAlgorithm::parse(alg) != Some(by_curve) => {
                Err(KeyError::AlgorithmMismatch)
            }
            _ => Ok(by_curve),
        }
    }
}

/// The JWK Set document (RFC 7517 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<PublicJwk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 or P-256 signing key")]
    Unsupported,
    #[error("the key's alg does not match its curve")]
    AlgorithmMismatch,
    #[error("the key has no kid")]
    MissingKid,
    #[error("the key is not for signatures")]
    NotForSignatures,
    #[error("the key's coordinates are not valid base64url of the curve's size")]
    BadCoordinates,
    #[error("the document is not a JWK Set")]
    NotAJwkSet,
}

/// One key a verifier trusts, pinned to its algorithm.
pub struct VerifyingKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

fn coordinate(value: &str) -> Result<String, KeyError> {
    match URL_SAFE_NO_PAD.decode(value) {
        Ok(bytes) if bytes.len() == 32 => Ok(value.to_owned()),
        _ => Err(KeyError::BadCoordinates),
    }
}

impl VerifyingKey {
    pub fn from_jwk(jwk: &PublicJwk) -> Result<Self, KeyError> {
        if jwk.kid.is_empty() {
            return Err(KeyError::MissingKid);
        }
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(KeyError::NotForSignatures);
        }
        let algorithm = jwk.algorithm()?;
        // Coordinates are checked here, once: the verifier later relies on
        // their sizes.
        let decoding = match algorithm {
            KeyAlgorithm::EdDSA => DecodingKey::from_ed_components(&coordinate(&jwk.x)?),
            KeyAlgorithm::ES256 => {
                let y = jwk.y.as_deref().ok_or(KeyError::BadCoordinates)?;
                DecodingKey::from_ec_components(&coordinate(&jwk.x)?, &coordinate(y)?)
            }
        }
        .map_err(|_| KeyError::BadCoordinates)?;
        Ok(VerifyingKey {
            kid: jwk.kid.clone(),
            algorithm,
            decoding,
        })
    }
}

/// The keys a verifier trusts, by `kid`.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: HashMap<String, Arc<VerifyingKey>>,
}

impl KeySet {
    /// The set of every usable key in `jwks`; keys it cannot use (another
    /// type, a bad coordinate) are left out and logged, as RFC 7517 §5
    /// asks of a reader.
    pub fn from_jwks(jwks: &[PublicJwk]) -> Self {
        let mut keys = HashMap::new();
        for jwk in jwks {
            match VerifyingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(key.kid.clone(), Arc::new(key));
                }
                Err(err) => log::warn!("JWKS key {:?} left out: {err}", jwk.kid),
            }
        }
        KeySet { keys }
    }

    /// Parses a JWKS document, leaving out the entries that are not usable
    /// public signing keys.
    pub fn parse(document: &[u8]) -> Result<Self, KeyError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(document).map_err(|_| KeyError::NotAJwkSet)?;
        let jwks: Vec<PublicJwk> = document
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value(value).ok())
            .collect();
        Ok(Self::from_jwks(&jwks))
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.keys.get(kid)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        // RFC 8037 A.3: the thumbprint of the A.2 Ed25519 public key.
        let jwk = PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            y: None,
            kid: String::new(),
            alg: None,
            use_: None,
        };
        assert_eq!(
            jwk.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_key_is_pinned_to_its_curve_and_bad_keys_are_left_out() {
        let good = PublicJwk::ed25519(&[7u8; 32]);
        assert_eq!(good.algorithm(), Ok(KeyAlgorithm::EdDSA));
        let mut lying = good.clone();
        lying.alg = Some("HS256".into());
        lying.kid = "lying".into();
        assert_eq!(lying.algorithm(), Err(KeyError::AlgorithmMismatch));
        let mut short = good.clone();
        short.x = URL_SAFE_NO_PAD.encode([1u8; 31]);
        short.kid = "short".into();
        let mut nameless = good.clone();
        nameless.kid = String::new();
        let mut enc = good.clone();
        enc.use_ = Some("enc".into());
        enc.kid = "enc".into();
        let set = KeySet::from_jwks(&[good.clone(), lying, short, nameless, enc]);
        assert_eq!(set.kids().collect::<Vec<_>>(), vec![good.kid.as_str()]);
        assert_eq!(set.get(&good.kid).unwrap().algorithm, KeyAlgorithm::EdDSA);
    }

    #[test]
    fn parse_skips_foreign_entries_and_refuses_non_sets() {
        let good = PublicJwk::p256(&[3u8; 32], &[4u8; 32]);
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            "not an object",
            good,
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.get(&good.kid).unwrap().algorithm, KeyAlgorithm::ES256);
        assert_eq!(KeySet::parse(b"[]").unwrap_err(), KeyError::NotAJwkSet);
        assert_eq!(KeySet::parse(b"{").unwrap_err(), KeyError::NotAJwkSet);
    }
}
