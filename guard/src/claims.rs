//! What an access token says: the contract's claims, and the caller they
//! describe once verified.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How strongly the bearer of a token has authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthLevel {
    /// A password login (or a refresh of one) only.
    Password,
    /// A passkey (or a recovery code) was verified.
    Full,
}

impl AuthLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthLevel::Password => "password",
            AuthLevel::Full => "full",
        }
    }
}

/// The claims of every access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    #[serde(rename = "authLevel")]
    pub auth_level: AuthLevel,
    /// The same as `authLevel`: the name RFC 9470 step-up clients read.
    pub acr: AuthLevel,
    /// RFC 8176 method references, e.g. `["pwd", "hwk"]`.
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
    /// Reads the caller from verified claims; `None` when `sub` or `sid` is
    /// not a UUID (no token of the server is like that).
    pub fn from_claims(claims: Claims) -> Option<Self> {
        Some(Principal {
            user_id: Uuid::parse_str(&claims.sub).ok()?,
            session_id: Uuid::parse_str(&claims.sid).ok()?,
            username: claims.username.clone(),
            auth_level: claims.auth_level,
            claims,
        })
    }

    /// When the authentication behind this token's level happened (seconds).
    pub fn auth_time(&self) -> i64 {
        self.claims.auth_time
    }

    /// Whether that authentication happened at most `max_age_secs` before `now`.
    pub fn verified_within(&self, max_age_secs: u64, now: i64) -> bool {
        now.saturating_sub(self.auth_time()) <= max_age_secs as i64
    }
}
