//! The contract's answers to a request a guard refuses: `401`/`403`
//! `application/problem+json` (RFC 9457) with the `WWW-Authenticate`
//! challenges of RFC 6750 and RFC 9470. The auth server answers with the
//! same words, so a client cannot tell which service refused it.

use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::claims::AuthLevel;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization` header at all.
    MissingToken,
    /// Malformed, another scheme, expired, wrongly signed, unknown key,
    /// wrong `alg`, `iss` or `aud`.
    InvalidToken,
    /// A valid token whose level is too low; `max_age` (seconds) is named on
    /// routes that also demand a recent verification.
    PasskeyRequired { max_age: Option<u64> },
    /// A valid token at the right level, verified too long ago.
    ReauthenticationRequired { acr: AuthLevel, max_age: u64 },
    /// The keys to check the token with could not be had (a JWKS that
    /// cannot be fetched): not the client's fault.
    KeysUnavailable,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingToken | Rejection::InvalidToken => StatusCode::UNAUTHORIZED,
            Rejection::PasskeyRequired { .. } | Rejection::ReauthenticationRequired { .. } => {
                StatusCode::FORBIDDEN
            }
            Rejection::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing_token",
            Rejection::InvalidToken => "invalid_token",
            Rejection::PasskeyRequired { .. } => "passkey_required",
            Rejection::ReauthenticationRequired { .. } => "reauthentication_required",
            Rejection::KeysUnavailable => "service_unavailable",
        }
    }

    /// The human-readable `detail`.
    pub fn detail(&self) -> String {
        match self {
            Rejection::MissingToken => "this route needs an Authorization: Bearer token".into(),
            Rejection::InvalidToken => {
                "the bearer token is malformed, expired or not issued by the auth server".into()
            }
            Rejection::PasskeyRequired { .. } => {
                "this route needs a passkey verification (authLevel \"full\")".into()
            }
            Rejection::ReauthenticationRequired { acr, max_age } => match acr {
                AuthLevel::Full => format!(
                    "this route needs a passkey verification made within the last {max_age} s: verify with your passkey again"
                ),
                AuthLevel::Password => format!(
                    "this route needs a password login made within the last {max_age} s: log in again"
                ),
            },
            Rejection::KeysUnavailable => {
                "a backing service is unavailable; try again shortly".into()
            }
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9470 §3).
    pub fn www_authenticate(&self) -> Option<String> {
        const STEP_UP: &str = r#"Bearer error="insufficient_user_authentication""#;
        match self {
            Rejection::MissingToken => Some("Bearer".into()),
            Rejection::InvalidToken => Some(r#"Bearer error="invalid_token""#.into()),
            Rejection::PasskeyRequired { max_age } => {
                let mut challenge = format!(
                    r#"{STEP_UP}, error_description="passkey verification required", acr_values="full""#
                );
                if let Some(max_age) = max_age {
                    challenge.push_str(&format!(", max_age={max_age}"));
                }
                Some(challenge)
            }
            Rejection::ReauthenticationRequired { acr, max_age } => Some(format!(
                r#"{STEP_UP}, error_description="a recent verification is required", acr_values="{}", max_age={max_age}"#,
                acr.as_str()
            )),
            Rejection::KeysUnavailable => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())
    }
}

/// An RFC 9457 problem document with the contract's `code` member.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub title: &'a str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

impl<'a> Problem<'a> {
    pub fn new(status: StatusCode, code: &'static str, detail: String) -> Self {
        Problem {
            type_: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
            request_id: None,
        }
    }

    /// The answer: this body as `application/problem+json`, with the
    /// challenge when there is one.
    pub fn respond(&self, www_authenticate: Option<&str>) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        response
            .content_type(PROBLEM_JSON)
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = www_authenticate.and_then(|c| HeaderValue::from_str(c).ok()) {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        let body = serde_json::to_vec(self).unwrap_or_default();
        response.body(body)
    }
}

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        Problem::new(self.status(), self.code(), self.detail())
            .respond(self.www_authenticate().as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc_6750_and_9470() {
        assert_eq!(
            Rejection::MissingToken.www_authenticate().unwrap(),
            "Bearer"
        );
        assert_eq!(
            Rejection::InvalidToken.www_authenticate().unwrap(),
            r#"Bearer error="invalid_token""#
        );
        assert_eq!(
            Rejection::PasskeyRequired { max_age: None }
                .www_authenticate()
                .unwrap(),
            r#"Bearer error="insufficient_user_authentication", error_description="passkey verification required", acr_values="full""#
        );
        assert_eq!(
            Rejection::PasskeyRequired { max_age: Some(300) }
                .www_authenticate()
                .unwrap(),
            r#"Bearer error="insufficient_user_authentication", error_description="passkey verification required", acr_values="full", max_age=300"#
        );
        assert_eq!(
            Rejection::ReauthenticationRequired {
                acr: AuthLevel::Password,
                max_age: 60
            }
            .www_authenticate()
            .unwrap(),
            r#"Bearer error="insufficient_user_authentication", error_description="a recent verification is required", acr_values="password", max_age=60"#
        );
        assert_eq!(Rejection::KeysUnavailable.www_authenticate(), None);
    }
}
