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
    alg_none_hmac_with_the_public_key_and_other_algorithms_are_401_invalid_token,
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

/// `claims` under a header naming `alg` and `kid`, MACed with `secret`.
fn sign_hmac(claims: &Value, alg: Algorithm, kid: Option<&str>, secret: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
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
    let stale = app.sign_as_server(&forged_claims(
        &user,
        json!({"iat": past - 60, "exp": past}),
    ));
    assert_invalid_token(&app, &format!("Bearer {stale}")).await;
}

async fn wrongly_signed_tokens_are_401_invalid_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    // Signed by another Ed25519 key under the server's kid.
    let server = app.signing_key();
    let other = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let der = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        other.to_pkcs8_der().unwrap()
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(server.kid.clone());
    let forged = encode(
        &header,
        &forged_claims(&user, json!({})),
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    assert_invalid_token(&app, &format!("Bearer {forged}")).await;
    // The server's key under a kid it never published.
    let mut header = Header::new(server.algorithm);
    header.kid = Some("no-such-key".into());
    let unknown = encode(&header, &forged_claims(&user, json!({})), &server.encoding).unwrap();
    assert_invalid_token(&app, &format!("Bearer {unknown}")).await;
    // And under no kid at all.
    let nameless = encode(
        &Header::new(server.algorithm),
        &forged_claims(&user, json!({})),
        &server.encoding,
    )
    .unwrap();
    assert_invalid_token(&app, &format!("Bearer {nameless}")).await;

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

async fn alg_none_hmac_with_the_public_key_and_other_algorithms_are_401_invalid_token(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let body = URL_SAFE_NO_PAD.encode(forged_claims(&user, json!({})).to_string());
    let kid = app.signing_key().kid;
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#.to_owned(),
        r#"{"alg":"None"}"#.to_owned(),
        format!(r#"{{"alg":"none","kid":"{kid}"}}"#),
    ] {
        let unsigned = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(header));
        assert_invalid_token(&app, &format!("Bearer {unsigned}")).await;
    }
    // The algorithm-confusion attack: HMAC keyed with the public key, as
    // raw bytes, as its base64url `x`, as the JWK text and as PEM.
    let server = app.signing_key();
    let x = server.public_jwk["x"].as_str().unwrap().to_owned();
    let raw = URL_SAFE_NO_PAD.decode(&x).unwrap();
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(&raw);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let jwks = app
        .get("/.well-known/jwks.json", None)
        .await
        .text()
        .await
        .unwrap();
    for secret in [
        raw.clone(),
        x.clone().into_bytes(),
        server.public_jwk.to_string().into_bytes(),
        jwks.into_bytes(),
        pem.clone().into_bytes(),
        pem.trim_end().as_bytes().to_vec(),
    ] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign_hmac(
                &forged_claims(&user, json!({})),
                alg,
                Some(&server.kid),
                &secret,
            );
            assert_invalid_token(&app, &format!("Bearer {token}")).await;
        }
    }
    // Another asymmetric algorithm named over the Ed25519 key's kid.
    let p256 = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let der = {
        use p256::pkcs8::EncodePrivateKey;
        p256.to_pkcs8_der().unwrap()
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(server.kid.clone());
    let es256 = encode(
        &header,
        &forged_claims(&user, json!({})),
        &EncodingKey::from_ec_der(der.as_bytes()),
    )
    .unwrap();
    assert_invalid_token(&app, &format!("Bearer {es256}")).await;
    // The same claims signed with the server's key and algorithm are accepted.
    let good = app.sign_as_server(&forged_claims(&user, json!({})));
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
        let token = app.sign_as_server(&forged_claims(&user, overrides.clone()));
        assert_invalid_token(&app, &format!("Bearer {token}")).await;
    }
    let mut missing_aud = forged_claims(&user, json!({}));
    missing_aud.as_object_mut().unwrap().remove("aud");
    let token = app.sign_as_server(&missing_aud);
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
