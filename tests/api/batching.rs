//! Hot reads (an account with its counts, a user's passkeys) that arrive
//! together are read from the database together: each request still gets
//! its own user's data, as fresh as a lone read's, and the metrics show
//! fewer trips than reads.

use futures_util::future::join_all;
use serde_json::Value;

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;
use crate::metrics::{scrape, value};

on_both_backends!(
    concurrent_reads_of_many_users_each_answer_their_own_user,
    a_read_after_a_write_sees_it,
);

/// Metrics on, and a pool of 2: one batch of each kind under way at a time,
/// so concurrent reads queue for the next batch.
const SMALL_POOL_WITH_METRICS: [(&str, &str); 2] = [
    ("METRICS_BIND_ADDR", "127.0.0.1:0"),
    ("DATABASE_POOL_SIZE", "2"),
];

/// Reads answered and trips taken so far for `read`.
async fn batch_counts(app: &TestApp, read: &str) -> (f64, f64) {
    let samples = scrape(app).await;
    (
        value(
            &samples,
            &format!("db_batched_reads_total{{read=\"{read}\"}}"),
        ),
        value(
            &samples,
            &format!("db_read_batches_total{{read=\"{read}\"}}"),
        ),
    )
}

async fn json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn concurrent_reads_of_many_users_each_answer_their_own_user(backend: Backend) {
    let app = TestApp::spawn_with(backend, &SMALL_POOL_WITH_METRICS).await;
    // Six users: the first and third with one passkey (and so recovery
    // codes), the second with two; the others none.
    let mut users = Vec::new();
    for _ in 0..6 {
        users.push(app.new_user().await);
    }
    let mut authenticators = Vec::new();
    for user in &users[..3] {
        let mut authenticator = TestAuthenticator::new();
        app.register_passkey(&user.token, &mut authenticator).await;
        authenticators.push(authenticator);
    }
    let full = app.step_up(&users[1].token, &mut authenticators[1]).await;
    let mut second = TestAuthenticator::new();
    app.register_passkey(&full, &mut second).await;

    // What each user's reads answer alone, one at a time.
    let mut alone = Vec::new();
    for user in &users {
        let me = app.me(&user.token).await;
        let (status, profile) = json(app.get("/users/profile", Some(&user.token)).await).await;
        assert_eq!(status, 200);
        let (status, options) = json(
            app.get("/passkeys/authenticate/options", Some(&user.token))
                .await,
        )
        .await;
        alone.push((me, profile, status, options));
    }
    let counts: Vec<i64> = alone
        .iter()
        .map(|(me, ..)| me["passkeyCount"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2, 1, 0, 0, 0]);
    for (i, user) in users.iter().enumerate() {
        let (me, profile, status, options) = &alone[i];
        assert_eq!(me["username"], user.username.as_str());
        assert_eq!(profile["id"], user.id.as_str());
        assert_eq!(profile["passkeyCount"], me["passkeyCount"]);
        if i < 3 {
            assert_eq!(*status, 200);
            let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
            assert_eq!(allowed.len() as i64, counts[i], "{options}");
        } else {
            assert_eq!(*status, 409);
            assert_eq!(options["code"], "no_passkeys");
        }
    }

    // The same reads, many at once, for all six users mixed: until the
    // metrics show batches of more than one read (the first burst nearly
    // always does; a burst whose requests happened not to overlap proves
    // nothing about batches, so a few are allowed).
    let mut bursts = 0;
    loop {
        bursts += 1;
        let (reads_before, trips_before) = batch_counts(&app, "accounts").await;
        let rounds = 8;
        let requests = (0..rounds * users.len()).map(|n| {
            let i = n % users.len();
            let token = users[i].token.clone();
            let app = &app;
            async move {
                let me = app.me(&token).await;
                let (_, profile) = json(app.get("/users/profile", Some(&token)).await).await;
                let (status, options) = json(
                    app.get("/passkeys/authenticate/options", Some(&token))
                        .await,
                )
                .await;
                (i, me, profile, status, options)
            }
        });
        for (i, me, profile, status, options) in join_all(requests).await {
            let (alone_me, alone_profile, alone_status, alone_options) = &alone[i];
            assert_eq!(&me, alone_me, "user {i}");
            assert_eq!(profile["id"], alone_profile["id"], "user {i}");
            assert_eq!(profile["passkeyCount"], alone_profile["passkeyCount"]);
            assert_eq!(profile["username"], alone_profile["username"]);
            assert_eq!(status, *alone_status, "user {i}");
            let ids = |options: &Value| -> Vec<Value> {
                options["publicKey"]["allowCredentials"]
                    .as_array()
                    .map(|list| list.iter().map(|c| c["id"].clone()).collect())
                    .unwrap_or_default()
            };
            assert_eq!(ids(&options), ids(alone_options), "user {i}");
        }
        let (reads, trips) = batch_counts(&app, "accounts").await;
        let burst_reads = reads - reads_before;
        assert_eq!(burst_reads, (2 * rounds * users.len()) as f64);
        if trips - trips_before < burst_reads {
            break;
        }
        assert!(
            bursts < 5,
            "no two of {burst_reads} reads shared a trip in 5 bursts"
        );
    }
    let (passkey_reads, passkey_trips) = batch_counts(&app, "passkeys").await;
    assert!(passkey_reads >= (6 + 8 * 6) as f64, "{passkey_reads}");
    assert!(passkey_trips >= 1.0 && passkey_trips <= passkey_reads);
}

async fn a_read_after_a_write_sees_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, &SMALL_POOL_WITH_METRICS).await;
    let user = app.new_user().await;
    let others: Vec<TestUser> = join_all((0..3).map(|_| app.new_user())).await;
    // Other users' reads keep the batches busy while this account takes a
    // passkey and is read at once.
    let busy = || {
        join_all(
            others
                .iter()
                .cycle()
                .take(24)
                .map(|other| app.get("/users/profile", Some(&other.token))),
        )
    };
    let write_then_read = |token: String, mut authenticator: TestAuthenticator| {
        let app = &app;
        let reader = user.token.clone();
        async move {
            app.register_passkey(&token, &mut authenticator).await;
            let (_, profile) = json(app.get("/users/profile", Some(&reader)).await).await;
            (profile, app.me(&reader).await, authenticator)
        }
    };

    let (noise, (profile, me, mut first)) = futures_util::join!(
        busy(),
        write_then_read(user.token.clone(), TestAuthenticator::new())
    );
    assert!(noise.iter().all(|r| r.status() == 200));
    assert_eq!(profile["passkeyCount"], 1, "{profile}");
    assert_eq!(me["passkeyCount"], 1, "{me}");

    let full = app.step_up(&user.token, &mut first).await;
    let (noise, (profile, me, _)) =
        futures_util::join!(busy(), write_then_read(full, TestAuthenticator::new()));
    assert!(noise.iter().all(|r| r.status() == 200));
    assert_eq!(profile["passkeyCount"], 2, "{profile}");
    assert_eq!(me["passkeyCount"], 2, "{me}");
}
