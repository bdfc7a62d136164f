//! Sessions and refresh tokens: rotation with reuse detection, expiry,
//! logout and every route that ends sessions; tokens of an ended session
//! are refused at once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;

on_both_backends!(
    a_login_starts_a_session_with_a_refresh_token,
    refresh_rotates_and_keeps_the_login_level_and_time,
    a_rotated_token_within_the_grace_ends_nothing,
    a_reused_refresh_token_ends_the_whole_session,
    concurrent_refreshes_with_one_token_succeed_once,
    concurrent_refreshes_of_many_sessions_all_succeed,
    refresh_never_yields_the_full_level,
    idle_and_absolute_expiry_follow_the_clock,
    logout_ends_the_session_and_every_token_of_it,
    one_session_or_all_others_can_be_ended,
    password_change_recovery_and_deletion_end_sessions,
    malformed_refresh_bodies_are_400_and_unknown_tokens_401,
    the_cleanup_deletes_finished_sessions_and_keeps_live_ones,
);

async fn login(app: &TestApp, user: &TestUser) -> Value {
    let res = app.login(&user.username, PASSWORD).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn token_of(answer: &Value) -> String {
    answer["accessToken"].as_str().unwrap().to_owned()
}

fn refresh_of(answer: &Value) -> String {
    answer["refreshToken"].as_str().unwrap().to_owned()
}

async fn refreshed(app: &TestApp, refresh_token: &str) -> Value {
    let res = app.refresh(refresh_token).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "refresh: {body}");
    body
}

async fn assert_refused_refresh(app: &TestApp, refresh_token: &str) {
    let res = app.refresh(refresh_token).await;
    assert_problem(res, 401, "invalid_refresh_token").await;
}

async fn assert_token_refused(app: &TestApp, token: &str) {
    for path in ["/protected/basic", "/auth/me"] {
        let res = app.get(path, Some(token)).await;
        assert_problem(res, 401, "invalid_token").await;
    }
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let res = app.get("/auth/sessions", Some(token)).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn a_login_starts_a_session_with_a_refresh_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    app.clock.advance(Duration::from_secs(1));
    let answer = login(&app, &user).await;
    assert_eq!(
        sorted_keys(&answer),
        [
            "accessToken",
            "authLevel",
            "expiresIn",
            "refreshExpiresIn",
            "refreshToken",
            "tokenType"
        ]
    );
    assert_eq!(answer["refreshExpiresIn"], 14 * 86_400);
    let refresh = refresh_of(&answer);
    assert!(refresh.len() >= 43, "at least 256 bits: {refresh}");
    let token = token_of(&answer);
    let sid = claims(&token)["sid"].as_str().unwrap().to_owned();
    assert_ne!(sid, claims(&user.token)["sid"].as_str().unwrap());

    let list = sessions(&app, &token).await;
    assert_eq!(list.len(), 2, "two logins, two sessions");
    // Newest first; the caller's own is marked.
    assert_eq!(list[0]["id"], sid.as_str());
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["current"], false);
    assert_eq!(
        sorted_keys(&list[0]),
        [
            "clientIp",
            "createdAt",
            "current",
            "id",
            "lastSeenAt",
            "userAgent"
        ]
    );
    assert_eq!(list[0]["clientIp"], "127.0.0.1");
    assert_eq!(list[0]["userAgent"], USER_AGENT);
    // The refresh token is stored only as a hash.
    let mut conn = app.db();
    use diesel::prelude::*;
    use passkey_auth::schema::refresh_tokens::dsl::*;
    let hashes: Vec<String> = refresh_tokens.select(token_hash).load(&mut conn).unwrap();
    assert_eq!(hashes.len(), 2);
    assert!(hashes
        .iter()
        .all(|h| h.len() == 64 && !h.contains(&refresh)));
}

