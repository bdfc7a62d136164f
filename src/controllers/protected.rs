//! Example protected routes: one for any login, one that needs a passkey.

use actix_web::HttpResponse;
use serde_json::json;

use crate::guards::{FullUser, LoginUser};
use crate::openapi::schemas;

#[utoipa::path(get, path = "/protected/basic", tag = "protected", operation_id = "protectedBasic",
    responses((status = 200, description = "A greeting and the token's level.", body = schemas::Greeting)))]
pub async fn basic(LoginUser(caller): LoginUser) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "message": format!("Hello {}, you are logged in.", caller.username),
        "authLevel": caller.auth_level,
    }))
}

#[utoipa::path(get, path = "/protected/full", tag = "protected", operation_id = "protectedFull",
    responses((status = 200, description = "A greeting; `authLevel` is `full`.", body = schemas::Greeting)))]
pub async fn full(FullUser(caller): FullUser) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "message": format!("Hello {}, your passkey was verified.", caller.username),
        "authLevel": caller.auth_level,
    }))
}
