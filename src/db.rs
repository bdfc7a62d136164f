//! One connection type for both backends, the pool, and the embedded migrations.
//!
//! `DATABASE_URL` picks the backend once, at start; [`ConnectionManager`]
//! then opens connections of that backend only (Diesel's own multi-backend
//! `establish` tries each backend in turn, which would hide a PostgreSQL
//! outage behind a confusing SQLite error).

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;
use crate::threads::ThreadPool;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A connection to whichever backend is configured.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$conn` (an `&mut AnyConnection`) as the backend's
/// own connection, bound to `$c`: the body is compiled once per backend.
/// For the hot statements only: through [`AnyConnection`], Diesel renders
/// a statement's SQL again on each of its passes (cache key, cacheability,
/// binds) and copies its binds from one collector to another; the
/// backend's own connection does neither.
macro_rules! each_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::AnyConnection::Postgresql($c) => $body,
            $crate::db::AnyConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use each_backend;

/// Whether the connection is SQLite's (the other is PostgreSQL's).
pub fn is_sqlite(conn: &AnyConnection) -> bool {
    matches!(conn, AnyConnection::Sqlite(_))
}

pub type DbPool = diesel::r2d2::Pool<ConnectionManager>;

/// A connection that has not answered for this long is pinged (`SELECT 1`)
/// before it is handed out; one that answered more recently is handed out
/// as it is, so a busy pool costs no extra round trip per checkout.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(2);

/// A pooled connection and what the pool knows of its health: when it last
/// answered, and whether a query found it lost (then the pool drops it
/// instead of taking it back).
pub struct TrackedConnection {
    conn: AnyConnection,
    last_answered: Instant,
    lost: bool,
}

impl TrackedConnection {
    fn new(conn: AnyConnection) -> Self {
        TrackedConnection {
            conn,
            last_answered: Instant::now(),
            lost: false,
        }
    }

    /// The connection, for one unit of work.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Notes what the last unit of work said about the connection: an
    /// answer proves it alive; a lost connection (the server went away,
    /// the socket broke) is not given out again.
    pub fn note(&mut self, outcome: Result<(), ConnectionLost>) {
        match outcome {
            Ok(()) => self.last_answered = Instant::now(),
            Err(ConnectionLost) => self.lost = true,
        }
    }
}

/// A query found its connection gone (see [`is_connection_loss`]).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLost;

/// Whether `err` means the connection itself is unusable, as opposed to a
/// refused or failed statement on a healthy connection.
pub fn is_connection_loss(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        err,
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        ) | Error::BrokenTransactionManager
    )
}

/// Per-connection SQLite settings: enforce foreign keys (cascade deletes),
/// wait instead of failing when another connection writes, and use WAL so
/// readers do not block the writer.
const SQLITE_PRAGMAS: &str = "PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 5000;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;";

/// Opens connections for the r2d2 pool.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl ConnectionManager {
    pub fn new(url: DatabaseUrl) -> Self {
        ConnectionManager { url }
    }

    /// A new connection with the backend's settings, outside any pool.
    pub fn open(&self) -> Result<AnyConnection, diesel::ConnectionError> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                PgConnection::establish(url).map(AnyConnection::Postgresql)
            }
            DatabaseUrl::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    diesel::ConnectionError::InvalidConnectionUrl(
                        "SQLite path is not valid UTF-8".into(),
                    )
                })?;
                let mut conn = SqliteConnection::establish(path)?;
                conn.batch_execute(SQLITE_PRAGMAS)
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

/// How many threads run queries (see [`crate::threads`]). PostgreSQL: one
/// per pooled connection, since a query's thread waits for the server's
/// answer. SQLite: one per core, at most one per connection; its queries
/// are work on this machine's CPU (pages in memory, a write to the WAL),
/// so more threads than cores would only take turns, each turn a wake-up.
pub fn query_threads(url: &DatabaseUrl, pool_size: u32) -> usize {
    let pool_size = pool_size.max(1) as usize;
    match url {
        DatabaseUrl::Postgres(_) => pool_size,
        DatabaseUrl::Sqlite(_) => crate::threads::cores().min(pool_size),
    }
}

/// The threads the queries of a database at `url` run on.
pub fn query_pool(url: &DatabaseUrl, pool_size: u32) -> std::io::Result<ThreadPool> {
    ThreadPool::new(query_threads(url, pool_size), "db", || {})
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Connection(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Connections are checked by what they do rather than by a test query on
/// every checkout: one that answered within [`PING_IF_IDLE_FOR`] is handed
/// out as it is; an idler one is pinged first (after an outage, idle
/// connections are found dead here and replaced, not by a user's request);
/// one a query found lost, or whose transaction could not be rolled back,
/// is dropped when it comes back.
impl diesel::r2d2::ManageConnection for ConnectionManager {
    type Connection = TrackedConnection;
    type Error = ConnectError;

    fn connect(&self) -> Result<TrackedConnection, ConnectError> {
        Ok(TrackedConnection::new(self.open()?))
    }

    fn is_valid(&self, tracked: &mut TrackedConnection) -> Result<(), ConnectError> {
        if tracked.last_answered.elapsed() < PING_IF_IDLE_FOR {
            return Ok(());
        }
        tracked.conn.batch_execute("SELECT 1")?;
        tracked.last_answered = Instant::now();
        Ok(())
    }

    fn has_broken(&self, tracked: &mut TrackedConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        tracked.lost || tracked.conn.is_broken()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot create the directory for the SQLite database {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("cannot build the connection pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("cannot run migrations: {0}")]
    Migrations(String),
}

/// Creates the SQLite directory if needed, runs the embedded migrations on
/// one direct connection, then builds the pool.
pub fn connect_and_migrate(
    url: &DatabaseUrl,
    pool_size: u32,
    pool_timeout: Duration,
) -> Result<DbPool, DbSetupError> {
    build_pool(url, pool_size, pool_timeout, 1)
}

/// As [`connect_and_migrate`], for a short-lived process (the command
/// line): no connection is kept idle in reserve, so the pool's thread opens
/// connections only while a query waits for one, never in the background.
/// (A process that exits while that thread is inside the database client
/// library, opening a reserve connection, can crash there.)
pub fn connect_and_migrate_on_demand(
    url: &DatabaseUrl,
    pool_size: u32,
    pool_timeout: Duration,
) -> Result<DbPool, DbSetupError> {
    build_pool(url, pool_size, pool_timeout, 0)
}

fn build_pool(
    url: &DatabaseUrl,
    pool_size: u32,
    pool_timeout: Duration,
    min_idle: u32,
) -> Result<DbPool, DbSetupError> {
    migrate(url)?;
    let manager = ConnectionManager::new(url.clone());
    let pool = diesel::r2d2::Pool::builder()
        .max_size(pool_size)
        .min_idle(Some(min_idle))
        // A bounded wait: with the database down a request gets a 503 in
        // `pool_timeout`, not a hang.
        .connection_timeout(pool_timeout)
        // An idle connection the server dropped is found (SELECT 1) and
        // replaced at checkout, and one a query found lost is not taken
        // back, so the pool recovers by itself when the database comes
        // back (see `ConnectionManager`'s `is_valid`).
        .test_on_check_out(true)
        .build(manager)?;
    Ok(pool)
}

/// Creates the SQLite directory if needed and runs the pending embedded
/// migrations on one direct connection; returns the versions it applied,
/// oldest first (`passkey-auth migrate` prints them).
pub fn migrate(url: &DatabaseUrl) -> Result<Vec<String>, DbSetupError> {
    if let DatabaseUrl::Sqlite(path) = url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbSetupError::CreateDir {
                path: path.display().to_string(),
                source,
            })?;
        }
    }
    let mut conn = ConnectionManager::new(url.clone()).open()?;
    run_migrations(&mut conn)
}

/// Several nodes may start at once against one PostgreSQL database: an
/// advisory lock makes them apply migrations one at a time.
const MIGRATION_LOCK_ID: i64 = 0x0070_6173_736b_6579; // "passkey" in ASCII

fn run_migrations(conn: &mut AnyConnection) -> Result<Vec<String>, DbSetupError> {
    let is_pg = !is_sqlite(conn);
    let setup_err = |e: diesel::result::Error| DbSetupError::Migrations(e.to_string());
    if is_pg {
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
            .map_err(setup_err)?;
    }
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|applied| {
            let applied: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
            for version in &applied {
                log::info!("applied migration {version}");
            }
            applied
        })
        .map_err(|e| DbSetupError::Migrations(e.to_string()));
    if is_pg {
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
            .map_err(setup_err)?;
    }
    result
}
