//! Passkey sign-in (`GET /passkeys/login/options`, `POST
//! /passkeys/login/verify`): a discoverable passkey alone starts a new
//! session at the full level with `amr: ["hwk"]`. Every refusal is the same
//! 401 `passkey_verification_failed` and changes nothing; the challenge is
//! single use; the in-process challenge store is bounded in bytes; the
//! options are rate limited per IP, the verify per IP and credential;
//! `PASSKEY_SIGN_IN=off` removes both routes. (The two-node case is in
//! `redis.rs`.)

use std::time::Duration;

use chrono::NaiveDateTime;
use serde_json::{json, Value};
use uuid::Uuid;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use crate::common::authenticator::{b64, b64_decode, TestAuthenticator, Tweaks, FLAG_UP};
use crate::helpers::*;

on_both_backends!(
    a_discoverable_passkey_signs_in_to_a_new_full_session,
    sign_in_options_are_request_options_with_an_empty_allow_list,
    an_independent_software_passkey_signs_in_given_the_credential_and_handle,
    discoverable_follows_cred_props_and_registration_prefers_resident_keys,
    refusals_are_401_and_change_nothing,
    a_replayed_sign_in_is_refused_and_changes_nothing,
    step_up_and_sign_in_challenges_do_not_cross,
    a_sign_in_challenge_serves_one_attempt_and_expires,
    concurrent_verifies_of_one_response_succeed_once,
    malformed_sign_in_bodies_are_400_naming_the_field,
    a_full_challenge_store_refuses_options_and_the_server_keeps_serving,
    sign_in_options_are_rate_limited_per_ip,
    sign_in_verify_is_rate_limited_per_credential,
    sign_in_can_be_turned_off,
    an_unknown_credential_and_a_bad_signature_answer_identically,
    sign_ins_and_their_failures_are_audited,
);

const SIGN_IN_VERIFY: &str = "/passkeys/login/verify";

/// The stored state a refused sign-in must leave alone.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    sign_count: i64,
    last_used_at: Option<NaiveDateTime>,
    /// The account's sessions, ended ones included.
    sessions: i64,
    refresh_tokens: i64,
}

fn stored(app: &TestApp, user_id: &str, credential: &str) -> Stored {
    use diesel::prelude::*;
    use passkey_auth::schema::{passkeys, refresh_tokens, sessions};
    let mut conn = app.db();
    let (sign_count, last_used_at): (i64, Option<NaiveDateTime>) = passkeys::table
        .filter(passkeys::credential_id.eq(credential))
        .select((passkeys::sign_count, passkeys::last_used_at))
        .first(&mut conn)
        .expect("the passkey is stored");
    let sessions: i64 = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .count()
        .get_result(&mut conn)
        .unwrap();
    let session_ids: Vec<String> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .select(sessions::id)
        .load(&mut conn)
        .unwrap();
    let refresh_tokens: i64 = refresh_tokens::table
        .filter(refresh_tokens::session_id.eq_any(session_ids))
        .count()
        .get_result(&mut conn)
        .unwrap();
    Stored {
        sign_count,
        last_used_at,
        sessions,
        refresh_tokens,
    }
}

/// A user with a registered discoverable passkey (the test authenticator).
struct SignInUser {
    user: TestUser,
    device: TestAuthenticator,
    /// The user handle the device sends (the user's UUID bytes, base64url).
    handle: String,
}

async fn user_with_passkey(app: &TestApp) -> SignInUser {
    let user = app.new_user().await;
    let mut device = TestAuthenticator::discoverable();
    let summary = app.register_passkey(&user.token, &mut device).await;
    assert_eq!(summary["discoverable"], true, "{summary}");
    let handle = device.user_handle().expect("registered").to_owned();
    SignInUser {
        user,
        device,
        handle,
    }
}

fn handle_of(user_id: &str) -> String {
    b64(Uuid::parse_str(user_id).unwrap().as_bytes())
}

