//! Sessions: what a password login starts and its refresh token keeps
//! alive, and what logout, revocation, a password change, recovery or a
//! reused refresh token end.
//!
//! - A refresh token is 256 random bits, shown once, stored as its SHA-256
//!   hash. `refresh` swaps it for the next one with a compare-and-set, so
//!   of concurrent refreshes with one token exactly one succeeds.
//! - A token presented again after it was rotated is **reuse**: someone
//!   holds a copy, so the whole session ends. Only within
//!   [`REUSE_GRACE`] of the rotation is it taken for a race between two
//!   requests of the same client (refused, ending nothing).
//! - A refresh token lives `refresh_ttl` after its last use; no session is
//!   refreshed past `max_age` from its start, and no access token issued
//!   from it outlives that.
//! - Every guarded request asks [`SessionService::is_ended`]: an in-memory
//!   lookup in the [`EndedSessions`] store. The database is the record;
//!   [`SessionService::run_background`] re-reads recent endings every few
//!   seconds (so a node that missed a Redis message catches up) and deletes
//!   finished sessions.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use super::audit::{Audit, EventKind};
use super::tokens::Principal;
use super::ServiceError;
use crate::clock::Clock;
use crate::domain::ClientInfo;
use crate::repositories::events::EventRecord;
use crate::repositories::sessions::{
    Ended, Ending, RefreshTokenRecord, Rotation, RotationRequest, SessionEnding, Start,
};
use crate::repositories::{SessionRecord, SessionRepository};
use crate::stores::sessions::EndedSessions;

/// How long after a rotation the old token may still arrive from a
/// concurrent request of the same client without being taken for theft.
pub const REUSE_GRACE: Duration = Duration::from_secs(3);

/// How often recent endings are re-read from the database.
const RESYNC_EVERY: Duration = Duration::from_secs(5);
/// How far back each re-read looks before the previous one (clock skew
/// between nodes, slow transactions).
const RESYNC_OVERLAP: Duration = Duration::from_secs(60);
/// How often finished sessions are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// Why a session ended, as stored and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    Revoked,
    OthersEnded,
    PasswordChanged,
    Recovery,
    RefreshTokenReused,
    /// An operator ended them (`passkey-auth user end-sessions`).
    Operator,
    /// An operator locked the account.
    AccountLocked,
    /// An operator deleted the account's passkeys and recovery codes.
    PasskeysReset,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::Revoked => "revoked",
            EndReason::OthersEnded => "others_ended",
            EndReason::PasswordChanged => "password_changed",
            EndReason::Recovery => "recovery",
            EndReason::RefreshTokenReused => "refresh_token_reused",
            EndReason::Operator => "operator",
            EndReason::AccountLocked => "account_locked",
            EndReason::PasskeysReset => "passkeys_reset",
        }
    }
}

/// Lifetimes of refresh tokens and sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A refresh token's life after its last use (`REFRESH_TTL_SECS`).
    pub refresh_ttl: Duration,
    /// A session's whole life (`SESSION_MAX_AGE_SECS`).
    pub max_age: Duration,
    /// The longest access-token lifetime: how long an ending must be known.
    pub token_ttl: Duration,
}

/// A session just started or refreshed, and its new refresh token.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub record: SessionRecord,
    pub id: Uuid,
    pub refresh_token: String,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: u64,
}

impl LiveSession {
    pub fn amr(&self) -> Vec<String> {
        serde_json::from_str(&self.record.amr).unwrap_or_default()
    }

    /// When the session ends at the latest, in seconds.
    pub fn expires_at(&self) -> i64 {
        self.record.expires_at.and_utc().timestamp()
    }
}

/// A session as its user sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub current: bool,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub client_ip: String,
    pub user_agent: Option<String>,
}

fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

fn hash_refresh_token(token: &str) -> String {
    super::sha256_hex(token.as_bytes(), 32)
}

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or_default()
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[derive(Clone)]
pub struct SessionService {
    pub repo: SessionRepository,
    pub ended: Arc<dyn EndedSessions>,
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
    pub policy: SessionPolicy,
}

impl SessionService {
    /// Whether the session `id` has ended (the hot path: memory only).
    pub fn is_ended(&self, id: &Uuid) -> bool {
        self.ended.is_ended(id)
    }

