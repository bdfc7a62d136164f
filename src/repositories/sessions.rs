//! The `sessions` and `refresh_tokens` tables.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use super::events::{insert_on, EventRecord};
use super::prepared::Fixed;
use super::{lock_user_on, Database, RepoError};
use crate::db::AnyConnection;
use crate::schema::{refresh_tokens, sessions};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions, treat_none_as_default_value = false)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    /// JSON array of the login's methods (RFC 8176).
    pub amr: String,
    pub auth_time: i64,
    pub client_ip: String,
    pub user_agent: Option<String>,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub refresh_expires_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub generation: i64,
    pub ended_at: Option<NaiveDateTime>,
    pub end_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens, treat_none_as_default_value = false)]
pub struct RefreshTokenRecord {
    pub token_hash: String,
    pub session_id: String,
    pub generation: i64,
    pub issued_at: NaiveDateTime,
    pub rotated_at: Option<NaiveDateTime>,
}

/// What presenting a refresh token came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is rotated, `next` is stored, and this is
    /// the session as it is now.
    Rotated(SessionRecord),
    /// No such token.
    Unknown,
    /// The token's session has ended or expired (`SessionRecord` as stored).
    Dead(SessionRecord),
    /// The token was rotated already, at this time (a race or a replay:
    /// the caller tells which).
    AlreadyRotated {
        session: SessionRecord,
        rotated_at: NaiveDateTime,
    },
}

/// A refresh token to rotate, and what to store in its place.
#[derive(Debug, Clone)]
pub struct RotationRequest {
    pub presented_hash: String,
    pub next_hash: String,
    pub now: NaiveDateTime,
    /// The idle lifetime of the next token (capped by the session's end).
    pub refresh_ttl: chrono::Duration,
    pub client_ip: String,
    pub user_agent: Option<String>,
}

/// Which of a user's live sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// This one (nothing if it is another user's, or over already).
    One(String),
    /// All of them but this one, if any.
    AllBut(Option<String>),
}

/// Sessions to end, why and when, and the audit event of each.
pub struct SessionEnding {
    pub ending: Ending,
    pub reason: &'static str,
    pub now: NaiveDateTime,
    pub event_for: Box<dyn Fn(&str) -> EventRecord + Send + Sync>,
}

/// Sessions just ended: each id with the audit event stored for it.
pub type Ended = Vec<(String, EventRecord)>;

/// Ends `user_id`'s live sessions that `record` selects, inside the
/// caller's transaction.
pub(super) fn end_on(
    conn: &mut AnyConnection,
    user_id: &str,
    record: &SessionEnding,
) -> QueryResult<Ended> {
    let ending = &record.ending;
    let mut query = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::ended_at.is_null())
        .select(sessions::id)
        .into_boxed();
    query = match ending {
        Ending::One(id) => query.filter(sessions::id.eq(id.clone())),
        Ending::AllBut(Some(id)) => query.filter(sessions::id.ne(id.clone())),
        Ending::AllBut(None) => query,
    };
    let ids: Vec<String> = query.load(conn)?;
    let mut ended = Vec::with_capacity(ids.len());
    for id in ids {
        diesel::update(sessions::table.find(&id))
            .set((
                sessions::ended_at.eq(Some(record.now)),
                sessions::end_reason.eq(Some(record.reason)),
            ))
            .execute(conn)?;
        let event = (record.event_for)(&id);
        insert_on(conn, &event)?;
        ended.push((id, event));
    }
    Ok(ended)
}

/// Finished sessions deleted per transaction.
const CLEANUP_BATCH: usize = 500;

#[derive(Clone)]
pub struct SessionRepository {
    db: Database,
}

// The hot updates, as fixed text (see [`super::prepared`]).

/// A rotation's compare-and-set: the presented token, if not rotated yet.
const MARK_ROTATED: &str =
    "UPDATE refresh_tokens SET rotated_at = ? WHERE token_hash = ? AND rotated_at IS NULL";

/// A rotation's session: its generation, last use and client.
const RECORD_ROTATION: &str = "UPDATE sessions SET generation = ?, last_seen_at = ?, \
    refresh_expires_at = ?, client_ip = ?, user_agent = ? WHERE id = ?";

