//! `/auth/refresh`, `/auth/logout`, `/auth/sessions`: the caller's sessions.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::json::JsonBody;
use super::TokenResponse;
use crate::domain::ClientInfo;
use crate::errors::ApiError;
use crate::guards::{LoginUser, RecentUser};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    refresh_token: String,
}

/// Swaps a refresh token for a new one and a password-level access token.
pub async fn refresh(
    state: web::Data<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let token = state.auth.refresh(&body.refresh_token, &client).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

/// Ends the caller's session.
pub async fn logout(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    state.sessions.logout(&caller, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's live sessions, newest first.
pub async fn list(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.sessions.list(&caller).await?))
}

/// Ends one of the caller's sessions (a recent route).
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
pub async fn end_others(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    state.sessions.end_others(&caller, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
