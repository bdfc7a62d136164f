//! Users created behind the server's back, for the challenge flood: tens of
//! thousands of sign-ups would cost one argon2id hash each (minutes on two
//! cores), so rows go straight into `users` (all sharing one precomputed
//! PHC hash) and their password-level tokens are signed with the server's
//! active signing key, read from its `signing_keys` table, with exactly the
//! claims and header (`alg`, `kid`) the server issues.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text, Timestamp};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryableByName, RunQueryDsl};
use passkey_auth::services::signing::KeyMaterial;
use passkey_auth_guard::{AuthLevel, Claims, KeyAlgorithm};
use uuid::Uuid;

use crate::server::DbTarget;

/// Rows per INSERT statement.
const BATCH: usize = 500;

/// A user inserted directly; `username` is unique per benchmark run.
pub struct SeedUser {
    pub id: Uuid,
    pub username: String,
}

/// `count` users named `{prefix}-s{i}`.
pub fn users(prefix: &str, count: usize) -> Vec<SeedUser> {
    (0..count)
        .map(|i| SeedUser {
            id: Uuid::new_v4(),
            username: format!("{prefix}-s{i}"),
        })
        .collect()
}

/// Inserts `users` (password hash `phc`) in one transaction.
pub fn insert(db: &DbTarget, users: &[SeedUser], phc: &str) -> Result<(), String> {
    let statements = insert_statements(users, phc)?;
    match db {
        DbTarget::Sqlite(path) => {
            let mut conn = SqliteConnection::establish(&path.display().to_string())
                .map_err(|e| format!("open SQLite: {e}"))?;
            // The server holds connections to the same file (WAL mode).
            conn.batch_execute("PRAGMA busy_timeout = 10000;")
                .map_err(|e| e.to_string())?;
            execute_all(&mut conn, &statements)
        }
        DbTarget::Postgres(url) => {
            let mut conn =
                PgConnection::establish(url).map_err(|e| format!("open PostgreSQL: {e}"))?;
            execute_all(&mut conn, &statements)
        }
    }
}

/// Deletes every user of this run (their passkeys and events cascade), so
/// a shared PostgreSQL database is left as it was found.
pub fn delete_run(db: &DbTarget, prefix: &str) -> Result<(), String> {
    let sql = format!("DELETE FROM users WHERE username_key LIKE '{prefix}-%'");
    match db {
        DbTarget::Sqlite(_) => Ok(()), // the whole directory is removed
        DbTarget::Postgres(url) => PgConnection::establish(url)
            .map_err(|e| format!("open PostgreSQL: {e}"))?
            .batch_execute(&sql)
            .map_err(|e| e.to_string()),
    }
}

fn execute_all<C: Connection + SimpleConnection>(
    conn: &mut C,
    statements: &[String],
) -> Result<(), String> {
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        statements
            .iter()
            .try_for_each(|sql| conn.batch_execute(sql))
    })
    .map_err(|e| format!("inserting users: {e}"))
}

/// Multi-row INSERTs with literal values: portable between SQLite and
/// PostgreSQL (their bind placeholders differ). Every value is generated
/// here and quote-free, which is checked rather than assumed.
fn insert_statements(users: &[SeedUser], phc: &str) -> Result<Vec<String>, String> {
    let now = chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let safe = |s: &str| !s.contains('\'') && !s.contains('\\');
    if !safe(phc) || users.iter().any(|u| !safe(&u.username)) {
        return Err("refusing to build SQL from a value containing a quote".into());
    }
    Ok(users
        .chunks(BATCH)
        .map(|chunk| {
            let rows: Vec<String> = chunk
                .iter()
                .map(|u| {
                    format!(
                        "('{id}', '{name}', '{key}', '{name}', '{phc}', '{now}', '{now}')",
                        id = u.id,
                        name = u.username,
                        key = u.username.to_ascii_lowercase(),
                    )
                })
                .collect();
            format!(
                "INSERT INTO users (id, username, username_key, display_name, password_hash, \
                 created_at, updated_at) VALUES {}",
                rows.join(", ")
            )
        })
        .collect())
}

/// A password-level access token for `user`, as the server's login issues it
/// (issuer and audience are the server's defaults), signed with `key`.
pub fn password_token(user: &SeedUser, key: &KeyMaterial) -> Result<String, String> {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let claims = Claims {
        sub: user.id.to_string(),
        username: user.username.clone(),
        auth_level: AuthLevel::Password,
        acr: AuthLevel::Password,
        amr: vec!["pwd".into()],
        auth_time: iat,
        iat,
        exp: iat + 3600,
        iss: "passkey-auth".into(),
        aud: "passkey-auth".into(),
        jti: Uuid::new_v4().to_string(),
        sid: Uuid::new_v4().to_string(),
    };
    key.sign(&claims).map_err(|e| e.to_string())
}

/// One row of `signing_keys`, the columns the signer needs.
#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    kid: String,
    #[diesel(sql_type = BigInt)]
    generation: i64,
    #[diesel(sql_type = Text)]
    algorithm: String,
    #[diesel(sql_type = Text)]
    private_key: String,
    #[diesel(sql_type = Timestamp)]
    activates_at: NaiveDateTime,
}

const KEY_ROWS: &str =
    "SELECT kid, generation, algorithm, private_key, activates_at FROM signing_keys";

/// The key the server signs with now, read from its database: as the
/// server decides, the newest generation already active (the oldest if
/// none is yet). Its private key must be stored `plain:` (the benchmark
/// sets no `SIGNING_KEY_ENCRYPTION_KEY`).
pub fn signing_key(db: &DbTarget) -> Result<KeyMaterial, String> {
    let mut rows: Vec<KeyRow> = match db {
        DbTarget::Sqlite(path) => {
            let mut conn = SqliteConnection::establish(&path.display().to_string())
                .map_err(|e| format!("open SQLite: {e}"))?;
            conn.batch_execute("PRAGMA busy_timeout = 10000;")
                .map_err(|e| e.to_string())?;
            diesel::sql_query(KEY_ROWS).load(&mut conn)
        }
        DbTarget::Postgres(url) => {
            let mut conn =
                PgConnection::establish(url).map_err(|e| format!("open PostgreSQL: {e}"))?;
            diesel::sql_query(KEY_ROWS).load(&mut conn)
        }
    }
    .map_err(|e| format!("reading signing_keys: {e}"))?;
    rows.sort_by_key(|row| row.generation);
    let now = chrono::Utc::now().naive_utc();
    let row = rows
        .iter()
        .rev()
        .find(|row| row.activates_at <= now)
        .or_else(|| rows.first())
        .ok_or("signing_keys is empty: the server created no key")?;
    let algorithm = KeyAlgorithm::parse(&row.algorithm)
        .ok_or_else(|| format!("key {}: unknown algorithm {:?}", row.kid, row.algorithm))?;
    let der = row
        .private_key
        .strip_prefix("plain:")
        .ok_or_else(|| format!("key {}: its private key is not stored plain", row.kid))?;
    let der = STANDARD
        .decode(der)
        .map_err(|e| format!("key {}: private key is not base64: {e}", row.kid))?;
    let key =
        KeyMaterial::from_pkcs8(algorithm, &der).map_err(|e| format!("key {}: {e}", row.kid))?;
    if key.kid() != row.kid {
        return Err(format!(
            "key {}: its private key is another key's ({})",
            row.kid,
            key.kid()
        ));
    }
    Ok(key)
}
