//! `/.well-known/jwks.json`: the public keys that verify access tokens, for
//! other services (RFC 7517). Public, cacheable for less than the key
//! activation delay, with an `ETag` for conditional requests.

use actix_web::{web, HttpRequest, HttpResponse};

use super::caching::public_json;
use crate::openapi::schemas;
use crate::state::AppState;

/// The JWK Set (RFC 7517) of the public keys that verify access tokens.
#[utoipa::path(method(get, head), path = "/.well-known/jwks.json", tag = "keys", operation_id = "jwks",
    responses(
        (status = 200, description = "The key set; `Cache-Control: public, max-age=…` and an `ETag`.", body = schemas::JwkSet,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "`If-None-Match` named the current `ETag`.")))]
pub async fn jwks(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let keys = state.tokens.keys();
    let document = keys.jwks();
    public_json(
        &req,
        &document.etag,
        keys.policy().jwks_max_age(),
        &document.body,
    )
}