fn sid(token: &str) -> String {
    claims(token)["sid"].as_str().unwrap().to_owned()
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let res = app.get("/auth/sessions", Some(token)).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The response with one bit of its signature flipped (the last byte of
/// the DER `s`: still well-formed DER, no longer a valid signature).
fn with_tampered_signature(mut response: Value) -> Value {
    let mut signature = b64_decode(response["response"]["signature"].as_str().unwrap()).unwrap();
    *signature.last_mut().unwrap() ^= 0x01;
    response["response"]["signature"] = json!(b64(&signature));
    response
}

async fn a_discoverable_passkey_signs_in_to_a_new_full_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser {
        user,
        mut device,
        handle,
    } = user_with_passkey(&app).await;
    assert_eq!(handle, handle_of(&user.id), "userHandle is the user's UUID");
    let before = stored(&app, &user.id, &device.credential_id_b64());
    assert_eq!(before.last_used_at, None);
    // The sign-in happens later than the password login.
    app.clock.advance(Duration::from_secs(30));

    let options = app.sign_in_options().await;
    let response = device.authenticate(&options, ORIGIN).unwrap();
    assert_eq!(response["response"]["userHandle"], handle.as_str());
    let res = app.sign_in_verify(&response).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let answer: Value = res.json().await.unwrap();
    assert_eq!(
        sorted_keys(&answer),
        [
            "accessToken",
            "authLevel",
            "expiresIn",
            "refreshExpiresIn",
            "refreshToken",
            "tokenType"
        ]
    );
    assert_eq!(answer["authLevel"], "full");
    assert_eq!(answer["tokenType"], "Bearer");
    assert_eq!(answer["expiresIn"], 900);
    assert_eq!(answer["refreshExpiresIn"], 14 * 86_400);
    let full = answer["accessToken"].as_str().unwrap().to_owned();
    let refresh = answer["refreshToken"].as_str().unwrap().to_owned();
    let c = claims(&full);
    assert_eq!(c["sub"], user.id.as_str());
    assert_eq!(c["username"], user.username.as_str());
    assert_eq!(c["authLevel"], "full");
    assert_eq!(c["acr"], "full");
    assert_eq!(c["amr"], json!(["hwk"]));
    let signed_in_at = app.clock_secs();
    assert_eq!(c["auth_time"], signed_in_at);
    assert_eq!(c["iat"], signed_in_at);
    let new_sid = sid(&full);
    assert_ne!(new_sid, sid(&user.token), "a new session");

    // The full level opens full routes (and recent ones: it is fresh).
    assert_eq!(app.get("/protected/full", Some(&full)).await.status(), 200);
    assert_eq!(app.me(&full).await["authLevel"], "full");
    let list = sessions(&app, &full).await;
    assert_eq!(list.len(), 2, "the login's and the sign-in's: {list:?}");
    assert_eq!(list[0]["id"], new_sid.as_str());
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["id"], sid(&user.token).as_str());

    // The assertion was recorded: the counter moved, lastUsedAt is set.
    let after = stored(&app, &user.id, &device.credential_id_b64());
    assert_eq!(after.sign_count, 1);
    assert!(after.last_used_at.is_some());
    assert_eq!(after.sessions, before.sessions + 1);
    let list: Value = app
        .get("/passkeys", Some(&full))
        .await
        .json()
        .await
        .unwrap();
    assert!(list[0]["lastUsedAt"].is_string(), "{list}");

    // Refreshing: password level, the sign-in's amr and auth_time, same session.
    app.clock.advance(Duration::from_secs(60));
    let res = app.refresh(&refresh).await;
    assert_eq!(res.status(), 200);
    let refreshed: Value = res.json().await.unwrap();
    assert_eq!(refreshed["authLevel"], "password");
    let next_refresh = refreshed["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(next_refresh, refresh);
    let password_token = refreshed["accessToken"].as_str().unwrap().to_owned();
    let c = claims(&password_token);
    assert_eq!(c["authLevel"], "password");
    assert_eq!(c["acr"], "password");
    assert_eq!(c["amr"], json!(["hwk"]));
    assert_eq!(
        c["auth_time"], signed_in_at,
        "refresh never moves auth_time"
    );
    assert_eq!(c["sid"], new_sid.as_str());
    assert_eq!(
        app.get("/protected/basic", Some(&password_token))
            .await
            .status(),
        200
    );
    let res = app.get("/protected/full", Some(&password_token)).await;
    assert_problem(res, 403, "passkey_required").await;

    // Logout ends the sign-in's session: every token of it is refused,
    // the login's session lives on.
    let res = app
        .post_json("/auth/logout", &json!({}), Some(&password_token))
        .await;
    assert_eq!(res.status(), 204);
    for token in [&full, &password_token] {
        let res = app.get("/protected/basic", Some(token)).await;
        assert_problem(res, 401, "invalid_token").await;
    }
    assert_problem(
        app.refresh(&next_refresh).await,
        401,
        "invalid_refresh_token",
    )
    .await;
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
    assert_eq!(sessions(&app, &user.token).await.len(), 1);

    // The passkey signs in again (counter 2), to yet another session.
    let again = app.sign_in_with_passkey(&mut device).await;
    let again_sid = sid(again["accessToken"].as_str().unwrap());
    assert_ne!(again_sid, new_sid);
    assert_eq!(
        stored(&app, &user.id, &device.credential_id_b64()).sign_count,
        2
    );
}

async fn sign_in_options_are_request_options_with_an_empty_allow_list(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/passkeys/login/options", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let options: Value = res.json().await.unwrap();
    // `{"publicKey": ...}` alone: mediation is the page's choice.
    assert_eq!(sorted_keys(&options), ["publicKey"], "{options}");
    let pk = &options["publicKey"];
    assert_eq!(pk["allowCredentials"], json!([]), "{options}");
    assert_eq!(pk["userVerification"], "required");
    assert_eq!(pk["rpId"], "localhost");
    let challenge = pk["challenge"].as_str().unwrap();
    assert_eq!(b64_decode(challenge).unwrap().len(), 32, "{challenge}");
    assert!(!options.to_string().contains("null"), "{options}");
    // webauthn-rs's own type reads it (the JSON form is its form).
    let _: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
    // Each options request is a new challenge.
    let other = app.sign_in_options().await;
    assert_ne!(other["publicKey"]["challenge"], pk["challenge"]);
    // A token is not needed, and one does not change the answer.
    let user = app.new_user().await;
    let res = app.get("/passkeys/login/options", Some(&user.token)).await;
    assert_eq!(res.status(), 200);
}

/// webauthn-authenticator-rs 0.6's SoftPasskey cannot sign in by itself: it
/// makes no resident keys (it refuses `requireResidentKey: true` and, with
/// `residentKey: "preferred"`, makes a server-side credential), answers only
/// a non-empty `allowCredentials` naming its credential, returns no
/// `userHandle`, and reports no `credProps`. So here the "browser" fills in
/// what a discoverable credential would carry: the credential in
/// `allowCredentials` (client-side only: the server's options stay empty)
/// and the user handle (which is not signed). The server's verification
/// of an independent client's signature and clientDataJSON is what this
/// shows.
async fn an_independent_software_passkey_signs_in_given_the_credential_and_handle(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let origin = Url::parse(ORIGIN).unwrap();
    let mut soft = SoftPasskey::new(true);
    let options: CreationChallengeResponse =
        serde_json::from_value(app.registration_options(&user.token).await).unwrap();
    let credential = soft
        .do_registration(origin.clone(), options)
        .expect("SoftPasskey registers with residentKey preferred");
    let res = app
        .post_json(
            "/passkeys/register/verify",
            &serde_json::to_value(&credential).unwrap(),
            Some(&user.token),
        )
        .await;
    assert_eq!(res.status(), 201);
    let summary: Value = res.json().await.unwrap();
    assert!(
        summary["discoverable"].is_null(),
        "SoftPasskey reports no credProps: {summary}"
    );
    let credential_id = summary["credentialId"].as_str().unwrap().to_owned();

    // As the server sends them, SoftPasskey has nothing to offer.
    let options: RequestChallengeResponse =
        serde_json::from_value(app.sign_in_options().await).unwrap();
    assert!(soft.do_authentication(origin.clone(), options).is_err());

    // The credential named client-side: an assertion with no userHandle,
    // which the server refuses (it names no user).
    let mut options = app.sign_in_options().await;
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let assertion =
        serde_json::to_value(soft.do_authentication(origin.clone(), options).unwrap()).unwrap();
    assert!(assertion["response"]["userHandle"].is_null(), "{assertion}");
    assert_verification_failed(app.sign_in_verify(&assertion).await).await;

    // With the user handle a discoverable credential returns: signed in.
    let mut options = app.sign_in_options().await;
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let mut assertion =
        serde_json::to_value(soft.do_authentication(origin, options).unwrap()).unwrap();
    assertion["response"]["userHandle"] = json!(handle_of(&user.id));
    let res = app.sign_in_verify(&assertion).await;
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["authLevel"], "full");
    assert!(answer["refreshToken"].is_string());
    let c = claims(answer["accessToken"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["hwk"]));
    assert_eq!(c["sub"], user.id.as_str());
    assert_ne!(c["sid"], claims(&user.token)["sid"]);
}

