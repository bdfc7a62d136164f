//! Passkey ceremonies and management through the HTTP app, played by
//! software authenticators: webauthn-authenticator-rs's SoftPasskey (an
//! independent client) for the whole step-up, and the tests' own P-256
//! authenticator where a response must be altered yet correctly signed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use crate::common::authenticator::{b64, TestAuthenticator, Tweaks};
use crate::helpers::*;

on_both_backends!(
    whole_step_up_with_an_independent_software_passkey,
    registration_accepts_browser_json_and_a_nickname,
    registration_options_exclude_the_callers_credentials,
    authentication_options_allow_only_the_callers_credentials,
    authentication_options_without_passkeys_are_409,
    a_challenge_serves_one_verify_attempt,
    a_failed_verify_consumes_the_challenge,
    challenges_expire,
    challenges_are_bound_to_user_and_ceremony,
    wrong_origin_is_refused_and_nothing_is_stored,
    wrong_rp_id_is_refused_and_nothing_is_stored,
    wrong_challenge_or_ceremony_type_is_refused,
    another_users_credential_is_refused,
    user_handle_of_another_user_is_refused,
    cross_origin_assertions_are_refused,
    counter_regression_is_refused,
    a_counter_moved_on_after_the_options_is_a_regression,
    a_passkey_deleted_after_the_options_is_refused,
    concurrent_assertions_with_one_challenge_succeed_once,
    a_registered_credential_cannot_be_registered_again,
    passkey_summaries_never_show_key_material,
    rename_and_delete_with_a_full_token,
    other_users_passkey_ids_are_404,
    malformed_ceremony_bodies_are_400_naming_the_field,
);

fn origin_url() -> Url {
    Url::parse(ORIGIN).unwrap()
}

async fn verify_registration(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.post_json("/passkeys/register/verify", body, Some(token))
        .await
}

async fn verify_authentication(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.post_json("/passkeys/authenticate/verify", body, Some(token))
        .await
}

