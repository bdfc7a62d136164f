//! The `signing_keys` table: every access-token signing key, in generations.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Database, RepoError};
use crate::schema::signing_keys;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys, treat_none_as_default_value = false)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub generation: i64,
    pub algorithm: String,
    pub public_jwk: String,
    /// Sealed or plain (see `services::signing::sealing`); never logged.
    pub private_key: String,
    pub created_at: NaiveDateTime,
    pub activates_at: NaiveDateTime,
    pub retired_at: Option<NaiveDateTime>,
}

#[derive(Clone)]
pub struct SigningKeyRepository {
    db: Database,
}

impl SigningKeyRepository {
    pub fn new(db: Database) -> Self {
        SigningKeyRepository { db }
    }

    /// Every key, oldest generation first.
    pub async fn all(&self) -> Result<Vec<SigningKeyRecord>, RepoError> {
        self.db
            .run(|conn| {
                Ok(signing_keys::table
                    .order(signing_keys::generation.asc())
                    .select(SigningKeyRecord::as_select())
                    .load(conn)?)
            })
            .await
    }

    /// Adds the first key (generation 1). [`RepoError::AlreadyExists`] when
    /// there is one already: nodes starting together create exactly one.
    pub async fn add_first(&self, mut record: SigningKeyRecord) -> Result<(), RepoError> {
        record.generation = 1;
        self.db
            .write(move |conn| {
                diesel::insert_into(signing_keys::table)
                    .values(&record)
                    .execute(conn)?;
                Ok(())
            })
            .await
    }

    /// Adds `record` as the generation after the newest one, retiring that
    /// one when `record` activates; returns the generation.
    /// [`RepoError::AlreadyExists`] when another rotation took it first.
    pub async fn add_next(&self, mut record: SigningKeyRecord) -> Result<i64, RepoError> {
        self.db
            .write(move |conn| {
                conn.transaction::<_, diesel::result::Error, _>(|conn| {
                    // A write first: it takes SQLite's write lock, which a
                    // transaction that read first may be refused later.
                    // Only the newest key is not retired yet.
                    diesel::update(signing_keys::table.filter(signing_keys::retired_at.is_null()))
                        .set(signing_keys::retired_at.eq(Some(record.activates_at)))
                        .execute(conn)?;
                    let newest: Option<i64> = signing_keys::table
                        .select(diesel::dsl::max(signing_keys::generation))
                        .first(conn)?;
                    record.generation = newest.unwrap_or(0) + 1;
                    diesel::insert_into(signing_keys::table)
                        .values(&record)
                        .execute(conn)?;
                    Ok(record.generation)
                })
                .map_err(RepoError::from)
            })
            .await
    }

    /// Replaces a key's stored private half, if it is still `expected`
    /// (for sealing keys stored before encryption was configured).
    pub async fn replace_private_key(
        &self,
        kid: String,
        expected: String,
        replacement: String,
    ) -> Result<bool, RepoError> {
        self.db
            .write(move |conn| {
                let rows = diesel::update(
                    signing_keys::table
                        .filter(signing_keys::kid.eq(&kid))
                        .filter(signing_keys::private_key.eq(&expected)),
                )
                .set(signing_keys::private_key.eq(&replacement))
                .execute(conn)?;
                Ok(rows == 1)
            })
            .await
    }
}