async fn discoverable_follows_cred_props_and_registration_prefers_resident_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let options = app.registration_options(&user.token).await;
    let selection = &options["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "preferred", "{options}");
    assert_eq!(selection["requireResidentKey"], false, "{options}");
    assert_eq!(selection["userVerification"], "required", "{options}");
    assert_eq!(
        options["publicKey"]["extensions"]["credProps"], true,
        "credProps is requested: {options}"
    );

    // rk=true, rk=false, no credProps, credProps without rk: one user each
    // (each a first passkey, straight after the password login).
    let cases: [(&str, Option<bool>, Option<Value>, Value); 4] = [
        ("rk true", Some(true), None, json!(true)),
        ("rk false", Some(false), None, json!(false)),
        ("no credProps", None, None, Value::Null),
        (
            "credProps without rk",
            None,
            Some(json!({"credProps": {}})),
            Value::Null,
        ),
    ];
    for (name, rk, extensions, expected) in cases {
        let user = app.new_user().await;
        let mut device = TestAuthenticator::new();
        device.set_cred_props_rk(rk);
        let options = app.registration_options(&user.token).await;
        let mut body = device.register(&options, ORIGIN).unwrap();
        if let Some(extensions) = extensions {
            body["clientExtensionResults"] = extensions;
        }
        let res = app
            .post_json("/passkeys/register/verify", &body, Some(&user.token))
            .await;
        assert_eq!(res.status(), 201, "{name}");
        let summary: Value = res.json().await.unwrap();
        assert_eq!(summary["discoverable"], expected, "{name}: {summary}");
        let list: Value = app
            .get("/passkeys", Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list[0]["discoverable"], expected, "{name}: {list}");
        // The member is there even when null.
        assert!(
            list[0].as_object().unwrap().contains_key("discoverable"),
            "{list}"
        );
    }
}

