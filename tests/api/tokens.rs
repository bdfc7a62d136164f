//! The guards: every way a bearer token can be missing, wrong or too weak.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::*;

on_both_backends!(
    no_header_is_401_missing_token_with_a_bare_challenge,
    malformed_tokens_and_other_schemes_are_401_invalid_token,
    expired_tokens_are_401_invalid_token,
    wrongly_signed_tokens_are_401_invalid_token,
    alg_none_and_other_algorithms_are_401_invalid_token,
    wrong_issuer_or_audience_is_401_invalid_token,
    password_level_is_403_on_full_routes_with_the_rfc_9470_challenge,
    profile_shows_the_account_and_the_token_claims,
);

const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

async fn assert_invalid_token(app: &TestApp, authorization: &str) {
    let res = app
        .client
        .get(app.url("/protected/basic"))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    assert_eq!(
        www_authenticate(&res).as_deref(),
        Some(INVALID_TOKEN_CHALLENGE),
        "{authorization}"
    );
    assert_problem(res, 401, "invalid_token").await;
}

/// Claims like the server's, for forging tokens.
fn forged_claims(user: &TestUser, overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({
        "sub": user.id, "username": user.username, "authLevel": "full", "acr": "full",
        "amr": ["pwd", "hwk"], "auth_time": now, "iat": now, "exp": now + 600,
        "iss": "passkey-auth", "aud": "passkey-auth", "jti": uuid::Uuid::new_v4().to_string(),
        "sid": uuid::Uuid::new_v4().to_string(),
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn sign(claims: &Value, alg: Algorithm, secret: &str) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn no_header_is_401_missing_token_with_a_bare_challenge(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/auth/me",
        "/passkeys",
        "/passkeys/register/options",
        "/passkeys/authenticate/options",
        "/users/profile",
        "/protected/basic",
        "/protected/full",
    ] {
        let res = app.get(path, None).await;
        assert_eq!(www_authenticate(&res).as_deref(), Some("Bearer"), "{path}");
        assert_problem(res, 401, "missing_token").await;
    }
    let res = app
        .post_json("/passkeys/authenticate/verify", &json!({}), None)
        .await;
    assert_problem(res, 401, "missing_token").await;
}

async fn malformed_tokens_and_other_schemes_are_401_invalid_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    for authorization in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer not-a-jwt".to_owned(),
        "Bearer a.b.c".to_owned(),
        format!("Basic {}", URL_SAFE_NO_PAD.encode("user:pass")),
        format!("Token {}", user.token),
        format!("Bearer {}x", user.token),
    ] {
        assert_invalid_token(&app, &authorization).await;
    }
    // The genuine token still works.
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
}

async fn expired_tokens_are_401_invalid_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
    app.clock.advance(Duration::from_secs(3600));
    assert_invalid_token(&app, &format!("Bearer {}", user.token)).await;

    // A token signed with the right key but an exp in the past.
    let past = chrono::Utc::now().timestamp() - 10;
    let stale = sign(
        &forged_claims(&user, json!({"iat": past - 60, "exp": past})),
        Algorithm::HS256,
        JWT_SECRET,
    );
    assert_invalid_token(&app, &format!("Bearer {stale}")).await;
}

async fn wrongly_signed_tokens_are_401_invalid_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let forged = sign(
        &forged_claims(&user, json!({})),
        Algorithm::HS256,
        "some-other-secret-some-other-secret-xx",
    );
    assert_invalid_token(&app, &format!("Bearer {forged}")).await;

    // Upgrading the claims of a genuine token breaks its signature.
    let parts: Vec<&str> = user.token.split('.').collect();
    let mut c = claims(&user.token);
    c["authLevel"] = json!("full");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_invalid_token(&app, &format!("Bearer {tampered}")).await;
}

async fn alg_none_and_other_algorithms_are_401_invalid_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let body = URL_SAFE_NO_PAD.encode(forged_claims(&user, json!({})).to_string());
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#] {
        let unsigned = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(header));
        assert_invalid_token(&app, &format!("Bearer {unsigned}")).await;
    }
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(&forged_claims(&user, json!({})), alg, JWT_SECRET);
        assert_invalid_token(&app, &format!("Bearer {token}")).await;
    }
    // The same claims with the configured algorithm and key are accepted.
    let good = sign(
        &forged_claims(&user, json!({})),
        Algorithm::HS256,
        JWT_SECRET,
    );
    assert_eq!(app.get("/protected/full", Some(&good)).await.status(), 200);
}

async fn wrong_issuer_or_audience_is_401_invalid_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    for overrides in [
        json!({"iss": "someone-else"}),
        json!({"aud": "another-service"}),
        json!({"aud": ["another-service"]}),
    ] {
        let token = sign(
            &forged_claims(&user, overrides.clone()),
            Algorithm::HS256,
            JWT_SECRET,
        );
        assert_invalid_token(&app, &format!("Bearer {token}")).await;
    }
    let mut missing_aud = forged_claims(&user, json!({}));
    missing_aud.as_object_mut().unwrap().remove("aud");
    let token = sign(&missing_aud, Algorithm::HS256, JWT_SECRET);
    assert_invalid_token(&app, &format!("Bearer {token}")).await;
}

async fn password_level_is_403_on_full_routes_with_the_rfc_9470_challenge(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let res = app.get("/protected/basic", Some(&user.token)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["authLevel"], "password");
    assert!(body["message"].is_string());

    let res = app.get("/protected/full", Some(&user.token)).await;
    assert_eq!(
        www_authenticate(&res).as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="passkey verification required", acr_values="full""#
        )
    );
    assert_problem(res, 403, "passkey_required").await;

    let some_id = uuid::Uuid::new_v4();
    let res = app
        .send_json(
            reqwest::Method::PATCH,
            &format!("/passkeys/{some_id}"),
            &json!({"nickname": "x"}),
            Some(&user.token),
        )
        .await;
    assert_problem(res, 403, "passkey_required").await;
    // Deleting a passkey is a recent route: an account without passkeys
    // is at its highest level with a fresh password login, so the request
    // is admitted (and the unknown id is 404).
    let res = app
        .client
        .delete(app.url(&format!("/passkeys/{some_id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
}

async fn profile_shows_the_account_and_the_token_claims(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let res = app.get("/users/profile", Some(&user.token)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], user.id.as_str());
    assert_eq!(body["username"], user.username.as_str());
    assert_eq!(body["authLevel"], "password");
    assert_eq!(body["passkeyCount"], 0);
    assert_eq!(body["claims"], claims(&user.token));
}
