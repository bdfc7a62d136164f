//! The request id: taken from the client's `X-Request-Id` when it is sane,
//! else made here; sent back on every response that passes through the app,
//! and known to the code that runs for the request, so the access log line,
//! the audit lines and a 5xx body name the same id.
//!
//! The id lives in a task-local scoped around the inner service's future:
//! the handler, the extractors, the error handlers and `catch_panics` see it
//! through [`current`]. Code on other threads does not: the jobs of the
//! thread pools (the database's queries, the password hashes). Their
//! errors are turned into answers (and logged) back in the handler, which
//! does see it.

use std::fmt;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

/// The header that carries the id, in and out.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id accepted from a client.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// One request's id: 1–128 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh id (a UUID v4).
    pub fn generate() -> Self {
        RequestId(uuid::Uuid::new_v4().to_string().into())
    }

    /// `raw` as an id, if it is sane: 1 to [`MAX_LEN`] characters of
    /// ASCII letters, digits, `.`, `_` and `-` (nothing that could break a
    /// log line or a header).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let sane = (1..=MAX_LEN).contains(&raw.len())
            && raw
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        // Only ASCII passed, so this cannot fail.
        sane.then(|| std::str::from_utf8(raw).ok())
            .flatten()
            .map(|s| RequestId(s.into()))
    }

    /// The client's id when it sent one sane `X-Request-Id`, else a fresh one.
    pub fn for_request(req: &HttpRequest) -> Self {
        let mut sent = req.headers().get_all(&REQUEST_ID_HEADER);
        match (sent.next(), sent.next()) {
            (Some(value), None) => Self::parse(value.as_bytes()),
            // None, or several (ambiguous): make one.
            _ => None,
        }
        .unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Runs `f` (synchronous code: a log call, a service's `call`) with this
    /// id as the current one.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of the request being handled, if this code runs for one (not in
/// the thread pools' jobs or background tasks).
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(RequestId::clone).ok()
}

/// Handlers may take the id as an extractor.
impl FromRequest for RequestId {
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .or_else(current)
            .unwrap_or_else(RequestId::generate);
        std::future::ready(Ok(id))
    }
}

/// The middleware (mount it with `from_fn`, outside the error handlers so a
/// rewritten answer still gets the header): picks the id, runs the rest of
/// the app with it as [`current`], and sets `X-Request-Id` on the answer
/// (also on the one an error returned instead of an answer becomes, later,
/// in the server).
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = RequestId::for_request(req.request());
    req.extensions_mut().insert(id.clone());
    // Sane ids are valid header values.
    let value = HeaderValue::from_str(id.as_str()).ok();
    let inner = id.in_scope(|| next.call(req));
    match CURRENT.scope(id, inner).await {
        Ok(mut res) => {
            if let Some(value) = value {
                res.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(res)
        }
        Err(mut err) => {
            if let Some(value) = value {
                err.add_response_mapper(move |mut res| {
                    res.headers_mut().insert(REQUEST_ID_HEADER, value.clone());
                    res
                });
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_refused() {
        for ok in ["a", "0190a5c2-7f3e-7b1a-9c4d-1e2f3a4b5c6d", "trace.42_x-Y"] {
            assert_eq!(RequestId::parse(ok.as_bytes()).unwrap().as_str(), ok);
        }
        let long = "a".repeat(MAX_LEN + 1);
        for bad in [
            "",
            "has space",
            "semi;colon",
            "new\nline",
            "quote\"",
            "é",
            "{json}",
            long.as_str(),
        ] {
            assert!(RequestId::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert!(RequestId::parse("a".repeat(MAX_LEN).as_bytes()).is_some());
    }

    #[test]
    fn generated_ids_are_sane_and_distinct() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        assert!(RequestId::parse(a.as_str().as_bytes()).is_some());
    }

    #[test]
    fn the_current_id_is_known_only_in_scope() {
        assert!(current().is_none());
        let id = RequestId::generate();
        assert_eq!(id.in_scope(current), Some(id.clone()));
        assert!(current().is_none());
    }
}