/// A new session's write of its user's row (a no-op), where not locked.
const LOCK_UNLESS_LOCKED: &str =
    "UPDATE users SET locked_at = locked_at WHERE id = ? AND locked_at IS NULL";

impl SessionRepository {
    pub fn new(db: Database) -> Self {
        SessionRepository { db }
    }

    /// Swaps the presented refresh token for the next one, atomically: of
    /// concurrent presentations of one token, exactly one rotates it (a
    /// compare-and-set on `rotated_at`), the others see it rotated.
    pub async fn rotate(&self, request: RotationRequest) -> Result<Rotation, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction::<_, diesel::result::Error, _>(|conn| {
                    let now = request.now;
                    // The compare-and-set comes first: it is also what takes
                    // SQLite's write lock, which a transaction that read
                    // first could not take later under concurrency (SQLite
                    // refuses that upgrade at once instead of waiting).
                    let swapped = Fixed::new(
                        MARK_ROTATED,
                        (
                            now.into_sql::<Timestamp>(),
                            (&request.presented_hash).into_sql::<Text>(),
                        ),
                    )
                    .execute(conn)?;
                    let found: Option<(RefreshTokenRecord, SessionRecord)> = refresh_tokens::table
                        .inner_join(sessions::table)
                        .filter(refresh_tokens::token_hash.eq(&request.presented_hash))
                        .select((RefreshTokenRecord::as_select(), SessionRecord::as_select()))
                        .first(conn)
                        .optional()?;
                    let Some((token, session)) = found else {
                        return Ok(Rotation::Unknown);
                    };
                    // (A dead session's token may have been marked rotated
                    // just now: harmless, the session is over.)
                    if session.ended_at.is_some()
                        || session.expires_at <= now
                        || session.refresh_expires_at <= now
                    {
                        return Ok(Rotation::Dead(session));
                    }
                    if swapped == 0 {
                        return Ok(Rotation::AlreadyRotated {
                            session,
                            rotated_at: token.rotated_at.unwrap_or(now),
                        });
                    }
                    let generation = token.generation + 1;
                    diesel::insert_into(refresh_tokens::table)
                        .values(&RefreshTokenRecord {
                            token_hash: request.next_hash.clone(),
                            session_id: session.id.clone(),
                            generation,
                            issued_at: now,
                            rotated_at: None,
                        })
                        .execute(conn)?;
                    let refresh_expires_at = (now + request.refresh_ttl).min(session.expires_at);
                    Fixed::new(
                        RECORD_ROTATION,
                        (
                            generation.into_sql::<BigInt>(),
                            now.into_sql::<Timestamp>(),
                            refresh_expires_at.into_sql::<Timestamp>(),
                            (&request.client_ip).into_sql::<Text>(),
                            (&request.user_agent).into_sql::<Nullable<Text>>(),
                            (&session.id).into_sql::<Text>(),
                        ),
                    )
                    .execute(conn)?;
                    Ok(Rotation::Rotated(SessionRecord {
                        generation,
                        last_seen_at: now,
                        refresh_expires_at,
                        client_ip: request.client_ip.clone(),
                        user_agent: request.user_agent.clone(),
                        ..session
                    }))
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// Ends the user's sessions that `ending` selects.
    pub async fn end(&self, user_id: String, ending: SessionEnding) -> Result<Ended, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    // A write first: it takes SQLite's write lock (see rotate).
                    lock_user_on(conn, &user_id, ending.now)?;
                    end_on(conn, &user_id, &ending)
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// The user's sessions that neither ended nor expired, newest first.
    pub async fn live_for_user(
        &self,
        user_id: String,
        now: NaiveDateTime,
    ) -> Result<Vec<SessionRecord>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(sessions::table
                    .filter(sessions::user_id.eq(user_id))
                    .filter(sessions::ended_at.is_null())
                    .filter(sessions::expires_at.gt(now))
                    .filter(sessions::refresh_expires_at.gt(now))
                    .order((sessions::created_at.desc(), sessions::id.desc()))
                    .select(SessionRecord::as_select())
                    .load(conn)?)
            })
            .await
    }

    /// Ids of the sessions that ended at `since` or later.
    pub async fn ended_since(&self, since: NaiveDateTime) -> Result<Vec<String>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(sessions::table
                    .filter(sessions::ended_at.ge(since))
                    .select(sessions::id)
                    .load(conn)?)
            })
            .await
    }

    /// Deletes sessions (and their refresh tokens) that ended, or could no
    /// longer be refreshed, before `before`; returns how many.
    pub async fn delete_finished(&self, before: NaiveDateTime) -> Result<usize, RepoError> {
        let mut deleted = 0;
        loop {
            let batch = self.delete_finished_batch(before).await?;
            deleted += batch;
            if batch < CLEANUP_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// At most [`CLEANUP_BATCH`] of them: a backlog never becomes one huge
    /// statement or a long lock. Two statements, no transaction: a session
    /// that is finished stays finished, and their refresh tokens go with
    /// them by the foreign key's cascade.
    async fn delete_finished_batch(&self, before: NaiveDateTime) -> Result<usize, RepoError> {
        self.db
            .write(move |conn| {
                let ids: Vec<String> = sessions::table
                    .filter(sessions::ended_at.lt(before))
                    .or_filter(sessions::refresh_expires_at.lt(before))
                    .or_filter(sessions::expires_at.lt(before))
                    .select(sessions::id)
                    .limit(CLEANUP_BATCH as i64)
                    .load(conn)?;
                Ok(
                    diesel::delete(sessions::table.filter(sessions::id.eq_any(&ids)))
                        .execute(conn)?,
                )
            })
            .await
    }
}

/// What starting a session came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Started,
    /// An operator locked the account: nothing was stored.
    Locked,
    /// The user is gone: nothing was stored.
    UserGone,
}

