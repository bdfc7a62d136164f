//! The rules: passwords, tokens, sign-up and login, passkey ceremonies.
//!
//! Services receive their repositories, stores and clock as values at start;
//! nothing here knows about HTTP.

pub mod audit;
pub mod auth;
pub mod hashing;
pub mod health;
pub mod operator;
pub mod passkeys;
pub mod passwords;
pub mod rate_limit;
pub mod recovery;
pub mod sessions;
pub mod signing;
pub mod step_up;
pub mod tokens;

use std::time::Duration;

use crate::domain::{AuthLevel, FieldError};
use crate::repositories::RepoError;
use crate::stores::StoreError;
use crate::telemetry::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input: {0}")]
    Invalid(#[from] FieldError),
    #[error("username taken")]
    UsernameTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A valid token whose user no longer exists.
    #[error("unknown user")]
    UnknownUser,
    #[error("no passkeys registered")]
    NoPasskeys,
    #[error("no live challenge")]
    ChallengeExpired,
    #[error("passkey verification failed")]
    PasskeyVerificationFailed,
    #[error("credential already registered")]
    CredentialExists,
    #[error("passkey not found")]
    PasskeyNotFound,
    #[error("wrong, spent or malformed recovery code")]
    InvalidRecoveryCode,
    #[error("unknown, expired, ended or rotated refresh token")]
    InvalidRefreshToken,
    #[error("session not found")]
    SessionNotFound,
    /// An operator locked the account (`passkey-auth user lock`): no new
    /// session, after the password or passkey verified.
    #[error("account locked")]
    AccountLocked,
    /// The token's level is too low; `max_age` is set on recent routes.
    #[error("passkey verification required")]
    PasskeyRequired { max_age: Option<Duration> },
    /// The right level, verified longer than `max_age` ago.
    #[error("a recent {acr:?} verification is required")]
    ReauthenticationRequired { acr: AuthLevel, max_age: Duration },
    #[error("rate limited for {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bounded store is full: refused by design, logged by the store
    /// (at most every few seconds), not per request.
    #[error("a bounded store is full")]
    Overloaded,
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ServiceError::Internal(cause.to_string())
    }
}

/// How an authentication attempt that ended with `result` is counted in
/// the metrics.
pub(crate) fn outcome<T>(result: &Result<T, ServiceError>) -> Outcome {
    let Err(err) = result else {
        return Outcome::Success;
    };
    match err {
        ServiceError::InvalidCredentials
        | ServiceError::PasskeyVerificationFailed
        | ServiceError::InvalidRecoveryCode
        | ServiceError::InvalidRefreshToken
        | ServiceError::UnknownUser => Outcome::InvalidCredentials,
        ServiceError::ChallengeExpired => Outcome::ChallengeExpired,
        ServiceError::AccountLocked => Outcome::Locked,
        ServiceError::RateLimited { .. } => Outcome::RateLimited,
        ServiceError::Unavailable(_) | ServiceError::Overloaded => Outcome::Unavailable,
        ServiceError::Internal(_) => Outcome::Error,
        ServiceError::Invalid(_)
        | ServiceError::UsernameTaken
        | ServiceError::NoPasskeys
        | ServiceError::CredentialExists
        | ServiceError::PasskeyNotFound
        | ServiceError::SessionNotFound
        | ServiceError::PasskeyRequired { .. }
        | ServiceError::ReauthenticationRequired { .. } => Outcome::InvalidRequest,
    }
}

impl From<RepoError> for ServiceError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Unavailable(cause) => ServiceError::Unavailable(cause),
            // Callers that expect a conflict map it themselves; reaching here is a bug.
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => ServiceError::Unavailable(cause),
            StoreError::Full => ServiceError::Overloaded,
        }
    }
}

/// The first `bytes` bytes of the SHA-256 of `data`, as lowercase hex: for
/// digests that name things (stored refresh-token hashes, rate-limit
/// buckets, ETags).
pub(crate) fn sha256_hex(data: &[u8], bytes: usize) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}
