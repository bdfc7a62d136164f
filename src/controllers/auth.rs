//! `/auth/*`: sign-up, password login, the caller's account.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::json::JsonBody;
use super::TokenResponse;
use crate::domain::{AuthLevel, ClientInfo, DisplayName, Password, Username};
use crate::errors::ApiError;
use crate::guards::LoginUser;
use crate::services::auth::SignupInput;
use crate::startup::AppState;

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
}

pub async fn me(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
) -> Result<HttpResponse, ApiError> {
    let account = state.auth.account(caller.user_id).await?;
    Ok(HttpResponse::Ok().json(MeResponse {
        id: account.user.id.to_string(),
        username: account.user.username,
        display_name: account.user.display_name,
        auth_level: caller.auth_level,
        passkey_count: account.passkey_count,
    }))
}