/// Each case: fresh options, an assertion altered one way, 401
/// `passkey_verification_failed`, and the counter, lastUsedAt, sessions and
/// refresh tokens exactly as before. Then the honest device still signs in.
async fn refusals_are_401_and_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser {
        user: alice,
        device: mut alice_key,
        handle: alice_handle,
    } = user_with_passkey(&app).await;
    let SignInUser {
        user: bob,
        handle: bob_handle,
        ..
    } = user_with_passkey(&app).await;
    // Alice signs in once, so her counter is 1 (for the regressions).
    app.sign_in_with_passkey(&mut alice_key).await;
    let credential = alice_key.credential_id_b64();
    let before = stored(&app, &alice.id, &credential);
    assert_eq!(before.sign_count, 1);
    let bob_credential = credential_of(&app, &bob.id);
    let bob_before = stored(&app, &bob.id, &bob_credential);

    let mut stranger = TestAuthenticator::discoverable();
    type Case = (&'static str, bool, Tweaks);
    let cases: Vec<Case> = vec![
        (
            "unknown credential id, Alice's handle",
            true,
            Tweaks {
                user_handle: Some(Some(alice_handle.clone())),
                ..Tweaks::default()
            },
        ),
        (
            "Alice's credential id, signed with another key",
            true,
            Tweaks {
                user_handle: Some(Some(alice_handle.clone())),
                credential_id: Some(credential.clone()),
                ..Tweaks::default()
            },
        ),
        (
            "user handle of another existing user",
            false,
            Tweaks {
                user_handle: Some(Some(bob_handle.clone())),
                ..Tweaks::default()
            },
        ),
        (
            "user handle naming no user",
            false,
            Tweaks {
                user_handle: Some(Some(handle_of(&Uuid::new_v4().to_string()))),
                ..Tweaks::default()
            },
        ),
        (
            "user handle that is not a UUID",
            false,
            Tweaks {
                user_handle: Some(Some(b64(b"alice"))),
                ..Tweaks::default()
            },
        ),
        (
            "empty user handle",
            false,
            Tweaks {
                user_handle: Some(Some(String::new())),
                ..Tweaks::default()
            },
        ),
        (
            "missing user handle",
            false,
            Tweaks {
                user_handle: Some(None),
                ..Tweaks::default()
            },
        ),
        (
            "counter went back to 0",
            false,
            Tweaks {
                counter: Some(0),
                ..Tweaks::default()
            },
        ),
        (
            "counter did not increase",
            false,
            Tweaks {
                counter: Some(1),
                ..Tweaks::default()
            },
        ),
        (
            "wrong origin",
            false,
            Tweaks {
                origin: Some("https://evil.example".into()),
                ..Tweaks::default()
            },
        ),
        (
            "wrong RP ID",
            false,
            Tweaks {
                rp_id: Some("evil.example".into()),
                ..Tweaks::default()
            },
        ),
        (
            "crossOrigin",
            false,
            Tweaks {
                cross_origin: Some(true),
                ..Tweaks::default()
            },
        ),
        (
            "clientDataJSON type webauthn.create",
            false,
            Tweaks {
                ceremony_type: Some("webauthn.create".into()),
                ..Tweaks::default()
            },
        ),
        (
            "no user verification",
            false,
            Tweaks {
                flags: Some(FLAG_UP),
                ..Tweaks::default()
            },
        ),
        (
            "a challenge no options gave",
            false,
            Tweaks {
                challenge: Some(b64(&[7u8; 32])),
                ..Tweaks::default()
            },
        ),
    ];
    for (name, by_stranger, tweaks) in cases {
        let options = app.sign_in_options().await;
        let device = if by_stranger {
            &mut stranger
        } else {
            &mut alice_key
        };
        let response = device.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
        let res = app.sign_in_verify(&response).await;
        let problem = assert_problem(res, 401, "passkey_verification_failed").await;
        assert_eq!(
            stored(&app, &alice.id, &credential),
            before,
            "{name} changed something ({problem})"
        );
    }

    // A correctly signed response whose signature was then altered.
    let options = app.sign_in_options().await;
    let response = with_tampered_signature(alice_key.authenticate(&options, ORIGIN).unwrap());
    assert_verification_failed(app.sign_in_verify(&response).await).await;
    // Not even DER.
    let options = app.sign_in_options().await;
    let mut response = alice_key.authenticate(&options, ORIGIN).unwrap();
    response["response"]["signature"] = json!(b64(b"not a signature"));
    assert_verification_failed(app.sign_in_verify(&response).await).await;
    assert_eq!(stored(&app, &alice.id, &credential), before);
    // Bob's account saw nothing either.
    assert_eq!(stored(&app, &bob.id, &bob_credential), bob_before);

    // Alice's own live sessions: the login's and the one sign-in.
    assert_eq!(sessions(&app, &alice.token).await.len(), 2);
    // The honest device still signs in: nothing above spoiled it.
    let answer = app.sign_in_with_passkey(&mut alice_key).await;
    assert_eq!(answer["authLevel"], "full");
    let after = stored(&app, &alice.id, &credential);
    assert!(after.sign_count > before.sign_count);
    assert_eq!(after.sessions, before.sessions + 1);
}

