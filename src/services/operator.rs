//! What an operator does to one account from the command line
//! (`passkey-auth user …`): look at it, end its sessions, delete its
//! passkeys and recovery codes, lock and unlock it.
//!
//! Every change goes through the repositories the server uses, in one
//! transaction with its audit event (which the user sees in
//! `GET /auth/events`, marked as done by an operator), and the sessions it
//! ends go through the [`SessionService`] like any other ending: the
//! database rows every node re-reads every few seconds, and with Redis a
//! message every node hears at once.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::audit::{Audit, AuthEvent, EventKind};
use super::passkeys::PasskeySummary;
use super::sessions::{EndReason, SessionService};
use super::ServiceError;
use crate::clock::Clock;
use crate::domain::{username_key, ClientInfo, Username};
use crate::repositories::sessions::Ending;
use crate::repositories::{
    PasskeyRepository, RecoveryCodeRepository, RepoError, SessionRecord, UserRecord, UserRepository,
};

/// The client an operator's events name: no network address (`0.0.0.0`)
/// and this user agent.
pub fn operator_client() -> ClientInfo {
    ClientInfo {
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        user_agent: Some(format!(
            "passkey-auth/{} operator CLI",
            env!("CARGO_PKG_VERSION")
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no user named `{0}`")]
    NoSuchUser(String),
    #[error("{0}")]
    Service(#[from] ServiceError),
}

impl From<RepoError> for OperatorError {
    fn from(err: RepoError) -> Self {
        OperatorError::Service(err.into())
    }
}

/// A session as an operator sees it (no token, no hash).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: String,
    /// The login's methods (RFC 8176): `["pwd"]`, `["hwk"]`, …
    pub amr: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// When it can no longer be refreshed (idle or maximum age, the earlier).
    pub refreshable_until: DateTime<Utc>,
    pub client_ip: String,
    pub user_agent: Option<String>,
}

impl From<SessionRecord> for SessionSummary {
    fn from(s: SessionRecord) -> Self {
        SessionSummary {
            amr: serde_json::from_str(&s.amr).unwrap_or_default(),
            id: s.id,
            created_at: s.created_at.and_utc(),
            last_seen_at: s.last_seen_at.and_utc(),
            refreshable_until: s.refresh_expires_at.min(s.expires_at).and_utc(),
            client_ip: s.client_ip,
            user_agent: s.user_agent,
        }
    }
}

/// Everything `passkey-auth user show` prints: no key material, no hashes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountReport {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    /// When an operator locked the account; `None`: not locked.
    pub locked_at: Option<DateTime<Utc>>,
    pub passkeys: Vec<PasskeySummary>,
    pub recovery_codes_remaining: i64,
    /// Live sessions, newest first.
    pub sessions: Vec<SessionSummary>,
    /// The latest audit events, newest first.
    pub events: Vec<AuthEvent>,
}

/// What `user end-sessions` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsEnded {
    pub username: String,
    pub sessions: usize,
}

/// What `user reset-passkeys` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeysReset {
    pub username: String,
    pub passkeys: usize,
    pub recovery_codes: usize,
    pub sessions: usize,
}

/// What `user lock` / `user unlock` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockChanged {
    pub username: String,
    /// `false`: it was so already (nothing was recorded).
    pub changed: bool,
    /// Sessions the lock ended.
    pub sessions: usize,
}

/// The account an operator named.
struct Target {
    id: Uuid,
    record: UserRecord,
    locked_at: Option<DateTime<Utc>>,
}

/// Built by the command line from the server's configuration.
#[derive(Clone)]
pub struct Operator {
    pub users: UserRepository,
    pub passkeys: PasskeyRepository,
    pub codes: RecoveryCodeRepository,
    pub sessions: SessionService,
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
    /// What the events name as the client ([`operator_client`]).
    pub client: ClientInfo,
}

