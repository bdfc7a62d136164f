//! Access tokens: JWTs carrying the contract's claims, signed with the key
//! [`SigningKeys`] says is active (EdDSA by default) and named by its `kid`.
//!
//! Verification is the guard crate's: the key is picked by `kid`, its one
//! algorithm is pinned (never `none`, never HMAC, never the algorithm named
//! in the token header), then `iss`, `aud` and `exp` are checked against the
//! clock the service was given, and verified tokens are remembered (keyed
//! by their exact text) so that a repeated token costs no signature check.
//!
//! Every token names its session (`sid`); whether that session has ended is
//! the guards' question, asked on every request (see `services::sessions`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{AuthLevel, AuthMethod};
use crate::services::signing::{SigningKeyError, SigningKeys};

pub use passkey_auth_guard::{Claims, Principal, TokenError};

/// What a token asserts about how its bearer authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub level: AuthLevel,
    pub amr: Vec<String>,
    /// Seconds since the epoch.
    pub auth_time: i64,
}

impl Grant {
    /// A grant for `method`, performed at `at`.
    pub fn new(method: AuthMethod, at: DateTime<Utc>) -> Self {
        Grant {
            level: method.level(),
            amr: method.amr(),
            auth_time: at.timestamp(),
        }
    }
}

/// Whom a token is for: the user and their session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub user_id: Uuid,
    pub username: String,
    pub session_id: Uuid,
    /// No token outlives its session: its expiry is capped at this time
    /// (seconds), when known.
    pub not_after: Option<i64>,
}

impl Subject {
    /// The subject of a caller's token, for a token derived from it (a
    /// step-up keeps the session).
    pub fn of(caller: &Principal) -> Self {
        Subject {
            user_id: caller.user_id,
            username: caller.username.clone(),
            session_id: caller.session_id,
            not_after: None,
        }
    }
}

/// A freshly signed token and what the token response says about it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub auth_level: AuthLevel,
    /// The session's new refresh token and its lifetime in seconds (login
    /// and refresh; a step-up keeps the session's).
    pub refresh: Option<(String, u64)>,
}

pub struct TokenService {
    keys: Arc<SigningKeys>,
    issuer: String,
    audience: String,
    password_ttl: Duration,
    full_ttl: Duration,
}

impl TokenService {
    pub fn new(
        keys: Arc<SigningKeys>,
        issuer: String,
        audience: String,
        password_ttl: Duration,
        full_ttl: Duration,
    ) -> Self {
        TokenService {
            keys,
            issuer,
            audience,
            password_ttl,
            full_ttl,
        }
    }

    /// The signing keys (for the JWKS).
    pub fn keys(&self) -> &Arc<SigningKeys> {
        &self.keys
    }

    pub fn ttl(&self, level: AuthLevel) -> Duration {
        match level {
            AuthLevel::Password => self.password_ttl,
            AuthLevel::Full => self.full_ttl,
        }
    }

    /// The longest lifetime of any token.
    pub fn longest_ttl(&self) -> Duration {
        self.password_ttl.max(self.full_ttl)
    }