async fn whole_step_up_with_an_independent_software_passkey(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.signup("judy", PASSWORD).await.status(), 201);
    let login: Value = app.login("judy", PASSWORD).await.json().await.unwrap();
    let password_token = login["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(login["authLevel"], "password");

    let res = app.get("/protected/full", Some(&password_token)).await;
    assert!(www_authenticate(&res)
        .unwrap()
        .contains(r#"error="insufficient_user_authentication""#));
    assert_problem(res, 403, "passkey_required").await;

    let mut soft = SoftPasskey::new(true);
    let options: CreationChallengeResponse =
        serde_json::from_value(app.registration_options(&password_token).await).unwrap();
    let credential = soft
        .do_registration(origin_url(), options)
        .expect("SoftPasskey registers");
    let mut body = serde_json::to_value(&credential).unwrap();
    body["nickname"] = json!("Soft key");
    let res = verify_registration(&app, &password_token, &body).await;
    assert_eq!(res.status(), 201);
    let summary: Value = res.json().await.unwrap();
    assert_eq!(summary["nickname"], "Soft key");
    assert!(summary["lastUsedAt"].is_null());

    let options: RequestChallengeResponse =
        serde_json::from_value(app.authentication_options(&password_token).await).unwrap();
    let assertion = soft
        .do_authentication(origin_url(), options)
        .expect("SoftPasskey asserts");
    let res = verify_authentication(
        &app,
        &password_token,
        &serde_json::to_value(&assertion).unwrap(),
    )
    .await;
    assert_eq!(res.status(), 200);
    let token: Value = res.json().await.unwrap();
    assert_eq!(token["authLevel"], "full");
    assert_eq!(token["tokenType"], "Bearer");
    assert_eq!(token["expiresIn"], 900);
    let full_token = token["accessToken"].as_str().unwrap();
    let c = claims(full_token);
    assert_eq!(c["authLevel"], "full");
    assert_eq!(c["amr"], json!(["pwd", "hwk"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    assert_eq!(c["sub"], claims(&password_token)["sub"]);

    let res = app.get("/protected/full", Some(full_token)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["authLevel"], "full");
    assert!(body["message"].is_string());

    let me: Value = app
        .get("/auth/me", Some(full_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["authLevel"], "full");
    assert_eq!(me["passkeyCount"], 1);
    let list: Value = app
        .get("/passkeys", Some(full_token))
        .await
        .json()
        .await
        .unwrap();
    assert!(list[0]["lastUsedAt"].is_string(), "{list}");

    // A second step-up with the same passkey works too (counter moves on).
    let options: RequestChallengeResponse =
        serde_json::from_value(app.authentication_options(&password_token).await).unwrap();
    let assertion = soft.do_authentication(origin_url(), options).unwrap();
    let res = verify_authentication(
        &app,
        &password_token,
        &serde_json::to_value(&assertion).unwrap(),
    )
    .await;
    assert_eq!(res.status(), 200);
}

async fn registration_accepts_browser_json_and_a_nickname(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let options = app.registration_options(&user.token).await;
    // The options are the WebAuthn JSON form: no null members anywhere.
    assert!(!options.to_string().contains("null"), "{options}");
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(options["publicKey"]["user"]["name"], user.username.as_str());
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );

    let mut body = device.register(&options, ORIGIN).unwrap();
    // What toJSON() adds, plus fields a future browser might add.
    body["clientExtensionResults"] = json!({"credProps": {"rk": true}});
    body["authenticatorAttachment"] = json!("cross-platform");
    body["someFutureField"] = json!({"x": 1});
    body["response"]["anotherFutureField"] = json!(true);
    body["nickname"] = json!("Laptop");
    let res = verify_registration(&app, &user.token, &body).await;
    assert_eq!(res.status(), 201);
    let summary: Value = res.json().await.unwrap();
    assert_eq!(summary["nickname"], "Laptop");
    assert_eq!(summary["credentialId"], device.credential_id_b64());
    assert_eq!(summary["transports"], json!(["internal"]));

    // Without a nickname the passkey gets a default one (a further passkey
    // takes a fresh passkey verification).
    let full = app.step_up(&user.token, &mut device).await;
    let mut second = TestAuthenticator::new();
    let summary = app.register_passkey(&full, &mut second).await;
    assert_eq!(summary["nickname"], "Passkey");
    assert_eq!(app.passkey_count(&user.token).await, 2);

    // An invalid nickname is refused before anything is stored.
    let mut third = TestAuthenticator::new();
    let options = app.registration_options(&full).await;
    let mut body = third.register(&options, ORIGIN).unwrap();
    body["nickname"] = json!("n".repeat(65));
    let problem = assert_problem(
        verify_registration(&app, &full, &body).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("nickname"));
    body["nickname"] = json!(7);
    assert_problem(
        verify_registration(&app, &full, &body).await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(app.passkey_count(&user.token).await, 2);
}

async fn registration_options_exclude_the_callers_credentials(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let mut a1 = TestAuthenticator::new();
    let mut b1 = TestAuthenticator::new();
    app.register_passkey(&alice.token, &mut a1).await;
    app.register_passkey(&bob.token, &mut b1).await;

    let full = app.step_up(&alice.token, &mut a1).await;
    let options = app.registration_options(&full).await;
    let excluded: Vec<&str> = options["publicKey"]["excludeCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(excluded, [a1.credential_id_b64()]);
    // A real authenticator refuses to register a second time.
    assert!(a1.register(&options, ORIGIN).is_err());
}

async fn authentication_options_allow_only_the_callers_credentials(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let (mut a1, mut a2, mut b1) = (
        TestAuthenticator::new(),
        TestAuthenticator::new(),
        TestAuthenticator::new(),
    );
    app.register_passkey(&alice.token, &mut a1).await;
    let full = app.step_up(&alice.token, &mut a1).await;
    app.register_passkey(&full, &mut a2).await;
    app.register_passkey(&bob.token, &mut b1).await;

    let options = app.authentication_options(&alice.token).await;
    let mut allowed: Vec<String> = options["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    allowed.sort();
    let mut expected = vec![a1.credential_id_b64(), a2.credential_id_b64()];
    expected.sort();
    assert_eq!(allowed, expected);
    assert_eq!(options["publicKey"]["rpId"], "localhost");
    assert_eq!(options["publicKey"]["userVerification"], "required");
    // Either of the caller's passkeys completes the step-up.
    let response = a2.authenticate(&options, ORIGIN).unwrap();
    assert_eq!(
        verify_authentication(&app, &alice.token, &response)
            .await
            .status(),
        200
    );
}

async fn authentication_options_without_passkeys_are_409(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let res = app
        .get("/passkeys/authenticate/options", Some(&user.token))
        .await;
    assert_problem(res, 409, "no_passkeys").await;
}

async fn a_challenge_serves_one_verify_attempt(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();

    let options = app.registration_options(&user.token).await;
    let body = device.register(&options, ORIGIN).unwrap();
    assert_eq!(
        verify_registration(&app, &user.token, &body).await.status(),
        201
    );
    let registration = body;

    let options = app.authentication_options(&user.token).await;
    let body = device.authenticate(&options, ORIGIN).unwrap();
    let res = verify_authentication(&app, &user.token, &body).await;
    assert_eq!(res.status(), 200);
    let full: Value = res.json().await.unwrap();
    let full = full["accessToken"].as_str().unwrap();
    let replay = verify_authentication(&app, &user.token, &body).await;
    assert_challenge_expired(replay).await;
    // The registration, replayed by a caller the recent guard admits.
    let replay = verify_registration(&app, full, &registration).await;
    assert_challenge_expired(replay).await;

    // Verify with no options at all.
    let fresh = app.new_user().await;
    let res = verify_authentication(&app, &fresh.token, &body).await;
    assert_challenge_expired(res).await;
}

async fn a_failed_verify_consumes_the_challenge(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let options = app.registration_options(&user.token).await;
    let bad = device
        .register_with(
            &options,
            ORIGIN,
            &Tweaks {
                origin: Some("https://evil.example".into()),
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(verify_registration(&app, &user.token, &bad).await).await;
    let good = device.register(&options, ORIGIN).unwrap();
    assert_challenge_expired(verify_registration(&app, &user.token, &good).await).await;

    app.register_passkey(&user.token, &mut device).await;
    let options = app.authentication_options(&user.token).await;
    let bad = device
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                rp_id: Some("evil.example".into()),
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(verify_authentication(&app, &user.token, &bad).await).await;
    let good = device.authenticate(&options, ORIGIN).unwrap();
    assert_challenge_expired(verify_authentication(&app, &user.token, &good).await).await;
}

async fn challenges_expire(backend: Backend) {
    // A step-up window longer than the clock moves: only the challenges expire.
    let app = TestApp::spawn_with(backend, &[("STEP_UP_MAX_AGE_SECS", "3600")]).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();

    let options = app.registration_options(&user.token).await;
    let body = device.register(&options, ORIGIN).unwrap();
    app.clock.advance(Duration::from_secs(301));
    assert_challenge_expired(verify_registration(&app, &user.token, &body).await).await;
    assert_eq!(app.passkey_count(&user.token).await, 0);

    // Just inside the lifetime it still works.
    let options = app.registration_options(&user.token).await;
    let body = device.register(&options, ORIGIN).unwrap();
    app.clock.advance(Duration::from_secs(299));
    assert_eq!(
        verify_registration(&app, &user.token, &body).await.status(),
        201
    );

    let options = app.authentication_options(&user.token).await;
    let body = device.authenticate(&options, ORIGIN).unwrap();
    app.clock.advance(Duration::from_secs(300));
    assert_challenge_expired(verify_authentication(&app, &user.token, &body).await).await;
}

async fn challenges_are_bound_to_user_and_ceremony(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let mut device = TestAuthenticator::new();

    // Alice's registration challenge cannot be answered by Bob.
    let options = app.registration_options(&alice.token).await;
    let body = device.register(&options, ORIGIN).unwrap();
    assert_challenge_expired(verify_registration(&app, &bob.token, &body).await).await;
    // ...and it is still Alice's to use.
    assert_eq!(
        verify_registration(&app, &alice.token, &body)
            .await
            .status(),
        201
    );

    // A registration challenge does not serve an authentication verify.
    let full = app.step_up(&alice.token, &mut device).await;
    let mut other = TestAuthenticator::new();
    let reg_options = app.registration_options(&full).await;
    let assertion = device
        .authenticate_with(
            &reg_options,
            ORIGIN,
            &Tweaks {
                ignore_allow_list: true,
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_challenge_expired(verify_authentication(&app, &alice.token, &assertion).await).await;
    // The registration challenge is untouched by that attempt.
    let body = other.register(&reg_options, ORIGIN).unwrap();
    assert_eq!(verify_registration(&app, &full, &body).await.status(), 201);
}

async fn wrong_origin_is_refused_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    for origin in [
        "https://evil.example",
        "http://localhost:3001",
        "https://localhost:3000",
    ] {
        let mut device = TestAuthenticator::new();
        let options = app.registration_options(&user.token).await;
        let body = device.register(&options, origin).unwrap();
        assert_verification_failed(verify_registration(&app, &user.token, &body).await).await;
    }
    assert_eq!(app.passkey_count(&user.token).await, 0);

    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let options = app.authentication_options(&user.token).await;
    let body = device
        .authenticate(&options, "https://evil.example")
        .unwrap();
    assert_verification_failed(verify_authentication(&app, &user.token, &body).await).await;
    let list: Value = app
        .get("/passkeys", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        list[0]["lastUsedAt"].is_null(),
        "a failed assertion changed the passkey"
    );
}

async fn wrong_rp_id_is_refused_and_nothing_is_stored(backend: Backend) {
    // The origin is right (a subdomain the RP ID covers); only the RP ID
    // hashed by the authenticator is wrong.
    let origin = "https://login.example.com";
    let app =
        TestApp::spawn_with(backend, &[("RP_ID", "example.com"), ("RP_ORIGIN", origin)]).await;
    let user = app.new_user().await;
    let wrong_rp = Tweaks {
        rp_id: Some("login.example.com".into()),
        ..Tweaks::default()
    };
    let mut device = TestAuthenticator::new();
    let options = app.registration_options(&user.token).await;
    assert_eq!(options["publicKey"]["rp"]["id"], "example.com");
    let body = device.register_with(&options, origin, &wrong_rp).unwrap();
    assert_verification_failed(verify_registration(&app, &user.token, &body).await).await;
    assert_eq!(app.passkey_count(&user.token).await, 0);

    let options = app.registration_options(&user.token).await;
    let body = device.register(&options, origin).unwrap();
    assert_eq!(
        verify_registration(&app, &user.token, &body).await.status(),
        201
    );
    let options = app.authentication_options(&user.token).await;
    let body = device
        .authenticate_with(&options, origin, &wrong_rp)
        .unwrap();
    assert_verification_failed(verify_authentication(&app, &user.token, &body).await).await;
    let options = app.authentication_options(&user.token).await;
    let body = device.authenticate(&options, origin).unwrap();
    assert_eq!(
        verify_authentication(&app, &user.token, &body)
            .await
            .status(),
        200
    );
}

async fn wrong_challenge_or_ceremony_type_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let other_challenge = Tweaks {
        challenge: Some(b64(b"a challenge the server never issued")),
        ..Tweaks::default()
    };
    let options = app.registration_options(&user.token).await;
    let body = device
        .register_with(&options, ORIGIN, &other_challenge)
        .unwrap();
    assert_verification_failed(verify_registration(&app, &user.token, &body).await).await;

    app.register_passkey(&user.token, &mut device).await;
    for tweaks in [
        other_challenge.clone(),
        Tweaks {
            ceremony_type: Some("webauthn.create".into()),
            ..Tweaks::default()
        },
    ] {
        let options = app.authentication_options(&user.token).await;
        let body = device.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
        assert_verification_failed(verify_authentication(&app, &user.token, &body).await).await;
    }
}

async fn another_users_credential_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.new_user().await;
    let mallory = app.new_user().await;
    let mut alice_key = TestAuthenticator::new();
    let mut mallory_key = TestAuthenticator::new();
    app.register_passkey(&alice.token, &mut alice_key).await;
    app.register_passkey(&mallory.token, &mut mallory_key).await;

    // Mallory holds (a copy of) Alice's authenticator and answers her own challenge with it.
    let options = app.authentication_options(&mallory.token).await;
    let body = alice_key
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                ignore_allow_list: true,
                user_handle: Some(None),
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(verify_authentication(&app, &mallory.token, &body).await).await;

    // Mallory claims Alice's credential id but signs with her own key.
    let options = app.authentication_options(&mallory.token).await;
    let body = mallory_key
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                credential_id: Some(alice_key.credential_id_b64()),
                ignore_allow_list: true,
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(verify_authentication(&app, &mallory.token, &body).await).await;
}

/// A user with one passkey answers a fresh authentication challenge with
/// `tweaks`: the server must refuse it.
async fn assert_tweaked_assertion_refused(app: &TestApp, tweaks: Tweaks) {
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let options = app.authentication_options(&user.token).await;
    let body = device.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_verification_failed(verify_authentication(app, &user.token, &body).await).await;
}

async fn user_handle_of_another_user_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tweaks = Tweaks {
        user_handle: Some(Some(b64(uuid::Uuid::new_v4().as_bytes()))),
        ..Tweaks::default()
    };
    assert_tweaked_assertion_refused(&app, tweaks).await;
}

async fn cross_origin_assertions_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tweaks = Tweaks {
        cross_origin: Some(true),
        ..Tweaks::default()
    };
    assert_tweaked_assertion_refused(&app, tweaks).await;
}

async fn counter_regression_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let mut clone = device.clone_device();

    // The original moves its counter to 5.
    device.set_counter(4);
    app.step_up(&user.token, &mut device).await;
    assert_eq!(device.counter(), 5);

    // The clone, at counter 1, is refused; so are equal and lower counters.
    for counter in [1, 5, 3] {
        let options = app.authentication_options(&user.token).await;
        let body = clone
            .authenticate_with(
                &options,
                ORIGIN,
                &Tweaks {
                    counter: Some(counter),
                    ..Tweaks::default()
                },
            )
            .unwrap();
        assert_verification_failed(verify_authentication(&app, &user.token, &body).await).await;
    }
    // A zero counter after a non-zero one is a regression too.
    let options = app.authentication_options(&user.token).await;
    let body = clone
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                counter: Some(0),
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(verify_authentication(&app, &user.token, &body).await).await;

    // The genuine authenticator carries on from its own counter.
    app.step_up(&user.token, &mut device).await;
    assert_eq!(device.counter(), 6);
}

/// The ceremony holds the passkey as it was when the options were made;
/// the stored counter, not that copy, decides.
async fn a_counter_moved_on_after_the_options_is_a_regression(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::discoverable();
    app.register_passkey(&user.token, &mut device).await;
    let mut clone = device.clone_device();
    let options = app.authentication_options(&user.token).await;

    // Meanwhile the clone signs in with a higher counter.
    clone.set_counter(9);
    app.sign_in_with_passkey(&mut clone).await;

    // Above the counter the options held, below the stored one: refused.
    let body = device.authenticate(&options, ORIGIN).unwrap();
    assert!(device.counter() < 10);
    assert_verification_failed(verify_authentication(&app, &user.token, &body).await).await;
    let kinds = app.event_kinds(&user.token).await;
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("counter_regression"),
        "{kinds:?}"
    );

    // Past the stored counter, a new ceremony succeeds and stores it.
    device.set_counter(10);
    let full = app.step_up(&user.token, &mut device).await;
    assert_eq!(claims(&full)["authLevel"], "full");
    let kinds = app.event_kinds(&user.token).await;
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("passkey_verified"),
        "{kinds:?}"
    );
}

async fn a_passkey_deleted_after_the_options_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut first = TestAuthenticator::new();
    let summary = app.register_passkey(&user.token, &mut first).await;
    let full = app.step_up(&user.token, &mut first).await;
    let mut second = TestAuthenticator::new();
    app.register_passkey(&full, &mut second).await;

    let options = app.authentication_options(&user.token).await;
    let res = app
        .delete(
            &format!("/passkeys/{}", summary["id"].as_str().unwrap()),
            Some(&full),
        )
        .await;
    assert_eq!(res.status(), 204);
    let verified = |kinds: &[String]| kinds.iter().filter(|k| *k == "passkey_verified").count();
    let verified_before = verified(&app.event_kinds(&full).await);

    let body = first.authenticate(&options, ORIGIN).unwrap();
    assert_verification_failed(verify_authentication(&app, &user.token, &body).await).await;
    let kinds = app.event_kinds(&full).await;
    assert_eq!(verified(&kinds), verified_before, "{kinds:?}");
    assert_eq!(app.passkey_count(&full).await, 1);
    // The passkey left is still good for a step-up.
    app.step_up(&user.token, &mut second).await;
}

async fn concurrent_assertions_with_one_challenge_succeed_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let options = app.authentication_options(&user.token).await;
    let body = device.authenticate(&options, ORIGIN).unwrap();
    let statuses = app
        .concurrent_posts("/passkeys/authenticate/verify", &body, &user.token, 6)
        .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 400),
        "{statuses:?}"
    );
}

