//! The example resource server (`guard/examples/payments.rs`, the very file
//! `cargo run --example payments` runs) in front of the real auth server:
//! it verifies tokens with the auth server's JWKS over HTTP, holding no
//! secret, and demands a recent passkey for transfers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use passkey_auth_guard::{JwksConfig, JwksVerifier};
use serde_json::{json, Value};

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;

#[allow(dead_code)]
#[path = "../../guard/examples/payments.rs"]
mod payments;

on_both_backends!(the_example_service_demands_a_recent_passkey_for_transfers);

/// The example service on a free port, with its verifier's clock `offset`
/// seconds ahead of the system clock; its base URL.
fn start_payments(jwks_url: String, offset: Arc<AtomicI64>) -> String {
    let verifier = JwksVerifier::new(JwksConfig::new(jwks_url, "passkey-auth", "passkey-auth"))
        .with_clock(move || chrono::Utc::now().timestamp() + offset.load(Ordering::Relaxed));
    let verifier = web::Data::new(verifier);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(verifier.clone())
            .configure(payments::configure)
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    base
}

async fn the_example_service_demands_a_recent_passkey_for_transfers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let offset = Arc::new(AtomicI64::new(0));
    let payments = start_payments(app.url("/.well-known/jwks.json"), offset.clone());
    let http = reqwest::Client::new();
    let transfer = json!({"to": "bob", "amount": 1250});
    let post = |token: Option<String>| {
        let mut req = http.post(format!("{payments}/transfers")).json(&transfer);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };

    let user = app.new_user().await;
    let res = http
        .get(format!("{payments}/balance"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let balance: Value = res.json().await.unwrap();
    assert_eq!(balance["username"], user.username.as_str());

    // Without a token, and with the password-level one.
    let res = post(None).await.unwrap();
    assert_eq!(www_authenticate(&res).as_deref(), Some("Bearer"));
    assert_problem(res, 401, "missing_token").await;
    let res = post(Some(user.token.clone())).await.unwrap();
    assert_eq!(
        www_authenticate(&res).as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="passkey verification required", acr_values="full", max_age=300"#
        )
    );
    assert_problem(res, 403, "passkey_required").await;

    // Step up through a software authenticator: the full token transfers.
    let mut authenticator = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut authenticator).await;
    let full = app.step_up(&user.token, &mut authenticator).await;
    let res = post(Some(full.clone())).await.unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["from"], user.username.as_str());
    assert_eq!(created["amount"], 1250);

    // Five minutes and a second later (for the service), the same token is
    // still valid but no longer recent.
    offset.store(301, Ordering::Relaxed);
    let res = http
        .get(format!("{payments}/balance"))
        .bearer_auth(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = post(Some(full.clone())).await.unwrap();
    assert_eq!(
        www_authenticate(&res).as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="a recent verification is required", acr_values="full", max_age=300"#
        )
    );
    assert_problem(res, 403, "reauthentication_required").await;

    // A token the auth server did not sign, and one it signed but whose
    // key claims are tampered with, are 401 there too.
    let mut claims = claims(&user.token);
    claims["authLevel"] = json!("full");
    let parts: Vec<&str> = user.token.split('.').collect();
    use base64::Engine;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    for token in [tampered, "garbage".to_owned()] {
        let res = post(Some(token)).await.unwrap();
        assert_eq!(
            www_authenticate(&res).as_deref(),
            Some(r#"Bearer error="invalid_token""#)
        );
        assert_problem(res, 401, "invalid_token").await;
    }
}
