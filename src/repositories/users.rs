//! The `users` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::events::{insert_on, EventRecord};
use super::recovery_codes::delete_all_on;
use super::sessions::{end_on, Ended, SessionEnding};
use super::{Database, RepoError};
use crate::schema::{auth_events, passkeys, sessions, users};

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

#[derive(Clone)]
pub struct UserRepository {
    db: Database,
}

impl UserRepository {
    pub fn new(db: Database) -> Self {
        UserRepository { db }
    }

    /// Inserts a user and the event recording it, together; a taken
    /// `username_key` is [`RepoError::AlreadyExists`] and stores nothing.
    pub async fn insert(&self, record: UserRecord, event: EventRecord) -> Result<(), RepoError> {
        self.db
            .run(move |conn| {
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
            .run(move |conn| {
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
            .run(move |conn| {
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
