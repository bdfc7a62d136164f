//! Extractors that admit a request only with a valid bearer token of the
//! right level. A handler that takes [`FullUser`] cannot run for a
//! password-level token, nor one that takes [`RecentUser`] without a recent
//! verification at the account's highest level: the type is the policy.

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use actix_web_httpauth::extractors::bearer::BearerAuth;
use futures_util::future::{ready, FutureExt, LocalBoxFuture, Ready};

use crate::domain::AuthLevel;
use crate::errors::ApiError;
use crate::services::tokens::Principal;
use crate::state::AppState;
use passkey_auth_guard::Rejection;

pub mod client;

/// Any valid token: `authLevel` password or full.
#[derive(Debug, Clone)]
pub struct LoginUser(pub Principal);

/// A valid token with `authLevel` full (a passkey was verified).
#[derive(Debug, Clone)]
pub struct FullUser(pub Principal);

/// A token at the highest level the account can reach, verified within
/// `STEP_UP_MAX_AGE_SECS` (see [`crate::services::step_up`]): for the
/// routes that change how the account is protected.
#[derive(Debug, Clone)]
pub struct RecentUser(pub Principal);

fn app_state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from the app"))
}

fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    if !req.headers().contains_key(AUTHORIZATION) {
        return Err(ApiError::Guard(Rejection::MissingToken));
    }
    // actix-web-httpauth parses the `Bearer <token>` header; its extractor
    // is ready at once, so `now_or_never` never drops a pending future.
    let bearer = BearerAuth::extract(req)
        .now_or_never()
        .and_then(Result::ok)
        .ok_or(ApiError::Guard(Rejection::InvalidToken))?;
    let state = app_state(req)?;
    let principal = state
        .tokens
        .verify(bearer.token(), state.clock.now())
        .map_err(|_| ApiError::Guard(Rejection::InvalidToken))?;
    // An in-memory lookup: a token of an ended session is refused.
    if state.sessions.is_ended(&principal.session_id) {
        return Err(ApiError::Guard(Rejection::InvalidToken));
    }
    Ok(principal)
}

impl FromRequest for LoginUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(LoginUser))
    }
}

impl FromRequest for FullUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            authenticate(req).and_then(|principal| match principal.auth_level {
                AuthLevel::Full => Ok(FullUser(principal)),
                AuthLevel::Password => Err(Rejection::PasskeyRequired { max_age: None }.into()),
            }),
        )
    }
}

impl FromRequest for RecentUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let admitted = authenticate(req).and_then(|principal| {
            let state = app_state(req)?.clone();
            Ok((principal, state))
        });
        Box::pin(async move {
            let (principal, state) = admitted?;
            state.step_up.require_recent(&principal).await?;
            Ok(RecentUser(principal))
        })
    }
}