async fn refresh_rotates_and_keeps_the_login_level_and_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let login_claims = claims(&user.token);
    app.clock.advance(Duration::from_secs(600));
    let answer = refreshed(&app, &user.refresh_token).await;
    assert_eq!(answer["authLevel"], "password");
    assert_eq!(answer["tokenType"], "Bearer");
    assert_eq!(answer["expiresIn"], 3600);
    let new_refresh = refresh_of(&answer);
    assert_ne!(new_refresh, user.refresh_token);
    let c = claims(&token_of(&answer));
    assert_eq!(c["sid"], login_claims["sid"]);
    assert_eq!(c["auth_time"], login_claims["auth_time"]);
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["acr"], "password");
    assert_eq!(c["iat"].as_i64().unwrap(), app.clock_secs());
    assert_eq!(
        app.get("/protected/basic", Some(&token_of(&answer)))
            .await
            .status(),
        200
    );
    // Seen again: lastSeenAt moved with the refresh.
    let list = sessions(&app, &user.token).await;
    assert_ne!(list[0]["lastSeenAt"], list[0]["createdAt"]);
    // The new token rotates again.
    let again = refreshed(&app, &new_refresh).await;
    assert_eq!(claims(&token_of(&again))["sid"], login_claims["sid"]);
}

async fn a_rotated_token_within_the_grace_ends_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let answer = refreshed(&app, &user.refresh_token).await;
    // The old token again, a moment later (a client's concurrent request):
    // refused, but the session lives on.
    app.clock.advance(Duration::from_secs(3));
    assert_refused_refresh(&app, &user.refresh_token).await;
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
    refreshed(&app, &refresh_of(&answer)).await;
}

async fn a_reused_refresh_token_ends_the_whole_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let answer = refreshed(&app, &user.refresh_token).await;
    let newest = token_of(&answer);
    // A stolen copy of the first token, presented after the grace.
    app.clock.advance(Duration::from_secs(4));
    assert_refused_refresh(&app, &user.refresh_token).await;
    // The whole session is over: its newest refresh token and every access
    // token of it.
    assert_refused_refresh(&app, &refresh_of(&answer)).await;
    assert_token_refused(&app, &newest).await;
    assert_token_refused(&app, &user.token).await;
    // The owner logs in again; the events tell what happened.
    let fresh = token_of(&login(&app, &user).await);
    let kinds = app.event_kinds(&fresh).await;
    assert!(
        kinds.iter().any(|k| k == "refresh_token_reused"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "session_ended"), "{kinds:?}");
}

async fn concurrent_refreshes_with_one_token_succeed_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let body = json!({"refreshToken": user.refresh_token});
    let attempts = (0..6).map(|_| app.post_json("/auth/refresh", &body, None));
    let answers = futures_util::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for res in answers {
        match res.status().as_u16() {
            200 => winners.push(res.json::<Value>().await.unwrap()),
            401 => {
                assert_problem(res, 401, "invalid_refresh_token").await;
            }
            other => panic!("a concurrent refresh answered {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh wins");
    // A race is not theft: the session and the winner's token live on.
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
    refreshed(&app, &refresh_of(&winners[0])).await;
}

async fn concurrent_refreshes_of_many_sessions_all_succeed(backend: Backend) {
    // Each session refreshes its own token, all at once, several rounds:
    // none may be refused because another transaction held the database.
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut tokens = Vec::new();
    for _ in 0..16 {
        tokens.push(refresh_of(&login(&app, &user).await));
    }
    for _ in 0..3 {
        let answers = futures_util::future::join_all(tokens.iter().map(|t| app.refresh(t))).await;
        let mut next = Vec::new();
        for res in answers {
            let status = res.status();
            let body: Value = res.json().await.unwrap();
            assert_eq!(status, 200, "{body}");
            next.push(refresh_of(&body));
        }
        tokens = next;
    }
}

async fn refresh_never_yields_the_full_level(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    app.clock.advance(Duration::from_secs(30));
    let full = app.step_up(&user.token, &mut device).await;
    // The step-up kept the session: same sid, no new refresh token needed.
    assert_eq!(claims(&full)["sid"], claims(&user.token)["sid"]);
    let answer = refreshed(&app, &user.refresh_token).await;
    assert_eq!(answer["authLevel"], "password");
    let c = claims(&token_of(&answer));
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["auth_time"], claims(&user.token)["auth_time"]);
    let res = app.get("/protected/full", Some(&token_of(&answer))).await;
    assert_problem(res, 403, "passkey_required").await;
}

