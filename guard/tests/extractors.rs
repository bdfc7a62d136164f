//! The extractors in a real actix-web app, verifying against a real JWKS
//! server: who is admitted where, and the exact refusals.

mod common;

use std::time::Duration;

use actix_web::dev::ServiceResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use common::{closed_url, verifier, JwksServer, SigningKey, NOW};
use passkey_auth_guard::{FullUser, JwksVerifier, LoginUser, RecentUser};
use serde_json::Value;

const PASSKEY_REQUIRED: &str = r#"Bearer error="insufficient_user_authentication", error_description="passkey verification required", acr_values="full""#;
const REAUTHENTICATE: &str = r#"Bearer error="insufficient_user_authentication", error_description="a recent verification is required", acr_values="full", max_age=300"#;
const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

async fn login(user: LoginUser) -> String {
    format!("login {} {}", user.0.username, user.0.auth_level.as_str())
}

async fn full(user: FullUser) -> String {
    format!("full {}", user.0.username)
}

async fn recent(user: RecentUser<300>) -> String {
    format!("recent {} {}", user.0.username, user.0.auth_time())
}

fn app(
    verifier: JwksVerifier,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(verifier))
        .route("/login", web::get().to(login))
        .route("/full", web::get().to(full))
        .route("/recent", web::get().to(recent))
}

/// Status, `WWW-Authenticate` and body of `GET path` with `authorization`.
async fn get(
    service: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = ServiceResponse,
        Error = actix_web::Error,
    >,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, Option<String>, Option<String>, web::Bytes) {
    let mut req = test::TestRequest::get().uri(path);
    if let Some(value) = authorization {
        req = req.insert_header(("Authorization", value));
    }
    let response = test::call_service(service, req.to_request()).await;
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &actix_web::http::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let status = response.status();
    let challenge = header(WWW_AUTHENTICATE);
    let content_type = header(CONTENT_TYPE);
    if !status.is_success() {
        assert_eq!(header(CACHE_CONTROL).as_deref(), Some("no-store"));
    }
    (
        status,
        challenge,
        content_type,
        test::read_body(response).await,
    )
}

/// The problem document of a refusal, checked for the contract's members.
fn problem(status: StatusCode, content_type: Option<String>, body: &[u8], code: &str) -> Value {
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let problem: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(problem["type"], "about:blank");
    assert_eq!(problem["title"], status.canonical_reason().unwrap());
    assert_eq!(problem["status"], status.as_u16());
    assert!(!problem["detail"].as_str().unwrap().is_empty());
    assert_eq!(problem["code"], code);
    problem
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[actix_web::test]
async fn login_user_admits_password_and_full_tokens() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], "public, max-age=3600").await;
    let service = test::init_service(app(verifier(&server.url, Duration::from_secs(5)))).await;
    for level in ["password", "full"] {
        let (status, challenge, _, body) =
            get(&service, "/login", Some(&bearer(&key.token(level, 86_400)))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(challenge, None);
        assert_eq!(body, format!("login alice {level}"));
    }
}

#[actix_web::test]
async fn full_user_asks_a_password_token_for_a_passkey() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], "public, max-age=3600").await;
    let service = test::init_service(app(verifier(&server.url, Duration::from_secs(5)))).await;

    let (status, challenge, content_type, body) =
        get(&service, "/full", Some(&bearer(&key.token("password", 0)))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(challenge.as_deref(), Some(PASSKEY_REQUIRED));
    problem(status, content_type, &body, "passkey_required");

    // A full token is admitted however long ago its passkey was verified.
    let (status, _, _, body) =
        get(&service, "/full", Some(&bearer(&key.token("full", 86_400)))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "full alice");
}

