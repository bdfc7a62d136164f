//! Security headers on every response, and CORS only where configured.

use reqwest::Method;

use crate::helpers::*;

on_both_backends!(
    every_response_carries_the_security_headers,
    cors_is_off_by_default,
    cors_origins_enable_an_allow_list,
);

async fn every_response_carries_the_security_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let answers = [
        app.get("/", None).await,
        app.get("/app.js", None).await,
        app.get("/protected/basic", Some(&user.token)).await,
        app.get("/protected/full", Some(&user.token)).await,
        app.get("/nope", None).await,
        app.login("nobody", PASSWORD).await,
    ];
    for res in answers {
        let h = res.headers();
        let path = res.url().path().to_owned();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        let cache = h["cache-control"].to_str().unwrap();
        if path == "/" || path == "/app.js" {
            assert_eq!(cache, "no-cache", "{path}");
        } else {
            assert_eq!(cache, "no-store", "{path}");
        }
    }
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/auth/login"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap()
}

async fn cors_is_off_by_default(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = preflight(&app, "https://elsewhere.example").await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

async fn cors_origins_enable_an_allow_list(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("CORS_ORIGINS", "https://app.example")]).await;
    let res = preflight(&app, "https://app.example").await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let res = preflight(&app, "https://evil.example").await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // The refusal is a problem+json answer with the usual headers.
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("Origin"),
        "{problem}"
    );

    // The page's own origin still works with CORS on.
    let res = app
        .client
        .post(app.url("/auth/signup"))
        .header("origin", ORIGIN)
        .json(&serde_json::json!({"username": "corsuser", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // An allowed origin sees the step-up challenge header.
    let user = app.new_user().await;
    let res = app
        .client
        .get(app.url("/protected/full"))
        .header("origin", "https://app.example")
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("www-authenticate"), "{exposed}");
}