/// The credential id of `user_id`'s (single) passkey.
fn credential_of(app: &TestApp, user_id: &str) -> String {
    use diesel::prelude::*;
    use passkey_auth::schema::passkeys;
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .select(passkeys::credential_id)
        .first::<String>(&mut app.db())
        .unwrap()
}

async fn a_replayed_sign_in_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser {
        user, mut device, ..
    } = user_with_passkey(&app).await;
    let credential = device.credential_id_b64();
    let options = app.sign_in_options().await;
    let response = device.authenticate(&options, ORIGIN).unwrap();
    assert_eq!(app.sign_in_verify(&response).await.status(), 200);
    let before = stored(&app, &user.id, &credential);
    let res = app.sign_in_verify(&response).await;
    assert_verification_failed(res).await;
    assert_eq!(stored(&app, &user.id, &credential), before);
    // The same challenge with a new, higher counter: still refused.
    let fresh = device.authenticate(&options, ORIGIN).unwrap();
    assert_verification_failed(app.sign_in_verify(&fresh).await).await;
    assert_eq!(stored(&app, &user.id, &credential), before);
}

async fn step_up_and_sign_in_challenges_do_not_cross(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser {
        user, mut device, ..
    } = user_with_passkey(&app).await;
    let credential = device.credential_id_b64();
    let before = stored(&app, &user.id, &credential);

    // A step-up's challenge is no sign-in's: refused, nothing changes.
    let options = app.authentication_options(&user.token).await;
    let step_up = device.authenticate(&options, ORIGIN).unwrap();
    assert_verification_failed(app.sign_in_verify(&step_up).await).await;
    assert_eq!(stored(&app, &user.id, &credential), before);
    // The sign-in route never sees step-up challenges (they are kept
    // under the user), so the step-up's own route still takes it.
    let res = app
        .post_json("/passkeys/authenticate/verify", &step_up, Some(&user.token))
        .await;
    assert_eq!(res.status(), 200);
    let before = stored(&app, &user.id, &credential);

    // A sign-in's challenge is no step-up's: with no step-up pending the
    // step-up route has no live challenge (400 challenge_expired); with one
    // pending the challenges differ (401, and the pending one is spent).
    let options = app.sign_in_options().await;
    let sign_in = device.authenticate(&options, ORIGIN).unwrap();
    let res = app
        .post_json("/passkeys/authenticate/verify", &sign_in, Some(&user.token))
        .await;
    assert_challenge_expired(res).await;
    app.authentication_options(&user.token).await;
    let res = app
        .post_json("/passkeys/authenticate/verify", &sign_in, Some(&user.token))
        .await;
    assert_verification_failed(res).await;
    let res = app
        .post_json("/passkeys/authenticate/verify", &sign_in, Some(&user.token))
        .await;
    assert_challenge_expired(res).await;
    assert_eq!(stored(&app, &user.id, &credential), before);
    // Likewise the step-up route never spends a sign-in challenge: the
    // response still signs in at its own route, once.
    assert_eq!(app.sign_in_verify(&sign_in).await.status(), 200);
    assert_verification_failed(app.sign_in_verify(&sign_in).await).await;
}

async fn a_sign_in_challenge_serves_one_attempt_and_expires(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser {
        user, mut device, ..
    } = user_with_passkey(&app).await;
    let credential = device.credential_id_b64();
    let before = stored(&app, &user.id, &credential);

    // A failed attempt spends the challenge: the honest answer to the same
    // options is refused afterwards.
    let options = app.sign_in_options().await;
    let wrong = device
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                origin: Some("https://evil.example".into()),
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(app.sign_in_verify(&wrong).await).await;
    let honest = device.authenticate(&options, ORIGIN).unwrap();
    assert_verification_failed(app.sign_in_verify(&honest).await).await;

    // An unknown credential's attempt spends it too.
    let options = app.sign_in_options().await;
    let stranger = TestAuthenticator::new()
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                user_handle: Some(Some(handle_of(&user.id))),
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(app.sign_in_verify(&stranger).await).await;
    let honest = device.authenticate(&options, ORIGIN).unwrap();
    assert_verification_failed(app.sign_in_verify(&honest).await).await;

    // Challenges live CHALLENGE_TTL_SECS (300) by the service's clock. At
    // sign-in an expired one is the same 401 as every other refusal.
    let options = app.sign_in_options().await;
    let late = device.authenticate(&options, ORIGIN).unwrap();
    app.clock.advance(Duration::from_secs(301));
    assert_verification_failed(app.sign_in_verify(&late).await).await;
    assert_eq!(stored(&app, &user.id, &credential), before);

    // Within its life it works.
    let options = app.sign_in_options().await;
    app.clock.advance(Duration::from_secs(290));
    let in_time = device.authenticate(&options, ORIGIN).unwrap();
    assert_eq!(app.sign_in_verify(&in_time).await.status(), 200);
}

