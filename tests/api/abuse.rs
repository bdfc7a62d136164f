//! Rate limits, login lockout and the client IP they key on.

use std::time::Duration;

use serde_json::json;

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;

on_both_backends!(
    the_per_ip_limit_trips_with_retry_after_and_refills,
    forwarded_for_from_an_untrusted_peer_is_ignored,
    forwarded_for_from_a_trusted_proxy_names_the_client,
    the_per_account_limit_holds_across_addresses,
    failed_logins_lock_the_account_from_that_address_only,
    retry_after_during_a_lockout_is_the_whole_remaining_wait,
    signup_and_both_passkey_verifies_are_limited,
);

/// Three at once, then one a minute: a test that only needs the limit to
/// trip cannot be fooled by a refill, however slow the requests are.
const BURST_3_THEN_ONE_A_MINUTE: [(&str, &str); 2] = [
    ("RATE_LIMIT_IP_PER_MINUTE", "1"),
    ("RATE_LIMIT_IP_BURST", "3"),
];

async fn login_from(
    app: &TestApp,
    forwarded_for: Option<&str>,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": username, "password": password}));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap()
}

async fn assert_rate_limited(res: reqwest::Response) -> u64 {
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_problem(res, 429, "rate_limited").await;
    retry_after
}

async fn the_per_ip_limit_trips_with_retry_after_and_refills(backend: Backend) {
    let app = TestApp::spawn_with(backend, &BURST_3_THEN_ONE_A_MINUTE).await;
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, None, "nobody", PASSWORD).await.status(),
            401
        );
    }
    let wait = assert_rate_limited(login_from(&app, None, "nobody", PASSWORD).await).await;
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // Another action has its own bucket.
    assert_eq!(app.signup("someone", PASSWORD).await.status(), 201);

    // Refill: one a second, one at a time. Two requests sent together meet
    // the limit before any hashing, so exactly one is refused.
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_IP_PER_MINUTE", "60"),
            ("RATE_LIMIT_IP_BURST", "1"),
        ],
    )
    .await;
    let (a, b) = futures_util::future::join(
        login_from(&app, None, "nobody", PASSWORD),
        login_from(&app, None, "nobody", PASSWORD),
    )
    .await;
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [401, 429]);
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(
        login_from(&app, None, "nobody", PASSWORD).await.status(),
        401
    );
}

async fn forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let app = TestApp::spawn_with(backend, &BURST_3_THEN_ONE_A_MINUTE).await;
    for i in 0..3 {
        let spoofed = format!("203.0.113.{i}");
        assert_eq!(
            login_from(&app, Some(&spoofed), "nobody", PASSWORD)
                .await
                .status(),
            401
        );
    }
    assert_rate_limited(login_from(&app, Some("198.51.100.77"), "nobody", PASSWORD).await).await;
}

async fn forwarded_for_from_a_trusted_proxy_names_the_client(backend: Backend) {
    let mut settings = BURST_3_THEN_ONE_A_MINUTE.to_vec();
    settings.push(("TRUSTED_PROXIES", "127.0.0.1/32"));
    let app = TestApp::spawn_with(backend, &settings).await;
    // Six clients behind the proxy, one request each: no one is limited.
    for i in 0..6 {
        let client = format!("203.0.113.{i}");
        assert_eq!(
            login_from(&app, Some(&client), "nobody", PASSWORD)
                .await
                .status(),
            401
        );
    }
    // One client behind the proxy is limited on its own, whatever it puts
    // first in the header.
    for i in 0..3 {
        let xff = format!("10.9.9.{i}, 198.51.100.1");
        assert_eq!(
            login_from(&app, Some(&xff), "nobody", PASSWORD)
                .await
                .status(),
            401
        );
    }
    assert_rate_limited(login_from(&app, Some("1.1.1.1, 198.51.100.1"), "nobody", PASSWORD).await)
        .await;
    assert_eq!(
        login_from(&app, Some("198.51.100.2"), "nobody", PASSWORD)
            .await
            .status(),
        401
    );
}

