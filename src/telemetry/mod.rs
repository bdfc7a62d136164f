//! Prometheus metrics, served on their own listener (`METRICS_BIND_ADDR`,
//! see [`listener`]) so they are never public by accident.
//!
//! One [`Metrics`] per application, with its own recorder: nothing is
//! installed as the process-global `metrics` recorder, so several apps in
//! one process (the integration tests) each count only their own requests,
//! and nothing global changes under them. The handles whose labels are
//! known at start (outcomes, rate-limited actions) are registered once, so
//! the paths that count do no registry lookup; a disabled `Metrics`
//! (`METRICS_BIND_ADDR` unset) holds no-op handles and renders nothing.
//!
//! Gauges that describe state (database pool, challenge store, Redis,
//! hashing queue) are not kept up to date as things happen: a scrape reads
//! them from the live objects ([`listener`]).

pub mod listener;

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request latencies: 0.1 ms (a guarded GET takes tens of microseconds of
/// CPU) to a few seconds (a queued password hash).
pub const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One Argon2id job takes tens of milliseconds (OWASP parameters).
pub const HASH_DURATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0];

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const PASSWORD_HASH_DURATION: &str = "password_hash_duration_seconds";
pub const BATCHED_READS: &str = "db_batched_reads_total";
pub const READ_BATCHES: &str = "db_read_batches_total";

/// How an authentication attempt ended: a small fixed set, never anything
/// the client sent (label values are series, and they are read by people
/// who need not see user input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The password, passkey assertion, recovery code or refresh token was
    /// refused.
    InvalidCredentials,
    /// No live challenge for the ceremony.
    ChallengeExpired,
    /// An operator locked the account.
    Locked,
    RateLimited,
    /// Anything else the client got wrong (input, no passkeys, …).
    InvalidRequest,
    /// The database, Redis or a bounded store could not serve it (503).
    Unavailable,
    /// A server-side fault (500).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::InvalidCredentials,
        Outcome::ChallengeExpired,
        Outcome::Locked,
        Outcome::RateLimited,
        Outcome::InvalidRequest,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::InvalidCredentials => "invalid_credentials",
            Outcome::ChallengeExpired => "challenge_expired",
            Outcome::Locked => "locked",
            Outcome::RateLimited => "rate_limited",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }
}

/// One counter per [`Outcome`], registered at start.
#[derive(Clone)]
pub struct OutcomeCounters {
    counters: [Counter; Outcome::ALL.len()],
}

impl OutcomeCounters {
    pub fn record(&self, outcome: Outcome) {
        self.counters[outcome as usize].increment(1);
    }
}

