//! HTTP only: parse the request into typed input, call one service method,
//! turn the result into a response.

pub mod auth;
pub mod demo;
pub mod json;
pub mod passkeys;
pub mod protected;
pub mod users;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::domain::AuthLevel;
use crate::errors::ApiError;
use crate::services::tokens::IssuedToken;

/// Every route of the contract.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(demo::index)))
        .service(web::resource("/app.js").route(web::get().to(demo::script)))
        .service(web::resource("/style.css").route(web::get().to(demo::stylesheet)))
        .service(web::resource("/auth/signup").route(web::post().to(auth::signup)))
        .service(web::resource("/auth/login").route(web::post().to(auth::login)))
        .service(web::resource("/auth/me").route(web::get().to(auth::me)))
        .service(
            web::resource("/passkeys/register/options")
                .route(web::get().to(passkeys::registration_options)),
        )
        .service(
            web::resource("/passkeys/register/verify")
                .route(web::post().to(passkeys::verify_registration)),
        )
        .service(
            web::resource("/passkeys/authenticate/options")
                .route(web::get().to(passkeys::authentication_options)),
        )
        .service(
            web::resource("/passkeys/authenticate/verify")
                .route(web::post().to(passkeys::verify_authentication)),
        )
        .service(web::resource("/passkeys").route(web::get().to(passkeys::list)))
        .service(
            web::resource("/passkeys/{id}")
                .route(web::patch().to(passkeys::rename))
                .route(web::delete().to(passkeys::delete)),
        )
        .service(web::resource("/users/profile").route(web::get().to(users::profile)))
        .service(web::resource("/protected/basic").route(web::get().to(protected::basic)))
        .service(web::resource("/protected/full").route(web::get().to(protected::full)));
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
}

impl From<IssuedToken> for TokenResponse {
    fn from(token: IssuedToken) -> Self {
        TokenResponse {
            access_token: token.access_token,
            token_type: "Bearer",
            expires_in: token.expires_in,
            auth_level: token.auth_level,
        }
    }
}
