//! Integration tests: the real HTTP app, on SQLite always and on PostgreSQL
//! when `TEST_DATABASE_URL` is set.

#[path = "../common/mod.rs"]
mod common;
#[macro_use]
mod helpers;

mod abuse;
mod account;
mod auth;
mod batching;
mod details;
mod events;
mod fuzz;
mod headers;
mod keys;
mod metrics;
mod openapi;
mod passkeys;
mod proxy;
mod recovery;
mod redis;
mod request_id;
mod resilience;
mod resource_server;
mod routes;
mod sessions;
mod sign_in;
mod stepup;
mod tokens;
mod writes;
