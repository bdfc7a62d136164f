//! The `users` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::events::{insert_on, EventRecord};
use super::recovery_codes::delete_all_on;
use super::{Database, RepoError};
use crate::schema::{auth_events, passkeys, users};

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

    /// Stores a new password hash with its event; `false` if the user is gone.
    pub async fn update_password(
        &self,
        id: String,
        password_hash: String,
        event: EventRecord,
    ) -> Result<bool, RepoError> {
        self.db
            .run(move |conn| {
                conn.transaction(|conn| {
                    let updated = diesel::update(users::table.find(&id))
                        .set((
                            users::password_hash.eq(password_hash),
                            users::updated_at.eq(event.created_at),
                        ))
                        .execute(conn)?;
                    if updated == 1 {
                        insert_on(conn, &event)?;
                    }
                    Ok::<_, diesel::result::Error>(updated == 1)
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// Deletes the user with their passkeys and recovery codes, in one
    /// transaction. Their audit events stay, detached from the account
    /// (`user_id` null), and `event` (which names no user) records the
    /// deletion. `false` if the user is gone already.
    pub async fn delete_account(&self, id: String, event: EventRecord) -> Result<bool, RepoError> {
        self.db
            .run(move |conn| {
                conn.transaction(|conn| {
                    diesel::update(auth_events::table.filter(auth_events::user_id.eq(&id)))
                        .set(auth_events::user_id.eq(None::<String>))
                        .execute(conn)?;
                    delete_all_on(conn, &id)?;
                    diesel::delete(passkeys::table.filter(passkeys::user_id.eq(&id)))
                        .execute(conn)?;
                    let deleted = diesel::delete(users::table.find(&id)).execute(conn)?;
                    if deleted == 1 {
                        insert_on(conn, &event)?;
                    }
                    Ok::<_, diesel::result::Error>(deleted == 1)
                })
                .map_err(RepoError::from)
            })
            .await
    }
}