    pub fn issue(
        &self,
        subject: &Subject,
        grant: Grant,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, SigningKeyError> {
        let level = grant.level;
        let iat = now.timestamp();
        let mut exp = iat + self.ttl(level).as_secs() as i64;
        if let Some(not_after) = subject.not_after {
            exp = exp.min(not_after).max(iat);
        }
        let claims = Claims {
            sub: subject.user_id.to_string(),
            username: subject.username.clone(),
            auth_level: level,
            acr: level,
            amr: grant.amr,
            auth_time: grant.auth_time,
            iat,
            exp,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::new_v4().to_string(),
            sid: subject.session_id.to_string(),
        };
        let access_token = self.keys.sign(&claims, now)?;
        Ok(IssuedToken {
            access_token,
            expires_in: (exp - iat) as u64,
            auth_level: level,
            refresh: None,
        })
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Principal, TokenError> {
        self.keys.verify(token, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use crate::clock::SystemClock;
    use crate::services::signing::{KeyMaterial, KeyPolicy};
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use passkey_auth_guard::{KeyAlgorithm, TokenVerifier};

    fn issuer(iss: &str, aud: &str, key: KeyMaterial) -> TokenService {
        let policy = KeyPolicy {
            algorithm: key.algorithm(),
            activation_delay: Duration::from_secs(300),
            token_ttl: Duration::from_secs(3600),
            encryption: None,
        };
        let keys = SigningKeys::fixed(
            key,
            policy,
            Arc::new(SystemClock),
            TokenVerifier::new(iss, aud),
        );
        TokenService::new(
            Arc::new(keys),
            iss.into(),
            aud.into(),
            Duration::from_secs(3600),
            Duration::from_secs(900),
        )
    }

    fn service() -> TokenService {
        issuer("iss-a", "aud-a", KeyMaterial::generate(KeyAlgorithm::EdDSA))
    }

    fn subject(username: &str) -> Subject {
        Subject {
            user_id: Uuid::new_v4(),
            username: username.into(),
            session_id: Uuid::new_v4(),
            not_after: None,
        }
    }

    fn full_grant(now: DateTime<Utc>) -> Grant {
        Grant::new(AuthMethod::PasskeyStepUp, now)
    }

    fn claims_of(token: &str) -> serde_json::Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn issues_the_contract_claims_per_level() {
        let s = service();
        let now = Utc::now();
        let alice = subject("alice");
        let id = alice.user_id;
        let login_at = now - chrono::Duration::seconds(42);
        let pwd = s
            .issue(&alice, Grant::new(AuthMethod::Password, login_at), now)
            .unwrap();
        let full = s
            .issue(&alice, Grant::new(AuthMethod::PasskeyStepUp, now), now)
            .unwrap();
        assert_eq!(pwd.expires_in, 3600);
        assert_eq!(full.expires_in, 900);
        let c = claims_of(&pwd.access_token);
        assert_eq!(c["sub"], id.to_string());
        assert_eq!(c["username"], "alice");
        assert_eq!(c["authLevel"], "password");
        assert_eq!(c["acr"], "password");
        assert_eq!(c["amr"], serde_json::json!(["pwd"]));
        assert_eq!(c["auth_time"], login_at.timestamp());
        assert_eq!(c["iss"], "iss-a");
        assert_eq!(c["aud"], "aud-a");
        assert_eq!(
            c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
            3600
        );
        let f = claims_of(&full.access_token);
        assert_eq!(f["authLevel"], "full");
        assert_eq!(f["acr"], "full");
        assert_eq!(f["amr"], serde_json::json!(["pwd", "hwk"]));
        assert_eq!(f["auth_time"], now.timestamp());
        assert_ne!(c["jti"], f["jti"]);
    }

    #[test]
    fn verify_round_trips_and_enforces_expiry() {
        let s = service();
        let now = Utc::now();
        let t = s.issue(&subject("bob"), full_grant(now), now).unwrap();
        let p = s.verify(&t.access_token, now).unwrap();
        assert_eq!(p.auth_level, AuthLevel::Full);
        assert_eq!(p.username, "bob");
        let later = now + chrono::Duration::seconds(900);
        assert_eq!(s.verify(&t.access_token, later), Err(TokenError::Expired));
    }

    #[test]
    fn a_remembered_token_still_expires_and_near_misses_are_not_remembered() {
        let s = service();
        let now = Utc::now();
        let t = s.issue(&subject("carol"), full_grant(now), now).unwrap();
        assert!(s.verify(&t.access_token, now).is_ok());
        assert!(
            s.verify(&t.access_token, now).is_ok(),
            "served from the cache"
        );
        let later = now + chrono::Duration::seconds(900);
        assert_eq!(s.verify(&t.access_token, later), Err(TokenError::Expired));
        // One character changed in the signature: not the remembered token.
        let mut forged = t.access_token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(s.verify(&forged, now), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_never_outlives_its_session() {
        let s = service();
        let now = Utc::now();
        let mut subject = subject("dave");
        subject.not_after = Some(now.timestamp() + 60);
        let t = s.issue(&subject, full_grant(now), now).unwrap();
        assert_eq!(t.expires_in, 60);
        let c = claims_of(&t.access_token);
        assert_eq!(c["exp"].as_i64().unwrap(), now.timestamp() + 60);
        assert_eq!(c["sid"], subject.session_id.to_string());
        let p = s.verify(&t.access_token, now).unwrap();
        assert_eq!(p.session_id, subject.session_id);
    }

    #[test]
    fn rejects_foreign_issuer_audience_and_key() {
        let now = Utc::now();
        let key = KeyMaterial::generate(KeyAlgorithm::EdDSA);
        let der = key.to_pkcs8().unwrap();
        let verifier = issuer("iss-a", "aud-a", key);
        let same_key = || KeyMaterial::from_pkcs8(KeyAlgorithm::EdDSA, &der).unwrap();
        let others = [
            issuer("iss-b", "aud-a", same_key()),
            issuer("iss-a", "aud-b", same_key()),
            issuer("iss-a", "aud-a", KeyMaterial::generate(KeyAlgorithm::EdDSA)),
            issuer("iss-a", "aud-a", KeyMaterial::generate(KeyAlgorithm::ES256)),
        ];
        for other in others {
            let t = other.issue(&subject("eve"), full_grant(now), now).unwrap();
            assert!(verifier.verify(&t.access_token, now).is_err());
        }
        let own = issuer("iss-a", "aud-a", same_key());
        let t = own.issue(&subject("eve"), full_grant(now), now).unwrap();
        assert!(verifier.verify(&t.access_token, now).is_ok());
    }

    #[test]
    fn rejects_alg_none_and_hmac_keyed_with_the_public_key() {
        let s = service();
        let now = Utc::now();
        let t = s
            .issue(&subject("eve"), Grant::new(AuthMethod::Password, now), now)
            .unwrap();
        let parts: Vec<&str> = t.access_token.split('.').collect();
        let kid = passkey_auth_guard::key_id(&t.access_token).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(s.verify(&unsigned, now).is_err());

        let claims: Claims = serde_json::from_value(claims_of(&t.access_token)).unwrap();
        let jwks: serde_json::Value = serde_json::from_slice(&s.keys().jwks().body).unwrap();
        let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
        let raw = URL_SAFE_NO_PAD.decode(&x).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid);
        for secret in [raw, x.into_bytes()] {
            let forged = encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(s.verify(&forged, now), Err(TokenError::Invalid));
        }
        assert!(s.verify("not.a.jwt", now).is_err());
        assert!(s.verify("", now).is_err());
    }
}
