//! Sign-up, password login and the caller's own account.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::passwords::PasswordHasher;
use super::rate_limit::{Action, RateLimiter};
use super::tokens::{IssuedToken, TokenService};
use super::{run_blocking, ServiceError};
use crate::clock::Clock;
use crate::domain::{username_key, AuthLevel, ClientInfo, DisplayName, Password, Username};
use crate::repositories::{PasskeyRepository, RepoError, UserRecord, UserRepository};

/// A user as clients see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

impl User {
    pub(crate) fn from_record(record: UserRecord) -> Result<Self, ServiceError> {
        Ok(User {
            id: Uuid::parse_str(&record.id).map_err(ServiceError::internal)?,
            username: record.username,
            display_name: record.display_name,
            created_at: record.created_at.and_utc(),
        })
    }
}

/// A user and how many passkeys they have.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub passkey_count: i64,
}

#[derive(Debug)]
pub struct SignupInput {
    pub username: Username,
    pub password: Password,
    pub display_name: DisplayName,
}

#[derive(Clone)]
pub struct AuthService {
    users: UserRepository,
    passkeys: PasskeyRepository,
    hasher: Arc<PasswordHasher>,
    tokens: Arc<TokenService>,
    limiter: RateLimiter,
    clock: Arc<dyn Clock>,
}

impl AuthService {
    pub fn new(
        users: UserRepository,
        passkeys: PasskeyRepository,
        hasher: Arc<PasswordHasher>,
        tokens: Arc<TokenService>,
        limiter: RateLimiter,
        clock: Arc<dyn Clock>,
    ) -> Self {
        AuthService {
            users,
            passkeys,
            hasher,
            tokens,
            limiter,
            clock,
        }
    }

    pub async fn signup(
        &self,
        input: SignupInput,
        client: &ClientInfo,
    ) -> Result<User, ServiceError> {
        self.limiter
            .check(Action::Signup, client.ip, &input.username.key())
            .await?;
        let hasher = self.hasher.clone();
        let password = input.password;
        let password_hash = run_blocking(move || hasher.hash(&password))
            .await?
            .map_err(ServiceError::internal)?;
        let now = self.clock.now().naive_utc();
        let record = UserRecord {
            id: Uuid::new_v4().to_string(),
            username: input.username.as_str().to_owned(),
            username_key: input.username.key(),
            display_name: input.display_name.as_str().to_owned(),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        match self.users.insert(record.clone()).await {
            Ok(()) => {
                log::info!(
                    "user signed up: id={} username={}",
                    record.id,
                    record.username
                );
                User::from_record(record)
            }
            Err(RepoError::AlreadyExists) => Err(ServiceError::UsernameTaken),
            Err(other) => Err(other.into()),
        }
    }

    /// Unknown user and wrong password fail the same way, after one hash
    /// each; repeated failures lock the (account, client IP) pair for a while.
    pub async fn login(
        &self,
        username: &str,
        password: String,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        let account = username_key(username);
        self.limiter
            .check(Action::Login, client.ip, &account)
            .await?;
        self.limiter.check_lockout(&account, client.ip).await?;
        let record = self.users.find_by_key(account.clone()).await?;
        let hasher = self.hasher.clone();
        let stored = record.as_ref().map(|r| r.password_hash.clone());
        let verified = run_blocking(move || hasher.verify(&password, stored.as_deref())).await?;
        let record = match record {
            Some(record) if verified => record,
            _ => {
                // Log the name only when it is a well-formed username: the
                // field may hold anything, even a password typed in the wrong box.
                match Username::parse(username) {
                    Ok(name) => log::info!("login failed for username={}", name.as_str()),
                    Err(_) => log::info!("login failed for a malformed username"),
                }
                self.limiter.login_failed(&account, client.ip).await?;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        let user = User::from_record(record)?;
        self.limiter.login_succeeded(&account, client.ip).await?;
        log::info!("login succeeded: id={}", user.id);
        self.tokens
            .issue(
                user.id,
                &user.username,
                AuthLevel::Password,
                self.clock.now(),
            )
            .map_err(ServiceError::internal)
    }

    /// The caller's account; a token for a user that no longer exists is refused.
    pub async fn account(&self, user_id: Uuid) -> Result<Account, ServiceError> {
        let record = self
            .users
            .find_by_id(user_id.to_string())
            .await?
            .ok_or(ServiceError::UnknownUser)?;
        let passkey_count = self.passkeys.count_for_user(user_id.to_string()).await?;
        Ok(Account {
            user: User::from_record(record)?,
            passkey_count,
        })
    }
}
