//! Load benchmark of the server binary: `cargo bench --bench load`.
//!
//! Starts the real `passkey-auth` binary on a fresh database and drives it
//! with an in-process load generator through eight phases (see BENCHMARKS.md
//! for what each measures and the targets), prints a summary and rewrites
//! BENCHMARKS.md with the figures and the machine they ran on. Phase 1 has
//! two variants: on a server signing ES256 tokens (1b), and on the guard
//! crate's example resource server run in this process (1c), and 1d pits a
//! route that reads the account against the guard alone; phase 2 also
//! times signing and verifying one token, and checking one passkey
//! assertion's P-256 signature as webauthn-rs does; phase 4 measures
//! passkey step-ups, then passkey sign-ins (4b), then the options requests
//! alone (4c), which splits a ceremony's server CPU; phase 6 floods a fresh
//! server with public sign-in options and watches its memory and its
//! guarded route. Phase 7 runs two servers as nodes on one PostgreSQL and
//! one Redis (the machine's services), and the last, 8, repeats 1d and
//! 4-4c on a server on PostgreSQL; without those services they are
//! skipped, and the report says so.

#[path = "load/assertion.rs"]
mod assertion;
#[path = "../tests/common/authenticator.rs"]
mod authenticator;
#[path = "load/cpu.rs"]
mod cpu;
#[path = "load/crypto.rs"]
mod crypto;
#[path = "load/driver.rs"]
mod driver;
#[path = "load/http.rs"]
mod http;
#[path = "load/nodes.rs"]
mod nodes;
#[path = "load/report.rs"]
mod report;
#[path = "load/resource.rs"]
mod resource;
#[path = "load/server.rs"]
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use passkey_auth::services::passwords::{OWASP_ITERATIONS, OWASP_MEMORY_KIB, OWASP_PARALLELISM};
use passkey_auth_guard::KeyAlgorithm;
use serde_json::{json, Value};

use authenticator::TestAuthenticator;
use driver::{expect_success, FixedRequest, LoadResult, LoadSpec, Operation, Stop};
use http::Conn;
use report::{
    AlgorithmRun, FloodRss, HashTiming, LogoutPropagation, Machine, MemorySample, NodesOutcome,
    OptionsAlone, OptionsFlood, PostgresOutcome, PostgresRun, ProfileRun, ResourceRun, Results,
    RunInfo, TokenKey,
};
use resource::ResourceServer;
use server::{DbTarget, RedisTarget, Server, ServerConfig};

/// The origin the benchmark server is configured with (`RP_ORIGIN`), and
/// the one the software authenticator puts in its client data.
const ORIGIN: &str = "http://localhost:3000";

/// Password of every user the benchmark creates.
const PASSWORD: &str = "load-benchmark password";

/// Run parameters; the environment can change a few (see BENCHMARKS.md).
struct Settings {
    warmup: Duration,
    measure: Duration,
    /// Phase 1 (guarded vs bare).
    connections: usize,
    /// Phase 2 and the flood of phase 3.
    login_connections: usize,
    /// Phase 3's guarded generator.
    idle_connections: usize,
    /// Phases 4 and 4b: also the number of users with a passkey.
    ceremony_workers: usize,
    /// Phase 4c: public sign-in options in its counted run (each stays in
    /// the challenge store for its TTL: kept well below the store's bound).
    sign_in_options_count: u64,
    /// argon2id hashes timed for the ceiling.
    hash_samples: usize,
    /// Phase 5: connections, each rotating its own session's refresh token.
    refresh_connections: usize,
    /// Phase 6: requests in the options flood, its connections, how long
    /// it may take, and the paced probe of the guarded route beside it.
    flood_requests: u64,
    flood_connections: usize,
    flood_limit: Duration,
    probe_connections: usize,
    probe_interval: Duration,
    /// Phase 6: how often server B's RSS is read during the flood.
    rss_interval: Duration,
    /// Phase 7: logouts, and how the other node is polled after each.
    logout_rounds: usize,
    poll_interval: Duration,
    poll_deadline: Duration,
    /// Phase 7's services (`None`: set empty, the phase is skipped); phase
    /// 8 creates its database through the first too.
    pg_admin_url: Option<String>,
    redis_url: Option<String>,
    server_binary: PathBuf,
    /// `BENCH_DATABASE_URL`: phase 8's PostgreSQL database (servers A, B
    /// and E always run on fresh SQLite files).
    database_url: Option<String>,
    report_path: PathBuf,
    /// `BENCH_ONLY=ceremonies`: the focused run of [`focus_ceremonies`]
    /// instead of the whole benchmark.
    only_ceremonies: bool,
    /// `BENCH_COMPARE_BIN`: the focused run's second server binary.
    compare_binary: Option<PathBuf>,
    /// `BENCH_ROUNDS`: the focused run's rounds.
    rounds: usize,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Ok(Settings {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(env_number("BENCH_SECONDS", 5)?),
            connections: env_number("BENCH_CONNECTIONS", 64)?,
            login_connections: 8,
            idle_connections: 16,
            ceremony_workers: 32,
            sign_in_options_count: 20_000,
            hash_samples: 20,
            refresh_connections: 16,
            flood_requests: env_number("BENCH_FLOOD", 1_000_000)?,
            flood_connections: 64,
            flood_limit: Duration::from_secs(300),
            probe_connections: 4,
            probe_interval: Duration::from_millis(10),
            rss_interval: Duration::from_millis(100),
            logout_rounds: env_number("BENCH_LOGOUTS", 100)?,
            poll_interval: Duration::from_millis(2),
            poll_deadline: Duration::from_secs(5),
            pg_admin_url: env_url("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432"),
            redis_url: env_url("BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
            // Cargo builds the binary (same profile) for every benchmark
            // target, so the one under test always matches the sources.
            server_binary: std::env::var_os("BENCH_SERVER_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_passkey-auth"))),
            database_url: std::env::var("BENCH_DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            report_path: std::env::var_os("BENCH_REPORT")
                .map(PathBuf::from)
                .unwrap_or_else(|| manifest_dir.join("BENCHMARKS.md")),
            only_ceremonies: match std::env::var("BENCH_ONLY").unwrap_or_default().as_str() {
                "" => false,
                "ceremonies" => true,
                other => return Err(format!("BENCH_ONLY={other:?}: only `ceremonies` is known")),
            },
            compare_binary: std::env::var_os("BENCH_COMPARE_BIN")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            rounds: env_number("BENCH_ROUNDS", 4)?,
        })
    }

    fn timed(&self, label: &str, concurrency: usize) -> LoadSpec {
        LoadSpec {
            label: label.into(),
            concurrency,
            stop: Stop::Timed {
                warmup: self.warmup,
                measure: self.measure,
            },
        }
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a positive number")),
        _ => Ok(default),
    }
}