async fn idle_and_absolute_expiry_follow_the_clock(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("REFRESH_TTL_SECS", "3600"),
            ("SESSION_MAX_AGE_SECS", "7200"),
        ],
    )
    .await;
    // Idle: unused for longer than REFRESH_TTL_SECS.
    let user = app.new_user().await;
    let idle = login(&app, &user).await;
    assert_eq!(idle["refreshExpiresIn"], 3600);
    app.clock.advance(Duration::from_secs(3599));
    let kept = refreshed(&app, &refresh_of(&idle)).await;
    app.clock.advance(Duration::from_secs(3601));
    assert_refused_refresh(&app, &refresh_of(&kept)).await;

    // Absolute: refreshed often, but no session outlives SESSION_MAX_AGE_SECS.
    let start = login(&app, &user).await;
    let mut refresh = refresh_of(&start);
    for _ in 0..2 {
        app.clock.advance(Duration::from_secs(3000));
        refresh = refresh_of(&refreshed(&app, &refresh).await);
    }
    app.clock.advance(Duration::from_secs(900));
    let last = refreshed(&app, &refresh).await;
    // 300 s of the session are left: neither token outlives them.
    assert_eq!(last["refreshExpiresIn"], 300);
    assert_eq!(last["expiresIn"], 300);
    let c = claims(&token_of(&last));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    app.clock.advance(Duration::from_secs(300));
    assert_refused_refresh(&app, &refresh_of(&last)).await;
    // Expired sessions are no longer listed.
    let fresh = token_of(&login(&app, &user).await);
    let list = sessions(&app, &fresh).await;
    assert_eq!(list.len(), 1, "{list:?}");
}

async fn logout_ends_the_session_and_every_token_of_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let other = login(&app, &user).await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let full = app.step_up(&user.token, &mut device).await;
    // Both tokens of the session were accepted (and remembered) before.
    assert_eq!(app.get("/protected/full", Some(&full)).await.status(), 200);

    let res = app
        .post_json("/auth/logout", &json!({}), Some(&user.token))
        .await;
    assert_eq!(res.status(), 204);
    assert_token_refused(&app, &user.token).await;
    assert_token_refused(&app, &full).await;
    assert_refused_refresh(&app, &user.refresh_token).await;
    let res = app
        .post_json("/auth/logout", &json!({}), Some(&user.token))
        .await;
    assert_problem(res, 401, "invalid_token").await;
    // The other session is untouched and no longer sees the ended one.
    let list = sessions(&app, &token_of(&other)).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);
    refreshed(&app, &refresh_of(&other)).await;
}

async fn one_session_or_all_others_can_be_ended(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let second = login(&app, &user).await;
    let third = login(&app, &user).await;
    let sid = |answer: &Value| {
        claims(&token_of(answer))["sid"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // One session, by id, from another.
    let path = format!("/auth/sessions/{}", sid(&second));
    let res = app.delete(&path, Some(&user.token)).await;
    assert_eq!(res.status(), 204);
    assert_token_refused(&app, &token_of(&second)).await;
    assert_refused_refresh(&app, &refresh_of(&second)).await;
    // Gone already, someone else's, or no session id at all: 404.
    let stranger = app.new_user().await;
    let strangers = format!(
        "/auth/sessions/{}",
        claims(&stranger.token)["sid"].as_str().unwrap()
    );
    for path in [
        path.as_str(),
        strangers.as_str(),
        "/auth/sessions/not-a-session",
        &format!("/auth/sessions/{}", uuid::Uuid::new_v4()),
    ] {
        let res = app.delete(path, Some(&user.token)).await;
        assert_problem(res, 404, "not_found").await;
    }
    assert_eq!(
        app.get("/protected/basic", Some(&stranger.token))
            .await
            .status(),
        200
    );

    // Every other session: the caller's survives.
    let fourth = login(&app, &user).await;
    let res = app.delete("/auth/sessions", Some(&token_of(&fourth))).await;
    assert_eq!(res.status(), 204);
    assert_token_refused(&app, &user.token).await;
    assert_token_refused(&app, &token_of(&third)).await;
    let list = sessions(&app, &token_of(&fourth)).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], sid(&fourth).as_str());

    // Both are recent routes: with a passkey, a password token is refused.
    let mut device = TestAuthenticator::new();
    app.register_passkey(&token_of(&fourth), &mut device).await;
    let res = app.delete("/auth/sessions", Some(&token_of(&fourth))).await;
    assert_problem(res, 403, "passkey_required").await;
    let kinds = app.event_kinds(&token_of(&fourth)).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "session_ended").count(),
        3,
        "{kinds:?}"
    );
}