    /// Starts a session for `user_id` whose login used `amr` at
    /// `auth_time`; `event` (the login's) is stored with it. A locked
    /// account starts none ([`ServiceError::AccountLocked`]); a user gone
    /// meanwhile is [`ServiceError::UnknownUser`].
    pub async fn start(
        &self,
        user_id: Uuid,
        amr: Vec<String>,
        auth_time: DateTime<Utc>,
        client: &ClientInfo,
        mut event: EventRecord,
    ) -> Result<LiveSession, ServiceError> {
        let now = self.clock.now();
        let id = Uuid::new_v4();
        // The login's event names the session it started.
        event.detail.get_or_insert_with(|| id.to_string());
        let (token, token_hash) = new_refresh_token();
        let expires_at = (now + chrono(self.policy.max_age)).naive_utc();
        let refresh_expires_at = (now + chrono(self.policy.refresh_ttl))
            .naive_utc()
            .min(expires_at);
        let record = SessionRecord {
            id: id.to_string(),
            user_id: user_id.to_string(),
            amr: serde_json::to_string(&amr).map_err(ServiceError::internal)?,
            auth_time: auth_time.timestamp(),
            client_ip: client.ip.to_string(),
            user_agent: client.user_agent.clone(),
            created_at: now.naive_utc(),
            last_seen_at: now.naive_utc(),
            refresh_expires_at,
            expires_at,
            generation: 0,
            ended_at: None,
            end_reason: None,
        };
        let first = RefreshTokenRecord {
            token_hash,
            session_id: record.id.clone(),
            generation: 0,
            issued_at: now.naive_utc(),
            rotated_at: None,
        };
        match self
            .repo
            .start_unless_locked(record.clone(), first, event.clone())
            .await?
        {
            Start::Started => {}
            Start::Locked => return Err(ServiceError::AccountLocked),
            Start::UserGone => return Err(ServiceError::UnknownUser),
        }
        self.audit.log(&event);
        Ok(self.live(record, token))
    }

    fn live(&self, record: SessionRecord, refresh_token: String) -> LiveSession {
        let now = self.clock.now().naive_utc();
        LiveSession {
            id: Uuid::parse_str(&record.id).unwrap_or_default(),
            refresh_expires_in: to_std(record.refresh_expires_at - now).as_secs(),
            record,
            refresh_token,
        }
    }

    /// Rotates a refresh token. Unknown, expired, ended and rotated tokens
    /// are all [`ServiceError::InvalidRefreshToken`]; a rotated one
    /// presented after [`REUSE_GRACE`] also ends its session.
    pub async fn refresh(
        &self,
        presented: &str,
        client: &ClientInfo,
    ) -> Result<LiveSession, ServiceError> {
        let now = self.clock.now();
        let (token, next_hash) = new_refresh_token();
        let rotation = self
            .repo
            .rotate(RotationRequest {
                presented_hash: hash_refresh_token(presented),
                next_hash,
                now: now.naive_utc(),
                refresh_ttl: chrono(self.policy.refresh_ttl),
                client_ip: client.ip.to_string(),
                user_agent: client.user_agent.clone(),
            })
            .await?;
        let (session, rotated_at) = match rotation {
            Rotation::Rotated(record) => return Ok(self.live(record, token)),
            Rotation::Unknown | Rotation::Dead(_) => return Err(ServiceError::InvalidRefreshToken),
            Rotation::AlreadyRotated {
                session,
                rotated_at,
            } => (session, rotated_at),
        };
        if now.naive_utc() - rotated_at <= chrono(REUSE_GRACE) {
            log::info!(
                "refresh race in session {}: the older token lost",
                session.id
            );
            return Err(ServiceError::InvalidRefreshToken);
        }
        let user_id = Uuid::parse_str(&session.user_id).map_err(ServiceError::internal)?;
        log::warn!(
            "refresh token reused in session {} of user_id={user_id}: ending the session",
            session.id
        );
        self.audit
            .record(
                EventKind::RefreshTokenReused,
                Some(user_id),
                client,
                Some(session.id.clone()),
            )
            .await?;
        self.end(
            user_id,
            Ending::One(session.id),
            EndReason::RefreshTokenReused,
            client,
        )
        .await?;
        Err(ServiceError::InvalidRefreshToken)
    }

    /// The sessions to end and how to record them, for a repository call
    /// that ends them in the transaction of another change; pass the ids it
    /// returns to [`SessionService::ended`].
    pub fn ending(
        &self,
        user_id: Uuid,
        ending: Ending,
        reason: EndReason,
        client: &ClientInfo,
    ) -> SessionEnding {
        let audit = self.audit.clone();
        let client = client.clone();
        SessionEnding {
            ending,
            reason: reason.as_str(),
            now: self.clock.now().naive_utc(),
            event_for: Box::new(move |id| {
                audit.event(
                    EventKind::SessionEnded,
                    Some(user_id),
                    &client,
                    Some(format!("{id} ({})", reason.as_str())),
                )
            }),
        }
    }

    /// Makes sessions just ended in the database known to every node, and
    /// writes their audit log lines.
    pub async fn ended(&self, ended: Ended) -> Result<usize, ServiceError> {
        let ids: Vec<Uuid> = ended
            .iter()
            .filter_map(|(id, _)| Uuid::parse_str(id).ok())
            .collect();
        self.ended.end(&ids).await?;
        for (_, event) in &ended {
            self.audit.log(event);
        }
        Ok(ids.len())
    }

    /// Makes sessions that went with their account known to every node.
    pub async fn gone(&self, ids: Vec<String>) -> Result<(), ServiceError> {
        let ids: Vec<Uuid> = ids
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect();
        Ok(self.ended.end(&ids).await?)
    }