async fn concurrent_verifies_of_one_response_succeed_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser {
        user, mut device, ..
    } = user_with_passkey(&app).await;
    let options = app.sign_in_options().await;
    let response = device.authenticate(&options, ORIGIN).unwrap();
    let attempts = (0..8).map(|_| app.sign_in_verify(&response));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        7,
        "{statuses:?}"
    );
    let after = stored(&app, &user.id, &device.credential_id_b64());
    assert_eq!(after.sign_count, 1);
    // The login's session and exactly one sign-in's.
    assert_eq!(after.sessions, 2);
}

async fn malformed_sign_in_bodies_are_400_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser { mut device, .. } = user_with_passkey(&app).await;
    let options = app.sign_in_options().await;
    let good = device.authenticate(&options, ORIGIN).unwrap();

    let mut missing_client_data = good.clone();
    missing_client_data["response"]
        .as_object_mut()
        .unwrap()
        .remove("clientDataJSON");
    let mut missing_response = good.clone();
    missing_response.as_object_mut().unwrap().remove("response");
    let mut raw_id_number = good.clone();
    raw_id_number["rawId"] = json!(12);
    let mut signature_not_base64 = good.clone();
    signature_not_base64["response"]["signature"] = json!("***");
    let mut handle_number = good.clone();
    handle_number["response"]["userHandle"] = json!(5);
    let mut authenticator_data_missing = good.clone();
    authenticator_data_missing["response"]
        .as_object_mut()
        .unwrap()
        .remove("authenticatorData");
    for (body, field) in [
        (missing_client_data, "clientDataJSON"),
        (missing_response, "response"),
        (raw_id_number, "rawId"),
        (signature_not_base64, "signature"),
        (handle_number, "userHandle"),
        (authenticator_data_missing, "authenticatorData"),
        (json!([]), "object"),
    ] {
        let res = app.sign_in_verify(&body).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{field}: {problem}"
        );
    }
    for raw in ["", "{", "null", "\"x\""] {
        let res = app.post_raw(SIGN_IN_VERIFY, raw, None).await;
        assert_problem(res, 400, "invalid_request").await;
    }
    // Parseable binary that is garbage: a refusal, not a 500.
    let mut garbage = good.clone();
    garbage["response"]["clientDataJSON"] = json!(b64(b"definitely not JSON"));
    assert_verification_failed(app.sign_in_verify(&garbage).await).await;
    let mut no_challenge = good.clone();
    no_challenge["response"]["clientDataJSON"] = json!(b64(br#"{"type":"webauthn.get"}"#));
    assert_verification_failed(app.sign_in_verify(&no_challenge).await).await;
    let mut long_challenge = good.clone();
    long_challenge["response"]["clientDataJSON"] = json!(b64(format!(
        r#"{{"type":"webauthn.get","challenge":"{}"}}"#,
        "A".repeat(5000)
    )
    .as_bytes()));
    assert_verification_failed(app.sign_in_verify(&long_challenge).await).await;
    let mut short_auth_data = good.clone();
    short_auth_data["response"]["authenticatorData"] = json!(b64(b"short"));
    assert_verification_failed(app.sign_in_verify(&short_auth_data).await).await;
    // Over 64 KiB: 413.
    let res = app
        .post_raw(
            SIGN_IN_VERIFY,
            format!(r#"{{"x":"{}"}}"#, "a".repeat(70 * 1024)),
            None,
        )
        .await;
    assert_problem(res, 413, "payload_too_large").await;
    // The browser's extra members are accepted (the honest response works).
    let options = app.sign_in_options().await;
    let mut fresh = device.authenticate(&options, ORIGIN).unwrap();
    fresh["clientExtensionResults"] = json!({"credProps": {"rk": true}, "largeBlob": {}});
    fresh["authenticatorAttachment"] = json!("cross-platform");
    fresh["someFutureField"] = json!({"x": 1});
    fresh["response"]["anotherFutureField"] = json!(true);
    assert_eq!(app.sign_in_verify(&fresh).await.status(), 200);
}

/// With `CHALLENGE_STORE_MAX_BYTES` at its minimum (64 KiB), options are
/// refused with 503 after a bounded number: a sign-in state weighs about
/// 460 bytes in the store (its JSON, ~200 bytes in a 256-byte buffer, the
/// key and moka's per-entry overhead), so about 125 fill nine tenths of it.
/// Every challenge answered with 200 must still be there to verify; what
/// does not need the store goes on.
async fn a_full_challenge_store_refuses_options_and_the_server_keeps_serving(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("CHALLENGE_STORE_MAX_BYTES", "65536")]).await;
    let SignInUser {
        user, mut device, ..
    } = user_with_passkey(&app).await;
    // Admitted before the flood.
    let early = app.sign_in_options().await;

    let mut admitted = 1;
    let mut all = vec![early.clone()];
    let refused = loop {
        let res = app.get("/passkeys/login/options", None).await;
        if res.status() == 503 {
            break res;
        }
        assert_eq!(res.status(), 200, "after {admitted} options");
        all.push(res.json().await.unwrap());
        admitted += 1;
        assert!(admitted < 1000, "no refusal after {admitted} options");
    };
    eprintln!(
        "challenge store of 65536 bytes: {admitted} sign-in options admitted \
         (about {} bytes each at the 90% mark), then 503",
        65536 * 9 / 10 / admitted
    );
    assert!(
        (10..200).contains(&admitted),
        "{admitted} options admitted in a 64 KiB store"
    );
    let problem = assert_problem(refused, 503, "service_unavailable").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        !detail.contains("moka") && !detail.contains("byte"),
        "{detail}"
    );
    // It stays refused (nothing was evicted to make room).
    for _ in 0..20 {
        let res = app.get("/passkeys/login/options", None).await;
        assert_problem(res, 503, "service_unavailable").await;
    }

    // The rest of the server goes on.
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(
        app.get("/protected/basic", Some(&user.token))
            .await
            .status(),
        200
    );
    assert_eq!(app.login(&user.username, PASSWORD).await.status(), 200);
    let readyz = app.get("/readyz", None).await.status();
    // A step-up needs the store too: refused while it is full.
    let step_up = app
        .get("/passkeys/authenticate/options", Some(&user.token))
        .await
        .status();
    eprintln!("while full: /readyz {readyz}, step-up options {step_up}");
    assert_eq!(step_up, 503);

    // Every options answered 200 has its challenge kept: the store
    // refuses rather than dropping what it admitted, the early one included.
    let mut lost = Vec::new();
    for (i, options) in all.iter().enumerate() {
        let response = device.authenticate(options, ORIGIN).unwrap();
        if app.sign_in_verify(&response).await.status() != 200 {
            lost.push(i);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {admitted} admitted challenges were not kept (the options #{lost:?}): \
         answered 200, then 401 at verify",
        lost.len()
    );
}

async fn sign_in_options_are_rate_limited_per_ip(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_IP_PER_MINUTE", "1"),
            ("RATE_LIMIT_IP_BURST", "2"),
        ],
    )
    .await;
    // Signup, login and the registration verify each take their own
    // action's bucket (one of two).
    let SignInUser { mut device, .. } = user_with_passkey(&app).await;
    let first = app.sign_in_options().await;
    app.sign_in_options().await;
    let res = app.get("/passkeys/login/options", None).await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_problem(res, 429, "rate_limited").await;
    // The verify is another action: the first challenge still signs in.
    let response = device.authenticate(&first, ORIGIN).unwrap();
    assert_eq!(app.sign_in_verify(&response).await.status(), 200);
    // Heard again after Retry-After.
    app.clock.advance(Duration::from_secs(retry_after));
    assert_eq!(app.get("/passkeys/login/options", None).await.status(), 200);
}

