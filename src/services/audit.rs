//! The audit trail: each security-relevant event becomes a row (written in
//! the same transaction as the change it records, where there is one) and a
//! structured log line (target `audit`, one JSON object). Events carry no
//! secrets: no passwords, tokens or key material, only ids, the client's IP
//! and user agent, and short reasons chosen here.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::rate_limit::Action;
use super::ServiceError;
use crate::clock::Clock;
use crate::domain::ClientInfo;
use crate::repositories::{EventRecord, EventRepository};
use crate::telemetry::{LabeledCounters, Metrics};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Signup,
    LoginSucceeded,
    LoginFailed,
    PasskeyRegistered,
    PasskeyRegistrationFailed,
    PasskeyVerified,
    PasskeyVerificationFailed,
    PasskeyRenamed,
    PasskeyDeleted,
    CounterRegression,
    RateLimited,
    RecoveryCodesIssued,
    RecoveryCodesDeleted,
    RecoveryCodeUsed,
    RecoveryCodeFailed,
    PasswordChanged,
    PasswordChangeFailed,
    AccountDeleted,
    SessionEnded,
    RefreshTokenReused,
    /// A passkey alone signed the user in (a new session).
    PasskeySignIn,
    PasskeySignInFailed,
    /// An operator ended every session of the account.
    OperatorSessionsEnded,
    /// An operator deleted the account's passkeys and recovery codes.
    OperatorPasskeysReset,
    /// An operator locked the account; its sessions ended.
    AccountLocked,
    /// An operator unlocked the account.
    AccountUnlocked,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Signup => "signup",
            EventKind::LoginSucceeded => "login_succeeded",
            EventKind::LoginFailed => "login_failed",
            EventKind::PasskeySignIn => "passkey_sign_in",
            EventKind::PasskeySignInFailed => "passkey_sign_in_failed",
            EventKind::PasskeyRegistered => "passkey_registered",
            EventKind::PasskeyRegistrationFailed => "passkey_registration_failed",
            EventKind::PasskeyVerified => "passkey_verified",
            EventKind::PasskeyVerificationFailed => "passkey_verification_failed",
            EventKind::PasskeyRenamed => "passkey_renamed",
            EventKind::PasskeyDeleted => "passkey_deleted",
            EventKind::CounterRegression => "counter_regression",
            EventKind::RateLimited => "rate_limited",
            EventKind::RecoveryCodesIssued => "recovery_codes_issued",
            EventKind::RecoveryCodesDeleted => "recovery_codes_deleted",
            EventKind::RecoveryCodeUsed => "recovery_code_used",
            EventKind::RecoveryCodeFailed => "recovery_code_failed",
            EventKind::PasswordChanged => "password_changed",
            EventKind::PasswordChangeFailed => "password_change_failed",
            EventKind::AccountDeleted => "account_deleted",
            EventKind::SessionEnded => "session_ended",
            EventKind::RefreshTokenReused => "refresh_token_reused",
            EventKind::OperatorSessionsEnded => "operator_sessions_ended",
            EventKind::OperatorPasskeysReset => "operator_passkeys_reset",
            EventKind::AccountLocked => "account_locked",
            EventKind::AccountUnlocked => "account_unlocked",
        }
    }

    pub fn outcome(self) -> &'static str {
        match self {
            EventKind::Signup
            | EventKind::LoginSucceeded
            | EventKind::PasskeyRegistered
            | EventKind::PasskeyVerified
            | EventKind::PasskeyRenamed
            | EventKind::PasskeyDeleted
            | EventKind::RecoveryCodesIssued
            | EventKind::RecoveryCodesDeleted
            | EventKind::RecoveryCodeUsed
            | EventKind::PasswordChanged
            | EventKind::AccountDeleted
            | EventKind::SessionEnded
            | EventKind::PasskeySignIn
            | EventKind::OperatorSessionsEnded
            | EventKind::OperatorPasskeysReset
            | EventKind::AccountLocked
            | EventKind::AccountUnlocked => "success",
            EventKind::LoginFailed
            | EventKind::PasskeyRegistrationFailed
            | EventKind::PasskeyVerificationFailed
            | EventKind::CounterRegression
            | EventKind::RateLimited
            | EventKind::RecoveryCodeFailed
            | EventKind::PasswordChangeFailed
            | EventKind::RefreshTokenReused
            | EventKind::PasskeySignInFailed => "failure",
        }
    }
}

/// An event as clients (and the log) see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub outcome: String,
    pub user_id: Option<String>,
    pub ip_address: String,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<EventRecord> for AuthEvent {
    fn from(r: EventRecord) -> Self {
        AuthEvent {
            id: r.id,
            kind: r.kind,
            outcome: r.outcome,
            user_id: r.user_id,
            ip_address: r.client_ip,
            user_agent: r.user_agent,
            detail: r.detail,
            created_at: r.created_at.and_utc(),
        }
    }
}

/// One page of a user's events, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<AuthEvent>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The target of audit log lines.
pub const LOG_TARGET: &str = "audit";

