//! Challenges and rate limits in Redis (`REDIS_URL`), when `TEST_REDIS_URL`
//! names a Redis to use. Each test gets its own key prefix.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;
use crate::proxy::CuttableProxy;

pub fn redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The app on SQLite with its shared state in Redis under a fresh prefix.
async fn spawn_on_redis(url: &str, extra: &[(&str, &str)]) -> (TestApp, String) {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let mut settings = vec![
        ("REDIS_URL", url),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("REDIS_TIMEOUT_MS", "500"),
    ];
    settings.extend_from_slice(extra);
    (
        TestApp::spawn_with(Backend::Sqlite, &settings).await,
        prefix,
    )
}

macro_rules! needs_redis {
    () => {
        match redis_url() {
            Some(url) => url,
            None => {
                eprintln!("TEST_REDIS_URL is not set: Redis test not run");
                return;
            }
        }
    };
}

#[actix_web::test]
async fn ceremonies_keep_their_challenges_in_redis_with_a_ttl() {
    let url = needs_redis!();
    let (app, prefix) = spawn_on_redis(&url, &[]).await;
    let user = app.new_user().await;
    let options = app.registration_options(&user.token).await;

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}challenge:register:{}", user.id);
    let ttl_ms: i64 = conn.pttl(&key).await.unwrap();
    assert!((1..=300_000).contains(&ttl_ms), "PTTL {ttl_ms}");

    let mut device = TestAuthenticator::new();
    let body = device.register(&options, ORIGIN).unwrap();
    let res = app
        .post_json("/passkeys/register/verify", &body, Some(&user.token))
        .await;
    assert_eq!(res.status(), 201);
    let exists: bool = conn.exists(&key).await.unwrap();
    assert!(!exists, "the challenge is gone once used");
    app.step_up(&user.token, &mut device).await;
}

#[actix_web::test]
async fn one_challenge_serves_one_of_many_concurrent_verifies() {
    let url = needs_redis!();
    let (app, _) = spawn_on_redis(&url, &[]).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let options = app.authentication_options(&user.token).await;
    let body = device.authenticate(&options, ORIGIN).unwrap();
    let statuses = app
        .concurrent_posts("/passkeys/authenticate/verify", &body, &user.token, 8)
        .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn challenges_in_redis_still_expire_by_the_service_clock() {
    let url = needs_redis!();
    // A step-up window longer than the clock moves: only the challenge expires.
    let (app, _) = spawn_on_redis(&url, &[("STEP_UP_MAX_AGE_SECS", "3600")]).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let options = app.registration_options(&user.token).await;
    let body = device.register(&options, ORIGIN).unwrap();
    app.clock.advance(Duration::from_secs(301));
    let res = app
        .post_json("/passkeys/register/verify", &body, Some(&user.token))
        .await;
    assert_challenge_expired(res).await;
}

#[actix_web::test]
async fn rate_limits_and_lockouts_live_in_redis() {
    let url = needs_redis!();
    let (app, _) = spawn_on_redis(
        &url,
        &[
            ("RATE_LIMIT_IP_PER_MINUTE", "1"),
            ("RATE_LIMIT_IP_BURST", "3"),
            ("LOGIN_LOCKOUT_THRESHOLD", "2"),
            ("LOGIN_LOCKOUT_BASE_SECS", "30"),
        ],
    )
    .await;
    app.signup("redis-user", PASSWORD).await;
    for _ in 0..2 {
        assert_eq!(
            app.login("redis-user", "wrong password!").await.status(),
            401
        );
    }
    let res = app.login("redis-user", PASSWORD).await;
    assert_eq!(res.headers()["retry-after"], "30");
    assert_problem(res, 429, "rate_limited").await;
    // The refused login was charged to no bucket: the IP bucket (burst 3)
    // has one request left, then it is empty.
    assert_eq!(app.login("someone-else", PASSWORD).await.status(), 401);
    let res = app.login("someone-else", PASSWORD).await;
    assert_problem(res, 429, "rate_limited").await;
}

#[actix_web::test]
async fn a_lost_redis_gives_quick_503s_and_the_server_recovers() {
    let url = needs_redis!();
    let parsed = url::Url::parse(&url).unwrap();
    let target = (
        parsed.host_str().unwrap().to_owned(),
        parsed.port().unwrap_or(6379),
    )
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let proxy = CuttableProxy::start(target);
    let mut proxied = parsed.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(proxy.port)).unwrap();
    let (app, _) = spawn_on_redis(proxied.as_str(), &[]).await;
    let user = app.new_user().await;
    let leaving = app.new_user().await;
    assert_eq!(app.get("/readyz", None).await.status(), 200);

    proxy.cut();
    // A logout cannot be announced now, but it counts: it is in the
    // database (other nodes re-read it), and this node refuses at once.
    let res = app
        .post_json("/auth/logout", &json!({}), Some(&leaving.token))
        .await;
    assert_eq!(res.status(), 204);
    let res = app.get("/protected/basic", Some(&leaving.token)).await;
    assert_problem(res, 401, "invalid_token").await;
    let started = Instant::now();
    let res = app
        .get("/passkeys/register/options", Some(&user.token))
        .await;
    assert_problem(res, 503, "service_unavailable").await;
    let res = app.get("/readyz", None).await;
    assert_problem(res, 503, "service_unavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );

    proxy.restore();
    let res = app
        .wait_for_ok(
            "/passkeys/register/options",
            Some(&user.token),
            Duration::from_secs(15),
        )
        .await;
    let options: Value = res.json().await.unwrap();
    assert!(options["publicKey"]["challenge"].is_string());
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}

/// A passkey sign-in across nodes: options from node A, verify at node B
/// (the challenge is in Redis, keyed by itself), and the challenge is then
/// spent on A too.
#[actix_web::test]
async fn a_sign_in_started_on_one_node_finishes_on_another_once() {
    let url = needs_redis!();
    let (app, prefix) = spawn_on_redis(&url, &[]).await;
    let node_b = app.another_node(&[]).await.expect("node B starts");
    let user = app.new_user().await;
    let mut device = TestAuthenticator::discoverable();
    app.register_passkey(&user.token, &mut device).await;

    let options = app.sign_in_options().await;
    let challenge = options["publicKey"]["challenge"].as_str().unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}challenge:signin:{challenge}");
    let ttl_ms: i64 = conn.pttl(&key).await.unwrap();
    assert!((1..=300_000).contains(&ttl_ms), "{key}: PTTL {ttl_ms}");

    let response = device.authenticate(&options, ORIGIN).unwrap();
    let res = app
        .client
        .post(node_b.url("/passkeys/login/verify"))
        .json(&response)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "verify on node B: {answer}");
    assert_eq!(answer["authLevel"], "full");
    let token = answer["accessToken"].as_str().unwrap();
    assert_eq!(claims(token)["amr"], json!(["hwk"]));
    let exists: bool = conn.exists(&key).await.unwrap();
    assert!(!exists, "the challenge is gone once used");

    // Node A sees the challenge spent, and honours node B's session.
    let res = app.sign_in_verify(&response).await;
    assert_verification_failed(res).await;
    assert_eq!(app.get("/protected/full", Some(token)).await.status(), 200);
    // Node B refuses a replay too.
    let res = app
        .client
        .post(node_b.url("/passkeys/login/verify"))
        .json(&response)
        .send()
        .await
        .unwrap();
    assert_verification_failed(res).await;
}
