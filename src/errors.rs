//! The HTTP error type and its one mapping to the contract's
//! `application/problem+json` (RFC 9457) answers.
//!
//! Services and repositories have their own error enums; they become an
//! [`ApiError`] through `From`, and only [`ApiError`] knows about status codes,
//! `code` strings and `WWW-Authenticate` headers.

use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::FieldError;
use crate::middleware::RequestId;
use crate::services::ServiceError;
use passkey_auth_guard::Rejection;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug)]
pub enum ApiError {
    /// Malformed JSON, wrong types, missing or invalid fields; the detail names the field.
    InvalidRequest(String),
    ChallengeExpired,
    /// A guard's refusal: 401 `missing_token`/`invalid_token`, 403
    /// `passkey_required`/`reauthentication_required`. The guard crate
    /// holds their words and challenges, so this server and every service
    /// using the crate answer alike.
    Guard(Rejection),
    InvalidCredentials,
    PasskeyVerificationFailed,
    InvalidRecoveryCode,
    InvalidRefreshToken,
    NotFound(&'static str),
    MethodNotAllowed,
    UsernameTaken,
    CredentialExists,
    NoPasskeys,
    /// An operator locked the account; told only after its password or
    /// passkey verified.
    AccountLocked,
    PayloadTooLarge,
    /// Too many requests; the client may retry after this many seconds.
    RateLimited {
        retry_after_secs: u64,
    },
    ServiceUnavailable,
    /// Something failed on the server; the id is in the body and in the log line.
    Internal {
        request_id: String,
    },
}

impl ApiError {
    /// Logs `cause` and returns a 500 that shows only the request id: the
    /// current request's (the `X-Request-Id` of the answer, also on its
    /// access and audit lines), or a fresh one outside a request (e.g. in a
    /// thread pool's job, which does not see the request's scope). The
    /// log line carries the same id either way.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let id = crate::middleware::request_id::current().unwrap_or_else(RequestId::generate);
        id.in_scope(|| log::error!("internal error: {cause}"));
        ApiError::Internal {
            request_id: id.to_string(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) | ApiError::ChallengeExpired => StatusCode::BAD_REQUEST,
            ApiError::Guard(rejection) => rejection.status(),
            ApiError::InvalidCredentials
            | ApiError::PasskeyVerificationFailed
            | ApiError::InvalidRecoveryCode
            | ApiError::InvalidRefreshToken => StatusCode::UNAUTHORIZED,
            ApiError::AccountLocked => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UsernameTaken | ApiError::CredentialExists | ApiError::NoPasskeys => {
                StatusCode::CONFLICT
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable `code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Guard(rejection) => rejection.code(),
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::ChallengeExpired => "challenge_expired",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::PasskeyVerificationFailed => "passkey_verification_failed",
            ApiError::InvalidRecoveryCode => "invalid_recovery_code",
            ApiError::InvalidRefreshToken => "invalid_refresh_token",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::UsernameTaken => "username_taken",
            ApiError::CredentialExists => "credential_exists",
            ApiError::NoPasskeys => "no_passkeys",
            ApiError::AccountLocked => "account_locked",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::ServiceUnavailable => "service_unavailable",
            ApiError::Internal { .. } => "internal_error",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Guard(rejection) => rejection.detail(),
            ApiError::InvalidRequest(detail) => detail.clone(),
            ApiError::ChallengeExpired => {
                "no live challenge for this ceremony: request new options and try again".into()
            }
            ApiError::InvalidCredentials => "unknown username or wrong password".into(),
            ApiError::PasskeyVerificationFailed => {
                "the passkey response could not be verified".into()
            }
            ApiError::InvalidRecoveryCode => {
                "this recovery code is wrong or has been used already".into()
            }
            ApiError::InvalidRefreshToken => {
                "the refresh token is unknown, expired, already used or its session has ended: log in again".into()
            }
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::MethodNotAllowed => "this method is not allowed on this path".into(),
            ApiError::UsernameTaken => "this username is already taken".into(),
            ApiError::CredentialExists => "this passkey is already registered".into(),
            ApiError::NoPasskeys => "register a passkey first".into(),
            ApiError::AccountLocked => {
                "this account is locked: ask the service's operators to unlock it".into()
            }
            ApiError::PayloadTooLarge => "the request body is larger than 64 KiB".into(),
            ApiError::RateLimited { retry_after_secs } => {
                format!("too many attempts: try again in {retry_after_secs} s")
            }
            ApiError::ServiceUnavailable => {
                "a backing service is unavailable; try again shortly".into()
            }
            ApiError::Internal { request_id } => {
                format!("something failed on the server (request id {request_id})")
            }
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750, and RFC 9470 for step-up).
    fn www_authenticate(&self) -> Option<String> {
        match self {
            ApiError::Guard(rejection) => rejection.www_authenticate(),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())
    }
}

/// An error answer (RFC 9457 problem details).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Problem<'a> {
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    type_: &'static str,
    /// The status's reason phrase.
    title: &'a str,
    status: u16,
    /// For humans; names the offending field of an invalid request.
    detail: String,
    /// Stable and machine-readable (snake_case).
    code: &'static str,
    /// 5xx only: the id of the request, also in the server's log line.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        let problem = Problem {
            type_: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            request_id: match self {
                ApiError::Internal { request_id } => Some(request_id),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.content_type(PROBLEM_JSON);
        if let Some(challenge) = self.www_authenticate() {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.insert_header((header::WWW_AUTHENTICATE, value));
            }
        }
        if let ApiError::RateLimited { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        response.json(problem)
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        ApiError::Guard(rejection)
    }
}

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        ApiError::InvalidRequest(err.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(field) => field.into(),
            ServiceError::UsernameTaken => ApiError::UsernameTaken,
            ServiceError::InvalidCredentials => ApiError::InvalidCredentials,
            ServiceError::UnknownUser => Rejection::InvalidToken.into(),
            ServiceError::NoPasskeys => ApiError::NoPasskeys,
            ServiceError::ChallengeExpired => ApiError::ChallengeExpired,
            ServiceError::PasskeyVerificationFailed => ApiError::PasskeyVerificationFailed,
            ServiceError::CredentialExists => ApiError::CredentialExists,
            ServiceError::InvalidRecoveryCode => ApiError::InvalidRecoveryCode,
            ServiceError::InvalidRefreshToken => ApiError::InvalidRefreshToken,
            ServiceError::SessionNotFound => ApiError::NotFound("session"),
            ServiceError::AccountLocked => ApiError::AccountLocked,
            ServiceError::PasskeyRequired { max_age } => Rejection::PasskeyRequired {
                max_age: max_age.map(|d| d.as_secs()),
            }
            .into(),
            ServiceError::ReauthenticationRequired { acr, max_age } => {
                Rejection::ReauthenticationRequired {
                    acr,
                    max_age: max_age.as_secs(),
                }
                .into()
            }
            ServiceError::PasskeyNotFound => ApiError::NotFound("passkey"),
            ServiceError::RateLimited { retry_after } => ApiError::RateLimited {
                // Whole seconds, rounded up: never tell a client to retry too early.
                retry_after_secs: retry_after.as_millis().div_ceil(1000).max(1) as u64,
            },
            ServiceError::Overloaded => ApiError::ServiceUnavailable,
            ServiceError::Unavailable(cause) => {
                log::warn!("backing service unavailable: {cause}");
                ApiError::ServiceUnavailable
            }
            ServiceError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuthLevel;
    use actix_web::body::MessageBody;

    fn body_json(err: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let res = err.error_response();
        let status = res.status();
        let www = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
        let bytes = res.into_body().try_into_bytes().unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), www)
    }

    #[test]
    fn problem_body_has_every_contract_field() {
        let (status, body, www) = body_json(ApiError::InvalidRequest("username: bad".into()));
        assert_eq!(status, 400);
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Bad Request");
        assert_eq!(body["status"], 400);
        assert_eq!(body["detail"], "username: bad");
        assert_eq!(body["code"], "invalid_request");
        assert!(www.is_none());
    }

    #[test]
    fn bearer_challenges_follow_rfc_6750_and_9470() {
        assert_eq!(
            body_json(ApiError::Guard(Rejection::MissingToken))
                .2
                .unwrap(),
            "Bearer"
        );
        assert_eq!(
            body_json(ApiError::Guard(Rejection::InvalidToken))
                .2
                .unwrap(),
            r#"Bearer error="invalid_token""#
        );
        let (status, body, www) = body_json(ApiError::Guard(Rejection::PasskeyRequired {
            max_age: None,
        }));
        assert_eq!(status, 403);
        assert_eq!(body["code"], "passkey_required");
        assert_eq!(
            www.unwrap(),
            r#"Bearer error="insufficient_user_authentication", error_description="passkey verification required", acr_values="full""#
        );
        let (_, _, www) = body_json(ApiError::Guard(Rejection::PasskeyRequired {
            max_age: Some(300),
        }));
        assert_eq!(
            www.unwrap(),
            r#"Bearer error="insufficient_user_authentication", error_description="passkey verification required", acr_values="full", max_age=300"#
        );
        for (acr, shown) in [(AuthLevel::Full, "full"), (AuthLevel::Password, "password")] {
            let (status, body, www) =
                body_json(ApiError::Guard(Rejection::ReauthenticationRequired {
                    acr,
                    max_age: 300,
                }));
            assert_eq!(status, 403);
            assert_eq!(body["code"], "reauthentication_required");
            assert_eq!(
                www.unwrap(),
                format!(
                    r#"Bearer error="insufficient_user_authentication", error_description="a recent verification is required", acr_values="{shown}", max_age=300"#
                )
            );
        }
    }

    #[test]
    fn rate_limited_answers_carry_retry_after() {
        let res = ApiError::RateLimited {
            retry_after_secs: 7,
        }
        .error_response();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "7");
        let millis = ServiceError::RateLimited {
            retry_after: std::time::Duration::from_millis(1_200),
        };
        assert!(matches!(
            ApiError::from(millis),
            ApiError::RateLimited {
                retry_after_secs: 2
            }
        ));
    }

    #[test]
    fn an_internal_error_in_a_request_shows_that_requests_id() {
        let id = RequestId::parse(b"req-42").unwrap();
        let err = id.in_scope(|| ApiError::internal("disk on fire"));
        let (_, body, _) = body_json(err);
        assert_eq!(body["requestId"], "req-42");
    }

    #[test]
    fn internal_errors_show_only_a_request_id() {
        let err = ApiError::internal("SELECT * FROM users exploded");
        let (status, body, _) = body_json(err);
        assert_eq!(status, 500);
        let detail = body["detail"].as_str().unwrap();
        assert!(!detail.contains("SELECT"));
        assert!(detail.contains(body["requestId"].as_str().unwrap()));
    }
}