async fn sign_in_verify_is_rate_limited_per_credential(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "1"),
            ("RATE_LIMIT_ACCOUNT_BURST", "2"),
        ],
    )
    .await;
    let SignInUser {
        user, mut device, ..
    } = user_with_passkey(&app).await;
    let other = user_with_passkey(&app).await;
    let mut other_device = other.device;
    let credential = device.credential_id_b64();
    // Two attempts with the credential (a failure counts), then 429.
    let options = app.sign_in_options().await;
    let wrong = device
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                origin: Some("https://evil.example".into()),
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(app.sign_in_verify(&wrong).await).await;
    app.sign_in_with_passkey(&mut device).await;
    let before = stored(&app, &user.id, &credential);
    let options = app.sign_in_options().await;
    let response = device.authenticate(&options, ORIGIN).unwrap();
    let res = app.sign_in_verify(&response).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "rate_limited").await;
    assert_eq!(stored(&app, &user.id, &credential), before);
    // Another credential is another bucket.
    app.sign_in_with_passkey(&mut other_device).await;
    // A refused request spent no challenge: the same response is heard
    // once the bucket refills.
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(app.sign_in_verify(&response).await.status(), 200);
}

async fn sign_in_can_be_turned_off(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("PASSKEY_SIGN_IN", "off")]).await;
    let SignInUser { mut device, .. } = user_with_passkey(&app).await;
    let res = app.get("/passkeys/login/options", None).await;
    assert_problem(res, 404, "not_found").await;
    // With a body a real client would send, and with a malformed one.
    let options = json!({"publicKey": {"challenge": b64(&[1u8; 32]), "rpId": "localhost"}});
    let response = device.authenticate(&options, ORIGIN).unwrap();
    assert_problem(app.sign_in_verify(&response).await, 404, "not_found").await;
    let res = app.post_raw(SIGN_IN_VERIFY, "{", None).await;
    assert_problem(res, 404, "not_found").await;
    // Step-up is unaffected.
    let user = app.new_user().await;
    let mut key = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut key).await;
    app.step_up(&user.token, &mut key).await;
}

