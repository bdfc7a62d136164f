//! The OpenAPI 3.1 document served at `/openapi.json`, built once.
//!
//! Paths, request bodies, parameters and success answers come from the
//! handlers' `#[utoipa::path]` attributes and the types' `ToSchema`
//! derives. The refusals come from [`refusals`] below, one entry per
//! operation: its guard (which sets the `bearer` security requirement and
//! the guard's 401/403 answers) and the errors of its own, as `ApiError`
//! values, so each answer's status, `code` and example body are the ones
//! the server really sends. What every operation shares is added here too:
//! 400 `invalid_request` and 413 `payload_too_large` on a body, 429 with
//! `Retry-After`, 500, and 503 where a backing service is involved.

pub mod schemas;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::body::MessageBody;
use actix_web::ResponseError;
use passkey_auth_guard::Rejection;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::controllers::{auth, health, openapi, passkeys, protected, sessions, users, well_known};
use crate::domain::AuthLevel;
use crate::errors::{ApiError, PROBLEM_JSON};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "passkey-auth",
        description = "Password login with passkey (WebAuthn) step-up to a full-level JWT. \
Errors are `application/problem+json` (RFC 9457) with a stable `code`. \
Authenticated routes take `Authorization: Bearer <accessToken>`; each operation's \
description names the guard's level: **login** (any valid token), **full** \
(`authLevel` full), **recent** (the highest level the account can reach, verified \
within `STEP_UP_MAX_AGE_SECS`)."
    ),
    paths(
        auth::signup,
        auth::login,
        auth::me,
        auth::delete_me,
        auth::change_password,
        auth::replace_recovery_codes,
        auth::recover,
        auth::events,
        sessions::refresh,
        sessions::logout,
        sessions::list,
        sessions::end_one,
        sessions::end_others,
        passkeys::registration_options,
        passkeys::verify_registration,
        passkeys::authentication_options,
        passkeys::verify_authentication,
        passkeys::sign_in_options,
        passkeys::sign_in_verify,
        passkeys::list,
        passkeys::rename,
        passkeys::delete,
        users::profile,
        protected::basic,
        protected::full,
        well_known::jwks,
        openapi::document,
        health::healthz,
        health::readyz,
    ),
    components(schemas(crate::errors::Problem))
)]
struct ApiDoc;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Public,
    /// Any valid token.
    Login,
    /// `authLevel == "full"`.
    Full,
    /// The highest level the account can reach, verified recently.
    Recent,
}

/// The example `STEP_UP_MAX_AGE_SECS` in the documented challenges (the default).
const EXAMPLE_MAX_AGE: u64 = 300;

/// Each operation's guard and the refusals of its own (beyond the guard's
/// and those every operation shares, see the module doc).
fn refusals() -> Vec<(&'static str, Guard, Vec<ApiError>)> {
    use self::Guard::{Full, Login, Public, Recent};
    use ApiError::*;
    let limited = || RateLimited {
        retry_after_secs: 30,
    };
    let invalid = |detail: &str| InvalidRequest(detail.to_owned());
    vec![
        (
            "signup",
            Public,
            vec![
                invalid("username: must be 3 to 64 characters"),
                UsernameTaken,
                limited(),
            ],
        ),
        (
            "login",
            Public,
            vec![InvalidCredentials, AccountLocked, limited()],
        ),
        ("getMe", Login, vec![]),
        ("deleteMe", Recent, vec![]),
        (
            "changePassword",
            Recent,
            vec![
                invalid("newPassword: must be 8 to 128 characters"),
                InvalidCredentials,
                limited(),
            ],
        ),
        ("replaceRecoveryCodes", Recent, vec![NoPasskeys]),
        ("recover", Login, vec![InvalidRecoveryCode, limited()]),
        (
            "listEvents",
            Login,
            vec![invalid("limit: must be from 1 to 100")],
        ),
        ("refresh", Public, vec![InvalidRefreshToken]),
        ("logout", Login, vec![]),
        ("listSessions", Login, vec![]),
        ("endSession", Recent, vec![NotFound("session")]),
        ("endOtherSessions", Recent, vec![]),
        ("registrationOptions", Recent, vec![]),
        (
            "verifyRegistration",
            Recent,
            vec![
                ChallengeExpired,
                PasskeyVerificationFailed,
                CredentialExists,
                limited(),
            ],
        ),
        ("authenticationOptions", Login, vec![NoPasskeys]),
        (
            "verifyAuthentication",
            Login,
            vec![ChallengeExpired, PasskeyVerificationFailed, limited()],
        ),
        // 404 while passkey sign-in is switched off (PASSKEY_SIGN_IN=off).
        ("signInOptions", Public, vec![NotFound("route"), limited()]),
        (
            "signInVerify",
            Public,
            vec![
                PasskeyVerificationFailed,
                AccountLocked,
                NotFound("route"),
                limited(),
            ],
        ),
        ("listPasskeys", Login, vec![]),
        ("renamePasskey", Full, vec![NotFound("passkey")]),
        ("deletePasskey", Recent, vec![NotFound("passkey")]),
        ("getProfile", Login, vec![]),
        ("protectedBasic", Login, vec![]),
        ("protectedFull", Full, vec![]),
        ("jwks", Public, vec![]),
        ("openapi", Public, vec![]),
        ("healthz", Public, vec![]),
        ("readyz", Public, vec![]),
    ]
}

