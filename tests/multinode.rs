//! Two server processes on one PostgreSQL database and one Redis, as nodes
//! behind a load balancer: a ceremony may start on one node and finish on
//! the other, tokens from either are accepted by both, and a challenge used
//! on one cannot be replayed on the other; a session ended on one node is
//! refused by the other within a second; a key rotation reaches both
//! without a restart.
//!
//! Needs `TEST_DATABASE_URL` (PostgreSQL) and `TEST_REDIS_URL`; CI sets both.

mod common;

use std::path::Path;

use reqwest::blocking::Client;
use serde_json::{json, Value};

use common::authenticator::TestAuthenticator;
use common::pg_database::{env_var, PgDatabase};
use common::server_process::{server_command, Running};

const ORIGIN: &str = "http://localhost:3000";
const PASSWORD: &str = "correct horse battery";

fn node(dir: &Path, database_url: &str, redis_url: &str, prefix: &str) -> std::process::Command {
    let mut cmd = server_command(dir);
    cmd.envs([
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", prefix),
        // Rotations reach the nodes within a second and activate quickly.
        ("KEY_POLL_SECS", "1"),
        ("KEY_ACTIVATION_DELAY_SECS", "3"),
        ("RP_ID", "localhost"),
        ("RP_ORIGIN", ORIGIN),
        ("RUST_LOG", "warn,passkey_auth=info"),
    ]);
    cmd
}

struct Nodes {
    a: Running,
    b: Running,
    http: Client,
}

