//! Step-up and freshness: the recent routes need the account's highest
//! level, verified within `STEP_UP_MAX_AGE_SECS`, so a stolen password can
//! neither add an authenticator to an account that has one nor remove the
//! owner's.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;

on_both_backends!(
    the_stolen_password_attack_fails_at_the_registration_options,
    options_from_a_full_token_then_verify_with_a_password_token_is_refused,
    a_full_token_older_than_the_window_must_verify_again,
    an_account_without_passkeys_needs_a_recent_password_login,
    every_recent_route_refuses_a_password_token_of_an_account_with_a_passkey,
    claims_carry_acr_auth_time_and_amr_for_each_way_in,
    a_guard_refusal_does_not_consume_the_challenge,
);

const PASSKEY_REQUIRED: &str = r#"Bearer error="insufficient_user_authentication", error_description="passkey verification required", acr_values="full", max_age=300"#;

fn reauthenticate(acr: &str) -> String {
    format!(
        r#"Bearer error="insufficient_user_authentication", error_description="a recent verification is required", acr_values="{acr}", max_age=300"#
    )
}

/// Asserts a 403 with this code and exactly this challenge.
async fn assert_step_up(res: reqwest::Response, code: &str, challenge: &str) {
    assert_eq!(www_authenticate(&res).as_deref(), Some(challenge));
    assert_problem(res, 403, code).await;
}

async fn log_in(app: &TestApp, user: &TestUser) -> String {
    let res = app.login(&user.username, PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["accessToken"].as_str().unwrap().to_owned()
}

async fn the_stolen_password_attack_fails_at_the_registration_options(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let victim = app.new_user().await;
    let mut victims_key = TestAuthenticator::new();
    let victims_passkey = app.register_passkey(&victim.token, &mut victims_key).await;

    // The attacker knows only the password.
    let stolen = log_in(&app, &victim).await;
    let res = app.get("/passkeys/register/options", Some(&stolen)).await;
    assert_step_up(res, "passkey_required", PASSKEY_REQUIRED).await;

    // Nor can they answer a ceremony they never got options for, with
    // their own authenticator on options made for someone else.
    let mut attackers_key = TestAuthenticator::new();
    let other = app.new_user().await;
    let options = app.registration_options(&other.token).await;
    let body = attackers_key.register(&options, ORIGIN).unwrap();
    let res = app
        .post_json("/passkeys/register/verify", &body, Some(&stolen))
        .await;
    assert_step_up(res, "passkey_required", PASSKEY_REQUIRED).await;

    // The full level stays out of reach, and the owner's passkey stays.
    let options = app.authentication_options(&stolen).await;
    let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["id"], victims_key.credential_id_b64());
    let res = app.get("/protected/full", Some(&stolen)).await;
    assert_problem(res, 403, "passkey_required").await;
    let path = format!("/passkeys/{}", victims_passkey["id"].as_str().unwrap());
    let res = app.delete(&path, Some(&stolen)).await;
    assert_step_up(res, "passkey_required", PASSKEY_REQUIRED).await;
    assert_eq!(app.passkey_count(&victim.token).await, 1);
}

async fn options_from_a_full_token_then_verify_with_a_password_token_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut first = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut first).await;
    let full = app.step_up(&user.token, &mut first).await;

    let options = app.registration_options(&full).await;
    let mut second = TestAuthenticator::new();
    let body = second.register(&options, ORIGIN).unwrap();
    let res = app
        .post_json("/passkeys/register/verify", &body, Some(&user.token))
        .await;
    assert_step_up(res, "passkey_required", PASSKEY_REQUIRED).await;
    assert_eq!(app.passkey_count(&user.token).await, 1);
    // The refusal came before the ceremony: the challenge is still live.
    let res = app
        .post_json("/passkeys/register/verify", &body, Some(&full))
        .await;
    assert_eq!(res.status(), 201);
    let summary: Value = res.json().await.unwrap();
    assert!(summary.get("recoveryCodes").is_none(), "{summary}");
    assert_eq!(app.passkey_count(&user.token).await, 2);
}

async fn a_full_token_older_than_the_window_must_verify_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let full = app.step_up(&user.token, &mut device).await;

    // At exactly the window's age it still counts as recent...
    app.clock.advance(Duration::from_secs(300));
    app.registration_options(&full).await;
    // ...a second later it does not, on every recent route.
    app.clock.advance(Duration::from_secs(1));
    let res = app.get("/passkeys/register/options", Some(&full)).await;
    let problem = assert_problem_with(res, &reauthenticate("full")).await;
    assert!(problem["detail"].as_str().unwrap().contains("passkey"));
    let res = app
        .post_json("/auth/recovery-codes", &json!({}), Some(&full))
        .await;
    assert_problem_with(res, &reauthenticate("full")).await;
    // The full level itself still holds for routes that only need it.
    assert_eq!(app.get("/protected/full", Some(&full)).await.status(), 200);

    // A fresh passkey verification opens the window again.
    let fresh = app.step_up(&user.token, &mut device).await;
    app.registration_options(&fresh).await;
}