/// Operations that touch no database or store, so never answer 503.
const NO_BACKING_SERVICE: &[&str] = &["jwks", "openapi", "healthz"];

/// The guard's refusals.
fn guard_refusals(guard: Guard) -> Vec<ApiError> {
    let mut errors = match guard {
        Guard::Public => return vec![],
        _ => vec![
            Rejection::MissingToken.into(),
            Rejection::InvalidToken.into(),
        ],
    };
    match guard {
        Guard::Full => errors.push(Rejection::PasskeyRequired { max_age: None }.into()),
        Guard::Recent => {
            errors.push(
                Rejection::PasskeyRequired {
                    max_age: Some(EXAMPLE_MAX_AGE),
                }
                .into(),
            );
            errors.push(
                Rejection::ReauthenticationRequired {
                    acr: AuthLevel::Full,
                    max_age: EXAMPLE_MAX_AGE,
                }
                .into(),
            );
        }
        Guard::Public | Guard::Login => {}
    }
    errors
}

fn guard_description(guard: Guard) -> &'static str {
    match guard {
        Guard::Public => "**Guard: public** (no token).",
        Guard::Login => "**Guard: login**: `Authorization: Bearer <accessToken>`, any valid token (`authLevel` password or full).",
        Guard::Full => "**Guard: full**: `Authorization: Bearer <accessToken>` with `authLevel` full (after a passkey or a recovery code); a password-level token gets 403 `passkey_required`.",
        Guard::Recent => "**Guard: recent**: `Authorization: Bearer <accessToken>` at the highest level the account can reach (full with a passkey, else password), verified within `STEP_UP_MAX_AGE_SECS` (`auth_time`); else 403 `passkey_required` or `reauthentication_required`, whose `WWW-Authenticate` carries `acr_values` and `max_age`.",
    }
}

/// The served document: its bytes and their `ETag`.
pub struct Document {
    pub body: Vec<u8>,
    pub etag: String,
}

/// The document, built on first use (the routes' configuration forces it at
/// start). It depends on the code only, so it never changes while running.
pub fn document() -> &'static Document {
    static DOCUMENT: LazyLock<Document> = LazyLock::new(|| {
        let body = serde_json::to_vec(&build()).expect("a JSON value serialises");
        let etag = format!("\"{}\"", crate::services::sha256_hex(&body, 12));
        Document { body, etag }
    });
    &DOCUMENT
}

/// The whole document as JSON. Panics when an operation has no entry in
/// [`refusals`] or an entry names no operation: a programming error the
/// tests (and the start of the server) catch.
pub fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from login, refresh, a passkey or a recovery code."
        }
    });
    open_webauthn_schemas(&mut doc);
    let mut table: BTreeMap<&str, (Guard, Vec<ApiError>)> = refusals()
        .into_iter()
        .map(|(id, guard, errors)| (id, (guard, errors)))
        .collect();
    let mut seen = Vec::new();
    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for item in paths.values_mut() {
        let item = item.as_object_mut().expect("a path item is an object");
        for (method, operation) in item.iter_mut() {
            let id = operation["operationId"]
                .as_str()
                .expect("every operation has an operationId")
                .to_owned();
            let (guard, own) = table
                .get(id.as_str())
                .unwrap_or_else(|| panic!("operation {id} has no entry in openapi::refusals"));
            complete(operation, &id, *guard, own);
            if method == "head" {
                as_head(operation, &id);
            }
            seen.push(id);
        }
    }
    table.retain(|id, _| !seen.iter().any(|s| s == id));
    assert!(
        table.is_empty(),
        "openapi::refusals names operations the document lacks: {:?}",
        table.keys().collect::<Vec<_>>()
    );
    doc
}

/// Adds the guard (security and description) and every refusal to one operation.
fn complete(operation: &mut Value, id: &str, guard: Guard, own: &[ApiError]) {
    let description = match operation["description"].as_str() {
        Some(text) if !text.is_empty() => format!("{text}\n\n{}", guard_description(guard)),
        _ => guard_description(guard).to_owned(),
    };
    operation["description"] = Value::String(description);
    if guard != Guard::Public {
        operation["security"] = json!([{ "bearer": [] }]);
    }
    let mut errors = guard_refusals(guard);
    errors.extend(own.iter().map(copy));
    if operation.get("requestBody").is_some() {
        errors.push(ApiError::InvalidRequest(
            "malformed JSON, a wrong type or a missing field; the detail names the field"
                .to_owned(),
        ));
        errors.push(ApiError::PayloadTooLarge);
    }
    if !NO_BACKING_SERVICE.contains(&id) {
        errors.push(ApiError::ServiceUnavailable);
    }
    errors.push(ApiError::Internal {
        request_id: "0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b".to_owned(),
    });
    let responses = operation["responses"]
        .as_object_mut()
        .expect("an operation has responses");
    for (status, group) in by_status(&errors) {
        responses.insert(status.to_string(), problem_response(&group));
    }
}

