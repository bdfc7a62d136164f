//! Verifies an access token against a [`KeySet`]: the key is chosen by the
//! token's `kid`, and only that key's algorithm is accepted (never `none`,
//! never HMAC, never an algorithm taken from the token header). Then
//! `iss`, `aud` and `exp` are checked against the caller's clock.
//!
//! Clients send the same token with every request, so a verified token is
//! remembered (keyed by its exact text, signature included) for a while:
//! the next request skips the signature check and the claims parsing, and
//! only its expiry, and that its key is still in the set, are checked
//! again. Nothing unverified is remembered.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{decode, decode_header, Validation};

use crate::claims::{Claims, Principal};
use crate::keys::{KeyAlgorithm, KeySet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed or its signature, algorithm, issuer or audience is wrong")]
    Invalid,
    /// The token names a key the set does not hold (a JWKS reader may
    /// fetch the set again).
    #[error("token is signed with a key that is not known")]
    UnknownKey,
    #[error("token has expired")]
    Expired,
}

/// Verified tokens remembered at most, and for at most this long.
const VERIFIED_CACHE_CAPACITY: u64 = 10_000;
const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(300);

/// A token that verified, and the key it verified with.
struct Verified {
    kid: String,
    principal: Principal,
}

pub struct TokenVerifier {
    eddsa: Validation,
    es256: Validation,
    verified: moka::sync::Cache<String, Arc<Verified>>,
}

impl TokenVerifier {
    /// A verifier that accepts only tokens for `issuer` and `audience`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        let validation = |algorithm: KeyAlgorithm| {
            let mut v = Validation::new(algorithm.jose());
            v.set_issuer(&[issuer]);
            v.set_audience(&[audience]);
            v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
            // Expiry is checked against the caller's clock, to the second.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.leeway = 0;
            v
        };
        TokenVerifier {
            eddsa: validation(KeyAlgorithm::EdDSA),
            es256: validation(KeyAlgorithm::ES256),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_CAPACITY)
                .time_to_live(VERIFIED_CACHE_TTL)
                .build(),
        }
    }

    /// The caller a token describes, if it is valid at `now` (seconds).
    pub fn verify(&self, keys: &KeySet, token: &str, now: i64) -> Result<Principal, TokenError> {
        // A remembered token counts only while its key is in `keys`: a key
        // that left the set takes its tokens with it at once.
        if let Some(known) = self.verified.get(token) {
            if keys.contains(&known.kid) {
                if known.principal.claims.exp <= now {
                    return Err(TokenError::Expired);
                }
                return Ok(known.principal.clone());
            }
        }
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        let kid = header.kid.as_deref().ok_or(TokenError::Invalid)?;
        let key = keys.get(kid).ok_or(TokenError::UnknownKey)?;
        // The key decides the algorithm; a header naming another one (HMAC
        // keyed with the public key, say) is refused before any check.
        if header.alg != key.algorithm.jose() {
            return Err(TokenError::Invalid);
        }
        let validation = match key.algorithm {
            KeyAlgorithm::EdDSA => &self.eddsa,
            KeyAlgorithm::ES256 => &self.es256,
        };
        let claims = decode::<Claims>(token, &key.decoding, validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        let principal = Principal::from_claims(claims).ok_or(TokenError::Invalid)?;
        self.verified.insert(
            token.to_owned(),
            Arc::new(Verified {
                kid: kid.to_owned(),
                principal: principal.clone(),
            }),
        );
        Ok(principal)
    }
}

