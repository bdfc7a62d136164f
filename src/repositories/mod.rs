//! Diesel queries and nothing else, one file per table. Every call runs on
//! the database's query threads ([`crate::threads`]), never on the async
//! workers.

pub mod batched;
pub mod events;
pub mod passkeys;
pub mod prepared;
pub mod recovery_codes;
pub mod sessions;
pub mod signing_keys;
pub mod users;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::db::{is_connection_loss, AnyConnection, ConnectionLost, DbPool};
use crate::schema::users as user_rows;
use crate::threads::ThreadPool;

pub use batched::{BatchCounts, Batched};
pub use events::{EventRecord, EventRepository};
pub use passkeys::{PasskeyRecord, PasskeyRepository};
pub use recovery_codes::{CodeSet, RecoveryCodeRecord, RecoveryCodeRepository};
pub use sessions::{SessionRecord, SessionRepository};
pub use signing_keys::{SigningKeyRecord, SigningKeyRepository};
pub use users::{AccountRecord, UserRecord, UserRepository};

/// Keys in one batched read at most: bounds a statement's parameters.
const BATCH_MAX_KEYS: usize = 64;

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

impl RepoError {
    /// The same failure for another caller: what several readers of one
    /// batch each get (the database's own error is not `Clone`, so a
    /// failed statement reaches them as its message).
    pub fn copy(&self) -> RepoError {
        match self {
            RepoError::AlreadyExists => RepoError::AlreadyExists,
            RepoError::Unavailable(cause) => RepoError::Unavailable(cause.clone()),
            RepoError::Query(err) => RepoError::Blocking(format!("batched read failed: {err}")),
            RepoError::Blocking(cause) => RepoError::Blocking(cause.clone()),
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
///
/// A query waits for its turn here, in async code, before it goes to a
/// query thread ([`crate::threads`]): at most as many queries as the pool
/// has connections are given to the threads at once, so none of them
/// sleeps there waiting for a connection. On SQLite, which has one writer
/// at a time, writes also take [`WriteLock`] first, so they queue in this
/// process instead of meeting SQLite's busy lock, whose retry sleeps (1 ms,
/// 2 ms, 5 ms, …) cost wake-ups and latency. (Other processes on the same
/// file still meet it, and wait up to `busy_timeout`.)
#[derive(Clone)]
pub struct Database {
    pool: DbPool,
    /// The threads queries run on (see [`crate::threads`]).
    threads: ThreadPool,
    /// One per pooled connection.
    turns: Arc<tokio::sync::Semaphore>,
    writer: WriteLock,
    /// Queries waiting for a connection now (r2d2 does not tell).
    waiting: Arc<AtomicUsize>,
    /// The counts of each kind of batched read made on this pool, by name.
    batched: Arc<Mutex<Vec<NamedCounts>>>,
}

/// The counts of one kind of batched read, by its metrics name.
type NamedCounts = (&'static str, Arc<BatchCounts>);

/// SQLite's one writer, taken in this process (see [`Database`]), and the
/// connection every write runs on: one connection of the pool, taken at
/// the first write and kept. SQLite empties a connection's page cache
/// whenever another connection has written since its last transaction;
/// with every write on one connection, the writer's cache (and its
/// statement cache of every write) stays warm. A no-op on PostgreSQL,
/// whose writers wait for each other row by row, each on its own
/// connection.
#[derive(Clone)]
pub struct WriteLock {
    pool: DbPool,
    /// `None` until the first write, and again after a write found the
    /// connection lost or left it unusable (the pool then discards it).
    writer: Arc<Mutex<Option<PooledConnection>>>,
}

type PooledConnection = diesel::r2d2::PooledConnection<crate::db::ConnectionManager>;

impl WriteLock {
    fn new(pool: DbPool) -> Self {
        WriteLock {
            pool,
            writer: Arc::default(),
        }
    }

    /// Runs `write` holding the lock, on SQLite's writer connection (or
    /// on `conn`, the caller's: on PostgreSQL, and on SQLite with a pool
    /// of one connection, which the writer cannot take for its own).
    pub fn write_on<T>(
        &self,
        conn: &mut AnyConnection,
        write: impl FnOnce(&mut AnyConnection) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        if !crate::db::is_sqlite(conn) {
            return write(conn);
        }
        let mut slot = self.slot();
        if self.pool.max_size() < 2 {
            return write(conn);
        }
        let writer = match slot.as_mut() {
            Some(writer) => writer,
            None => slot.insert(
                self.pool
                    .get()
                    .map_err(|e| RepoError::Unavailable(e.to_string()))?,
            ),
        };
        let result = write(writer.conn());
        let outcome = connection_outcome(&result);
        writer.note(outcome);
        if outcome.is_err() || diesel::r2d2::R2D2Connection::is_broken(writer.conn()) {
            // Back to the pool, which drops it; the next write takes another.
            *slot = None;
        }
        result
    }

    /// The writer's slot. A write that panicked may have left its
    /// transaction open on the connection: after one, the connection goes
    /// back to the pool (which discards a connection in a transaction) and
    /// the next write takes another.
    fn slot(&self) -> MutexGuard<'_, Option<PooledConnection>> {
        match self.writer.lock() {
            Ok(slot) => slot,
            Err(poisoned) => {
                let mut slot = poisoned.into_inner();
                *slot = None;
                self.writer.clear_poison();
                slot
            }
        }
    }
}

/// What a unit of work's result says of its connection: lost when the
/// database was unreachable through it; a refused statement is an answer
/// too.
fn connection_outcome<T>(result: &Result<T, RepoError>) -> Result<(), ConnectionLost> {
    match result {
        Err(RepoError::Unavailable(_)) => Err(ConnectionLost),
        _ => Ok(()),
    }
}

/// The pool's connections now, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub in_use: u32,
    pub idle: u32,
    pub waiting: usize,
}

impl Database {
    /// The pool, with the threads its queries run on (see
    /// [`crate::db::query_threads`] for how many).
    pub fn new(pool: DbPool, threads: ThreadPool) -> Self {
        let connections = pool.max_size() as usize;
        Database {
            writer: WriteLock::new(pool.clone()),
            pool,
            threads,
            turns: Arc::new(tokio::sync::Semaphore::new(connections)),
            waiting: Arc::default(),
            batched: Arc::default(),
        }
    }

    /// Each kind of batched read (see [`Database::batched`]) with its
    /// (reads answered, batches loaded) so far, for the metrics.
    pub fn batched_reads(&self) -> Vec<(&'static str, u64, u64)> {
        let kinds = self.batched.lock().unwrap_or_else(|e| e.into_inner());
        kinds
            .iter()
            .map(|(name, counts)| {
                let (reads, batches) = counts.get();
                (*name, reads, batches)
            })
            .collect()
    }

    pub fn pool_status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus {
            in_use: state.connections - state.idle_connections,
            idle: state.idle_connections,
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// A read by key, batched (see [`Batched`]): `load` reads the values of
    /// a batch of distinct keys on one pooled connection, in one blocking
    /// trip. At most half the query threads serve one kind of batched read
    /// at once, so the other queries keep theirs. `name` labels its
    /// counts in the metrics.
    pub fn batched<K, V, F>(&self, name: &'static str, load: F) -> Batched<K, V>
    where
        K: Eq + Hash + Clone + Send + 'static,
        V: Clone + Send + 'static,
        F: Fn(&mut AnyConnection, Vec<K>) -> QueryResult<HashMap<K, V>>
            + Copy
            + Send
            + Sync
            + 'static,
    {
        let db = self.clone();
        let limit = (self.threads.threads() / 2).max(1);
        let reads = Batched::new(
            limit,
            BATCH_MAX_KEYS,
            Arc::new(move |keys| {
                let db = db.clone();
                Box::pin(async move { db.run(move |conn| Ok(load(conn, keys)?)).await })
            }),
        );
        self.batched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, reads.counts()));
        reads
    }

    /// A round trip to the database (for `/readyz`).
    pub async fn ping(&self) -> Result<(), RepoError> {
        self.run(|conn| {
            diesel::connection::SimpleConnection::batch_execute(conn, "SELECT 1")?;
            Ok(())
        })
        .await
    }

    /// Runs `query`, which only reads, with a pooled connection on one of
    /// the query threads.
    pub async fn run<T, F>(&self, query: F) -> Result<T, RepoError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, RepoError> + Send + 'static,
        T: Send + 'static,
    {
        self.run_with_lock(|conn, _| query(conn)).await
    }

    /// Runs `query`, which writes, as [`Database::run`] does, holding
    /// SQLite's [`WriteLock`] throughout.
    pub async fn write<T, F>(&self, query: F) -> Result<T, RepoError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, RepoError> + Send + 'static,
        T: Send + 'static,
    {
        self.run_with_lock(|conn, writer| writer.write_on(conn, query))
            .await
    }

    /// Runs `query` as [`Database::run`] does, handing it the
    /// [`WriteLock`] to hold around its writes only (a query that reads,
    /// works, then writes).
    ///
    /// What the query's outcome says of the connection goes back to the
    /// pool with it: a lost connection is replaced, not reused.
    pub async fn run_with_lock<T, F>(&self, query: F) -> Result<T, RepoError>
    where
        F: FnOnce(&mut AnyConnection, &WriteLock) -> Result<T, RepoError> + Send + 'static,
        T: Send + 'static,
    {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let turn = self.turns.acquire().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let _turn = turn.map_err(|e| RepoError::Blocking(e.to_string()))?;
        let (pool, writer) = (self.pool.clone(), self.writer.clone());
        self.threads
            .run(move || {
                let mut tracked = pool
                    .get()
                    .map_err(|e| RepoError::Unavailable(e.to_string()))?;
                let result = query(tracked.conn(), &writer);
                tracked.note(connection_outcome(&result));
                result
            })
            .await
            .map_err(|e| RepoError::Blocking(e.to_string()))?
    }
}
