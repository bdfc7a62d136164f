//! Prometheus metrics on `METRICS_BIND_ADDR`: names, labels and values
//! after a known series of requests, and never on the public listener.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;
use crate::redis::redis_url;

on_both_backends!(
    a_scrape_counts_what_the_requests_did,
    the_public_listener_never_serves_metrics,
);

/// Metrics on a free port; three requests per action and IP, then 429.
const METRICS_AND_SMALL_LIMITS: [(&str, &str); 3] = [
    ("METRICS_BIND_ADDR", "127.0.0.1:0"),
    ("RATE_LIMIT_IP_PER_MINUTE", "1"),
    ("RATE_LIMIT_IP_BURST", "3"),
];

/// One scrape: the content type, and each sample line as
/// `name{labels}` → value.
pub async fn scrape(app: &TestApp) -> BTreeMap<String, f64> {
    let base = app.metrics_base.as_deref().expect("metrics are on");
    let res = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value = value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            (series.to_owned(), value)
        })
        .collect()
}

pub fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {samples:#?}"))
}

async fn a_scrape_counts_what_the_requests_did(backend: Backend) {
    let app = TestApp::spawn_with(backend, &METRICS_AND_SMALL_LIMITS).await;

    // Logins: one wrong password, one right, one wrong, then the limit.
    let user = app.new_user().await;
    assert_eq!(
        app.login(&user.username, "wrong password!").await.status(),
        401
    );
    assert_eq!(
        app.login(&user.username, "wrong password!").await.status(),
        401
    );
    assert_problem(
        app.login(&user.username, PASSWORD).await,
        429,
        "rate_limited",
    )
    .await;

    // A guarded GET with and without a token, a template with an id, and
    // a path no route matches.
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
    assert_eq!(app.get("/protected/basic", None).await.status(), 401);
    let session = uuid::Uuid::new_v4();
    let res = app
        .delete(&format!("/auth/sessions/{session}"), Some(&user.token))
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(app.get("/no/such/route", None).await.status(), 404);

    // Refreshes: one good, one unknown token.
    assert_eq!(app.refresh(&user.refresh_token).await.status(), 200);
    assert_eq!(app.refresh("not-a-refresh-token").await.status(), 401);

    // A passkey and a step-up, then one more challenge left waiting.
    let mut authenticator = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut authenticator).await;
    let full = app.step_up(&user.token, &mut authenticator).await;
    assert!(!full.is_empty());
    app.authentication_options(&user.token).await;

    let m = scrape(&app).await;
    let logins = |outcome: &str| value(&m, &format!(r#"auth_logins_total{{outcome="{outcome}"}}"#));
    assert_eq!(logins("success"), 1.0);
    assert_eq!(logins("invalid_credentials"), 2.0);
    assert_eq!(logins("rate_limited"), 1.0);
    assert_eq!(logins("locked"), 0.0);
    assert_eq!(logins("error"), 0.0);
    assert_eq!(value(&m, r#"rate_limited_total{action="login"}"#), 1.0);
    assert_eq!(value(&m, r#"rate_limited_total{action="signup"}"#), 0.0);
    assert_eq!(value(&m, r#"auth_refreshes_total{outcome="success"}"#), 1.0);
    assert_eq!(
        value(&m, r#"auth_refreshes_total{outcome="invalid_credentials"}"#),
        1.0
    );
    assert_eq!(value(&m, r#"auth_step_ups_total{outcome="success"}"#), 1.0);
    assert_eq!(
        value(&m, r#"auth_step_ups_total{outcome="invalid_credentials"}"#),
        0.0
    );
    assert_eq!(
        value(&m, r#"auth_passkey_sign_ins_total{outcome="success"}"#),
        0.0
    );
    assert_eq!(
        value(&m, r#"auth_recovery_uses_total{outcome="success"}"#),
        0.0
    );

    let http = |route: &str, method: &str, class: &str| {
        value(
            &m,
            &format!(
                r#"http_requests_total{{route="{route}",method="{method}",status_class="{class}"}}"#
            ),
        )
    };
    assert_eq!(http("/protected/basic", "GET", "2xx"), 1.0);
    assert_eq!(http("/protected/basic", "GET", "4xx"), 1.0);
    assert_eq!(http("/auth/login", "POST", "2xx"), 1.0);
    assert_eq!(http("/auth/login", "POST", "4xx"), 3.0);
    assert_eq!(http("/auth/signup", "POST", "2xx"), 1.0);
    assert_eq!(http("/auth/sessions/{id}", "DELETE", "4xx"), 1.0);
    assert_eq!(http("unmatched", "GET", "4xx"), 1.0);
    assert!(
        !m.keys()
            .any(|k| k.contains(&session.to_string()) || k.contains("/no/such")),
        "a path became a label"
    );
    let basic = r#"route="/protected/basic",method="GET",status_class="2xx""#;
    assert_eq!(
        value(
            &m,
            &format!("http_request_duration_seconds_count{{{basic}}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            &format!(r#"http_request_duration_seconds_bucket{{{basic},le="+Inf"}}"#)
        ),
        1.0
    );
    assert!(value(&m, &format!("http_request_duration_seconds_sum{{{basic}}}")) > 0.0);
    assert!(m.contains_key(&format!(
        r#"http_request_duration_seconds_bucket{{{basic},le="0.0001"}}"#
    )));

    // Signup's hash and three verifies at least (recovery codes hash too).
    assert!(value(&m, "password_hash_duration_seconds_count") >= 4.0);
    assert_eq!(value(&m, "password_hash_queue_depth"), 0.0);
    let in_use = value(&m, r#"db_pool_connections{state="in_use"}"#);
    let idle = value(&m, r#"db_pool_connections{state="idle"}"#);
    assert!(
        in_use + idle >= 1.0 && in_use + idle <= 4.0,
        "{in_use} + {idle}"
    );
    assert!(value(&m, "db_pool_waiting") >= 0.0);
    // The registration and step-up challenges were taken; one waits.
    assert_eq!(value(&m, "challenge_store_entries"), 1.0);
    assert!(value(&m, "challenge_store_bytes") > 0.0);
    assert!(!m.contains_key("redis_up"), "no Redis is configured");

    // Scrapes are not requests of the app.
    let again = scrape(&app).await;
    assert_eq!(
        value(
            &again,
            r#"http_requests_total{route="/protected/basic",method="GET",status_class="2xx"}"#
        ),
        1.0
    );
    assert!(!again.keys().any(|k| k.contains("/metrics")));
}

async fn the_public_listener_never_serves_metrics(backend: Backend) {
    let on = TestApp::spawn_with(backend, &[("METRICS_BIND_ADDR", "127.0.0.1:0")]).await;
    assert_problem(on.get("/metrics", None).await, 404, "not_found").await;
    let base = on.metrics_base.clone().unwrap();
    assert_ne!(base, on.base);
    // The metrics listener serves nothing else.
    let res = reqwest::get(format!("{base}/auth/login")).await.unwrap();
    assert_eq!(res.status(), 404);
    let res = reqwest::Client::new()
        .post(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let off = TestApp::spawn(backend).await;
    assert!(
        off.metrics_base.is_none(),
        "METRICS_BIND_ADDR unset: no listener"
    );
    assert_problem(off.get("/metrics", None).await, 404, "not_found").await;
    let body: Value = off.get("/healthz", None).await.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));
}

/// With Redis, `redis_up` is 1, and the challenge gauges report what this
/// process holds: nothing (the challenges are in Redis).
#[actix_web::test]
async fn with_redis_a_scrape_reports_it_up() {
    let Some(url) = redis_url() else {
        eprintln!("TEST_REDIS_URL is not set: Redis test not run");
        return;
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("METRICS_BIND_ADDR", "127.0.0.1:0"),
            ("REDIS_URL", &url),
            ("REDIS_KEY_PREFIX", &prefix),
        ],
    )
    .await;
    let user = app.new_user().await;
    app.registration_options(&user.token).await;
    let m = scrape(&app).await;
    assert_eq!(value(&m, "redis_up"), 1.0);
    assert_eq!(value(&m, "challenge_store_entries"), 0.0);
    assert_eq!(value(&m, r#"auth_logins_total{outcome="success"}"#), 1.0);
}
