//! What the multi-node phase shares: a fresh PostgreSQL database, created
//! for the run and dropped afterwards (as `tests/multinode.rs` does), and a
//! Redis, checked before the nodes start and cleaned of the run's keys after;
//! phase 8's server P gets a fresh database the same way (or is checked on
//! `BENCH_DATABASE_URL`). Both are services of the machine; when one cannot
//! be reached the phase that needs it is skipped, not failed.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::Connection;

/// How long a reachability check may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A database of its own for the run, dropped (connections and all) when
/// this is dropped.
pub struct Database {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl Database {
    /// Creates `passkey_bench_<uuid>` through `admin_url` (a PostgreSQL URL
    /// of a role allowed to create databases).
    pub fn create(admin_url: &str) -> Result<Database, String> {
        let mut url =
            url::Url::parse(admin_url).map_err(|e| format!("unparsable URL {admin_url:?}: {e}"))?;
        let name = format!("passkey_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&with_connect_timeout(admin_url))
            .map_err(|e| one_line(&e.to_string()))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        url.set_path(&format!("/{name}"));
        Ok(Database {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let dropped = PgConnection::establish(&with_connect_timeout(&self.admin_url))
            .map_err(|e| e.to_string())
            .and_then(|mut admin| {
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .map_err(|e| e.to_string())
            });
        if let Err(err) = dropped {
            eprintln!("warning: could not drop database {}: {err}", self.name);
        }
    }
}

/// `url` with libpq's `connect_timeout`, unless it names one already.
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}connect_timeout={}",
        CONNECT_TIMEOUT.as_secs()
    )
}

/// Whether the PostgreSQL database at `url` answers, within [`CONNECT_TIMEOUT`].
pub fn pg_ping(url: &str) -> Result<(), String> {
    PgConnection::establish(&with_connect_timeout(url))
        .map(drop)
        .map_err(|e| one_line(&e.to_string()))
}

/// libpq's multi-line messages on one line (they end up in table cells).
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `url` with its password, if any, replaced by `***` (for the report).
pub fn masked(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// PING, within [`CONNECT_TIMEOUT`].
pub fn redis_ping(url: &str) -> Result<(), String> {
    let mut conn = redis_connection(url)?;
    let pong: String = redis::cmd("PING")
        .query(&mut conn)
        .map_err(|e| format!("PING: {e}"))?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {pong:?}"))
    }
}

/// Deletes every key under `prefix`; returns how many there were.
pub fn redis_delete_prefix(url: &str, prefix: &str) -> Result<usize, String> {
    let mut conn = redis_connection(url)?;
    let pattern = format!("{prefix}*");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
            .map_err(|e| format!("SCAN: {e}"))?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query::<u64>(&mut conn)
            .map_err(|e| format!("DEL: {e}"))?;
    }
    Ok(keys.len())
}

fn redis_connection(url: &str) -> Result<redis::Connection, String> {
    redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(CONNECT_TIMEOUT))
        .map_err(|e| e.to_string())
}
