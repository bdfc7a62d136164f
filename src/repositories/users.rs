//! The `users` table.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::events::{insert_on, EventRecord};
use super::recovery_codes::delete_all_on;
use super::sessions::{end_on, Ended, SessionEnding};
use super::{lock_user_on, Batched, Database, RepoError};
use crate::db::AnyConnection;
use crate::schema::{auth_events, passkeys, recovery_codes, sessions, users};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub username_key: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A user and the counts of what they hold.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub user: UserRecord,
    pub passkeys: i64,
    pub recovery_codes: i64,
}

#[derive(Clone)]
pub struct UserRepository {
    db: Database,
    accounts: Batched<String, AccountRecord>,
}

impl UserRepository {
    pub fn new(db: Database) -> Self {
        let accounts = db.batched("accounts", accounts_on);
        UserRepository { db, accounts }
    }

    /// Inserts a user and the event recording it, together; a taken
    /// `username_key` is [`RepoError::AlreadyExists`] and stores nothing.
    pub async fn insert(&self, record: UserRecord, event: EventRecord) -> Result<(), RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    diesel::insert_into(users::table)
                        .values(&record)
                        .execute(conn)?;
                    insert_on(conn, &event)
                })?;
                Ok(())
            })
            .await
    }

    pub async fn find_by_key(&self, username_key: String) -> Result<Option<UserRecord>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(users::table
                    .filter(users::username_key.eq(username_key))
                    .select(UserRecord::as_select())
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    pub async fn find_by_id(&self, id: String) -> Result<Option<UserRecord>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(users::table
                    .find(id)
                    .select(UserRecord::as_select())
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    /// The user with how many passkeys and recovery codes they hold (what
    /// `/auth/me` and `/users/profile` show), read in a batch with the
    /// other reads of accounts waiting then (see [`Batched`]).
    pub async fn find_account(&self, id: String) -> Result<Option<AccountRecord>, RepoError> {
        self.accounts.get(id).await
    }

    /// Stores a new password hash with its event, and ends the sessions
    /// `ending` names, together; `None` if the user is gone, else the ids
    /// of the sessions ended.
    pub async fn update_password(
        &self,
        id: String,
        password_hash: String,
        event: EventRecord,
        ending: SessionEnding,
    ) -> Result<Option<Ended>, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    let updated = diesel::update(users::table.find(&id))
                        .set((
                            users::password_hash.eq(password_hash),
                            users::updated_at.eq(event.created_at),
                        ))
                        .execute(conn)?;
                    if updated == 0 {
                        return Ok(None);
                    }
                    insert_on(conn, &event)?;
                    end_on(conn, &id, &ending).map(Some)
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// Deletes the user with their passkeys and recovery codes, in one
    /// transaction. Their audit events stay, detached from the account
    /// (`user_id` null), and `event` (which names no user) records the
    /// deletion. `None` if the user is gone already, else the ids of the
    /// sessions that ended with the account.
    pub async fn delete_account(
        &self,
        id: String,
        event: EventRecord,
    ) -> Result<Option<Vec<String>>, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    // A write first: it takes SQLite's write lock, which a
                    // transaction that read first may be refused later.
                    diesel::update(auth_events::table.filter(auth_events::user_id.eq(&id)))
                        .set(auth_events::user_id.eq(None::<String>))
                        .execute(conn)?;
                    let live: Vec<String> = sessions::table
                        .filter(sessions::user_id.eq(&id))
                        .filter(sessions::ended_at.is_null())
                        .select(sessions::id)
                        .load(conn)?;
                    diesel::delete(sessions::table.filter(sessions::user_id.eq(&id)))
                        .execute(conn)?;
                    delete_all_on(conn, &id)?;
                    diesel::delete(passkeys::table.filter(passkeys::user_id.eq(&id)))
                        .execute(conn)?;
                    let deleted = diesel::delete(users::table.find(&id)).execute(conn)?;
                    if deleted == 0 {
                        return Ok(None);
                    }
                    insert_on(conn, &event)?;
                    Ok::<_, diesel::result::Error>(Some(live))
                })
                .map_err(RepoError::from)
            })
            .await
    }
}

/// What locking or unlocking an account came to.
#[derive(Debug)]
pub struct LockChange {
    /// Whether the account was in the other state (else nothing changed
    /// and no event was stored).
    pub changed: bool,
    /// The sessions that ended with the lock (none for an unlock).
    pub ended: Ended,
}

