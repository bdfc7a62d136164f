//! Configuration, read once at start into one typed struct.
//!
//! Every value comes from the environment (and `.env`, loaded by `main`).
//! A value that does not parse stops the server with a message naming the
//! variable; nothing is re-read later.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use webauthn_rs::prelude::Url;

use crate::services::rate_limit::{LockoutPolicy, RateLimit};
use crate::services::signing::KeyEncryptionKey;
use passkey_auth_guard::KeyAlgorithm;

/// Where the data lives, chosen by `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://…`).
    Postgres(String),
}

impl DatabaseUrl {
    /// The default when `DATABASE_URL` is unset: `./data/auth.db`.
    pub fn default_sqlite() -> Self {
        DatabaseUrl::Sqlite(PathBuf::from("./data/auth.db"))
    }

    /// `postgres://` and `postgresql://` mean PostgreSQL; `sqlite://PATH`,
    /// `sqlite:PATH` or a bare path mean SQLite at PATH.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self::default_sqlite());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(raw.to_owned()));
        }
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or(raw);
        if path.is_empty() || path.contains("://") {
            return Err(
                "expected postgres://…, postgresql://…, sqlite://PATH, sqlite:PATH or a file path"
                    .into(),
            );
        }
        if path == ":memory:" {
            return Err("an in-memory SQLite database cannot be shared by the connection pool; give a file path".into());
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }

    /// A description safe to log (no password).
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
            DatabaseUrl::Postgres(url) => {
                mask_url(url).unwrap_or_else(|| "postgres://(unparseable)".into())
            }
        }
    }
}

/// A URL with its password, and any query parameter whose name contains
/// `password`, replaced by `***`; `None` when it does not parse.
pub fn mask_url(raw: &str) -> Option<String> {
    let mut url = Url::parse(raw).ok()?;
    if url.password().is_some() {
        url.set_password(Some("***")).ok()?;
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = k.to_ascii_lowercase().contains("password");
                let shown = if secret { "***".into() } else { v.into_owned() };
                (k.into_owned(), shown)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Some(url.to_string())
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// env_logger's human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `text` or `json` (any case); unset or empty means `text`.
    pub fn parse(raw: Option<&str>) -> Result<Self, ConfigError> {
        match raw.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(_) => Err(ConfigError {
                var: "LOG_FORMAT",
                message: format!("`{}` is not text or json", raw.unwrap_or_default()),
            }),
        }
    }

    /// `LOG_FORMAT` from the process environment: `main` needs it before
    /// the logger, and the logger before the other settings.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse(std::env::var("LOG_FORMAT").ok().as_deref())
    }
}

/// The whole server configuration.
#[derive(Clone)]
pub struct Settings {
    pub bind_addr: String,
    /// Where Prometheus metrics are served (`METRICS_BIND_ADDR`, an
    /// IP:PORT); `None` (the default) serves and records none.
    pub metrics_bind_addr: Option<SocketAddr>,
    pub database_url: DatabaseUrl,
    pub database_pool_size: u32,
    pub database_pool_timeout: Duration,
    /// Whether `JWT_SECRET` is set: it no longer signs anything, and the
    /// server says so at start.
    pub jwt_secret_set: bool,
    /// The algorithm of signing keys created from now on
    /// (`SIGNING_KEY_ALGORITHM`: `EdDSA`, the default, or `ES256`).
    pub signing_algorithm: KeyAlgorithm,
    /// Seals private signing keys at rest (`SIGNING_KEY_ENCRYPTION_KEY`).
    pub signing_key_encryption: Option<KeyEncryptionKey>,
    /// How long a rotated-in key is published before it signs
    /// (`KEY_ACTIVATION_DELAY_SECS`).
    pub key_activation_delay: Duration,
    /// How often nodes re-read the signing keys (`KEY_POLL_SECS`).
    pub key_poll_interval: Duration,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub password_token_ttl: Duration,
    pub full_token_ttl: Duration,
    /// How recent the verification behind a token must be for the routes
    /// that change how an account is protected (`STEP_UP_MAX_AGE_SECS`).
    pub step_up_max_age: Duration,
    /// A refresh token's life after its last use (`REFRESH_TTL_SECS`).
    pub refresh_ttl: Duration,
    /// No session lives longer (`SESSION_MAX_AGE_SECS`).
    pub session_max_age: Duration,
    pub rp_id: String,
    pub rp_origin: Url,
    pub rp_name: String,
    pub challenge_ttl: Duration,
    pub challenge_capacity: u64,
    /// The in-process challenge store's bound in bytes
    /// (`CHALLENGE_STORE_MAX_BYTES`).
    pub challenge_store_max_bytes: u64,
    /// Whether a passkey alone may sign in (`PASSKEY_SIGN_IN=on|off`).
    pub passkey_sign_in: bool,
    /// Origins allowed cross-origin access (CORS); empty means CORS off.
    pub cors_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub ip_rate_limit: RateLimit,
    pub account_rate_limit: RateLimit,
    pub login_lockout: LockoutPolicy,
    /// Shared state for several nodes; `None` keeps it in process.
    pub redis: Option<RedisSettings>,
    /// How log lines are written (`LOG_FORMAT`); the logger is set up from
    /// it in `main`, before the rest is read.
    pub log_format: LogFormat,
}

