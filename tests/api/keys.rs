//! Signing keys: created at first start, kept across restarts, one for
//! nodes that start together, rotated without a restart or a broken token,
//! published at `/.well-known/jwks.json`, sealed at rest when configured.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use diesel::prelude::*;
use passkey_auth::cli::{run_keys, KeysCommand};
use passkey_auth::schema::signing_keys;
use serde_json::{json, Value};

use crate::helpers::*;

on_both_backends!(
    the_first_start_creates_one_key_and_tokens_name_it,
    the_jwks_is_public_cacheable_and_conditional,
    another_start_on_the_same_database_keeps_the_key_and_its_tokens,
    nodes_starting_together_create_exactly_one_key,
    rotation_publishes_first_signs_after_the_delay_and_retires_after_the_grace,
    es256_keys_by_configuration,
    private_keys_are_sealed_at_rest_when_an_encryption_key_is_set,
);

const KEK: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

fn header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

async fn jwks(base: &str) -> Value {
    reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn stored_keys(app: &TestApp) -> Vec<(String, String)> {
    signing_keys::table
        .order(signing_keys::generation.asc())
        .select((signing_keys::kid, signing_keys::private_key))
        .load(&mut app.db())
        .unwrap()
}

async fn the_first_start_creates_one_key_and_tokens_name_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let set = jwks(&app.base).await;
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{set}");
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "no private part is published");
    assert_eq!(
        sorted_keys(key),
        ["alg", "crv", "kid", "kty", "use", "x"],
        "only public members"
    );

    let user = app.new_user().await;
    let h = header(&user.token);
    assert_eq!(h["alg"], "EdDSA");
    assert_eq!(h["typ"], "JWT");
    assert_eq!(h["kid"], key["kid"]);
    let stored = stored_keys(&app);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, key["kid"].as_str().unwrap());
    // The private key is in the database (plain without an encryption
    // key), and in no answer.
    let private = stored[0].1.strip_prefix("plain:").unwrap().to_owned();
    let answer = app
        .get("/.well-known/jwks.json", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!answer.contains(&private[private.len() - 20..]));
}

async fn the_jwks_is_public_cacheable_and_conditional(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    // Cached for less than the activation delay (300 s by default).
    let cache = headers["cache-control"].to_str().unwrap();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let max_age: u64 = cache.rsplit('=').next().unwrap().parse().unwrap();
    assert!(max_age > 0 && max_age < 300, "{cache}");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    // A token, even a wrong one, is not needed and does not matter.
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    for validator in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
        let res = app
            .client
            .get(app.url("/.well-known/jwks.json"))
            .header("if-none-match", validator.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304, "{validator}");
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert!(res.bytes().await.unwrap().is_empty());
    }
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Configured shorter delays give shorter cache lifetimes.
    let quick = TestApp::spawn_with(backend, &[("KEY_ACTIVATION_DELAY_SECS", "60")]).await;
    let res = quick.get("/.well-known/jwks.json", None).await;
    assert_eq!(res.headers()["cache-control"], "public, max-age=30");
}

async fn another_start_on_the_same_database_keeps_the_key_and_its_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let before = jwks(&app.base).await;
    let node = app.another_node(&[]).await.expect("second start");
    assert_eq!(jwks(&node.base).await, before);
    let res = app
        .client
        .get(node.url("/protected/basic"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "a token issued before the restart verifies"
    );
    assert_eq!(stored_keys(&app).len(), 1);
}

async fn nodes_starting_together_create_exactly_one_key(backend: Backend) {
    let (_database, url) = TestDatabase::create(backend);
    if backend == Backend::Sqlite {
        // Several SQLite nodes share a file only on one machine; migrate it
        // first so that the race is the key's alone. (PostgreSQL nodes
        // migrate under an advisory lock, so they start from nothing.)
        let parsed = passkey_auth::config::DatabaseUrl::parse(&url).unwrap();
        passkey_auth::db::connect_and_migrate(&parsed, 1, Duration::from_secs(5)).unwrap();
    }
    let env = HashMap::new();
    let nodes = futures_util::future::join_all((0..4).map(|_| start_node(&url, &env))).await;
    let nodes: Vec<Node> = nodes.into_iter().map(|n| n.expect("node starts")).collect();
    let first = jwks(&nodes[0].base).await;
    assert_eq!(kids(&first).len(), 1, "{first}");
    for node in &nodes[1..] {
        assert_eq!(jwks(&node.base).await, first);
    }
    let parsed = passkey_auth::config::DatabaseUrl::parse(&url).unwrap();
    let mut conn = passkey_auth::db::ConnectionManager::new(parsed)
        .open()
        .unwrap();
    let rows: i64 = signing_keys::table.count().get_result(&mut conn).unwrap();
    assert_eq!(rows, 1);
}

async fn rotate(app: &TestApp) -> String {
    let mut out = Vec::new();
    run_keys(&app.settings(), KeysCommand::Rotate, &mut out)
        .await
        .expect("rotation");
    String::from_utf8(out).unwrap()
}

