//! Checks the test authenticator in `tests/common/authenticator.rs` directly against the
//! server-side library (webauthn-rs), without HTTP: honest ceremonies must pass, and each
//! tweak must be rejected by the library's own checks (not by a broken signature).

mod common;

use common::authenticator::{TestAuthenticator, Tweaks, FLAG_UP, FLAG_UV};
use serde_json::Value;
use webauthn_rs::prelude::*;

const ORIGIN: &str = "http://localhost:3000";

fn webauthn() -> Webauthn {
    let origin = Url::parse(ORIGIN).expect("valid origin");
    WebauthnBuilder::new("localhost", &origin)
        .expect("valid RP config")
        .rp_name("selfcheck")
        .build()
        .expect("webauthn builds")
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializes")
}

fn start_reg(wa: &Webauthn, exclude: Option<Vec<CredentialID>>) -> (Value, PasskeyRegistration) {
    let (ccr, state) = wa
        .start_passkey_registration(Uuid::new_v4(), "alice", "Alice", exclude)
        .expect("start registration");
    (to_value(&ccr), state)
}

fn finish_reg(
    wa: &Webauthn,
    response: Value,
    state: &PasskeyRegistration,
) -> WebauthnResult<Passkey> {
    let reg: RegisterPublicKeyCredential =
        serde_json::from_value(response).expect("registration response parses");
    wa.finish_passkey_registration(&reg, state)
}

fn start_auth(wa: &Webauthn, keys: &[Passkey]) -> (Value, PasskeyAuthentication) {
    let (rcr, state) = wa
        .start_passkey_authentication(keys)
        .expect("start authentication");
    (to_value(&rcr), state)
}

fn finish_auth(
    wa: &Webauthn,
    response: Value,
    state: &PasskeyAuthentication,
) -> WebauthnResult<AuthenticationResult> {
    let cred: PublicKeyCredential =
        serde_json::from_value(response).expect("assertion response parses");
    wa.finish_passkey_authentication(&cred, state)
}

/// Registers a fresh authenticator honestly and returns it with its passkey.
fn registered(wa: &Webauthn) -> (TestAuthenticator, Passkey) {
    let mut auth = TestAuthenticator::new();
    let (options, state) = start_reg(wa, None);
    let response = auth
        .register(&options, ORIGIN)
        .expect("authenticator registers");
    let passkey = finish_reg(wa, response, &state).expect("server accepts registration");
    (auth, passkey)
}

fn assert_err<T: std::fmt::Debug>(result: WebauthnResult<T>, expected: WebauthnError) {
    match result {
        Err(e) => assert_eq!(
            std::mem::discriminant(&e),
            std::mem::discriminant(&expected),
            "expected {expected:?}, got {e:?}"
        ),
        Ok(v) => panic!("expected {expected:?}, got Ok({v:?})"),
    }
}

