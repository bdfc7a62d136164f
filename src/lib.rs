//! Password login with passkey (WebAuthn) step-up to a full-level JWT.
//!
//! Layers: [`controllers`] (HTTP) → [`services`] (rules) → [`repositories`]
//! (Diesel), with [`guards`] checking bearer tokens. [`startup`] wires them
//! from one [`config::Settings`].

pub mod cli;
pub mod clock;
pub mod config;
pub mod controllers;
pub mod db;
pub mod domain;
pub mod errors;
pub mod guards;
pub mod middleware;
pub mod openapi;
pub mod repositories;
pub mod schema;
pub mod services;
pub mod startup;
pub mod state;
pub mod stores;
pub mod telemetry;
pub mod threads;
