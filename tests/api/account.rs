//! The caller's own account: changing the password and deleting the account,
//! both recent routes.

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;

on_both_backends!(
    a_password_change_needs_the_current_password_and_a_valid_new_one,
    the_new_password_replaces_the_old_one,
    password_guesses_here_count_towards_the_login_lockout,
    deleting_the_account_removes_everything_but_detached_audit_rows,
    a_deleted_accounts_tokens_are_refused_everywhere,
);

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn change_password(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.post_json("/auth/password", body, Some(token)).await
}

async fn a_password_change_needs_the_current_password_and_a_valid_new_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let res = change_password(
        &app,
        &user.token,
        &json!({"currentPassword": "not my password", "newPassword": NEW_PASSWORD}),
    )
    .await;
    assert_problem(res, 401, "invalid_credentials").await;

    for (body, field) in [
        (
            json!({"currentPassword": PASSWORD, "newPassword": "short"}),
            "newPassword",
        ),
        (
            json!({"currentPassword": PASSWORD, "newPassword": "x".repeat(129)}),
            "newPassword",
        ),
        (json!({"currentPassword": PASSWORD}), "newPassword"),
        (json!({"newPassword": NEW_PASSWORD}), "currentPassword"),
        (
            json!({"currentPassword": PASSWORD, "newPassword": 12345678}),
            "newPassword",
        ),
    ] {
        let res = change_password(&app, &user.token, &body).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{body}: {detail}");
    }
    // Nothing changed.
    assert_eq!(app.login(&user.username, PASSWORD).await.status(), 200);
    assert_eq!(app.login(&user.username, NEW_PASSWORD).await.status(), 401);
}

async fn the_new_password_replaces_the_old_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    // With a passkey, the change takes a recent passkey verification.
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let full = app.step_up(&user.token, &mut device).await;
    let res = change_password(
        &app,
        &full,
        &json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.text().await.unwrap(), "");
    assert_problem(
        app.login(&user.username, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(app.login(&user.username, NEW_PASSWORD).await.status(), 200);

    // Stored as argon2id, as at sign-up, and audited.
    let mut conn = app.db();
    use passkey_auth::schema::users::dsl::*;
    let stored: String = users
        .filter(id.eq(&user.id))
        .select(password_hash)
        .first(&mut conn)
        .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    let kinds = app.event_kinds(&full).await;
    assert_eq!(
        &kinds[..3],
        ["login_succeeded", "login_failed", "password_changed"]
    );
}

async fn password_guesses_here_count_towards_the_login_lockout(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("LOGIN_LOCKOUT_THRESHOLD", "3")]).await;
    let user = app.new_user().await;
    for _ in 0..3 {
        let res = change_password(
            &app,
            &user.token,
            &json!({"currentPassword": "guess guess", "newPassword": NEW_PASSWORD}),
        )
        .await;
        assert_problem(res, 401, "invalid_credentials").await;
    }
    // Locked: here, and at login from the same address.
    let res = change_password(
        &app,
        &user.token,
        &json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}),
    )
    .await;
    assert_problem(res, 429, "rate_limited").await;
    assert_problem(
        app.login(&user.username, PASSWORD).await,
        429,
        "rate_limited",
    )
    .await;
    let kinds = app.event_kinds(&user.token).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "password_change_failed")
            .count(),
        3,
        "{kinds:?}"
    );
}

fn count_rows(conn: &mut passkey_auth::db::AnyConnection, user: &str) -> (i64, i64, i64, i64) {
    use passkey_auth::schema::{auth_events, passkeys, recovery_codes, users};
    let u = users::table
        .filter(users::id.eq(user))
        .count()
        .get_result(conn)
        .unwrap();
    let p = passkeys::table
        .filter(passkeys::user_id.eq(user))
        .count()
        .get_result(conn)
        .unwrap();
    let r = recovery_codes::table
        .filter(recovery_codes::user_id.eq(user))
        .count()
        .get_result(conn)
        .unwrap();
    let e = auth_events::table
        .filter(auth_events::user_id.eq(user))
        .count()
        .get_result(conn)
        .unwrap();
    (u, p, r, e)
}

async fn deleting_the_account_removes_everything_but_detached_audit_rows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let bystander = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let full = app.step_up(&user.token, &mut device).await;
    let mut conn = app.db();
    let (u, p, r, e) = count_rows(&mut conn, &user.id);
    assert_eq!((u, p, r), (1, 1, 10));
    assert!(e >= 4, "{e} events");
    use passkey_auth::schema::auth_events;
    let all_events_before: i64 = auth_events::table.count().get_result(&mut conn).unwrap();

    let res = app.delete("/auth/me", Some(&full)).await;
    assert_eq!(res.status(), 204);
    assert_eq!(count_rows(&mut conn, &user.id), (0, 0, 0, 0));
    // The events stay, detached, plus one recording the deletion.
    let all_events_after: i64 = auth_events::table.count().get_result(&mut conn).unwrap();
    assert_eq!(all_events_after, all_events_before + 1);
    let deleted: Vec<Option<String>> = auth_events::table
        .filter(auth_events::kind.eq("account_deleted"))
        .select(auth_events::user_id)
        .load(&mut conn)
        .unwrap();
    assert_eq!(deleted, [None]);
    // Someone else's account is untouched, and the name is free again.
    assert_eq!(count_rows(&mut conn, &bystander.id).0, 1);
    assert_eq!(app.login(&bystander.username, PASSWORD).await.status(), 200);
    assert_problem(
        app.login(&user.username, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(app.signup(&user.username, PASSWORD).await.status(), 201);
}

async fn a_deleted_accounts_tokens_are_refused_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let older = app
        .login(&user.username, PASSWORD)
        .await
        .json::<Value>()
        .await
        .unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // Remembered by the verified-token cache before the deletion.
    assert_eq!(
        app.get("/protected/basic", Some(&older)).await.status(),
        200
    );
    let res = app.delete("/auth/me", Some(&user.token)).await;
    assert_eq!(res.status(), 204);
    for token in [&user.token, &older] {
        for path in [
            "/protected/basic",
            "/auth/me",
            "/passkeys",
            "/users/profile",
        ] {
            let res = app.get(path, Some(token)).await;
            assert_problem(res, 401, "invalid_token").await;
        }
        let res = app.delete("/auth/me", Some(token)).await;
        assert_problem(res, 401, "invalid_token").await;
    }
}