/// Where challenges and rate-limit counters live when several nodes share them.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: SecretString,
    pub key_prefix: String,
    pub timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("bind_addr", &self.bind_addr)
            .field("metrics_bind_addr", &self.metrics_bind_addr)
            .field("database_url", &self.database_url.redacted())
            .field("database_pool_size", &self.database_pool_size)
            .field("database_pool_timeout", &self.database_pool_timeout)
            .field("jwt_secret_set", &self.jwt_secret_set)
            .field("signing_algorithm", &self.signing_algorithm)
            .field(
                "signing_key_encryption",
                &self.signing_key_encryption.as_ref().map(|_| "[redacted]"),
            )
            .field("key_activation_delay", &self.key_activation_delay)
            .field("key_poll_interval", &self.key_poll_interval)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("password_token_ttl", &self.password_token_ttl)
            .field("full_token_ttl", &self.full_token_ttl)
            .field("step_up_max_age", &self.step_up_max_age)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("session_max_age", &self.session_max_age)
            .field("rp_id", &self.rp_id)
            .field("rp_origin", &self.rp_origin.as_str())
            .field("rp_name", &self.rp_name)
            .field("challenge_ttl", &self.challenge_ttl)
            .field("challenge_capacity", &self.challenge_capacity)
            .field("challenge_store_max_bytes", &self.challenge_store_max_bytes)
            .field("passkey_sign_in", &self.passkey_sign_in)
            .field("cors_origins", &self.cors_origins)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("ip_rate_limit", &self.ip_rate_limit)
            .field("account_rate_limit", &self.account_rate_limit)
            .field("login_lockout", &self.login_lockout)
            .field(
                "redis",
                &self
                    .redis
                    .as_ref()
                    .map(|r| (r.key_prefix.as_str(), r.timeout)),
            )
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// A variable that is set but unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can configure without
    /// touching the process environment. Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let database_url = match get("DATABASE_URL") {
            Some(raw) => DatabaseUrl::parse(&raw).map_err(|message| ConfigError {
                var: "DATABASE_URL",
                message,
            })?,
            None => DatabaseUrl::default_sqlite(),
        };

        let signing_algorithm = match get("SIGNING_KEY_ALGORITHM") {
            None => KeyAlgorithm::EdDSA,
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "eddsa" | "ed25519" => KeyAlgorithm::EdDSA,
                "es256" => KeyAlgorithm::ES256,
                _ => {
                    return Err(ConfigError {
                        var: "SIGNING_KEY_ALGORITHM",
                        message: format!("`{raw}` is not EdDSA or ES256"),
                    })
                }
            },
        };
        let signing_key_encryption = match get("SIGNING_KEY_ENCRYPTION_KEY") {
            None => None,
            Some(raw) => Some(
                KeyEncryptionKey::parse(&raw).map_err(|message| ConfigError {
                    var: "SIGNING_KEY_ENCRYPTION_KEY",
                    message,
                })?,
            ),
        };

        let rp_origin_raw = get("RP_ORIGIN").unwrap_or_else(|| "http://localhost:3000".into());
        let rp_origin = Url::parse(&rp_origin_raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| ConfigError {
                var: "RP_ORIGIN",
                message: format!("`{rp_origin_raw}` is not an http(s) origin"),
            })?;

        let rp_id = get("RP_ID").unwrap_or_else(|| "localhost".into());
        let origin_host = rp_origin.host_str().unwrap_or_default();
        if !(origin_host == rp_id || origin_host.ends_with(&format!(".{rp_id}"))) {
            return Err(ConfigError {
                var: "RP_ID",
                message: format!(
                    "`{rp_id}` must equal the host of RP_ORIGIN (`{origin_host}`) or be a parent domain of it"
                ),
            });
        }

        let bind_addr = get("BIND_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
        let valid_bind = bind_addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid_bind {
            return Err(ConfigError {
                var: "BIND_ADDR",
                message: format!("`{bind_addr}` is not HOST:PORT"),
            });
        }

        let metrics_bind_addr = match get("METRICS_BIND_ADDR") {
            None => None,
            Some(raw) => Some(raw.trim().parse::<SocketAddr>().map_err(|_| ConfigError {
                var: "METRICS_BIND_ADDR",
                message: format!("`{raw}` is not IP:PORT (e.g. 127.0.0.1:9464)"),
            })?),
        };

        let log_format = LogFormat::parse(get("LOG_FORMAT").as_deref())?;

        let settings = Settings {
            log_format,
            bind_addr,
            metrics_bind_addr,
            database_url,
            database_pool_size: parse_number(&get, "DATABASE_POOL_SIZE", 10, 1..=1000)?,
            database_pool_timeout: Duration::from_millis(parse_number(
                &get,
                "DATABASE_POOL_TIMEOUT_MS",
                1_500,
                50..=120_000,
            )?),
            jwt_secret_set: get("JWT_SECRET").is_some(),
            signing_algorithm,
            signing_key_encryption,
            key_activation_delay: Duration::from_secs(parse_number(
                &get,
                "KEY_ACTIVATION_DELAY_SECS",
                300,
                0..=7 * 86_400,
            )?),
            key_poll_interval: Duration::from_secs(parse_number(
                &get,
                "KEY_POLL_SECS",
                5,
                1..=3_600,
            )?),
            jwt_issuer: get("JWT_ISSUER").unwrap_or_else(|| "passkey-auth".into()),
            jwt_audience: get("JWT_AUDIENCE").unwrap_or_else(|| "passkey-auth".into()),
            password_token_ttl: Duration::from_secs(parse_number(
                &get,
                "JWT_PASSWORD_TTL_SECS",
                3_600,
                10..=86_400 * 30,
            )?),
            full_token_ttl: Duration::from_secs(parse_number(
                &get,
                "JWT_FULL_TTL_SECS",
                900,
                10..=86_400 * 30,
            )?),
            step_up_max_age: Duration::from_secs(parse_number(
                &get,
                "STEP_UP_MAX_AGE_SECS",
                300,
                1..=86_400,
            )?),
            refresh_ttl: Duration::from_secs(parse_number(
                &get,
                "REFRESH_TTL_SECS",
                14 * 86_400,
                60..=365 * 86_400,
            )?),
            session_max_age: Duration::from_secs(parse_number(
                &get,
                "SESSION_MAX_AGE_SECS",
                30 * 86_400,
                60..=365 * 86_400,
            )?),
            rp_name: get("RP_NAME").unwrap_or_else(|| "Passkey Auth".into()),
            rp_id,
            rp_origin,
            challenge_ttl: Duration::from_secs(parse_number(
                &get,
                "CHALLENGE_TTL_SECS",
                300,
                1..=3_600,
            )?),
            challenge_capacity: parse_number(
                &get,
                "CHALLENGE_CACHE_CAPACITY",
                100_000,
                1..=100_000_000,
            )?,
            challenge_store_max_bytes: parse_number(
                &get,
                "CHALLENGE_STORE_MAX_BYTES",
                64 * 1024 * 1024,
                64 * 1024..=1 << 40,
            )?,
            passkey_sign_in: match get("PASSKEY_SIGN_IN").map(|v| v.trim().to_ascii_lowercase()) {
                None => true,
                Some(v) if matches!(v.as_str(), "on" | "true" | "1" | "yes") => true,
                Some(v) if matches!(v.as_str(), "off" | "false" | "0" | "no") => false,
                Some(v) => {
                    return Err(ConfigError {
                        var: "PASSKEY_SIGN_IN",
                        message: format!("`{v}` is not on or off"),
                    })
                }
            },
            cors_origins: parse_origins(get("CORS_ORIGINS"))?,
            trusted_proxies: parse_networks(get("TRUSTED_PROXIES"))?,
            ip_rate_limit: RateLimit {
                per_minute: parse_number(&get, "RATE_LIMIT_IP_PER_MINUTE", 60, 0..=1_000_000)?,
                burst: parse_number(&get, "RATE_LIMIT_IP_BURST", 20, 1..=1_000_000)?,
            },
            account_rate_limit: RateLimit {
                per_minute: parse_number(&get, "RATE_LIMIT_ACCOUNT_PER_MINUTE", 20, 0..=1_000_000)?,
                burst: parse_number(&get, "RATE_LIMIT_ACCOUNT_BURST", 10, 1..=1_000_000)?,
            },
            redis: match get("REDIS_URL") {
                None => None,
                Some(url) => {
                    if !(url.starts_with("redis://")
                        || url.starts_with("rediss://")
                        || url.starts_with("redis+unix://"))
                    {
                        return Err(ConfigError {
                            var: "REDIS_URL",
                            message: "expected redis://…, rediss://… or redis+unix://…".into(),
                        });
                    }
                    Some(RedisSettings {
                        url: SecretString::from(url),
                        key_prefix: get("REDIS_KEY_PREFIX")
                            .unwrap_or_else(|| "passkey-auth:".into()),
                        timeout: Duration::from_millis(parse_number(
                            &get,
                            "REDIS_TIMEOUT_MS",
                            1_000,
                            10..=60_000,
                        )?),
                    })
                }
            },
            login_lockout: LockoutPolicy {
                threshold: parse_number(&get, "LOGIN_LOCKOUT_THRESHOLD", 5, 0..=1_000)?,
                base: Duration::from_secs(parse_number(
                    &get,
                    "LOGIN_LOCKOUT_BASE_SECS",
                    30,
                    1..=86_400,
                )?),
                max: Duration::from_secs(parse_number(
                    &get,
                    "LOGIN_LOCKOUT_MAX_SECS",
                    900,
                    1..=604_800,
                )?),
            },
        };
        Ok(settings)
    }
}

