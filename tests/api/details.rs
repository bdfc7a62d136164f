//! The `detail` of a 400 `invalid_request` for a body that does not parse:
//! it names the offending field (its full path) and says what was expected
//! in the contract's words, never a Rust type name or a serde message.

use serde_json::{json, Value};

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;

on_both_backends!(
    registration_body_details_name_the_field_in_plain_words,
    authentication_body_details_name_the_field_in_plain_words,
    login_body_details_name_the_field_in_plain_words,
);

/// Words of serde's and webauthn-rs's messages a detail must never carry.
const LEAKS: [&str; 16] = [
    "struct",
    "enum",
    "Base64",
    "base64 encoded",
    "Vec",
    "::",
    "serde",
    "Registration",
    "Authentication",
    "Extensions",
    "CredProps",
    "PublicKeyCredential",
    "Authenticator",
    "sequence",
    " at line ",
    "`",
];

/// A 400 `invalid_request` whose detail is exactly `expected`.
async fn assert_detail(res: reqwest::Response, expected: &str, case: &str) {
    let problem = assert_problem(res, 400, "invalid_request").await;
    let detail = problem["detail"].as_str().unwrap();
    for leak in LEAKS {
        assert!(!detail.contains(leak), "{case}: {detail:?} has {leak:?}");
    }
    assert_eq!(detail, expected, "{case}");
}

/// `body` with the member at `path` (`response.clientDataJSON`) set to
/// `value`, or removed when `value` is `None`.
fn with(body: &Value, path: &str, value: Option<Value>) -> Value {
    let mut body = body.clone();
    let keys: Vec<&str> = path.split('.').collect();
    let (last, parents) = keys.split_last().unwrap();
    let parent = parents.iter().fold(&mut body, |v, k| &mut v[*k]);
    match value {
        Some(value) => parent[*last] = value,
        None => {
            parent.as_object_mut().unwrap().remove(*last);
        }
    }
    body
}

async fn registration_body_details_name_the_field_in_plain_words(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Right after login: the token the registration routes take for an
    // account without a passkey.
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let options = app.registration_options(&user.token).await;
    let good = device.register(&options, ORIGIN).unwrap();

    let cases = [
        (
            with(&good, "clientExtensionResults", Some(json!(5))),
            "clientExtensionResults: expected an object, got a number",
        ),
        (
            with(
                &good,
                "clientExtensionResults",
                Some(json!({"credProps": "yes"})),
            ),
            "clientExtensionResults.credProps: expected an object, got a string",
        ),
        (
            with(
                &good,
                "clientExtensionResults",
                Some(json!({"credProps": {"rk": "yes"}})),
            ),
            "clientExtensionResults.credProps.rk: expected true or false, got a string",
        ),
        (
            with(&good, "rawId", Some(json!(5))),
            "rawId: expected an unpadded base64url string, got a number",
        ),
        (
            with(
                &good,
                "response.clientDataJSON",
                Some(json!("not base64!!")),
            ),
            "response.clientDataJSON: expected an unpadded base64url string",
        ),
        (
            with(&good, "response.attestationObject", None),
            "response.attestationObject: is required",
        ),
        (
            with(&good, "response.transports", Some(json!("usb"))),
            "response.transports: expected an array, got a string",
        ),
        (
            with(&good, "response", Some(json!(null))),
            "response: expected an object, got null",
        ),
        (
            with(&good, "type", Some(json!(7))),
            "type: expected a string, got a number",
        ),
        (with(&good, "id", None), "id: is required"),
    ];
    for (body, expected) in cases {
        let res = app
            .post_json("/passkeys/register/verify", &body, Some(&user.token))
            .await;
        assert_detail(res, expected, expected).await;
    }
    let res = app
        .post_raw(
            "/passkeys/register/verify",
            r#"{"id": "x", "rawId": "#,
            Some(&user.token),
        )
        .await;
    assert_detail(
        res,
        "the request body is not valid JSON (line 1, column 21)",
        "truncated body",
    )
    .await;
}

async fn authentication_body_details_name_the_field_in_plain_words(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    app.register_passkey(&user.token, &mut device).await;
    let options = app.authentication_options(&user.token).await;
    let good = device.authenticate(&options, ORIGIN).unwrap();

    let cases = [
        (
            with(&good, "clientExtensionResults", Some(json!(5))),
            "clientExtensionResults: expected an object, got a number",
        ),
        (
            with(
                &good,
                "clientExtensionResults",
                Some(json!({"appid": "yes"})),
            ),
            "clientExtensionResults.appid: expected true or false, got a string",
        ),
        (
            with(&good, "rawId", Some(json!(5))),
            "rawId: expected an unpadded base64url string, got a number",
        ),
        (
            with(
                &good,
                "response.clientDataJSON",
                Some(json!("not base64!!")),
            ),
            "response.clientDataJSON: expected an unpadded base64url string",
        ),
        (
            with(&good, "response.signature", Some(json!([]))),
            "response.signature: expected an unpadded base64url string, got an array",
        ),
        (
            with(&good, "response.authenticatorData", None),
            "response.authenticatorData: is required",
        ),
        (
            with(&good, "type", Some(json!(7))),
            "type: expected a string, got a number",
        ),
        (json!([]), "the request body must be a JSON object"),
        (json!(["x", "eA"]), "the request body must be a JSON object"),
        (json!("x"), "the request body must be a JSON object"),
    ];
    for (body, expected) in cases {
        let res = app
            .post_json("/passkeys/authenticate/verify", &body, Some(&user.token))
            .await;
        assert_detail(res, expected, &body.to_string()).await;
    }
}

async fn login_body_details_name_the_field_in_plain_words(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (body, expected) in [
        (
            json!({"username": 5, "password": "x"}),
            "username: expected a string, got a number",
        ),
        (
            json!({"username": "frank", "password": ["x"]}),
            "password: expected a string, got an array",
        ),
        (json!({"username": "frank"}), "password: is required"),
        (json!([1, 2]), "the request body must be a JSON object"),
    ] {
        let res = app.post_json("/auth/login", &body, None).await;
        assert_detail(res, expected, &body.to_string()).await;
    }
    for (raw, expected) in [
        (
            r#"{"username": "frank""#,
            "the request body is not valid JSON (line 1, column 20)",
        ),
        (
            r#"{"username": "frank", "password": "x"} trailing"#,
            "the request body is not valid JSON (line 1, column 40)",
        ),
        ("", "the request body must be a JSON object"),
    ] {
        let res = app.post_raw("/auth/login", raw, None).await;
        assert_detail(res, expected, raw).await;
    }
}