async fn assert_problem_with(res: reqwest::Response, challenge: &str) -> Value {
    assert_eq!(www_authenticate(&res).as_deref(), Some(challenge));
    assert_problem(res, 403, "reauthentication_required").await
}

async fn an_account_without_passkeys_needs_a_recent_password_login(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    app.clock.advance(Duration::from_secs(301));
    for res in [
        app.get("/passkeys/register/options", Some(&user.token))
            .await,
        app.post_json(
            "/auth/password",
            &json!({"currentPassword": PASSWORD, "newPassword": "another long one"}),
            Some(&user.token),
        )
        .await,
        app.delete("/auth/me", Some(&user.token)).await,
    ] {
        let problem = assert_problem_with(res, &reauthenticate("password")).await;
        assert!(problem["detail"].as_str().unwrap().contains("log in"));
    }
    // Ordinary routes are unaffected.
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
    // A new password login is recent: the first passkey can be enrolled.
    let fresh = log_in(&app, &user).await;
    let mut device = TestAuthenticator::new();
    let summary = app.register_passkey(&fresh, &mut device).await;
    assert_eq!(summary["recoveryCodes"].as_array().unwrap().len(), 10);
}

async fn every_recent_route_refuses_a_password_token_of_an_account_with_a_passkey(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let passkey = app.register_passkey(&user.token, &mut device).await;
    let passkey_path = format!("/passkeys/{}", passkey["id"].as_str().unwrap());
    let token = Some(user.token.as_str());
    let password_change = json!({"currentPassword": PASSWORD, "newPassword": "x".repeat(12)});
    for res in [
        app.get("/passkeys/register/options", token).await,
        app.post_json("/passkeys/register/verify", &json!({}), token)
            .await,
        app.delete(&passkey_path, token).await,
        app.post_json("/auth/password", &password_change, token)
            .await,
        app.post_json("/auth/recovery-codes", &json!({}), token)
            .await,
        app.delete("/auth/me", token).await,
        // The guard answers first, whatever the body: malformed, not an
        // object, or over the size limit.
        app.post_json("/auth/password", &json!({"currentPassword": 5}), token)
            .await,
        app.post_raw("/auth/password", "[1, 2]", token).await,
        app.post_raw("/passkeys/register/verify", "{", token).await,
        app.post_raw("/passkeys/register/verify", "x".repeat(70_000), token)
            .await,
    ] {
        assert_step_up(res, "passkey_required", PASSKEY_REQUIRED).await;
    }
    // Nothing changed: the passkey, the password and the account are there.
    assert_eq!(app.passkey_count(&user.token).await, 1);
    assert_eq!(app.login(&user.username, PASSWORD).await.status(), 200);
}

async fn claims_carry_acr_auth_time_and_amr_for_each_way_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let login = claims(&user.token);
    assert_eq!(login["acr"], "password");
    assert_eq!(login["authLevel"], "password");
    assert_eq!(login["amr"], json!(["pwd"]));
    assert_eq!(login["auth_time"], login["iat"]);
    assert_eq!(login["auth_time"], app.clock_secs());

    let mut device = TestAuthenticator::new();
    let codes = app.register_passkey(&user.token, &mut device).await["recoveryCodes"].clone();
    app.clock.advance(Duration::from_secs(100));
    let full = claims(&app.step_up(&user.token, &mut device).await);
    assert_eq!(full["acr"], "full");
    assert_eq!(full["authLevel"], "full");
    assert_eq!(full["amr"], json!(["pwd", "hwk"]));
    assert_eq!(full["auth_time"], app.clock_secs());
    assert_eq!(
        full["auth_time"],
        login["auth_time"].as_i64().unwrap() + 100
    );

    app.clock.advance(Duration::from_secs(50));
    let res = app.recover(&user.token, codes[0].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["authLevel"], "full");
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    let recovered = claims(body["accessToken"].as_str().unwrap());
    assert_eq!(recovered["acr"], "full");
    assert_eq!(recovered["amr"], json!(["pwd", "otp"]));
    assert_eq!(recovered["auth_time"], app.clock_secs());
    // The password token's auth_time never moved.
    let profile: Value = app
        .get("/users/profile", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["claims"]["auth_time"], login["auth_time"]);
}

async fn a_guard_refusal_does_not_consume_the_challenge(backend: Backend) {
    // A window shorter than the challenge's life, so the login can grow
    // old while the challenge lives.
    let app = TestApp::spawn_with(backend, &[("STEP_UP_MAX_AGE_SECS", "60")]).await;
    let user = app.new_user().await;
    let options = app.registration_options(&user.token).await;
    let mut device = TestAuthenticator::new();
    let body = device.register(&options, ORIGIN).unwrap();
    app.clock.advance(Duration::from_secs(61));
    let res = app
        .post_json("/passkeys/register/verify", &body, Some(&user.token))
        .await;
    assert_eq!(
        www_authenticate(&res).as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="a recent verification is required", acr_values="password", max_age=60"#
        )
    );
    assert_problem(res, 403, "reauthentication_required").await;
    // A fresh login answers the same, still live, challenge.
    let fresh = log_in(&app, &user).await;
    let res = app
        .post_json("/passkeys/register/verify", &body, Some(&fresh))
        .await;
    assert_eq!(res.status(), 201);
}
