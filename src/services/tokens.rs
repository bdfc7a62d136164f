//! Access tokens: HS256 JWTs carrying the contract's claims.
//!
//! Validation accepts only HS256 (never `none`, never the algorithm named in
//! the token header), and checks signature, `iss`, `aud` and `exp` against
//! the clock the service was given.
//!
//! Clients send the same token with every request, so a verified token is
//! remembered (keyed by its exact text, signature included) for a while:
//! the next request skips the signature check and the claims parsing, and
//! only its expiry is checked again. Nothing unverified is ever remembered.
//!
//! Every token names its session (`sid`); whether that session has ended is
//! the guards' question, asked on every request (see `services::sessions`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{AuthLevel, AuthMethod};

/// The claims of every access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    #[serde(rename = "authLevel")]
    pub auth_level: AuthLevel,
    /// The same as `authLevel`: the name RFC 9470 step-up clients read.
    pub acr: AuthLevel,
    pub amr: Vec<String>,
    /// When the authentication that gave the token its level happened.
    pub auth_time: i64,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
    /// The session the token belongs to.
    pub sid: String,
}

/// The authenticated caller, as read from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub username: String,
    pub auth_level: AuthLevel,
    pub claims: Claims,
}

impl Principal {
    /// When the authentication behind this token's level happened.
    pub fn auth_time(&self) -> i64 {
        self.claims.auth_time
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed or its signature, algorithm, issuer or audience is wrong")]
    Invalid,
    #[error("token has expired")]
    Expired,
}

/// Verified tokens remembered at most, and for at most this long.
const VERIFIED_CACHE_CAPACITY: u64 = 10_000;
const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(300);

pub struct TokenService {
    verified: moka::sync::Cache<String, Arc<Principal>>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    password_ttl: Duration,
    full_ttl: Duration,
}

impl TokenService {
    pub fn new(
        secret: &[u8],
        issuer: String,
        audience: String,
        password_ttl: Duration,
        full_ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Expiry is checked below against the service's clock, to the second.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        TokenService {
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_CAPACITY)
                .time_to_live(VERIFIED_CACHE_TTL)
                .build(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer,
            audience,
            password_ttl,
            full_ttl,
        }
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
    ) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
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
        let access_token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken {
            access_token,
            expires_in: (exp - iat) as u64,
            auth_level: level,
            refresh: None,
        })
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Principal, TokenError> {
        if let Some(known) = self.verified.get(token) {
            if known.claims.exp <= now.timestamp() {
                return Err(TokenError::Expired);
            }
            return Ok(Principal::clone(&known));
        }
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.exp <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| TokenError::Invalid)?;
        let session_id = Uuid::parse_str(&claims.sid).map_err(|_| TokenError::Invalid)?;
        let principal = Principal {
            user_id,
            session_id,
            username: claims.username.clone(),
            auth_level: claims.auth_level,
            claims,
        };
        self.verified
            .insert(token.to_owned(), Arc::new(principal.clone()));
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn service() -> TokenService {
        TokenService::new(
            SECRET,
            "iss-a".into(),
            "aud-a".into(),
            Duration::from_secs(3600),
            Duration::from_secs(900),
        )
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
        let other_iss = TokenService::new(
            SECRET,
            "iss-b".into(),
            "aud-a".into(),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let other_aud = TokenService::new(
            SECRET,
            "iss-a".into(),
            "aud-b".into(),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let other_key = TokenService::new(
            b"another-secret-another-secret-xx",
            "iss-a".into(),
            "aud-a".into(),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        for issuer in [other_iss, other_aud, other_key] {
            let t = issuer.issue(&subject("eve"), full_grant(now), now).unwrap();
            assert_eq!(
                service().verify(&t.access_token, now),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn rejects_alg_none_and_other_algorithms() {
        let s = service();
        let now = Utc::now();
        let t = s
            .issue(&subject("eve"), Grant::new(AuthMethod::Password, now), now)
            .unwrap();
        let parts: Vec<&str> = t.access_token.split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(s.verify(&unsigned, now), Err(TokenError::Invalid));

        let claims: Claims = serde_json::from_value(claims_of(&t.access_token)).unwrap();
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(s.verify(&hs512, now), Err(TokenError::Invalid));
        assert_eq!(s.verify("not.a.jwt", now), Err(TokenError::Invalid));
        assert_eq!(s.verify("", now), Err(TokenError::Invalid));
    }
}
