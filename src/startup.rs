//! Builds the whole application from [`Settings`]: used by `main` and by the
//! integration tests, so the tests drive the very app users run.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Compat, Condition, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpServer, ResponseError};
use passkey_auth_guard::TokenVerifier;
use secrecy::ExposeSecret;
use webauthn_rs::prelude::WebauthnBuilder;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::controllers;
use crate::db::{connect_and_migrate, query_pool, DbSetupError};
use crate::errors::{ApiError, PROBLEM_JSON};
use crate::middleware::logging::{access_log, access_log_enabled};
use crate::middleware::metrics::HttpMetrics;
use crate::middleware::{cors, request_id, security_headers};
use crate::repositories::{
    Database, EventRepository, PasskeyRepository, RecoveryCodeRepository, SessionRepository,
    SigningKeyRepository, UserRepository,
};
use crate::services::audit::Audit;
use crate::services::auth::{AuthParts, AuthService};
use crate::services::hashing::HashingPool;
use crate::services::health::HealthService;
use crate::services::passkeys::{DecoyVerifier, PasskeyService};
use crate::services::passwords::{PasswordHasher, Passwords};
use crate::services::rate_limit::RateLimiter;
use crate::services::recovery::{RecoveryCodeHasher, RecoveryCodes};
use crate::services::sessions::{SessionPolicy, SessionService};
use crate::services::signing::{KeyPolicy, SigningKeys};
use crate::services::step_up::StepUpPolicy;
use crate::services::tokens::TokenService;
use crate::state::AppState;
use crate::stores::challenges::{ChallengeStore, MokaChallengeStore, RedisChallengeStore};
use crate::stores::rate_limits::{MemoryRateLimitStore, RateLimitStore, RedisRateLimitStore};
use crate::stores::redis::Redis;
use crate::stores::sessions::{EndedSessions, MemoryEndedSessions, RedisEndedSessions};
use crate::telemetry::listener::{self, Sources};
use crate::telemetry::Metrics;
use tokio::sync::Notify;