impl Nodes {
    fn post(&self, node: &Running, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(node.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().unwrap();
        (res.status().as_u16(), res.json().unwrap_or(Value::Null))
    }

    fn get(&self, node: &Running, path: &str, token: &str) -> (u16, Value) {
        let res = self
            .http
            .get(node.url(path))
            .bearer_auth(token)
            .send()
            .unwrap();
        (res.status().as_u16(), res.json().unwrap_or(Value::Null))
    }
}

/// The `sid` claim of a JWT, read without verifying it.
fn sid_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

/// Two nodes on a fresh database and a fresh key prefix, started at once;
/// `None` (and a note) without `TEST_DATABASE_URL` and `TEST_REDIS_URL`.
fn start_nodes() -> Option<(Nodes, PgDatabase)> {
    start_nodes_with(false)
}

/// As [`start_nodes`]; with `apart`, each node has a Redis key prefix of its
/// own, so they hear nothing from each other through Redis.
fn start_nodes_with(apart: bool) -> Option<(Nodes, PgDatabase)> {
    let (Some(pg), Some(redis)) = (env_var("TEST_DATABASE_URL"), env_var("TEST_REDIS_URL")) else {
        eprintln!(
            "TEST_DATABASE_URL and TEST_REDIS_URL are needed for the multi-node test: not run"
        );
        return None;
    };
    let database = PgDatabase::create(&pg, "passkey_nodes");
    let prefix = format!("nodes:{}:", uuid::Uuid::new_v4().simple());
    let prefix_b = if apart {
        format!("nodes:{}:", uuid::Uuid::new_v4().simple())
    } else {
        prefix.clone()
    };
    let dir = std::env::temp_dir().join("passkey-auth-multinode");
    std::fs::create_dir_all(&dir).unwrap();

    // Both nodes start at once on an empty database: migrations must not collide.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Running::start(node(&dir, &database.url, &redis, &prefix)));
        let b = s.spawn(|| Running::start(node(&dir, &database.url, &redis, &prefix_b)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let nodes = Nodes {
        a,
        b,
        http: Client::new(),
    };
    Some((nodes, database))
}

#[test]
fn a_session_ended_on_one_node_is_refused_by_the_other_within_a_second() {
    let Some((nodes, _database)) = start_nodes() else {
        return;
    };
    let (a, b) = (&nodes.a, &nodes.b);
    let credentials = json!({"username": "leaver", "password": PASSWORD});
    assert_eq!(nodes.post(a, "/auth/signup", &credentials, None).0, 201);
    let mut waits = Vec::new();
    for round in 0..5 {
        let (status, login) = nodes.post(a, "/auth/login", &credentials, None);
        assert_eq!(status, 200);
        let token = login["accessToken"].as_str().unwrap().to_owned();
        let refresh = login["refreshToken"].as_str().unwrap().to_owned();
        assert_eq!(nodes.get(b, "/protected/basic", &token).0, 200);
        // Ending on A: by logout, or from another session (recent: a fresh
        // password login of an account without passkeys).
        let ended_at = if round % 2 == 0 {
            let (status, _) = nodes.post(a, "/auth/logout", &json!({}), Some(&token));
            assert_eq!(status, 204);
            std::time::Instant::now()
        } else {
            let (_, other) = nodes.post(a, "/auth/login", &credentials, None);
            let other = other["accessToken"].as_str().unwrap().to_owned();
            let sid = sid_of(&token);
            let (_, sessions) = nodes.get(a, "/auth/sessions", &other);
            assert!(sessions.as_array().unwrap().iter().any(|s| s["id"] == sid));
            let res = nodes
                .http
                .delete(a.url(&format!("/auth/sessions/{sid}")))
                .bearer_auth(&other)
                .send()
                .unwrap();
            assert_eq!(res.status(), 204);
            std::time::Instant::now()
        };
        loop {
            let (status, body) = nodes.get(b, "/protected/basic", &token);
            if status == 401 {
                assert_eq!(body["code"], "invalid_token");
                break;
            }
            assert_eq!(status, 200);
            assert!(
                ended_at.elapsed() < std::time::Duration::from_secs(1),
                "node B still accepts the token of an ended session after 1 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        waits.push(ended_at.elapsed());
        // The refresh token is refused on either node.
        let body = json!({"refreshToken": refresh});
        assert_eq!(nodes.post(b, "/auth/refresh", &body, None).0, 401);
    }
    eprintln!("node B refused the ended session's token after {waits:?}");
}

#[test]
fn an_ending_redis_did_not_carry_reaches_the_other_node_from_the_database() {
    // Different key prefixes: B never hears A's announcement, as when Redis
    // was away at the moment of the ending.
    let Some((nodes, _database)) = start_nodes_with(true) else {
        return;
    };
    let (a, b) = (&nodes.a, &nodes.b);
    let credentials = json!({"username": "drifter", "password": PASSWORD});
    assert_eq!(nodes.post(a, "/auth/signup", &credentials, None).0, 201);
    let (_, login) = nodes.post(a, "/auth/login", &credentials, None);
    let token = login["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(nodes.get(b, "/protected/basic", &token).0, 200);
    assert_eq!(
        nodes.post(a, "/auth/logout", &json!({}), Some(&token)).0,
        204
    );
    let ended_at = std::time::Instant::now();
    // A refuses at once; B after its next re-read of the database (every 5 s).
    assert_eq!(nodes.get(a, "/protected/basic", &token).0, 401);
    while nodes.get(b, "/protected/basic", &token).0 == 200 {
        assert!(
            ended_at.elapsed() < std::time::Duration::from_secs(8),
            "node B never learnt of the ending from the database"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!(
        "node B learnt of the ending from the database after {:?}",
        ended_at.elapsed()
    );
}

#[test]
fn ceremonies_and_tokens_cross_nodes_and_challenges_do_not_replay() {
    let Some((nodes, _database)) = start_nodes() else {
        return;
    };
    let (a, b) = (&nodes.a, &nodes.b);
    // Sign up on A, log in on B; B's token works on A.
    let (status, _) = nodes.post(
        a,
        "/auth/signup",
        &json!({"username": "roamer", "password": PASSWORD}),
        None,
    );
    assert_eq!(status, 201);
    let (status, login) = nodes.post(
        b,
        "/auth/login",
        &json!({"username": "roamer", "password": PASSWORD}),
        None,
    );
    assert_eq!(status, 200);
    let token = login["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(nodes.get(a, "/auth/me", &token).0, 200);

    // Registration: options from A, verify on B.
    let mut device = TestAuthenticator::new();
    let (status, options) = nodes.get(a, "/passkeys/register/options", &token);
    assert_eq!(status, 200);
    let body = device.register(&options, ORIGIN).unwrap();
    let (status, summary) = nodes.post(b, "/passkeys/register/verify", &body, Some(&token));
    assert_eq!(status, 201, "{summary}");

    // Authentication: options from B, verify on A; A's full token works on B.
    let (status, options) = nodes.get(b, "/passkeys/authenticate/options", &token);
    assert_eq!(status, 200);
    let body = device.authenticate(&options, ORIGIN).unwrap();
    let (status, full) = nodes.post(a, "/passkeys/authenticate/verify", &body, Some(&token));
    assert_eq!(status, 200, "{full}");
    let full_token = full["accessToken"].as_str().unwrap().to_owned();
    let (status, protected) = nodes.get(b, "/protected/full", &full_token);
    assert_eq!(
        (status, protected["authLevel"].as_str()),
        (200, Some("full"))
    );

    // And the other way round: options from A, verify on B.
    let (_, options) = nodes.get(a, "/passkeys/authenticate/options", &token);
    let body = device.authenticate(&options, ORIGIN).unwrap();
    let (status, _) = nodes.post(b, "/passkeys/authenticate/verify", &body, Some(&token));
    assert_eq!(status, 200);

    // A verify that succeeded on A cannot be replayed on B.
    let (_, options) = nodes.get(b, "/passkeys/authenticate/options", &token);
    let body = device.authenticate(&options, ORIGIN).unwrap();
    let (status, _) = nodes.post(a, "/passkeys/authenticate/verify", &body, Some(&token));
    assert_eq!(status, 200);
    let (status, replay) = nodes.post(b, "/passkeys/authenticate/verify", &body, Some(&token));
    assert_eq!(
        (status, replay["code"].as_str()),
        (400, Some("challenge_expired"))
    );

    // The passkey (and its counter) is one and the same on both nodes.
    let (_, on_a) = nodes.get(a, "/passkeys", &full_token);
    let (_, on_b) = nodes.get(b, "/passkeys", &full_token);
    assert_eq!(on_a, on_b);
    assert_eq!(on_a.as_array().unwrap().len(), 1);
}

/// The `kid` of a JWT's header.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn published_kids(nodes: &Nodes, node: &Running) -> Vec<String> {
    let set: Value = nodes
        .http
        .get(node.url("/.well-known/jwks.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn nodes_started_together_share_one_key_and_follow_a_rotation_without_a_restart() {
    let Some((nodes, database)) = start_nodes() else {
        return;
    };
    let (a, b) = (&nodes.a, &nodes.b);
    let first = published_kids(&nodes, a);
    assert_eq!(first.len(), 1, "one key for two nodes started together");
    assert_eq!(published_kids(&nodes, b), first);
    let credentials = json!({"username": "rotator", "password": PASSWORD});
    assert_eq!(nodes.post(a, "/auth/signup", &credentials, None).0, 201);
    let login = |node: &Running| {
        let (status, body) = nodes.post(node, "/auth/login", &credentials, None);
        assert_eq!(status, 200);
        body["accessToken"].as_str().unwrap().to_owned()
    };
    let old_token = login(a);
    assert_eq!(kid_of(&old_token), first[0]);

    // `passkey-auth keys rotate`, run as an operator would, with the same
    // configuration.
    let dir = std::env::temp_dir().join("passkey-auth-multinode");
    let out = node(&dir, &database.url, "redis://unused", "unused:")
        .env_remove("REDIS_URL")
        .args(["keys", "rotate"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let rotated_at = std::time::Instant::now();
    for node in [a, b] {
        while published_kids(&nodes, node).len() < 2 {
            assert!(
                rotated_at.elapsed() < std::time::Duration::from_secs(3),
                "the new key is published within the poll interval"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let new_kid = published_kids(&nodes, a)
        .into_iter()
        .find(|k| *k != first[0])
        .unwrap();
    assert!(printed.contains(&new_kid), "{printed}");
    assert_eq!(kid_of(&login(b)), first[0], "published, not signing yet");

    // After the activation delay (3 s here) both nodes sign with it.
    std::thread::sleep(std::time::Duration::from_secs(3).saturating_sub(rotated_at.elapsed()));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (new_a, new_b) = (login(a), login(b));
    assert_eq!(kid_of(&new_a), new_kid);
    assert_eq!(kid_of(&new_b), new_kid);
    for token in [&old_token, &new_a, &new_b] {
        for node in [a, b] {
            assert_eq!(nodes.get(node, "/protected/basic", token).0, 200);
        }
    }
    let listed = node(&dir, &database.url, "redis://unused", "unused:")
        .env_remove("REDIS_URL")
        .args(["keys", "list"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert!(
        rows.contains(&vec![first[0].as_str(), "EdDSA", "retired"]),
        "{listed}"
    );
    assert!(
        rows.contains(&vec![new_kid.as_str(), "EdDSA", "active"]),
        "{listed}"
    );
}