/// A service URL: the default when unset, `None` when set empty (skip).
fn env_url(name: &str, default: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value).filter(|v| !v.trim().is_empty()),
        Err(_) => Some(default.to_owned()),
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; there is nothing to filter here.
    let outcome = Settings::from_env().and_then(|settings| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?
            .block_on(async move {
                if settings.only_ceremonies {
                    focus_ceremonies(settings).await
                } else {
                    run(settings).await
                }
            })
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("load benchmark failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A fresh temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let dir = std::env::temp_dir()
            .join("passkey-auth-load-bench")
            .join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    let started = Instant::now();
    let cpu_before = cpu::CpuSnapshot::now();
    let load_before = cpu::load_average();
    if load_before.is_some_and(|load| load > 0.5) {
        eprintln!(
            "warning: load average {:.2} before the run: other work on this machine will \
             distort the figures",
            load_before.unwrap_or_default()
        );
    }
    let machine = Machine::detect();
    let workdir = TempDir::new()?;
    // Every username of this run starts with the prefix (unique per run, so
    // phase 8's shared PostgreSQL database needs no cleaning beforehand).
    let prefix = format!("lb{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let config = ServerConfig::on_sqlite(settings.server_binary.clone(), workdir.0.clone());
    let db = config.db.clone();
    println!(
        "load benchmark: {} cores, server {}, {}",
        machine.cores,
        config.binary.display(),
        db.describe()
    );

    // Server A's environment, for the report (server B is the same on a
    // fresh process, the nodes of phase 7 differ in database and Redis and
    // report their own).
    let server_env = config.env();
    let results = phases(&settings, &config, &prefix, &machine).await?;
    // Every server has been stopped and reaped: their CPU time is ours now.
    let cpu = cpu_before
        .zip(cpu::CpuSnapshot::now())
        .map(|(before, after)| before.shares_until(&after));

    let info = RunInfo {
        command: "cargo bench --bench load".into(),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        runtime: started.elapsed(),
        database: format!(
            "{} for servers A, B and E; PostgreSQL for nodes C and D (phase 7) and server P \
             (phase 8)",
            db.describe()
        ),
        server_env,
        warmup: settings.warmup,
        measure: settings.measure,
        load_before,
        cpu,
    };
    println!("\n{}", report::results_table(&results));
    println!("{}", report::ceremony_table(&results));
    println!("{}", report::memory_table(&results));
    println!("Targets: {}", report::targets_line(&results));
    let (warnings, last) = &results.server_warnings;
    if *warnings > 0 {
        println!("server A logged {warnings} warnings/errors; the last lines:");
        for line in last {
            println!("  {line}");
        }
    }
    let markdown = report::markdown(&results, &machine, &info);
    std::fs::write(&settings.report_path, markdown)
        .map_err(|e| format!("{}: {e}", settings.report_path.display()))?;
    println!(
        "\nwrote {} ({:.0} s in all)",
        settings.report_path.display(),
        info.runtime.as_secs_f64()
    );
    Ok(())
}

/// `BENCH_ONLY=ceremonies`: a focused run for work on a step-up's cost. One
/// server on a fresh SQLite file, or two (`BENCH_COMPARE_BIN`: before and
/// after a change, each on its own file and users), enrolled as server A
/// is; then `BENCH_ROUNDS` rounds, each running phase 4's step-ups and
/// phase 4c's step-up options on every server in turn, so that the
/// machine's drift falls on both alike. Prints each round and the medians
/// (a step-up's server CPU, its options', and beyond phase 2's P-256
/// verification, measured once here); writes no report.
async fn focus_ceremonies(settings: Settings) -> Result<(), String> {
    let binaries: Vec<PathBuf> = std::iter::once(settings.server_binary.clone())
        .chain(settings.compare_binary.clone())
        .collect();
    let p256 = p256_check_us()?;
    println!("P-256 assertion signature: {p256:.1} µs (thread CPU)");
    let mut servers = Vec::new();
    for (i, binary) in binaries.iter().enumerate() {
        let workdir = TempDir::new()?;
        let config = ServerConfig::on_sqlite(binary.clone(), workdir.0.clone());
        let server = Server::start(&config)?;
        let prefix = format!("fc{i}{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let users = enroll_all(server.addr, &prefix, settings.ceremony_workers).await?;
        println!("server {i}: {} (pid {})", binary.display(), server.pid());
        servers.push((workdir, server, users, Vec::new()));
    }
    for round in 1..=settings.rounds {
        for (i, (_, server, users, figures)) in servers.iter_mut().enumerate() {
            println!("round {round}, server {i}");
            let ceremony = phase_ceremonies(&settings, server, users).await;
            let options = step_up_options_alone(&settings, server, users).await;
            if ceremony.errors + options.errors > 0 {
                return Err(format!("server {i} answered errors in round {round}"));
            }
            let (Some(c), Some(o)) = (ceremony.server_us_per_op(), options.server_us_per_op())
            else {
                return Err("the server's CPU time could not be read".into());
            };
            figures.push((c, o));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (i, (_, server, _, figures)) in servers.iter().enumerate() {
        let ceremony = median(figures.iter().map(|f| f.0).collect());
        let options = median(figures.iter().map(|f| f.1).collect());
        println!(
            "server {i} (pid {}): step-up {ceremony:.1} µs, options {options:.1} µs, beyond the \
             P-256 verification {:.1} µs (medians of {} rounds; each: {})",
            server.pid(),
            ceremony - p256,
            figures.len(),
            figures
                .iter()
                .map(|(c, o)| format!("{c:.0}/{o:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

/// Phases 1-5 on server A, phase 6 on server B, phase 7 on nodes C and D,
/// phase 8 on server P (PostgreSQL).
async fn phases(
    settings: &Settings,
    config: &ServerConfig,
    prefix: &str,
    machine: &Machine,
) -> Result<Results, String> {
    let server = Server::start(config)?;
    let addr = server.addr;
    let mut memory = Vec::new();
    let mut sample = |server: &Server, when: &str| {
        let rss_kib = server.rss_kib();
        println!("  RSS after {when}: {} KiB", rss_kib.unwrap_or(0));
        memory.push(MemorySample {
            when: when.into(),
            rss_kib,
        });
    };
    println!("server A listening on {addr} (pid {})", server.pid());
    sample(&server, "start");

    println!("setup: {} users with a passkey", settings.ceremony_workers);
    let users = enroll_all(addr, prefix, settings.ceremony_workers).await?;
    let first = users.first().ok_or("no users were enrolled")?;
    let (full_token, first_username) = (first.full_token.clone(), first.username.clone());
    let password_token = first.password_token.clone();
    let first_passkey = first.passkey.clone();
    let guarded_sid = session_of(&full_token, &password_token)?;
    let token_key = signed_with(&full_token, KeyAlgorithm::EdDSA)?;
    signed_with(&password_token, KeyAlgorithm::EdDSA)?;
    let usernames: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    sample(&server, "setup");

    println!(
        "phase 1: guarded vs bare (token sid {guarded_sid}, {} key {})",
        token_key.algorithm, token_key.kid
    );
    let [bare, bare_with_header, guarded, guarded_basic] =
        phase_guarded_vs_bare(settings, &server, &full_token, &password_token).await;
    sample(&server, "phase 1 (guarded vs bare)");

    println!("phase 1b: guarded vs bare on server E, signing ES256 tokens");
    let es256 = phase_es256(settings, config, prefix).await?;

    println!("phase 1c: the example resource server (guard/examples/payments.rs)");
    let resource = phase_resource_server(settings, &server, &password_token).await?;
    sample(&server, "phase 1c (JWKS for the resource server)");

    println!("phase 1d: GET /users/profile vs GET /protected/basic");
    let tokens = profile_tokens(settings, addr, prefix, &users).await?;
    let profile = phase_profile(settings, &server, &tokens, "A: ").await?;
    sample(&server, "phase 1d (profile vs basic)");

    println!("phase 2: login vs argon2 ceiling");
    let login_request = login_request(&first_username);
    let (hash, login) = phase_login(settings, &server, &login_request, machine.cores).await?;
    sample(&server, "phase 2 (login flood)");
    println!("  token signing and verification, one thread of this process:");
    let token_costs = tokio::task::block_in_place(|| {
        [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256]
            .into_iter()
            .map(crypto::measure)
            .collect::<Result<Vec<_>, _>>()
    })?;
    for c in &token_costs {
        println!(
            "  {}: sign {:.1} µs, verify a new token {:.1} µs, a remembered one {:.2} µs \
             (wall clock per token, median of batches; {} bytes)",
            c.algorithm,
            c.sign.wall_us(),
            c.verify.wall_us(),
            c.verify_cached.wall_us(),
            c.token_bytes
        );
    }

    let p256 = tokio::task::block_in_place(assertion::measure)?;
    println!(
        "  P-256 assertion signature (webauthn-rs-core COSEKey::verify_signature): {:.1} µs \
         (thread CPU {:.1} µs), the ECDSA verification alone {:.1} µs",
        p256.verify.wall_us(),
        p256.verify_us(),
        p256.ecdsa_only.wall_us()
    );

    println!("phase 3: guarded p99 idle vs during a login flood");
    let (idle, under_flood, flood_logins) =
        phase_latency_under_flood(settings, addr, &full_token, &login_request).await;
    sample(&server, "phase 3 (guarded + login flood)");

    println!("phase 4: passkey ceremonies (step-up)");
    let p256_before = p256_check_us()?;
    let ceremonies = phase_ceremonies(settings, &server, &users).await;
    sample(&server, "phase 4 (step-up ceremonies)");
    let p256_after = p256_check_us()?;
    println!(
        "  P-256 assertion signature beside phase 4: {p256_before:.1} µs before, \
         {p256_after:.1} µs after (thread CPU)"
    );

    println!("phase 4b: passkey sign-ins");
    let sign_ins = phase_sign_ins(settings, &server, &users).await?;
    sample(&server, "phase 4b (sign-ins)");

    println!("phase 4c: the ceremonies' options alone");
    let options = phase_options_alone(settings, &server, &users).await;
    sample(&server, "phase 4c (options alone)");

    println!("phase 5: refresh-token rotation");
    let refresh = phase_refresh(settings, &server, &usernames, "POST /auth/refresh").await?;
    sample(&server, "phase 5 (refresh)");

    let peak_rss_kib = server.peak_rss_kib();
    let server_warnings = server.warnings();
    check_alive(server)?;

    println!("phase 6: sign-in options flood on server B");
    let options_flood =
        phase_options_flood(settings, config, &password_token, &first_passkey).await?;

    println!("phase 7: logout propagation between two nodes");
    let logout = phase_logout_propagation(settings, config, prefix).await;
    match &logout {
        NodesOutcome::Measured(m) => println!("  {}", m.summary()),
        NodesOutcome::Skipped(why) => println!("  skipped: {why}"),
        NodesOutcome::Failed(why) => println!("  FAILED: {why}"),
    }

    println!("phase 8: server P on PostgreSQL");
    let postgres = phase_postgres(settings, config, prefix).await;
    match &postgres {
        PostgresOutcome::Measured(_) => {}
        PostgresOutcome::Skipped(why) => println!("  skipped: {why}"),
        PostgresOutcome::Failed(why) => println!("  FAILED: {why}"),
    }

    Ok(Results {
        bare,
        bare_with_header,
        guarded,
        guarded_basic,
        guarded_sid,
        token_key,
        es256,
        resource,
        profile,
        token_costs,
        p256,
        p256_around_step_ups: [p256_before, p256_after],
        hash: hash.timing(),
        login,
        idle,
        under_flood,
        flood_logins,
        ceremonies,
        sign_ins,
        options,
        refresh,
        options_flood,
        logout,
        postgres,
        memory,
        peak_rss_kib,
        server_warnings,
    })
}

/// One P-256 assertion check's thread CPU now, µs (see [`assertion::measure`]).
fn p256_check_us() -> Result<f64, String> {
    Ok(tokio::task::block_in_place(assertion::measure)?.verify_us())
}

/// Fails if the server died during the phases (its figures would be void).
fn check_alive(mut server: Server) -> Result<(), String> {
    match server.exited() {
        Some(status) => Err(format!(
            "server pid {} exited during the benchmark ({status}); log: {:?}",
            server.pid(),
            server.warnings().1
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Setup: users with a registered passkey, through the public API only.

/// A software passkey shared by the phases that use it one after another
/// (its signature counter must keep increasing across them). The lock is
/// held only while signing, never across a request.
type SharedPasskey = Arc<Mutex<TestAuthenticator>>;

/// A user who signed up, logged in and registered a (discoverable) passkey.
struct EnrolledUser {
    username: String,
    password_token: String,
    full_token: String,
    passkey: SharedPasskey,
}

/// Enrolls `count` users, a few at a time (each costs two argon2 hashes).
async fn enroll_all(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
) -> Result<Vec<EnrolledUser>, String> {
    four_at_a_time(0..count, "enrolment", |i| {
        enroll(addr, format!("{prefix}-c{i}"))
    })
    .await
}

/// `job(i)` for each `i` of `indices`, at most four at once (each costs
/// the server argon2 hashes), the results in order; `what` names a task
/// that died.
async fn four_at_a_time<T, F>(
    indices: std::ops::Range<usize>,
    what: &str,
    job: impl Fn(usize) -> F,
) -> Result<Vec<T>, String>
where
    F: std::future::Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let tasks: Vec<_> = indices
        .map(|i| {
            let (permits, job) = (permits.clone(), job(i));
            tokio::spawn(async move {
                let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
                job.await
            })
        })
        .collect();
    let mut done = Vec::with_capacity(tasks.len());
    for task in tasks {
        done.push(task.await.map_err(|e| format!("{what} task: {e}"))??);
    }
    Ok(done)
}

/// Sign-up, login, passkey registration, then one authentication for a full token.
async fn enroll(addr: SocketAddr, username: String) -> Result<EnrolledUser, String> {
    let mut conn = Conn::new(addr);
    let password_token = sign_up(&mut conn, &username).await?;
    let token = Some(password_token.as_str());

    let options = call(
        &mut conn,
        &http::get("/passkeys/register/options", token),
        "register options",
    )
    .await?;
    // Discoverable (`credProps.rk` true), as phase 4b's sign-ins need.
    let mut passkey = TestAuthenticator::discoverable();
    let credential = passkey.register(&options, ORIGIN)?;
    let verify = http::post_json("/passkeys/register/verify", token, &credential);
    let summary = call(&mut conn, &verify, "register verify").await?;
    if summary["discoverable"] != Value::Bool(true) {
        return Err(format!(
            "the passkey was not stored as discoverable: {summary}"
        ));
    }
    let passkey = Arc::new(Mutex::new(passkey));

    let full_token = authenticate(&mut conn, &password_token, &passkey).await?;
    Ok(EnrolledUser {
        username,
        password_token,
        full_token,
        passkey,
    })
}

/// Sign-up and login; returns the password-level access token.
async fn sign_up(conn: &mut Conn, username: &str) -> Result<String, String> {
    let credentials = json!({"username": username, "password": PASSWORD});
    call(
        conn,
        &http::post_json("/auth/signup", None, &credentials),
        "signup",
    )
    .await?;
    access_token(&call(conn, &login_request(username), "login").await?)
}

/// One passkey ceremony: options, assertion, verify; returns the full token.
async fn authenticate(
    conn: &mut Conn,
    token: &str,
    passkey: &SharedPasskey,
) -> Result<String, String> {
    let options = call(
        conn,
        &http::get("/passkeys/authenticate/options", Some(token)),
        "authenticate options",
    )
    .await?;
    let assertion = sign(passkey, &options)?;
    let verify = http::post_json("/passkeys/authenticate/verify", Some(token), &assertion);
    access_token(&call(conn, &verify, "authenticate verify").await?)
}

/// The authenticator's answer to `options` (its counter + 1).
fn sign(passkey: &SharedPasskey, options: &Value) -> Result<Value, String> {
    passkey
        .lock()
        .map_err(|_| "a passkey's lock was poisoned".to_owned())?
        .authenticate(options, ORIGIN)
}

/// `GET /passkeys/login/options`: public, no token.
fn sign_in_options_request() -> Vec<u8> {
    http::get("/passkeys/login/options", None)
}

/// Finishes a sign-in begun with `options`: the assertion (whose
/// `userHandle` is the one the authenticator registered with, the user's
/// id), then `POST /passkeys/login/verify`; returns the token response.
async fn finish_sign_in(
    conn: &mut Conn,
    passkey: &SharedPasskey,
    options: &Value,
) -> Result<Value, String> {
    let assertion = sign(passkey, options)?;
    let verify = http::post_json("/passkeys/login/verify", None, &assertion);
    call(conn, &verify, "sign-in verify").await
}

/// Sends `request`, expects 2xx, parses the JSON body.
async fn call(conn: &mut Conn, request: &[u8], what: &str) -> Result<Value, String> {
    expect_success(conn, request, what).await?.json()
}

fn access_token(response: &Value) -> Result<String, String> {
    string_field(response, "accessToken")
}

fn refresh_token(response: &Value) -> Result<String, String> {
    string_field(response, "refreshToken")
}

fn string_field(response: &Value, name: &str) -> Result<String, String> {
    response[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} in {response}"))
}

/// A claim of a token, read without verification (it is the server's own).
fn claim(token: &str, name: &str) -> Option<String> {
    token_part(token, 1, name)
}

/// All the claims of a token, unverified.
fn token_claims(token: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A field of a token's header (part 0) or claims (part 1), unverified.
fn token_part(token: &str, part: usize, name: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.split('.').nth(part)?).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value[name].as_str().map(str::to_owned)
}

/// The key a token names in its header, which must be of `expected`'s
/// algorithm: the figures are labelled with it.
fn signed_with(token: &str, expected: KeyAlgorithm) -> Result<TokenKey, String> {
    let algorithm = token_part(token, 0, "alg").ok_or("a token header without alg")?;
    let kid = token_part(token, 0, "kid").ok_or("a token header without kid")?;
    if algorithm != expected.as_str() {
        return Err(format!(
            "the server signed with {algorithm}, not the expected {expected}"
        ));
    }
    Ok(TokenKey { algorithm, kid })
}

/// The `sid` of the full-level token phases 1 and 3 send, which must be
/// the session its password login started (a step-up keeps the session):
/// the guard then checks a real session on every request.
fn session_of(full_token: &str, password_token: &str) -> Result<String, String> {
    let sid = claim(full_token, "sid").ok_or("the full-level token carries no sid claim")?;
    match claim(password_token, "sid") {
        Some(login_sid) if login_sid == sid => Ok(sid),
        other => Err(format!(
            "the step-up token's sid {sid} is not its login's ({other:?})"
        )),
    }
}

fn login_request(username: &str) -> Vec<u8> {
    http::post_json(
        "/auth/login",
        None,
        &json!({"username": username, "password": PASSWORD}),
    )
}

// ---------------------------------------------------------------------------
// Phases 1-3: fixed requests.

/// A run against `server`, with the CPU time the server spent on it.
async fn run_on<O: Operation>(server: &Server, spec: &LoadSpec, ops: Vec<O>) -> LoadResult {
    let before = server.cpu_time();
    let mut result = driver::run(server.addr, spec, ops).await;
    result.server_cpu = before
        .zip(server.cpu_time())
        .map(|(before, after)| after.saturating_sub(before));
    result
}

/// `concurrency` copies of one fixed request.
fn fixed(request: &[u8], concurrency: usize) -> Vec<FixedRequest> {
    spread(&[request.to_vec()], concurrency)
}

/// `concurrency` workers, worker `i` sending `requests[i % len]`.
fn spread(requests: &[Vec<u8>], concurrency: usize) -> Vec<FixedRequest> {
    let shared: Vec<Arc<[u8]>> = requests.iter().map(|r| Arc::from(r.as_slice())).collect();
    (0..concurrency)
        .map(|i| FixedRequest(shared[i % shared.len()].clone()))
        .collect()
}

fn guarded_request(full_token: &str) -> Vec<u8> {
    http::get("/protected/full", Some(full_token))
}

/// Rounds of alternating timed runs (one per list of requests, connection
/// `i` sending request `i` modulo the list's length), summed per run, so
/// that a slow spell of the shared machine does not land on one route
/// only. `cpu_time` is the server's CPU time so far, read around each run.
async fn alternate<const N: usize>(
    settings: &Settings,
    addr: SocketAddr,
    runs: [(&str, Vec<Vec<u8>>); N],
    concurrency: usize,
    cpu_time: impl Fn() -> Option<Duration>,
) -> [LoadResult; N] {
    const ROUNDS: u32 = 3;
    let mut totals: Vec<LoadResult> = Vec::with_capacity(N);
    for round in 0..ROUNDS {
        for (i, (label, requests)) in runs.iter().enumerate() {
            let spec = LoadSpec {
                label: (*label).into(),
                concurrency,
                stop: Stop::Timed {
                    warmup: settings.warmup / 2,
                    measure: settings.measure / ROUNDS,
                },
            };
            let before = cpu_time();
            let mut result = driver::run(addr, &spec, spread(requests, concurrency)).await;
            result.server_cpu = before
                .zip(cpu_time())
                .map(|(before, after)| after.saturating_sub(before));
            println!("    round {}: {}", round + 1, result.summary());
            if round == 0 {
                totals.push(result);
            } else {
                totals[i].merge(result);
            }
        }
    }
    for result in &totals {
        println!("  {}", result.summary());
    }
    let Ok(totals) = <[LoadResult; N]>::try_from(totals) else {
        unreachable!("one total per run");
    };
    totals
}

/// Phase 1: bare, bare with the guarded request's header, the guarded
/// full-level route and the guarded basic route, alternating in rounds.
async fn phase_guarded_vs_bare(
    settings: &Settings,
    server: &Server,
    full_token: &str,
    password_token: &str,
) -> [LoadResult; 4] {
    let runs = [
        ("bare GET /healthz", vec![http::get("/healthz", None)]),
        // Diagnostic: the bare route with the guarded request's bytes, to
        // tell the cost of a bigger request from the cost of the token check.
        (
            "bare GET /healthz + bearer header",
            vec![http::get("/healthz", Some(full_token))],
        ),
        (
            "guarded GET /protected/full",
            vec![guarded_request(full_token)],
        ),
        (
            "guarded GET /protected/basic",
            vec![http::get("/protected/basic", Some(password_token))],
        ),
    ];
    alternate(settings, server.addr, runs, settings.connections, || {
        server.cpu_time()
    })
    .await
}

/// Phase 1b: server E, on a fresh SQLite database with an ES256 key: one
/// user signs up and logs in (setup), then bare vs `/protected/basic`.
async fn phase_es256(
    settings: &Settings,
    base: &ServerConfig,
    prefix: &str,
) -> Result<AlgorithmRun, String> {
    let config = ServerConfig {
        binary: base.binary.clone(),
        workdir: base.workdir.clone(),
        db: DbTarget::Sqlite(base.workdir.join("es256.db")),
        challenge_capacity: 100_000,
        redis: None,
        signing_algorithm: Some(KeyAlgorithm::ES256.as_str()),
    };
    let server = Server::start(&config)?;
    let username = format!("{prefix}-e0");
    let mut conn = Conn::new(server.addr);
    let credentials = json!({"username": username, "password": PASSWORD});
    call(
        &mut conn,
        &http::post_json("/auth/signup", None, &credentials),
        "signup on E",
    )
    .await?;
    let token = access_token(&call(&mut conn, &login_request(&username), "login on E").await?)?;
    let key = signed_with(&token, KeyAlgorithm::ES256)?;
    let guarded = http::get("/protected/basic", Some(&token));
    expect_success(&mut conn, &guarded, "the ES256 token on /protected/basic").await?;
    drop(conn);
    println!(
        "  server E on {} (pid {}), {} key {}",
        server.addr,
        server.pid(),
        key.algorithm,
        key.kid
    );
    let runs = [
        ("E: bare GET /healthz", vec![http::get("/healthz", None)]),
        ("E: guarded GET /protected/basic", vec![guarded]),
    ];
    let [bare, guarded] = alternate(settings, server.addr, runs, settings.connections, || {
        server.cpu_time()
    })
    .await;
    let server_warnings = server.warnings().0;
    check_alive(server)?;
    Ok(AlgorithmRun {
        key,
        bare,
        guarded,
        env: config.env(),
        server_warnings,
    })
}

/// Phase 1c: the guard crate's example resource server, in this process,
/// verifying server A's tokens with A's JWKS: `/health` vs `/balance`.
async fn phase_resource_server(
    settings: &Settings,
    auth: &Server,
    token: &str,
) -> Result<ResourceRun, String> {
    let jwks_url = format!("http://{}/.well-known/jwks.json", auth.addr);
    let server = tokio::task::block_in_place(|| ResourceServer::start(&jwks_url))?;
    println!("  resource server on {}, keys from {jwks_url}", server.addr);
    let balance = http::get("/balance", Some(token));
    let mut conn = Conn::new(server.addr);
    // Setup checks: the route is guarded, and admits A's token.
    let refused = conn
        .send(&http::get("/balance", None))
        .await
        .map_err(|e| format!("/balance without a token: {e}"))?;
    if refused.status != 401 {
        return Err(refused.unexpected("/balance without a token (expected 401)"));
    }
    let answer = call(&mut conn, &balance, "/balance with A's token").await?;
    if answer["username"].as_str() != claim(token, "username").as_deref() {
        return Err(format!("/balance answered for someone else: {answer}"));
    }
    drop(conn);
    let runs = [
        (
            "payments: bare GET /health",
            vec![http::get("/health", None)],
        ),
        ("payments: guarded GET /balance", vec![balance]),
    ];
    let [bare, guarded] = alternate(settings, server.addr, runs, settings.connections, || {
        server.cpu_time()
    })
    .await;
    let jwks_fetches = server.jwks_fetches();
    let jwks_url = server.jwks_url.clone();
    server.stop().await?;
    Ok(ResourceRun {
        jwks_url,
        bare,
        guarded,
        jwks_fetches,
    })
}

/// Phase 1d (and 8): `GET /users/profile`, which reads the caller's
/// account, against `GET /protected/basic`, the guard alone, alternating.
/// Each connection sends the tokens of a user of its own (`tokens`, one per
/// connection), in both runs: the server reads as many accounts at once as
/// it has requests, as it would for that many users. Setup checks that each
/// profile is its token's user. `name` prefixes the runs' console labels.
async fn phase_profile(
    settings: &Settings,
    server: &Server,
    tokens: &[String],
    name: &str,
) -> Result<ProfileRun, String> {
    let mut conn = Conn::new(server.addr);
    let mut profiles = Vec::with_capacity(tokens.len());
    for token in tokens {
        let profile = http::get("/users/profile", Some(token));
        let answer = call(&mut conn, &profile, "/users/profile (setup)").await?;
        if answer["username"].as_str() != claim(token, "username").as_deref() {
            return Err(format!(
                "/users/profile answered for someone else: {answer}"
            ));
        }
        profiles.push(profile);
    }
    drop(conn);
    let labels = [
        format!("{name}GET /users/profile"),
        format!("{name}GET /protected/basic"),
    ];
    let basics = tokens
        .iter()
        .map(|token| http::get("/protected/basic", Some(token)))
        .collect();
    let runs = [(labels[0].as_str(), profiles), (labels[1].as_str(), basics)];
    let [profile, basic] = alternate(settings, server.addr, runs, tokens.len(), || {
        server.cpu_time()
    })
    .await;
    Ok(ProfileRun { profile, basic })
}

/// Password-level tokens of `settings.connections` distinct users, for
/// phase 1d's pair: the enrolled users', then as many more users as it
/// takes, signed up and logged in (no passkey).
async fn profile_tokens(
    settings: &Settings,
    addr: SocketAddr,
    prefix: &str,
    users: &[EnrolledUser],
) -> Result<Vec<String>, String> {
    let mut tokens: Vec<String> = users
        .iter()
        .take(settings.connections)
        .map(|u| u.password_token.clone())
        .collect();
    let more = four_at_a_time(tokens.len()..settings.connections, "sign-up", |i| {
        let username = format!("{prefix}-p{i}");
        async move { sign_up(&mut Conn::new(addr), &username).await }
    })
    .await?;
    tokens.extend(more);
    Ok(tokens)
}

async fn run_login(settings: &Settings, server: &Server, request: &[u8], n: usize) -> LoadResult {
    let result = run_on(
        server,
        &settings.timed("POST /auth/login", n),
        fixed(request, n),
    )
    .await;
    println!("  {}", result.summary());
    result
}

/// The argon2id reference: hashes timed in the benchmark process with the
/// server's parameters while the server is idle.
struct Argon2Reference {
    argon2: Argon2<'static>,
    params: (u32, u32, u32),
    cores: usize,
    /// Single-threaded hash times.
    sequential: Vec<Duration>,
}

impl Argon2Reference {
    fn new(cores: usize) -> Result<Argon2Reference, String> {
        let params = (OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_PARALLELISM);
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(params.0, params.1, params.2, None).map_err(|e| e.to_string())?,
        );
        hash_once(&argon2)?; // the warm-up
        Ok(Argon2Reference {
            argon2,
            params,
            cores,
            sequential: Vec::new(),
        })
    }

    /// Times `count` hashes one after another on this thread.
    fn time_sequential(&mut self, count: usize) -> Result<(), String> {
        for _ in 0..count {
            let started = Instant::now();
            hash_once(&self.argon2)?;
            self.sequential.push(started.elapsed());
        }
        Ok(())
    }

    /// The median single hash (robust to a neighbour's burst on a shared VM).
    fn timing(&self) -> HashTiming {
        let mut times = self.sequential.clone();
        times.sort();
        HashTiming {
            params: self.params,
            samples: times.len(),
            median: times.get(times.len() / 2).copied().unwrap_or(Duration::MAX),
            fastest: times.first().copied().unwrap_or(Duration::MAX),
            slowest: times.last().copied().unwrap_or(Duration::MAX),
            cores: self.cores,
        }
    }
}

/// One PHC hash of [`PASSWORD`] with a fresh salt (what sign-up does).
fn hash_once(argon2: &Argon2<'_>) -> Result<(), String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Phase 2: argon2 timed before and after the login run (so the reference
/// brackets the measurement), logins in between.
async fn phase_login(
    settings: &Settings,
    server: &Server,
    login_request: &[u8],
    cores: usize,
) -> Result<(Argon2Reference, LoadResult), String> {
    let half = settings.hash_samples.div_ceil(2);
    let mut reference = Argon2Reference::new(cores)?;
    tokio::task::block_in_place(|| reference.time_sequential(half))?;
    let login = run_login(settings, server, login_request, settings.login_connections).await;
    tokio::task::block_in_place(|| reference.time_sequential(half))?;
    let timing = reference.timing();
    println!(
        "  argon2id m={} t={} p={}: {:.1} ms per hash (median of {}) -> ceiling {:.1} hashes/s \
         on {cores} cores",
        timing.params.0,
        timing.params.1,
        timing.params.2,
        timing.median.as_secs_f64() * 1000.0,
        timing.samples,
        timing.ceiling(),
    );
    Ok((reference, login))
}

/// Guarded route alone, then the same with a login flood alongside.
async fn phase_latency_under_flood(
    settings: &Settings,
    addr: SocketAddr,
    full_token: &str,
    login_request: &[u8],
) -> (LoadResult, LoadResult, LoadResult) {
    let n = settings.idle_connections;
    let guarded = guarded_request(full_token);
    let idle = driver::run(
        addr,
        &settings.timed("guarded, idle", n),
        fixed(&guarded, n),
    )
    .await;
    println!("  {}", idle.summary());

    let flood_n = settings.login_connections;
    let guarded_spec = settings.timed("guarded, during login flood", n);
    let flood_spec = settings.timed("login flood", flood_n);
    let (under_flood, logins) = tokio::join!(
        driver::run(addr, &guarded_spec, fixed(&guarded, n)),
        driver::run(addr, &flood_spec, fixed(login_request, flood_n)),
    );
    println!("  {}", under_flood.summary());
    println!("  {}", logins.summary());
    (idle, under_flood, logins)
}

// ---------------------------------------------------------------------------
// Phase 4: passkey ceremonies (step-up), and 4b: passkey sign-ins.

/// One worker's user: options → assertion → verify, in a loop.
struct Ceremony {
    token: String,
    passkey: SharedPasskey,
}

impl Operation for Ceremony {
    async fn run(&mut self, conn: &mut Conn, _seq: u64) -> Result<(), String> {
        authenticate(conn, &self.token, &self.passkey)
            .await
            .map(drop)
    }
}

async fn phase_ceremonies(
    settings: &Settings,
    server: &Server,
    users: &[EnrolledUser],
) -> LoadResult {
    let ops: Vec<Ceremony> = users
        .iter()
        .map(|u| Ceremony {
            token: u.password_token.clone(),
            passkey: u.passkey.clone(),
        })
        .collect();
    let spec = settings.timed("passkey ceremonies (step-up)", ops.len());
    let result = run_on(server, &spec, ops).await;
    println!("  {}", result.summary());
    result
}

/// One worker's passkey, signing in with no token: public options →
/// assertion carrying the user handle → verify, which starts a session.
struct SignIn {
    options: Arc<[u8]>,
    passkey: SharedPasskey,
}

impl Operation for SignIn {
    async fn run(&mut self, conn: &mut Conn, _seq: u64) -> Result<(), String> {
        let options = call(conn, &self.options, "sign-in options").await?;
        let answer = finish_sign_in(conn, &self.passkey, &options).await?;
        // A full-level token of a new session, with its refresh token.
        let token = access_token(&answer)?;
        refresh_token(&answer)?;
        if answer["authLevel"] != "full" {
            return Err(format!("sign-in answered {answer}"));
        }
        if token.is_empty() {
            return Err("an empty access token".into());
        }
        Ok(())
    }
}

/// Phase 4b. Setup (not timed): one sign-in per user, checked in full (the
/// assertion's `userHandle` is the user's id bytes, the token is
/// full-level with `amr ["hwk"]` and a session that is not the login's);
/// then a timed run, each worker signing in with its own user's passkey.
async fn phase_sign_ins(
    settings: &Settings,
    server: &Server,
    users: &[EnrolledUser],
) -> Result<LoadResult, String> {
    let options_request: Arc<[u8]> = Arc::from(sign_in_options_request());
    let mut conn = Conn::new(server.addr);
    for user in users {
        let options = call(&mut conn, &options_request, "sign-in options").await?;
        let allowed = &options["publicKey"]["allowCredentials"];
        if allowed.as_array().is_some_and(|list| !list.is_empty()) {
            return Err(format!("sign-in options name credentials: {allowed}"));
        }
        let assertion = sign(&user.passkey, &options)?;
        let sub = claim(&user.password_token, "sub").ok_or("a token without sub")?;
        let id = uuid::Uuid::parse_str(&sub).map_err(|e| format!("sub {sub:?}: {e}"))?;
        let handle = assertion["response"]["userHandle"].as_str();
        if handle != Some(URL_SAFE_NO_PAD.encode(id.as_bytes()).as_str()) {
            return Err(format!(
                "the assertion's userHandle {handle:?} is not user {id}'s id bytes"
            ));
        }
        let verify = http::post_json("/passkeys/login/verify", None, &assertion);
        let answer = call(&mut conn, &verify, "sign-in verify (setup)").await?;
        let token = access_token(&answer)?;
        refresh_token(&answer)?;
        let amr = token_claims(&token).map(|c| c["amr"].clone());
        if claim(&token, "sub").as_deref() != Some(sub.as_str())
            || claim(&token, "authLevel").as_deref() != Some("full")
            || amr != Some(json!(["hwk"]))
            || claim(&token, "sid").is_none()
            || claim(&token, "sid") == claim(&user.password_token, "sid")
        {
            return Err(format!(
                "the sign-in's token is not a full-level hwk token of a new session of \
                 {sub}: {:?}",
                token_claims(&token)
            ));
        }
    }
    drop(conn);
    println!(
        "  {} users signed in once each (userHandle, amr [\"hwk\"], a new session: checked)",
        users.len()
    );
    let ops: Vec<SignIn> = users
        .iter()
        .map(|u| SignIn {
            options: options_request.clone(),
            passkey: u.passkey.clone(),
        })
        .collect();
    let spec = settings.timed("passkey sign-ins", ops.len());
    let result = run_on(server, &spec, ops).await;
    println!("  {}", result.summary());
    Ok(result)
}

/// Phase 4c: the options requests alone, so that a ceremony's server CPU
/// splits into options and verify. Step-up options: a timed run, each
/// worker with its own user's password-level token (each request replaces
/// its user's pending challenge). Sign-in options: a counted run, since
/// each stores a ceremony under its challenge until the TTL.
async fn phase_options_alone(
    settings: &Settings,
    server: &Server,
    users: &[EnrolledUser],
) -> OptionsAlone {
    let step_up = step_up_options_alone(settings, server, users).await;
    let spec = LoadSpec {
        label: "sign-in options alone".into(),
        concurrency: users.len(),
        stop: Stop::Count {
            total: settings.sign_in_options_count,
            limit: settings.flood_limit,
        },
    };
    let sign_in = run_on(
        server,
        &spec,
        fixed(&sign_in_options_request(), users.len()),
    )
    .await;
    println!("  {}", sign_in.summary());
    OptionsAlone { step_up, sign_in }
}

/// Phase 4c's timed run: each worker's `GET /passkeys/authenticate/options`
/// with its own user's password-level token, and no verify.
async fn step_up_options_alone(
    settings: &Settings,
    server: &Server,
    users: &[EnrolledUser],
) -> LoadResult {
    let ops: Vec<FixedRequest> = users
        .iter()
        .map(|u| {
            FixedRequest(Arc::from(http::get(
                "/passkeys/authenticate/options",
                Some(&u.password_token),
            )))
        })
        .collect();
    let spec = settings.timed("step-up options alone", ops.len());
    let step_up = run_on(server, &spec, ops).await;
    println!("  {}", step_up.summary());
    step_up
}

// ---------------------------------------------------------------------------
// Phase 5: refresh-token rotation.

/// One connection's session: each operation presents the current refresh
/// token and keeps the one the answer carries, so no two requests ever
/// present the same token (rotation never races).
struct Refresher {
    refresh_token: String,
    /// The login that started the session, to start another one when the
    /// session's token is refused.
    login: Arc<[u8]>,
}

impl Operation for Refresher {
    async fn run(&mut self, conn: &mut Conn, _seq: u64) -> Result<(), String> {
        let request = http::post_json(
            "/auth/refresh",
            None,
            &json!({"refreshToken": self.refresh_token}),
        );
        // A transport error or a 5xx keeps the token: the next operation
        // presents it again at once, well within the reuse grace, so even a
        // rotation whose answer was lost ends nothing; it is then refused
        // (401) and only that costs a new login.
        let answer = conn
            .send(&request)
            .await
            .map_err(|e| format!("refresh: {e}"))?;
        if answer.status == 401 {
            let err = answer.unexpected("refresh");
            let session = call(conn, &self.login, "login after a refused refresh").await?;
            self.refresh_token = refresh_token(&session)?;
            return Err(err);
        }
        if !answer.is_success() {
            return Err(answer.unexpected("refresh"));
        }
        let answer = answer.json()?;
        access_token(&answer)?;
        self.refresh_token = refresh_token(&answer)?;
        Ok(())
    }
}

/// Sessions started by real logins (setup, not timed), one per connection,
/// spread over the enrolled users; then a timed run of refreshes.
async fn phase_refresh(
    settings: &Settings,
    server: &Server,
    usernames: &[String],
    label: &str,
) -> Result<LoadResult, String> {
    let n = settings.refresh_connections;
    if usernames.is_empty() {
        return Err("no users to start sessions for".into());
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let addr = server.addr;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let login: Arc<[u8]> = Arc::from(login_request(&usernames[i % usernames.len()]));
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
                let mut conn = Conn::new(addr);
                let answer = call(&mut conn, &login, "login (session setup)").await?;
                Ok::<_, String>(Refresher {
                    refresh_token: refresh_token(&answer)?,
                    login,
                })
            })
        })
        .collect();
    let mut ops = Vec::with_capacity(n);
    for task in tasks {
        ops.push(
            task.await
                .map_err(|e| format!("session setup task: {e}"))??,
        );
    }
    println!("  {n} sessions started by password logins");
    let result = run_on(server, &settings.timed(label, n), ops).await;
    println!("  {}", result.summary());
    Ok(result)
}

// ---------------------------------------------------------------------------
// Phase 6: a flood of public sign-in options on a fresh server (B) with the
// default challenge store, its RSS, and its guarded route beside it.

/// The flood's expected answers so far, shared by its workers and the RSS
/// sampler.
#[derive(Default)]
struct FloodCounts {
    /// 200 with request options: a ceremony stored.
    admitted: AtomicU64,
    /// 503 `service_unavailable`: the store is past nine tenths of its bound.
    refused: AtomicU64,
}

/// `GET /passkeys/login/options`. A 200 with options and a 503
/// `service_unavailable` (once the store is full: the designed answer) are
/// both expected and counted apart; anything else is an error.
struct FloodOptions {
    request: Arc<[u8]>,
    counts: Arc<FloodCounts>,
}

impl Operation for FloodOptions {
    async fn run(&mut self, conn: &mut Conn, _seq: u64) -> Result<(), String> {
        let answer = conn
            .send(&self.request)
            .await
            .map_err(|e| format!("sign-in options: {e}"))?;
        let counter = match answer.status {
            200 if contains(&answer.body, b"\"challenge\"") => &self.counts.admitted,
            503 if contains(&answer.body, b"\"service_unavailable\"") => &self.counts.refused,
            _ => return Err(answer.unexpected("sign-in options")),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads `pid`'s RSS every `interval` until `stop` is set, with the flood's
/// counts at each reading.
async fn sample_rss(
    pid: u32,
    counts: Arc<FloodCounts>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<FloodRss> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(interval);
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        if let Some(rss_kib) = server::rss_kib_of(pid) {
            samples.push(FloodRss {
                at: started.elapsed(),
                admitted: counts.admitted.load(Ordering::Relaxed),
                refused: counts.refused.load(Ordering::Relaxed),
                rss_kib,
            });
        }
    }
    samples
}

/// The paced probe of `request` (phase 6's guarded route) for as long as
/// `during` runs; returns both results.
async fn probe_while<F: std::future::Future>(
    settings: &Settings,
    addr: SocketAddr,
    request: &Arc<[u8]>,
    label: &str,
    during: F,
) -> (LoadResult, F::Output) {
    let stop = Arc::new(AtomicBool::new(false));
    let probe = driver::paced(
        addr,
        label,
        request.clone(),
        settings.probe_connections,
        settings.probe_interval,
        stop.clone(),
    );
    let work = async {
        let output = during.await;
        stop.store(true, Ordering::Relaxed);
        output
    };
    tokio::join!(probe, work)
}

/// Server B: server A's configuration on a fresh process (the same
/// database, so A's users, passkeys and token work there), the challenge
/// store at its defaults. Setup: A's password-level token must open B's
/// `/protected/basic`, and one sign-in is begun (options fetched, to be
/// finished after the flood). Then the guarded route alone (paced probe),
/// then the same probe during the flood of `settings.flood_requests`
/// options, RSS sampled throughout; after it, while the store is full: a
/// step-up's options, `/readyz`, and the sign-in begun before the flood.
async fn phase_options_flood(
    settings: &Settings,
    config: &ServerConfig,
    password_token: &str,
    passkey: &SharedPasskey,
) -> Result<OptionsFlood, String> {
    // The store's bounds as the server reads them from this environment.
    let env = config.env();
    let store = passkey_auth::config::Settings::from_lookup(|name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .map_err(|e| format!("server B's configuration: {}: {}", e.var, e.message))?;
    let server = Server::start(config)?;
    println!(
        "  server B on {} (pid {}), challenge store bound {} bytes, {} entries, TTL {} s",
        server.addr,
        server.pid(),
        store.challenge_store_max_bytes,
        store.challenge_capacity,
        store.challenge_ttl.as_secs()
    );
    let rss_start = server.rss_kib();
    let guarded: Arc<[u8]> = Arc::from(http::get("/protected/basic", Some(password_token)));
    let options_request: Arc<[u8]> = Arc::from(sign_in_options_request());
    let early = {
        let mut conn = Conn::new(server.addr);
        expect_success(&mut conn, &guarded, "A's token on B's /protected/basic").await?;
        call(
            &mut conn,
            &options_request,
            "sign-in options before the flood",
        )
        .await?
    };

    let (idle, ()) = probe_while(
        settings,
        server.addr,
        &guarded,
        "guarded, idle server B",
        tokio::time::sleep(settings.measure),
    )
    .await;
    println!("  {}", idle.summary());

    let rss_before = server.rss_kib();
    let counts = Arc::new(FloodCounts::default());
    let spec = LoadSpec {
        label: "sign-in options flood".into(),
        concurrency: settings.flood_connections,
        stop: Stop::Count {
            total: settings.flood_requests,
            limit: settings.flood_limit,
        },
    };
    let ops = (0..spec.concurrency)
        .map(|_| FloodOptions {
            request: options_request.clone(),
            counts: counts.clone(),
        })
        .collect();
    let sampled = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_rss(
        server.pid(),
        counts.clone(),
        settings.rss_interval,
        sampled.clone(),
    ));
    let (during, flood) = probe_while(
        settings,
        server.addr,
        &guarded,
        "guarded, during the options flood",
        run_on(&server, &spec, ops),
    )
    .await;
    sampled.store(true, Ordering::Relaxed);
    let samples = sampler.await.map_err(|e| format!("RSS sampler: {e}"))?;
    let rss_after = server.rss_kib();
    let (admitted, refused) = (
        counts.admitted.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
    );
    println!("  {}", flood.summary());
    println!(
        "  answers: {admitted} × 200 (ceremony stored), {refused} × 503 service_unavailable \
         (store full), {} other",
        flood.errors
    );
    println!("  {}", during.summary());

    // A new connection: one left idle through the flood may have been
    // closed by the server's keep-alive timeout.
    let mut conn = Conn::new(server.addr);
    let step_up = conn
        .send(&http::get(
            "/passkeys/authenticate/options",
            Some(password_token),
        ))
        .await
        .map_err(|e| format!("step-up options after the flood: {e}"))?;
    let readyz = conn
        .send(&http::get("/readyz", None))
        .await
        .map_err(|e| format!("/readyz after the flood: {e}"))?;
    let early_sign_in = finish_sign_in(&mut conn, passkey, &early)
        .await
        .and_then(|answer| access_token(&answer))
        .map(drop);
    let step_up_refused =
        step_up.status == 503 && contains(&step_up.body, b"\"service_unavailable\"");
    println!(
        "  while full: step-up options HTTP {}, /readyz HTTP {}, the sign-in begun before \
         the flood: {}",
        step_up.status,
        readyz.status,
        early_sign_in
            .as_ref()
            .map_or_else(|e| e.clone(), |()| "200".into())
    );
    let peak_rss_kib = server.peak_rss_kib();
    let (server_warnings, last) = server.warnings();
    check_alive(server)?;
    Ok(OptionsFlood {
        requests: settings.flood_requests,
        store_max_bytes: store.challenge_store_max_bytes,
        capacity: store.challenge_capacity,
        ttl: store.challenge_ttl,
        probe_interval: settings.probe_interval,
        rss_interval: settings.rss_interval,
        flood,
        admitted,
        refused,
        idle,
        during,
        rss_start,
        rss_before,
        rss_after,
        peak_rss_kib,
        samples,
        step_up: format!(
            "HTTP {} {}",
            step_up.status,
            String::from_utf8_lossy(&step_up.body)
        ),
        step_up_refused,
        readyz_status: readyz.status,
        early_sign_in,
        server_warnings,
        last_warning: last.last().cloned(),
    })
}

// ---------------------------------------------------------------------------
// Phase 7: logout propagation between two nodes.

/// Two nodes on a fresh PostgreSQL database and one Redis; skipped when
/// either service cannot be reached.
async fn phase_logout_propagation(
    settings: &Settings,
    base: &ServerConfig,
    prefix: &str,
) -> NodesOutcome {
    let (Some(admin_url), Some(redis_url)) = (&settings.pg_admin_url, &settings.redis_url) else {
        return NodesOutcome::Skipped(
            "disabled (BENCH_PG_ADMIN_URL or BENCH_REDIS_URL set empty)".into(),
        );
    };
    let database = match tokio::task::block_in_place(|| nodes::Database::create(admin_url)) {
        Ok(database) => database,
        Err(err) => {
            return NodesOutcome::Skipped(format!(
                "PostgreSQL at {admin_url} is not reachable or refused a new database: {err}"
            ))
        }
    };
    if let Err(err) = tokio::task::block_in_place(|| nodes::redis_ping(redis_url)) {
        return NodesOutcome::Skipped(format!("Redis at {redis_url} is not reachable: {err}"));
    }
    let redis = RedisTarget {
        url: redis_url.clone(),
        prefix: format!("{prefix}:"),
    };
    let config = ServerConfig {
        binary: base.binary.clone(),
        workdir: base.workdir.clone(),
        db: DbTarget::Postgres(database.url.clone()),
        challenge_capacity: 100_000,
        redis: Some(redis.clone()),
        signing_algorithm: None,
    };
    let outcome = measure_logouts(settings, &config, prefix).await;
    // The nodes have stopped; what they left in Redis goes, and the
    // database goes when `database` is dropped.
    match tokio::task::block_in_place(|| nodes::redis_delete_prefix(&redis.url, &redis.prefix)) {
        Ok(keys) => println!("  deleted {keys} Redis keys under {}", redis.prefix),
        Err(err) => eprintln!(
            "warning: could not delete Redis keys {}*: {err}",
            redis.prefix
        ),
    }
    drop(database);
    match outcome {
        Ok(mut measured) => {
            measured.env = config.env();
            NodesOutcome::Measured(Box::new(measured))
        }
        Err(err) => NodesOutcome::Failed(err),
    }
}

/// Log in on C, check the token on D, log out on C, poll D until it
/// answers 401: `settings.logout_rounds` times, one after another.
async fn measure_logouts(
    settings: &Settings,
    config: &ServerConfig,
    prefix: &str,
) -> Result<LogoutPropagation, String> {
    // One after the other: C runs the migrations of the empty database.
    let c = Server::start(config)?;
    let d = Server::start(config)?;
    println!(
        "  node C on {} (pid {}), node D on {} (pid {}), Redis prefix {:?}",
        c.addr,
        c.pid(),
        d.addr,
        d.pid(),
        config.redis.as_ref().map_or("", |r| r.prefix.as_str())
    );
    let username = format!("{prefix}-n0");
    let credentials = json!({"username": username, "password": PASSWORD});
    call(
        &mut Conn::new(c.addr),
        &http::post_json("/auth/signup", None, &credentials),
        "signup on C",
    )
    .await?;
    // A diagnostic first: phase 5's refresh run, on PostgreSQL.
    let refresh = phase_refresh(
        settings,
        &c,
        std::slice::from_ref(&username),
        "POST /auth/refresh on node C",
    )
    .await?;
    // Opened now: a connection left idle through the run above would have
    // been closed by the server's keep-alive timeout.
    let mut on_c = Conn::new(c.addr);
    let mut on_d = Conn::new(d.addr);
    let login = login_request(&username);
    let mut result = LogoutPropagation {
        refresh,
        rounds: settings.logout_rounds,
        delays: Vec::with_capacity(settings.logout_rounds),
        polls: Vec::with_capacity(settings.logout_rounds),
        not_propagated: 0,
        errors: 0,
        first_error: None,
        accepted_by_c_after_logout: 0,
        poll_interval: settings.poll_interval,
        poll_deadline: settings.poll_deadline,
        server_warnings: 0,
        env: Vec::new(),
    };
    for round in 0..settings.logout_rounds {
        // Setup, not timed: a session on C whose token D accepts.
        let token = access_token(&call(&mut on_c, &login, "login on C").await?)?;
        let probe = http::get("/protected/basic", Some(&token));
        expect_success(&mut on_d, &probe, "the new token on D").await?;

        let logout = on_c
            .send(&http::post("/auth/logout", Some(&token)))
            .await
            .map_err(|e| format!("logout on C: {e}"))?;
        let ended = Instant::now();
        if logout.status != 204 {
            return Err(logout.unexpected(&format!("round {round}: logout on C")));
        }
        let mut polls = 0u32;
        loop {
            polls += 1;
            let answer = on_d
                .send(&probe)
                .await
                .map_err(|e| format!("poll on D: {e}"))?;
            match answer.status {
                401 => {
                    result.delays.push(ended.elapsed());
                    let code = answer
                        .json()
                        .ok()
                        .and_then(|v| v["code"].as_str().map(str::to_owned));
                    if code.as_deref() != Some("invalid_token") {
                        result.error(answer.unexpected("D's 401 is not invalid_token"));
                    }
                    break;
                }
                200 if ended.elapsed() >= settings.poll_deadline => {
                    result.not_propagated += 1;
                    result.error(format!(
                        "round {round}: D still accepted the token {:?} after the logout",
                        settings.poll_deadline
                    ));
                    break;
                }
                200 => tokio::time::sleep(settings.poll_interval).await,
                _ => return Err(answer.unexpected(&format!("round {round}: poll on D"))),
            }
        }
        result.polls.push(polls);
        // The node that ended the session must refuse it at once (checked
        // after D's answer, so as not to delay the first poll).
        let on_ending_node = on_c
            .send(&probe)
            .await
            .map_err(|e| format!("check on C: {e}"))?;
        if on_ending_node.status != 401 {
            result.accepted_by_c_after_logout += 1;
            result.error(on_ending_node.unexpected("C after its own logout"));
        }
    }
    result.server_warnings = c.warnings().0 + d.warnings().0;
    check_alive(c)?;
    check_alive(d)?;
    Ok(result)
}

// ---------------------------------------------------------------------------
// Phase 8: the database paths on PostgreSQL.

/// Server P on PostgreSQL: `BENCH_DATABASE_URL` (this run's users deleted
/// after), else a fresh database through `BENCH_PG_ADMIN_URL` (dropped
/// after); skipped when PostgreSQL cannot be reached.
async fn phase_postgres(settings: &Settings, base: &ServerConfig, prefix: &str) -> PostgresOutcome {
    let (url, fresh, database) = match (&settings.database_url, &settings.pg_admin_url) {
        (Some(url), _) => {
            if let Err(err) = tokio::task::block_in_place(|| nodes::pg_ping(url)) {
                return PostgresOutcome::Skipped(format!(
                    "PostgreSQL at BENCH_DATABASE_URL ({}) is not reachable: {err}",
                    nodes::masked(url)
                ));
            }
            let described = "`BENCH_DATABASE_URL`, an existing database: this run's users \
                             are deleted after the phase"
                .to_owned();
            (url.clone(), None, described)
        }
        (None, Some(admin_url)) => {
            match tokio::task::block_in_place(|| nodes::Database::create(admin_url)) {
                Ok(database) => (
                    database.url.clone(),
                    Some(database),
                    "a database created for the run through `BENCH_PG_ADMIN_URL` and dropped \
                     after it"
                        .to_owned(),
                ),
                Err(err) => {
                    return PostgresOutcome::Skipped(format!(
                        "PostgreSQL at {} is not reachable or refused a new database: {err}",
                        nodes::masked(admin_url)
                    ))
                }
            }
        }
        (None, None) => {
            return PostgresOutcome::Skipped(
                "disabled (BENCH_DATABASE_URL unset and BENCH_PG_ADMIN_URL set empty)".into(),
            )
        }
    };
    let config = ServerConfig {
        binary: base.binary.clone(),
        workdir: base.workdir.clone(),
        db: DbTarget::Postgres(url),
        challenge_capacity: 100_000,
        redis: None,
        signing_algorithm: None,
    };
    let outcome = measure_postgres(settings, &config, prefix).await;
    // Server P has stopped: its users go from a shared database, and a
    // fresh database goes whole.
    match fresh {
        Some(database) => drop(database),
        None => {
            if let Err(err) = tokio::task::block_in_place(|| config.db.delete_users(prefix)) {
                eprintln!(
                    "warning: could not delete this run's users from server P's database: {err}"
                );
            }
        }
    }
    match outcome {
        Ok(mut run) => {
            run.database = database;
            run.env = config
                .env()
                .into_iter()
                .map(|(k, v)| {
                    if k == "DATABASE_URL" {
                        (k, nodes::masked(&v))
                    } else {
                        (k, v)
                    }
                })
                .collect();
            PostgresOutcome::Measured(Box::new(run))
        }
        Err(err) => PostgresOutcome::Failed(err),
    }
}

/// Enrolls the ceremony users on server P, then phase 1d's pair and phases
/// 4, 4b and 4c, with the same code as on server A.
async fn measure_postgres(
    settings: &Settings,
    config: &ServerConfig,
    prefix: &str,
) -> Result<PostgresRun, String> {
    let server = Server::start(config)?;
    println!("  server P on {} (pid {})", server.addr, server.pid());
    println!(
        "  setup: {} users with a passkey",
        settings.ceremony_workers
    );
    let users = enroll_all(server.addr, prefix, settings.ceremony_workers).await?;
    let tokens = profile_tokens(settings, server.addr, prefix, &users).await?;
    let profile = phase_profile(settings, &server, &tokens, "P: ").await?;
    let ceremonies = phase_ceremonies(settings, &server, &users).await;
    let sign_ins = phase_sign_ins(settings, &server, &users).await?;
    let options = phase_options_alone(settings, &server, &users).await;
    let server_warnings = server.warnings().0;
    check_alive(server)?;
    Ok(PostgresRun {
        database: String::new(),
        env: Vec::new(),
        profile,
        ceremonies,
        sign_ins,
        options,
        server_warnings,
    })
}