/// What tests may change about the application.
pub struct BuildOptions {
    /// The clock services use.
    pub clock: Arc<dyn Clock>,
    /// Extra routes (tests mount failure-injecting handlers here).
    pub extra_routes: Option<fn(&mut web::ServiceConfig)>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            clock: Arc::new(SystemClock),
            extra_routes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("invalid WebAuthn relying party settings (RP_ID / RP_ORIGIN): {0}")]
    Webauthn(String),
    #[error("password hasher: {0}")]
    Hasher(String),
    #[error("cannot listen on BIND_ADDR={addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot listen on METRICS_BIND_ADDR={addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot reach REDIS_URL: {0}")]
    Redis(String),
    #[error("signing keys: {0}")]
    SigningKeys(String),
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// A bound, not yet running server.
pub struct Application {
    server: Server,
    address: SocketAddr,
    /// The metrics listener and its address, with `METRICS_BIND_ADDR`.
    metrics: Option<(Server, SocketAddr)>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, BuildOptions::default()).await
    }

    /// As [`Application::build`], with test hooks.
    pub async fn build_with(
        settings: Settings,
        options: BuildOptions,
    ) -> Result<Self, StartupError> {
        let (state, sources) = build_state(&settings, options.clock).await?;
        let metrics = state.metrics.clone();
        let request_metrics = metrics.clone();
        let state = web::Data::new(state);
        let extra_routes = options.extra_routes;
        // Same-origin requests from the demo page carry an Origin header
        // too, so when CORS is on the page's own origin must be allowed.
        let mut cors_origins = settings.cors_origins.clone();
        let own_origin = settings.rp_origin.origin().ascii_serialization();
        if !cors_origins.is_empty() && !cors_origins.contains(&own_origin) {
            cors_origins.push(own_origin);
        }
        let listener =
            TcpListener::bind(&settings.bind_addr).map_err(|source| StartupError::Bind {
                addr: settings.bind_addr.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind_addr.clone(),
            source,
        })?;
        // Bound before either server runs, so a taken port stops neither
        // half-started.
        let metrics_listener = match settings.metrics_bind_addr {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .and_then(|l| Ok((l.local_addr()?, l)))
                    .map_err(|source| StartupError::MetricsBind { addr, source })?,
            ),
        };
        let server = HttpServer::new(move || {
            let cors = cors(&cors_origins);
            // The first wrap is the innermost: CORS refusals must still pass
            // through the problem+json rewrite and get the security headers.
            // The request id wraps the rewrite (which replaces the answer,
            // and whose 5xx bodies name the id) and everything inside it, so
            // every answer of the app carries it; the access log, outermost,
            // reads it from the answer.
            App::new()
                .wrap(Condition::new(
                    cors.is_some(),
                    Compat::new(cors.unwrap_or_default()),
                ))
                .wrap(ErrorHandlers::new().default_handler(ensure_problem_json))
                .wrap(from_fn(request_id))
                .wrap(security_headers())
                .wrap(Condition::new(access_log_enabled(), access_log()))
                // Outermost: it times everything the app does for a request.
                .wrap(Condition::new(
                    request_metrics.is_enabled(),
                    HttpMetrics::new(request_metrics.clone()),
                ))
                .app_data(state.clone())
                .configure(controllers::configure)
                .configure(|cfg| {
                    if let Some(routes) = extra_routes {
                        routes(cfg);
                    }
                })
                .default_service(web::to(controllers::not_found))
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: settings.bind_addr.clone(),
            source,
        })?
        .run();
        let metrics = match metrics_listener {
            None => None,
            Some((addr, bound)) => {
                let server = listener::serve(bound, metrics.clone(), sources)
                    .map_err(|source| StartupError::MetricsBind { addr, source })?;
                log::info!("metrics on http://{addr}/metrics");
                actix_web::rt::spawn(metrics.run_upkeep_every(UPKEEP_PERIOD));
                Some((server, addr))
            }
        };
        Ok(Application {
            server,
            address,
            metrics,
        })
    }

    /// Where `GET /metrics` is served, when `METRICS_BIND_ADDR` is set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Runs the server (and the metrics listener, which stops with it).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Some((metrics, _)) = self.metrics else {
            return self.server.await;
        };
        let stop_metrics = metrics.handle();
        let main = async {
            let result = self.server.await;
            stop_metrics.stop(true).await;
            result
        };
        let (main, metrics) = futures_util::future::join(main, metrics).await;
        main.and(metrics)
    }
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// The state, and what the metrics listener reads its gauges from.
async fn build_state(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> Result<(AppState, Sources), StartupError> {
    let metrics = match settings.metrics_bind_addr {
        Some(_) => Metrics::enabled(),
        None => Metrics::disabled(),
    };
    let url = settings.database_url.clone();
    let (pool_size, pool_timeout) = (settings.database_pool_size, settings.database_pool_timeout);
    log::info!("database: {}", url.redacted());
    let threads = query_pool(&url, pool_size).map_err(|e| StartupError::Task(e.to_string()))?;
    let pool = actix_web::rt::task::spawn_blocking(move || {
        connect_and_migrate(&url, pool_size, pool_timeout)
    })
    .await
    .map_err(|e| StartupError::Task(e.to_string()))??;
    let db = Database::new(pool, threads);
    let users = UserRepository::new(db.clone());
    let passkeys = PasskeyRepository::new(db.clone());
    let audit = Audit::new(EventRepository::new(db.clone()), clock.clone()).with_metrics(&metrics);

    let hasher = actix_web::rt::task::spawn_blocking(PasswordHasher::owasp)
        .await
        .map_err(|e| StartupError::Task(e.to_string()))?
        .map_err(|e| StartupError::Hasher(e.to_string()))?;

    let keys = Arc::new(signing_keys(settings, &db, clock.clone()).await?);
    log::info!("signing keys: {}", keys.describe());
    actix_web::rt::spawn(keys.clone().run_background(settings.key_poll_interval));
    let tokens = Arc::new(TokenService::new(
        keys,
        settings.jwt_issuer.clone(),
        settings.jwt_audience.clone(),
        settings.password_token_ttl,
        settings.full_token_ttl,
    ));

    let webauthn = WebauthnBuilder::new(&settings.rp_id, &settings.rp_origin)
        .and_then(|b| {
            b.rp_name(&settings.rp_name)
                .timeout(settings.challenge_ttl)
                .build()
        })
        .map_err(|e| StartupError::Webauthn(e.to_string()))?;
    let stores = shared_state(settings, clock.clone(), tokens.longest_ttl()).await?;
    let (challenges, limits) = (stores.challenges, stores.limits);

    let limiter = RateLimiter {
        store: limits,
        lockout: settings.login_lockout,
        clock: clock.clone(),
    };
    let hashing = HashingPool::per_core()
        .map_err(|e| StartupError::Task(e.to_string()))?
        .timed(metrics.password_hash_duration.clone());
    let recovery = RecoveryCodes {
        hasher: RecoveryCodeHasher::new(hashing.clone()),
        repo: RecoveryCodeRepository::new(db.clone()),
        audit: audit.clone(),
        clock: clock.clone(),
    };
    let step_up = StepUpPolicy {
        max_age: settings.step_up_max_age,
        passkeys: passkeys.clone(),
        clock: clock.clone(),
    };
    let sessions = SessionService {
        repo: SessionRepository::new(db.clone()),
        ended: stores.ended,
        audit: audit.clone(),
        clock: clock.clone(),
        policy: SessionPolicy {
            refresh_ttl: settings.refresh_ttl,
            max_age: settings.session_max_age,
            token_ttl: tokens.longest_ttl(),
        },
    };
    // Endings published by other nodes, and the periodic re-read of the
    // database that catches what a node missed.
    let resync = Arc::new(Notify::new());
    if let Some(listener) = stores.ended_listener {
        actix_web::rt::spawn(listener.listen(resync.clone()));
    }
    actix_web::rt::spawn(sessions.clone().run_background(resync));

    let ceremonies = PasskeyService {
        webauthn: Arc::new(webauthn),
        users: users.clone(),
        passkeys: passkeys.clone(),
        challenges: challenges.clone(),
        tokens: tokens.clone(),
        clock: clock.clone(),
        challenge_ttl: settings.challenge_ttl,
        limiter: limiter.clone(),
        audit: audit.clone(),
        recovery: recovery.clone(),
        step_up_max_age: settings.step_up_max_age,
        decoy: Arc::new(DecoyVerifier::default()),
        metrics: metrics.clone(),
    };
    let sources = Sources {
        db: db.clone(),
        challenges: challenges.clone(),
        hashing: hashing.clone(),
        redis: settings.redis.is_some(),
    };
    let state = AppState {
        auth: AuthService::new(AuthParts {
            users,
            passwords: Passwords {
                hasher: Arc::new(hasher),
                pool: hashing,
            },
            tokens: tokens.clone(),
            limiter,
            audit,
            recovery,
            sessions: sessions.clone(),
            ceremonies: ceremonies.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
        }),
        passkeys: ceremonies,
        passkey_sign_in: settings.passkey_sign_in,
        health: HealthService { db, challenges },
        tokens,
        step_up,
        sessions,
        trusted_proxies: settings.trusted_proxies.clone(),
        clock,
        metrics,
    };
    Ok((state, sources))
}

/// The signing keys of `settings`, from the database (the first start
/// creates one).
pub async fn signing_keys(
    settings: &Settings,
    db: &Database,
    clock: Arc<dyn Clock>,
) -> Result<SigningKeys, StartupError> {
    if settings.jwt_secret_set {
        log::warn!(
            "JWT_SECRET is set but no longer used: access tokens are signed with the keys in the \
             database (see `passkey-auth keys list`) and verified with /.well-known/jwks.json"
        );
    }
    let policy = KeyPolicy {
        algorithm: settings.signing_algorithm,
        activation_delay: settings.key_activation_delay,
        token_ttl: settings.password_token_ttl.max(settings.full_token_ttl),
        encryption: settings.signing_key_encryption.clone(),
    };
    let verifier = TokenVerifier::new(&settings.jwt_issuer, &settings.jwt_audience);
    SigningKeys::start(
        SigningKeyRepository::new(db.clone()),
        policy,
        clock,
        verifier,
    )
    .await
    .map_err(|e| StartupError::SigningKeys(e.to_string()))
}

/// The stores: in Redis when `REDIS_URL` is set (shared by every node),
/// else in this process.
struct Stores {
    challenges: Arc<dyn ChallengeStore>,
    limits: Arc<dyn RateLimitStore>,
    ended: Arc<dyn EndedSessions>,
    /// With Redis: what must listen for other nodes' session endings.
    ended_listener: Option<Arc<RedisEndedSessions>>,
}

/// `token_ttl`: the longest access-token lifetime (how long an ended
/// session must be remembered).
async fn shared_state(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    token_ttl: std::time::Duration,
) -> Result<Stores, StartupError> {
    let Some(redis) = &settings.redis else {
        return Ok(Stores {
            challenges: Arc::new(MokaChallengeStore::new(
                settings.challenge_ttl,
                settings.challenge_capacity,
                settings.challenge_store_max_bytes,
            )),
            limits: Arc::new(MemoryRateLimitStore::new(
                settings.ip_rate_limit,
                settings.account_rate_limit,
                settings.login_lockout.tally_ttl(),
                clock,
            )),
            ended: Arc::new(MemoryEndedSessions::new(token_ttl)),
            ended_listener: None,
        });
    };
    let conn = Redis::connect(
        redis.url.expose_secret(),
        redis.key_prefix.clone(),
        redis.timeout,
    )
    .await
    .map_err(|e| StartupError::Redis(e.to_string()))?;
    log::info!(
        "challenges, rate limits and session endings in Redis (prefix {})",
        redis.key_prefix
    );
    let ended = Arc::new(RedisEndedSessions::new(conn.clone(), token_ttl));
    Ok(Stores {
        challenges: Arc::new(RedisChallengeStore::new(
            conn.clone(),
            settings.challenge_ttl,
        )),
        limits: Arc::new(RedisRateLimitStore::new(
            conn,
            settings.ip_rate_limit,
            settings.account_rate_limit,
            settings.login_lockout.tally_ttl(),
        )),
        ended: ended.clone(),
        ended_listener: Some(ended),
    })
}

/// Error answers produced by actix itself (a wrong method, an unparsable
/// request) get the contract's problem+json body too.
fn ensure_problem_json<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let already_problem = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if already_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let error = match res.status() {
        StatusCode::NOT_FOUND => ApiError::NotFound("route"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::SERVICE_UNAVAILABLE => ApiError::ServiceUnavailable,
        status if status.is_server_error() => {
            ApiError::internal(format!("unhandled {status} from the framework"))
        }
        // A client error from actix or a middleware (e.g. a refused CORS
        // preflight) carries a message meant for the client.
        _ => ApiError::InvalidRequest(
            res.response()
                .error()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "the request could not be processed".into()),
        ),
    };
    let (req, _) = res.into_parts();
    let res = ServiceResponse::new(req, error.error_response()).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}
