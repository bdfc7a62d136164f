//! The server binary as a child process, for tests of what only a real
//! process shows (defaults, `.env`, exit codes, several nodes).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_passkey-auth");

/// The server with a clean environment (only `PATH`) listening on a free
/// port, run in `dir`.
pub fn server_command(dir: &Path) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BIND_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A running server, killed when dropped.
pub struct Running {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
    /// Log lines up to the one that gave the address.
    pub startup_log: Vec<String>,
    /// Later log lines.
    pub log: Receiver<String>,
}

impl Running {
    /// Starts `cmd` and reads its log until it says where it listens.
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("server starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = Vec::new();
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let address = rest.split_whitespace().next().unwrap().to_owned();
                lines.push(line);
                return Running {
                    child,
                    address,
                    startup_log: lines,
                    log: rx,
                };
            }
            lines.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server did not report its address; log: {lines:#?}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
