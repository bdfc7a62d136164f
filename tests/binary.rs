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
        log.iter()
            .any(|l| l.contains("created the first signing key")),
        "the first start creates a signing key: {log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains("JWT_SECRET")), "{log:#?}");
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
        ("SIGNING_KEY_ALGORITHM", "HS256"),
        ("SIGNING_KEY_ENCRYPTION_KEY", "not-32-bytes"),
        ("KEY_ACTIVATION_DELAY_SECS", "-1"),
        ("DATABASE_URL", "mysql://db/auth"),
        ("METRICS_BIND_ADDR", "localhost:9464"),
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

/// A login's access token from the server at `address`.
fn login_token(address: &str, username: &str) -> String {
    let client = reqwest::blocking::Client::new();
    let credentials = serde_json::json!({"username": username, "password": "a long password"});
    client
        .post(format!("http://{address}/auth/signup"))
        .json(&credentials)
        .send()
        .unwrap();
    let login: serde_json::Value = client
        .post(format!("http://{address}/auth/login"))
        .json(&credentials)
        .send()
        .unwrap()
        .json()
        .unwrap();
    login["accessToken"].as_str().unwrap().to_owned()
}

#[test]
fn tokens_survive_a_restart_and_an_unused_jwt_secret_is_pointed_out() {
    let dir = workdir();
    let token = {
        let node = Running::start(server(&dir));
        login_token(&node.address, "before-restart")
    };
    let mut cmd = server(&dir);
    cmd.env("JWT_SECRET", "an-old-secret-that-signs-nothing-any-more");
    let node = Running::start(cmd);
    assert!(
        !node
            .startup_log
            .iter()
            .any(|l| l.contains("created the first signing key")),
        "the key is read, not made again: {:#?}",
        node.startup_log
    );
    assert!(
        node.startup_log
            .iter()
            .any(|l| l.contains("JWT_SECRET is set but no longer used")),
        "{:#?}",
        node.startup_log
    );
    let res = reqwest::blocking::Client::new()
        .get(node.url("/protected/basic"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "a token from before the restart verifies"
    );
}

#[test]
fn keys_list_and_rotate_from_the_command_line() {
    let dir = workdir();
    let run = |args: &[&str]| {
        let out = server(&dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // On a new database the first command creates the key, as a start would.
    let listed = run(&["keys", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("KID"), "{listed}");
    assert!(lines[1].contains(" EdDSA  active "), "{listed}");
    let first_kid = lines[1].split_whitespace().next().unwrap().to_owned();

    let rotated = run(&["keys", "rotate"]);
    assert!(rotated.starts_with("published "), "{rotated}");
    assert!(rotated.contains("(in 300 s)"), "{rotated}");
    let listed: serde_json::Value =
        serde_json::from_str(&run(&["keys", "list", "--json"])).unwrap();
    let keys = listed.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], first_kid.as_str());
    assert_eq!(
        keys[0]["state"], "active",
        "the old key signs until the new one activates"
    );
    assert_eq!(keys[1]["state"], "pending");
    assert_eq!(keys[0]["retiredAt"], keys[1]["activatesAt"]);
    assert!(
        !run(&["keys", "list"]).contains("plain:"),
        "no key material is printed"
    );

    let help = run(&["keys", "--help"]);
    assert!(help.contains("rotate") && help.contains("list"), "{help}");
}

/// Parses one `LOG_FORMAT=json` line, checking the fields every line has.
fn parse_json_log_line(line: &str) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
    let time = value["time"].as_str().unwrap_or_default();
    assert!(
        time.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "time is not RFC 3339 UTC: {line}"
    );
    assert!(
        matches!(
            value["level"].as_str(),
            Some("ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE")
        ),
        "{line}"
    );
    assert!(
        value["target"].is_string() && value["message"].is_string(),
        "{line}"
    );
    if let Some(id) = value.get("request_id") {
        assert!(id.is_string(), "{line}");
    }
    value
}

#[test]
fn json_logs_are_one_object_per_line_and_name_the_request() {
    let dir = workdir();
    let mut cmd = server(&dir);
    cmd.env("LOG_FORMAT", "json");
    let node = Running::start(cmd);
    let client = reqwest::blocking::Client::new();
    let password = "a long password for the logs";
    let credentials = serde_json::json!({"username": "json-logger", "password": password});

    let signup = client
        .post(node.url("/auth/signup"))
        .json(&credentials)
        .send()
        .unwrap();
    assert_eq!(signup.status(), 201);
    let signup_id = signup.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let login = client
        .post(node.url("/auth/login"))
        .header("x-request-id", "binary-login-1")
        .json(&credentials)
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(login.headers()["x-request-id"], "binary-login-1");
    let tokens: serde_json::Value = login.json().unwrap();
    let secrets = [
        password,
        tokens["accessToken"].as_str().unwrap(),
        tokens["refreshToken"].as_str().unwrap(),
    ];
    let missing = client.get(node.url("/no/such/route")).send().unwrap();
    assert_eq!(missing.status(), 404);
    let missing_id = missing.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let is_access = |line: &serde_json::Value, id: &str, needle: &str| {
        line["target"] == "actix_web::middleware::logger"
            && line["request_id"] == id
            && line["message"].as_str().unwrap().contains(needle)
    };
    let is_audit = |line: &serde_json::Value, id: &str, kind: &str| {
        line["target"] == "audit" && line["request_id"] == id && line["event"]["type"] == kind
    };
    let mut lines: Vec<serde_json::Value> = node
        .startup_log
        .iter()
        .map(|l| parse_json_log_line(l))
        .collect();
    let mut raw: Vec<String> = node.startup_log.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = |f: &dyn Fn(&serde_json::Value) -> bool| lines.iter().any(f);
        let complete = seen(&|l| is_access(l, &signup_id, "\"POST /auth/signup HTTP/1.1\" 201 "))
            && seen(&|l| is_audit(l, &signup_id, "signup"))
            && seen(&|l| is_access(l, "binary-login-1", "\"POST /auth/login HTTP/1.1\" 200 "))
            && seen(&|l| is_audit(l, "binary-login-1", "login_succeeded"))
            && seen(&|l| is_access(l, &missing_id, "\"GET /no/such/route HTTP/1.1\" 404 "));
        if complete {
            break;
        }
        assert!(Instant::now() < deadline, "lines missing; log: {raw:#?}");
        if let Ok(line) = node.log.recv_timeout(Duration::from_millis(200)) {
            lines.push(parse_json_log_line(&line));
            raw.push(line);
        }
    }
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on http://")),
        "{raw:#?}"
    );
    // The audit line's event is an object, not an escaped string.
    let audit = lines
        .iter()
        .find(|l| is_audit(l, &signup_id, "signup"))
        .unwrap();
    assert_eq!(audit["level"], "INFO");
    assert_eq!(audit["event"]["outcome"], "success");
    assert_eq!(audit["event"]["ipAddress"], "127.0.0.1");
    assert!(audit["event"]["userId"].is_string(), "{audit}");
    // Lines written outside a request name none.
    let listening = lines
        .iter()
        .find(|l| l["message"].as_str().unwrap().starts_with("listening on"))
        .unwrap();
    assert!(listening.get("request_id").is_none(), "{listening}");
    for line in &raw {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
}

#[test]
fn an_invalid_log_format_stops_the_server_naming_it() {
    let dir = workdir();
    let out = server(&dir).env("LOG_FORMAT", "bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LOG_FORMAT") && stderr.contains("bogus"),
        "{stderr}"
    );
    assert!(
        !dir.join("data").exists(),
        "nothing is created before the check"
    );
    // With JSON logs, other configuration errors are still printed.
    let out = server(&dir)
        .env("LOG_FORMAT", "json")
        .env("CHALLENGE_TTL_SECS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHALLENGE_TTL_SECS"));
}

