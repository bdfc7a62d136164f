//! The audit trail: what is recorded, for whom, and what never is.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::authenticator::{TestAuthenticator, Tweaks};
use crate::helpers::*;

on_both_backends!(
    each_auth_event_is_recorded_for_its_user_newest_first,
    events_never_contain_secrets,
    events_are_paginated_with_a_cursor,
    event_query_errors_name_the_parameter,
    counter_regressions_and_rate_limits_are_recorded,
    events_require_a_token,
);

async fn events(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.get(&format!("/auth/events{query}"), Some(token)).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn kinds(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn each_auth_event_is_recorded_for_its_user_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    assert_eq!(
        app.login(&user.username, "not my password").await.status(),
        401
    );
    let mut device = TestAuthenticator::new();
    let summary = app.register_passkey(&user.token, &mut device).await;
    let passkey_id = summary["id"].as_str().unwrap();
    let options = app.authentication_options(&user.token).await;
    let wrong_origin = device
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                origin: Some("https://evil.example".into()),
                ..Tweaks::default()
            },
        )
        .unwrap();
    let res = app
        .post_json(
            "/passkeys/authenticate/verify",
            &wrong_origin,
            Some(&user.token),
        )
        .await;
    assert_eq!(res.status(), 401);
    let full = app.step_up(&user.token, &mut device).await;
    let path = format!("/passkeys/{passkey_id}");
    let res = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"nickname": "Renamed"}),
            Some(&full),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    // Someone else's activity and an unknown user's failure are not listed.
    let other = app.new_user().await;
    assert_eq!(app.login("no-such-user", PASSWORD).await.status(), 401);

    let page = events(&app, &user.token, "").await;
    assert_eq!(
        kinds(&page),
        [
            "recovery_codes_deleted",
            "passkey_deleted",
            "passkey_renamed",
            "passkey_verified",
            "passkey_verification_failed",
            "recovery_codes_issued",
            "passkey_registered",
            "login_failed",
            "login_succeeded",
            "signup",
        ]
    );
    assert!(page["nextCursor"].is_null());
    for event in page["events"].as_array().unwrap() {
        assert_eq!(event["userId"], user.id.as_str());
        assert_eq!(event["ipAddress"], "127.0.0.1");
        assert_eq!(event["userAgent"], USER_AGENT);
        assert!(chrono::DateTime::parse_from_rfc3339(event["createdAt"].as_str().unwrap()).is_ok());
        let expected = if event["type"].as_str().unwrap().ends_with("failed") {
            "failure"
        } else {
            "success"
        };
        assert_eq!(event["outcome"], expected, "{event}");
    }
    let by_kind = |kind: &str| {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap()
            .clone()
    };
    for kind in [
        "passkey_registered",
        "passkey_verified",
        "passkey_renamed",
        "passkey_deleted",
    ] {
        assert_eq!(by_kind(kind)["detail"], passkey_id, "{kind}");
    }
    assert!(by_kind("passkey_verification_failed")["detail"]
        .as_str()
        .unwrap()
        .contains("Origin"));

    let theirs = events(&app, &other.token, "").await;
    assert_eq!(kinds(&theirs), ["login_succeeded", "signup"]);
}

async fn events_never_contain_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    app.login(&user.username, "a wrong password").await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let full = app.step_up(&user.token, &mut device).await;
    let text = events(&app, &full, "?limit=100").await.to_string();
    let key = device.verifying_key();
    let point = key.to_encoded_point(false);
    for secret in [
        PASSWORD.to_owned(),
        "a wrong password".to_owned(),
        user.token.clone(),
        full.clone(),
        crate::common::authenticator::b64(point.x().unwrap()),
    ] {
        assert!(!text.contains(&secret), "an event contains a secret");
    }
    for needle in ["argon2", "accessToken", "challenge"] {
        assert!(!text.contains(needle), "{needle} in {text}");
    }
}

async fn events_are_paginated_with_a_cursor(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    for _ in 0..5 {
        assert_eq!(app.login(&user.username, PASSWORD).await.status(), 200);
    }
    // signup + 6 logins = 7 events, in pages of 3.
    let mut seen = Vec::new();
    let mut query = "?limit=3".to_owned();
    loop {
        let page = events(&app, &user.token, &query).await;
        let ids: Vec<String> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() <= 3);
        seen.extend(ids);
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&before={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");
    sorted.dedup();
    assert_eq!(sorted.len(), 7);
    let default_page = events(&app, &user.token, "").await;
    assert_eq!(default_page["events"].as_array().unwrap().len(), 7);
}

async fn event_query_errors_name_the_parameter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=-1", "limit"),
        ("?before=not-a-cursor", "before"),
        ("?page=2", "page"),
    ] {
        let res = app
            .get(&format!("/auth/events{query}"), Some(&user.token))
            .await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{query}: {problem}"
        );
    }
}

async fn counter_regressions_and_rate_limits_are_recorded(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "1"),
            ("RATE_LIMIT_ACCOUNT_BURST", "3"),
        ],
    )
    .await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let mut clone = device.clone_device();
    app.step_up(&user.token, &mut device).await;
    let options = app.authentication_options(&user.token).await;
    let body = clone.authenticate(&options, ORIGIN).unwrap();
    let res = app
        .post_json("/passkeys/authenticate/verify", &body, Some(&user.token))
        .await;
    assert_eq!(res.status(), 401);
    // The third verify exhausts the burst; the fourth is limited (twice, one event).
    for _ in 0..3 {
        let res = app
            .post_json("/passkeys/authenticate/verify", &body, Some(&user.token))
            .await;
        assert_ne!(res.status(), 200);
    }
    let page = events(&app, &user.token, "").await;
    let k = kinds(&page);
    assert_eq!(
        k.iter().filter(|k| *k == "rate_limited").count(),
        1,
        "{k:?}"
    );
    assert_eq!(
        k.iter().filter(|k| *k == "counter_regression").count(),
        1,
        "{k:?}"
    );
    let limited = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "rate_limited")
        .unwrap();
    assert_eq!(limited["detail"], "passkey_authenticate");
    assert_eq!(limited["outcome"], "failure");
}

async fn events_require_a_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_problem(app.get("/auth/events", None).await, 401, "missing_token").await;
}
