//! The `passkeys` table. Every query that takes a passkey id also takes the
//! owner's user id, so no query can touch another user's passkey.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text, Timestamp};

use super::events::{insert_on, EventRecord};
use super::prepared::{self, Fixed};
use super::recovery_codes::{delete_all_on, replace_on, CodeSet};
use super::sessions::{end_on, Ended, SessionEnding};
use super::{lock_user_on, Batched, Database, RepoError, WriteLock};
use crate::db::{each_backend, AnyConnection};
use crate::schema::passkeys;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = passkeys, treat_none_as_default_value = false)]
pub struct PasskeyRecord {
    pub id: String,
    pub user_id: String,
    pub credential_id: String,
    pub credential: String,
    pub sign_count: i64,
    pub transports: String,
    pub nickname: String,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    /// What the client reported through `credProps` (`None`: nothing).
    pub discoverable: Option<bool>,
}

/// What a verified assertion stores: its counter, backup flags and time
/// of use. The counter and the flags live in their columns only (the
/// stored credential keeps what registration gave it, and a read patches
/// these in); the write is a compare-and-set that applies only while the
/// stored counter is below `sign_count` (or both are zero), so no two
/// assertions with one counter value are both accepted.
#[derive(Debug, Clone)]
pub struct PasskeyUse {
    pub id: String,
    pub user_id: String,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub used_at: NaiveDateTime,
}

/// What an enrolment came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolment {
    Enrolled {
        first: bool,
    },
    /// The account has a passkey and the caller is not at the full level.
    StepUpRequired,
    /// This is the account's first passkey, but no codes were given.
    CodesNeeded,
    UserGone,
}

#[derive(Clone)]
pub struct PasskeyRepository {
    db: Database,
    owned: Batched<String, Vec<PasskeyRecord>>,
}

impl PasskeyRepository {
    pub fn new(db: Database) -> Self {
        let owned = db.batched("passkeys", owned_on);
        PasskeyRepository { db, owned }
    }

