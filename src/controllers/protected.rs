//! Example protected routes: one for any login, one that needs a passkey.

use actix_web::HttpResponse;
use serde_json::json;

use crate::guards::{FullUser, LoginUser};

pub async fn basic(LoginUser(caller): LoginUser) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "message": format!("Hello {}, you are logged in.", caller.username),
        "authLevel": caller.auth_level,
    }))
}

pub async fn full(FullUser(caller): FullUser) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "message": format!("Hello {}, your passkey was verified.", caller.username),
        "authLevel": caller.auth_level,
    }))
}
