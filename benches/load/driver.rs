//! The load generator: N concurrent workers, each with its own keep-alive
//! connection, each looping over one [`Operation`] (a request, or a whole
//! passkey ceremony), with latencies in an HdrHistogram.
//!
//! A run is either timed (warm-up, then a measured window: an operation
//! counts when it starts and ends inside the window) or counted (a fixed
//! number of operations shared by all workers, all of them measured).
//! Beside those closed loops, [`paced`] is an open-loop probe: a request at
//! a fixed rate, for the latency a client sees while other load runs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::http::{Conn, Response};

/// No single operation may take longer than this; it then counts as an error.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// What a worker does in a loop. `seq` numbers the operations of a run
/// across all workers (0, 1, 2, ...), so counted runs can spread work.
pub trait Operation: Send + 'static {
    fn run<'a>(
        &'a mut self,
        conn: &'a mut Conn,
        seq: u64,
    ) -> impl Future<Output = Result<(), String>> + Send + 'a;
}

/// The simplest operation: one pre-built request, any 2xx is a success.
pub struct FixedRequest(pub Arc<[u8]>);

impl Operation for FixedRequest {
    async fn run(&mut self, conn: &mut Conn, _seq: u64) -> Result<(), String> {
        expect_success(conn, &self.0, "request").await.map(drop)
    }
}

/// Sends `request` and turns a transport error or a non-2xx status into an error.
pub async fn expect_success(
    conn: &mut Conn,
    request: &[u8],
    what: &str,
) -> Result<Response, String> {
    let response = conn
        .send(request)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if response.is_success() {
        Ok(response)
    } else {
        Err(response.unexpected(what))
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Warm up, then measure for a fixed time.
    Timed { warmup: Duration, measure: Duration },
    /// Run exactly this many operations (all measured), giving up after `limit`.
    Count { total: u64, limit: Duration },
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub label: String,
    pub concurrency: usize,
    pub stop: Stop,
}

/// What one run measured.
pub struct LoadResult {
    pub label: String,
    pub concurrency: usize,
    /// Successful operations in the measured window.
    pub ok: u64,
    /// Failed operations (non-2xx, transport error, timeout) in the window.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Length of the measured window.
    pub window: Duration,
    /// Latency of successful operations, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Every operation finished, warm-up included (for per-operation costs).
    pub completed: u64,
    /// CPU time the server used during the whole run, when measured.
    pub server_cpu: Option<Duration>,
}

impl LoadResult {
    /// A result with nothing counted yet.
    fn empty(label: String, concurrency: usize) -> LoadResult {
        LoadResult {
            label,
            concurrency,
            ok: 0,
            errors: 0,
            first_error: None,
            window: Duration::ZERO,
            latency_us: histogram(),
            completed: 0,
            server_cpu: None,
        }
    }

    /// Adds one worker's counts; the first error seen is kept.
    fn absorb(&mut self, tally: Tally) {
        self.completed += tally.completed;
        self.ok += tally.ok;
        self.errors += tally.errors;
        self.first_error = self.first_error.take().or(tally.first_error);
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&tally.latency_us);
    }

    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn p50_ms(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    pub fn p99_ms(&self) -> f64 {
        self.quantile_ms(0.99)
    }

    /// Server CPU time per operation (warm-up included on both sides), µs.
    pub fn server_us_per_op(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.completed > 0).then(|| cpu.as_secs_f64() * 1e6 / self.completed as f64)
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// Adds another run of the same operation (rounds of one measurement).
    pub fn merge(&mut self, other: LoadResult) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.window += other.window;
        self.completed += other.completed;
        self.server_cpu = self.server_cpu.zip(other.server_cpu).map(|(a, b)| a + b);
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }

    /// One line for the console.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{:<34} c={:<3} {:>9.1}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  ok {:>7}  errors {}",
            self.label,
            self.concurrency,
            self.rate(),
            self.p50_ms(),
            self.p99_ms(),
            self.ok,
            self.errors
        );
        if let Some(us) = self.server_us_per_op() {
            line.push_str(&format!("  server {us:.1} µs/op"));
        }
        if let Some(err) = &self.first_error {
            line.push_str(&format!(" (first: {err})"));
        }
        line
    }
}