impl SessionRepository {
    /// Stores a new session with its first refresh token and `event`,
    /// unless the account is locked. The check and the insert are one
    /// transaction that first writes the user's row (a no-op update of
    /// `locked_at`, only where it is null): on PostgreSQL that waits for a
    /// concurrent lock's row lock and then sees its `locked_at`, and a lock
    /// that comes later waits for this transaction and then ends the
    /// session it stored; SQLite serialises the two writers anyway.
    pub async fn start_unless_locked(
        &self,
        session: SessionRecord,
        token: RefreshTokenRecord,
        event: EventRecord,
    ) -> Result<Start, RepoError> {
        use crate::schema::users;
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    let open =
                        Fixed::new(LOCK_UNLESS_LOCKED, ((&session.user_id).into_sql::<Text>(),))
                            .execute(conn)?;
                    if open == 0 {
                        let exists: Option<String> = users::table
                            .find(&session.user_id)
                            .select(users::id)
                            .first(conn)
                            .optional()?;
                        return Ok(match exists {
                            Some(_) => Start::Locked,
                            None => Start::UserGone,
                        });
                    }
                    diesel::insert_into(sessions::table)
                        .values(&session)
                        .execute(conn)?;
                    diesel::insert_into(refresh_tokens::table)
                        .values(&token)
                        .execute(conn)?;
                    insert_on(conn, &event)?;
                    Ok::<_, diesel::result::Error>(Start::Started)
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// Ends the user's sessions that `ending` selects and records the
    /// event `event_for` makes of how many ended, in one transaction (an
    /// operator's ending of every session). `None` if the user is gone.
    pub async fn end_recorded(
        &self,
        user_id: String,
        ending: SessionEnding,
        event_for: Box<dyn FnOnce(usize) -> EventRecord + Send>,
    ) -> Result<Option<(Ended, EventRecord)>, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    if !lock_user_on(conn, &user_id, ending.now)? {
                        return Ok(None);
                    }
                    let ended = end_on(conn, &user_id, &ending)?;
                    let event = event_for(ended.len());
                    insert_on(conn, &event)?;
                    Ok::<_, diesel::result::Error>(Some((ended, event)))
                })
                .map_err(RepoError::from)
            })
            .await
    }
}
