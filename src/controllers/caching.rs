//! Public documents other programs fetch and cache (the JWKS, the OpenAPI
//! document): `Cache-Control: public, max-age=…`, an `ETag`, and 304 for a
//! matching `If-None-Match`. Every other API answer is `no-store` (set by
//! `middleware::security_headers`).

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

/// A public JSON document whose strong `etag` names `body`: 304 when the
/// request already holds it. Any origin may read it (it carries nothing
/// private, and no credentials are involved).
pub fn public_json(req: &HttpRequest, etag: &str, max_age: Duration, body: &[u8]) -> HttpResponse {
    let cache_control = format!("public, max-age={}", max_age.as_secs());
    let unchanged = matches_etag(req, etag);
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::ETAG, etag.to_owned()))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
    if unchanged {
        return response.finish();
    }
    response
        .content_type("application/json")
        .body(body.to_vec())
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
