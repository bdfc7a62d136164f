//! Cross-cutting HTTP behaviour: panics become 500 answers, security
//! headers on every response, CORS when configured, a request id on every
//! answer and in the log lines written for it (and the log format), and
//! the request metrics.

pub mod logging;
pub mod metrics;
pub mod request_id;

use std::panic::AssertUnwindSafe;

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::ResponseError;
use futures_util::FutureExt;

use crate::errors::ApiError;
pub use request_id::{request_id, RequestId, REQUEST_ID_HEADER};

/// A strict policy for the demo page (no inline script or style, same-origin
/// only) that is harmless on JSON answers, so it is sent on every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Swagger UI at `/docs/`: the policy above, plus the one inline `<style>`
/// Swagger UI 5.17.14 renders (the colours of its logo), allowed by its hash
/// alone. Its scripts, its start script included, are files: `script-src
/// 'self'` holds.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// Headers every response carries unless the handler set them itself
/// (the demo page's assets choose their own `Cache-Control`).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CACHE_CONTROL, "no-store"))
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_FRAME_OPTIONS, "DENY"))
}

/// Cross-origin access for the configured origins only; `None` (the
/// default) leaves CORS off, so browsers keep other origins out.
pub fn cors(allowed_origins: &[String]) -> Option<Cors> {
    if allowed_origins.is_empty() {
        return None;
    }
    let cors = allowed_origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            REQUEST_ID_HEADER,
        ])
        .expose_headers([
            header::WWW_AUTHENTICATE,
            header::RETRY_AFTER,
            REQUEST_ID_HEADER,
        ])
        .max_age(600);
    Some(cors)
}

/// A panic in a handler becomes a logged 500 problem+json answer instead of
/// a dropped connection. Mounted per resource: see `controllers::resource`.
/// It runs inside the request id's scope, so the 500's `requestId` and its
/// log line name the request.
pub async fn catch_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request = req.request().clone();
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(result) => result.map(ServiceResponse::map_into_boxed_body),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            let error = ApiError::internal(format!(
                "handler panicked on {} {}: {message}",
                request.method(),
                request.path()
            ));
            Ok(ServiceResponse::new(request, error.error_response()))
        }
    }
}