/// The same error again (`ApiError` is not `Clone`: its values are answers).
fn copy(error: &ApiError) -> ApiError {
    match error {
        ApiError::InvalidRequest(detail) => ApiError::InvalidRequest(detail.clone()),
        ApiError::ChallengeExpired => ApiError::ChallengeExpired,
        ApiError::Guard(rejection) => ApiError::Guard(*rejection),
        ApiError::InvalidCredentials => ApiError::InvalidCredentials,
        ApiError::PasskeyVerificationFailed => ApiError::PasskeyVerificationFailed,
        ApiError::InvalidRecoveryCode => ApiError::InvalidRecoveryCode,
        ApiError::InvalidRefreshToken => ApiError::InvalidRefreshToken,
        ApiError::NotFound(what) => ApiError::NotFound(what),
        ApiError::MethodNotAllowed => ApiError::MethodNotAllowed,
        ApiError::UsernameTaken => ApiError::UsernameTaken,
        ApiError::CredentialExists => ApiError::CredentialExists,
        ApiError::NoPasskeys => ApiError::NoPasskeys,
        ApiError::AccountLocked => ApiError::AccountLocked,
        ApiError::PayloadTooLarge => ApiError::PayloadTooLarge,
        ApiError::RateLimited { retry_after_secs } => ApiError::RateLimited {
            retry_after_secs: *retry_after_secs,
        },
        ApiError::ServiceUnavailable => ApiError::ServiceUnavailable,
        ApiError::Internal { request_id } => ApiError::Internal {
            request_id: request_id.clone(),
        },
    }
}

/// One answer the server sends for `error`: status, headers, body.
struct Answer {
    code: &'static str,
    body: Value,
    www_authenticate: Option<String>,
    retry_after: bool,
}

fn answer(error: &ApiError) -> (u16, Answer) {
    let response = error.error_response();
    let status = response.status().as_u16();
    let headers = response.headers();
    let www_authenticate = headers
        .get(actix_web::http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let retry_after = headers.contains_key(actix_web::http::header::RETRY_AFTER);
    let bytes = response.into_body().try_into_bytes().unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (
        status,
        Answer {
            code: error.code(),
            body,
            www_authenticate,
            retry_after,
        },
    )
}

/// The answers grouped by status; one per `code` (the first example wins).
fn by_status(errors: &[ApiError]) -> BTreeMap<u16, Vec<Answer>> {
    let mut groups: BTreeMap<u16, Vec<Answer>> = BTreeMap::new();
    for error in errors {
        let (status, answer) = answer(error);
        let group = groups.entry(status).or_default();
        if !group.iter().any(|a| a.code == answer.code) {
            group.push(answer);
        }
    }
    groups
}

/// A problem+json response listing the codes this status may carry (as an
/// `enum` on `code` and one example per code).
fn problem_response(answers: &[Answer]) -> Value {
    let codes: Vec<&str> = answers.iter().map(|a| a.code).collect();
    let description = answers
        .iter()
        .map(|a| {
            format!(
                "`{}`: {}",
                a.code,
                a.body["detail"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let examples: Map<String, Value> = answers
        .iter()
        .map(|a| (a.code.to_owned(), json!({ "value": a.body })))
        .collect();
    let mut response = json!({
        "description": description,
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "allOf": [
                        { "$ref": "#/components/schemas/Problem" },
                        { "type": "object", "properties": { "code": { "enum": codes } } }
                    ]
                },
                "examples": examples
            }
        }
    });
    let mut headers = Map::new();
    let challenges: Vec<&str> = answers
        .iter()
        .filter_map(|a| a.www_authenticate.as_deref())
        .collect();
    if !challenges.is_empty() {
        headers.insert(
            "WWW-Authenticate".to_owned(),
            json!({
                "description": format!(
                    "The Bearer challenge (RFC 6750, RFC 9470), e.g. {}",
                    challenges
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
                "schema": { "type": "string" }
            }),
        );
    }
    if answers.iter().any(|a| a.retry_after) {
        headers.insert(
            "Retry-After".to_owned(),
            json!({
                "description": "Seconds after which the same request is refused by none of the limits.",
                "schema": { "type": "integer", "minimum": 1 }
            }),
        );
    }
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    response
}

/// HEAD answers GET's headers without a body, under its own operation id.
fn as_head(operation: &mut Value, id: &str) {
    operation["operationId"] = Value::String(format!("{id}Head"));
    if let Some(responses) = operation["responses"].as_object_mut() {
        for response in responses.values_mut() {
            if let Some(response) = response.as_object_mut() {
                response.remove("content");
            }
        }
    }
}

/// The WebAuthn JSON forms take members beyond those described.
fn open_webauthn_schemas(doc: &mut Value) {
    for name in schemas::OPEN_SCHEMAS {
        let schema = &mut doc["components"]["schemas"][*name];
        assert!(schema.is_object(), "schema {name} is in the document");
        schema["additionalProperties"] = Value::Bool(true);
    }
}
