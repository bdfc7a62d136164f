//! Diesel queries and nothing else, one file per table. Every call runs on
//! the blocking thread pool, never on the async workers.

pub mod events;
pub mod passkeys;
pub mod recovery_codes;
pub mod sessions;
pub mod signing_keys;
pub mod users;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::db::{is_connection_loss, AnyConnection, ConnectionLost, DbPool};
use crate::schema::users as user_rows;

pub use events::{EventRecord, EventRepository};
pub use passkeys::{PasskeyRecord, PasskeyRepository};
pub use recovery_codes::{CodeSet, RecoveryCodeRecord, RecoveryCodeRepository};
pub use sessions::{SessionRecord, SessionRepository};
pub use signing_keys::{SigningKeyRecord, SigningKeyRepository};
pub use users::{AccountRecord, UserRecord, UserRepository};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A unique constraint refused the row.
    #[error("a row with this key already exists")]
    AlreadyExists,
    /// No connection could be had (pool timeout, database down).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(DieselError),
    #[error("blocking task failed: {0}")]
    Blocking(String),
}

impl From<DieselError> for RepoError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                RepoError::AlreadyExists
            }
            lost if is_connection_loss(&lost) => RepoError::Unavailable(lost.to_string()),
            other => RepoError::Query(other),
        }
    }
}

/// Takes the user's row lock for the rest of the caller's transaction (by
/// touching `updated_at`), so that what the transaction then reads of the
/// user's passkeys and codes cannot change under it: PostgreSQL holds the
/// row lock until commit, and SQLite's write lock serialises writers anyway.
/// `false` if the user is gone.
pub(crate) fn lock_user_on(
    conn: &mut AnyConnection,
    user_id: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::update(user_rows::table.find(user_id))
        .set(user_rows::updated_at.eq(now))
        .execute(conn)
        .map(|rows| rows == 1)
}

/// The pool, and the one way repositories reach it.
#[derive(Clone)]
pub struct Database {
    pool: DbPool,
    /// Queries waiting for a connection now (r2d2 does not tell).
    waiting: Arc<AtomicUsize>,
}

/// The pool's connections now, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub in_use: u32,
    pub idle: u32,
    pub waiting: usize,
}

impl Database {
    pub fn new(pool: DbPool) -> Self {
        Database {
            pool,
            waiting: Arc::default(),
        }
    }

    pub fn pool_status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus {
            in_use: state.connections - state.idle_connections,
            idle: state.idle_connections,
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// A round trip to the database (for `/readyz`).
    pub async fn ping(&self) -> Result<(), RepoError> {
        self.run(|conn| {
            diesel::connection::SimpleConnection::batch_execute(conn, "SELECT 1")?;
            Ok(())
        })
        .await
    }

    /// Runs `query` with a pooled connection on the blocking thread pool.
    /// What the query's outcome says of the connection goes back to the
    /// pool with it: a lost connection is replaced, not reused.
    pub async fn run<T, F>(&self, query: F) -> Result<T, RepoError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, RepoError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let waiting = self.waiting.clone();
        actix_web::web::block(move || {
            waiting.fetch_add(1, Ordering::Relaxed);
            let checked_out = pool.get();
            waiting.fetch_sub(1, Ordering::Relaxed);
            let mut tracked = checked_out.map_err(|e| RepoError::Unavailable(e.to_string()))?;
            let result = query(tracked.conn());
            tracked.note(match &result {
                Err(RepoError::Unavailable(_)) => Err(ConnectionLost),
                // A refused statement is an answer too.
                _ => Ok(()),
            });
            result
        })
        .await
        .map_err(|e| RepoError::Blocking(e.to_string()))?
    }
}
