//! The server under test: the real binary as a child process, on a fresh
//! database, with rate limits off, found through its "listening on" log line.

use std::collections::VecDeque;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the server keeps its data.
#[derive(Debug, Clone)]
pub enum DbTarget {
    /// A SQLite file in a fresh temporary directory (the default).
    Sqlite(PathBuf),
    /// A PostgreSQL database: phase 7's fresh one, phase 8's
    /// (`BENCH_DATABASE_URL` or a fresh one).
    Postgres(String),
}

impl DbTarget {
    pub fn url(&self) -> String {
        match self {
            DbTarget::Sqlite(path) => path.display().to_string(),
            DbTarget::Postgres(url) => url.clone(),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            DbTarget::Sqlite(_) => "SQLite (fresh file in a temporary directory)",
            DbTarget::Postgres(_) => "PostgreSQL",
        }
    }

    /// Deletes every user of this run (their passkeys, sessions and events
    /// cascade), so a shared PostgreSQL database is left as it was found.
    pub fn delete_users(&self, prefix: &str) -> Result<(), String> {
        use diesel::connection::SimpleConnection as _;
        use diesel::Connection as _;
        if prefix.contains(['\'', '\\', '%', '_']) {
            return Err(format!("refusing to build SQL from the prefix {prefix:?}"));
        }
        match self {
            DbTarget::Sqlite(_) => Ok(()), // the whole directory is removed
            DbTarget::Postgres(url) => diesel::pg::PgConnection::establish(url)
                .map_err(|e| format!("open PostgreSQL: {e}"))?
                .batch_execute(&format!(
                    "DELETE FROM users WHERE username_key LIKE '{prefix}-%'"
                ))
                .map_err(|e| e.to_string()),
        }
    }
}

/// The Redis the nodes of a multi-node phase share.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    pub url: String,
    /// `REDIS_KEY_PREFIX`, unique per run (keys and the pub/sub channel).
    pub prefix: String,
}

/// Everything that varies between benchmark configurations.
pub struct ServerConfig {
    pub binary: PathBuf,
    pub workdir: PathBuf,
    pub db: DbTarget,
    pub challenge_capacity: u64,
    /// `REDIS_URL` and `REDIS_KEY_PREFIX`, for servers that run as nodes.
    pub redis: Option<RedisTarget>,
    /// `SIGNING_KEY_ALGORITHM` of the key a fresh database gets (unset: the
    /// server's default, EdDSA). The server reads its keys from the
    /// database (`signing_keys`), which the benchmark reads too, to sign
    /// tokens for the users it inserts directly.
    pub signing_algorithm: Option<&'static str>,
}

impl ServerConfig {
    /// `binary` with the defaults on a fresh SQLite file `auth.db` in
    /// `workdir`: the default challenge store (phase 6 relies on it), no
    /// Redis, the default signing algorithm (EdDSA).
    pub fn on_sqlite(binary: PathBuf, workdir: PathBuf) -> ServerConfig {
        ServerConfig {
            binary,
            db: DbTarget::Sqlite(workdir.join("auth.db")),
            workdir,
            challenge_capacity: 100_000,
            redis: None,
            signing_algorithm: None,
        }
    }

    /// The environment the server runs with (also printed in the report).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("BIND_ADDR", "127.0.0.1:0".into()),
            ("DATABASE_URL", self.db.url()),
            ("RP_ID", "localhost".into()),
            ("RP_ORIGIN", crate::ORIGIN.into()),
            ("RATE_LIMIT_IP_PER_MINUTE", "0".into()),
            ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "0".into()),
            ("LOGIN_LOCKOUT_THRESHOLD", "0".into()),
            (
                "CHALLENGE_CACHE_CAPACITY",
                self.challenge_capacity.to_string(),
            ),
            // The access log at info would dominate the cost of small
            // requests; the start-up lines (the address) are still printed.
            ("RUST_LOG", "warn,passkey_auth=info".into()),
        ];
        if let Some(algorithm) = self.signing_algorithm {
            env.push(("SIGNING_KEY_ALGORITHM", algorithm.into()));
        }
        if let Some(redis) = &self.redis {
            env.push(("REDIS_URL", redis.url.clone()));
            env.push(("REDIS_KEY_PREFIX", redis.prefix.clone()));
        }
        env
    }
}

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Warnings and errors logged since start (the last few kept).
    log: Arc<Mutex<LogTail>>,
}

#[derive(Default)]
pub struct LogTail {
    pub warnings: u64,
    pub last: VecDeque<String>,
}

impl Server {
    pub fn start(config: &ServerConfig) -> Result<Server, String> {
        let mut cmd = Command::new(&config.binary);
        cmd.current_dir(&config.workdir)
            .env_clear()
            .envs(passthrough_env())
            .envs(config.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", config.binary.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let log = Arc::new(Mutex::new(LogTail::default()));
        let (tx, rx) = mpsc::channel();
        let tail = log.clone();
        std::thread::spawn(move || read_log(BufReader::new(stderr), tx, tail));
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        server.addr = wait_for_address(&rx)
            .map_err(|e| format!("{e}; server log: {:?}", server.log_lines()))?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system, all threads) used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the ")" closing the command name start at field 3;
        // utime and stime are fields 14 and 15, in USER_HZ (100 on Linux).
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let ticks: u64 = (11..=12)
            .map(|i| fields.get(i)?.parse::<u64>().ok())
            .sum::<Option<u64>>()?;
        Some(Duration::from_millis(ticks * 10))
    }

    /// Resident memory now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.pid())
    }

    /// Peak resident memory since start (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Warnings/errors logged so far, and the last few of them.
    pub fn warnings(&self) -> (u64, Vec<String>) {
        match self.log.lock() {
            Ok(tail) => (tail.warnings, tail.last.iter().cloned().collect()),
            Err(_) => (0, Vec::new()),
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.warnings().1
    }

    /// Whether the process has exited (crashed) already.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory (VmRSS) of process `pid` now, in KiB: for a sampler
/// that runs beside the load, without the [`Server`] itself.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Variables passed on from our environment: PostgreSQL client settings,
/// and glibc malloc tuning (`MALLOC_ARENA_MAX`, `GLIBC_TUNABLES`) for
/// experiments with the server's memory.
fn passthrough_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(name, _)| {
            ["PATH", "HOME", "GLIBC_TUNABLES"].contains(&name.as_str())
                || name.starts_with("PG")
                || name.starts_with("MALLOC_")
        })
        .collect()
}

/// Forwards every line until the address is found, then keeps counting
/// warnings (the server runs at `RUST_LOG=warn`, so any line after start-up
/// is worth reporting).
fn read_log(stderr: impl std::io::BufRead, tx: mpsc::Sender<String>, tail: Arc<Mutex<LogTail>>) {
    let mut forwarding = true;
    for line in stderr.lines().map_while(Result::ok) {
        let is_warning = line.contains(" WARN ") || line.contains(" ERROR ");
        if let Ok(mut tail) = tail.lock() {
            if is_warning || forwarding {
                tail.warnings += u64::from(is_warning);
                tail.last.push_back(line.clone());
                if tail.last.len() > 20 {
                    tail.last.pop_front();
                }
            }
        }
        if forwarding && tx.send(line).is_err() {
            forwarding = false;
        }
    }
}

fn wait_for_address(rx: &mpsc::Receiver<String>) -> Result<SocketAddr, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let line = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("server exited before reporting its address".into())
            }
        };
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            return addr
                .parse()
                .map_err(|e| format!("unparsable address {addr:?}: {e}"));
        }
    }
    Err("server did not report its address within 60 s".into())
}