/// At most one stored `rate_limited` event per (user, action) in this
/// window: a flood of refused requests must not become a flood of writes.
const RATE_LIMIT_EVENT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Audit {
    events: EventRepository,
    clock: Arc<dyn Clock>,
    reported_limits: moka::sync::Cache<String, ()>,
    /// `rate_limited_total{action}` (no-op handles unless metrics are on).
    limited: LabeledCounters,
}

impl Audit {
    pub fn new(events: EventRepository, clock: Arc<dyn Clock>) -> Self {
        Audit {
            events,
            clock,
            reported_limits: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(RATE_LIMIT_EVENT_WINDOW)
                .build(),
            limited: LabeledCounters::default(),
        }
    }

    /// Counts every rate-limit refusal in `metrics`, by action.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.limited = metrics.rate_limited(&Action::ALL.map(Action::as_str));
        self
    }

    /// A new event, to be stored with the change it records (then [`Audit::log`] it).
    pub fn event(
        &self,
        kind: EventKind,
        user_id: Option<Uuid>,
        client: &ClientInfo,
        detail: Option<String>,
    ) -> EventRecord {
        EventRecord {
            id: Uuid::now_v7().to_string(),
            user_id: user_id.map(|id| id.to_string()),
            kind: kind.as_str().to_owned(),
            outcome: kind.outcome().to_owned(),
            client_ip: client.ip.to_string(),
            user_agent: client.user_agent.clone(),
            detail,
            created_at: self.clock.now().naive_utc(),
        }
    }

    /// Writes the structured log line of a stored event: target `audit`,
    /// the event as one JSON object. The log format adds the request id
    /// (the line is written in the request's scope) and, with
    /// `LOG_FORMAT=json`, embeds the object as the line's `event`.
    pub fn log(&self, event: &EventRecord) {
        match serde_json::to_string(&AuthEvent::from(event.clone())) {
            Ok(line) => log::info!(target: LOG_TARGET, "{line}"),
            Err(err) => log::error!(target: LOG_TARGET, "unprintable event {}: {err}", event.id),
        }
    }

    /// Stores (and logs) an event that goes with no other change.
    pub async fn record(
        &self,
        kind: EventKind,
        user_id: Option<Uuid>,
        client: &ClientInfo,
        detail: Option<String>,
    ) -> Result<(), ServiceError> {
        let event = self.event(kind, user_id, client, detail);
        self.events.insert(event.clone()).await?;
        self.log(&event);
        Ok(())
    }

    /// Passes `result` through; when it is a rate-limit refusal, records it
    /// (stored for a known user at most once per window, always logged).
    pub async fn on_limit(
        &self,
        result: Result<(), ServiceError>,
        user_id: Option<Uuid>,
        client: &ClientInfo,
        action: Action,
    ) -> Result<(), ServiceError> {
        let Err(refusal @ ServiceError::RateLimited { .. }) = result else {
            return result;
        };
        self.limited.increment(action.as_str());
        let detail = Some(action.as_str().to_owned());
        let first_in_window = user_id.is_some_and(|id| {
            let key = format!("{id}:{}", action.as_str());
            let fresh = !self.reported_limits.contains_key(&key);
            self.reported_limits.insert(key, ());
            fresh
        });
        if first_in_window {
            self.record(EventKind::RateLimited, user_id, client, detail)
                .await?;
        } else {
            self.log(&self.event(EventKind::RateLimited, user_id, client, detail));
        }
        Err(refusal)
    }

    /// A user's events, newest first, `limit` at a time, older than `before`.
    pub async fn list(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<EventPage, ServiceError> {
        // One extra row tells whether an older page exists.
        let mut rows = self
            .events
            .list_for_user(
                user_id.to_string(),
                before.map(|id| id.to_string()),
                i64::from(limit) + 1,
            )
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
        Ok(EventPage {
            events: rows.into_iter().map(AuthEvent::from).collect(),
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_name_and_an_outcome() {
        let kinds = [
            EventKind::Signup,
            EventKind::LoginSucceeded,
            EventKind::LoginFailed,
            EventKind::PasskeyRegistered,
            EventKind::PasskeyRegistrationFailed,
            EventKind::PasskeyVerified,
            EventKind::PasskeyVerificationFailed,
            EventKind::PasskeyRenamed,
            EventKind::PasskeyDeleted,
            EventKind::CounterRegression,
            EventKind::RateLimited,
            EventKind::RecoveryCodesIssued,
            EventKind::RecoveryCodesDeleted,
            EventKind::RecoveryCodeUsed,
            EventKind::RecoveryCodeFailed,
            EventKind::PasswordChanged,
            EventKind::PasswordChangeFailed,
            EventKind::AccountDeleted,
            EventKind::SessionEnded,
            EventKind::RefreshTokenReused,
            EventKind::PasskeySignIn,
            EventKind::PasskeySignInFailed,
            EventKind::OperatorSessionsEnded,
            EventKind::OperatorPasskeysReset,
            EventKind::AccountLocked,
            EventKind::AccountUnlocked,
        ];
        let mut names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), kinds.len());
        assert!(kinds
            .iter()
            .all(|k| matches!(k.outcome(), "success" | "failure")));
    }
}
