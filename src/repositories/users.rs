//! The `users` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::events::{insert_on, EventRecord};
use super::{Database, RepoError};
use crate::schema::users;

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
}
