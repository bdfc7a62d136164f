//! Sign-up, password login, recovery-code use, and the caller's own
//! account: password change, recovery codes, deletion.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::audit::{Audit, EventKind, EventPage};
use super::passkeys::PasskeyService;
use super::passwords::Passwords;
use super::rate_limit::{Action, RateLimiter};
use super::recovery::{IssuedCodes, RecoveryCodes};
use super::sessions::{EndReason, LiveSession, SessionService};
use super::tokens::{Grant, IssuedToken, Principal, Subject, TokenService};
use super::{outcome, ServiceError};
use crate::clock::Clock;
use crate::domain::{username_key, AuthMethod, ClientInfo, DisplayName, Password, Username};
use crate::repositories::sessions::Ending;
use crate::repositories::{RepoError, UserRecord, UserRepository};
use crate::telemetry::Metrics;
use webauthn_rs::prelude::PublicKeyCredential;

/// A user as clients see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    passwords: Passwords,
    tokens: Arc<TokenService>,
    limiter: RateLimiter,
    audit: Audit,
    recovery: RecoveryCodes,
    sessions: SessionService,
    ceremonies: PasskeyService,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

/// What the auth service is built from.
pub struct AuthParts {
    pub users: UserRepository,
    pub passwords: Passwords,
    pub tokens: Arc<TokenService>,
    pub limiter: RateLimiter,
    pub audit: Audit,
    pub recovery: RecoveryCodes,
    pub sessions: SessionService,
    /// The passkey ceremonies, for a passkey sign-in.
    pub ceremonies: PasskeyService,
    pub clock: Arc<dyn Clock>,
    /// Counts logins, passkey sign-ins, refreshes and recovery uses by outcome.
    pub metrics: Metrics,
}

impl AuthService {
    pub fn new(parts: AuthParts) -> Self {
        AuthService {
            users: parts.users,
            passwords: parts.passwords,
            tokens: parts.tokens,
            limiter: parts.limiter,
            audit: parts.audit,
            recovery: parts.recovery,
            sessions: parts.sessions,
            ceremonies: parts.ceremonies,
            clock: parts.clock,
            metrics: parts.metrics,
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
        let result = self.password_login(username, password, client).await;
        self.metrics.logins.record(outcome(&result));
        result
    }

    async fn password_login(
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
        let limit = self
            .limiter
            .check_password_guess(Action::Login, client.ip, &account)
            .await;
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
        let now = self.clock.now();
        let grant = Grant::new(AuthMethod::Password, now);
        let event = self
            .audit
            .event(EventKind::LoginSucceeded, Some(user.id), client, None);
        // A lock is checked only now, after the password verified: a
        // wrong password is 401 whether or not the account is locked, so a
        // lock tells a guesser nothing.
        let session = match self
            .sessions
            .start(user.id, grant.amr.clone(), now, client, event)
            .await
        {
            Ok(session) => session,
            Err(ServiceError::AccountLocked) => {
                return Err(self
                    .refuse_locked(EventKind::LoginFailed, user.id, client)
                    .await)
            }
            Err(ServiceError::UnknownUser) => return Err(ServiceError::InvalidCredentials),
            Err(other) => return Err(other),
        };
        self.session_token(&user.username, &session, grant)
    }

    /// Records the refusal of a locked account's login or passkey sign-in
    /// (whose credential verified) and returns the error to answer.
    async fn refuse_locked(
        &self,
        kind: EventKind,
        user_id: Uuid,
        client: &ClientInfo,
    ) -> ServiceError {
        log::info!("refused a new session of locked account user_id={user_id}");
        match self
            .audit
            .record(kind, Some(user_id), client, Some("account locked".into()))
            .await
        {
            Ok(()) => ServiceError::AccountLocked,
            Err(err) => err,
        }
    }

    /// A passkey alone signs in: a new session and a full-level token
    /// (`amr: ["hwk"]`, `auth_time` now).
    pub async fn sign_in_with_passkey(
        &self,
        response: PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        let result = self.passkey_sign_in(response, client).await;
        self.metrics.passkey_sign_ins.record(outcome(&result));
        result
    }

    async fn passkey_sign_in(
        &self,
        response: PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        let signed_in = self.ceremonies.finish_sign_in(response, client).await?;
        let now = self.clock.now();
        let grant = Grant::new(AuthMethod::PasskeySignIn, now);
        let event = self.audit.event(
            EventKind::PasskeySignIn,
            Some(signed_in.user_id),
            client,
            None,
        );
        // As for a login: the lock is told only to the holder of a passkey
        // that verified.
        let session = match self
            .sessions
            .start(signed_in.user_id, grant.amr.clone(), now, client, event)
            .await
        {
            Ok(session) => session,
            Err(ServiceError::AccountLocked) => {
                return Err(self
                    .refuse_locked(EventKind::PasskeySignInFailed, signed_in.user_id, client)
                    .await)
            }
            Err(ServiceError::UnknownUser) => return Err(ServiceError::PasskeyVerificationFailed),
            Err(other) => return Err(other),
        };
        self.session_token(&signed_in.username, &session, grant)
    }

    /// An access token of `session`, with its new refresh token.
    fn session_token(
        &self,
        username: &str,
        session: &LiveSession,
        grant: Grant,
    ) -> Result<IssuedToken, ServiceError> {
        let subject = Subject {
            user_id: Uuid::parse_str(&session.record.user_id).map_err(ServiceError::internal)?,
            username: username.to_owned(),
            session_id: session.id,
            not_after: Some(session.expires_at()),
        };
        let mut token = self
            .tokens
            .issue(&subject, grant, self.clock.now())
            .map_err(ServiceError::internal)?;
        token.refresh = Some((session.refresh_token.clone(), session.refresh_expires_in));
        Ok(token)
    }

    /// Swaps a refresh token for a new one and a password-level access
    /// token with the login's `amr` and `auth_time` (never the full level).
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        let result = self.refresh_session(refresh_token, client).await;
        self.metrics.refreshes.record(outcome(&result));
        result
    }

