//! Sign-up, password login and the caller's own account.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::audit::{Audit, EventKind, EventPage};
use super::passwords::Passwords;
use super::rate_limit::{Action, RateLimiter};
use super::tokens::{IssuedToken, TokenService};
use super::ServiceError;
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
    passwords: Passwords,
    tokens: Arc<TokenService>,
    limiter: RateLimiter,
    audit: Audit,
    clock: Arc<dyn Clock>,
}

impl AuthService {
    pub fn new(
        users: UserRepository,
        passkeys: PasskeyRepository,
        passwords: Passwords,
        tokens: Arc<TokenService>,
        limiter: RateLimiter,
        audit: Audit,
        clock: Arc<dyn Clock>,
    ) -> Self {
        AuthService {
            users,
            passkeys,
            passwords,
            tokens,
            limiter,
            audit,
            clock,
        }
    }

    pub async fn signup(
        &self,
        input: SignupInput,
        client: &ClientInfo,
    ) -> Result<User, ServiceError> {
        let limit = self
            .limiter
            .check(Action::Signup, client.ip, &input.username.key())
            .await;
        self.audit
            .on_limit(limit, None, client, Action::Signup)
            .await?;
        let password_hash = self.passwords.hash(input.password).await?;
        let now = self.clock.now().naive_utc();
        let id = Uuid::new_v4();
        let record = UserRecord {
            id: id.to_string(),
            username: input.username.as_str().to_owned(),
            username_key: input.username.key(),
            display_name: input.display_name.as_str().to_owned(),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        let event = self.audit.event(EventKind::Signup, Some(id), client, None);
        match self.users.insert(record.clone(), event.clone()).await {
            Ok(()) => {
                self.audit.log(&event);
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
        // The lookup comes first so that refusals of a real account are
        // recorded in its owner's events. A string that cannot be a
        // username names no account (and never reaches the database, which
        // may refuse bytes such as NUL), but still costs one hash below.
        let record = match Username::parse(username) {
            Ok(_) => self.users.find_by_key(account.clone()).await?,
            Err(_) => None,
        };
        let user_id = record
            .as_ref()
            .map(|r| Uuid::parse_str(&r.id))
            .transpose()
            .map_err(ServiceError::internal)?;
        let limit = match self.limiter.check(Action::Login, client.ip, &account).await {
            Ok(()) => self.limiter.check_lockout(&account, client.ip).await,
            refused => refused,
        };
        self.audit
            .on_limit(limit, user_id, client, Action::Login)
            .await?;

        let stored = record.as_ref().map(|r| r.password_hash.clone());
        let verified = self.passwords.verify(password, stored).await?;
        let record = match record {
            Some(record) if verified => record,
            _ => {
                self.limiter.login_failed(&account, client.ip).await?;
                self.audit
                    .record(EventKind::LoginFailed, user_id, client, None)
                    .await?;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        let user = User::from_record(record)?;
        self.limiter.login_succeeded(&account, client.ip).await?;
        self.audit
            .record(EventKind::LoginSucceeded, Some(user.id), client, None)
            .await?;
        self.tokens
            .issue(
                user.id,
                &user.username,
                AuthLevel::Password,
                self.clock.now(),
            )
            .map_err(ServiceError::internal)
    }

    /// The caller's recent events, newest first.
    pub async fn events(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<EventPage, ServiceError> {
        self.audit.list(user_id, before, limit).await
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
