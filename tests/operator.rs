//! The operator's command line, run as the real binary next to a running
//! server on the same database: `migrate`, `check-config`, and `user show |
//! end-sessions | reset-passkeys | lock | unlock`.
//!
//! Every scenario runs on a SQLite file in a temporary directory (the
//! server learns of endings by re-reading the database every 5 s) and, when
//! `TEST_DATABASE_URL` is set, on a fresh PostgreSQL database too (with
//! Redis as well when `TEST_REDIS_URL` is set: then the command's endings
//! are published and refused within a second).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use common::authenticator::TestAuthenticator;
use common::pg_database::{env_var, PgDatabase};
use common::server_process::{server_command, Running};

const ORIGIN: &str = "http://localhost:3000";
const PASSWORD: &str = "correct horse battery";

fn workdir() -> PathBuf {
    let dir = std::env::temp_dir()
        .join("passkey-auth-operator-tests")
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The backends to run on: SQLite always, PostgreSQL when configured.
fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if env_var("TEST_DATABASE_URL").is_some() {
        all.push(Backend::Postgres);
    } else {
        eprintln!("TEST_DATABASE_URL is not set: the PostgreSQL runs are skipped");
    }
    all
}

/// One deployment: a working directory, a database, maybe Redis, and the
/// configuration the server and the command line share.
struct Deployment {
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// Whether endings are published through Redis (refused within a second).
    redis: bool,
    _pg: Option<PgDatabase>,
}