#[test]
fn metrics_bind_addr_serves_prometheus_metrics_on_its_own_port() {
    let dir = workdir();
    let mut cmd = server(&dir);
    cmd.env("METRICS_BIND_ADDR", "127.0.0.1:0");
    let node = Running::start(cmd);
    let metrics = node
        .startup_log
        .iter()
        .find_map(|l| l.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in {:#?}", node.startup_log))
        .to_owned();
    assert!(metrics.ends_with("/metrics"), "{metrics}");
    assert_ne!(metrics.trim_end_matches("/metrics"), node.address);

    assert_eq!(
        reqwest::blocking::get(node.url("/healthz"))
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::blocking::get(node.url("/metrics"))
            .unwrap()
            .status(),
        404
    );
    let res = reqwest::blocking::get(format!("http://{metrics}")).unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().unwrap();
    for line in [
        r#"http_requests_total{route="/healthz",method="GET",status_class="2xx"} 1"#,
        r#"http_requests_total{route="unmatched",method="GET",status_class="4xx"} 1"#,
        r#"auth_logins_total{outcome="success"} 0"#,
        r#"db_pool_connections{state="in_use"}"#,
        "# TYPE http_request_duration_seconds histogram",
        "# HELP auth_logins_total Password logins by outcome.",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
}

#[test]
fn a_taken_metrics_port_stops_the_server_naming_the_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = workdir();
    let out = server(&dir)
        .env("METRICS_BIND_ADDR", &addr)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("METRICS_BIND_ADDR={addr}")),
        "{stderr}"
    );
}