/// The problem body and headers of a refusal, the `date` header aside.
async fn refusal_of(res: reqwest::Response) -> (u16, Vec<(String, String)>, Value) {
    let status = res.status().as_u16();
    let mut headers: Vec<(String, String)> = res
        .headers()
        .iter()
        // Per answer by design: the time and the request id.
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (status, headers, res.json().await.unwrap())
}

async fn an_unknown_credential_and_a_bad_signature_answer_identically(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser {
        mut device, handle, ..
    } = user_with_passkey(&app).await;

    let options = app.sign_in_options().await;
    let unknown = TestAuthenticator::new()
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                user_handle: Some(Some(handle.clone())),
                ..Tweaks::default()
            },
        )
        .unwrap();
    let unknown = refusal_of(app.sign_in_verify(&unknown).await).await;

    let options = app.sign_in_options().await;
    let bad = with_tampered_signature(device.authenticate(&options, ORIGIN).unwrap());
    let bad = refusal_of(app.sign_in_verify(&bad).await).await;

    let options = app.sign_in_options().await;
    let nobody = device
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                user_handle: Some(Some(handle_of(&Uuid::new_v4().to_string()))),
                ..Tweaks::default()
            },
        )
        .unwrap();
    let nobody = refusal_of(app.sign_in_verify(&nobody).await).await;

    let options = app.sign_in_options().await;
    let no_handle = device
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                user_handle: Some(None),
                ..Tweaks::default()
            },
        )
        .unwrap();
    let no_handle = refusal_of(app.sign_in_verify(&no_handle).await).await;

    // A counter regression, after a sign-in that stored the counter.
    app.sign_in_with_passkey(&mut device).await;
    let options = app.sign_in_options().await;
    let counter = device.counter();
    let regression = device
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                counter: Some(counter),
                ..Tweaks::default()
            },
        )
        .unwrap();
    let regression = refusal_of(app.sign_in_verify(&regression).await).await;

    // A replayed challenge.
    let options = app.sign_in_options().await;
    let once = device.authenticate(&options, ORIGIN).unwrap();
    assert_eq!(app.sign_in_verify(&once).await.status(), 200);
    let replayed = refusal_of(app.sign_in_verify(&once).await).await;

    assert_eq!(unknown.0, 401);
    assert_eq!(unknown.2["code"], "passkey_verification_failed");
    for (name, other) in [
        ("bad signature", &bad),
        ("handle naming no user", &nobody),
        ("no handle", &no_handle),
        ("counter regression", &regression),
        ("replayed challenge", &replayed),
    ] {
        assert_eq!(&unknown, other, "unknown credential vs {name}");
    }
    eprintln!("the refusal: {:?} {}", unknown.1, unknown.2);
}

async fn sign_ins_and_their_failures_are_audited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let SignInUser {
        user, mut device, ..
    } = user_with_passkey(&app).await;
    let count = |kinds: &[String], kind: &str| kinds.iter().filter(|k| *k == kind).count();
    let answer = app.sign_in_with_passkey(&mut device).await;
    let token = answer["accessToken"].as_str().unwrap().to_owned();
    let kinds = app.event_kinds(&token).await;
    assert_eq!(count(&kinds, "passkey_sign_in"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "passkey_verified"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "passkey_sign_in_failed"), 0, "{kinds:?}");

    // A bad signature from the user's credential: a failure event of theirs.
    let options = app.sign_in_options().await;
    let bad = with_tampered_signature(device.authenticate(&options, ORIGIN).unwrap());
    assert_verification_failed(app.sign_in_verify(&bad).await).await;
    let kinds = app.event_kinds(&user.token).await;
    assert_eq!(count(&kinds, "passkey_sign_in_failed"), 1, "{kinds:?}");
    // A counter regression: recorded as a possible clone.
    let options = app.sign_in_options().await;
    let cloned = device
        .authenticate_with(
            &options,
            ORIGIN,
            &Tweaks {
                counter: Some(1),
                ..Tweaks::default()
            },
        )
        .unwrap();
    assert_verification_failed(app.sign_in_verify(&cloned).await).await;
    let kinds = app.event_kinds(&user.token).await;
    assert_eq!(count(&kinds, "counter_regression"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "passkey_sign_in"), 1, "{kinds:?}");
    // The events carry no secrets.
    let page: Value = app
        .get("/auth/events?limit=100", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    let text = page.to_string();
    for secret in [answer["refreshToken"].as_str().unwrap(), token.as_str()] {
        assert!(!text.contains(secret), "{text}");
    }
}
