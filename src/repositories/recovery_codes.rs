//! The `recovery_codes` table: one row per unspent code, holding its hash.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::events::{insert_on, EventRecord};
use super::sessions::{end_on, Ended, SessionEnding};
use super::{lock_user_on, Database, RepoError};
use crate::db::AnyConnection;
use crate::schema::{passkeys, recovery_codes};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = recovery_codes)]
pub struct RecoveryCodeRecord {
    pub id: String,
    pub user_id: String,
    pub code_hash: String,
    pub created_at: NaiveDateTime,
}

/// A new set of codes for one user, and the event recording it.
#[derive(Debug, Clone)]
pub struct CodeSet {
    pub records: Vec<RecoveryCodeRecord>,
    pub event: EventRecord,
}

/// Replaces `user_id`'s codes with `set`, inside the caller's transaction.
pub(super) fn replace_on(
    conn: &mut AnyConnection,
    user_id: &str,
    set: &CodeSet,
) -> QueryResult<()> {
    delete_all_on(conn, user_id)?;
    // One row at a time: a multi-row insert does not compile for the
    // backend-agnostic connection (SQLite has no DEFAULT keyword).
    for record in &set.records {
        diesel::insert_into(recovery_codes::table)
            .values(record)
            .execute(conn)?;
    }
    insert_on(conn, &set.event)
}

/// Deletes every code of `user_id`, inside the caller's transaction.
pub(super) fn delete_all_on(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)
}

/// What replacing a user's codes came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    Done,
    /// The account has no passkey: codes exist only to get back to one.
    NoPasskeys,
    UserGone,
}

#[derive(Clone)]
pub struct RecoveryCodeRepository {
    db: Database,
}

impl RecoveryCodeRepository {
    pub fn new(db: Database) -> Self {
        RecoveryCodeRepository { db }
    }

    /// Replaces the user's codes (the old ones stop working at once), if
    /// the account has a passkey.
    pub async fn replace(
        &self,
        user_id: String,
        set: CodeSet,
        now: NaiveDateTime,
    ) -> Result<Replaced, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction::<_, diesel::result::Error, _>(|conn| {
                    if !lock_user_on(conn, &user_id, now)? {
                        return Ok(Replaced::UserGone);
                    }
                    let passkey_count: i64 = passkeys::table
                        .filter(passkeys::user_id.eq(&user_id))
                        .count()
                        .get_result(conn)?;
                    if passkey_count == 0 {
                        return Ok(Replaced::NoPasskeys);
                    }
                    replace_on(conn, &user_id, &set)?;
                    Ok(Replaced::Done)
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// Any one of the user's code hashes (they share salt and parameters).
    pub async fn sample_hash(&self, user_id: String) -> Result<Option<String>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(recovery_codes::table
                    .filter(recovery_codes::user_id.eq(user_id))
                    .select(recovery_codes::code_hash)
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    /// Spends the user's code whose hash is `code_hash`, recording `event`
    /// and ending the sessions `ending` names with it: `None` (and nothing
    /// else) if no such code is left, else the ids of the sessions ended. A
    /// conditional delete, so of concurrent uses of one code one wins.
    pub async fn spend(
        &self,
        user_id: String,
        code_hash: String,
        event: EventRecord,
        ending: SessionEnding,
    ) -> Result<Option<Ended>, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    let spent = diesel::delete(
                        recovery_codes::table
                            .filter(recovery_codes::user_id.eq(&user_id))
                            .filter(recovery_codes::code_hash.eq(&code_hash)),
                    )
                    .execute(conn)?;
                    if spent == 0 {
                        return Ok(None);
                    }
                    insert_on(conn, &event)?;
                    end_on(conn, &user_id, &ending).map(Some)
                })
                .map_err(RepoError::from)
            })
            .await
    }

    pub async fn count_for_user(&self, user_id: String) -> Result<i64, RepoError> {
        self.db
            .run(move |conn| {
                Ok(recovery_codes::table
                    .filter(recovery_codes::user_id.eq(user_id))
                    .count()
                    .get_result(conn)?)
            })
            .await
    }
}
