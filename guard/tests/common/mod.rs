//! What the integration tests share: a JWKS server the test controls, and
//! tokens signed the way the auth server signs them.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signer as _;
use passkey_auth_guard::{JwksConfig, JwksVerifier, PublicJwk};
use serde_json::{json, Value};
use uuid::Uuid;

pub const ISSUER: &str = "passkey-auth";
pub const AUDIENCE: &str = "passkey-auth";
/// The tests' clock (seconds): every token is issued relative to it.
pub const NOW: i64 = 1_800_000_000;

/// An Ed25519 signing key of the auth server, named by its thumbprint.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    pub jwk: PublicJwk,
}

impl SigningKey {
    pub fn generate() -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let jwk = PublicJwk::ed25519(&key.verifying_key().to_bytes());
        SigningKey { key, jwk }
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// A compact JWS of `claims` with the server's header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.kid(), claims)
    }

    /// The same, naming `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// A token at `level` whose authentication happened `age` seconds
    /// before [`NOW`], issued now and valid for 15 minutes.
    pub fn token(&self, level: &str, age: i64) -> String {
        self.sign(&claims(level, NOW - age))
    }
}

/// The claims of a token at `level` authenticated at `auth_time`, issued
/// at [`NOW`] for 15 minutes.
pub fn claims(level: &str, auth_time: i64) -> Value {
    json!({
        "sub": Uuid::from_u128(rand::random()).to_string(),
        "username": "alice",
        "authLevel": level,
        "acr": level,
        "amr": if level == "full" { json!(["pwd", "hwk"]) } else { json!(["pwd"]) },
        "auth_time": auth_time,
        "iat": NOW,
        "exp": NOW + 900,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": Uuid::from_u128(rand::random()).to_string(),
        "sid": Uuid::from_u128(rand::random()).to_string(),
    })
}

/// What the JWKS server answers, and what it was asked.
struct Served {
    keys: Vec<PublicJwk>,
    /// Bumped with every change of the set; the `ETag` is `"<version>"`.
    version: u64,
    etags: bool,
    cache_control: Option<String>,
    /// Answer this status (with an empty body) instead of the set.
    failing: Option<u16>,
    requests: u64,
    not_modified: u64,
    if_none_match: Vec<Option<String>>,
}

/// A `/.well-known/jwks.json` the test can change, count and stop.
pub struct JwksServer {
    pub url: String,
    served: Arc<Mutex<Served>>,
    handle: ServerHandle,
}

async fn jwks(req: HttpRequest, served: web::Data<Mutex<Served>>) -> HttpResponse {
    let mut served = served.lock().unwrap();
    served.requests += 1;
    let asked = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    served.if_none_match.push(asked.clone());
    if let Some(status) = served.failing {
        return HttpResponse::build(StatusCode::from_u16(status).unwrap()).finish();
    }
    let etag = format!("\"{}\"", served.version);
    let unchanged = served.etags && asked.as_deref() == Some(etag.as_str());
    let mut response = if unchanged {
        served.not_modified += 1;
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    if served.etags {
        response.insert_header((ETAG, etag));
    }
    if let Some(cache_control) = &served.cache_control {
        response.insert_header((CACHE_CONTROL, cache_control.as_str()));
    }
    if unchanged {
        return response.finish();
    }
    response.json(json!({ "keys": served.keys }))
}

impl JwksServer {
    /// Serves `keys` with `Cache-Control: cache_control` and ETags.
    pub async fn start(keys: &[&SigningKey], cache_control: &str) -> Self {
        let served = Arc::new(Mutex::new(Served {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
            version: 1,
            etags: true,
            cache_control: Some(cache_control.to_owned()),
            failing: None,
            requests: 0,
            not_modified: 0,
            if_none_match: Vec::new(),
        }));
        let data = web::Data::from(served.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/.well-known/jwks.json", web::get().to(jwks))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        JwksServer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            served,
            handle,
        }
    }

    fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served.lock().unwrap()
    }

    /// Publishes another set (with a new `ETag`).
    pub fn set_keys(&self, keys: &[&SigningKey]) {
        let mut served = self.served();
        served.keys = keys.iter().map(|k| k.jwk.clone()).collect();
        served.version += 1;
    }

    pub fn set_cache_control(&self, cache_control: Option<&str>) {
        self.served().cache_control = cache_control.map(str::to_owned);
    }

    pub fn set_etags(&self, on: bool) {
        self.served().etags = on;
    }

    /// Answer `status` with no body from now on (`None`: the set again).
    pub fn set_failing(&self, status: Option<u16>) {
        self.served().failing = status;
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.served().requests
    }

    /// Requests answered 304 Not Modified.
    pub fn not_modified(&self) -> u64 {
        self.served().not_modified
    }

    /// The `If-None-Match` of every request, in order.
    pub fn if_none_match(&self) -> Vec<Option<String>> {
        self.served().if_none_match.clone()
    }

    /// Stops listening: the next fetch finds nobody there.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// A config for `url` with the given throttle interval.
pub fn config(url: &str, refetch_interval: Duration) -> JwksConfig {
    let mut config = JwksConfig::new(url, ISSUER, AUDIENCE);
    config.refetch_interval = refetch_interval;
    config.fetch_timeout = Duration::from_secs(2);
    config
}

/// A verifier for `url` on the tests' clock.
pub fn verifier(url: &str, refetch_interval: Duration) -> JwksVerifier {
    JwksVerifier::new(config(url, refetch_interval)).with_clock(|| NOW)
}

/// A JWKS address where nothing listens.
pub fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/.well-known/jwks.json")
}
