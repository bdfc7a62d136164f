//! The guard crate's example resource server (`guard/examples/payments.rs`,
//! included as it is) run inside the benchmark process: its routes, a
//! `JwksVerifier` pointed at the benchmark's auth server, an actix-web
//! `HttpServer` on 127.0.0.1:0 with its own actix system on a thread of its
//! own. Its CPU time is that of its threads (the actix workers, acceptor
//! and system thread), read from /proc/self/task.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use passkey_auth_guard::{JwksConfig, JwksVerifier};

#[allow(dead_code)] // the example's own `main` is not used here
#[path = "../../guard/examples/payments.rs"]
mod payments;

/// Name of the thread that runs the server's actix system (15 bytes, the
/// most a thread name keeps).
const SYSTEM_THREAD: &str = "payments-system";

pub struct ResourceServer {
    pub addr: SocketAddr,
    pub jwks_url: String,
    handle: ServerHandle,
    verifier: web::Data<JwksVerifier>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl ResourceServer {
    /// Starts the example's routes with a verifier of `jwks_url` (issuer
    /// and audience the auth server's defaults), keys fetched before the
    /// first request.
    pub fn start(jwks_url: &str) -> Result<ResourceServer, String> {
        let (tx, rx) = mpsc::channel();
        let url = jwks_url.to_owned();
        let thread = std::thread::Builder::new()
            .name(SYSTEM_THREAD.into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let verifier = web::Data::new(JwksVerifier::new(JwksConfig::new(
                        url,
                        "passkey-auth",
                        "passkey-auth",
                    )));
                    if let Err(err) = verifier.refresh().await {
                        let _ = tx.send(Err(format!("fetching the JWKS: {err}")));
                        return Ok(());
                    }
                    let data = verifier.clone();
                    let bound = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .configure(payments::configure)
                    })
                    .shutdown_timeout(1)
                    .bind(("127.0.0.1", 0));
                    let server = match bound {
                        Ok(server) => server,
                        Err(err) => {
                            let _ = tx.send(Err(format!("bind: {err}")));
                            return Ok(());
                        }
                    };
                    let Some(addr) = server.addrs().first().copied() else {
                        let _ = tx.send(Err("bound to no address".into()));
                        return Ok(());
                    };
                    let server = server.run();
                    let _ = tx.send(Ok((addr, server.handle(), verifier)));
                    server.await
                })
            })
            .map_err(|e| format!("resource server thread: {e}"))?;
        let (addr, handle, verifier) = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| format!("resource server did not start: {e}"))??;
        Ok(ResourceServer {
            addr,
            jwks_url: jwks_url.to_owned(),
            handle,
            verifier,
            thread: Some(thread),
        })
    }

    /// How many times the verifier fetched the JWKS so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.verifier.fetch_count()
    }

    /// CPU time (user + system) of the server's threads so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        let mut ticks = 0u64;
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue; // a thread that just exited
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            // Thread names are cut to 15 bytes in `comm`. Under an actix
            // system the workers are arbiters ("actix-rt|system:0|arbiter:1");
            // the acceptor is "actix-server acceptor". Nothing else in this
            // process runs actix.
            let actix = comm.starts_with("actix-rt|") || comm.starts_with("actix-server");
            if !(actix || comm == SYSTEM_THREAD) {
                continue;
            }
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            ticks += (11..=12)
                .map(|i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum::<Option<u64>>()?;
        }
        Some(Duration::from_millis(ticks * 10))
    }

    /// Stops the server (its connections are dropped after a second).
    pub async fn stop(mut self) -> Result<(), String> {
        self.handle.stop(true).await;
        let thread = self.thread.take();
        tokio::task::spawn_blocking(move || thread.map(|t| t.join()))
            .await
            .map_err(|e| e.to_string())?
            .transpose()
            .map_err(|_| "resource server thread panicked".to_owned())?
            .transpose()
            .map_err(|e| format!("resource server: {e}"))?;
        Ok(())
    }
}
