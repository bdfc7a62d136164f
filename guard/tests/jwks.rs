//! `JwksVerifier` against a real JWKS server: caching by `max-age` and
//! `ETag`, refetch on an unknown `kid` and its throttle, key rotation and
//! removal, and a server that is down.

mod common;

use std::time::Duration;

use common::{closed_url, verifier, JwksServer, SigningKey, NOW};
use futures_util::future::join_all;
use passkey_auth_guard::{AuthLevel, Rejection};

const LONG: &str = "public, max-age=3600";

#[actix_web::test]
async fn the_set_is_fetched_on_first_use_and_kept() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], LONG).await;
    let verifier = verifier(&server.url, Duration::from_secs(5));
    assert_eq!(verifier.fetch_count(), 0);
    assert!(verifier.keys().is_empty());

    let principal = verifier.verify(&key.token("full", 0)).await.unwrap();
    assert_eq!(principal.auth_level, AuthLevel::Full);
    assert_eq!(principal.username, "alice");
    assert_eq!(server.requests(), 1);
    assert_eq!(verifier.keys().kids().collect::<Vec<_>>(), vec![key.kid()]);

    // Fresh: more tokens, the same one again, a bad one: no request.
    for _ in 0..5 {
        verifier.verify(&key.token("password", 0)).await.unwrap();
    }
    let token = key.token("full", 0);
    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(
        verifier.verify("garbage").await,
        Err(Rejection::InvalidToken)
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(verifier.fetch_count(), 1);
    // The first request was not conditional.
    assert_eq!(server.if_none_match(), vec![None]);
}

#[actix_web::test]
async fn a_rotated_in_key_is_fetched_on_its_first_token() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let server = JwksServer::start(&[&old], LONG).await;
    let verifier = verifier(&server.url, Duration::from_millis(100));
    verifier.verify(&old.token("full", 0)).await.unwrap();
    assert_eq!(server.requests(), 1);

    server.set_keys(&[&old, &new]);
    // Past the throttle interval since the last fetch.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let principal = verifier.verify(&new.token("full", 0)).await.unwrap();
    assert_eq!(principal.auth_level, AuthLevel::Full);
    assert_eq!(server.requests(), 2);
    assert_eq!(verifier.keys().len(), 2);
    // Both keys verify now, with no further request.
    verifier.verify(&old.token("password", 0)).await.unwrap();
    verifier.verify(&new.token("password", 0)).await.unwrap();
    assert_eq!(server.requests(), 2);
}

#[actix_web::test]
async fn made_up_kids_cost_one_fetch_per_interval() {
    let key = SigningKey::generate();
    let forger = SigningKey::generate();
    let server = JwksServer::start(&[&key], LONG).await;
    let verifier = verifier(&server.url, Duration::from_secs(1));
    verifier.refresh().await.unwrap();
    assert_eq!(server.requests(), 1);
    let made_up = |n: usize| forger.sign_as(&format!("made-up-{n}"), &common::claims("full", NOW));

    // Past the interval: a flood of unknown kids may fetch again, once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let flood: Vec<String> = (0..200).map(made_up).collect();
    let results = join_all(flood.iter().map(|t| verifier.verify(t))).await;
    assert!(results.iter().all(|r| *r == Err(Rejection::InvalidToken)));
    let after_flood = server.requests();
    assert!(
        (2..=3).contains(&after_flood),
        "200 unknown kids made {} fetches",
        after_flood - 1
    );

    // Within the interval, another flood fetches nothing more (at most one,
    // should the first have straddled the interval).
    let flood: Vec<String> = (200..400).map(made_up).collect();
    let results = join_all(flood.iter().map(|t| verifier.verify(t))).await;
    assert!(results.iter().all(|r| *r == Err(Rejection::InvalidToken)));
    let after_second = server.requests();
    assert!(after_second <= after_flood + 1);
    // The good key was never in doubt.
    verifier.verify(&key.token("full", 0)).await.unwrap();

    // After the interval, one more fetch is allowed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        verifier.verify(&made_up(400)).await,
        Err(Rejection::InvalidToken)
    );
    assert_eq!(server.requests(), after_second + 1);
    assert_eq!(verifier.fetch_count(), server.requests());
}

#[actix_web::test]
async fn max_age_is_respected_and_revalidated_with_if_none_match() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], "public, max-age=2").await;
    let verifier = verifier(&server.url, Duration::from_millis(100));
    verifier.verify(&key.token("full", 0)).await.unwrap();
    assert_eq!(server.requests(), 1);

    // Fresh for two seconds: no request.
    for _ in 0..3 {
        verifier.verify(&key.token("full", 0)).await.unwrap();
    }
    assert_eq!(server.requests(), 1);

    // Stale: a conditional request, answered 304, keeps the set.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    verifier.verify(&key.token("password", 0)).await.unwrap();
    assert_eq!(server.requests(), 2);
    assert_eq!(server.not_modified(), 1);
    assert_eq!(server.if_none_match(), vec![None, Some("\"1\"".to_owned())]);
    assert_eq!(verifier.keys().kids().collect::<Vec<_>>(), vec![key.kid()]);
    // And fresh again for the max-age of the 304.
    verifier.verify(&key.token("full", 0)).await.unwrap();
    assert_eq!(server.requests(), 2);

    // A changed set is fetched in full once stale again.
    let next = SigningKey::generate();
    server.set_keys(&[&key, &next]);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    verifier.verify(&next.token("full", 0)).await.unwrap();
    assert_eq!(server.requests(), 3);
    assert_eq!(server.not_modified(), 1);
    assert_eq!(server.if_none_match()[2].as_deref(), Some("\"1\""));
    assert_eq!(verifier.keys().len(), 2);
}

