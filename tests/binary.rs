//! The server binary as a person starts it: embedded defaults, `.env`, and
//! configuration errors that name the variable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server_process::{server_command, Running};

/// A fresh, empty working directory.
fn workdir() -> PathBuf {
    let dir = std::env::temp_dir()
        .join("passkey-auth-binary-tests")
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn server(dir: &Path) -> Command {
    server_command(dir)
}

#[test]
fn runs_on_embedded_defaults_and_serves_the_demo_page() {
    let dir = workdir();
    let node = Running::start(server(&dir));
    let (address, log, more_log) = (&node.address, &node.startup_log, &node.log);
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
    let _node = Running::start(cmd);
    assert!(
        dir.join("custom/place.db").exists(),
        "DATABASE_URL from .env is used"
    );
}
