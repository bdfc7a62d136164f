//! `/healthz` (the process answers) and `/readyz` (it can reach its database
//! and challenge store), for load balancers and orchestrators.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::errors::ApiError;
use crate::openapi::schemas;
use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = schemas::Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the database and the challenge store answer.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz",
    responses((status = 200, description = "Ready.", body = schemas::Readiness)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let readiness = state.health.readiness().await;
    if !readiness.is_ready() {
        return Err(ApiError::ServiceUnavailable);
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "checks": {"database": "ok", "challengeStore": "ok"},
    })))
}