async fn the_per_account_limit_holds_across_addresses(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "1"),
            ("RATE_LIMIT_ACCOUNT_BURST", "2"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    for i in 0..2 {
        let client = format!("203.0.113.{i}");
        assert_eq!(
            login_from(&app, Some(&client), "victim", PASSWORD)
                .await
                .status(),
            401
        );
    }
    assert_rate_limited(login_from(&app, Some("203.0.113.50"), "VICTIM", PASSWORD).await).await;
    assert_eq!(
        login_from(&app, Some("203.0.113.50"), "bystander", PASSWORD)
            .await
            .status(),
        401
    );
}

async fn failed_logins_lock_the_account_from_that_address_only(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("LOGIN_LOCKOUT_THRESHOLD", "3"),
            ("LOGIN_LOCKOUT_BASE_SECS", "30"),
            ("LOGIN_LOCKOUT_MAX_SECS", "120"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    let user = app.new_user().await;
    let attacker = Some("198.51.100.66");
    for _ in 0..3 {
        let res = login_from(&app, attacker, &user.username, "wrong password!").await;
        assert_problem(res, 401, "invalid_credentials").await;
    }
    // Locked: even the right password is refused from there, without a hash.
    let wait =
        assert_rate_limited(login_from(&app, attacker, &user.username, PASSWORD).await).await;
    assert_eq!(wait, 30);
    // The owner, from another address, logs in.
    assert_eq!(
        login_from(&app, Some("203.0.113.5"), &user.username, PASSWORD)
            .await
            .status(),
        200
    );

    // The lock lapses; one more failure locks for twice as long.
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(
        login_from(&app, attacker, &user.username, "wrong again!!")
            .await
            .status(),
        401
    );
    let wait =
        assert_rate_limited(login_from(&app, attacker, &user.username, PASSWORD).await).await;
    assert_eq!(wait, 60);
    // A success from that address clears its tally.
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(
        login_from(&app, attacker, &user.username, PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        login_from(&app, attacker, &user.username, "wrong once more")
            .await
            .status(),
        401
    );
    assert_eq!(
        login_from(&app, attacker, &user.username, PASSWORD)
            .await
            .status(),
        200
    );
}

async fn retry_after_during_a_lockout_is_the_whole_remaining_wait(backend: Backend) {
    // The IP bucket (3 at once, then one each 10 s) empties with the three
    // failures that lock the account for 30 s: the lock is the longer wait.
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_IP_PER_MINUTE", "6"),
            ("RATE_LIMIT_IP_BURST", "3"),
            ("LOGIN_LOCKOUT_THRESHOLD", "3"),
            ("LOGIN_LOCKOUT_BASE_SECS", "30"),
        ],
    )
    .await;
    let user = app.new_user().await;
    // new_user's login took one from the IP bucket; let it refill.
    app.clock.advance(Duration::from_secs(10));
    for _ in 0..3 {
        let res = login_from(&app, None, &user.username, "wrong password!").await;
        assert_problem(res, 401, "invalid_credentials").await;
    }
    // Every refusal names the whole remaining lock, however often asked.
    for (named, then_wait) in [(30, 10), (20, 15), (5, 5)] {
        let wait =
            assert_rate_limited(login_from(&app, None, &user.username, PASSWORD).await).await;
        assert_eq!(wait, named);
        app.clock.advance(Duration::from_secs(then_wait));
    }
    // Waiting exactly the advertised time is enough: the request is heard.
    assert_eq!(
        login_from(&app, None, &user.username, PASSWORD)
            .await
            .status(),
        200
    );
}

async fn signup_and_both_passkey_verifies_are_limited(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "1"),
            ("RATE_LIMIT_ACCOUNT_BURST", "1"),
        ],
    )
    .await;
    // Sign-up is limited per target username.
    assert_eq!(app.signup("popular", PASSWORD).await.status(), 201);
    assert_rate_limited(app.signup("popular", PASSWORD).await).await;

    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let full = app.step_up(&user.token, &mut device).await;
    let options = app.registration_options(&full).await;
    let mut second = TestAuthenticator::new();
    let body = second.register(&options, ORIGIN).unwrap();
    let res = app
        .post_json("/passkeys/register/verify", &body, Some(&full))
        .await;
    assert_rate_limited(res).await;

    let options = app.authentication_options(&user.token).await;
    let body = device.authenticate(&options, ORIGIN).unwrap();
    let res = app
        .post_json("/passkeys/authenticate/verify", &body, Some(&user.token))
        .await;
    assert_rate_limited(res).await;
}
