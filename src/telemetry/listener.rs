//! The metrics listener: `GET /metrics` in Prometheus's text format, on
//! `METRICS_BIND_ADDR` only (a second server in the same process and
//! runtime), never on the public listener.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header::{ContentType, CONTENT_TYPE};
use actix_web::{web, App, HttpResponse, HttpServer};

use super::Metrics;
use crate::repositories::Database;
use crate::services::hashing::HashingPool;
use crate::stores::challenges::ChallengeStore;

/// The content type of the text exposition format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads the state gauges from.
#[derive(Clone)]
pub struct Sources {
    pub db: Database,
    pub challenges: Arc<dyn ChallengeStore>,
    pub hashing: HashingPool,
    /// Whether the stores are in Redis: then each scrape pings it (through
    /// the challenge store, bounded by `REDIS_TIMEOUT_MS`) for `redis_up`.
    pub redis: bool,
}

struct Scrape {
    metrics: Metrics,
    sources: Sources,
}

impl Scrape {
    /// Sets the state gauges from the live objects.
    async fn sample(&self) {
        let state = &self.metrics.state;
        let pool = self.sources.db.pool_status();
        state.pool_in_use.set(f64::from(pool.in_use));
        state.pool_idle.set(f64::from(pool.idle));
        state.pool_waiting.set(pool.waiting as f64);
        for (read, reads, batches) in self.sources.db.batched_reads() {
            self.metrics.batched_reads(read, reads, batches);
        }
        state
            .hash_queue_depth
            .set(self.sources.hashing.queue_depth() as f64);
        // A Redis store's entries live in Redis, with their TTLs: counting
        // them would be a SCAN of the keyspace per scrape, so the gauges
        // report only what this process holds (nothing, with Redis).
        let usage = self.sources.challenges.usage().unwrap_or_default();
        state.challenge_entries.set(usage.entries as f64);
        state.challenge_bytes.set(usage.bytes as f64);
        if self.sources.redis {
            let up = self.sources.challenges.ping().await.is_ok();
            self.metrics.redis_up().set(if up { 1.0 } else { 0.0 });
        }
    }
}

async fn scrape(scrape: web::Data<Scrape>) -> HttpResponse {
    scrape.sample().await;
    match scrape.metrics.render() {
        Some(text) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, TEXT_FORMAT))
            .body(text),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(ContentType::plaintext())
        .body("not found: the metrics listener serves GET /metrics only\n")
}

/// The (not yet awaited) metrics server on `listener`. One worker: a
/// scrape every few seconds needs no more. It listens for no signals: the
/// application stops it when the main server stops.
pub fn serve(listener: TcpListener, metrics: Metrics, sources: Sources) -> std::io::Result<Server> {
    let state = web::Data::new(Scrape { metrics, sources });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(scrape))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