async fn password_change_recovery_and_deletion_end_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let elsewhere = login(&app, &user).await;
    let res = app
        .post_json(
            "/auth/password",
            &json!({"currentPassword": PASSWORD, "newPassword": "a whole new secret"}),
            Some(&user.token),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_token_refused(&app, &token_of(&elsewhere)).await;
    assert_refused_refresh(&app, &refresh_of(&elsewhere)).await;
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );

    // Recovery: every other session ends; the caller's goes on, at full level.
    let mut device = TestAuthenticator::new();
    let codes = app.register_passkey(&user.token, &mut device).await["recoveryCodes"].clone();
    let elsewhere = app
        .login(&user.username, "a whole new secret")
        .await
        .json::<Value>()
        .await
        .unwrap();
    let res = app.recover(&user.token, codes[0].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    let recovered: Value = res.json().await.unwrap();
    assert!(
        recovered.get("refreshToken").is_none(),
        "the session keeps its own"
    );
    assert_eq!(
        claims(&token_of(&recovered))["sid"],
        claims(&user.token)["sid"]
    );
    assert_token_refused(&app, &token_of(&elsewhere)).await;
    refreshed(&app, &user.refresh_token).await;

    // Deletion: all of them.
    let full = token_of(&recovered);
    let res = app.delete("/auth/me", Some(&full)).await;
    assert_eq!(res.status(), 204);
    assert_token_refused(&app, &full).await;
    assert_token_refused(&app, &user.token).await;
}

async fn malformed_refresh_bodies_are_400_and_unknown_tokens_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for body in [
        json!({}),
        json!({"refreshToken": 5}),
        json!({"refresh_token": "x"}),
    ] {
        let res = app.post_json("/auth/refresh", &body, None).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        assert!(problem["detail"].as_str().unwrap().contains("refreshToken"));
    }
    for unknown in ["", "x", &"A".repeat(43), &"é".repeat(300)] {
        assert_refused_refresh(&app, unknown).await;
    }
}

async fn the_cleanup_deletes_finished_sessions_and_keeps_live_ones(backend: Backend) {
    use diesel::prelude::*;
    use passkey_auth::repositories::SessionRepository;
    use passkey_auth::schema::{refresh_tokens, sessions};

    let app = TestApp::spawn_with(backend, &[("REFRESH_TTL_SECS", "3600")]).await;
    let user = app.new_user().await;
    let ended = login(&app, &user).await;
    let res = app
        .post_json("/auth/logout", &json!({}), Some(&token_of(&ended)))
        .await;
    assert_eq!(res.status(), 204);
    // Unused for longer than REFRESH_TTL_SECS: no longer refreshable (the
    // first login's session too).
    let idle = login(&app, &user).await;
    app.clock.advance(Duration::from_secs(3601));
    assert_refused_refresh(&app, &refresh_of(&idle)).await;
    // A live one, rotated once, so it has two refresh tokens stored.
    let live = login(&app, &user).await;
    let live = refreshed(&app, &refresh_of(&live)).await;

    // What the background task does, with "finished before now".
    let repo = SessionRepository::new(app.database(1).await);
    let now = chrono::DateTime::from_timestamp(app.clock_secs(), 0).unwrap();
    let deleted = repo.delete_finished(now.naive_utc()).await.unwrap();
    assert_eq!(deleted, 3, "the logged-out session and the two idle ones");

    let mut conn = app.db();
    let left: Vec<String> = sessions::table
        .select(sessions::id)
        .load(&mut conn)
        .unwrap();
    let live_sid = claims(&token_of(&live))["sid"].as_str().unwrap().to_owned();
    assert_eq!(left, std::slice::from_ref(&live_sid));
    let tokens: Vec<String> = refresh_tokens::table
        .select(refresh_tokens::session_id)
        .load(&mut conn)
        .unwrap();
    assert_eq!(tokens, [live_sid.clone(), live_sid]);
    refreshed(&app, &refresh_of(&live)).await;
}
