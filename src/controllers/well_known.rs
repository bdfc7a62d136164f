//! `/.well-known/jwks.json`: the public keys that verify access tokens, for
//! other services (RFC 7517). Public, cacheable for less than the key
//! activation delay, with an `ETag` for conditional requests.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::state::AppState;

pub async fn jwks(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let keys = state.tokens.keys();
    let document = keys.jwks();
    let cache_control = format!("public, max-age={}", keys.policy().jwks_max_age().as_secs());
    let unchanged = matches_etag(&req, &document.etag);
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::ETAG, document.etag.clone()))
        // Public keys: any origin may read them.
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
    if unchanged {
        return response.finish();
    }
    response
        .content_type("application/json")
        .body(document.body.clone())
}

/// Whether `If-None-Match` names `etag` (weakly compared, RFC 9110 §13.1.2).
fn matches_etag(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}