/// One counter per value of a label known at start (e.g. the rate-limited
/// actions).
#[derive(Clone)]
pub struct LabeledCounters {
    counters: Arc<[(&'static str, Counter)]>,
}

impl Default for LabeledCounters {
    /// Counts nothing.
    fn default() -> Self {
        LabeledCounters {
            counters: Arc::from(Vec::new()),
        }
    }
}

impl LabeledCounters {
    /// Counts one under `value`; a value not registered at start is not
    /// counted (no series is created on a hot path).
    pub fn increment(&self, value: &str) {
        if let Some((_, counter)) = self.counters.iter().find(|(v, _)| *v == value) {
            counter.increment(1);
        }
    }
}

/// The state gauges a scrape sets from the live objects.
pub struct StateGauges {
    pub pool_in_use: Gauge,
    pub pool_idle: Gauge,
    pub pool_waiting: Gauge,
    pub hash_queue_depth: Gauge,
    pub challenge_entries: Gauge,
    pub challenge_bytes: Gauge,
}

struct Inner {
    /// `None` when metrics are off.
    recorder: Option<metrics_exporter_prometheus::PrometheusRecorder>,
    handle: Option<PrometheusHandle>,
}

/// The application's metrics: a recorder of its own and the handles the
/// services count with. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
    pub logins: OutcomeCounters,
    pub step_ups: OutcomeCounters,
    pub passkey_sign_ins: OutcomeCounters,
    pub recovery_uses: OutcomeCounters,
    pub refreshes: OutcomeCounters,
    pub password_hash_duration: Histogram,
    pub state: Arc<StateGauges>,
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

impl Metrics {
    /// Metrics that count and render (`METRICS_BIND_ADDR` set).
    pub fn enabled() -> Self {
        Self::with_recorder(Some(prometheus_recorder()))
    }

    /// No-op handles: counting costs next to nothing, nothing renders.
    pub fn disabled() -> Self {
        Self::with_recorder(None)
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.recorder.is_some()
    }

    fn with_recorder(recorder: Option<metrics_exporter_prometheus::PrometheusRecorder>) -> Self {
        let handle = recorder.as_ref().map(|r| r.handle());
        let inner = Arc::new(Inner { recorder, handle });
        // The recorder keeps one description per name, whatever its kind.
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            if let Some(recorder) = &inner.recorder {
                recorder.describe_counter(name.into(), unit, help.into());
            }
        };
        describe(
            HTTP_REQUESTS,
            None,
            "HTTP answers by route template, method and status class.",
        );
        describe(
            HTTP_DURATION,
            Some(Unit::Seconds),
            "Time to answer an HTTP request.",
        );
        describe("auth_logins_total", None, "Password logins by outcome.");
        describe("auth_step_ups_total", None, "Passkey step-ups by outcome.");
        describe(
            "auth_passkey_sign_ins_total",
            None,
            "Passkey sign-ins by outcome.",
        );
        describe(
            "auth_recovery_uses_total",
            None,
            "Recovery code uses by outcome.",
        );
        describe(
            "auth_refreshes_total",
            None,
            "Refresh token exchanges by outcome.",
        );
        describe(
            "rate_limited_total",
            None,
            "Requests refused by a rate limit or the login lockout, by action.",
        );
        describe(PASSWORD_HASH_DURATION, Some(Unit::Seconds), "Time one Argon2id job (password hash or verify, recovery code hash) takes on a hashing thread.");
        describe(
            "password_hash_queue_depth",
            None,
            "Argon2id jobs waiting for a hashing thread.",
        );
        describe(
            "db_pool_connections",
            None,
            "Database pool connections by state.",
        );
        describe(
            "db_pool_waiting",
            None,
            "Queries waiting for a database connection.",
        );
        describe(
            BATCHED_READS,
            None,
            "Hot reads by key (accounts, a user's passkeys) answered, by kind.",
        );
        describe(
            READ_BATCHES,
            None,
            "Trips to the database that answered those reads: reads that arrive while the pool is busy go together.",
        );
        describe(
            "challenge_store_entries",
            None,
            "Ceremony challenges held in process.",
        );
        describe(
            "challenge_store_bytes",
            Some(Unit::Bytes),
            "Bytes the in-process challenge store counts against CHALLENGE_STORE_MAX_BYTES.",
        );
        describe(
            "redis_up",
            None,
            "1 if Redis answered a PING at this scrape, else 0.",
        );

        let outcomes = |name: &'static str| OutcomeCounters {
            counters: Outcome::ALL.map(|o| counter(&inner, name, &[("outcome", o.as_str())])),
        };
        let gauge = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            register_gauge(&inner, name, labels)
        };
        Metrics {
            logins: outcomes("auth_logins_total"),
            step_ups: outcomes("auth_step_ups_total"),
            passkey_sign_ins: outcomes("auth_passkey_sign_ins_total"),
            recovery_uses: outcomes("auth_recovery_uses_total"),
            refreshes: outcomes("auth_refreshes_total"),
            password_hash_duration: histogram(&inner, PASSWORD_HASH_DURATION, Vec::new()),
            state: Arc::new(StateGauges {
                pool_in_use: gauge("db_pool_connections", &[("state", "in_use")]),
                pool_idle: gauge("db_pool_connections", &[("state", "idle")]),
                pool_waiting: gauge("db_pool_waiting", &[]),
                hash_queue_depth: gauge("password_hash_queue_depth", &[]),
                challenge_entries: gauge("challenge_store_entries", &[]),
                challenge_bytes: gauge("challenge_store_bytes", &[]),
            }),
            inner,
        }
    }

    /// `rate_limited_total{action}`, one counter per action named.
    pub fn rate_limited(&self, actions: &[&'static str]) -> LabeledCounters {
        LabeledCounters {
            counters: actions
                .iter()
                .map(|a| {
                    (
                        *a,
                        counter(&self.inner, "rate_limited_total", &[("action", a)]),
                    )
                })
                .collect(),
        }
    }

    /// The request counter and latency histogram of one (route template,
    /// method, status class); looked up once per series and cached by the
    /// request middleware.
    pub fn http_series(
        &self,
        route: &str,
        method: &'static str,
        class: &'static str,
    ) -> HttpSeries {
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("method", method),
            Label::new("status_class", class),
        ];
        HttpSeries {
            requests: match &self.inner.recorder {
                Some(r) => {
                    r.register_counter(&Key::from_parts(HTTP_REQUESTS, labels.clone()), &metadata())
                }
                None => Counter::noop(),
            },
            duration: histogram(&self.inner, HTTP_DURATION, labels),
        }
    }

    /// `db_batched_reads_total{read}` and `db_read_batches_total{read}`,
    /// set from the pool's counts at a scrape: how many reads of that kind
    /// were answered, in how many trips to the database.
    pub fn batched_reads(&self, read: &'static str, reads: u64, batches: u64) {
        counter(&self.inner, BATCHED_READS, &[("read", read)]).absolute(reads);
        counter(&self.inner, READ_BATCHES, &[("read", read)]).absolute(batches);
    }

    /// `redis_up`: registered by the first scrape of an app with Redis, so
    /// that an app without Redis shows no such series (rather than a 0
    /// that would read as an outage).
    pub fn redis_up(&self) -> Gauge {
        register_gauge(&self.inner, "redis_up", &[])
    }

    /// The text exposition format; `None` when metrics are off.
    pub fn render(&self) -> Option<String> {
        self.inner.handle.as_ref().map(PrometheusHandle::render)
    }

    /// Runs [`Metrics::run_upkeep`] every `period`, for as long as the
    /// runtime does.
    pub async fn run_upkeep_every(self, period: std::time::Duration) {
        let mut every = actix_web::rt::time::interval(period);
        loop {
            every.tick().await;
            self.run_upkeep();
        }
    }

    /// Drains histogram samples into their buckets. A recorder that is not
    /// installed globally runs no upkeep of its own, and between scrapes
    /// (or with no scraper at all) samples would pile up in memory.
    pub fn run_upkeep(&self) {
        if let Some(handle) = &self.inner.handle {
            handle.run_upkeep();
        }
    }
}

