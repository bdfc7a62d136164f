//! `/healthz` (the process answers) and `/readyz` (it can reach its database
//! and challenge store), for load balancers and orchestrators.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::errors::ApiError;
use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

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
