//! `/auth/refresh`, `/auth/logout`, `/auth/sessions`: the caller's sessions.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::json::JsonBody;
use super::TokenResponse;
use crate::domain::ClientInfo;
use crate::errors::ApiError;
use crate::guards::{LoginUser, RecentUser};
use crate::services::sessions::SessionView;
use crate::state::AppState;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    refresh_token: String,
}

/// Swaps a refresh token for a new one and a password-level access token.
#[utoipa::path(post, path = "/auth/refresh", tag = "sessions", operation_id = "refresh",
    request_body = RefreshBody,
    responses((status = 200, description = "A password-level token and a new refresh token; the old one stops working.", body = TokenResponse)))]
pub async fn refresh(
    state: web::Data<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let token = state.auth.refresh(&body.refresh_token, &client).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

/// Ends the caller's session.
#[utoipa::path(post, path = "/auth/logout", tag = "sessions", operation_id = "logout",
    responses((status = 204, description = "The caller's session has ended.")))]
pub async fn logout(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    state.sessions.logout(&caller, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's live sessions, newest first.
#[utoipa::path(get, path = "/auth/sessions", tag = "sessions", operation_id = "listSessions",
    responses((status = 200, description = "The caller's live sessions, newest first.", body = Vec<SessionView>)))]
pub async fn list(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.sessions.list(&caller).await?))
}

/// Ends one of the caller's sessions (a recent route).
#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "sessions", operation_id = "endSession",
    params(("id" = String, Path, description = "The session's `id` (a token's `sid`).")),
    responses((status = 204, description = "That session has ended.")))]
pub async fn end_one(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .sessions
        .end_one(&caller, &path.into_inner(), &client)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends every session of the caller's but the current one (a recent route).
#[utoipa::path(delete, path = "/auth/sessions", tag = "sessions", operation_id = "endOtherSessions",
    responses((status = 204, description = "Every session but the caller's has ended.")))]
pub async fn end_others(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    state.sessions.end_others(&caller, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