async fn a_registered_credential_cannot_be_registered_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&alice.token, &mut device).await;
    let full = app.step_up(&alice.token, &mut device).await;

    // The same credential for another user.
    let options = app.registration_options(&bob.token).await;
    let body = device.register(&options, ORIGIN).unwrap();
    assert_problem(
        verify_registration(&app, &bob.token, &body).await,
        409,
        "credential_exists",
    )
    .await;
    assert_eq!(app.passkey_count(&bob.token).await, 0);

    // The same credential again for its owner, past the exclude list.
    let options = app.registration_options(&full).await;
    let body = device
        .register_with(
            &options,
            ORIGIN,
            &Tweaks {
                ignore_exclude_list: true,
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_problem(
        verify_registration(&app, &full, &body).await,
        409,
        "credential_exists",
    )
    .await;
    assert_eq!(app.passkey_count(&alice.token).await, 1);
}

async fn passkey_summaries_never_show_key_material(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    device.set_backup_flags(true, true);
    let mut summary = app.register_passkey(&user.token, &mut device).await;
    // The first passkey's answer also carries the recovery codes, once.
    let codes = summary.as_object_mut().unwrap().remove("recoveryCodes");
    assert_eq!(codes.unwrap().as_array().unwrap().len(), 10);
    let list: Value = app
        .get("/passkeys", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0], summary);
    assert_eq!(
        sorted_keys(&summary),
        [
            "backupEligible",
            "backupState",
            "createdAt",
            "credentialId",
            "discoverable",
            "id",
            "lastUsedAt",
            "nickname",
            "transports"
        ]
    );
    assert_eq!(summary["backupEligible"], true);
    assert_eq!(summary["backupState"], true);
    let text = summary.to_string();
    for forbidden in ["counter", "publicKey", "cred\"", "EC_EC2"] {
        assert!(!text.contains(forbidden), "{text}");
    }
}

