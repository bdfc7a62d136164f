//! [`JwksVerifier`]: verifies access tokens with the public keys the auth
//! server publishes at `/.well-known/jwks.json`, so a service checks tokens
//! without holding any secret.
//!
//! The set is fetched over HTTP on first use and kept for as long as the
//! answer's `Cache-Control: max-age` says (conditional requests with its
//! `ETag` after that). A token naming a `kid` the set does not hold makes
//! the verifier fetch again at once (a key was just rotated in), but at most
//! once per `refetch_interval`: a flood of made-up `kid`s costs the auth
//! server one request per interval, not one per token. When a fetch fails
//! the last good set stays in use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;

use crate::claims::Principal;
use crate::keys::KeySet;
use crate::rejection::Rejection;
use crate::verifier::{TokenError, TokenVerifier};

/// Largest JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// A `max-age` is believed up to this long.
const MAX_CACHE_AGE: Duration = Duration::from_secs(24 * 3600);

/// Where the keys are and what tokens must say.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// E.g. `https://auth.example.com/.well-known/jwks.json`.
    pub url: String,
    /// The auth server's `JWT_ISSUER`.
    pub issuer: String,
    /// The auth server's `JWT_AUDIENCE`.
    pub audience: String,
    /// Fetches for an unknown `kid` (and retries after a failure) happen at
    /// most this often. Default 5 s.
    pub refetch_interval: Duration,
    /// How long a set is kept when its answer names no `max-age`. Default 60 s.
    pub default_max_age: Duration,
    /// How long a fetch may take. Default 5 s.
    pub fetch_timeout: Duration,
}

impl JwksConfig {
    pub fn new(
        url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        JwksConfig {
            url: url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            refetch_interval: Duration::from_secs(5),
            default_max_age: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a fetch of the set failed.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the JWKS answer was {0}")]
    Status(StatusCode),
    #[error("the JWKS is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the JWKS answer is not a JWK Set")]
    NotAJwkSet,
}

/// The current set and until when it is fresh.
struct Snapshot {
    keys: Arc<KeySet>,
    fresh_until: Option<Instant>,
    /// Whether a set was ever fetched.
    loaded: bool,
}

/// What the fetcher remembers between fetches.
#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    etag: Option<String>,
}

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub struct JwksVerifier {
    config: JwksConfig,
    http: reqwest::Client,
    tokens: TokenVerifier,
    snapshot: RwLock<Snapshot>,
    fetch: tokio::sync::Mutex<FetchState>,
    fetches: AtomicU64,
    clock: Clock,
}

impl JwksVerifier {
    pub fn new(config: JwksConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .unwrap_or_default();
        JwksVerifier {
            tokens: TokenVerifier::new(&config.issuer, &config.audience),
            config,
            http,
            snapshot: RwLock::new(Snapshot {
                keys: Arc::new(KeySet::default()),
                fresh_until: None,
                loaded: false,
            }),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            fetches: AtomicU64::new(0),
            clock: Arc::new(system_now),
        }
    }

    /// Uses `clock` (seconds since the epoch) instead of the system clock
    /// for token expiry and freshness: for tests.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Now, as the verifier's clock tells it (seconds).
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// How many HTTP requests for the set were made.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The keys currently trusted.
    pub fn keys(&self) -> Arc<KeySet> {
        self.read().keys.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches the set now (conditionally, when an `ETag` is known),
    /// whatever the throttle says: for a service that wants the keys before
    /// its first request.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let mut state = self.fetch.lock().await;
        self.fetch_locked(&mut state).await
    }

    /// Fetches unless another fetch happened within `refetch_interval`
    /// (then the caller reads what that one brought).
    async fn refresh_throttled(&self) {
        let mut state = self.fetch.lock().await;
        let recent = state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.config.refetch_interval);
        if recent {
            return;
        }
        if let Err(err) = self.fetch_locked(&mut state).await {
            log::warn!("JWKS {}: {err}; keeping the last good set", self.config.url);
        }
    }

    async fn fetch_locked(&self, state: &mut FetchState) -> Result<(), JwksError> {
        state.last_attempt = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut request = self.http.get(&self.config.url);
        if let Some(etag) = &state.etag {
            request = request.header(IF_NONE_MATCH, etag.as_str());
        }
        let result = self.fetch_document(request, state).await;
        if result.is_err() {
            // Try again after the throttle interval, not on every request.
            let mut snapshot = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
            snapshot.fresh_until = Some(Instant::now() + self.config.refetch_interval);
        }
        result
    }

    async fn fetch_document(
        &self,
        request: reqwest::RequestBuilder,
        state: &mut FetchState,
    ) -> Result<(), JwksError> {
        let response = request.send().await?;
        let max_age = max_age(response.headers().get(CACHE_CONTROL))
            .unwrap_or(self.config.default_max_age)
            .max(self.config.refetch_interval);
        let fresh_until = Some(Instant::now() + max_age);
        if response.status() == StatusCode::NOT_MODIFIED {
            let mut snapshot = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
            if snapshot.loaded {
                snapshot.fresh_until = fresh_until;
                return Ok(());
            }
        }
        if response.status() != StatusCode::OK {
            return Err(JwksError::Status(response.status()));
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(JwksError::TooLarge);
        }
        let body = response.bytes().await?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(JwksError::TooLarge);
        }
        let keys = KeySet::parse(&body).map_err(|_| JwksError::NotAJwkSet)?;
        state.etag = etag;
        // A key that left the set takes its remembered tokens with it: the
        // verifier serves one only while its kid is trusted.
        let mut snapshot = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        *snapshot = Snapshot {
            keys: Arc::new(keys),
            fresh_until,
            loaded: true,
        };
        Ok(())
    }

    /// The caller a bearer token describes, or the contract's refusal.
    pub async fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        let stale = {
            let snapshot = self.read();
            snapshot
                .fresh_until
                .is_none_or(|until| Instant::now() >= until)
        };
        if stale {
            self.refresh_throttled().await;
        }
        match self.tokens.verify(&self.keys(), token, self.now()) {
            Ok(principal) => Ok(principal),
            Err(TokenError::UnknownKey) => {
                // A key may have been rotated in since the last fetch.
                self.refresh_throttled().await;
                if !self.read().loaded {
                    return Err(Rejection::KeysUnavailable);
                }
                self.tokens
                    .verify(&self.keys(), token, self.now())
                    .map_err(|_| Rejection::InvalidToken)
            }
            Err(_) => Err(Rejection::InvalidToken),
        }
    }
}

/// The `max-age` of a `Cache-Control` value (`no-cache`/`no-store` mean 0).
fn max_age(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let value = value?.to_str().ok()?;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            let secs: u64 = secs.trim_matches('"').parse().ok()?;
            return Some(Duration::from_secs(secs).min(MAX_CACHE_AGE));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reads_max_age_from_cache_control() {
        let read = |v: &str| max_age(Some(&HeaderValue::from_str(v).unwrap()));
        assert_eq!(read("public, max-age=120"), Some(Duration::from_secs(120)));
        assert_eq!(read("max-age=\"30\""), Some(Duration::from_secs(30)));
        assert_eq!(read("no-store"), Some(Duration::ZERO));
        assert_eq!(read("public"), None);
        assert_eq!(read("max-age=99999999"), Some(MAX_CACHE_AGE));
        assert_eq!(max_age(None), None);
    }
}