#[actix_web::test]
async fn recent_user_wants_a_passkey_verified_within_max_age() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], "public, max-age=3600").await;
    let service = test::init_service(app(verifier(&server.url, Duration::from_secs(5)))).await;

    // A password token, however fresh: a passkey first.
    let (status, challenge, content_type, body) = get(
        &service,
        "/recent",
        Some(&bearer(&key.token("password", 0))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(challenge, Some(format!("{PASSKEY_REQUIRED}, max_age=300")));
    problem(status, content_type, &body, "passkey_required");

    // A passkey verified 301 s ago: verify again.
    let (status, challenge, content_type, body) =
        get(&service, "/recent", Some(&bearer(&key.token("full", 301)))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(challenge.as_deref(), Some(REAUTHENTICATE));
    problem(status, content_type, &body, "reauthentication_required");

    // 300 s ago, and just now: admitted.
    for age in [300, 0] {
        let (status, _, _, body) =
            get(&service, "/recent", Some(&bearer(&key.token("full", age)))).await;
        assert_eq!(status, StatusCode::OK, "verified {age} s ago");
        assert_eq!(body, format!("recent alice {}", NOW - age));
    }
}

#[actix_web::test]
async fn no_authorization_is_missing_token() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], "public, max-age=3600").await;
    let service = test::init_service(app(verifier(&server.url, Duration::from_secs(5)))).await;
    for path in ["/login", "/full", "/recent"] {
        let (status, challenge, content_type, body) = get(&service, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some("Bearer"));
        problem(status, content_type, &body, "missing_token");
    }
    // Nothing needed the keys.
    assert_eq!(server.requests(), 0);
}

#[actix_web::test]
async fn a_bad_token_is_invalid_token() {
    let key = SigningKey::generate();
    let stranger = SigningKey::generate();
    let server = JwksServer::start(&[&key], "public, max-age=3600").await;
    let service = test::init_service(app(verifier(&server.url, Duration::from_secs(5)))).await;

    let mut expired = common::claims("full", NOW);
    expired["exp"] = NOW.into();
    let mut foreign = common::claims("full", NOW);
    foreign["iss"] = "https://elsewhere.example".into();
    let good = key.token("full", 0);
    let unsigned = format!("{}.", &good[..good.rfind('.').unwrap()]);
    let authorizations = [
        "Basic x".to_owned(),
        "Basic YWxpY2U6c2VjcmV0".to_owned(),
        "Bearer".to_owned(),
        bearer("garbage"),
        bearer("a.b.c"),
        bearer(&key.sign(&expired)),
        bearer(&key.sign(&foreign)),
        bearer(&stranger.token("full", 0)),
        bearer(&unsigned),
        format!("Bearer {good} extra"),
    ];
    for authorization in &authorizations {
        for path in ["/login", "/full", "/recent"] {
            let (status, challenge, content_type, body) =
                get(&service, path, Some(authorization)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {authorization}");
            assert_eq!(challenge.as_deref(), Some(INVALID_TOKEN));
            problem(status, content_type, &body, "invalid_token");
        }
    }
}

#[actix_web::test]
async fn unreachable_keys_are_503_service_unavailable() {
    let key = SigningKey::generate();
    let service = test::init_service(app(verifier(&closed_url(), Duration::from_secs(5)))).await;
    for path in ["/login", "/full", "/recent"] {
        let (status, challenge, content_type, body) =
            get(&service, path, Some(&bearer(&key.token("full", 0)))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(challenge, None);
        problem(status, content_type, &body, "service_unavailable");
    }
}

#[actix_web::test]
async fn an_app_without_a_verifier_is_503() {
    let key = SigningKey::generate();
    let service = test::init_service(App::new().route("/login", web::get().to(login))).await;
    let (status, _, content_type, body) =
        get(&service, "/login", Some(&bearer(&key.token("full", 0)))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    problem(status, content_type, &body, "service_unavailable");
}

#[actix_web::test]
async fn a_rotated_key_is_admitted_and_a_removed_one_refused() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let server = JwksServer::start(&[&old], "no-store").await;
    let service = test::init_service(app(verifier(&server.url, Duration::from_millis(200)))).await;
    let old_token = bearer(&old.token("full", 0));
    assert_eq!(
        get(&service, "/full", Some(&old_token)).await.0,
        StatusCode::OK
    );

    // Rotation: the new key is published, then signs.
    server.set_keys(&[&old, &new]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_token = bearer(&new.token("full", 0));
    assert_eq!(
        get(&service, "/full", Some(&new_token)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&service, "/full", Some(&old_token)).await.0,
        StatusCode::OK
    );

    // The old key leaves: its (already verified) token is refused.
    server.set_keys(&[&new]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, challenge, _, _) = get(&service, "/full", Some(&old_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some(INVALID_TOKEN));
    assert_eq!(
        get(&service, "/full", Some(&new_token)).await.0,
        StatusCode::OK
    );
}