/// The detail of an operator's event: it says an operator did it, what it
/// came to, and the operator's reason if one was given (the user reads it).
fn detail(what: Option<String>, reason: Option<&str>) -> Option<String> {
    let mut parts = vec!["by an operator".to_owned()];
    parts.extend(what);
    if let Some(reason) = reason {
        parts.push(format!("reason: {reason}"));
    }
    Some(parts.join("; "))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Operator {
    /// The account `name` names, in any case.
    async fn target(&self, name: &str) -> Result<Target, OperatorError> {
        let unknown = || OperatorError::NoSuchUser(name.to_owned());
        // A string that cannot be a username names no account (and never
        // reaches the database).
        Username::parse(name).map_err(|_| unknown())?;
        let (record, locked_at) = self
            .users
            .find_with_lock_by_key(username_key(name))
            .await?
            .ok_or_else(unknown)?;
        Ok(Target {
            id: Uuid::parse_str(&record.id).map_err(ServiceError::internal)?,
            record,
            locked_at: locked_at.map(|t| t.and_utc()),
        })
    }

    /// The account, its passkeys (summaries), recovery codes left, live
    /// sessions and latest `events` audit events.
    pub async fn show(&self, name: &str, events: u32) -> Result<AccountReport, OperatorError> {
        let target = self.target(name).await?;
        let id = target.record.id.clone();
        let passkeys = self.passkeys.list_for_user(id.clone()).await?;
        let recovery_codes_remaining = self.codes.count_for_user(id.clone()).await?;
        let now = self.clock.now().naive_utc();
        let sessions = self.sessions.repo.live_for_user(id.clone(), now).await?;
        let events = self.audit.list(target.id, None, events).await?.events;
        Ok(AccountReport {
            id,
            username: target.record.username,
            display_name: target.record.display_name,
            created_at: target.record.created_at.and_utc(),
            locked_at: target.locked_at,
            passkeys: passkeys.into_iter().map(PasskeySummary::from).collect(),
            recovery_codes_remaining,
            sessions: sessions.into_iter().map(SessionSummary::from).collect(),
            events,
        })
    }

    /// Ends every session of the account: its refresh tokens stop working,
    /// and its access tokens are refused by every node.
    pub async fn end_sessions(
        &self,
        name: &str,
        reason: Option<&str>,
    ) -> Result<SessionsEnded, OperatorError> {
        let target = self.target(name).await?;
        let ending = self.sessions.ending(
            target.id,
            Ending::AllBut(None),
            EndReason::Operator,
            &self.client,
        );
        let (audit, client, user_id) = (self.audit.clone(), self.client.clone(), target.id);
        let reason_owned = reason.map(str::to_owned);
        let event_for = Box::new(move |n: usize| {
            audit.event(
                EventKind::OperatorSessionsEnded,
                Some(user_id),
                &client,
                detail(
                    Some(format!("{} ended", plural(n, "session", "sessions"))),
                    reason_owned.as_deref(),
                ),
            )
        });
        let (ended, event) = self
            .sessions
            .repo
            .end_recorded(target.record.id.clone(), ending, event_for)
            .await?
            .ok_or_else(|| OperatorError::NoSuchUser(name.to_owned()))?;
        self.audit.log(&event);
        let sessions = self.sessions.ended(ended).await?;
        Ok(SessionsEnded {
            username: target.record.username,
            sessions,
        })
    }

    /// Deletes every passkey and recovery code of the account and ends all
    /// its sessions, in one transaction. The account is then guarded as one
    /// without a passkey: after a password login it enrols a first passkey
    /// (with new recovery codes). Its sessions end so that no session from
    /// before the reset, a stolen full-level one included, outlives it, and
    /// none can use the window to enrol an authenticator of its own: the
    /// first passkey takes a password login made after the reset.
    pub async fn reset_passkeys(
        &self,
        name: &str,
        reason: Option<&str>,
    ) -> Result<PasskeysReset, OperatorError> {
        let target = self.target(name).await?;
        let ending = self.sessions.ending(
            target.id,
            Ending::AllBut(None),
            EndReason::PasskeysReset,
            &self.client,
        );
        let (audit, client, user_id) = (self.audit.clone(), self.client.clone(), target.id);
        let reason_owned = reason.map(str::to_owned);
        let event_for = Box::new(move |passkeys: usize, codes: usize| {
            audit.event(
                EventKind::OperatorPasskeysReset,
                Some(user_id),
                &client,
                detail(
                    Some(format!(
                        "{} and {} deleted",
                        plural(passkeys, "passkey", "passkeys"),
                        plural(codes, "recovery code", "recovery codes")
                    )),
                    reason_owned.as_deref(),
                ),
            )
        });
        let reset = self
            .passkeys
            .reset_for_user(
                target.record.id.clone(),
                self.clock.now().naive_utc(),
                event_for,
                ending,
            )
            .await?
            .ok_or_else(|| OperatorError::NoSuchUser(name.to_owned()))?;
        self.audit.log(&reset.event);
        let sessions = self.sessions.ended(reset.ended).await?;
        Ok(PasskeysReset {
            username: target.record.username,
            passkeys: reset.passkeys,
            recovery_codes: reset.recovery_codes,
            sessions,
        })
    }

    /// Locks the account and ends its sessions: it can neither log in
    /// (403 `account_locked` once the password verified), nor sign in with
    /// a passkey, nor refresh, and its access tokens are refused.
    pub async fn lock(
        &self,
        name: &str,
        reason: Option<&str>,
    ) -> Result<LockChanged, OperatorError> {
        self.set_locked(name, true, reason).await
    }

    /// Lifts a lock: the account logs in again (its sessions stay ended).
    pub async fn unlock(
        &self,
        name: &str,
        reason: Option<&str>,
    ) -> Result<LockChanged, OperatorError> {
        self.set_locked(name, false, reason).await
    }

    async fn set_locked(
        &self,
        name: &str,
        lock: bool,
        reason: Option<&str>,
    ) -> Result<LockChanged, OperatorError> {
        let target = self.target(name).await?;
        let kind = if lock {
            EventKind::AccountLocked
        } else {
            EventKind::AccountUnlocked
        };
        let event = self
            .audit
            .event(kind, Some(target.id), &self.client, detail(None, reason));
        let ending = lock.then(|| {
            self.sessions.ending(
                target.id,
                Ending::AllBut(None),
                EndReason::AccountLocked,
                &self.client,
            )
        });
        let change = self
            .users
            .set_locked(target.record.id.clone(), lock, event.clone(), ending)
            .await?
            .ok_or_else(|| OperatorError::NoSuchUser(name.to_owned()))?;
        if change.changed {
            self.audit.log(&event);
        }
        let sessions = self.sessions.ended(change.ended).await?;
        Ok(LockChanged {
            username: target.record.username,
            changed: change.changed,
            sessions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_say_an_operator_did_it() {
        assert_eq!(detail(None, None).unwrap(), "by an operator");
        assert_eq!(
            detail(Some("2 sessions ended".into()), Some("ticket 42")).unwrap(),
            "by an operator; 2 sessions ended; reason: ticket 42"
        );
        assert_eq!(plural(1, "passkey", "passkeys"), "1 passkey");
        assert_eq!(plural(0, "passkey", "passkeys"), "0 passkeys");
    }

    #[test]
    fn the_operator_client_has_no_address() {
        let client = operator_client();
        assert_eq!(client.ip.to_string(), "0.0.0.0");
        assert!(client.user_agent.unwrap().contains("operator CLI"));
    }
}
