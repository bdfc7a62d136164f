//! `/users/profile`: the caller's profile and the claims of the token used.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::AuthLevel;
use crate::errors::ApiError;
use crate::guards::LoginUser;
use crate::openapi::schemas;
use crate::services::tokens::Claims;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ProfileResponse {
    id: String,
    username: String,
    display_name: String,
    created_at: DateTime<Utc>,
    passkey_count: i64,
    #[schema(value_type = schemas::AuthLevel)]
    auth_level: AuthLevel,
    #[schema(value_type = schemas::Claims)]
    claims: Claims,
}

#[utoipa::path(get, path = "/users/profile", tag = "account", operation_id = "getProfile",
    responses((status = 200, description = "The caller's profile and the claims of the token used.", body = ProfileResponse)))]
pub async fn profile(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
) -> Result<HttpResponse, ApiError> {
    let account = state.auth.account(caller.user_id).await?;
    Ok(HttpResponse::Ok().json(ProfileResponse {
        id: account.user.id.to_string(),
        username: account.user.username,
        display_name: account.user.display_name,
        created_at: account.user.created_at,
        passkey_count: account.passkey_count,
        auth_level: caller.auth_level,
        claims: caller.claims,
    }))
}