    /// Ends the user's sessions that `ending` selects; returns how many.
    pub async fn end(
        &self,
        user_id: Uuid,
        ending: Ending,
        reason: EndReason,
        client: &ClientInfo,
    ) -> Result<usize, ServiceError> {
        let record = self.ending(user_id, ending, reason, client);
        let ended = self.repo.end(user_id.to_string(), record).await?;
        self.ended(ended).await
    }

    /// Ends the caller's own session.
    pub async fn logout(
        &self,
        caller: &Principal,
        client: &ClientInfo,
    ) -> Result<(), ServiceError> {
        let own = Ending::One(caller.session_id.to_string());
        self.end(caller.user_id, own, EndReason::Logout, client)
            .await
            .map(drop)
    }

    /// Ends one of the caller's sessions; another user's (or no such) id
    /// is [`ServiceError::SessionNotFound`].
    pub async fn end_one(
        &self,
        caller: &Principal,
        session_id: &str,
        client: &ClientInfo,
    ) -> Result<(), ServiceError> {
        let id = Uuid::parse_str(session_id).map_err(|_| ServiceError::SessionNotFound)?;
        let one = Ending::One(id.to_string());
        match self
            .end(caller.user_id, one, EndReason::Revoked, client)
            .await?
        {
            0 => Err(ServiceError::SessionNotFound),
            _ => Ok(()),
        }
    }

    /// Ends every session of the caller's but the current one.
    pub async fn end_others(
        &self,
        caller: &Principal,
        client: &ClientInfo,
    ) -> Result<(), ServiceError> {
        let others = Ending::AllBut(Some(caller.session_id.to_string()));
        self.end(caller.user_id, others, EndReason::OthersEnded, client)
            .await
            .map(drop)
    }

    /// The caller's live sessions, newest first, theirs marked `current`.
    pub async fn list(&self, caller: &Principal) -> Result<Vec<SessionView>, ServiceError> {
        let now = self.clock.now().naive_utc();
        let current = caller.session_id.to_string();
        Ok(self
            .repo
            .live_for_user(caller.user_id.to_string(), now)
            .await?
            .into_iter()
            .map(|s| SessionView {
                current: s.id == current,
                id: s.id,
                created_at: s.created_at.and_utc(),
                last_seen_at: s.last_seen_at.and_utc(),
                client_ip: s.client_ip,
                user_agent: s.user_agent,
            })
            .collect())
    }

    /// Reads the endings since `since` into the store; returns when this
    /// read began, for the next one.
    async fn resync(&self, since: DateTime<Utc>) -> Result<DateTime<Utc>, ServiceError> {
        let began = self.clock.now();
        let ids = self.repo.ended_since(since.naive_utc()).await?;
        let ids: Vec<Uuid> = ids
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect();
        self.ended.learn(&ids);
        Ok(began)
    }

    /// Deletes sessions that finished longer ago than any of their tokens
    /// can live.
    async fn clean_up(&self) -> Result<usize, ServiceError> {
        let keep = chrono(self.policy.token_ttl + RESYNC_OVERLAP);
        Ok(self
            .repo
            .delete_finished((self.clock.now() - keep).naive_utc())
            .await?)
    }

    /// The background work, for as long as the process runs: re-read recent
    /// endings every few seconds and whenever `wake` is notified (the Redis
    /// listener reconnected), and delete finished sessions now and then.
    /// Neither blocks a request: both run on the query threads, and a
    /// failure is logged and retried at the next turn.
    pub async fn run_background(self, wake: Arc<Notify>) {
        let mut since = self.clock.now() - chrono(self.policy.token_ttl + RESYNC_OVERLAP);
        let mut last_cleanup: Option<std::time::Instant> = None;
        loop {
            match self.resync(since).await {
                Ok(began) => since = began - chrono(RESYNC_OVERLAP),
                Err(err) => log::warn!("cannot re-read ended sessions: {err}"),
            }
            if last_cleanup.is_none_or(|at| at.elapsed() >= CLEANUP_EVERY) {
                match self.clean_up().await {
                    Ok(0) => {}
                    Ok(n) => log::info!("deleted {n} finished sessions"),
                    Err(err) => log::warn!("cannot delete finished sessions: {err}"),
                }
                last_cleanup = Some(std::time::Instant::now());
            }
            let _ = actix_web::rt::time::timeout(RESYNC_EVERY, wake.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_256_random_bits_stored_as_sha256() {
        let (a, hash_a) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(hash_a.len(), 64);
        assert_eq!(hash_a, hash_refresh_token(&a));
        assert!(!hash_a.contains(&a));
    }

    #[test]
    fn every_end_reason_has_a_distinct_name() {
        let reasons = [
            EndReason::Logout,
            EndReason::Revoked,
            EndReason::OthersEnded,
            EndReason::PasswordChanged,
            EndReason::Recovery,
            EndReason::RefreshTokenReused,
            EndReason::Operator,
            EndReason::AccountLocked,
            EndReason::PasskeysReset,
        ];
        let mut names: Vec<_> = reasons.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), reasons.len());
    }
}