async fn until_jwks_has(app: &TestApp, count: usize) -> Value {
    for _ in 0..100 {
        let set = jwks(&app.base).await;
        if kids(&set).len() == count {
            return set;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the JWKS never held {count} keys");
}

async fn rotation_publishes_first_signs_after_the_delay_and_retires_after_the_grace(
    backend: Backend,
) {
    // Rotation happens out of process (the CLI's code on its own pool and
    // clock); the node learns of it by polling the table.
    let app = TestApp::spawn_with(backend, &[("KEY_POLL_SECS", "1")]).await;
    let user = app.new_user().await;
    let old_key = app.signing_key();
    let old_kid = old_key.kid.clone();
    let printed = rotate(&app).await;
    assert!(printed.contains("published "), "{printed}");
    let set = until_jwks_has(&app, 2).await;
    let new_kid = kids(&set).into_iter().find(|k| *k != old_kid).unwrap();
    assert!(printed.contains(&new_kid), "{printed}");

    // Published, not signing yet.
    let before = app.login(&user.username, PASSWORD).await;
    let before: Value = before.json().await.unwrap();
    let before = before["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(header(&before)["kid"], old_kid.as_str());

    // After the delay the new key signs; old tokens still verify. The
    // rotation stamped its times with the real clock, which has moved on
    // since the app's test clock was set (by more than a second on a busy
    // machine): the app's clock catches up with it first.
    let lag = (chrono::Utc::now() - app.clock_now())
        .to_std()
        .unwrap_or_default();
    app.clock.advance(lag + Duration::from_secs(301));
    let after: Value = app
        .login(&user.username, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let after = after["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(header(&after)["kid"], new_kid.as_str());
    for token in [&user.token, &before, &after] {
        assert_eq!(app.get("/protected/basic", Some(token)).await.status(), 200);
    }
    assert_eq!(kids(&jwks(&app.base).await).len(), 2);
    let mut listed = Vec::new();
    run_keys(
        &app.settings(),
        KeysCommand::List { json: true },
        &mut listed,
    )
    .await
    .unwrap();
    let listed: Value = serde_json::from_slice(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["kid"], old_kid.as_str());
    assert!(listed[0]["retiredAt"].is_string());
    assert!(listed[0]["publishedUntil"].is_string());

    // Retired 300 s after the rotation; published for the longest token
    // lifetime (3600 s) after that, then gone.
    app.clock.advance(Duration::from_secs(3600 - 10));
    assert_eq!(
        kids(&jwks(&app.base).await).len(),
        2,
        "still within the grace"
    );
    app.clock.advance(Duration::from_secs(20));
    assert_eq!(kids(&jwks(&app.base).await), vec![new_kid.clone()]);
    // A token the old key signs now (a fresh expiry) is refused.
    let now = app.clock_secs();
    let mut header = jsonwebtoken::Header::new(old_key.algorithm);
    header.kid = Some(old_kid.clone());
    let claims = json!({
        "sub": user.id, "username": user.username, "authLevel": "password", "acr": "password",
        "amr": ["pwd"], "auth_time": now, "iat": now, "exp": now + 600,
        "iss": "passkey-auth", "aud": "passkey-auth", "jti": "late", "sid": uuid::Uuid::new_v4(),
    });
    let late = jsonwebtoken::encode(&header, &claims, &old_key.encoding).unwrap();
    let res = app.get("/protected/basic", Some(&late)).await;
    assert_problem(res, 401, "invalid_token").await;
    let fresh: Value = app
        .login(&user.username, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let fresh = fresh["accessToken"].as_str().unwrap();
    assert_eq!(app.get("/protected/basic", Some(fresh)).await.status(), 200);
}

async fn es256_keys_by_configuration(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SIGNING_KEY_ALGORITHM", "ES256")]).await;
    let set = jwks(&app.base).await;
    let key = &set["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert!(key["y"].is_string());
    let user = app.new_user().await;
    assert_eq!(header(&user.token)["alg"], "ES256");
    assert_eq!(header(&user.token)["kid"], key["kid"]);
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
    // An EdDSA token under the ES256 key's kid is refused.
    let other = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let der = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        other.to_pkcs8_der().unwrap()
    };
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = key["kid"].as_str().map(str::to_owned);
    let forged = jsonwebtoken::encode(
        &h,
        &claims(&user.token),
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    let res = app.get("/protected/basic", Some(&forged)).await;
    assert_problem(res, 401, "invalid_token").await;
}

async fn private_keys_are_sealed_at_rest_when_an_encryption_key_is_set(backend: Backend) {
    // A key stored plain is sealed when the encryption key is configured.
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let plain = stored_keys(&app)[0].1.clone();
    assert!(plain.starts_with("plain:"));
    let sealed_node = app
        .another_node(&[("SIGNING_KEY_ENCRYPTION_KEY", KEK)])
        .await
        .expect("starts with the encryption key");
    let stored = stored_keys(&app);
    assert!(
        stored[0].1.starts_with("xchacha20poly1305:"),
        "{}",
        stored[0].1
    );
    assert!(!stored[0].1.contains(plain.strip_prefix("plain:").unwrap()));
    let res = app
        .client
        .get(sealed_node.url("/protected/basic"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the same key, now sealed");

    // Without the encryption key, or with another one, a node refuses to
    // start, and says why.
    let other = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    for extra in [vec![], vec![("SIGNING_KEY_ENCRYPTION_KEY", other.as_str())]] {
        let err = app
            .another_node(&extra)
            .await
            .err()
            .expect("refuses to start");
        let message = err.to_string();
        assert!(message.contains("SIGNING_KEY_ENCRYPTION_KEY"), "{message}");
        assert!(message.contains(&stored[0].0), "{message}");
    }

    // Keys made with the encryption key set are sealed from the start.
    let fresh = TestApp::spawn_with(backend, &[("SIGNING_KEY_ENCRYPTION_KEY", KEK)]).await;
    let stored = stored_keys(&fresh);
    assert!(stored[0].1.starts_with("xchacha20poly1305:"));
    let user = fresh.new_user().await;
    assert_eq!(
        fresh
            .get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
}
