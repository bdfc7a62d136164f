//! Protect routes of your own actix-web service with the access tokens of a
//! passkey-auth server, holding no secret: tokens are verified with the
//! public keys the server publishes at `/.well-known/jwks.json`.
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use passkey_auth_guard::{FullUser, JwksConfig, JwksVerifier, LoginUser, RecentUser};
//!
//! async fn balance(user: LoginUser) -> String {
//!     format!("balance of {}", user.0.username)
//! }
//!
//! // A passkey verified within the last 5 minutes.
//! async fn transfer(user: RecentUser<300>) -> String {
//!     format!("transfer by {}", user.0.username)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let verifier = web::Data::new(JwksVerifier::new(JwksConfig::new(
//!     "http://localhost:3000/.well-known/jwks.json",
//!     "passkey-auth",
//!     "passkey-auth",
//! )));
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(verifier.clone())
//!         .route("/balance", web::get().to(balance))
//!         .route("/transfers", web::post().to(transfer))
//! })
//! .bind("127.0.0.1:4000")?
//! .run()
//! .await
//! # }
//! ```
//!
//! Refusals are the auth server's own: 401 `missing_token`/`invalid_token`,
//! 403 `passkey_required`/`reauthentication_required` as
//! `application/problem+json`, with the RFC 6750 / RFC 9470
//! `WWW-Authenticate` challenges step-up-aware clients act on.
//!
//! Session revocation is not seen here: a token of a session ended at the
//! auth server stays valid until its `exp`, that is for at most the
//! server's `JWT_FULL_TTL_SECS` (default 900) for a full-level token and
//! `JWT_PASSWORD_TTL_SECS` (default 3600) for a password-level one, which
//! `LoginUser` admits. Shorten the token lifetimes there to shorten that
//! window.

pub mod claims;
pub mod keys;
pub mod rejection;
pub mod verifier;

#[cfg(feature = "jwks-http")]
pub mod extractors;
#[cfg(feature = "jwks-http")]
pub mod jwks;

pub use claims::{AuthLevel, Claims, Principal};
pub use keys::{JwkSet, KeyAlgorithm, KeySet, PublicJwk, VerifyingKey};
pub use rejection::{Problem, Rejection, PROBLEM_JSON};
pub use verifier::{key_id, TokenError, TokenVerifier};

#[cfg(feature = "jwks-http")]
pub use extractors::{bearer_token, FullUser, LoginUser, RecentUser};
#[cfg(feature = "jwks-http")]
pub use jwks::{JwksConfig, JwksError, JwksVerifier};
