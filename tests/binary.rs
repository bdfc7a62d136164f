//! The server binary as a person starts it: embedded defaults, `.env`, and
//! configuration errors that name the variable.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_passkey-auth");

/// A fresh, empty working directory.
fn workdir() -> PathBuf {
    let dir = std::env::temp_dir()
        .join("passkey-auth-binary-tests")
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The server with no configuration but a free port, in `dir`.
fn server(dir: &PathBuf) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BIND_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server and reads its log until it says where it listens;
/// later log lines keep arriving on the returned receiver.
fn start(mut cmd: Command) -> (Running, String, Vec<String>, Receiver<String>) {
    let mut child = Running(cmd.spawn().expect("server starts"));
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let address = rest.split_whitespace().next().unwrap().to_owned();
            lines.push(line);
            return (child, address, lines, rx);
        }
        lines.push(line);
    }
    panic!("server did not report its address; log: {lines:#?}");
}

#[test]
fn runs_on_embedded_defaults_and_serves_the_demo_page() {
    let dir = workdir();
    let (_server, address, log, more_log) = start(server(&dir));
    assert!(
        dir.join("data/auth.db").exists(),
        "the default SQLite file is created"
    );
    assert!(
        log.iter().any(|l| l.contains("JWT_SECRET is not set")),
        "a missing secret is warned about: {log:#?}"
    );
    let page = reqwest::blocking::get(format!("http://{address}/")).unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("<html"));
    let signup = reqwest::blocking::Client::new()
        .post(format!("http://{address}/auth/signup"))
        .json(&serde_json::json!({"username": "first-user", "password": "a long password"}))
        .send()
        .unwrap();
    assert_eq!(signup.status(), 201);

    // The sign-up is also a structured audit line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let audit_line = loop {
        assert!(Instant::now() < deadline, "no audit line for the sign-up");
        let Ok(line) = more_log.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if line.contains(" audit]") && line.contains(r#""type":"signup""#) {
            break line;
        }
    };
    let json = &audit_line[audit_line.find('{').unwrap()..];
    let event: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["ipAddress"], "127.0.0.1");
    assert!(!audit_line.contains("a long password"));
}

#[test]
fn invalid_configuration_stops_the_server_naming_the_variable() {
    for (var, value) in [
        ("CHALLENGE_TTL_SECS", "five minutes"),
        ("RP_ORIGIN", "localhost:3000"),
        ("JWT_SECRET", "too-short"),
        ("DATABASE_URL", "mysql://db/auth"),
    ] {
        let dir = workdir();
        let out = server(&dir).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
        assert!(
            !dir.join("data").exists(),
            "nothing is created before the check"
        );
    }
}

#[test]
fn reads_dot_env_and_lets_the_environment_win() {
    let dir = workdir();
    std::fs::write(
        dir.join(".env"),
        "CHALLENGE_TTL_SECS=not-a-number\nDATABASE_URL=sqlite://custom/place.db\n",
    )
    .unwrap();
    let out = server(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHALLENGE_TTL_SECS"));

    let mut cmd = server(&dir);
    cmd.env("CHALLENGE_TTL_SECS", "60");
    let (_server, _address, _log, _more) = start(cmd);
    assert!(
        dir.join("custom/place.db").exists(),
        "DATABASE_URL from .env is used"
    );
}
