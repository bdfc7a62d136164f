//! `/passkeys/*`: registration and authentication ceremonies, and the
//! caller's passkey list, rename and delete.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::Value;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::json::{from_value, JsonBody};
use super::TokenResponse;
use crate::domain::{ClientInfo, Nickname};
use crate::errors::ApiError;
use crate::guards::{FullUser, LoginUser, RecentUser};
use crate::openapi::schemas;
use crate::services::passkeys::{PasskeySummary, Registered};
use crate::state::AppState;
use utoipa::ToSchema;

/// Options as the WebAuthn JSON forms define them: absent members are left
/// out rather than sent as `null`, which browsers' JSON parsers refuse.
fn options_json(options: impl serde::Serialize) -> Result<HttpResponse, ApiError> {
    let mut value = serde_json::to_value(options).map_err(ApiError::internal)?;
    strip_nulls(&mut value);
    Ok(HttpResponse::Ok().json(value))
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Creation options for a new passkey; they exclude the caller's existing credentials.
#[utoipa::path(get, path = "/passkeys/register/options", tag = "passkeys", operation_id = "registrationOptions",
    responses((status = 200, description = "`PublicKeyCredentialCreationOptionsJSON` under `publicKey`.", body = schemas::CreationOptions)))]
pub async fn registration_options(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
) -> Result<HttpResponse, ApiError> {
    options_json(state.passkeys.start_registration(&caller).await?)
}

/// `RegistrationResponseJSON` plus an optional top-level `nickname`; the
/// account's first passkey is answered with its recovery codes.
#[utoipa::path(post, path = "/passkeys/register/verify", tag = "passkeys", operation_id = "verifyRegistration",
    request_body = schemas::RegistrationResponse,
    responses((status = 201, description = "The new passkey; the account's first one carries `recoveryCodes`.", body = Registered)))]
pub async fn verify_registration(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
    body: Result<JsonBody<serde_json::Map<String, Value>>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    // The body's verdict waits for the guard's (see `auth::change_password`).
    let JsonBody(mut fields) = body?;
    let nickname = match fields.remove("nickname") {
        None | Some(Value::Null) => Nickname::default_name(),
        Some(Value::String(raw)) => Nickname::parse(&raw)?,
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "nickname: must be a string".into(),
            ))
        }
    };
    let response: RegisterPublicKeyCredential = from_value(Value::Object(fields))?;
    let registered = state
        .passkeys
        .finish_registration(&caller, response, nickname, &client)
        .await?;
    Ok(HttpResponse::Created().json(registered))
}

/// Request options that allow only the caller's credentials.
#[utoipa::path(get, path = "/passkeys/authenticate/options", tag = "passkeys", operation_id = "authenticationOptions",
    responses((status = 200, description = "`PublicKeyCredentialRequestOptionsJSON` under `publicKey`.", body = schemas::RequestOptions)))]
pub async fn authentication_options(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
) -> Result<HttpResponse, ApiError> {
    options_json(state.passkeys.start_authentication(&caller).await?)
}

/// The passkey step-up: the session's token reaches the full level.
#[utoipa::path(post, path = "/passkeys/authenticate/verify", tag = "passkeys", operation_id = "verifyAuthentication",
    request_body = schemas::AuthenticationResponse,
    responses((status = 200, description = "A full-level token (the session and its refresh token stay).", body = TokenResponse)))]
pub async fn verify_authentication(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
    client: ClientInfo,
    JsonBody(response): JsonBody<PublicKeyCredential>,
) -> Result<HttpResponse, ApiError> {
    let token = state
        .passkeys
        .finish_authentication(&caller, response, &client)
        .await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

/// Public: options for a passkey sign-in (an empty `allowCredentials`).
#[utoipa::path(get, path = "/passkeys/login/options", tag = "sign-in", operation_id = "signInOptions",
    responses((status = 200, description = "Request options with an empty `allowCredentials`, for a discoverable credential.", body = schemas::RequestOptions)))]
pub async fn sign_in_options(
    state: web::Data<AppState>,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    if !state.passkey_sign_in {
        return Err(ApiError::NotFound("route"));
    }
    options_json(state.passkeys.start_sign_in(&client).await?)
}

/// Public: a passkey alone signs in, to a new session at the full level.
#[utoipa::path(post, path = "/passkeys/login/verify", tag = "sign-in", operation_id = "signInVerify",
    request_body = schemas::AuthenticationResponse,
    responses((status = 200, description = "A full-level token with `amr: [\"hwk\"]` and the new session's refresh token.", body = TokenResponse)))]
pub async fn sign_in_verify(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: Result<JsonBody<PublicKeyCredential>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    if !state.passkey_sign_in {
        return Err(ApiError::NotFound("route"));
    }
    let JsonBody(response) = body?;
    let token = state.auth.sign_in_with_passkey(response, &client).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

/// The caller's passkeys.
#[utoipa::path(get, path = "/passkeys", tag = "passkeys", operation_id = "listPasskeys",
    responses((status = 200, description = "The caller's passkey summaries.", body = Vec<PasskeySummary>)))]
pub async fn list(
    state: web::Data<AppState>,
    LoginUser(caller): LoginUser,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.passkeys.list(&caller).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameBody {
    nickname: String,
}

/// Renames one of the caller's passkeys.
#[utoipa::path(patch, path = "/passkeys/{id}", tag = "passkeys", operation_id = "renamePasskey",
    params(("id" = String, Path, description = "The passkey's `id`.")),
    request_body = RenameBody,
    responses((status = 200, description = "The renamed passkey.", body = PasskeySummary)))]
pub async fn rename(
    state: web::Data<AppState>,
    FullUser(caller): FullUser,
    client: ClientInfo,
    path: web::Path<String>,
    JsonBody(body): JsonBody<RenameBody>,
) -> Result<HttpResponse, ApiError> {
    let nickname = Nickname::parse(&body.nickname)?;
    let summary = state
        .passkeys
        .rename(&caller, &path.into_inner(), nickname, &client)
        .await?;
    Ok(HttpResponse::Ok().json(summary))
}

/// Deletes one of the caller's passkeys; the last one takes the recovery codes with it.
#[utoipa::path(delete, path = "/passkeys/{id}", tag = "passkeys", operation_id = "deletePasskey",
    params(("id" = String, Path, description = "The passkey's `id`.")),
    responses((status = 204, description = "Deleted.")))]
pub async fn delete(
    state: web::Data<AppState>,
    RecentUser(caller): RecentUser,
    client: ClientInfo,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .passkeys
        .delete(&caller, &path.into_inner(), &client)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_nulls_removes_null_members_at_any_depth() {
        let mut v = serde_json::json!({
            "publicKey": {"a": null, "b": [{"c": null, "d": 1}], "e": "x"}
        });
        strip_nulls(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"publicKey": {"b": [{"d": 1}], "e": "x"}})
        );
    }
}