    async fn refresh_session(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        let session = self.sessions.refresh(refresh_token, client).await?;
        let record = self
            .users
            .find_by_id(session.record.user_id.clone())
            .await?
            .ok_or(ServiceError::InvalidRefreshToken)?;
        let grant = Grant {
            level: crate::domain::AuthLevel::Password,
            amr: session.amr(),
            auth_time: session.record.auth_time,
        };
        self.session_token(&record.username, &session, grant)
    }

    /// One unused recovery code raises a login to the full level, as a
    /// passkey would (`amr: ["pwd", "otp"]`); the code is spent.
    pub async fn recover(
        &self,
        caller: &Principal,
        code: &str,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        let result = self.spend_recovery_code(caller, code, client).await;
        self.metrics.recovery_uses.record(outcome(&result));
        result
    }

    async fn spend_recovery_code(
        &self,
        caller: &Principal,
        code: &str,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        let limit = self
            .limiter
            .check(Action::RecoveryCode, client.ip, &caller.user_id.to_string())
            .await;
        self.audit
            .on_limit(limit, Some(caller.user_id), client, Action::RecoveryCode)
            .await?;
        let others = self.others(caller, EndReason::Recovery, client);
        let ended = self
            .recovery
            .spend(caller.user_id, code, client, others)
            .await?;
        self.sessions.ended(ended).await?;
        let now = self.clock.now();
        self.tokens
            .issue(
                &Subject::of(caller),
                Grant::new(AuthMethod::RecoveryCode, now),
                now,
            )
            .map_err(ServiceError::internal)
    }

    /// A new set of recovery codes for an account that has a passkey.
    pub async fn replace_recovery_codes(
        &self,
        caller: &Principal,
        client: &ClientInfo,
    ) -> Result<IssuedCodes, ServiceError> {
        self.recovery.replace(caller.user_id, client).await
    }

    /// Changes the password after checking the current one. Wrong current
    /// passwords count towards the login lockout of (account, client IP),
    /// so a stolen token cannot be used to guess the password here.
    pub async fn change_password(
        &self,
        caller: &Principal,
        current: String,
        new: Password,
        client: &ClientInfo,
    ) -> Result<(), ServiceError> {
        let record = self
            .users
            .find_by_id(caller.user_id.to_string())
            .await?
            .ok_or(ServiceError::UnknownUser)?;
        let account = record.username_key.clone();
        let limit = self
            .limiter
            .check_password_guess(Action::PasswordChange, client.ip, &account)
            .await;
        self.audit
            .on_limit(limit, Some(caller.user_id), client, Action::PasswordChange)
            .await?;
        if !self
            .passwords
            .verify(current, Some(record.password_hash))
            .await?
        {
            self.limiter.login_failed(&account, client.ip).await?;
            self.audit
                .record(
                    EventKind::PasswordChangeFailed,
                    Some(caller.user_id),
                    client,
                    Some("wrong current password".into()),
                )
                .await?;
            return Err(ServiceError::InvalidCredentials);
        }
        let password_hash = self.passwords.hash(new).await?;
        let event = self.audit.event(
            EventKind::PasswordChanged,
            Some(caller.user_id),
            client,
            None,
        );
        let others = self.others(caller, EndReason::PasswordChanged, client);
        let ended = self
            .users
            .update_password(record.id, password_hash, event.clone(), others)
            .await?
            .ok_or(ServiceError::UnknownUser)?;
        self.audit.log(&event);
        self.sessions.ended(ended).await?;
        self.limiter.login_succeeded(&account, client.ip).await?;
        Ok(())
    }

    /// Deletes the account with its passkeys and recovery codes; its audit
    /// events stay, detached from it. Every token of the account is
    /// refused from now on.
    pub async fn delete_account(
        &self,
        caller: &Principal,
        client: &ClientInfo,
    ) -> Result<(), ServiceError> {
        let event = self
            .audit
            .event(EventKind::AccountDeleted, None, client, None);
        let sessions = self
            .users
            .delete_account(caller.user_id.to_string(), event.clone())
            .await?
            .ok_or(ServiceError::UnknownUser)?;
        self.audit.log(&event);
        self.sessions.gone(sessions).await
    }

    /// Every session of the caller's but the current one, to end with a change.
    fn others(
        &self,
        caller: &Principal,
        reason: EndReason,
        client: &ClientInfo,
    ) -> crate::repositories::sessions::SessionEnding {
        self.sessions.ending(
            caller.user_id,
            Ending::AllBut(Some(caller.session_id.to_string())),
            reason,
            client,
        )
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
        Ok(self.account_status(user_id).await?.0)
    }

    /// The caller's account and how many recovery codes it has left (one
    /// query, as the account alone).
    pub async fn account_status(&self, user_id: Uuid) -> Result<(Account, i64), ServiceError> {
        let record = self
            .users
            .find_account(user_id.to_string())
            .await?
            .ok_or(ServiceError::UnknownUser)?;
        let account = Account {
            user: User::from_record(record.user)?,
            passkey_count: record.passkeys,
        };
        Ok((account, record.recovery_codes))
    }
}
