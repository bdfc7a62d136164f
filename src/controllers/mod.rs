//! HTTP only: parse the request into typed input, call one service method,
//! turn the result into a response.

pub mod auth;
pub mod demo;
pub mod health;
pub mod json;
pub mod passkeys;
pub mod protected;
pub mod query;
pub mod sessions;
pub mod users;
pub mod well_known;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{guard, web, HttpResponse, Resource};
use serde::Serialize;

use crate::domain::AuthLevel;
use crate::errors::ApiError;
use crate::middleware::catch_panics;
use crate::services::tokens::IssuedToken;

/// A resource whose handlers' panics become 500 answers. (The panic guard
/// sits on each resource because it must hold the request, and actix routes
/// only requests no one else holds.)
pub fn resource(
    path: &str,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path).wrap(from_fn(catch_panics))
}

/// GET, and HEAD (answered with the same headers and no body).
fn get_or_head() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Every route of the contract.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(get_or_head().to(demo::index)))
        .service(resource("/app.js").route(get_or_head().to(demo::script)))
        .service(resource("/style.css").route(get_or_head().to(demo::stylesheet)))
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/.well-known/jwks.json").route(get_or_head().to(well_known::jwks)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/auth/signup").route(web::post().to(auth::signup)))
        .service(resource("/auth/login").route(web::post().to(auth::login)))
        .service(
            resource("/auth/me")
                .route(web::get().to(auth::me))
                .route(web::delete().to(auth::delete_me)),
        )
        .service(resource("/auth/password").route(web::post().to(auth::change_password)))
        .service(
            resource("/auth/recovery-codes").route(web::post().to(auth::replace_recovery_codes)),
        )
        .service(resource("/auth/recovery").route(web::post().to(auth::recover)))
        .service(resource("/auth/refresh").route(web::post().to(sessions::refresh)))
        .service(resource("/auth/logout").route(web::post().to(sessions::logout)))
        .service(
            resource("/auth/sessions")
                .route(web::get().to(sessions::list))
                .route(web::delete().to(sessions::end_others)),
        )
        .service(resource("/auth/sessions/{id}").route(web::delete().to(sessions::end_one)))
        .service(resource("/auth/events").route(web::get().to(auth::events)))
        .service(
            resource("/passkeys/register/options")
                .route(web::get().to(passkeys::registration_options)),
        )
        .service(
            resource("/passkeys/register/verify")
                .route(web::post().to(passkeys::verify_registration)),
        )
        .service(
            resource("/passkeys/authenticate/options")
                .route(web::get().to(passkeys::authentication_options)),
        )
        .service(
            resource("/passkeys/authenticate/verify")
                .route(web::post().to(passkeys::verify_authentication)),
        )
        .service(
            resource("/passkeys/login/options").route(web::get().to(passkeys::sign_in_options)),
        )
        .service(resource("/passkeys/login/verify").route(web::post().to(passkeys::sign_in_verify)))
        .service(resource("/passkeys").route(web::get().to(passkeys::list)))
        .service(
            resource("/passkeys/{id}")
                .route(web::patch().to(passkeys::rename))
                .route(web::delete().to(passkeys::delete)),
        )
        .service(resource("/users/profile").route(web::get().to(users::profile)))
        .service(resource("/protected/basic").route(web::get().to(protected::basic)))
        .service(resource("/protected/full").route(web::get().to(protected::full)));
}

/// Unknown paths.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

/// The token response of login and passkey verification.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub auth_level: AuthLevel,
    /// Login and refresh only: the session's new refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<u64>,
}

impl From<IssuedToken> for TokenResponse {
    fn from(token: IssuedToken) -> Self {
        let (refresh_token, refresh_expires_in) = token.refresh.unzip();
        TokenResponse {
            access_token: token.access_token,
            token_type: "Bearer",
            expires_in: token.expires_in,
            auth_level: token.auth_level,
            refresh_token,
            refresh_expires_in,
        }
    }
}