impl Deployment {
    fn new(backend: Backend) -> Self {
        let dir = workdir();
        let mut env: Vec<(String, String)> = [
            // Every request comes from 127.0.0.1 and logs in often.
            ("RATE_LIMIT_IP_PER_MINUTE", "0"),
            ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "0"),
            ("LOGIN_LOCKOUT_THRESHOLD", "0"),
            ("RP_ID", "localhost"),
            ("RP_ORIGIN", ORIGIN),
            ("RUST_LOG", "warn,passkey_auth=info"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (pg, redis) = match backend {
            Backend::Sqlite => {
                let path = dir.join("auth.db");
                env.push((
                    "DATABASE_URL".into(),
                    format!("sqlite://{}", path.display()),
                ));
                (None, false)
            }
            Backend::Postgres => {
                let pg =
                    PgDatabase::create(&env_var("TEST_DATABASE_URL").unwrap(), "passkey_operator");
                env.push(("DATABASE_URL".into(), pg.url.clone()));
                let redis = env_var("TEST_REDIS_URL");
                if let Some(redis) = &redis {
                    env.push(("REDIS_URL".into(), redis.clone()));
                    env.push((
                        "REDIS_KEY_PREFIX".into(),
                        format!("operator:{}:", uuid::Uuid::new_v4().simple()),
                    ));
                }
                (Some(pg), redis.is_some())
            }
        };
        Deployment {
            dir,
            env,
            redis,
            _pg: pg,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = server_command(&self.dir);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn server(&self) -> Running {
        Running::start(self.command())
    }

    /// Runs `passkey-auth ARGS` with the deployment's configuration.
    fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdout(Stdio::piped())
            .output()
            .unwrap()
    }

    /// As [`Deployment::cli`], which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} exited {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// How long a running server may take to refuse an ended session's
    /// token: at once with Redis, else by its next re-read (every 5 s).
    fn refusal_deadline(&self) -> Duration {
        if self.redis {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(8)
        }
    }

    fn show(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["user", "show", name, "--json"])).unwrap()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // The server (declared after the deployment) is stopped by now.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// HTTP against one running server.
struct Http<'a> {
    node: &'a Running,
    client: Client,
}

impl<'a> Http<'a> {
    fn new(node: &'a Running) -> Self {
        Http {
            node,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn post(&self, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.post(self.node.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().unwrap();
        (res.status().as_u16(), res.json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.node.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().unwrap();
        (res.status().as_u16(), res.json().unwrap_or(Value::Null))
    }

    fn signup(&self, username: &str) {
        let (status, body) = self.post(
            "/auth/signup",
            &json!({"username": username, "password": PASSWORD}),
            None,
        );
        assert_eq!(status, 201, "{body}");
    }

    fn login_as(&self, username: &str, password: &str) -> (u16, Value) {
        self.post(
            "/auth/login",
            &json!({"username": username, "password": password}),
            None,
        )
    }

    /// A login's (access token, refresh token).
    fn login(&self, username: &str) -> (String, String) {
        let (status, body) = self.login_as(username, PASSWORD);
        assert_eq!(status, 200, "{body}");
        (
            body["accessToken"].as_str().unwrap().to_owned(),
            body["refreshToken"].as_str().unwrap().to_owned(),
        )
    }

    /// Registers `device` with a recent login's token; the answer.
    fn register(&self, token: &str, device: &mut TestAuthenticator) -> (u16, Value) {
        let (status, options) = self.get("/passkeys/register/options", Some(token));
        if status != 200 {
            return (status, options);
        }
        let body = device.register(&options, ORIGIN).unwrap();
        self.post("/passkeys/register/verify", &body, Some(token))
    }

    /// A passkey sign-in with `device`.
    fn sign_in(&self, device: &mut TestAuthenticator) -> (u16, Value) {
        let (status, options) = self.get("/passkeys/login/options", None);
        assert_eq!(status, 200, "{options}");
        let body = device.authenticate(&options, ORIGIN).unwrap();
        self.post("/passkeys/login/verify", &body, None)
    }

    fn refresh(&self, refresh: &str) -> (u16, Value) {
        self.post("/auth/refresh", &json!({"refreshToken": refresh}), None)
    }

    /// Waits until the server refuses `token` (401 `invalid_token`), at
    /// most `deadline`; how long it took.
    fn until_refused(&self, token: &str, since: Instant, deadline: Duration) -> Duration {
        loop {
            let (status, body) = self.get("/protected/basic", Some(token));
            if status == 401 {
                assert_eq!(body["code"], "invalid_token", "{body}");
                return since.elapsed();
            }
            assert_eq!(status, 200, "{body}");
            assert!(
                since.elapsed() < deadline,
                "the server still accepts the token {:?} after the command",
                since.elapsed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn events(&self, token: &str) -> Vec<Value> {
        let (status, page) = self.get("/auth/events?limit=100", Some(token));
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().unwrap().clone()
    }
}

fn event<'e>(events: &'e [Value], kind: &str) -> &'e Value {
    events
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {events:#?}"))
}

#[test]
fn migrate_applies_the_pending_migrations_then_finds_none() {
    for backend in backends() {
        let deployment = Deployment::new(backend);
        let first = deployment.ok(&["migrate"]);
        assert!(
            first.contains("applied 2026-11-22-000001_create_users"),
            "{backend:?}: {first}"
        );
        assert!(
            first.contains("applied 2026-12-01-000008_add_users_locked_at"),
            "{backend:?}: {first}"
        );
        let again = deployment.ok(&["migrate"]);
        assert!(
            again.starts_with("nothing to apply"),
            "{backend:?}: {again}"
        );
        // The server starts on the migrated database and applies nothing.
        let node = deployment.server();
        assert!(
            !node
                .startup_log
                .iter()
                .any(|l| l.contains("applied migration")),
            "{:#?}",
            node.startup_log
        );
    }
}

#[test]
fn check_config_masks_secrets_and_an_invalid_value_exits_2_naming_it() {
    let dir = workdir();
    let kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let out = server_command(&dir)
        .args(["check-config"])
        .envs([
            (
                "DATABASE_URL",
                "postgres://auth:hunter2@db.internal:5432/auth",
            ),
            ("REDIS_URL", "redis://:swordfish@redis:6379"),
            ("SIGNING_KEY_ENCRYPTION_KEY", kek),
            ("JWT_SECRET", "an-old-secret-that-signs-nothing"),
            ("STEP_UP_MAX_AGE_SECS", "120"),
        ])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["hunter2", "swordfish", kek, "an-old-secret"] {
        assert!(!text.contains(secret), "{secret} is shown:\n{text}");
    }
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_owned()
    };
    assert_eq!(
        line("DATABASE_URL"),
        "DATABASE_URL=postgres://auth:***@db.internal:5432/auth"
    );
    assert_eq!(line("REDIS_URL"), "REDIS_URL=redis://:***@redis:6379");
    assert!(line("SIGNING_KEY_ENCRYPTION_KEY").contains("(set, hidden)"));
    assert!(line("JWT_SECRET").contains("(set, hidden)"));
    assert_eq!(line("STEP_UP_MAX_AGE_SECS"), "STEP_UP_MAX_AGE_SECS=120");
    assert!(
        line("CHALLENGE_TTL_SECS").contains("=300")
            && line("CHALLENGE_TTL_SECS").contains("# default")
    );
    // Nothing was connected to or created.
    assert!(!dir.join("data").exists());

    for (var, value) in [
        ("CHALLENGE_TTL_SECS", "five minutes"),
        ("REDIS_URL", "localhost:6379"),
        ("RP_ID", "example.com"),
    ] {
        let out = server_command(&dir)
            .args(["check-config"])
            .env(var, value)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_user_is_a_clear_message_and_exit_code_1() {
    let deployment = Deployment::new(Backend::Sqlite);
    for command in ["show", "end-sessions", "reset-passkeys", "lock", "unlock"] {
        for name in ["nobody", "not a username"] {
            let out = deployment.cli(&["user", command, name]);
            assert_eq!(out.status.code(), Some(1), "user {command} {name}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("no user named `{name}`")),
                "user {command} {name}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

/// A short-lived command must not die at exit: with a connection pool that
/// keeps one in reserve, its thread could be opening that connection inside
/// the database client library while the process exits, and crash there
/// (about one `user show` in six on PostgreSQL did, as a segmentation fault).
#[test]
fn commands_exit_cleanly_every_time() {
    for backend in backends() {
        let deployment = Deployment::new(backend);
        deployment.ok(&["migrate"]);
        for _ in 0..40 {
            let out = deployment.cli(&["user", "show", "nobody"]);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{backend:?}: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for _ in 0..10 {
            deployment.ok(&["keys", "list"]);
        }
    }
}

#[test]
fn user_show_lists_the_account_without_key_material() {
    for backend in backends() {
        let deployment = Deployment::new(backend);
        let node = deployment.server();
        let http = Http::new(&node);
        http.signup("Shown.User");
        let (token, _) = http.login("shown.user");
        let mut device = TestAuthenticator::discoverable();
        let (status, registered) = http.register(&token, &mut device);
        assert_eq!(status, 201, "{registered}");

        // Any case names the account.
        let report = deployment.show("SHOWN.user");
        assert_eq!(report["username"], "Shown.User");
        assert_eq!(report["lockedAt"], Value::Null);
        assert_eq!(report["recoveryCodesRemaining"], 10);
        let passkeys = report["passkeys"].as_array().unwrap();
        assert_eq!(passkeys.len(), 1);
        assert_eq!(passkeys[0]["id"], registered["id"]);
        assert_eq!(passkeys[0]["discoverable"], true);
        let sessions = report["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0]["amr"], json!(["pwd"]));
        let kinds: Vec<&str> = report["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert!(
            kinds.starts_with(&["recovery_codes_issued", "passkey_registered"])
                || kinds.starts_with(&["passkey_registered", "recovery_codes_issued"]),
            "{kinds:?}"
        );
        assert!(kinds.contains(&"login_succeeded") && kinds.contains(&"signup"));
        let text = serde_json::to_string(&report).unwrap();
        for secret in [
            "credential\"",
            "publicKey",
            "password_hash",
            "code_hash",
            "$argon2",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }

        let table = deployment.ok(&["user", "show", "shown.user", "--events", "3"]);
        assert!(table.contains("username        Shown.User"), "{table}");
        assert!(table.contains("status          active"), "{table}");
        assert!(table.contains("recovery codes  10 remaining"), "{table}");
        assert!(table.contains("passkeys: 1"), "{table}");
        assert!(table.contains("live sessions: 1"), "{table}");
        assert!(table.contains("latest events (newest first): 3"), "{table}");
    }
}

#[test]
fn a_locked_account_cannot_log_in_refresh_or_sign_in_until_unlocked() {
    for backend in backends() {
        let deployment = Deployment::new(backend);
        let node = deployment.server();
        let http = Http::new(&node);
        http.signup("Locked.Out");
        let (token, refresh) = http.login("locked.out");
        let mut device = TestAuthenticator::discoverable();
        assert_eq!(http.register(&token, &mut device).0, 201);
        assert_eq!(http.get("/protected/basic", Some(&token)).0, 200);

        let locked = deployment.ok(&["user", "lock", "LOCKED.OUT", "--reason", "ticket 7"]);
        let since = Instant::now();
        assert!(
            locked.starts_with("Locked.Out: locked, ended 1 session"),
            "{locked}"
        );
        // The running server refuses the existing token, then its refresh.
        let took = http.until_refused(&token, since, deployment.refusal_deadline());
        eprintln!("{backend:?}: the token was refused {took:?} after the lock");
        let (status, body) = http.refresh(&refresh);
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_refresh_token"))
        );

        // The right password: 403 account_locked; a wrong one stays 401.
        let (status, body) = http.login_as("locked.out", PASSWORD);
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("account_locked")),
            "{body}"
        );
        assert_eq!(body["status"], 403);
        let (status, body) = http.login_as("locked.out", "not the password");
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_credentials"))
        );
        // A passkey that verifies: 403 account_locked, no session.
        let (status, body) = http.sign_in(&mut device);
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("account_locked")),
            "{body}"
        );

        let report = deployment.show("locked.out");
        assert!(report["lockedAt"].is_string(), "{report}");
        assert_eq!(report["sessions"], json!([]));
        let again = deployment.ok(&["user", "lock", "locked.out"]);
        assert!(again.contains("already locked"), "{again}");
        assert!(deployment
            .ok(&["user", "show", "locked.out"])
            .contains("status          locked since "));

        let unlocked = deployment.ok(&["user", "unlock", "locked.out"]);
        assert!(unlocked.starts_with("Locked.Out: unlocked"), "{unlocked}");
        let (token, refresh) = http.login("locked.out");
        assert_eq!(http.get("/protected/basic", Some(&token)).0, 200);
        assert_eq!(http.refresh(&refresh).0, 200);
        let (status, body) = http.sign_in(&mut device);
        assert_eq!(status, 200, "{body}");
        assert!(deployment
            .ok(&["user", "unlock", "locked.out"])
            .contains("not locked; nothing changed"));

        // The user sees what the operator did, and that an operator did it.
        let events = http.events(&token);
        let lock = event(&events, "account_locked");
        assert_eq!(lock["outcome"], "success");
        assert_eq!(lock["detail"], "by an operator; reason: ticket 7");
        assert_eq!(lock["ipAddress"], "0.0.0.0");
        assert!(lock["userAgent"].as_str().unwrap().contains("operator CLI"));
        assert_eq!(
            event(&events, "account_unlocked")["detail"],
            "by an operator"
        );
        assert!(events.iter().any(|e| e["type"] == "session_ended"
            && e["detail"].as_str().unwrap().ends_with("(account_locked)")));
        assert!(events
            .iter()
            .any(|e| e["type"] == "login_failed" && e["detail"] == "account locked"));
        assert!(events
            .iter()
            .any(|e| e["type"] == "passkey_sign_in_failed" && e["detail"] == "account locked"));
        // Only one account_locked event: the second lock changed nothing.
        assert_eq!(
            events
                .iter()
                .filter(|e| e["type"] == "account_locked")
                .count(),
            1
        );
    }
}

#[test]
fn end_sessions_refuses_every_token_of_the_account() {
    for backend in backends() {
        let deployment = Deployment::new(backend);
        let node = deployment.server();
        let http = Http::new(&node);
        http.signup("many.sessions");
        http.signup("bystander");
        let (a, refresh_a) = http.login("many.sessions");
        let (b, _) = http.login("Many.Sessions");
        let (other, _) = http.login("bystander");

        let out = deployment.ok(&["user", "end-sessions", "many.sessions"]);
        let since = Instant::now();
        assert!(out.starts_with("many.sessions: ended 2 sessions"), "{out}");
        let deadline = deployment.refusal_deadline();
        let took = http.until_refused(&a, since, deadline);
        http.until_refused(&b, since, deadline);
        eprintln!("{backend:?}: the tokens were refused {took:?} after end-sessions");
        assert_eq!(http.refresh(&refresh_a).0, 401);
        // Another account's session is untouched.
        assert_eq!(http.get("/protected/basic", Some(&other)).0, 200);

        // The account logs in again; the event says an operator did it.
        let (token, _) = http.login("many.sessions");
        let events = http.events(&token);
        assert_eq!(
            event(&events, "operator_sessions_ended")["detail"],
            "by an operator; 2 sessions ended"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| e["type"] == "session_ended"
                    && e["detail"].as_str().unwrap().ends_with("(operator)"))
                .count(),
            2
        );
        assert!(deployment
            .ok(&["user", "end-sessions", "many.sessions"])
            .starts_with("many.sessions: ended 1 session;"));
    }
}

#[test]
fn reset_passkeys_lets_the_user_enrol_again_after_a_password_login() {
    for backend in backends() {
        let deployment = Deployment::new(backend);
        let node = deployment.server();
        let http = Http::new(&node);
        http.signup("lost.keys");
        let (token, refresh) = http.login("lost.keys");
        let mut old = TestAuthenticator::discoverable();
        let (status, first) = http.register(&token, &mut old);
        assert_eq!(status, 201, "{first}");
        assert_eq!(first["recoveryCodes"].as_array().unwrap().len(), 10);
        // A full-level session (a passkey sign-in) that must not survive.
        let (status, full) = http.sign_in(&mut old);
        assert_eq!(status, 200, "{full}");
        let full_token = full["accessToken"].as_str().unwrap().to_owned();
        assert_eq!(http.get("/protected/full", Some(&full_token)).0, 200);

        let out = deployment.ok(&[
            "user",
            "reset-passkeys",
            "LOST.keys",
            "--reason",
            "lost every device",
        ]);
        let since = Instant::now();
        assert!(
            out.starts_with("lost.keys: deleted 1 passkey and 10 recovery codes, ended 2 sessions"),
            "{out}"
        );
        let deadline = deployment.refusal_deadline();
        http.until_refused(&full_token, since, deadline);
        http.until_refused(&token, since, deadline);
        assert_eq!(http.refresh(&refresh).0, 401);

        let report = deployment.show("lost.keys");
        assert_eq!(report["passkeys"], json!([]));
        assert_eq!(report["recoveryCodesRemaining"], 0);
        assert_eq!(report["sessions"], json!([]));
        // The old passkey no longer signs in.
        let (status, body) = http.sign_in(&mut old);
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("passkey_verification_failed"))
        );

        // A fresh password login enrols a first passkey, with new codes.
        let (token, _) = http.login("lost.keys");
        let (status, me) = http.get("/auth/me", Some(&token));
        assert_eq!((status, me["passkeyCount"].as_i64()), (200, Some(0)));
        let mut new = TestAuthenticator::discoverable();
        let (status, again) = http.register(&token, &mut new);
        assert_eq!(status, 201, "{again}");
        assert_eq!(again["recoveryCodes"].as_array().unwrap().len(), 10);
        let (status, _) = http.sign_in(&mut new);
        assert_eq!(status, 200);

        let events = http.events(&token);
        assert_eq!(
            event(&events, "operator_passkeys_reset")["detail"],
            "by an operator; 1 passkey and 10 recovery codes deleted; reason: lost every device"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| e["type"] == "session_ended"
                    && e["detail"].as_str().unwrap().ends_with("(passkeys_reset)"))
                .count(),
            2
        );
    }
}

#[test]
fn logins_racing_a_lock_leave_no_live_session() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    for backend in backends() {
        let deployment = Deployment::new(backend);
        let node = deployment.server();
        Http::new(&node).signup("racer");
        let stop = AtomicBool::new(false);
        // Progress, not sleeps: a loaded machine (CI) may take seconds per
        // login, so the lock waits for logins to succeed, and the workers
        // for one to be refused.
        let (succeeded, refusals) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let login_url = node.url("/auth/login");
        let (tokens, refused) = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let client = Client::new();
                        let (mut tokens, mut refused) = (Vec::new(), 0);
                        while !stop.load(Ordering::Relaxed) {
                            let res = client
                                .post(&login_url)
                                .json(&json!({"username": "racer", "password": PASSWORD}))
                                .send()
                                .unwrap();
                            let status = res.status().as_u16();
                            let body: Value = res.json().unwrap();
                            match status {
                                200 => {
                                    tokens.push(body["accessToken"].as_str().unwrap().to_owned());
                                    succeeded.fetch_add(1, Ordering::Relaxed);
                                }
                                403 => {
                                    assert_eq!(body["code"], "account_locked");
                                    refused += 1;
                                    refusals.fetch_add(1, Ordering::Relaxed);
                                }
                                other => panic!("login answered {other}: {body}"),
                            }
                        }
                        (tokens, refused)
                    })
                })
                .collect();
            // The workers stop even if the command fails (a panic here
            // would otherwise wait for them for ever).
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let stopping = Stop(&stop);
            let until = |count: &AtomicUsize, what: &str| {
                let deadline = Instant::now() + Duration::from_secs(60);
                while count.load(Ordering::Relaxed) < 4 {
                    assert!(Instant::now() < deadline, "no {what} within 60 s");
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            until(&succeeded, "logins");
            deployment.ok(&["user", "lock", "racer"]);
            until(&refusals, "refusals");
            drop(stopping);
            workers.into_iter().map(|w| w.join().unwrap()).fold(
                (Vec::new(), 0),
                |(mut all, n), (tokens, refused)| {
                    all.extend(tokens);
                    (all, n + refused)
                },
            )
        });
        assert!(
            !tokens.is_empty() && refused > 0,
            "{} logins, {refused} refused",
            tokens.len()
        );
        // Every session a login started, before or during the lock, ended.
        let http = Http::new(&node);
        let since = Instant::now();
        for token in &tokens {
            http.until_refused(token, since, deployment.refusal_deadline());
        }
        assert_eq!(deployment.show("racer")["sessions"], json!([]));
        eprintln!(
            "{backend:?}: {} logins before or during the lock, {refused} refused after it",
            tokens.len()
        );
    }
}

/// The binary's path, for a look at `--help`.
fn help(dir: &Path, args: &[&str]) -> String {
    let out = server_command(dir)
        .args(args)
        .arg("--help")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_operator_commands_are_in_the_help() {
    let dir = workdir();
    let top = help(&dir, &[]);
    for command in ["serve", "keys", "migrate", "check-config", "user"] {
        assert!(top.contains(command), "{command}: {top}");
    }
    let user = help(&dir, &["user"]);
    for command in ["show", "end-sessions", "reset-passkeys", "lock", "unlock"] {
        assert!(user.contains(command), "{command}: {user}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