#[actix_web::test]
async fn without_max_age_the_default_applies() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], LONG).await;
    server.set_cache_control(None);
    server.set_etags(false);
    let mut config = common::config(&server.url, Duration::from_millis(100));
    config.default_max_age = Duration::from_secs(3600);
    let verifier = passkey_auth_guard::JwksVerifier::new(config).with_clock(|| NOW);
    verifier.verify(&key.token("full", 0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    verifier.verify(&key.token("full", 0)).await.unwrap();
    assert_eq!(server.requests(), 1);
}

#[actix_web::test]
async fn a_server_down_at_first_use_is_503_not_401() {
    let key = SigningKey::generate();
    let verifier = verifier(&closed_url(), Duration::from_secs(5));
    assert_eq!(
        verifier.verify(&key.token("full", 0)).await,
        Err(Rejection::KeysUnavailable)
    );
    assert_eq!(
        verifier.verify(&key.token("full", 0)).await,
        Err(Rejection::KeysUnavailable)
    );
    // One attempt per throttle interval, not one per request.
    assert_eq!(verifier.fetch_count(), 1);
    // An explicit refresh ignores the throttle, and says what failed.
    assert!(matches!(
        verifier.refresh().await,
        Err(passkey_auth_guard::JwksError::Http(_))
    ));
    assert_eq!(verifier.fetch_count(), 2);
    // A token that is no token is the client's fault all the same.
    assert_eq!(
        verifier.verify("garbage").await,
        Err(Rejection::InvalidToken)
    );
}

#[actix_web::test]
async fn a_failing_server_is_503_until_it_answers() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], LONG).await;
    server.set_failing(Some(500));
    let verifier = verifier(&server.url, Duration::from_millis(500));
    let token = key.token("full", 0);
    assert_eq!(
        verifier.verify(&token).await,
        Err(Rejection::KeysUnavailable)
    );
    assert_eq!(
        verifier.verify(&token).await,
        Err(Rejection::KeysUnavailable)
    );
    assert_eq!(server.requests(), 1);

    server.set_failing(None);
    tokio::time::sleep(Duration::from_millis(700)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.requests(), 2);
}

#[actix_web::test]
async fn a_server_down_later_leaves_the_last_good_set_in_use() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], "no-store").await;
    let verifier = verifier(&server.url, Duration::from_millis(200));
    verifier.verify(&key.token("full", 0)).await.unwrap();
    assert_eq!(server.requests(), 1);

    server.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stale, the fetch fails: a token never seen before still verifies.
    let principal = verifier.verify(&key.token("password", 0)).await.unwrap();
    assert_eq!(principal.auth_level, AuthLevel::Password);
    assert_eq!(verifier.fetch_count(), 2);
    assert_eq!(verifier.keys().len(), 1);
    // An unknown kid is a bad token, not an outage: the set is known.
    let stranger = SigningKey::generate();
    assert_eq!(
        verifier.verify(&stranger.token("full", 0)).await,
        Err(Rejection::InvalidToken)
    );
}

#[actix_web::test]
async fn a_broken_answer_leaves_the_last_good_set_in_use() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], "no-store").await;
    let verifier = verifier(&server.url, Duration::from_millis(200));
    verifier.verify(&key.token("full", 0)).await.unwrap();
    for status in [404, 500, 503] {
        server.set_failing(Some(status));
        tokio::time::sleep(Duration::from_millis(300)).await;
        verifier.verify(&key.token("full", 0)).await.unwrap();
    }
    assert_eq!(server.requests(), 4);
    assert_eq!(verifier.keys().len(), 1);
}

#[actix_web::test]
async fn a_removed_key_takes_its_verified_tokens_with_it() {
    let leaving = SigningKey::generate();
    let staying = SigningKey::generate();
    let server = JwksServer::start(&[&leaving, &staying], "no-store").await;
    let verifier = verifier(&server.url, Duration::from_millis(500));
    let token = leaving.token("full", 0);
    let kept = staying.token("full", 0);
    // Verified, and so remembered.
    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    verifier.verify(&kept).await.unwrap();
    assert_eq!(server.requests(), 1);

    server.set_keys(&[&staying]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(verifier.verify(&token).await, Err(Rejection::InvalidToken));
    assert_eq!(server.requests(), 2);
    assert!(!verifier.keys().contains(leaving.kid()));
    // Refused from now on, and the other key's tokens are unaffected.
    assert_eq!(verifier.verify(&token).await, Err(Rejection::InvalidToken));
    verifier.verify(&kept).await.unwrap();
}

#[actix_web::test]
async fn expiry_and_claims_are_checked_on_the_verifiers_clock() {
    let key = SigningKey::generate();
    let server = JwksServer::start(&[&key], LONG).await;
    let token = key.token("full", 0);
    // exp is NOW + 900.
    let before = common::verifier(&server.url, Duration::from_secs(5));
    before.verify(&token).await.unwrap();
    let at_exp =
        passkey_auth_guard::JwksVerifier::new(common::config(&server.url, Duration::from_secs(5)))
            .with_clock(|| NOW + 900);
    assert_eq!(at_exp.now(), NOW + 900);
    assert_eq!(at_exp.verify(&token).await, Err(Rejection::InvalidToken));
    // Another issuer or audience is refused.
    let elsewhere = passkey_auth_guard::JwksVerifier::new(passkey_auth_guard::JwksConfig::new(
        &server.url,
        "passkey-auth",
        "another-service",
    ))
    .with_clock(|| NOW);
    assert_eq!(elsewhere.verify(&token).await, Err(Rejection::InvalidToken));
}
