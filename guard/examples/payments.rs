//! A tiny payments API guarded by passkey-auth tokens, verified with the
//! auth server's public keys (no secret here).
//!
//! - `GET /balance`: any logged-in user (`LoginUser`).
//! - `POST /transfers`: a passkey verified within 5 minutes (`RecentUser<300>`).
//! - `GET /health`: unguarded.
//!
//! ```sh
//! AUTH_JWKS_URL=http://localhost:3000/.well-known/jwks.json \
//!     cargo run -p passkey-auth-guard --example payments
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, App, HttpResponse, HttpServer};
use passkey_auth_guard::{JwksConfig, JwksVerifier, LoginUser, Problem, RecentUser};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Transfer {
    to: String,
    amount: u64,
}

/// Every account holds the same fake balance, in cents.
const BALANCE_CENTS: u64 = 125_000;

static NEXT_TRANSFER: AtomicU64 = AtomicU64::new(1);

async fn balance(user: LoginUser) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "username": user.0.username,
        "balance": BALANCE_CENTS,
        "currency": "EUR",
    }))
}

async fn transfer(user: RecentUser<300>, body: web::Json<Transfer>) -> HttpResponse {
    let id = NEXT_TRANSFER.fetch_add(1, Ordering::Relaxed);
    log::info!("{} sends {} to {}", user.0.username, body.amount, body.to);
    HttpResponse::Created().json(json!({
        "id": format!("tr_{id}"),
        "from": user.0.username,
        "to": body.to,
        "amount": body.amount,
    }))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The routes; the caller puts a `web::Data<JwksVerifier>` in the app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A body that is not `{"to": "...", "amount": N}`: 400 in the contract's format.
    let json = web::JsonConfig::default().error_handler(|err, _| {
        let problem = Problem::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body must be {{\"to\": string, \"amount\": unsigned integer}}: {err}"),
        );
        actix_web::error::InternalError::from_response(err, problem.respond(None)).into()
    });
    cfg.app_data(json)
        .route("/balance", web::get().to(balance))
        .route("/transfers", web::post().to(transfer))
        .route("/health", web::get().to(health));
}

#[allow(dead_code)] // unused when another crate's test includes this file
#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let url = env(
        "AUTH_JWKS_URL",
        "http://localhost:3000/.well-known/jwks.json",
    );
    let issuer = env("AUTH_ISSUER", "passkey-auth");
    let audience = env("AUTH_AUDIENCE", "passkey-auth");
    let bind = env("BIND_ADDR", "127.0.0.1:4000");

    let verifier = web::Data::new(JwksVerifier::new(JwksConfig::new(&url, issuer, audience)));
    // Keys before the first request; on failure they are fetched on first use.
    if let Err(err) = verifier.refresh().await {
        log::warn!("no keys from {url} yet: {err}");
    }
    log::info!("payments on http://{bind}, keys from {url}");
    HttpServer::new(move || App::new().app_data(verifier.clone()).configure(configure))
        .bind(&bind)?
        .run()
        .await
}
