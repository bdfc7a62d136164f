//! `/auth/*`: sign-up, password login, recovery codes, the caller's account.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::json::JsonBody;
use super::query::Query;
use super::TokenResponse;
use crate::domain::{AuthLevel, ClientInfo, DisplayName, FieldError, Password, Username};
use crate::errors::ApiError;
use crate::guards::{LoginUser, RecentUser};
use crate::services::auth::SignupInput;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignupBody {
    username: String,
    password: String,
    display_name: Option<String>,
}

pub async fn signup(
    state: web::Data<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<SignupBody>,
) -> Result<HttpResponse, ApiError> {
    let username = Username::parse(&body.username)?;
    let password = Password::parse(body.password)?;
    let display_name = match body.display_name {
        Some(raw) => DisplayName::parse(&raw)?,
        None => DisplayName::from_username(&username),
    };
    let user = state
        .auth
        .signup(
            SignupInput {
                username,
                password,
                display_name,
            },
            &client,
        )
        .await?;
    Ok(HttpResponse::Created().json(user))
}

#[derive(Debug, Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

pub async fn login(
    state: web::Data<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let token = state
        .auth
        .login(&body.username, body.password, &client)
        .await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MeResponse {
    id: String,
    username: String,
    display_name: String,
    auth_level: AuthLevel,
    passkey_count: i64,
    recovery_codes_remaining: i64,
}

pub async fn me(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
) -> Result<HttpResponse, ApiError> {
    let (account, recovery_codes_remaining) = state.auth.account_status(caller.user_id).await?;
    Ok(HttpResponse::Ok().json(MeResponse {
        id: account.user.id.to_string(),
        username: account.user.username,
        display_name: account.user.display_name,
        auth_level: caller.auth_level,
        passkey_count: account.passkey_count,
        recovery_codes_remaining,
    }))
}

/// Deletes the caller's account (a recent route).
pub async fn delete_me(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    state.auth.delete_account(&caller, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChangeBody {
    current_password: String,
    new_password: String,
}

/// Changes the password (a recent route); the current one must be given.
pub async fn change_password(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
    body: Result<JsonBody<PasswordChangeBody>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    // The body's verdict waits for the guard's, which needs a database
    // lookup: a refused caller learns nothing about how the body was read.
    let JsonBody(body) = body?;
    let new = Password::parse(body.new_password)
        .map_err(|e| FieldError::new("newPassword", e.message))?;
    state
        .auth
        .change_password(&caller, body.current_password, new, &client)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RecoveryCodesResponse {
    codes: Vec<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// Replaces the caller's recovery codes (a recent route).
pub async fn replace_recovery_codes(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    let issued = state.auth.replace_recovery_codes(&caller, &client).await?;
    Ok(HttpResponse::Created().json(RecoveryCodesResponse {
        codes: issued.codes,
        created_at: issued.created_at,
    }))
}

#[derive(Debug, Deserialize)]
pub struct RecoveryBody {
    code: String,
}

/// Spends one recovery code for a full-level token.
pub async fn recover(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
    client: ClientInfo,
    JsonBody(body): JsonBody<RecoveryBody>,
) -> Result<HttpResponse, ApiError> {
    let token = state.auth.recover(&caller, &body.code, &client).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    limit: Option<u32>,
    before: Option<String>,
}

/// Page size of `/auth/events`: default and largest.
const EVENTS_DEFAULT_LIMIT: u32 = 20;
const EVENTS_MAX_LIMIT: u32 = 100;

/// The caller's own recent auth events, newest first; `before` is the
/// `nextCursor` of the previous page.
pub async fn events(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
    Query(query): Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(EVENTS_DEFAULT_LIMIT);
    if !(1..=EVENTS_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit: must be from 1 to {EVENTS_MAX_LIMIT}"
        )));
    }
    let before = query
        .before
        .map(|cursor| uuid::Uuid::parse_str(&cursor))
        .transpose()
        .map_err(|_| ApiError::InvalidRequest("before: not a cursor from nextCursor".into()))?;
    let page = state.auth.events(caller.user_id, before, limit).await?;
    Ok(HttpResponse::Ok().json(page))
}
