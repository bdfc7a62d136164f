//! Failure behaviour: handler panics, liveness/readiness, and a database
//! that goes away and comes back.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::proxy::CuttableProxy;

on_both_backends!(
    a_panicking_handler_answers_500_and_the_server_carries_on,
    healthz_and_readyz_answer_when_all_is_well,
);

async fn a_panicking_handler_answers_500_and_the_server_carries_on(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for _ in 0..3 {
        let res = app.get("/test/panic", None).await;
        let problem = assert_problem(res, 500, "internal_error").await;
        let request_id = problem["requestId"].as_str().unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(request_id), "{detail}");
        assert!(
            !detail.contains("a handler bug"),
            "the panic message leaked: {detail}"
        );
    }
    let user = app.new_user().await;
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
}

async fn healthz_and_readyz_answer_when_all_is_well(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/healthz", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.get("/readyz", None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["challengeStore"], "ok");
}

/// With PostgreSQL out of reach the API answers 503 quickly, liveness stays
/// up, readiness goes down; when it is back the server recovers unaided.
#[actix_web::test]
async fn a_lost_database_gives_quick_503s_and_the_server_recovers() {
    let Some(pg) = postgres_url() else {
        eprintln!("TEST_DATABASE_URL is not set: the database outage test needs PostgreSQL");
        return;
    };
    let pg_url = url::Url::parse(&pg).unwrap();
    let target = (
        pg_url.host_str().unwrap().to_owned(),
        pg_url.port().unwrap_or(5432),
    )
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let proxy = CuttableProxy::start(target);
    let proxy_port = proxy.port;
    let app = TestApp::spawn_custom(
        Backend::Postgres,
        &[("DATABASE_POOL_TIMEOUT_MS", "1000")],
        |url| {
            let mut url = url::Url::parse(url).unwrap();
            url.set_host(Some("127.0.0.1")).unwrap();
            url.set_port(Some(proxy_port)).unwrap();
            url.to_string()
        },
    )
    .await;
    let user = app.new_user().await;
    assert_eq!(app.get("/readyz", None).await.status(), 200);

    proxy.cut();
    for path in ["/auth/me", "/passkeys", "/readyz"] {
        let started = Instant::now();
        let res = app.get(path, Some(&user.token)).await;
        let took = started.elapsed();
        assert_problem(res, 503, "service_unavailable").await;
        assert!(took < Duration::from_secs(2), "{path} took {took:?}");
    }
    let started = Instant::now();
    assert_problem(
        app.login(&user.username, PASSWORD).await,
        503,
        "service_unavailable",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // What needs no database keeps working.
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );

    proxy.restore();
    app.wait_for_ok("/auth/me", Some(&user.token), Duration::from_secs(10))
        .await;
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    assert_eq!(app.login(&user.username, PASSWORD).await.status(), 200);
}
