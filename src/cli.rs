//! The command line: `passkey-auth` (or `passkey-auth serve`) runs the
//! server; the other commands are the operator's, on the database the
//! configuration names: `keys list|rotate` (signing keys), `migrate`,
//! `check-config`, and `user show|end-sessions|reset-passkeys|lock|unlock`.
//! Every command reads the same configuration as the server.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;
use webauthn_rs::prelude::{Url, WebauthnBuilder};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::db::{connect_and_migrate_on_demand, migrate, query_pool};
use crate::repositories::{
    Database, EventRepository, PasskeyRepository, RecoveryCodeRepository, SessionRepository,
    UserRepository,
};
use crate::services::audit::Audit;
use crate::services::operator::{operator_client, AccountReport, Operator, OperatorError};
use crate::services::sessions::{SessionPolicy, SessionService};
use crate::services::signing::{KeySummary, SigningKeys};
use crate::startup::{signing_keys, StartupError};
use crate::stores::redis::Redis;
use crate::stores::sessions::{EndedSessions, MemoryEndedSessions, RedisEndedSessions};

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
    /// Apply the pending database migrations and exit (the server also
    /// applies them at start).
    Migrate,
    /// Print the effective configuration, one NAME=value a line with
    /// secrets masked, and exit: 0 if it is valid, 2 (naming the variable)
    /// if not, as the server would.
    CheckConfig,
    /// Look after one account (NAME in any case).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// The account, its passkeys (no key material), recovery codes left,
    /// live sessions and latest audit events.
    Show {
        name: String,
        /// How many of the latest audit events to show.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
        events: u32,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// End every session of the account, on every node: its refresh tokens
    /// stop working and its access tokens are refused.
    EndSessions {
        name: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Delete the account's passkeys and recovery codes (one transaction)
    /// and end its sessions, so that the user enrols a new passkey after a
    /// password login.
    ResetPasskeys {
        name: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Lock the account and end its sessions: no login, passkey sign-in or
    /// refresh until it is unlocked.
    Lock {
        name: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Unlock the account.
    Unlock {
        name: String,
        #[command(flatten)]
        reason: Reason,
    },
}

/// Why, for the audit event (the user sees it in their events).
#[derive(Debug, Clone, Args)]
pub struct Reason {
    /// A short reason recorded with the event; the user sees it.
    #[arg(long, value_parser = parse_reason)]
    reason: Option<String>,
}

fn parse_reason(raw: &str) -> Result<String, String> {
    let reason = raw.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err("1 to 200 characters, no control characters".into());
    }
    Ok(reason.to_owned())
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
    /// A configuration the server would refuse (exit code 2).
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Operator(#[from] OperatorError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// 2 for a configuration the server would refuse (as the server exits),
    /// 1 for everything else (an unknown user, an unreachable database).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// The exit code of a command's result; an error is printed first.
pub fn exit_code(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            err.exit_code()
        }
    }
}

/// The configured database, migrated first, with a small pool that opens
/// connections only on demand (see [`connect_and_migrate_on_demand`]).
async fn open_database(settings: &Settings) -> Result<Database, CliError> {
    let url = settings.database_url.clone();
    let (size, timeout) = (
        settings.database_pool_size.min(2),
        settings.database_pool_timeout,
    );
    let threads = query_pool(&url, size).map_err(|e| StartupError::Task(e.to_string()))?;
    let pool = actix_web::rt::task::spawn_blocking(move || {
        connect_and_migrate_on_demand(&url, size, timeout)
    })
    .await
    .map_err(|e| StartupError::Task(e.to_string()))?
    .map_err(StartupError::from)?;
    Ok(Database::new(pool, threads))
}

/// The signing keys of the configured database (migrated first).
async fn open_keys(settings: &Settings) -> Result<SigningKeys, CliError> {
    let db = open_database(settings).await?;
    Ok(signing_keys(settings, &db, Arc::new(SystemClock)).await?)
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

/// `migrate`: applies the pending migrations and says which (or that none
/// was pending).
pub async fn run_migrate(settings: &Settings, out: &mut dyn Write) -> Result<(), CliError> {
    let url = settings.database_url.clone();
    let applied = actix_web::rt::task::spawn_blocking(move || migrate(&url))
        .await
        .map_err(|e| StartupError::Task(e.to_string()))?
        .map_err(StartupError::from)?;
    // Versions by their directory names, e.g. 2026-12-01-000008_add_users_locked_at.
    let known: Vec<(String, String)> =
        diesel::migration::MigrationSource::<diesel::sqlite::Sqlite>::migrations(
            &crate::db::MIGRATIONS,
        )
        .unwrap_or_default()
        .iter()
        .map(|m| (m.name().version().to_string(), m.name().to_string()))
        .collect();
    let name_of = |version: &String| {
        known
            .iter()
            .find(|(v, _)| v == version)
            .map_or_else(|| version.clone(), |(_, name)| name.clone())
    };
    let database = settings.database_url.redacted();
    if applied.is_empty() {
        writeln!(
            out,
            "nothing to apply: {database} has all {} migrations of this build",
            known.len()
        )?;
    } else {
        for version in &applied {
            writeln!(out, "applied {}", name_of(version))?;
        }
        writeln!(
            out,
            "{database} now has all {} migrations of this build ({} applied)",
            known.len(),
            applied.len()
        )?;
    }
    Ok(())
}

/// One line of `check-config`.
struct Entry {
    name: &'static str,
    value: String,
    /// Said when the variable is unset, after `default`.
    default_note: Option<&'static str>,
    /// Said whether or not it is set.
    note: Option<String>,
}

fn entry(name: &'static str, value: impl ToString) -> Entry {
    Entry {
        name,
        value: value.to_string(),
        default_note: None,
        note: None,
    }
}

/// Secrets shown as whether they are set.
const HIDDEN: &str = "(set, hidden)";

/// A URL with its secrets masked (see [`crate::config::mask_url`]); an
/// unparsable one is hidden whole.
fn mask_url(raw: &str) -> String {
    crate::config::mask_url(raw).unwrap_or_else(|| HIDDEN.into())
}

/// Every variable the server reads, with the value it takes (parsed, so
/// normalised) and whether it is the default. `is_set` tells which
/// variables the environment (or `.env`) sets.
fn config_entries(settings: &Settings, is_set: &dyn Fn(&str) -> bool) -> Vec<Entry> {
    let secs = |d: std::time::Duration| d.as_secs();
    let with_default = |mut e: Entry, note: &'static str| {
        e.default_note = Some(note);
        e
    };
    let with_note = |mut e: Entry, note: String| {
        e.note = Some(note);
        e
    };
    let list = |items: Vec<String>| items.join(",");
    let origin = |url: &Url| {
        if url.path() == "/" && url.query().is_none() {
            url.origin().ascii_serialization()
        } else {
            url.to_string()
        }
    };
    let redis_unused = "unused: REDIS_URL is unset".to_owned();
    let redis = settings.redis.as_ref();
    let raw = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let database = match &settings.database_url {
        crate::config::DatabaseUrl::Sqlite(_) => settings.database_url.redacted(),
        crate::config::DatabaseUrl::Postgres(url) => mask_url(url),
    };
    vec![
        entry("BIND_ADDR", &settings.bind_addr),
        match settings.metrics_bind_addr {
            Some(addr) => entry("METRICS_BIND_ADDR", addr),
            None => with_default(entry("METRICS_BIND_ADDR", ""), "no metrics listener"),
        },
        with_default(entry("DATABASE_URL", database), "SQLite"),
        entry("DATABASE_POOL_SIZE", settings.database_pool_size),
        entry(
            "DATABASE_POOL_TIMEOUT_MS",
            settings.database_pool_timeout.as_millis(),
        ),
        entry("SIGNING_KEY_ALGORITHM", settings.signing_algorithm),
        match settings.signing_key_encryption {
            Some(_) => with_note(
                entry("SIGNING_KEY_ENCRYPTION_KEY", HIDDEN),
                "private signing keys sealed at rest".into(),
            ),
            None => with_default(
                entry("SIGNING_KEY_ENCRYPTION_KEY", ""),
                "private signing keys stored plain",
            ),
        },
        entry(
            "KEY_ACTIVATION_DELAY_SECS",
            secs(settings.key_activation_delay),
        ),
        entry("KEY_POLL_SECS", secs(settings.key_poll_interval)),
        if settings.jwt_secret_set {
            with_note(
                entry("JWT_SECRET", HIDDEN),
                "no longer used: tokens are signed with the keys in the database".into(),
            )
        } else {
            with_default(entry("JWT_SECRET", ""), "not used")
        },
        entry("JWT_ISSUER", &settings.jwt_issuer),
        entry("JWT_AUDIENCE", &settings.jwt_audience),
        entry("JWT_PASSWORD_TTL_SECS", secs(settings.password_token_ttl)),
        entry("JWT_FULL_TTL_SECS", secs(settings.full_token_ttl)),
        entry("STEP_UP_MAX_AGE_SECS", secs(settings.step_up_max_age)),
        entry("REFRESH_TTL_SECS", secs(settings.refresh_ttl)),
        entry("SESSION_MAX_AGE_SECS", secs(settings.session_max_age)),
        entry("RP_ID", &settings.rp_id),
        entry("RP_ORIGIN", origin(&settings.rp_origin)),
        entry("RP_NAME", &settings.rp_name),
        entry("CHALLENGE_TTL_SECS", secs(settings.challenge_ttl)),
        entry("CHALLENGE_CACHE_CAPACITY", settings.challenge_capacity),
        entry(
            "CHALLENGE_STORE_MAX_BYTES",
            settings.challenge_store_max_bytes,
        ),
        entry(
            "PASSKEY_SIGN_IN",
            if settings.passkey_sign_in {
                "on"
            } else {
                "off"
            },
        ),
        with_default(
            entry("CORS_ORIGINS", list(settings.cors_origins.clone())),
            "CORS off",
        ),
        with_default(
            entry(
                "TRUSTED_PROXIES",
                list(
                    settings
                        .trusted_proxies
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                ),
            ),
            "no proxy believed",
        ),
        entry(
            "RATE_LIMIT_IP_PER_MINUTE",
            settings.ip_rate_limit.per_minute,
        ),
        entry("RATE_LIMIT_IP_BURST", settings.ip_rate_limit.burst),
        entry(
            "RATE_LIMIT_ACCOUNT_PER_MINUTE",
            settings.account_rate_limit.per_minute,
        ),
        entry(
            "RATE_LIMIT_ACCOUNT_BURST",
            settings.account_rate_limit.burst,
        ),
        entry("LOGIN_LOCKOUT_THRESHOLD", settings.login_lockout.threshold),
        entry("LOGIN_LOCKOUT_BASE_SECS", secs(settings.login_lockout.base)),
        entry("LOGIN_LOCKOUT_MAX_SECS", secs(settings.login_lockout.max)),
        match redis {
            Some(r) => entry("REDIS_URL", mask_url(r.url.expose_secret())),
            None => with_default(entry("REDIS_URL", ""), "state kept in this process"),
        },
        match redis {
            Some(r) => entry("REDIS_KEY_PREFIX", &r.key_prefix),
            None => with_note(
                entry(
                    "REDIS_KEY_PREFIX",
                    raw("REDIS_KEY_PREFIX").unwrap_or_else(|| "passkey-auth:".into()),
                ),
                redis_unused.clone(),
            ),
        },
        match redis {
            Some(r) => entry("REDIS_TIMEOUT_MS", r.timeout.as_millis()),
            None => with_note(
                entry(
                    "REDIS_TIMEOUT_MS",
                    raw("REDIS_TIMEOUT_MS").unwrap_or_else(|| "1000".into()),
                ),
                redis_unused,
            ),
        },
        entry("RUST_LOG", raw("RUST_LOG").unwrap_or_else(|| "info".into())),
        entry(
            "LOG_FORMAT",
            match settings.log_format {
                crate::config::LogFormat::Text => "text",
                crate::config::LogFormat::Json => "json",
            },
        ),
    ]
    .into_iter()
    .map(|mut e| {
        if !is_set(e.name) {
            let default = match e.default_note {
                Some(note) => format!("default: {note}"),
                None => "default".to_owned(),
            };
            e.note = Some(match e.note {
                Some(note) => format!("{default}; {note}"),
                None => default,
            });
        }
        e
    })
    .collect()
}

/// Checks what the server checks beyond parsing, before it binds: the
/// WebAuthn relying party (RP_ID, RP_ORIGIN, RP_NAME).
fn check_relying_party(settings: &Settings) -> Result<(), CliError> {
    WebauthnBuilder::new(&settings.rp_id, &settings.rp_origin)
        .and_then(|b| {
            b.rp_name(&settings.rp_name)
                .timeout(settings.challenge_ttl)
                .build()
        })
        .map(drop)
        .map_err(|e| CliError::Config(format!("RP_ID / RP_ORIGIN: {e}")))
}

/// `check-config`: the effective configuration, one `NAME=value` a line
/// (secrets masked; `# default` marks what the environment leaves unset).
/// The settings were parsed already (an invalid value exits 2 before any
/// command runs); this also checks the relying party.
pub fn run_check_config(
    settings: &Settings,
    is_set: &dyn Fn(&str) -> bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    check_relying_party(settings)?;
    let entries = config_entries(settings, is_set);
    let width = entries
        .iter()
        .map(|e| e.name.len() + 1 + e.value.len())
        .filter(|w| *w <= 48)
        .max()
        .unwrap_or(0);
    for e in &entries {
        let line = format!("{}={}", e.name, e.value);
        match &e.note {
            Some(note) => writeln!(out, "{line:<width$}  # {note}")?,
            None => writeln!(out, "{line}")?,
        }
    }
    Ok(())
}

/// The operator's services on the configured database (migrated first).
/// With `REDIS_URL`, ended sessions are published to every node at once;
/// if Redis cannot be reached now the nodes still read them from the
/// database within seconds, so the command goes on (and says so).
async fn open_operator(settings: &Settings) -> Result<Operator, CliError> {
    let db = open_database(settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit = Audit::new(EventRepository::new(db.clone()), clock.clone());
    let token_ttl = settings.password_token_ttl.max(settings.full_token_ttl);
    let ended: Arc<dyn EndedSessions> = match &settings.redis {
        None => Arc::new(MemoryEndedSessions::new(token_ttl)),
        Some(redis) => match Redis::connect(
            redis.url.expose_secret(),
            redis.key_prefix.clone(),
            redis.timeout,
        )
        .await
        {
            Ok(conn) => Arc::new(RedisEndedSessions::new(conn, token_ttl)),
            Err(err) => {
                eprintln!(
                    "warning: cannot reach REDIS_URL ({err}): nodes learn of ended sessions \
                     from the database instead, within about 5 s"
                );
                Arc::new(MemoryEndedSessions::new(token_ttl))
            }
        },
    };
    let sessions = SessionService {
        repo: SessionRepository::new(db.clone()),
        ended,
        audit: audit.clone(),
        clock: clock.clone(),
        policy: SessionPolicy {
            refresh_ttl: settings.refresh_ttl,
            max_age: settings.session_max_age,
            token_ttl,
        },
    };
    Ok(Operator {
        users: UserRepository::new(db.clone()),
        passkeys: PasskeyRepository::new(db.clone()),
        codes: RecoveryCodeRepository::new(db),
        sessions,
        audit,
        clock,
        client: operator_client(),
    })
}

/// Runs a `user` command, writing what it did to `out`.
pub async fn run_user(
    settings: &Settings,
    command: UserCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let operator = open_operator(settings).await?;
    let sessions = |n: usize| match n {
        1 => "1 session".to_owned(),
        n => format!("{n} sessions"),
    };
    match command {
        UserCommand::Show { name, events, json } => {
            let report = operator.show(&name, events).await?;
            if json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| CliError::Keys(e.to_string()))?;
                writeln!(out, "{text}")?;
            } else {
                write_report(out, &report)?;
            }
        }
        UserCommand::EndSessions { name, reason } => {
            let done = operator
                .end_sessions(&name, reason.reason.as_deref())
                .await?;
            writeln!(
                out,
                "{}: ended {}; their tokens are refused on every node",
                done.username,
                sessions(done.sessions)
            )?;
        }
        UserCommand::ResetPasskeys { name, reason } => {
            let done = operator
                .reset_passkeys(&name, reason.reason.as_deref())
                .await?;
            writeln!(
                out,
                "{}: deleted {} passkey{} and {} recovery code{}, ended {}; after a password \
                 login they can enrol a new first passkey",
                done.username,
                done.passkeys,
                if done.passkeys == 1 { "" } else { "s" },
                done.recovery_codes,
                if done.recovery_codes == 1 { "" } else { "s" },
                sessions(done.sessions)
            )?;
        }
        UserCommand::Lock { name, reason } => {
            let done = operator.lock(&name, reason.reason.as_deref()).await?;
            if done.changed {
                writeln!(
                    out,
                    "{}: locked, ended {}; login, passkey sign-in and refresh are refused until \
                     `user unlock`",
                    done.username,
                    sessions(done.sessions)
                )?;
            } else {
                writeln!(
                    out,
                    "{}: already locked; nothing changed (ended {})",
                    done.username,
                    sessions(done.sessions)
                )?;
            }
        }
        UserCommand::Unlock { name, reason } => {
            let done = operator.unlock(&name, reason.reason.as_deref()).await?;
            if done.changed {
                writeln!(out, "{}: unlocked; they can log in again", done.username)?;
            } else {
                writeln!(out, "{}: not locked; nothing changed", done.username)?;
            }
        }
    }
    Ok(())
}

fn when(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn when_opt(at: Option<DateTime<Utc>>) -> String {
    at.map(when).unwrap_or_else(|| "-".into())
}

fn write_report(out: &mut dyn Write, r: &AccountReport) -> std::io::Result<()> {
    writeln!(out, "username        {}", r.username)?;
    writeln!(out, "id              {}", r.id)?;
    writeln!(out, "display name    {}", r.display_name)?;
    writeln!(out, "created         {}", when(r.created_at))?;
    match r.locked_at {
        Some(at) => writeln!(out, "status          locked since {}", when(at))?,
        None => writeln!(out, "status          active")?,
    }
    writeln!(
        out,
        "recovery codes  {} remaining",
        r.recovery_codes_remaining
    )?;
    writeln!(out)?;
    writeln!(out, "passkeys: {}", r.passkeys.len())?;
    if !r.passkeys.is_empty() {
        writeln!(
            out,
            "  {:<36}  {:<20}  {:<20}  {:<20}  {:<12}  BACKED UP",
            "ID", "NICKNAME", "CREATED", "LAST USED", "DISCOVERABLE"
        )?;
        for p in &r.passkeys {
            let discoverable = match p.discoverable {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            };
            writeln!(
                out,
                "  {:<36}  {:<20}  {:<20}  {:<20}  {:<12}  {}",
                p.id,
                p.nickname,
                when(p.created_at),
                when_opt(p.last_used_at),
                discoverable,
                if p.backup_state { "yes" } else { "no" }
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "live sessions: {}", r.sessions.len())?;
    if !r.sessions.is_empty() {
        writeln!(
            out,
            "  {:<36}  {:<9}  {:<20}  {:<20}  {:<15}  USER AGENT",
            "ID", "METHODS", "STARTED", "LAST SEEN", "IP"
        )?;
        for s in &r.sessions {
            writeln!(
                out,
                "  {:<36}  {:<9}  {:<20}  {:<20}  {:<15}  {}",
                s.id,
                s.amr.join("+"),
                when(s.created_at),
                when(s.last_seen_at),
                s.client_ip,
                s.user_agent.as_deref().unwrap_or("-")
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "latest events (newest first): {}", r.events.len())?;
    if !r.events.is_empty() {
        writeln!(
            out,
            "  {:<20}  {:<28}  {:<7}  {:<15}  DETAIL",
            "TIME", "TYPE", "OUTCOME", "IP"
        )?;
        for e in &r.events {
            writeln!(
                out,
                "  {:<20}  {:<28}  {:<7}  {:<15}  {}",
                when(e.created_at),
                e.kind,
                e.outcome,
                e.ip_address,
                e.detail.as_deref().unwrap_or("-")
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    fn listing(pairs: &[(&str, &str)]) -> String {
        let s = settings(pairs);
        let set: BTreeSet<String> = pairs.iter().map(|(k, _)| k.to_string()).collect();
        let mut out = Vec::new();
        run_check_config(&s, &|name| set.contains(name), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every variable `config.rs` reads is listed by `check-config`: a new
    /// variable fails this test until it is added to [`config_entries`]
    /// (secrets masked).
    #[test]
    fn check_config_lists_every_variable_the_server_reads() {
        let source = include_str!("config.rs");
        let mut read: BTreeSet<&str> = BTreeSet::new();
        for piece in source.split('"').skip(1).step_by(2) {
            let is_name = piece.len() > 2
                && piece.contains('_')
                && piece
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_name {
                read.insert(piece);
            }
        }
        let listed: BTreeSet<&str> = config_entries(&settings(&[]), &|_| false)
            .iter()
            .map(|e| e.name)
            .collect();
        let missing: Vec<&&str> = read.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "check-config does not list {missing:?}: add them to config_entries in src/cli.rs"
        );
        assert!(read.len() > 30, "{read:?}");
    }

    #[test]
    fn check_config_masks_secrets_and_marks_defaults() {
        let kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let text = listing(&[
            (
                "DATABASE_URL",
                "postgres://auth:hunter2@db:5432/auth?sslmode=require&password=hunter3",
            ),
            ("REDIS_URL", "redis://:swordfish@redis:6379/0"),
            ("SIGNING_KEY_ENCRYPTION_KEY", kek),
            ("JWT_SECRET", "an-old-secret-that-signs-nothing"),
            ("RATE_LIMIT_IP_PER_MINUTE", "0"),
        ]);
        for secret in ["hunter2", "hunter3", "swordfish", kek, "an-old-secret"] {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
        assert!(
            text.contains(
                "DATABASE_URL=postgres://auth:***@db:5432/auth?sslmode=require&password=***"
            ),
            "{text}"
        );
        assert!(
            text.contains("REDIS_URL=redis://:***@redis:6379/0"),
            "{text}"
        );
        assert!(
            text.contains("SIGNING_KEY_ENCRYPTION_KEY=(set, hidden)"),
            "{text}"
        );
        assert!(text.contains("JWT_SECRET=(set, hidden)"), "{text}");
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .to_owned()
        };
        assert!(line("BIND_ADDR").contains("# default"));
        assert!(line("RATE_LIMIT_IP_PER_MINUTE").starts_with("RATE_LIMIT_IP_PER_MINUTE=0"));
        assert!(!line("RATE_LIMIT_IP_PER_MINUTE").contains("default"));
        assert!(line("REDIS_KEY_PREFIX").starts_with("REDIS_KEY_PREFIX=passkey-auth:"));
        let defaults = listing(&[]);
        assert!(
            defaults.contains("DATABASE_URL=sqlite:./data/auth.db"),
            "{defaults}"
        );
        assert!(
            defaults.contains("RP_ORIGIN=http://localhost:3000 "),
            "{defaults}"
        );
        assert!(
            defaults
                .lines()
                .any(|l| l.starts_with("REDIS_URL= ") && l.contains("default")),
            "{defaults}"
        );
    }

    #[test]
    fn urls_are_masked_or_hidden() {
        assert_eq!(mask_url("redis://redis:6379"), "redis://redis:6379");
        assert_eq!(
            mask_url("redis://user:pw@redis:6379"),
            "redis://user:***@redis:6379"
        );
        assert_eq!(mask_url("not a url"), HIDDEN);
    }

    #[test]
    fn reasons_are_short_single_lines() {
        assert_eq!(parse_reason("  ticket 42 ").unwrap(), "ticket 42");
        assert!(parse_reason("").is_err());
        assert!(parse_reason("two\nlines").is_err());
        assert!(parse_reason(&"x".repeat(201)).is_err());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["passkey-auth", "user", "lock", "Alice", "--reason", "x"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::User {
                command: UserCommand::Lock { .. }
            })
        ));
    }
}