/// One worker's tally, merged into the run's [`LoadResult`].
struct Tally {
    completed: u64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            completed: 0,
            ok: 0,
            errors: 0,
            first_error: None,
            latency_us: histogram(),
        }
    }

    /// What a worker that panicked contributes: one error.
    fn panicked(why: String) -> Tally {
        Tally {
            errors: 1,
            first_error: Some(why),
            ..Tally::new()
        }
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits; these bounds are valid constants.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The time window in which operations are counted.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
    total: Option<u64>,
}

/// Runs `ops` (one per worker; `ops.len()` must equal `spec.concurrency`)
/// against `addr` and collects the result.
pub async fn run<O: Operation>(addr: SocketAddr, spec: &LoadSpec, ops: Vec<O>) -> LoadResult {
    assert_eq!(ops.len(), spec.concurrency, "one operation per worker");
    let start = Instant::now();
    let window = match spec.stop {
        Stop::Timed { warmup, measure } => Window {
            from: start + warmup,
            until: start + warmup + measure,
            total: None,
        },
        Stop::Count { total, limit } => Window {
            from: start,
            until: start + limit,
            total: Some(total),
        },
    };
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = ops
        .into_iter()
        .map(|op| tokio::spawn(worker(addr, op, window, next.clone())))
        .collect();

    let mut result = LoadResult::empty(spec.label.clone(), spec.concurrency);
    for handle in workers {
        result.absorb(
            handle
                .await
                .unwrap_or_else(|e| Tally::panicked(format!("worker panicked: {e}"))),
        );
    }
    result.window = match spec.stop {
        Stop::Timed { measure, .. } => measure,
        Stop::Count { .. } => start.elapsed(),
    };
    result
}

async fn worker<O: Operation>(
    addr: SocketAddr,
    mut op: O,
    window: Window,
    next: Arc<AtomicU64>,
) -> Tally {
    let mut conn = Conn::new(addr);
    let mut tally = Tally::new();
    while Instant::now() < window.until {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if window.total.is_some_and(|total| seq >= total) {
            break;
        }
        let began = Instant::now();
        let outcome = match tokio::time::timeout(OPERATION_TIMEOUT, op.run(&mut conn, seq)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("timed out after {OPERATION_TIMEOUT:?}")),
        };
        let ended = Instant::now();
        tally.completed += 1;
        if began < window.from || ended > window.until {
            continue; // warm-up, or straddling the end of the window
        }
        match outcome {
            Ok(()) => {
                tally.ok += 1;
                let micros =
                    u64::try_from(ended.duration_since(began).as_micros()).unwrap_or(u64::MAX);
                tally.latency_us.saturating_record(micros.max(1));
            }
            Err(err) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(err);
            }
        }
    }
    tally
}

/// An open-loop probe beside other load: `connections` workers, each
/// sending `request` once per `interval` (starts staggered across the
/// interval; a tick missed behind a slow answer is sent as soon as that
/// answer arrives) until `stop` is set, every answer measured. Unlike a
/// closed-loop run it takes a small, fixed share of the machine, so it
/// measures the latency a client of the route sees without adding load
/// of its own. Any 2xx is a success.
pub async fn paced(
    addr: SocketAddr,
    label: &str,
    request: Arc<[u8]>,
    connections: usize,
    interval: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> LoadResult {
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let (request, stop) = (request.clone(), stop.clone());
            let offset = interval * i as u32 / connections.max(1) as u32;
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let mut tally = Tally::new();
                // The connection is opened outside the measurement.
                if let Err(err) = expect_success(&mut conn, &request, "probe warm-up").await {
                    tally.errors += 1;
                    tally.first_error = Some(err);
                }
                let mut ticks = tokio::time::interval_at(
                    tokio::time::Instant::now() + interval + offset,
                    interval,
                );
                while !stop.load(Ordering::Relaxed) {
                    ticks.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let began = Instant::now();
                    let outcome = tokio::time::timeout(
                        OPERATION_TIMEOUT,
                        expect_success(&mut conn, &request, "probe"),
                    )
                    .await
                    .unwrap_or_else(|_| Err(format!("timed out after {OPERATION_TIMEOUT:?}")));
                    tally.completed += 1;
                    match outcome {
                        Ok(_) => {
                            tally.ok += 1;
                            let micros =
                                u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                            tally.latency_us.saturating_record(micros.max(1));
                        }
                        Err(err) => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(err);
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut result = LoadResult::empty(label.into(), connections);
    for handle in workers {
        result.absorb(
            handle
                .await
                .unwrap_or_else(|e| Tally::panicked(format!("probe worker panicked: {e}"))),
        );
    }
    result.window = start.elapsed();
    result
}