/// The counter and histogram of one HTTP series.
#[derive(Clone)]
pub struct HttpSeries {
    pub requests: Counter,
    pub duration: Histogram,
}

/// A recorder of its own (not installed globally), with histogram buckets
/// (not summaries) for the durations.
fn prometheus_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_DURATION_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(PASSWORD_HASH_DURATION.into()),
                HASH_DURATION_BUCKETS,
            )
        })
        // The bucket lists are constants, non-empty: this cannot fail.
        .expect("valid histogram buckets")
        .build_recorder()
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect::<Vec<_>>(),
    )
}

fn counter(inner: &Inner, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
    match &inner.recorder {
        Some(r) => r.register_counter(&key(name, labels), &metadata()),
        None => Counter::noop(),
    }
}

fn register_gauge(inner: &Inner, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
    match &inner.recorder {
        Some(r) => r.register_gauge(&key(name, labels), &metadata()),
        None => Gauge::noop(),
    }
}

fn histogram(inner: &Inner, name: &'static str, labels: Vec<Label>) -> Histogram {
    match &inner.recorder {
        Some(r) => r.register_histogram(&Key::from_parts(name, labels), &metadata()),
        None => Histogram::noop(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_index_their_own_counter() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
        }
    }

    #[test]
    fn disabled_metrics_render_nothing_and_count_for_free() {
        let metrics = Metrics::disabled();
        assert!(!metrics.is_enabled());
        metrics.logins.record(Outcome::Success);
        metrics.rate_limited(&["login"]).increment("login");
        assert_eq!(metrics.render(), None);
    }

    #[test]
    fn each_app_counts_in_its_own_recorder() {
        let (one, other) = (Metrics::enabled(), Metrics::enabled());
        one.logins.record(Outcome::Locked);
        one.logins.record(Outcome::Locked);
        let limited = one.rate_limited(&["login", "signup"]);
        limited.increment("signup");
        limited.increment("not registered");
        one.http_series("/auth/login", "POST", "4xx")
            .duration
            .record(0.003);
        let text = one.render().unwrap();
        for line in [
            r#"auth_logins_total{outcome="locked"} 2"#,
            r#"auth_logins_total{outcome="success"} 0"#,
            r#"rate_limited_total{action="signup"} 1"#,
            r#"rate_limited_total{action="login"} 0"#,
            r#"http_request_duration_seconds_bucket{route="/auth/login",method="POST",status_class="4xx",le="0.0025"} 0"#,
            r#"http_request_duration_seconds_bucket{route="/auth/login",method="POST",status_class="4xx",le="0.005"} 1"#,
            "# TYPE password_hash_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
        assert!(!text.contains("not registered"));
        let other = other.render().unwrap();
        assert!(
            other.contains(r#"auth_logins_total{outcome="locked"} 0"#),
            "{other}"
        );
    }
}