impl UserRepository {
    /// The user whose `username_key` this is, and when an operator locked
    /// the account (`None`: not locked).
    pub async fn find_with_lock_by_key(
        &self,
        username_key: String,
    ) -> Result<Option<(UserRecord, Option<NaiveDateTime>)>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(users::table
                    .filter(users::username_key.eq(username_key))
                    .select((UserRecord::as_select(), users::locked_at))
                    .first(conn)
                    .optional()?)
            })
            .await
    }

    /// Locks the account at `now` (`lock`) or unlocks it, recording `event`
    /// if that changed anything; a lock also ends every live session of the
    /// account (`ending`), in the same transaction, so that no session
    /// started before the lock survives it (a session start takes the same
    /// row lock and checks `locked_at`, see
    /// [`super::SessionRepository::start_unless_locked`]). `None` if the
    /// user is gone.
    pub async fn set_locked(
        &self,
        id: String,
        lock: bool,
        event: EventRecord,
        ending: Option<SessionEnding>,
    ) -> Result<Option<LockChange>, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction(|conn| {
                    // A write first: the row lock (PostgreSQL), the write
                    // lock (SQLite).
                    if !lock_user_on(conn, &id, event.created_at)? {
                        return Ok(None);
                    }
                    let target = users::table.find(&id);
                    let changed = if lock {
                        diesel::update(target.filter(users::locked_at.is_null()))
                            .set(users::locked_at.eq(Some(event.created_at)))
                            .execute(conn)?
                    } else {
                        diesel::update(target.filter(users::locked_at.is_not_null()))
                            .set(users::locked_at.eq(None::<NaiveDateTime>))
                            .execute(conn)?
                    } == 1;
                    if changed {
                        insert_on(conn, &event)?;
                    }
                    let ended = match &ending {
                        Some(ending) => end_on(conn, &id, ending)?,
                        None => Vec::new(),
                    };
                    Ok::<_, diesel::result::Error>(Some(LockChange { changed, ended }))
                })
                .map_err(RepoError::from)
            })
            .await
    }
}

/// The accounts of `ids` with their counts. One id (a batch of one: the
/// server is not busy) takes one statement with its counts as subselects
/// on the bound id, which Diesel prepares once per connection and keeps;
/// more take three statements for the lot.
fn accounts_on(
    conn: &mut AnyConnection,
    ids: Vec<String>,
) -> QueryResult<HashMap<String, AccountRecord>> {
    let accounts: Vec<AccountRecord> = if let [id] = ids.as_slice() {
        let passkey_count = passkeys::table
            .filter(passkeys::user_id.eq(id))
            .count()
            .single_value();
        let code_count = recovery_codes::table
            .filter(recovery_codes::user_id.eq(id))
            .count()
            .single_value();
        users::table
            .find(id)
            .select((UserRecord::as_select(), passkey_count, code_count))
            .first::<(UserRecord, Option<i64>, Option<i64>)>(conn)
            .optional()?
            .map(|(user, passkeys, recovery_codes)| AccountRecord {
                user,
                passkeys: passkeys.unwrap_or(0),
                recovery_codes: recovery_codes.unwrap_or(0),
            })
            .into_iter()
            .collect()
    } else {
        let found: Vec<UserRecord> = users::table
            .filter(users::id.eq_any(&ids))
            .select(UserRecord::as_select())
            .load(conn)?;
        let passkey_counts: HashMap<String, i64> = passkeys::table
            .filter(passkeys::user_id.eq_any(&ids))
            .group_by(passkeys::user_id)
            .select((passkeys::user_id, diesel::dsl::count(passkeys::id)))
            .load::<(String, i64)>(conn)?
            .into_iter()
            .collect();
        let code_counts: HashMap<String, i64> = recovery_codes::table
            .filter(recovery_codes::user_id.eq_any(&ids))
            .group_by(recovery_codes::user_id)
            .select((
                recovery_codes::user_id,
                diesel::dsl::count(recovery_codes::id),
            ))
            .load::<(String, i64)>(conn)?
            .into_iter()
            .collect();
        found
            .into_iter()
            .map(|user| AccountRecord {
                passkeys: passkey_counts.get(&user.id).copied().unwrap_or(0),
                recovery_codes: code_counts.get(&user.id).copied().unwrap_or(0),
                user,
            })
            .collect()
    };
    Ok(accounts
        .into_iter()
        .map(|account| (account.user.id.clone(), account))
        .collect())
}
