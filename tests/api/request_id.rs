//! The request id: `X-Request-Id` on every answer (taken from the client
//! when sane, else made by the server), exposed to CORS clients, and named
//! by a 500's body.

use std::collections::HashSet;

use reqwest::{Method, Response};
use serde_json::json;

use crate::helpers::*;

on_both_backends!(
    every_answer_carries_a_generated_request_id,
    a_sane_client_id_is_echoed_and_an_insane_one_replaced,
    a_500_names_the_request_id_of_its_answer,
    cors_exposes_and_allows_the_request_id,
);

/// The answer's `X-Request-Id` (exactly one).
fn request_id(res: &Response) -> String {
    let values: Vec<_> = res.headers().get_all("x-request-id").iter().collect();
    assert_eq!(
        values.len(),
        1,
        "{} {}: X-Request-Id {values:?}",
        res.status(),
        res.url().path()
    );
    values[0].to_str().unwrap().to_owned()
}

/// A server-made id: a UUID.
fn assert_generated(id: &str) {
    assert!(uuid::Uuid::parse_str(id).is_ok(), "not a UUID: {id}");
}

async fn get_with_id(app: &TestApp, path: &str, id: &[u8]) -> Response {
    app.client
        .get(app.url(path))
        .header(
            "x-request-id",
            reqwest::header::HeaderValue::from_bytes(id).unwrap(),
        )
        .send()
        .await
        .unwrap()
}

async fn every_answer_carries_a_generated_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let huge = json!({"username": "ivan", "password": "x".repeat(70 * 1024)}).to_string();
    let answers = [
        (200, app.get("/healthz", None).await),
        (200, app.get("/", None).await),
        (200, app.get("/protected/basic", Some(&user.token)).await),
        (401, app.get("/protected/basic", None).await),
        (401, app.get("/protected/basic", Some("not-a-jwt")).await),
        (403, app.get("/protected/full", Some(&user.token)).await),
        (404, app.get("/no/such/route", None).await),
        // A wrong method: actix's own empty 405, rewritten to problem+json.
        (
            405,
            app.client.delete(app.url("/healthz")).send().await.unwrap(),
        ),
        (413, app.post_raw("/auth/signup", huge, None).await),
        (400, app.post_raw("/auth/signup", "{not json", None).await),
        (200, app.client.head(app.url("/")).send().await.unwrap()),
    ];
    let mut seen = HashSet::new();
    for (status, res) in answers {
        let path = res.url().path().to_owned();
        assert_eq!(res.status(), status, "{path}");
        let id = request_id(&res);
        assert_generated(&id);
        assert!(seen.insert(id.clone()), "{path}: id {id} used twice");
        if status == 405 {
            assert_problem(res, 405, "method_not_allowed").await;
        }
    }
}

async fn a_sane_client_id_is_echoed_and_an_insane_one_replaced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let longest = "a".repeat(128);
    for sane in [
        "client-trace.42_X",
        "0190a5c2-7f3e-7b1a-9c4d-1e2f3a4b5c6d",
        longest.as_str(),
    ] {
        for path in ["/healthz", "/no/such/route", "/protected/basic"] {
            let res = get_with_id(&app, path, sane.as_bytes()).await;
            assert_eq!(request_id(&res), sane, "{path}");
        }
    }
    let too_long = "a".repeat(129);
    for insane in [
        b"has space".as_slice(),
        b"semi;colon",
        b"",
        b"quote\"d",
        b"{\"json\":1}",
        "d\u{e9}j\u{e0}-vu".as_bytes(),
        too_long.as_bytes(),
    ] {
        let res = get_with_id(&app, "/healthz", insane).await;
        assert_eq!(res.status(), 200);
        let id = request_id(&res);
        assert_generated(&id);
        assert_ne!(id.as_bytes(), insane);
    }
    // Two ids are one too many: neither is believed.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "first-id")
        .header("x-request-id", "second-id")
        .send()
        .await
        .unwrap();
    assert_generated(&request_id(&res));
}

/// A 500's body and its answer's header name the same id.
async fn assert_500_named(res: Response, expected: Option<&str>) {
    let id = request_id(&res);
    match expected {
        Some(sent) => assert_eq!(id, sent),
        None => assert_generated(&id),
    }
    let problem = assert_problem(res, 500, "internal_error").await;
    assert_eq!(problem["requestId"], id.as_str(), "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&id), "{detail}");
    for leak in [
        "auth_events",
        "a handler bug",
        "SELECT",
        "relation",
        "table",
    ] {
        assert!(!detail.contains(leak), "{leak} leaked: {detail}");
    }
}

async fn a_500_names_the_request_id_of_its_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A handler panic, caught by `catch_panics`.
    assert_500_named(app.get("/test/panic", None).await, None).await;
    assert_500_named(
        get_with_id(&app, "/test/panic", b"trace-panic-1").await,
        Some("trace-panic-1"),
    )
    .await;

    // A failing query: the error happens on a blocking thread and becomes
    // the 500 in the handler, which knows the request's id.
    let user = app.new_user().await;
    {
        use diesel::connection::SimpleConnection;
        app.db()
            .batch_execute("DROP TABLE auth_events")
            .expect("drop the events table");
    }
    assert_500_named(app.get("/auth/events", Some(&user.token)).await, None).await;
    let res = app
        .client
        .get(app.url("/auth/events"))
        .bearer_auth(&user.token)
        .header("x-request-id", "trace-db-2")
        .send()
        .await
        .unwrap();
    assert_500_named(res, Some("trace-db-2")).await;
}

async fn cors_exposes_and_allows_the_request_id(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("CORS_ORIGINS", "https://app.example")]).await;
    // An allowed origin may read the header...
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_generated(&request_id(&res));
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    // ...and send it.
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/auth/login"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-request-id",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_generated(&request_id(&res));
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("x-request-id"), "{allowed}");
    // A refusal by the CORS middleware carries the id too.
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/auth/login"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("x-request-id", "refused-preflight")
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(&res), "refused-preflight");
    assert_problem(res, 400, "invalid_request").await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    // Another origin's plain request is answered, but not for its eyes.
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_generated(&request_id(&res));
}
