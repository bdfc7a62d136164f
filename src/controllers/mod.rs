//! HTTP only: parse the request into typed input, call one service method,
//! turn the result into a response.

pub mod auth;
pub mod caching;
pub mod demo;
pub mod health;
pub mod json;
pub mod openapi;
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

/// The methods a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    /// GET, and HEAD (answered with the same headers and no body).
    GetOrHead,
    Post,
    Patch,
    Delete,
}

impl Verb {
    /// The HTTP methods, as OpenAPI names them (lowercase).
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Verb::Get => &["get"],
            Verb::GetOrHead => &["get", "head"],
            Verb::Post => &["post"],
            Verb::Patch => &["patch"],
            Verb::Delete => &["delete"],
        }
    }

    fn route(self) -> actix_web::Route {
        match self {
            Verb::Get => web::get(),
            Verb::GetOrHead => web::route().guard(guard::Any(guard::Get()).or(guard::Head())),
            Verb::Post => web::post(),
            Verb::Patch => web::patch(),
            Verb::Delete => web::delete(),
        }
    }
}

/// One route: a method, an actix path pattern and its handler.
pub struct Endpoint {
    pub verb: Verb,
    pub path: &'static str,
    handler: fn(actix_web::Route) -> actix_web::Route,
}

const fn at(
    verb: Verb,
    path: &'static str,
    handler: fn(actix_web::Route) -> actix_web::Route,
) -> Endpoint {
    Endpoint {
        verb,
        path,
        handler,
    }
}

/// Every route of the contract, and the only list [`configure`] registers
/// from: the OpenAPI test reads it to find routes the document misses.
static ENDPOINTS: &[Endpoint] = &[
    at(Verb::GetOrHead, "/", |r| r.to(demo::index)),
    at(Verb::GetOrHead, "/app.js", |r| r.to(demo::script)),
    at(Verb::GetOrHead, "/style.css", |r| r.to(demo::stylesheet)),
    at(Verb::Get, "/healthz", |r| r.to(health::healthz)),
    at(Verb::GetOrHead, "/.well-known/jwks.json", |r| {
        r.to(well_known::jwks)
    }),
    at(Verb::GetOrHead, "/openapi.json", |r| {
        r.to(openapi::document)
    }),
    at(Verb::Get, "/docs", |r| r.to(openapi::docs_root)),
    at(Verb::Get, "/docs/{file:.*}", |r| r.to(openapi::docs_file)),
    at(Verb::Get, "/readyz", |r| r.to(health::readyz)),
    at(Verb::Post, "/auth/signup", |r| r.to(auth::signup)),
    at(Verb::Post, "/auth/login", |r| r.to(auth::login)),
    at(Verb::Get, "/auth/me", |r| r.to(auth::me)),
    at(Verb::Delete, "/auth/me", |r| r.to(auth::delete_me)),
    at(Verb::Post, "/auth/password", |r| {
        r.to(auth::change_password)
    }),
    at(Verb::Post, "/auth/recovery-codes", |r| {
        r.to(auth::replace_recovery_codes)
    }),
    at(Verb::Post, "/auth/recovery", |r| r.to(auth::recover)),
    at(Verb::Post, "/auth/refresh", |r| r.to(sessions::refresh)),
    at(Verb::Post, "/auth/logout", |r| r.to(sessions::logout)),
    at(Verb::Get, "/auth/sessions", |r| r.to(sessions::list)),
    at(Verb::Delete, "/auth/sessions", |r| {
        r.to(sessions::end_others)
    }),
    at(Verb::Delete, "/auth/sessions/{id}", |r| {
        r.to(sessions::end_one)
    }),
    at(Verb::Get, "/auth/events", |r| r.to(auth::events)),
    at(Verb::Get, "/passkeys/register/options", |r| {
        r.to(passkeys::registration_options)
    }),
    at(Verb::Post, "/passkeys/register/verify", |r| {
        r.to(passkeys::verify_registration)
    }),
    at(Verb::Get, "/passkeys/authenticate/options", |r| {
        r.to(passkeys::authentication_options)
    }),
    at(Verb::Post, "/passkeys/authenticate/verify", |r| {
        r.to(passkeys::verify_authentication)
    }),
    at(Verb::Get, "/passkeys/login/options", |r| {
        r.to(passkeys::sign_in_options)
    }),
    at(Verb::Post, "/passkeys/login/verify", |r| {
        r.to(passkeys::sign_in_verify)
    }),
    at(Verb::Get, "/passkeys", |r| r.to(passkeys::list)),
    at(Verb::Patch, "/passkeys/{id}", |r| r.to(passkeys::rename)),
    at(Verb::Delete, "/passkeys/{id}", |r| r.to(passkeys::delete)),
    at(Verb::Get, "/users/profile", |r| r.to(users::profile)),
    at(Verb::Get, "/protected/basic", |r| r.to(protected::basic)),
    at(Verb::Get, "/protected/full", |r| r.to(protected::full)),
];

/// The routes [`configure`] registers, in registration order.
pub fn route_table() -> &'static [Endpoint] {
    ENDPOINTS
}

/// Every route of the contract: one resource per path, holding that path's
/// routes from [`ENDPOINTS`] (actix answers a path's other methods with 405
/// only when they share one resource).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Built here, once, at start: a broken document fails the start, not a
    // request.
    crate::openapi::document();
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in ENDPOINTS {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let resource = ENDPOINTS
            .iter()
            .filter(|e| e.path == path)
            .fold(resource(path), |res, e| {
                res.route((e.handler)(e.verb.route()))
            });
        cfg.service(resource);
    }
}

/// Unknown paths.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

/// The token response of login and passkey verification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    #[schema(value_type = crate::openapi::schemas::AuthLevel)]
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
