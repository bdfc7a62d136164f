//! Signing key material: generating a key, reading and writing its PKCS#8
//! form, its public JWK, and signing a token with it.
//!
//! Tokens are signed here rather than by `jsonwebtoken::encode`, which parses
//! the private key again on every call: the key is parsed once, the header
//! is encoded once, and a signature is all that is left per token.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::Signer as _;
use passkey_auth_guard::{KeyAlgorithm, PublicJwk};
use rand::rngs::OsRng;
use serde::Serialize;
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("the private key is not a valid {0} PKCS#8 key")]
    BadPrivateKey(KeyAlgorithm),
    #[error("the private key cannot be encoded: {0}")]
    Encode(String),
}

enum Key {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
}

/// A private signing key with its `kid` (the RFC 7638 thumbprint of its
/// public JWK). Its `Debug` shows no key material.
pub struct KeyMaterial {
    key: Key,
    public: PublicJwk,
    /// `{"alg":…,"typ":"JWT","kid":…}`, base64url, followed by `.`.
    header: String,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.public.kid)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// A new random key.
    pub fn generate(algorithm: KeyAlgorithm) -> Self {
        let key = match algorithm {
            KeyAlgorithm::EdDSA => Key::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            KeyAlgorithm::ES256 => Key::Es256(p256::ecdsa::SigningKey::random(&mut OsRng)),
        };
        Self::from_key(key)
    }

    /// Reads a PKCS#8 (DER) private key.
    pub fn from_pkcs8(algorithm: KeyAlgorithm, der: &[u8]) -> Result<Self, MaterialError> {
        let bad = || MaterialError::BadPrivateKey(algorithm);
        let key = match algorithm {
            KeyAlgorithm::EdDSA => {
                Key::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| bad())?)
            }
            KeyAlgorithm::ES256 => {
                Key::Es256(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| bad())?)
            }
        };
        Ok(Self::from_key(key))
    }

    fn from_key(key: Key) -> Self {
        let public = match &key {
            Key::Ed25519(k) => PublicJwk::ed25519(k.verifying_key().as_bytes()),
            Key::Es256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                let mut x = [0u8; 32];
                let mut y = [0u8; 32];
                // An uncompressed point of a valid key always has both.
                x.copy_from_slice(point.x().map(|c| &c[..]).unwrap_or(&[0; 32]));
                y.copy_from_slice(point.y().map(|c| &c[..]).unwrap_or(&[0; 32]));
                PublicJwk::p256(&x, &y)
            }
        };
        let algorithm = match &key {
            Key::Ed25519(_) => KeyAlgorithm::EdDSA,
            Key::Es256(_) => KeyAlgorithm::ES256,
        };
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header {
            alg: algorithm.as_str(),
            typ: "JWT",
            kid: &public.kid,
        })
        .unwrap_or_default();
        let header = format!("{}.", URL_SAFE_NO_PAD.encode(header));
        KeyMaterial {
            key,
            public,
            header,
        }
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.key {
            Key::Ed25519(_) => KeyAlgorithm::EdDSA,
            Key::Es256(_) => KeyAlgorithm::ES256,
        }
    }

    /// The public half, as published.
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// The PKCS#8 (DER) form, wiped from memory when dropped.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
        let document = match &self.key {
            Key::Ed25519(k) => k.to_pkcs8_der(),
            Key::Es256(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| MaterialError::Encode(e.to_string()))?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// A compact JWS of `claims`, signed with this key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, serde_json::Error> {
        let payload = serde_json::to_vec(claims)?;
        let mut token = String::with_capacity(self.header.len() + payload.len() * 2 + 100);
        token.push_str(&self.header);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature: Vec<u8> = match &self.key {
            Key::Ed25519(k) => k.sign(token.as_bytes()).to_bytes().to_vec(),
            Key::Es256(k) => {
                let signature: p256::ecdsa::Signature = k.sign(token.as_bytes());
                signature.to_bytes().to_vec()
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use passkey_auth_guard::{KeySet, TokenVerifier};

    #[derive(Serialize)]
    struct Probe {
        sub: String,
        sid: String,
        username: &'static str,
        #[serde(rename = "authLevel")]
        auth_level: &'static str,
        acr: &'static str,
        amr: Vec<&'static str>,
        auth_time: i64,
        iat: i64,
        exp: i64,
        iss: &'static str,
        aud: &'static str,
        jti: &'static str,
    }

    fn probe() -> Probe {
        Probe {
            sub: uuid::Uuid::new_v4().to_string(),
            sid: uuid::Uuid::new_v4().to_string(),
            username: "alice",
            auth_level: "full",
            acr: "full",
            amr: vec!["pwd", "hwk"],
            auth_time: 1_000,
            iat: 1_000,
            exp: 2_000,
            iss: "iss",
            aud: "aud",
            jti: "j",
        }
    }

    #[test]
    fn tokens_signed_here_verify_with_the_published_key_for_both_algorithms() {
        for algorithm in [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256] {
            let key = KeyMaterial::generate(algorithm);
            let token = key.sign(&probe()).unwrap();
            let keys = KeySet::from_jwks(&[key.public_jwk().clone()]);
            let verifier = TokenVerifier::new("iss", "aud");
            let principal = verifier.verify(&keys, &token, 1_500).unwrap();
            assert_eq!(principal.username, "alice");
            assert_eq!(passkey_auth_guard::key_id(&token).unwrap(), key.kid());
            // Another key of the same kind does not verify it.
            let other = KeyMaterial::generate(algorithm);
            let mut impostor = other.public_jwk().clone();
            impostor.kid = key.kid().to_owned();
            let wrong = KeySet::from_jwks(&[impostor]);
            assert!(TokenVerifier::new("iss", "aud")
                .verify(&wrong, &token, 1_500)
                .is_err());
        }
    }

    #[test]
    fn pkcs8_round_trips_and_names_the_same_key() {
        for algorithm in [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256] {
            let key = KeyMaterial::generate(algorithm);
            let der = key.to_pkcs8().unwrap();
            let again = KeyMaterial::from_pkcs8(algorithm, &der).unwrap();
            assert_eq!(again.public_jwk(), key.public_jwk());
            assert_eq!(again.public_jwk().thumbprint(), key.kid());
            let other = match algorithm {
                KeyAlgorithm::EdDSA => KeyAlgorithm::ES256,
                KeyAlgorithm::ES256 => KeyAlgorithm::EdDSA,
            };
            assert!(KeyMaterial::from_pkcs8(other, &der).is_err());
            assert!(!format!("{key:?}").contains(&URL_SAFE_NO_PAD.encode(&der[..])));
        }
    }
}