    /// Enrols a passkey with its event, under the enrolment rule: an
    /// account that has a passkey takes another only from a caller at the
    /// full level (`caller_full`). The account's first passkey comes with
    /// `first_codes`, its recovery codes. Checked and written in one
    /// transaction under the user's row lock, so a passkey enrolled
    /// concurrently is seen. A credential id already stored is
    /// [`RepoError::AlreadyExists`] and stores nothing.
    pub async fn enrol(
        &self,
        record: PasskeyRecord,
        event: EventRecord,
        caller_full: bool,
        first_codes: Option<CodeSet>,
    ) -> Result<Enrolment, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction::<_, diesel::result::Error, _>(|conn| {
                    if !lock_user_on(conn, &record.user_id, record.created_at)? {
                        return Ok(Enrolment::UserGone);
                    }
                    let existing: i64 = passkeys::table
                        .filter(passkeys::user_id.eq(&record.user_id))
                        .count()
                        .get_result(conn)?;
                    let first = existing == 0;
                    if !first && !caller_full {
                        return Ok(Enrolment::StepUpRequired);
                    }
                    let codes = match (first, &first_codes) {
                        (true, None) => return Ok(Enrolment::CodesNeeded),
                        (true, Some(codes)) => Some(codes),
                        (false, _) => None,
                    };
                    diesel::insert_into(passkeys::table)
                        .values(&record)
                        .execute(conn)?;
                    insert_on(conn, &event)?;
                    if let Some(codes) = codes {
                        replace_on(conn, &record.user_id, codes)?;
                    }
                    Ok(Enrolment::Enrolled { first })
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// Whether the user has at least one passkey.
    pub async fn any_for_user(&self, user_id: String) -> Result<bool, RepoError> {
        self.db
            .run(move |conn| {
                Ok(passkeys::table
                    .filter(passkeys::user_id.eq(user_id))
                    .select(passkeys::id)
                    .first::<String>(conn)
                    .optional()?
                    .is_some())
            })
            .await
    }

    /// The user's passkeys, oldest first, read in a batch with the other
    /// such reads waiting then (see [`Batched`]).
    pub async fn list_for_user(&self, user_id: String) -> Result<Vec<PasskeyRecord>, RepoError> {
        Ok(self.owned.get(user_id).await?.unwrap_or_default())
    }

    pub async fn find_by_credential_for_user(
        &self,
        user_id: String,
        credential_id: String,
    ) -> Result<Option<PasskeyRecord>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(passkeys::table
                    .filter(passkeys::user_id.eq(user_id))
                    .filter(passkeys::credential_id.eq(credential_id))
                    .select(PasskeyRecord::as_select())
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    /// Renames the caller's passkey and records `event`, returning the
    /// passkey; `None` (and no event) if the caller has no such passkey.
    pub async fn rename(
        &self,
        user_id: String,
        id: String,
        nickname: String,
        event: EventRecord,
    ) -> Result<Option<PasskeyRecord>, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    let owned = passkeys::table
                        .filter(passkeys::id.eq(&id))
                        .filter(passkeys::user_id.eq(&user_id));
                    let updated = diesel::update(owned)
                        .set(passkeys::nickname.eq(nickname))
                        .execute(conn)?;
                    if updated == 0 {
                        return Ok(None);
                    }
                    insert_on(conn, &event)?;
                    owned
                        .select(PasskeyRecord::as_select())
                        .first(conn)
                        .optional()
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// Deletes the caller's passkey and records `event`; `None` (and no
    /// event) if the caller has no such passkey. Deleting the last passkey
    /// also deletes the recovery codes (recording `codes_event`): they exist
    /// to get back to a passkey. `Some(true)` when that happened.
    pub async fn delete(
        &self,
        user_id: String,
        id: String,
        event: EventRecord,
        codes_event: EventRecord,
    ) -> Result<Option<bool>, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    lock_user_on(conn, &user_id, event.created_at)?;
                    let deleted = diesel::delete(
                        passkeys::table
                            .filter(passkeys::id.eq(id))
                            .filter(passkeys::user_id.eq(&user_id)),
                    )
                    .execute(conn)?;
                    if deleted == 0 {
                        return Ok(None);
                    }
                    insert_on(conn, &event)?;
                    let left: i64 = passkeys::table
                        .filter(passkeys::user_id.eq(&user_id))
                        .count()
                        .get_result(conn)?;
                    let codes_gone = left == 0 && delete_all_on(conn, &user_id)? > 0;
                    if codes_gone {
                        insert_on(conn, &codes_event)?;
                    }
                    Ok::<_, diesel::result::Error>(Some(codes_gone))
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// A sign-in assertion's whole trip to the database, on one query
    /// thread and one connection (the write on SQLite's writer): reads the
    /// user's passkey with this credential id, hands it (or `None`) to
    /// `check`, which verifies the assertion there (signature checks are
    /// CPU work an async worker must not do) and says what to store, then
    /// stores it with its event (see [`record_use_on`]). No transaction (and
    /// no write lock) is held while `check` runs.
    pub async fn check_and_record_use<E, F>(
        &self,
        user_id: String,
        credential_id: String,
        check: F,
    ) -> Result<CheckedUse<E>, RepoError>
    where
        F: FnOnce(Option<PasskeyRecord>) -> Result<(PasskeyUse, EventRecord), E> + Send + 'static,
        E: Send + 'static,
    {
        self.db
            .run_with_lock(move |conn, writer| {
                let record = passkeys::table
                    .filter(passkeys::user_id.eq(user_id))
                    .filter(passkeys::credential_id.eq(credential_id))
                    .select(PasskeyRecord::as_select())
                    .first(conn)
                    .optional()?;
                store_checked(conn, writer, check(record))
            })
            .await
    }

    /// A step-up assertion's trip to the database: `check` verifies it on
    /// the query thread against the credential the ceremony offered (its
    /// state holds the passkey as it was when the options were made), and
    /// what it says to store is stored with its event (see
    /// [`record_use_on`]): no read comes first, the compare-and-set is
    /// what holds the counter to the stored one.
    pub async fn verify_and_record_use<E, F>(&self, check: F) -> Result<CheckedUse<E>, RepoError>
    where
        F: FnOnce() -> Result<(PasskeyUse, EventRecord), E> + Send + 'static,
        E: Send + 'static,
    {
        self.db
            .run_with_lock(move |conn, writer| store_checked(conn, writer, check()))
            .await
    }
}

/// Stores what a check said to store, on the writer (see
/// [`record_use_on`]), or passes its refusal on, storing nothing.
fn store_checked<E>(
    conn: &mut AnyConnection,
    writer: &WriteLock,
    checked: Result<(PasskeyUse, EventRecord), E>,
) -> Result<CheckedUse<E>, RepoError> {
    match checked {
        Ok((used, event)) => writer.write_on(conn, |conn| Ok(record_use_on(conn, &used, event)?)),
        Err(refusal) => Ok(CheckedUse::Refused(refusal)),
    }
}

/// What an assertion's trip to the database came to.
#[derive(Debug)]
pub enum CheckedUse<E> {
    /// Stored, with the event that records it.
    Recorded(EventRecord),
    /// `check` refused the assertion; nothing was stored.
    Refused(E),
    /// The passkey's stored counter is not below the assertion's (and not
    /// both zero): nothing was stored.
    NotNewer,
    /// The user has no such passkey (any more); nothing was stored.
    Gone,
}

/// An assertion's compare-and-set (fixed text: see [`super::prepared`]):
/// the counter moves only forwards, or stays at zero for an authenticator
/// without one; a backup-eligible credential stays so.
const RECORD_USE: &str = "UPDATE passkeys SET sign_count = ?, \
    backup_eligible = (backup_eligible OR ?), backup_state = ?, last_used_at = ? \
    WHERE id = ? AND user_id = ? AND (sign_count < ? OR (sign_count = 0 AND ? = 0))";

/// The compare-and-set of a passkey's counter, flags and last use, and its
/// event, in one transaction; nothing is stored unless the counter moved
/// on, and then whether the passkey is still there says why. Every
/// step-up and passkey sign-in runs it, so it runs on the backend's own
/// connection (see [`each_backend`]).
fn record_use_on<E>(
    conn: &mut AnyConnection,
    used: &PasskeyUse,
    event: EventRecord,
) -> Result<CheckedUse<E>, diesel::result::Error> {
    each_backend!(conn, conn => prepared::transaction(conn, |conn| {
        let updated = Fixed::new(
            RECORD_USE,
            (
                used.sign_count.into_sql::<BigInt>(),
                used.backup_eligible.into_sql::<Bool>(),
                used.backup_state.into_sql::<Bool>(),
                used.used_at.into_sql::<Timestamp>(),
                (&used.id).into_sql::<Text>(),
                (&used.user_id).into_sql::<Text>(),
                used.sign_count.into_sql::<BigInt>(),
                used.sign_count.into_sql::<BigInt>(),
            ),
        )
        .execute(conn)?;
        if updated == 1 {
            insert_on(conn, &event)?;
            return Ok(CheckedUse::Recorded(event));
        }
        let still_there = passkeys::table
            .filter(passkeys::id.eq(&used.id))
            .filter(passkeys::user_id.eq(&used.user_id))
            .select(passkeys::id)
            .first::<String>(conn)
            .optional()?
            .is_some();
        Ok(if still_there {
            CheckedUse::NotNewer
        } else {
            CheckedUse::Gone
        })
    }))
}

/// What an operator's reset of an account's passkeys removed.
#[derive(Debug)]
pub struct PasskeyReset {
    pub passkeys: usize,
    pub recovery_codes: usize,
    /// The sessions that ended with it.
    pub ended: Ended,
    /// The event recording it (stored).
    pub event: EventRecord,
}

impl PasskeyRepository {
    /// Deletes every passkey and recovery code of the user and ends the
    /// sessions `ending` selects, in one transaction under the user's row
    /// lock, recording the event `event_for` makes of how many passkeys
    /// and codes went. The account is then one without a passkey: its next
    /// passkey is a first one, enrolled after a recent password login, and
    /// comes with new codes. `None` if the user is gone.
    pub async fn reset_for_user(
        &self,
        user_id: String,
        now: NaiveDateTime,
        event_for: Box<dyn FnOnce(usize, usize) -> EventRecord + Send>,
        ending: SessionEnding,
    ) -> Result<Option<PasskeyReset>, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    if !lock_user_on(conn, &user_id, now)? {
                        return Ok(None);
                    }
                    let passkeys =
                        diesel::delete(passkeys::table.filter(passkeys::user_id.eq(&user_id)))
                            .execute(conn)?;
                    let recovery_codes = delete_all_on(conn, &user_id)?;
                    let event = event_for(passkeys, recovery_codes);
                    insert_on(conn, &event)?;
                    let ended = end_on(conn, &user_id, &ending)?;
                    Ok::<_, diesel::result::Error>(Some(PasskeyReset {
                        passkeys,
                        recovery_codes,
                        ended,
                        event,
                    }))
                })
                .map_err(RepoError::from)
            })
            .await
    }
}

