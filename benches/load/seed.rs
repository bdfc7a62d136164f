//! Users created behind the server's back, for the challenge flood: tens of
//! thousands of sign-ups would cost one argon2id hash each (minutes on two
//! cores), so rows go straight into `users` (all sharing one precomputed
//! PHC hash) and their password-level tokens are minted with the server's
//! JWT secret, with exactly the claims the server issues.

use std::time::{SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use uuid::Uuid;

use crate::server::{DbTarget, JWT_SECRET};

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
/// (HS256; issuer and audience are the server's defaults).
pub fn password_token(user: &SeedUser, key: &EncodingKey) -> Result<String, String> {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = json!({
        "sub": user.id.to_string(),
        "username": user.username,
        "authLevel": "password",
        "acr": "password",
        "amr": ["pwd"],
        "auth_time": iat,
        "iat": iat,
        "exp": iat + 3600,
        "iss": "passkey-auth",
        "aud": "passkey-auth",
        "jti": Uuid::new_v4().to_string(),
        "sid": Uuid::new_v4().to_string(),
    });
    encode(&Header::new(Algorithm::HS256), &claims, key).map_err(|e| e.to_string())
}

pub fn signing_key() -> EncodingKey {
    EncodingKey::from_secret(JWT_SECRET.as_bytes())
}
