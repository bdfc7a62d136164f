//! `/auth/*`: sign-up, password login, recovery codes, the caller's account.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::json::JsonBody;
use super::query::Query;
use super::TokenResponse;
use crate::domain::{AuthLevel, ClientInfo, DisplayName, FieldError, Password, Username};
use crate::errors::ApiError;
use crate::guards::{LoginUser, RecentUser};
use crate::openapi::schemas;
use crate::services::audit::EventPage;
use crate::services::auth::SignupInput;
use crate::services::auth::User;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupBody {
    /// 3–64 ASCII letters, digits, `.`, `_`, `-`; unique case-insensitively.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    username: String,
    /// 8–128 characters, no composition rules.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// Defaults to the username.
    display_name: Option<String>,
}

#[utoipa::path(post, path = "/auth/signup", tag = "auth", operation_id = "signup",
    request_body = SignupBody,
    responses((status = 201, description = "The new account.", body = User)))]
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// A password login: a new session and a password-level token.
#[utoipa::path(post, path = "/auth/login", tag = "auth", operation_id = "login",
    request_body = LoginBody,
    responses((status = 200, description = "A password-level token and the new session's refresh token.", body = TokenResponse)))]
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct MeResponse {
    id: String,
    username: String,
    display_name: String,
    #[schema(value_type = schemas::AuthLevel)]
    auth_level: AuthLevel,
    passkey_count: i64,
    recovery_codes_remaining: i64,
}

/// The caller's account.
#[utoipa::path(get, path = "/auth/me", tag = "account", operation_id = "getMe",
    responses((status = 200, description = "The caller's account and the level of the token used.", body = MeResponse)))]
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
#[utoipa::path(delete, path = "/auth/me", tag = "account", operation_id = "deleteMe",
    responses((status = 204, description = "The account, its passkeys, recovery codes and sessions are gone.")))]
pub async fn delete_me(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    state.auth.delete_account(&caller, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChangeBody {
    current_password: String,
    #[schema(min_length = 8, max_length = 128)]
    new_password: String,
}

/// Changes the password (a recent route); the current one must be given.
#[utoipa::path(post, path = "/auth/password", tag = "account", operation_id = "changePassword",
    request_body = PasswordChangeBody,
    responses((status = 204, description = "Changed; every other session of the account ends.")))]
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RecoveryCodesResponse {
    /// 10 single-use codes, shown this once.
    #[schema(min_items = 10, max_items = 10, example = json!(["k7m2q-9xw4d"]))]
    codes: Vec<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// Replaces the caller's recovery codes (a recent route).
#[utoipa::path(post, path = "/auth/recovery-codes", tag = "account", operation_id = "replaceRecoveryCodes",
    responses((status = 201, description = "The new codes; the previous ones stop working.", body = RecoveryCodesResponse)))]
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct RecoveryBody {
    /// Any case, spaces or hyphens.
    code: String,
}

/// Spends one recovery code for a full-level token.
#[utoipa::path(post, path = "/auth/recovery", tag = "account", operation_id = "recover",
    request_body = RecoveryBody,
    responses((status = 200, description = "A full-level token with `amr: [\"pwd\", \"otp\"]`; every other session ends.", body = TokenResponse)))]
pub async fn recover(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
    client: ClientInfo,
    JsonBody(body): JsonBody<RecoveryBody>,
) -> Result<HttpResponse, ApiError> {
    let token = state.auth.recover(&caller, &body.code, &client).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    before: Option<String>,
}

/// Page size of `/auth/events`: default and largest.
const EVENTS_DEFAULT_LIMIT: u32 = 20;
const EVENTS_MAX_LIMIT: u32 = 100;

/// The caller's own recent auth events, newest first; `before` is the
/// `nextCursor` of the previous page.
#[utoipa::path(get, path = "/auth/events", tag = "account", operation_id = "listEvents",
    params(EventsQuery),
    responses((status = 200, description = "A page of the caller's audit events, newest first.", body = EventPage)))]
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