async fn rename_and_delete_with_a_full_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let summary = app.register_passkey(&user.token, &mut device).await;
    let id = summary["id"].as_str().unwrap();
    let full = app.step_up(&user.token, &mut device).await;

    let path = format!("/passkeys/{id}");
    let res = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"nickname": "Work YubiKey"}),
            Some(&full),
        )
        .await;
    assert_eq!(res.status(), 200);
    let renamed: Value = res.json().await.unwrap();
    assert_eq!(renamed["nickname"], "Work YubiKey");
    assert_eq!(renamed["id"], id);

    for bad in [
        json!({"nickname": ""}),
        json!({"nickname": "x".repeat(65)}),
        json!({}),
        json!({"nickname": null}),
    ] {
        let res = app.send_json(Method::PATCH, &path, &bad, Some(&full)).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("nickname"),
            "{bad}"
        );
    }

    let res = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(res.text().await.unwrap(), "");
    assert_eq!(app.passkey_count(&full).await, 0);
    let res = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&full)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    // Without passkeys there is nothing to step up with.
    let res = app
        .get("/passkeys/authenticate/options", Some(&user.token))
        .await;
    assert_problem(res, 409, "no_passkeys").await;
}

async fn other_users_passkey_ids_are_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let mut alice_key = TestAuthenticator::new();
    let mut bob_key = TestAuthenticator::new();
    let alice_passkey = app.register_passkey(&alice.token, &mut alice_key).await;
    app.register_passkey(&bob.token, &mut bob_key).await;
    let bob_full = app.step_up(&bob.token, &mut bob_key).await;

    let alice_path = format!("/passkeys/{}", alice_passkey["id"].as_str().unwrap());
    let res = app
        .send_json(
            Method::PATCH,
            &alice_path,
            &json!({"nickname": "mine now"}),
            Some(&bob_full),
        )
        .await;
    assert_problem(res, 404, "not_found").await;
    let res = app
        .client
        .delete(app.url(&alice_path))
        .bearer_auth(&bob_full)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    for id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let res = app
            .client
            .delete(app.url(&format!("/passkeys/{id}")))
            .bearer_auth(&bob_full)
            .send()
            .await
            .unwrap();
        assert_problem(res, 404, "not_found").await;
    }
    // Alice's passkey is untouched.
    let list: Value = app
        .get("/passkeys", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["nickname"], "Passkey");
}