#[test]
fn honest_registration_and_authentication_succeed() {
    let wa = webauthn();
    let mut auth = TestAuthenticator::new();
    let (options, state) = start_reg(&wa, None);
    let user_id = options["publicKey"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let response = auth
        .register(&options, ORIGIN)
        .expect("authenticator registers");
    assert_eq!(response["id"], auth.credential_id_b64());
    assert_eq!(response["rawId"], auth.credential_id_b64());
    assert_eq!(response["type"], "public-key");
    assert_eq!(response["response"]["publicKeyAlgorithm"], -7);
    assert_eq!(response["response"]["transports"][0], "internal");
    assert!(response["response"]["publicKey"].is_string());
    assert!(response["response"]["authenticatorData"].is_string());

    let passkey = finish_reg(&wa, response, &state).expect("server accepts registration");
    assert_eq!(passkey.cred_id().as_slice(), auth.credential_id());
    assert_eq!(auth.counter(), 0);
    assert_eq!(auth.user_handle(), Some(user_id.as_str()));

    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    let response = auth
        .authenticate(&options, ORIGIN)
        .expect("authenticator answers");
    assert_eq!(response["response"]["userHandle"], user_id.as_str());
    let result = finish_auth(&wa, response, &state).expect("server accepts assertion");
    assert_eq!(result.counter(), 1);
    assert_eq!(auth.counter(), 1);
    assert!(result.user_verified());
    assert!(!result.backup_eligible());
}

#[test]
fn chosen_counter_is_used_and_remembered() {
    let wa = webauthn();
    let (mut auth, passkey) = registered(&wa);
    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    let tweaks = Tweaks {
        counter: Some(42),
        ..Tweaks::default()
    };
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_eq!(finish_auth(&wa, response, &state).unwrap().counter(), 42);
    assert_eq!(auth.counter(), 42);

    auth.set_counter(100);
    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    let response = auth.authenticate(&options, ORIGIN).unwrap();
    assert_eq!(finish_auth(&wa, response, &state).unwrap().counter(), 101);
}

#[test]
fn backup_flags_are_reported() {
    let wa = webauthn();
    let mut auth = TestAuthenticator::new();
    auth.set_backup_flags(true, true);
    let (options, state) = start_reg(&wa, None);
    let passkey = finish_reg(&wa, auth.register(&options, ORIGIN).unwrap(), &state).unwrap();
    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    let result = finish_auth(&wa, auth.authenticate(&options, ORIGIN).unwrap(), &state).unwrap();
    assert!(result.backup_eligible());
    assert!(result.backup_state());
}

#[test]
fn wrong_origin_is_rejected() {
    let wa = webauthn();
    let tweaks = Tweaks {
        origin: Some("http://evil.example:3000".into()),
        ..Tweaks::default()
    };

    let mut auth = TestAuthenticator::new();
    let (options, state) = start_reg(&wa, None);
    let response = auth.register_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_reg(&wa, response, &state),
        WebauthnError::InvalidRPOrigin,
    );

    let (mut auth, passkey) = registered(&wa);
    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    // The origin argument itself is not checked against the RP ID either.
    let response = auth.authenticate(&options, "https://evil.example").unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::InvalidRPOrigin,
    );
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::InvalidRPOrigin,
    );
}

#[test]
fn wrong_rp_id_hash_is_rejected() {
    let wa = webauthn();
    let tweaks = Tweaks {
        rp_id: Some("evil.example".into()),
        ..Tweaks::default()
    };

    let mut auth = TestAuthenticator::new();
    let (options, state) = start_reg(&wa, None);
    let response = auth.register_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_reg(&wa, response, &state),
        WebauthnError::InvalidRPIDHash,
    );

    let (mut auth, passkey) = registered(&wa);
    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::InvalidRPIDHash,
    );
}

#[test]
fn wrong_challenge_and_type_are_rejected() {
    let wa = webauthn();
    let (mut auth, passkey) = registered(&wa);
    let (other_options, _) = start_auth(&wa, std::slice::from_ref(&passkey));
    let other_challenge = other_options["publicKey"]["challenge"]
        .as_str()
        .unwrap()
        .to_string();

    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    let tweaks = Tweaks {
        challenge: Some(other_challenge.clone()),
        ..Tweaks::default()
    };
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::MismatchedChallenge,
    );

    let tweaks = Tweaks {
        ceremony_type: Some("webauthn.create".into()),
        ..Tweaks::default()
    };
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::InvalidClientDataType,
    );

    let mut fresh = TestAuthenticator::new();
    let (options, state) = start_reg(&wa, None);
    let tweaks = Tweaks {
        challenge: Some(other_challenge),
        ..Tweaks::default()
    };
    let response = fresh.register_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_reg(&wa, response, &state),
        WebauthnError::MismatchedChallenge,
    );
}

#[test]
fn missing_user_verification_and_cross_origin_are_rejected() {
    let wa = webauthn();
    let (mut auth, passkey) = registered(&wa);
    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));

    let tweaks = Tweaks {
        flags: Some(FLAG_UP),
        ..Tweaks::default()
    };
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::UserNotVerified,
    );

    let tweaks = Tweaks {
        flags: Some(FLAG_UV),
        ..Tweaks::default()
    };
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::UserNotPresent,
    );

    // crossOrigin: true is rejected at registration; webauthn-rs-core 0.6.2 does NOT check it
    // during authentication (core.rs only tests it in register_credential_internal), so a
    // server that cares must check it itself. This pins that library behaviour.
    let tweaks = Tweaks {
        cross_origin: Some(true),
        ..Tweaks::default()
    };
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert!(finish_auth(&wa, response, &state).is_ok());

    let mut fresh = TestAuthenticator::new();
    let (options, state) = start_reg(&wa, None);
    let response = fresh.register_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_reg(&wa, response, &state),
        WebauthnError::CredentialCrossOrigin,
    );
}