/// The `kid` a token's header names, read without verifying anything.
pub fn key_id(token: &str) -> Option<String> {
    decode_header(token).ok()?.kid
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};
    use uuid::Uuid;

    use super::*;
    use crate::claims::AuthLevel;
    use crate::keys::PublicJwk;

    const ISSUER: &str = "passkey-auth";
    const AUDIENCE: &str = "passkey-auth";
    const NOW: i64 = 1_800_000_000;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A compact JWS built by hand: `sign` gets the signing input.
    fn compact(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = sign(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }

    /// The claims the auth server puts in a token, issued at `now`.
    fn claims(level: &str, now: i64) -> Value {
        json!({
            "sub": Uuid::from_u128(rand::random()).to_string(),
            "username": "alice",
            "authLevel": level,
            "acr": level,
            "amr": if level == "full" { json!(["pwd", "hwk"]) } else { json!(["pwd"]) },
            "auth_time": now,
            "iat": now,
            "exp": now + 900,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "jti": Uuid::from_u128(rand::random()).to_string(),
            "sid": Uuid::from_u128(rand::random()).to_string(),
        })
    }

    struct Ed {
        key: ed25519_dalek::SigningKey,
        jwk: PublicJwk,
    }

    impl Ed {
        fn new() -> Self {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let jwk = PublicJwk::ed25519(&key.verifying_key().to_bytes());
            Ed { key, jwk }
        }

        fn sign(&self, input: &[u8]) -> Vec<u8> {
            use ed25519_dalek::Signer;
            self.key.sign(input).to_bytes().to_vec()
        }

        fn signed(&self, header: &Value, claims: &Value) -> String {
            compact(header, claims, |input| self.sign(input))
        }

        fn token(&self, claims: &Value) -> String {
            self.signed(
                &json!({"alg": "EdDSA", "typ": "JWT", "kid": self.jwk.kid}),
                claims,
            )
        }
    }

    struct Es {
        key: p256::ecdsa::SigningKey,
        jwk: PublicJwk,
    }

    impl Es {
        fn new() -> Self {
            let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
            // SEC1 uncompressed: 0x04 || x || y.
            let point = key.verifying_key().to_encoded_point(false);
            let x: [u8; 32] = point.as_bytes()[1..33].try_into().unwrap();
            let y: [u8; 32] = point.as_bytes()[33..65].try_into().unwrap();
            Es {
                key,
                jwk: PublicJwk::p256(&x, &y),
            }
        }

        /// The JWS form: the 64-byte `r || s`.
        fn sign(&self, input: &[u8]) -> Vec<u8> {
            use p256::ecdsa::signature::Signer;
            let signature: p256::ecdsa::Signature = self.key.sign(input);
            signature.to_bytes().to_vec()
        }

        fn signed(&self, header: &Value, claims: &Value) -> String {
            compact(header, claims, |input| self.sign(input))
        }

        fn token(&self, claims: &Value) -> String {
            self.signed(
                &json!({"alg": "ES256", "typ": "JWT", "kid": self.jwk.kid}),
                claims,
            )
        }
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(ISSUER, AUDIENCE)
    }

    fn set(jwks: &[&PublicJwk]) -> KeySet {
        KeySet::from_jwks(&jwks.iter().map(|jwk| (*jwk).clone()).collect::<Vec<_>>())
    }

    #[test]
    fn a_valid_eddsa_token_verifies() {
        let ed = Ed::new();
        let claims = claims("full", NOW);
        let principal = verifier()
            .verify(&set(&[&ed.jwk]), &ed.token(&claims), NOW)
            .unwrap();
        assert_eq!(principal.user_id.to_string(), claims["sub"]);
        assert_eq!(principal.session_id.to_string(), claims["sid"]);
        assert_eq!(principal.username, "alice");
        assert_eq!(principal.auth_level, AuthLevel::Full);
        assert_eq!(principal.claims.acr, AuthLevel::Full);
        assert_eq!(principal.claims.amr, vec!["pwd", "hwk"]);
        assert_eq!(principal.claims.jti, claims["jti"]);
        assert_eq!(principal.auth_time(), NOW);
    }

    #[test]
    fn a_valid_es256_token_verifies() {
        let es = Es::new();
        let ed = Ed::new();
        let keys = set(&[&ed.jwk, &es.jwk]);
        let principal = verifier()
            .verify(&keys, &es.token(&claims("password", NOW)), NOW)
            .unwrap();
        assert_eq!(principal.auth_level, AuthLevel::Password);
        assert_eq!(principal.claims.amr, vec!["pwd"]);
    }

    #[test]
    fn an_es256_signature_in_der_form_is_refused() {
        use p256::ecdsa::signature::Signer;
        let es = Es::new();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": es.jwk.kid});
        let token = compact(&header, &claims("full", NOW), |input| {
            let signature: p256::ecdsa::Signature = es.key.sign(input);
            signature.to_der().as_bytes().to_vec()
        });
        assert_eq!(
            verifier().verify(&set(&[&es.jwk]), &token, NOW),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expiry_is_checked_to_the_second() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        let mut claims = claims("full", NOW);
        claims["exp"] = json!(NOW + 10);
        let token = ed.token(&claims);
        // A fresh verifier each time: nothing is remembered between checks.
        assert!(verifier().verify(&keys, &token, NOW + 9).is_ok());
        assert_eq!(
            verifier().verify(&keys, &token, NOW + 10),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verifier().verify(&keys, &token, NOW + 11),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        let mut claims = claims("full", NOW);
        claims["exp"] = json!(NOW + 10);
        let token = ed.token(&claims);
        let verifier = verifier();
        assert!(verifier.verify(&keys, &token, NOW).is_ok());
        assert!(verifier.verify(&keys, &token, NOW + 9).is_ok());
        assert_eq!(
            verifier.verify(&keys, &token, NOW + 10),
            Err(TokenError::Expired)
        );
        // And an expired token is never remembered as good.
        assert_eq!(
            verifier.verify(&keys, &token, NOW + 10),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn wrong_issuer_or_audience_is_invalid() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        for (claim, value) in [
            ("iss", json!("someone-else")),
            ("aud", json!("another-service")),
            ("aud", json!(["another-service"])),
        ] {
            let mut claims = claims("full", NOW);
            claims[claim] = value;
            assert_eq!(
                verifier().verify(&keys, &ed.token(&claims), NOW),
                Err(TokenError::Invalid),
                "{claim} = {}",
                claims[claim]
            );
        }
        // The same token is fine for a verifier configured for it.
        let mut claims = claims("full", NOW);
        claims["iss"] = json!("https://auth.example.com");
        claims["aud"] = json!("payments");
        assert!(TokenVerifier::new("https://auth.example.com", "payments")
            .verify(&keys, &ed.token(&claims), NOW)
            .is_ok());
    }

    #[test]
    fn a_token_missing_a_claim_is_invalid() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        for claim in ["exp", "iss", "aud", "sub", "sid", "authLevel", "auth_time"] {
            let mut claims = claims("full", NOW);
            claims.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                verifier().verify(&keys, &ed.token(&claims), NOW),
                Err(TokenError::Invalid),
                "without {claim}"
            );
        }
    }

    #[test]
    fn a_token_without_kid_is_invalid() {
        let ed = Ed::new();
        let token = ed.signed(&json!({"alg": "EdDSA", "typ": "JWT"}), &claims("full", NOW));
        assert_eq!(
            verifier().verify(&set(&[&ed.jwk]), &token, NOW),
            Err(TokenError::Invalid)
        );
        assert_eq!(key_id(&token), None);
    }

    #[test]
    fn a_token_with_an_unknown_kid_is_unknown_key() {
        let ed = Ed::new();
        let other = Ed::new();
        let token = other.token(&claims("full", NOW));
        assert_eq!(key_id(&token).as_deref(), Some(other.jwk.kid.as_str()));
        assert_eq!(
            verifier().verify(&set(&[&ed.jwk]), &token, NOW),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            verifier().verify(&KeySet::default(), &token, NOW),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_header_alg_other_than_the_keys_is_invalid() {
        let ed = Ed::new();
        let es = Es::new();
        let keys = set(&[&ed.jwk, &es.jwk]);
        let claims = claims("full", NOW);
        // ES256 named on the EdDSA key, signed with P-256 or with Ed25519.
        let es256_on_ed = json!({"alg": "ES256", "typ": "JWT", "kid": ed.jwk.kid});
        // EdDSA named on the ES256 key, signed with Ed25519 or with P-256.
        let eddsa_on_es = json!({"alg": "EdDSA", "typ": "JWT", "kid": es.jwk.kid});
        for token in [
            es.signed(&es256_on_ed, &claims),
            ed.signed(&es256_on_ed, &claims),
            ed.signed(&eddsa_on_es, &claims),
            es.signed(&eddsa_on_es, &claims),
        ] {
            assert_eq!(
                verifier().verify(&keys, &token, NOW),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn alg_none_is_invalid() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        let claims = claims("full", NOW);
        for alg in ["none", "None", "NONE"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": ed.jwk.kid});
            let unsigned = compact(&header, &claims, |_| Vec::new());
            assert!(unsigned.ends_with('.'));
            assert_eq!(
                verifier().verify(&keys, &unsigned, NOW),
                Err(TokenError::Invalid),
                "{alg}"
            );
            // Without the trailing dot either.
            assert_eq!(
                verifier().verify(&keys, unsigned.trim_end_matches('.'), NOW),
                Err(TokenError::Invalid)
            );
        }
        // An EdDSA header with the signature left off.
        let token = ed.token(&claims);
        let stripped = &token[..token.rfind('.').unwrap() + 1];
        assert_eq!(
            verifier().verify(&keys, stripped, NOW),
            Err(TokenError::Invalid)
        );
    }

    /// An Ed25519 public key as a PEM SubjectPublicKeyInfo (RFC 8410).
    fn spki_pem(public: &[u8; 32]) -> String {
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(public);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    #[test]
    fn hmac_keyed_with_the_public_key_is_invalid() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        let claims = claims("full", NOW);
        let public = ed.key.verifying_key().to_bytes();
        let pem = spki_pem(&public);
        let secrets: Vec<(&str, Vec<u8>)> = vec![
            ("raw 32 bytes", public.to_vec()),
            ("the x string", ed.jwk.x.clone().into_bytes()),
            ("the JWK JSON", serde_json::to_vec(&ed.jwk).unwrap()),
            (
                "the JWKS JSON",
                serde_json::to_vec(&json!({"keys": [ed.jwk]})).unwrap(),
            ),
            ("the SPKI PEM", pem.clone().into_bytes()),
            (
                "the SPKI PEM, no newline",
                pem.trim_end().as_bytes().to_vec(),
            ),
        ];
        for (what, secret) in &secrets {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let mut header = Header::new(alg);
                header.kid = Some(ed.jwk.kid.clone());
                let token = encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
                assert_eq!(key_id(&token).as_deref(), Some(ed.jwk.kid.as_str()));
                assert_eq!(
                    verifier().verify(&keys, &token, NOW),
                    Err(TokenError::Invalid),
                    "{alg:?} keyed with {what}"
                );
            }
        }
    }

    #[test]
    fn a_tampered_token_is_invalid() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        let password = claims("password", NOW);
        let token = ed.token(&password);
        let parts: Vec<&str> = token.split('.').collect();
        // The payload raised to full, the signature kept.
        let mut raised = password.clone();
        raised["authLevel"] = json!("full");
        raised["acr"] = json!("full");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(raised.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            verifier().verify(&keys, &forged, NOW),
            Err(TokenError::Invalid)
        );
        // A flipped bit in the signature.
        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&signature));
        assert_eq!(
            verifier().verify(&keys, &flipped, NOW),
            Err(TokenError::Invalid)
        );
        // Another key's signature over the same text, under this key's kid.
        let other = Ed::new();
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": ed.jwk.kid});
        assert_eq!(
            verifier().verify(&keys, &other.signed(&header, &password), NOW),
            Err(TokenError::Invalid)
        );
        // The genuine token is fine.
        assert!(verifier().verify(&keys, &token, NOW).is_ok());
    }

    #[test]
    fn garbage_is_invalid() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        let token = ed.token(&claims("full", NOW));
        for garbage in [
            "",
            ".",
            "..",
            "not a token",
            "a.b.c",
            &format!("{token}.extra"),
            &format!("x{token}"),
        ] {
            assert_eq!(
                verifier().verify(&keys, garbage, NOW),
                Err(TokenError::Invalid),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn sub_or_sid_not_a_uuid_is_invalid() {
        let ed = Ed::new();
        let keys = set(&[&ed.jwk]);
        for (claim, value) in [
            ("sub", json!("alice")),
            ("sub", json!("")),
            ("sid", json!("42")),
            ("sid", json!(42)),
        ] {
            let mut claims = claims("full", NOW);
            claims[claim] = value;
            assert_eq!(
                verifier().verify(&keys, &ed.token(&claims), NOW),
                Err(TokenError::Invalid),
                "{claim} = {}",
                claims[claim]
            );
        }
    }

    #[test]
    fn a_remembered_token_goes_with_its_key() {
        let ed = Ed::new();
        let other = Ed::new();
        let both = set(&[&ed.jwk, &other.jwk]);
        let without = set(&[&other.jwk]);
        let token = ed.token(&claims("full", NOW));
        let verifier = verifier();
        assert!(verifier.verify(&both, &token, NOW).is_ok());
        assert!(verifier.verify(&both, &token, NOW).is_ok());
        // The key left the set: remembered or not, the token is refused.
        assert_eq!(
            verifier.verify(&without, &token, NOW),
            Err(TokenError::UnknownKey)
        );
        // Back in the set, it verifies again (checked afresh).
        assert!(verifier.verify(&both, &token, NOW).is_ok());
    }
}
