//! The demo page and the error format of unknown paths and methods.

use serde_json::json;

use crate::helpers::*;

on_both_backends!(
    the_demo_page_and_its_assets_are_served,
    unknown_paths_are_404_problems,
    wrong_methods_are_405_problems,
);

async fn the_demo_page_and_its_assets_are_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, content_type, marker) in [
        ("/", "text/html", "<script src=\"/app.js\""),
        ("/app.js", "text/javascript", "navigator.credentials"),
        ("/style.css", "text/css", "{"),
    ] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 200, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(content_type), "{path}: {ct}");
        assert!(res.text().await.unwrap().contains(marker), "{path}");
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
    }
}

async fn unknown_paths_are_404_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/nope",
        "/auth",
        "/passkeys/register/options/extra",
        "/index.html",
    ] {
        assert_problem(app.get(path, None).await, 404, "not_found").await;
    }
    let res = app.post_json("/auth/nope", &json!({}), None).await;
    assert_problem(res, 404, "not_found").await;
}

async fn wrong_methods_are_405_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/auth/login", None).await;
    assert_problem(res, 405, "method_not_allowed").await;
    let res = app.post_json("/protected/basic", &json!({}), None).await;
    assert_problem(res, 405, "method_not_allowed").await;
    let res = app.client.put(app.url("/passkeys")).send().await.unwrap();
    assert_problem(res, 405, "method_not_allowed").await;
}