#[test]
fn cloned_device_counter_regression_is_rejected() {
    let wa = webauthn();
    let (mut original, mut passkey) = registered(&wa);
    let mut clone = original.clone_device();
    assert_eq!(clone.credential_id_b64(), original.credential_id_b64());

    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    let result = finish_auth(
        &wa,
        original.authenticate(&options, ORIGIN).unwrap(),
        &state,
    )
    .unwrap();
    assert_eq!(result.counter(), 1);
    passkey.update_credential(&result);

    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    let response = clone.authenticate(&options, ORIGIN).unwrap();
    assert_eq!(clone.counter(), 1);
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::CredentialPossibleCompromise,
    );
}

#[test]
fn exclude_and_allow_lists_are_respected() {
    let wa = webauthn();
    let (mut auth, passkey) = registered(&wa);

    // excludeCredentials naming our credential: the authenticator refuses.
    let (options, state) = start_reg(&wa, Some(vec![passkey.cred_id().clone()]));
    assert!(auth.register(&options, ORIGIN).is_err());
    // Forced through anyway, the server rejects it too. (webauthn-rs-core 0.6.2 reports an
    // excluded credential as CredentialAlteredAlgFromRequest, see core.rs "exclude any
    // credential that is in our exclude list".)
    let tweaks = Tweaks {
        ignore_exclude_list: true,
        ..Tweaks::default()
    };
    let response = auth.register_with(&options, ORIGIN, &tweaks).unwrap();
    assert_err(
        finish_reg(&wa, response, &state),
        WebauthnError::CredentialAlteredAlgFromRequest,
    );

    // allowCredentials not naming us: refused, counter untouched.
    let mut stranger = TestAuthenticator::new();
    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));
    assert!(stranger.authenticate(&options, ORIGIN).is_err());
    assert_eq!(stranger.counter(), 0);
    // Someone else's credential presented anyway: the server does not know it.
    let response = stranger
        .authenticate_ignoring_allow_list(&options, ORIGIN)
        .unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::CredentialNotFound,
    );

    // Claiming the victim's credential id but signing with another key: bad signature.
    let tweaks = Tweaks {
        credential_id: Some(auth.credential_id_b64()),
        ignore_allow_list: true,
        ..Tweaks::default()
    };
    let response = stranger
        .authenticate_with(&options, ORIGIN, &tweaks)
        .unwrap();
    assert_err(
        finish_auth(&wa, response, &state),
        WebauthnError::AuthenticationFailure,
    );

    // The honest owner still gets in.
    let response = auth.authenticate(&options, ORIGIN).unwrap();
    finish_auth(&wa, response, &state).expect("owner accepted");
}

#[test]
fn user_handle_can_be_omitted_or_replaced() {
    let wa = webauthn();
    let (mut auth, passkey) = registered(&wa);
    let (options, state) = start_auth(&wa, std::slice::from_ref(&passkey));

    let tweaks = Tweaks {
        user_handle: Some(None),
        ..Tweaks::default()
    };
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert!(response["response"].get("userHandle").is_none());
    finish_auth(&wa, response, &state).expect("userHandle is optional for webauthn-rs");

    let tweaks = Tweaks {
        user_handle: Some(Some("AAAA".into())),
        ..Tweaks::default()
    };
    let response = auth.authenticate_with(&options, ORIGIN, &tweaks).unwrap();
    assert_eq!(response["response"]["userHandle"], "AAAA");
}

#[test]
fn malformed_options_are_errors_not_panics() {
    let mut auth = TestAuthenticator::new();
    assert!(auth.register(&serde_json::json!({}), ORIGIN).is_err());
    assert!(auth
        .authenticate(&serde_json::json!({"publicKey": 3}), ORIGIN)
        .is_err());
    assert!(auth
        .authenticate(&serde_json::json!({"publicKey": {"challenge": "AAAA", "allowCredentials": [{"id": "!!"}]}}), ORIGIN)
        .is_err());
}
