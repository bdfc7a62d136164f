//! The example resource server, mounted the way other crates' tests mount
//! it (`#[path = ...] mod payments;` and `payments::configure`).

mod common;

#[path = "../examples/payments.rs"]
mod payments;

use std::time::Duration;

use actix_web::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use common::{verifier, JwksServer, SigningKey};
use serde_json::{json, Value};

#[actix_web::test]
async fn the_payments_api_is_guarded_as_documented() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], "public, max-age=3600").await;
    let service = test::init_service(
        App::new()
            .app_data(web::Data::new(verifier(
                &server.url,
                Duration::from_secs(5),
            )))
            .configure(payments::configure),
    )
    .await;
    let bearer = |level: &str, age: i64| format!("Bearer {}", key.token(level, age));

    // The bare route needs nothing, not even the keys.
    let response = test::call_service(
        &service,
        test::TestRequest::get().uri("/health").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.requests(), 0);

    // Balance: any login.
    let req = test::TestRequest::get()
        .uri("/balance")
        .insert_header(("Authorization", bearer("password", 3600)))
        .to_request();
    let balance: Value = test::call_and_read_body_json(&service, req).await;
    assert_eq!(balance["username"], "alice");
    assert_eq!(balance["balance"], 125_000);
    let req = test::TestRequest::get().uri("/balance").to_request();
    let response = test::call_service(&service, req).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers().get(WWW_AUTHENTICATE).unwrap(), "Bearer");

    // Transfers: a passkey within 5 minutes.
    let transfer = json!({"to": "bob", "amount": 2500});
    let req = test::TestRequest::post()
        .uri("/transfers")
        .insert_header(("Authorization", bearer("full", 60)))
        .set_json(&transfer)
        .to_request();
    let response = test::call_service(&service, req).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = test::read_body_json(response).await;
    assert_eq!(created["to"], "bob");
    assert_eq!(created["amount"], 2500);
    assert_eq!(created["from"], "alice");
    assert!(created["id"].as_str().unwrap().starts_with("tr_"));

    for (level, age, code) in [
        ("password", 0, "passkey_required"),
        ("full", 301, "reauthentication_required"),
    ] {
        let req = test::TestRequest::post()
            .uri("/transfers")
            .insert_header(("Authorization", bearer(level, age)))
            .set_json(&transfer)
            .to_request();
        let response = test::call_service(&service, req).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response
            .headers()
            .get(WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("max_age=300"));
        let problem: Value = test::read_body_json(response).await;
        assert_eq!(problem["code"], code);
    }

    // A body that is not a transfer, with a good token: 400 problem.
    let req = test::TestRequest::post()
        .uri("/transfers")
        .insert_header(("Authorization", bearer("full", 0)))
        .set_json(json!({"to": "bob", "amount": -5}))
        .to_request();
    let response = test::call_service(&service, req).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers().get(CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    let problem: Value = test::read_body_json(response).await;
    assert_eq!(problem["code"], "invalid_request");
    assert_eq!(problem["status"], 400);
    assert_eq!(server.requests(), 1);
}
