//! `/openapi.json`, the OpenAPI 3.1 document of every route (built once, in
//! `crate::openapi`), and `/docs/`, Swagger UI reading it. Swagger UI's
//! files are compiled in (`utoipa-swagger-ui`, vendored); its start script
//! is a file too, so the strict `script-src 'self'` holds on `/docs/`
//! (see `middleware::DOCS_CONTENT_SECURITY_POLICY`).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use utoipa_swagger_ui::Config;

use super::caching::public_json;
use crate::errors::ApiError;
use crate::middleware::DOCS_CONTENT_SECURITY_POLICY;

/// Clients and generators may keep the document this long; the `ETag`
/// makes a later check cheap. A new deployment shows within the hour.
const OPENAPI_MAX_AGE: Duration = Duration::from_secs(3600);

/// The OpenAPI 3.1 document of every route.
#[utoipa::path(method(get, head), path = "/openapi.json", tag = "meta", operation_id = "openapi",
    responses(
        (status = 200, description = "The document; `Cache-Control: public, max-age=3600` and an `ETag`.",
            content_type = "application/json", body = Object,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "`If-None-Match` named the current `ETag`.")))]
pub async fn document(req: HttpRequest) -> HttpResponse {
    let document = crate::openapi::document();
    public_json(&req, &document.etag, OPENAPI_MAX_AGE, &document.body)
}

/// `/docs` → `/docs/`, so that Swagger UI's relative asset paths resolve.
pub async fn docs_root() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// Swagger UI's configuration: our document, no third-party validator
/// badge (it would load an image from elsewhere).
static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["/openapi.json"])
            .validator_url("none")
            .persist_authorization(false),
    )
});

/// `/docs/{file}`: Swagger UI's files (`index.html` for `/docs/`).
pub async fn docs_file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let file = file.into_inner();
    let served = utoipa_swagger_ui::serve(&file, SWAGGER_CONFIG.clone())
        .map_err(|e| ApiError::internal(format!("Swagger UI file {file}: {e}")))?
        .ok_or(ApiError::NotFound("route"))?;
    Ok(HttpResponse::Ok()
        // Revalidated, like the demo page's files: a deployment shows at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            DOCS_CONTENT_SECURITY_POLICY,
        ))
        .content_type(served.content_type)
        .body(served.bytes.into_owned()))
}
