//! The JSON body extractor: at most 64 KiB, and every parse failure is a
//! 400 `invalid_request` whose detail names the offending field.

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::errors::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
                return Err(ApiError::PayloadTooLarge);
            }
            let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| {
                    ApiError::InvalidRequest("the request body could not be read".into())
                })?;
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ApiError::PayloadTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(JsonBody)
        })
    }
}

fn describe(path: &serde_path_to_error::Path, err: &serde_json::Error) -> String {
    let location = path.to_string();
    if location == "." || location.is_empty() {
        format!("invalid JSON body: {err}")
    } else {
        format!("{location}: {err}")
    }
}

/// Parses `bytes` as a `T`; errors name the field (`response.clientDataJSON: …`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ApiError::InvalidRequest(describe(e.path(), e.inner())))?;
    de.end()
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// Converts an already-parsed JSON value into a `T`, naming the field on failure.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| ApiError::InvalidRequest(describe(e.path(), e.inner())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Login {
        username: String,
        password: String,
    }

    fn detail(err: ApiError) -> String {
        match err {
            ApiError::InvalidRequest(d) => d,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn names_missing_and_mistyped_fields() {
        let d = detail(parse::<Login>(br#"{"username":"a"}"#).unwrap_err());
        assert!(d.contains("password"), "{d}");
        let d = detail(parse::<Login>(br#"{"username":5,"password":"x"}"#).unwrap_err());
        assert!(d.starts_with("username:"), "{d}");
    }

    #[test]
    fn rejects_empty_malformed_and_trailing_input() {
        assert!(parse::<Login>(b"").is_err());
        assert!(parse::<Login>(b"{").is_err());
        assert!(parse::<Login>(br#"{"username":"a","password":"b"} x"#).is_err());
        assert!(parse::<Login>(br#"{"username":"a","password":"b"}"#).is_ok());
    }
}
