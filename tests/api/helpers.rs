//! The test harness: each test gets the real application on a free port with
//! a fresh database (a new SQLite file, or a new PostgreSQL database when
//! `TEST_DATABASE_URL` is set), a clock it can move, and an HTTP client.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use passkey_auth::clock::ManualClock;
use passkey_auth::config::Settings;
use passkey_auth::startup::{Application, BuildOptions};

use crate::common::authenticator::TestAuthenticator;

pub const ORIGIN: &str = "http://localhost:3000";
pub const PASSWORD: &str = "correct horse battery";
pub const USER_AGENT: &str = "passkey-auth-tests/1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Runs each named scenario `async fn name(backend: Backend)` once on SQLite
/// and once on PostgreSQL (the latter only when `TEST_DATABASE_URL` is set).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if crate::helpers::postgres_url().is_some() {
                        super::$name(crate::helpers::Backend::Postgres).await;
                    } else {
                        eprintln!("TEST_DATABASE_URL is not set: PostgreSQL variant not run");
                    }
                }
            )*
        }
    };
}

/// A database that exists for one test and is removed after it.
pub enum TestDatabase {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new, empty database and its URL.
    pub fn create(backend: Backend) -> (Self, String) {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join("passkey-auth-tests");
                std::fs::create_dir_all(&dir).expect("temp dir");
                let path = dir.join(format!("{}.db", Uuid::new_v4()));
                let url = format!("sqlite://{}", path.display());
                (TestDatabase::Sqlite(path), url)
            }
            Backend::Postgres => {
                let admin_url = postgres_url().expect("TEST_DATABASE_URL");
                let name = format!("passkey_test_{}", Uuid::new_v4().simple());
                let mut admin =
                    PgConnection::establish(&admin_url).expect("connect to TEST_DATABASE_URL");
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create test database");
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                (TestDatabase::Postgres { admin_url, name }, url.to_string())
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self {
            TestDatabase::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            TestDatabase::Postgres { admin_url, name } => {
                if let Ok(mut admin) = PgConnection::establish(admin_url) {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub clock: Arc<ManualClock>,
    pub database_url: String,
    /// The environment-style settings the app was built from.
    pub env: HashMap<String, String>,
    /// The metrics listener's base URL, when `METRICS_BIND_ADDR` is set
    /// (`127.0.0.1:0` gives a free port).
    pub metrics_base: Option<String>,
    _database: TestDatabase,
}

/// Another node (an app in this process) on a given database.
pub struct Node {
    pub base: String,
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The environment every test app starts from.
fn base_env(database_url: &str) -> HashMap<String, String> {
    [
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", database_url),
        ("DATABASE_POOL_SIZE", "4"),
        ("RP_ID", "localhost"),
        ("RP_ORIGIN", ORIGIN),
        // Limits are off unless a test turns them on: every test talks
        // from 127.0.0.1 and many sign up and log in often.
        ("RATE_LIMIT_IP_PER_MINUTE", "0"),
        ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "0"),
        ("LOGIN_LOCKOUT_THRESHOLD", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Starts the app with `env` (over the base settings) on `database_url`.
pub async fn start_node(
    database_url: &str,
    env: &HashMap<String, String>,
) -> Result<Node, passkey_auth::startup::StartupError> {
    let mut all = base_env(database_url);
    all.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    all.insert("DATABASE_URL".into(), database_url.to_owned());
    let settings = Settings::from_lookup(|name| all.get(name).cloned()).expect("test settings");
    let clock = Arc::new(ManualClock::new());
    let options = BuildOptions {
        clock: clock.clone(),
        extra_routes: Some(test_routes),
    };
    let app = Application::build_with(settings, options).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    Ok(Node { base })
}

/// The server's signing key, as read from its database.
pub struct ServerKey {
    pub kid: String,
    pub algorithm: jsonwebtoken::Algorithm,
    pub encoding: jsonwebtoken::EncodingKey,
    pub public_jwk: Value,
}

/// A signed-up user with a password-level token.
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub token: String,
    /// The login session's refresh token.
    pub refresh_token: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Spawns the app with extra environment-style settings.
    pub async fn spawn_with(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        Self::spawn_custom(backend, overrides, str::to_owned).await
    }

    /// As [`TestApp::spawn_with`], reaching the fresh database through the
    /// URL `reach` makes of its real URL (e.g. through a proxy).
    pub async fn spawn_custom(
        backend: Backend,
        overrides: &[(&str, &str)],
        reach: impl FnOnce(&str) -> String,
    ) -> Self {
        let (database, database_url) = TestDatabase::create(backend);
        let app_database_url = reach(&database_url);
        let mut env = base_env(&app_database_url);
        for (k, v) in overrides {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let settings = Settings::from_lookup(|name| env.get(name).cloned()).expect("test settings");
        let clock = Arc::new(ManualClock::new());
        let options = BuildOptions {
            clock: clock.clone(),
            extra_routes: Some(test_routes),
        };
        let app = Application::build_with(settings, options)
            .await
            .expect("application starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let metrics_base = app.metrics_address().map(|addr| format!("http://{addr}"));
        actix_web::rt::spawn(app.run_until_stopped());
        TestApp {
            base,
            metrics_base,
            client: Client::builder()
                .user_agent(USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client"),
            clock,
            database_url,
            env,
            _database: database,
        }
    }

    /// Another node on this app's database, with its settings and `extra`.
    pub async fn another_node(
        &self,
        extra: &[(&str, &str)],
    ) -> Result<Node, passkey_auth::startup::StartupError> {
        let mut env = self.env.clone();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        start_node(&self.database_url, &env).await
    }

    /// The settings the app was built from.
    pub fn settings(&self) -> Settings {
        Settings::from_lookup(|name| self.env.get(name).cloned()).expect("test settings")
    }

    /// The key the server signs with now, read from its database: for
    /// tests that forge tokens the server would accept.
    pub fn signing_key(&self) -> ServerKey {
        use diesel::prelude::*;
        use passkey_auth::schema::signing_keys::dsl::*;
        let now = self.clock_now().naive_utc();
        let (found_kid, alg, jwk, private): (String, String, String, String) = signing_keys
            .filter(activates_at.le(now))
            .order(generation.desc())
            .select((kid, algorithm, public_jwk, private_key))
            .first(&mut self.db())
            .expect("an active signing key");
        let der = base64::engine::general_purpose::STANDARD
            .decode(private.strip_prefix("plain:").expect("a key stored plain"))
            .unwrap();
        let (algorithm_, encoding) = match alg.as_str() {
            "EdDSA" => (
                jsonwebtoken::Algorithm::EdDSA,
                jsonwebtoken::EncodingKey::from_ed_der(&der),
            ),
            "ES256" => (
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_der(&der),
            ),
            other => panic!("unexpected algorithm {other}"),
        };
        ServerKey {
            kid: found_kid,
            algorithm: algorithm_,
            encoding,
            public_jwk: serde_json::from_str(&jwk).unwrap(),
        }
    }

    /// `claims` signed as the server signs its tokens.
    pub fn sign_as_server(&self, claims: &Value) -> String {
        let key = self.signing_key();
        let mut header = jsonwebtoken::Header::new(key.algorithm);
        header.kid = Some(key.kid);
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// Now, as the app's clock tells it.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use passkey_auth::clock::Clock;
        self.clock.now()
    }

    /// A direct connection to the test's database, to check what is stored.
    /// A `Database` of its own on the app's database (migrated), built as
    /// the server builds its own, with a pool of `pool_size`.
    pub async fn database(&self, pool_size: u32) -> passkey_auth::repositories::Database {
        let url = passkey_auth::config::DatabaseUrl::parse(&self.database_url).unwrap();
        let threads = passkey_auth::db::query_pool(&url, pool_size).unwrap();
        let pool = actix_web::rt::task::spawn_blocking(move || {
            passkey_auth::db::connect_and_migrate(
                &url,
                pool_size,
                std::time::Duration::from_secs(5),
            )
        })
        .await
        .unwrap()
        .unwrap();
        passkey_auth::repositories::Database::new(pool, threads)
    }

    pub fn db(&self) -> passkey_auth::db::AnyConnection {
        let url = passkey_auth::config::DatabaseUrl::parse(&self.database_url).unwrap();
        passkey_auth::db::ConnectionManager::new(url)
            .open()
            .expect("connect to the test database")
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.delete(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request sent")
    }

    /// `POST /auth/refresh` with `refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/auth/refresh",
            &json!({ "refreshToken": refresh_token }),
            None,
        )
        .await
    }

    /// `POST /auth/recovery` with `code`.
    pub async fn recover(&self, token: &str, code: &str) -> Response {
        self.post_json("/auth/recovery", &json!({ "code": code }), Some(token))
            .await
    }

    /// The `type` of the caller's latest (at most 100) audit events, newest first.
    pub async fn event_kinds(&self, token: &str) -> Vec<String> {
        let res = self.get("/auth/events?limit=100", Some(token)).await;
        assert_eq!(res.status(), 200, "GET /auth/events");
        let page: Value = res.json().await.unwrap();
        page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn me(&self, token: &str) -> Value {
        let res = self.get("/auth/me", Some(token)).await;
        assert_eq!(res.status(), 200, "GET /auth/me");
        res.json().await.unwrap()
    }

    /// The app's clock, in seconds (what `iat` and `auth_time` read).
    pub fn clock_secs(&self) -> i64 {
        use passkey_auth::clock::Clock;
        self.clock.now().timestamp()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request sent")
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send_json(reqwest::Method::POST, path, body, token)
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        token: Option<&str>,
    ) -> Response {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request sent")
    }

    pub async fn signup(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/auth/signup",
            &json!({"username": username, "password": password}),
            None,
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/auth/login",
            &json!({"username": username, "password": password}),
            None,
        )
        .await
    }

    /// Signs up a fresh user and logs in (password level).
    pub async fn new_user(&self) -> TestUser {
        let username = format!("user-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let res = self.signup(&username, PASSWORD).await;
        assert_eq!(res.status(), 201, "signup");
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let res = self.login(&username, PASSWORD).await;
        assert_eq!(res.status(), 200, "login");
        let login: Value = res.json().await.unwrap();
        TestUser {
            id,
            username,
            token: login["accessToken"].as_str().unwrap().to_owned(),
            refresh_token: login["refreshToken"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn registration_options(&self, token: &str) -> Value {
        let res = self.get("/passkeys/register/options", Some(token)).await;
        assert_eq!(res.status(), 200, "registration options");
        res.json().await.unwrap()
    }

    pub async fn authentication_options(&self, token: &str) -> Value {
        let res = self
            .get("/passkeys/authenticate/options", Some(token))
            .await;
        assert_eq!(res.status(), 200, "authentication options");
        res.json().await.unwrap()
    }

    /// A whole registration ceremony; returns the passkey summary.
    pub async fn register_passkey(
        &self,
        token: &str,
        authenticator: &mut TestAuthenticator,
    ) -> Value {
        let options = self.registration_options(token).await;
        let response = authenticator
            .register(&options, ORIGIN)
            .expect("authenticator registers");
        let res = self
            .post_json("/passkeys/register/verify", &response, Some(token))
            .await;
        assert_eq!(res.status(), 201, "register verify");
        res.json().await.unwrap()
    }

    /// A whole authentication ceremony; returns the full-level token.
    pub async fn step_up(&self, token: &str, authenticator: &mut TestAuthenticator) -> String {
        let options = self.authentication_options(token).await;
        let response = authenticator
            .authenticate(&options, ORIGIN)
            .expect("authenticator asserts");
        let res = self
            .post_json("/passkeys/authenticate/verify", &response, Some(token))
            .await;
        assert_eq!(res.status(), 200, "authenticate verify");
        let body: Value = res.json().await.unwrap();
        body["accessToken"].as_str().unwrap().to_owned()
    }

    /// Posts `body` to `path` `times` times at once; the statuses, in order.
    pub async fn concurrent_posts(
        &self,
        path: &str,
        body: &Value,
        token: &str,
        times: usize,
    ) -> Vec<u16> {
        let attempts = (0..times).map(|_| self.post_json(path, body, Some(token)));
        futures_util::future::join_all(attempts)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect()
    }

    /// Polls `GET path` until it answers 200 (returned), failing after `within`.
    pub async fn wait_for_ok(
        &self,
        path: &str,
        token: Option<&str>,
        within: std::time::Duration,
    ) -> Response {
        let deadline = std::time::Instant::now() + within;
        loop {
            let res = self.get(path, token).await;
            if res.status() == 200 {
                return res;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no recovery of {path}: still {}",
                res.status()
            );
            actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    pub async fn passkey_count(&self, token: &str) -> i64 {
        let res = self.get("/auth/me", Some(token)).await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["passkeyCount"]
            .as_i64()
            .unwrap()
    }
}

/// Routes only the tests mount: a handler that panics.
fn test_routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(passkey_auth::controllers::resource("/test/panic").route(
        actix_web::web::get().to(|| async {
            panic!("a handler bug");
            #[allow(unreachable_code)]
            actix_web::HttpResponse::Ok().finish()
        }),
    ));
}

/// Asserts a problem+json answer with this status and code; returns the body.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status for expected {code}");
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], "about:blank");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// A ceremony response the server refused: 401 `passkey_verification_failed`.
pub async fn assert_verification_failed(res: Response) {
    assert_problem(res, 401, "passkey_verification_failed").await;
}

/// A verify with no live challenge: 400 `challenge_expired`.
pub async fn assert_challenge_expired(res: Response) {
    assert_problem(res, 400, "challenge_expired").await;
}

/// The member names of a JSON object, sorted.
pub fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort_unstable();
    keys
}

/// The claims of a JWT, without verifying it.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

pub fn www_authenticate(res: &Response) -> Option<String> {
    res.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Passkey sign-in (`/passkeys/login/*`): public routes, no token.
impl TestApp {
    /// `GET /passkeys/login/options` without a token; asserts 200.
    pub async fn sign_in_options(&self) -> Value {
        let res = self.get("/passkeys/login/options", None).await;
        assert_eq!(res.status(), 200, "sign-in options");
        res.json().await.unwrap()
    }

    /// `POST /passkeys/login/verify` with `body`, without a token.
    pub async fn sign_in_verify(&self, body: &Value) -> Response {
        self.post_json("/passkeys/login/verify", body, None).await
    }

    /// A whole passkey sign-in with `authenticator` (which sends the user
    /// handle it registered with); returns the token response.
    pub async fn sign_in_with_passkey(&self, authenticator: &mut TestAuthenticator) -> Value {
        let options = self.sign_in_options().await;
        let response = authenticator
            .authenticate(&options, ORIGIN)
            .expect("authenticator asserts");
        let res = self.sign_in_verify(&response).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "sign-in verify: {body}");
        body
    }
}
