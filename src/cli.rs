//! The command line: `passkey-auth` (or `passkey-auth serve`) runs the
//! server; `passkey-auth keys list|rotate` manages the signing keys in the
//! database the configuration names. Every command reads the same
//! configuration as the server.

use std::io::Write;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::config::Settings;
use crate::db::connect_and_migrate;
use crate::repositories::Database;
use crate::services::signing::{KeySummary, SigningKeys};
use crate::startup::{signing_keys, StartupError};

#[derive(Debug, Parser)]
#[command(
    name = "passkey-auth",
    version,
    about = "Password login with passkey step-up to a full-level JWT",
    after_help = "Configuration comes from the environment (and .env); see the README."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (what `passkey-auth` alone does).
    Serve,
    /// Manage the keys access tokens are signed with.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show every signing key and what it is doing now.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Publish a new key. It signs after KEY_ACTIVATION_DELAY_SECS, when
    /// every verifier's JWKS cache has seen it; the current key then
    /// retires and stays published until its last token has expired.
    /// Running servers follow without a restart.
    Rotate,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("{0}")]
    Keys(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The signing keys of the configured database (migrated first).
async fn open_keys(settings: &Settings) -> Result<SigningKeys, CliError> {
    let url = settings.database_url.clone();
    let (size, timeout) = (
        settings.database_pool_size.min(2),
        settings.database_pool_timeout,
    );
    let pool =
        actix_web::rt::task::spawn_blocking(move || connect_and_migrate(&url, size, timeout))
            .await
            .map_err(|e| StartupError::Task(e.to_string()))?
            .map_err(StartupError::from)?;
    Ok(signing_keys(settings, &Database::new(pool), Arc::new(SystemClock)).await?)
}

/// Runs a `keys` command, writing what it did to `out`.
pub async fn run_keys(
    settings: &Settings,
    command: KeysCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let keys = open_keys(settings).await?;
    match command {
        KeysCommand::List { json } => {
            let list = keys.list();
            if json {
                let text = serde_json::to_string_pretty(&list)
                    .map_err(|e| CliError::Keys(e.to_string()))?;
                writeln!(out, "{text}")?;
            } else {
                write_table(out, &list)?;
            }
        }
        KeysCommand::Rotate => {
            let new = keys
                .rotate()
                .await
                .map_err(|e| CliError::Keys(format!("rotation failed: {e}")))?;
            writeln!(
                out,
                "published {} ({}); it signs from {} (in {} s)",
                new.kid,
                new.algorithm,
                new.activates_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                keys.policy().activation_delay.as_secs()
            )?;
            writeln!(out)?;
            write_table(out, &keys.list())?;
        }
    }
    Ok(())
}

fn write_table(out: &mut dyn Write, keys: &[KeySummary]) -> std::io::Result<()> {
    let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into())
    };
    writeln!(
        out,
        "{:<44} {:<6} {:<11} {:<21} {:<21} {:<21} AT REST",
        "KID", "ALG", "STATE", "SIGNS FROM", "RETIRED", "PUBLISHED UNTIL"
    )?;
    for key in keys {
        writeln!(
            out,
            "{:<44} {:<6} {:<11} {:<21} {:<21} {:<21} {}",
            key.kid,
            key.algorithm,
            key.state,
            when(Some(key.activates_at)),
            when(key.retired_at),
            when(key.published_until),
            if key.encrypted { "encrypted" } else { "plain" }
        )?;
    }
    Ok(())
}