async fn malformed_ceremony_bodies_are_400_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let options = app.registration_options(&user.token).await;
    let good = device.register(&options, ORIGIN).unwrap();

    let mut missing = good.clone();
    missing["response"]
        .as_object_mut()
        .unwrap()
        .remove("clientDataJSON");
    let mut not_base64 = good.clone();
    not_base64["response"]["attestationObject"] = json!("***");
    let mut wrong_type = good.clone();
    wrong_type["rawId"] = json!(12);
    for (body, field) in [
        (missing, "clientDataJSON"),
        (not_base64, "attestationObject"),
        (wrong_type, "rawId"),
        (json!([]), "object"),
    ] {
        let res = verify_registration(&app, &user.token, &body).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{problem}"
        );
    }
    // Garbage binary that parses as base64url is a verification failure, not a 500.
    let options = app.registration_options(&user.token).await;
    let mut garbage = device.register(&options, ORIGIN).unwrap();
    garbage["response"]["attestationObject"] = json!(b64(b"definitely not CBOR"));
    assert_verification_failed(verify_registration(&app, &user.token, &garbage).await).await;

    app.register_passkey(&user.token, &mut device).await;
    app.authentication_options(&user.token).await;
    let res = verify_authentication(
        &app,
        &user.token,
        &json!({"id": "x", "rawId": "eA", "type": "public-key"}),
    )
    .await;
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("response"),
        "{problem}"
    );
}