/// A comma-separated list of exact origins (`scheme://host[:port]`).
fn parse_origins(raw: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|origin| {
            let parsed = Url::parse(origin).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
            });
            match parsed {
                Some(url) => Ok(url.origin().ascii_serialization()),
                None => Err(ConfigError {
                    var: "CORS_ORIGINS",
                    message: format!("`{origin}` is not an origin like https://app.example.com"),
                }),
            }
        })
        .collect()
}

/// A comma-separated list of addresses or CIDR networks.
fn parse_networks(raw: Option<String>) -> Result<Vec<IpNet>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError {
                    var: "TRUSTED_PROXIES",
                    message: format!("`{item}` is not an IP address or CIDR network"),
                })
        })
        .collect()
}

fn parse_number<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = get(var) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(ConfigError {
            var,
            message: format!(
                "`{raw}` is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.bind_addr, "127.0.0.1:3000");
        assert_eq!(s.metrics_bind_addr, None);
        assert_eq!(
            settings(&[("METRICS_BIND_ADDR", " [::1]:9464 ")])
                .unwrap()
                .metrics_bind_addr,
            Some("[::1]:9464".parse().unwrap())
        );
        assert_eq!(s.database_url, DatabaseUrl::default_sqlite());
        assert_eq!(s.rp_id, "localhost");
        assert_eq!(s.rp_origin.as_str(), "http://localhost:3000/");
        assert_eq!(s.challenge_ttl, Duration::from_secs(300));
        assert_eq!(s.password_token_ttl, Duration::from_secs(3600));
        assert_eq!(s.full_token_ttl, Duration::from_secs(900));
        assert_eq!(s.step_up_max_age, Duration::from_secs(300));
        assert_eq!(s.refresh_ttl, Duration::from_secs(14 * 86_400));
        assert_eq!(s.session_max_age, Duration::from_secs(30 * 86_400));
        assert!(!s.jwt_secret_set);
        assert_eq!(s.signing_algorithm, KeyAlgorithm::EdDSA);
        assert!(s.signing_key_encryption.is_none());
        assert_eq!(s.key_activation_delay, Duration::from_secs(300));
        assert_eq!(s.key_poll_interval, Duration::from_secs(5));
        assert!(s.passkey_sign_in);
        assert_eq!(s.challenge_store_max_bytes, 64 * 1024 * 1024);
        assert!(
            !settings(&[("PASSKEY_SIGN_IN", "off")])
                .unwrap()
                .passkey_sign_in
        );
    }

    #[test]
    fn database_url_forms() {
        let pg = "postgres://u:p@h/db";
        assert_eq!(
            DatabaseUrl::parse(pg).unwrap(),
            DatabaseUrl::Postgres(pg.into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgresql://h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        for (raw, path) in [
            ("sqlite://data/x.db", "data/x.db"),
            ("sqlite:///tmp/x.db", "/tmp/x.db"),
            ("sqlite:x.db", "x.db"),
            ("/var/lib/auth.db", "/var/lib/auth.db"),
        ] {
            assert_eq!(
                DatabaseUrl::parse(raw).unwrap(),
                DatabaseUrl::Sqlite(PathBuf::from(path)),
                "{raw}"
            );
        }
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
    }

    #[test]
    fn redacted_url_hides_the_password() {
        let url = DatabaseUrl::Postgres("postgres://user:hunter2@db:5432/auth".into());
        assert!(!url.redacted().contains("hunter2"));
        let query =
            DatabaseUrl::Postgres("postgres://db/auth?sslmode=require&password=hunter3".into());
        assert_eq!(
            query.redacted(),
            "postgres://db/auth?sslmode=require&password=***"
        );
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("CHALLENGE_TTL_SECS", "soon"),
            ("CHALLENGE_TTL_SECS", "0"),
            ("JWT_FULL_TTL_SECS", "-5"),
            ("STEP_UP_MAX_AGE_SECS", "0"),
            ("REFRESH_TTL_SECS", "59"),
            ("SESSION_MAX_AGE_SECS", "two weeks"),
            ("DATABASE_POOL_SIZE", "0"),
            ("RP_ORIGIN", "not a url"),
            ("BIND_ADDR", "3000"),
            ("BIND_ADDR", "localhost:http"),
            ("METRICS_BIND_ADDR", "9464"),
            ("METRICS_BIND_ADDR", "localhost:9464"),
            ("RP_ORIGIN", "ftp://localhost"),
            ("SIGNING_KEY_ALGORITHM", "HS256"),
            ("SIGNING_KEY_ENCRYPTION_KEY", "too short"),
            ("KEY_ACTIVATION_DELAY_SECS", "soon"),
            ("KEY_POLL_SECS", "0"),
            ("PASSKEY_SIGN_IN", "maybe"),
            ("CHALLENGE_STORE_MAX_BYTES", "1"),
            ("DATABASE_URL", "mysql://x"),
            ("CORS_ORIGINS", "*"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUSTED_PROXIES", "proxy.local"),
            ("RATE_LIMIT_IP_BURST", "0"),
            ("LOGIN_LOCKOUT_MAX_SECS", "forever"),
            ("REDIS_URL", "localhost:6379"),
            ("CORS_ORIGINS", "https://ok.example, not-an-origin"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}");
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(settings(&[]).unwrap().log_format, LogFormat::Text);
        for (raw, format) in [
            ("text", LogFormat::Text),
            ("JSON", LogFormat::Json),
            (" json ", LogFormat::Json),
        ] {
            assert_eq!(settings(&[("LOG_FORMAT", raw)]).unwrap().log_format, format);
        }
        let err = settings(&[("LOG_FORMAT", "bogus")]).unwrap_err();
        assert_eq!(err.var, "LOG_FORMAT");
        assert!(err.to_string().contains("LOG_FORMAT") && err.to_string().contains("bogus"));
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
    }

    #[test]
    fn cors_origins_are_normalised() {
        let s = settings(&[(
            "CORS_ORIGINS",
            "https://app.example.com, http://localhost:8080/",
        )])
        .unwrap();
        assert_eq!(
            s.cors_origins,
            ["https://app.example.com", "http://localhost:8080"]
        );
        assert!(settings(&[]).unwrap().cors_origins.is_empty());
    }

    #[test]
    fn trusted_proxies_take_addresses_and_networks() {
        let s = settings(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ,::1")]).unwrap();
        let shown: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
    }

    #[test]
    fn rp_id_must_cover_the_origin() {
        let err = settings(&[("RP_ID", "example.com")]).unwrap_err();
        assert_eq!(err.var, "RP_ID");
        let ok = settings(&[
            ("RP_ID", "example.com"),
            ("RP_ORIGIN", "https://login.example.com"),
        ]);
        assert!(ok.is_ok());
        let evil = settings(&[
            ("RP_ID", "example.com"),
            ("RP_ORIGIN", "https://notexample.com"),
        ]);
        assert!(evil.is_err());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let s = settings(&[
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-secret"),
            ("SIGNING_KEY_ENCRYPTION_KEY", kek),
            ("SIGNING_KEY_ALGORITHM", "es256"),
        ])
        .unwrap();
        assert!(s.jwt_secret_set);
        assert_eq!(s.signing_algorithm, KeyAlgorithm::ES256);
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        assert!(!format!("{s:?}").contains(kek));
    }
}