/// The passkeys of each of `user_ids` that has any, oldest first.
fn owned_on(
    conn: &mut AnyConnection,
    user_ids: Vec<String>,
) -> QueryResult<HashMap<String, Vec<PasskeyRecord>>> {
    let one_at_a_time = user_ids.len() == 1 || crate::db::is_sqlite(conn);
    // Every step-up's options read this: on the backend's own connection
    // (the selection is typed by the backend, so it is built in each arm).
    let oldest_first = || passkeys::table.order((passkeys::created_at.asc(), passkeys::id.asc()));
    let rows: Vec<PasskeyRecord> = each_backend!(conn, conn => if one_at_a_time {
        // One user at a time: a statement Diesel keeps prepared. An `IN`
        // list is prepared again for every batch (its length varies), which
        // on SQLite, with no round trip to save, costs more than the reads.
        let mut rows = Vec::new();
        for user_id in &user_ids {
            rows.extend(
                oldest_first()
                    .filter(passkeys::user_id.eq(user_id))
                    .select(PasskeyRecord::as_select())
                    .load(conn)?,
            );
        }
        rows
    } else {
        // PostgreSQL: one round trip for the batch.
        oldest_first()
            .filter(passkeys::user_id.eq_any(&user_ids))
            .select(PasskeyRecord::as_select())
            .load(conn)?
    });
    let mut owned: HashMap<String, Vec<PasskeyRecord>> = HashMap::new();
    for row in rows {
        owned.entry(row.user_id.clone()).or_default().push(row);
    }
    Ok(owned)
}
