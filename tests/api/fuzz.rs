//! Property-based input hardening (proptest): arbitrary bytes and JSON at
//! every body route (the account routes `/auth/password`, `/auth/recovery`
//! and `/auth/recovery-codes` and the public `/auth/refresh` included),
//! mutated WebAuthn responses (the public passkey sign-in's too), arbitrary
//! paths, methods and headers
//! (`DELETE /auth/me`, the account routes, `/auth/logout` and the session
//! routes `/auth/sessions` and `/auth/sessions/{id}` among them), typed
//! recovery codes near the real ones, and hostile usernames and display
//! names. Whatever comes in, the server answers below 500 without dropping
//! the connection, every 4xx is the contract's problem+json with a `code`,
//! and a normal signup and login still work afterwards.
//!
//! At the account routes the answer is checked exactly: the guard's answer
//! for the token, then the body's (400 naming the field, 401
//! `invalid_credentials` or `invalid_recovery_code`, 413). What a body may
//! change is tracked: a password change is accepted only for a well-formed
//! request carrying the current password (it is then checked and undone), a
//! recovery code only when it reads as one of the account's unspent codes;
//! after the property the password still logs in and no code was lost. The
//! reading of a typed code is this file's own oracle, [`normalise_code`],
//! written from API.md, not taken from the server.
//!
//! Sessions are tracked too ([`Session`], [`Held`]): the test holds two
//! sessions of each account (roles [`Role`]), each with its access tokens
//! and its live refresh token. `POST /auth/refresh` answers 200 exactly for
//! an object whose `refreshToken` string is a live token the test holds
//! (which then rotates; random bodies never hold one, so hand-picked ones
//! do), else 401 `invalid_refresh_token` for any string and 400 naming the
//! field for anything else. A rotated token presented again ends nothing
//! within the README's grace (the test clock stands still) and the whole
//! session after it (one case moves the clock). Whatever ends a session --
//! logout, `DELETE /auth/sessions[/{id}]`, a password change or a recovery
//! code (both end every OTHER session of the account), a reused refresh
//! token, `DELETE /auth/me` -- is followed by an exact check: the sessions
//! the contract says end refuse every token (401 `invalid_token`, 401
//! `invalid_refresh_token`), every other held session still works, and the
//! ended ones are replaced by new logins. After a property every held
//! session still works, every ended one is still refused, and
//! `GET /auth/sessions` lists exactly the held sessions of the account
//! (logins made only to check a password are logged out again).
//!
//! Each property spawns ONE app and runs proptest's `TestRunner` on a
//! blocking thread with a blocking HTTP client, while the app keeps serving
//! on the test's runtime. Running the real runner (rather than a loop over
//! generated values) means a failure is shrunk to a minimal request before it
//! is reported. Case counts are per property; `PROPTEST_CASES` overrides them.
//!
//! SQLite only, to keep the file fast (see [`spawn_app`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestCaseResult, TestRunner};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Number, Value};
use sha2::{Digest as _, Sha256};
use url::Url;
use uuid::Uuid;

use crate::common::authenticator::{TestAuthenticator, FLAG_UP};
use crate::helpers::{claims, Backend, TestApp, ORIGIN, PASSWORD};

/// The RP ID the harness configures.
const RP_ID: &str = "localhost";

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// 1. Arbitrary bytes as the body of every POST/PATCH route.
#[actix_web::test]
async fn arbitrary_bytes_never_get_a_5xx() {
    let app = spawn_app().await;
    let base = app.base.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        let session = api.session_with_passkey();
        let ledger = Ledger::new(&session);
        // The hand-picked refresh bodies run every time, before the random
        // ones, each made from the tokens held when it runs.
        for (token, make) in tricky_refresh_bytes() {
            let case = BodyCase {
                route: BodyRoute::Refresh,
                token,
                content_type: ContentType::Json,
                live_challenge: false,
                body: Bytes(make(&session)),
            };
            if let Err(err) = api.run_body_case(&session, &ledger, &case, case.body.0.clone()) {
                panic!("{case:?}: {err}");
            }
        }
        let cases = body_case(arb_bytes);
        run_property("arbitrary bytes", 320, cases, |case| {
            api.run_body_case(&session, &ledger, &case, case.body.0.clone())
        });
        api.check_held(&session);
        api.check_ledger(&session, &ledger);
    })
    .await;
    assert_still_healthy(&app).await;
}

/// 2. Arbitrary JSON values, with each route's real field names mixed in.
#[actix_web::test]
async fn arbitrary_json_never_gets_a_5xx() {
    let app = spawn_app().await;
    let base = app.base.clone();
    let clock = app.clock.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        let session = api.session_with_passkey();
        let ledger = Ledger::new(&session);
        let run = |case: &BodyCase<Value>| {
            let bytes = serde_json::to_vec(&case.body).expect("a JSON value serialises");
            api.run_body_case(&session, &ledger, case, bytes)
        };
        // The hand-picked bodies run every time, before the random ones:
        // each answer of the account routes once, through the same checks.
        for case in tricky_account_bodies(&session) {
            if let Err(err) = run(&case) {
                panic!("{case:?}: {err}");
            }
        }
        // Then the refresh route's, each made from the tokens held when it
        // runs (a live one, the one it replaced, edited ones, ended ones).
        for (token, make) in tricky_refresh_bodies() {
            let case = refresh_case(token, make(&session));
            if let Err(err) = run(&case) {
                panic!("{case:?}: {err}");
            }
        }
        // A rotated token presented after the grace is a stolen copy: the
        // whole session ends (the checks above left it within the grace).
        clock.advance(Duration::from_secs(REUSE_GRACE_SECS + 1));
        session.epoch.set(session.epoch.get() + 1);
        let stolen = session.held(Role::Second).rotated.last().cloned();
        let (stolen, _) = stolen.expect("the hand-picked cases rotated the second session");
        let case = refresh_case(TokenKind::Missing, json!({"refreshToken": stolen}));
        if let Err(err) = run(&case) {
            panic!("{case:?} after the grace: {err}");
        }
        let cases = body_case(arb_route_json);
        run_property("arbitrary JSON", 320, cases, |case| run(&case));
        api.check_held(&session);
        api.check_ledger(&session, &ledger);
    })
    .await;
    assert_still_healthy(&app).await;
}

/// 3a. Real registration responses with one field mutated: refused with
/// 400/401/409 (never 5xx), nothing stored, and never accepted when the
/// mutation broke a check the server must make.
#[actix_web::test]
async fn mutated_registration_responses_are_refused() {
    let app = spawn_app().await;
    let base = app.base.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        let password_token = api.new_user().1;
        // Control: the unmutated response is accepted, so the mutations below
        // start from something the server really verifies.
        let mut first = TestAuthenticator::new();
        api.register_passkey(&password_token, &mut first);
        // Further passkeys take a recent passkey verification (the test
        // clock stands still, so this token stays recent).
        let token = api.step_up(&password_token, &mut first);

        run_property("mutated registration", 192, arb_mutation(), |mutation| {
            let options = api.ok(Method::GET, "/passkeys/register/options", Some(&token))?;
            let challenge = b64_lenient(options["publicKey"]["challenge"].as_str().unwrap_or(""))
                .ok_or_else(|| TestCaseError::fail("options without a challenge"))?;
            let mut body = TestAuthenticator::new()
                .register(&options, ORIGIN)
                .map_err(TestCaseError::fail)?;
            mutation.apply(&mut body, &REGISTRATION);
            let may_succeed = registration_may_succeed(&body, &challenge);
            let before = api.passkey_count(&token)?;
            let answer = api.call(
                Method::POST,
                "/passkeys/register/verify",
                Some(&token),
                Some(&body),
            )?;
            if answer.status == 201 {
                prop_assert!(
                    may_succeed,
                    "registration accepted though it must fail verification:\n{body:#}"
                );
            } else {
                prop_assert!(
                    matches!(answer.status, 400 | 401 | 409),
                    "mutated registration answered {}: {}",
                    answer.status,
                    answer.text()
                );
                prop_assert_eq!(
                    api.passkey_count(&token)?,
                    before,
                    "a refused registration stored a passkey"
                );
            }
            Ok(())
        });
    })
    .await;
    assert_still_healthy(&app).await;
}

/// 3b. Real assertions with one field mutated: refused with 400/401/409
/// (never 5xx), and never accepted when a signed byte changed.
#[actix_web::test]
async fn mutated_assertions_are_refused() {
    let app = spawn_app().await;
    let base = app.base.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        let token = api.new_user().1;
        let mut authenticator = TestAuthenticator::new();
        api.register_passkey(&token, &mut authenticator);
        // Control: the unmutated assertion is accepted.
        api.step_up(&token, &mut authenticator);

        let authenticator = RefCell::new(authenticator);
        run_property("mutated assertion", 192, arb_mutation(), |mutation| {
            let options = api.ok(Method::GET, "/passkeys/authenticate/options", Some(&token))?;
            let original = authenticator
                .borrow_mut()
                .authenticate(&options, ORIGIN)
                .map_err(TestCaseError::fail)?;
            let mut body = original.clone();
            mutation.apply(&mut body, &ASSERTION);
            let signed_parts_intact = assertion_signed_parts_intact(&original, &body);
            let answer = api.call(
                Method::POST,
                "/passkeys/authenticate/verify",
                Some(&token),
                Some(&body),
            )?;
            if answer.status == 200 {
                prop_assert!(
                    signed_parts_intact,
                    "assertion accepted with altered signed data:\n{body:#}"
                );
            } else {
                prop_assert!(
                    matches!(answer.status, 400 | 401 | 409),
                    "mutated assertion answered {}: {}",
                    answer.status,
                    answer.text()
                );
            }
            Ok(())
        });
    })
    .await;
    assert_still_healthy(&app).await;
}

/// 3c. Real sign-in assertions (`POST /passkeys/login/verify`, no token)
/// with one field mutated: refused with 400/401 (never 5xx, never 409), and
/// accepted only when every signed part, the credential id and the user
/// handle (which names the user, so a sign-in needs it) are intact.
#[actix_web::test]
async fn mutated_sign_in_assertions_are_refused() {
    let app = spawn_app().await;
    let base = app.base.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        let token = api.new_user().1;
        let mut authenticator = TestAuthenticator::new();
        api.register_passkey(&token, &mut authenticator);

        let authenticator = RefCell::new(authenticator);
        let sign_in =
            |body: &Value| api.call(Method::POST, "/passkeys/login/verify", None, Some(body));
        // Control: the unmutated assertion signs in.
        let options = api
            .ok(Method::GET, "/passkeys/login/options", None)
            .unwrap();
        let control = authenticator
            .borrow_mut()
            .authenticate(&options, ORIGIN)
            .unwrap();
        let answer = sign_in(&control).unwrap();
        assert_eq!(answer.status, 200, "control: {}", answer.text());

        run_property(
            "mutated sign-in assertion",
            128,
            arb_mutation(),
            |mutation| {
                let options = api.ok(Method::GET, "/passkeys/login/options", None)?;
                let original = authenticator
                    .borrow_mut()
                    .authenticate(&options, ORIGIN)
                    .map_err(TestCaseError::fail)?;
                let mut body = original.clone();
                mutation.apply(&mut body, &ASSERTION);
                let handle = binary_field(&body, "/response/userHandle");
                let intact = assertion_signed_parts_intact(&original, &body)
                    && handle.is_some()
                    && handle == binary_field(&original, "/response/userHandle");
                let answer = sign_in(&body)?;
                if answer.status == 200 {
                    prop_assert!(intact, "sign-in accepted with altered data:\n{body:#}");
                } else {
                    prop_assert!(
                        matches!(answer.status, 400 | 401),
                        "mutated sign-in answered {}: {}",
                        answer.status,
                        answer.text()
                    );
                }
                Ok(())
            },
        );
    })
    .await;
    assert_still_healthy(&app).await;
}

/// Property 3's oracles themselves: an intact response may succeed; a change
/// to bytes the server must verify may not.
#[test]
fn mutation_oracles_tell_verified_changes_apart() {
    let challenge = [7u8; 32];
    let mut authenticator = TestAuthenticator::new();
    let creation = json!({"publicKey": {
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "rp": {"id": RP_ID, "name": "fuzz"},
        "user": {"id": "AAEC", "name": "fuzz", "displayName": "fuzz"},
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    }});
    let registration = authenticator.register(&creation, ORIGIN).unwrap();
    assert!(registration_may_succeed(&registration, &challenge));
    assert!(!registration_may_succeed(&registration, &[8u8; 32]));
    let object = binary_field(&registration, "/response/attestationObject").unwrap();
    let rp_id_hash = Sha256::digest(RP_ID.as_bytes());
    let at = object
        .windows(32)
        .position(|w| w == &rp_id_hash[..])
        .unwrap();
    // Bytes of the RP ID hash, then User Present in the flags byte after it.
    for (offset, mask) in [(0, 0x80), (31, 0x01), (32, FLAG_UP)] {
        let mut body = registration.clone();
        let Some(Value::String(s)) = body.pointer_mut("/response/attestationObject") else {
            unreachable!()
        };
        xor_byte(s, |_| at + offset, mask);
        assert!(
            !registration_may_succeed(&body, &challenge),
            "offset {offset}"
        );
    }

    let request =
        json!({"publicKey": {"challenge": URL_SAFE_NO_PAD.encode(challenge), "rpId": RP_ID}});
    let assertion = authenticator.authenticate(&request, ORIGIN).unwrap();
    assert!(assertion_signed_parts_intact(&assertion, &assertion));
    let mut body = assertion.clone();
    body["response"]
        .as_object_mut()
        .unwrap()
        .remove("userHandle");
    assert!(assertion_signed_parts_intact(&assertion, &body));
    for pointer in ASSERTION.verified {
        let mut body = assertion.clone();
        let Some(Value::String(s)) = body.pointer_mut(pointer) else {
            unreachable!()
        };
        xor_byte(s, |len| len - 1, 1);
        assert!(
            !assertion_signed_parts_intact(&assertion, &body),
            "{pointer}"
        );
    }
}

/// 4. Arbitrary methods, paths, query strings, Authorization headers and
/// other headers the app reads, the session routes among the paths (with
/// the ids of held sessions, of ended ones and made-up ones). At logout and
/// `DELETE /auth/sessions[/{id}]` the answer is exact for the tokens the
/// test holds when no other header could change it (the guard's refusal,
/// 204, or 404 for an id that is none of the caller's live sessions). A
/// request that ends sessions (those, and `DELETE /auth/me`) is followed by
/// the exact check of what ended; then the ended sessions are replaced by
/// new logins.
#[actix_web::test]
async fn arbitrary_paths_methods_and_headers_never_get_a_5xx() {
    // CORS on and the client trusted as a proxy, so those headers are read.
    let app = spawn_app_with(&[("CORS_ORIGINS", ORIGIN), ("TRUSTED_PROXIES", "127.0.0.0/8")]).await;
    let base = app.base.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        // Replaced when a request deletes one of its accounts.
        let session = RefCell::new(api.session_with_passkey());
        // The hand-picked requests run every time, before the random ones.
        for case in tricky_requests() {
            if let Err(err) = api.send_request_case(&session, &case) {
                panic!("{case:?}: {err}");
            }
        }
        let account = account_requests(&session.borrow());
        for (case, expected) in account {
            let answer = api.send_request_case(&session, &case);
            let checked = answer.and_then(|answer| match expected {
                Expected::NoContent => {
                    prop_assert_eq!(answer.status, 204, "{}", answer.text());
                    Ok(())
                }
                Expected::Problem(status, code) => expect_problem(&answer, status, code),
                Expected::SessionList => {
                    let caller = case.auth.role().expect("a session list needs a held token");
                    api.check_session_list(&session.borrow(), caller, &answer)
                }
            });
            if let Err(err) = checked {
                panic!("{case:?}: {err}");
            }
        }
        run_property("arbitrary requests", 256, arb_request_case(), |case| {
            api.send_request_case(&session, &case).map(drop)
        });
        let session = session.borrow();
        api.check_held(&session);
        // No arbitrary request changed a password.
        for username in [&session.username, &session.plain_username] {
            if let Err(err) = api.login_and_me(&json!({"username": username, "password": PASSWORD}))
            {
                panic!("the password of {username} no longer logs in: {err}");
            }
        }
    })
    .await;
    assert_still_healthy(&app).await;
}

/// 5. Hostile usernames and display names: 400 naming the field, or stored
/// exactly as given (login with the same string works, `/auth/me` echoes it).
#[actix_web::test]
async fn hostile_names_are_refused_or_stored_exactly() {
    let app = spawn_app().await;
    let base = app.base.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        let taken = RefCell::new(HashSet::new());
        // The hand-picked inputs run every time, before the random ones.
        for name in TRICKY_NAMES {
            if let Err(err) = api.check_username(&taken, name) {
                panic!("username {name:?}: {err}");
            }
            if let Err(err) = api.check_display_name(name) {
                panic!("displayName {name:?}: {err}");
            }
        }
        run_property("hostile names", 128, arb_name_case(), |case| match case {
            NameCase::Username(name) => api.check_username(&taken, &name),
            NameCase::DisplayName(name) => api.check_display_name(&name),
        });
    })
    .await;
    assert_still_healthy(&app).await;
}

/// 6. Typed recovery codes near the caller's real ones (case, spaces,
/// hyphens and tabs, look-alikes, substitutions, truncation, extension,
/// lengths around the 64-byte limit): 200 exactly when [`normalise_code`]
/// reads the string as one of the caller's unspent codes (which is then
/// spent: the same string again is 401, and the account's other session
/// has ended), else 401 `invalid_recovery_code`; spent and replaced codes
/// never work, and `recoveryCodesRemaining` always says how many are left.
#[actix_web::test]
async fn recovery_codes_are_read_as_documented() {
    let app = spawn_app().await;
    let base = app.base.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        let session = api.session_with_passkey();
        let codes = RefCell::new(CodeBook {
            live: session.recovery_codes.clone(),
            spent: Vec::new(),
            replaced: Vec::new(),
        });
        // The hand-picked inputs run every time, before the random ones.
        for input in tricky_code_inputs() {
            if let Err(err) = api.check_code_input(&session, &codes, &input) {
                panic!("{input:?}: {err}");
            }
        }
        run_property("recovery codes", 160, arb_code_input(), |input| {
            api.check_code_input(&session, &codes, &input)
        });
        api.check_held(&session);
        let codes = codes.borrow();
        eprintln!(
            "recovery codes: {} accepted, {} left unspent in replaced sets",
            codes.spent.len(),
            codes.replaced.len()
        );
    })
    .await;
    assert_still_healthy(&app).await;
}

/// The recovery-code oracle itself, on the contract's own examples.
#[test]
fn the_recovery_code_oracle_reads_the_contract() {
    let read = |s: &str| normalise_code(s);
    assert_eq!(read("k7m2q-9xw4d").as_deref(), Some("k7m2q9xw4d"));
    assert_eq!(read("K7M2Q 9XW4D").as_deref(), Some("k7m2q9xw4d"));
    assert_eq!(read("\tk7m2q--9xw4d ").as_deref(), Some("k7m2q9xw4d"));
    assert_eq!(read("oOiIlL2345").as_deref(), Some("0011112345"));
    let padded = format!("k7m2q-9xw4d{}", " ".repeat(64 - 11));
    assert_eq!(read(&padded).as_deref(), Some("k7m2q9xw4d"));
    assert_eq!(read(&format!("{padded} ")), None, "65 bytes");
    for wrong in [
        "k7m2q-9xw4",
        "k7m2q-9xw4dd",
        "k7m2q-9xw4u",
        "k7m2q_9xw4d",
        "k7m2q\n9xw4d",
        "k7m2q\u{a0}9xw4d",
        "k7m2q\u{2011}9xw4d",
        "\u{212A}7m2q-9xw4d",
        "ｋ7m2q-9xw4d",
        "k7m2q-9xw4\u{41E}",
        "",
    ] {
        assert_eq!(read(wrong), None, "{wrong:?}");
    }
}

/// 7. Hand-picked: a JSON array is not the object a body route takes, so
/// it is a wrong type (400 `invalid_request`) even when its elements would
/// fill the route's fields in order. Every refusal that does not happen is
/// listed in the one failure.
#[actix_web::test]
async fn array_bodies_are_refused_as_wrong_types() {
    let app = spawn_app().await;
    let base = app.base.clone();
    on_blocking_thread(move || {
        let api = Api::new(&base);
        let session = api.session_with_passkey();
        let rename = format!("/passkeys/{}", session.passkey_id);
        let (password_token, full_token) = (session.password_token(), session.full_token());
        let cases: Vec<(&str, Option<&str>, Value)> = vec![
            (
                "/auth/signup",
                None,
                json!(["fuzz-array-user", PASSWORD, "Array"]),
            ),
            ("/auth/login", None, json!([session.username, PASSWORD])),
            (
                "/auth/recovery",
                Some(&password_token),
                json!([session.recovery_codes[0]]),
            ),
            (
                "/auth/password",
                Some(&full_token),
                json!([PASSWORD, "a new horse battery"]),
            ),
            (&rename, Some(&full_token), json!(["Array nickname"])),
            (
                "/auth/refresh",
                None,
                json!([session.held(Role::Main).refresh]),
            ),
        ];
        let mut accepted = Vec::new();
        for (path, token, body) in &cases {
            let method = if path.starts_with("/passkeys/") {
                Method::PATCH
            } else {
                Method::POST
            };
            let answer = api
                .call(method.clone(), path, *token, Some(body))
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            if answer.status != 400 || answer.json()["code"] != "invalid_request" {
                let text = answer.text();
                accepted.push(format!(
                    "{method} {path} {body} -> {} {text}",
                    answer.status
                ));
            }
        }
        assert!(
            accepted.is_empty(),
            "array bodies read as objects:\n{}",
            accepted.join("\n")
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// Running a property next to the app
// ---------------------------------------------------------------------------

/// SQLite only: a PostgreSQL run would double the time of the file. Most of
/// these inputs stop in the HTTP, JSON and WebAuthn layers, which both
/// backends share; strings that reach SQL do differ by backend (PostgreSQL
/// refuses NUL in text), so this is the one place to change to fuzz
/// PostgreSQL as well.
async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// PostgreSQL when configured (it refuses more than SQLite does, e.g. NUL
/// bytes in text, so it finds more), else SQLite.
async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let backend = if crate::helpers::postgres_url().is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    TestApp::spawn_with(backend, overrides).await
}

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // No regression files in the source tree; the minimal failing input
        // is in the panic message.
        failure_persistence: None,
        max_shrink_time: 120_000,
        ..Config::default()
    }
}

/// Runs `test` on generated values; a failure is shrunk and then panics with
/// the minimal input.
fn run_property<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) where
    S: Strategy,
{
    let mut runner = TestRunner::new(config(default_cases));
    if let Err(failure) = runner.run(&strategy, test) {
        panic!("property {name:?} failed: {failure}");
    }
}

/// Runs blocking work (a blocking HTTP client) off the runtime that serves
/// the app, and re-raises its panic.
async fn on_blocking_thread(work: impl FnOnce() + Send + 'static) {
    if let Err(err) = actix_web::rt::task::spawn_blocking(work).await {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// After a property: the app still serves a normal signup and login.
async fn assert_still_healthy(app: &TestApp) {
    let user = app.new_user().await;
    let res = app.get("/auth/me", Some(&user.token)).await;
    assert_eq!(res.status(), 200, "the app is unhealthy after the property");
}

// ---------------------------------------------------------------------------
// A blocking client that checks every answer
// ---------------------------------------------------------------------------

struct Api {
    base: Url,
    http: reqwest::blocking::Client,
}

/// A request as sent, printed in failure messages.
struct Request {
    method: Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Vec<u8>>,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// A user with a registered passkey and a user without passkeys, and the
/// sessions of theirs the test holds: two of each account ([`Role`]). The
/// sessions change as the test ends and replaces them, hence the cells.
struct Session {
    username: String,
    passkey_id: String,
    /// The codes the first passkey's answer showed.
    recovery_codes: Vec<String>,
    /// The passkey, to step a new main session up again.
    authenticator: RefCell<TestAuthenticator>,
    /// The account without passkeys: its fresh password-level tokens pass
    /// the recent guard.
    plain_username: String,
    /// The live sessions the test holds, by role.
    held: RefCell<BTreeMap<Role, Held>>,
    /// Sessions the test ended (or saw end), oldest first: each of their
    /// tokens stays refused.
    ended: RefCell<Vec<Held>>,
    /// How often the test clock was moved past the refresh grace; a
    /// rotated token presented in a later epoch is a stolen copy.
    epoch: Cell<u32>,
    /// Successful refreshes (each rotated a held session's refresh token).
    refreshes: Cell<u32>,
}

/// The sessions the test holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    /// The passkey account's first session: its password login's token and,
    /// stepped up with the passkey, a full-level token (one session: a
    /// step-up keeps it).
    Main,
    /// Another password login of the passkey account.
    Second,
    /// The account without passkeys.
    Plain,
    /// Another login of the account without passkeys.
    PlainSecond,
}

impl Role {
    const ALL: [Role; 4] = [Role::Main, Role::Second, Role::Plain, Role::PlainSecond];

    fn is_passkey_account(self) -> bool {
        matches!(self, Role::Main | Role::Second)
    }

    /// The other held session of the same account: what a password change,
    /// a recovery code or `DELETE /auth/sessions` through this one ends.
    fn sibling(self) -> Role {
        match self {
            Role::Main => Role::Second,
            Role::Second => Role::Main,
            Role::Plain => Role::PlainSecond,
            Role::PlainSecond => Role::Plain,
        }
    }

    /// The held sessions of the same account, this one first.
    fn account(self) -> [Role; 2] {
        [self, self.sibling()]
    }

    /// Stands for the session's id in a request path, resolved when sent.
    fn placeholder(self) -> &'static str {
        match self {
            Role::Main => "{main}",
            Role::Second => "{second}",
            Role::Plain => "{plain}",
            Role::PlainSecond => "{plain-second}",
        }
    }
}

/// Stands for the id of the session ended last in a request path.
const ENDED_PLACEHOLDER: &str = "{ended}";

/// One session the test holds.
#[derive(Debug, Clone)]
struct Held {
    /// Its id: the `sid` of its tokens.
    sid: String,
    /// The login's password-level access token.
    token: String,
    /// [`Role::Main`] only: the full-level token of its step-up.
    full: Option<String>,
    /// The live refresh token.
    refresh: String,
    /// The refresh tokens it rotated away, with the clock epoch of each
    /// rotation ([`Session::epoch`]).
    rotated: Vec<(String, u32)>,
}

impl Held {
    /// Every access token of the session.
    fn access_tokens(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.token).chain(&self.full)
    }
}

impl Session {
    fn held(&self, role: Role) -> Held {
        self.held.borrow()[&role].clone()
    }

    fn token(&self, role: Role) -> String {
        self.held.borrow()[&role].token.clone()
    }

    /// The main session's password-level token.
    fn password_token(&self) -> String {
        self.token(Role::Main)
    }

    /// The main session's full-level token.
    fn full_token(&self) -> String {
        self.held.borrow()[&Role::Main]
            .full
            .clone()
            .expect("the main session is stepped up")
    }

    /// The fresh password-level token of the account without passkeys.
    fn plain_token(&self) -> String {
        self.token(Role::Plain)
    }

    fn username_of(&self, role: Role) -> &str {
        if role.is_passkey_account() {
            &self.username
        } else {
            &self.plain_username
        }
    }

    /// The role whose live refresh token `presented` is.
    fn role_of_refresh(&self, presented: &str) -> Option<Role> {
        let held = self.held.borrow();
        Role::ALL
            .into_iter()
            .find(|role| held[role].refresh == presented)
    }

    /// The role that rotated `presented` away, and whether that happened
    /// in the current clock epoch (within the grace).
    fn role_of_rotated(&self, presented: &str) -> Option<(Role, bool)> {
        let held = self.held.borrow();
        Role::ALL.into_iter().find_map(|role| {
            held[&role]
                .rotated
                .iter()
                .find(|(token, _)| token == presented)
                .map(|(_, epoch)| (role, *epoch == self.epoch.get()))
        })
    }

    /// The held role whose session id is `sid`.
    fn role_with_sid(&self, sid: &str) -> Option<Role> {
        let held = self.held.borrow();
        Role::ALL.into_iter().find(|role| held[role].sid == sid)
    }

    /// The session ended last, if any.
    fn last_ended(&self) -> Option<Held> {
        self.ended.borrow().last().cloned()
    }

    /// `path` with the placeholders of session ids filled in.
    fn resolve(&self, path: &str) -> String {
        if !path.contains('{') {
            return path.to_owned();
        }
        let mut path = path.to_owned();
        for role in Role::ALL {
            path = path.replace(role.placeholder(), &self.held(role).sid);
        }
        let ended = self
            .last_ended()
            .map_or_else(|| Uuid::new_v4().to_string(), |h| h.sid);
        path.replace(ENDED_PLACEHOLDER, &ended)
    }
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = &self.url[url::Position::BeforePath..];
        writeln!(f, "{} {target}", self.method)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {}", value.as_bytes().escape_ascii())?;
        }
        if let Some(body) = &self.body {
            write!(f, "body: {:?}", Bytes(body.clone()))?;
        }
        Ok(())
    }
}

impl Api {
    fn new(base: &str) -> Self {
        Api {
            base: Url::parse(base).expect("base URL"),
            http: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("blocking client"),
        }
    }

    fn url(&self, path: &str, query: Option<&str>) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query(query);
        url
    }

    /// Sends `req` and checks the invariants every answer keeps: an HTTP
    /// answer at all (no dropped connection, as after a panic), no 5xx, and
    /// every 4xx is problem+json with a `code` string and matching `status`.
    fn send(&self, req: &Request) -> Result<Answer, TestCaseError> {
        let mut builder = self.http.request(req.method.clone(), req.url.clone());
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let res = builder
            .send()
            .map_err(|e| TestCaseError::fail(format!("no HTTP answer ({e}) to\n{req}")))?;
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = res
            .bytes()
            .map_err(|e| TestCaseError::fail(format!("answer body unreadable ({e}) for\n{req}")))?
            .to_vec();
        let answer = Answer { status, body };
        prop_assert!(status < 500, "{status} for\n{req}\n→ {}", answer.text());
        if (400..500).contains(&status) && req.method != Method::HEAD {
            prop_assert_eq!(
                content_type.as_deref(),
                Some("application/problem+json"),
                "{} for\n{}",
                status,
                req
            );
            let problem = answer.json();
            prop_assert!(
                problem["code"].is_string() && problem["status"] == status,
                "bad problem body {} for\n{}",
                answer.text(),
                req
            );
        }
        Ok(answer)
    }

    /// A JSON request (or none) with an optional bearer token, checked by [`Api::send`].
    fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, TestCaseError> {
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push((AUTHORIZATION, bearer(token)));
        }
        if body.is_some() {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        let body = body.map(|b| serde_json::to_vec(b).expect("a JSON value serialises"));
        self.send(&Request {
            method,
            url: self.url(path, None),
            headers,
            body,
        })
    }

    /// A body-less request that must answer 200; returns the JSON body.
    fn ok(&self, method: Method, path: &str, token: Option<&str>) -> Result<Value, TestCaseError> {
        let answer = self.call(method.clone(), path, token, None)?;
        prop_assert_eq!(answer.status, 200, "{} {}: {}", method, path, answer.text());
        Ok(answer.json())
    }

    /// For setup outside a property: a request that must answer `status`.
    fn expect(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        status: u16,
    ) -> Value {
        let answer = self
            .call(method.clone(), path, token, body)
            .unwrap_or_else(|e| panic!("setup {method} {path}: {e}"));
        assert_eq!(
            answer.status,
            status,
            "setup {method} {path}: {}",
            answer.text()
        );
        answer.json()
    }

    /// A fresh user, logged in: (username, password-level token).
    fn new_user(&self) -> (String, String) {
        let username = self.signup();
        let credentials = json!({"username": username, "password": PASSWORD});
        let token = self.expect(Method::POST, "/auth/login", None, Some(&credentials), 200);
        (username, token["accessToken"].as_str().unwrap().to_owned())
    }

    /// A fresh user, not logged in; returns the username.
    fn signup(&self) -> String {
        let username = format!("fuzz-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let credentials = json!({"username": username, "password": PASSWORD});
        self.expect(Method::POST, "/auth/signup", None, Some(&credentials), 201);
        username
    }

    /// A whole registration ceremony; returns the passkey summary.
    fn register_passkey(&self, token: &str, authenticator: &mut TestAuthenticator) -> Value {
        let path = "/passkeys/register/options";
        let options = self.expect(Method::GET, path, Some(token), None, 200);
        let response = authenticator.register(&options, ORIGIN).unwrap();
        let path = "/passkeys/register/verify";
        self.expect(Method::POST, path, Some(token), Some(&response), 201)
    }

    /// A whole authentication ceremony; returns the full-level token.
    fn step_up(&self, token: &str, authenticator: &mut TestAuthenticator) -> String {
        self.try_step_up(token, authenticator)
            .unwrap_or_else(|e| panic!("setup step-up: {e}"))
    }

    fn try_step_up(
        &self,
        token: &str,
        authenticator: &mut TestAuthenticator,
    ) -> Result<String, TestCaseError> {
        let options = self.ok(Method::GET, "/passkeys/authenticate/options", Some(token))?;
        let assertion = authenticator
            .authenticate(&options, ORIGIN)
            .map_err(TestCaseError::fail)?;
        let path = "/passkeys/authenticate/verify";
        let answer = self.call(Method::POST, path, Some(token), Some(&assertion))?;
        prop_assert_eq!(answer.status, 200, "step-up: {}", answer.text());
        let body = answer.json();
        // A step-up keeps the session and its refresh token.
        prop_assert!(body.get("refreshToken").is_none(), "step-up: {}", body);
        let full = body["accessToken"].as_str().unwrap_or_default().to_owned();
        prop_assert_eq!(full.split('.').count(), 3, "step-up: {}", body);
        prop_assert_eq!(
            &claims(&full)["sid"],
            &claims(token)["sid"],
            "a step-up left the session"
        );
        Ok(full)
    }

    /// A new session of `username` by a password login, stepped up with
    /// `authenticator` when given.
    fn hold(
        &self,
        username: &str,
        authenticator: Option<&mut TestAuthenticator>,
    ) -> Result<Held, TestCaseError> {
        let credentials = json!({"username": username, "password": PASSWORD});
        let login = self.call(Method::POST, "/auth/login", None, Some(&credentials))?;
        prop_assert_eq!(login.status, 200, "login: {}", login.text());
        let body = login.json();
        let (Some(token), Some(refresh)) =
            (body["accessToken"].as_str(), body["refreshToken"].as_str())
        else {
            return Err(TestCaseError::fail(format!(
                "a login without both tokens: {body}"
            )));
        };
        let sid = claims(token)["sid"]
            .as_str()
            .ok_or_else(|| TestCaseError::fail(format!("a token without sid: {token}")))?
            .to_owned();
        let full = match authenticator {
            Some(authenticator) => Some(self.try_step_up(token, authenticator)?),
            None => None,
        };
        Ok(Held {
            sid,
            token: token.to_owned(),
            full,
            refresh: refresh.to_owned(),
            rotated: Vec::new(),
        })
    }

    /// A user with a registered passkey, whose first session is stepped up
    /// to a full-level token, a user without passkeys, and a second session
    /// of each.
    fn session_with_passkey(&self) -> Session {
        let setup =
            |held: Result<Held, TestCaseError>| held.unwrap_or_else(|e| panic!("setup login: {e}"));
        let username = self.signup();
        let mut main = setup(self.hold(&username, None));
        let mut authenticator = TestAuthenticator::new();
        let passkey = self.register_passkey(&main.token, &mut authenticator);
        let recovery_codes = shown_codes(&passkey["recoveryCodes"])
            .unwrap_or_else(|e| panic!("the first passkey's recoveryCodes: {e}\n{passkey}"));
        main.full = Some(self.step_up(&main.token, &mut authenticator));
        let second = setup(self.hold(&username, None));
        let plain_username = self.signup();
        let plain = setup(self.hold(&plain_username, None));
        let plain_second = setup(self.hold(&plain_username, None));
        let held = [
            (Role::Main, main),
            (Role::Second, second),
            (Role::Plain, plain),
            (Role::PlainSecond, plain_second),
        ];
        Session {
            username,
            passkey_id: passkey["id"].as_str().unwrap().to_owned(),
            recovery_codes,
            authenticator: RefCell::new(authenticator),
            plain_username,
            held: RefCell::new(held.into_iter().collect()),
            ended: RefCell::new(Vec::new()),
            epoch: Cell::new(0),
            refreshes: Cell::new(0),
        }
    }

    /// Logs in with `credentials`, which must work, and returns `/auth/me`;
    /// then logs that session out again, so that the sessions of the account
    /// stay the ones the test holds.
    fn login_and_me(&self, credentials: &Value) -> Result<Value, TestCaseError> {
        let login = self.call(Method::POST, "/auth/login", None, Some(credentials))?;
        prop_assert_eq!(login.status, 200, "login: {}", login.text());
        let token = login.json()["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let me = self.ok(Method::GET, "/auth/me", Some(&token))?;
        let logout = self.call(Method::POST, "/auth/logout", Some(&token), None)?;
        prop_assert_eq!(logout.status, 204, "logout: {}", logout.text());
        Ok(me)
    }

    /// `POST /auth/refresh` with `{"refreshToken": presented}`.
    fn refresh(&self, presented: &str) -> Result<Answer, TestCaseError> {
        let body = json!({"refreshToken": presented});
        self.call(Method::POST, "/auth/refresh", None, Some(&body))
    }

    /// Replaces the held session `role` by a new login (stepped up again
    /// for [`Role::Main`]).
    fn rebuild(&self, session: &Session, role: Role) -> TestCaseResult {
        let username = session.username_of(role);
        let held = if role == Role::Main {
            let mut authenticator = session.authenticator.borrow_mut();
            self.hold(username, Some(&mut authenticator))?
        } else {
            self.hold(username, None)?
        };
        session.held.borrow_mut().insert(role, held);
        Ok(())
    }

    /// `roles` just ended through the test (`why`): from now on every token
    /// of theirs is refused, while every other held session still works;
    /// then each is replaced by a new login.
    fn sessions_ended(&self, session: &Session, roles: &[Role], why: &str) -> TestCaseResult {
        for role in roles {
            let gone = session
                .held
                .borrow_mut()
                .remove(role)
                .expect("a held session");
            self.expect_ended(&gone)
                .map_err(|e| fail_with(format!("{role:?} after {why}"), e))?;
            session.ended.borrow_mut().push(gone);
        }
        self.expect_live(session)
            .map_err(|e| fail_with(format!("after {why} ended {roles:?}"), e))?;
        for role in roles {
            self.rebuild(session, *role)?;
        }
        Ok(())
    }

    /// An ended session: its access tokens get 401 `invalid_token`, its
    /// refresh token 401 `invalid_refresh_token`.
    fn expect_ended(&self, held: &Held) -> TestCaseResult {
        for token in held.access_tokens() {
            let answer = self.call(Method::GET, "/protected/basic", Some(token), None)?;
            expect_problem(&answer, 401, "invalid_token")?;
        }
        let answer = self.refresh(&held.refresh)?;
        expect_problem(&answer, 401, "invalid_refresh_token")
    }

    /// Every held session still works: its tokens answer 200 at the guard
    /// they pass (`/protected/full` for the full-level one).
    fn expect_live(&self, session: &Session) -> TestCaseResult {
        let held = session.held.borrow().clone();
        for (role, held) in held {
            let answer = self.call(Method::GET, "/protected/basic", Some(&held.token), None)?;
            prop_assert_eq!(
                answer.status,
                200,
                "{:?} stopped working: {}",
                role,
                answer.text()
            );
            if let Some(full) = &held.full {
                let answer = self.call(Method::GET, "/protected/full", Some(full), None)?;
                prop_assert_eq!(
                    answer.status,
                    200,
                    "the full token of {:?} stopped working: {}",
                    role,
                    answer.text()
                );
            }
        }
        Ok(())
    }

    /// `GET /auth/sessions` as `caller` lists exactly the held sessions of
    /// its account, `current` marking the caller's.
    fn check_session_list(
        &self,
        session: &Session,
        caller: Role,
        answer: &Answer,
    ) -> TestCaseResult {
        prop_assert_eq!(answer.status, 200, "sessions: {}", answer.text());
        let list = answer.json();
        let Some(items) = list.as_array() else {
            return Err(TestCaseError::fail(format!("not an array: {list}")));
        };
        let mut got: Vec<(String, Value)> = items
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or("?").to_owned(),
                    s["current"].clone(),
                )
            })
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want: Vec<(String, Value)> = caller
            .account()
            .into_iter()
            .map(|role| (session.held(role).sid, json!(role == caller)))
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        prop_assert_eq!(got, want, "the sessions {:?} sees: {}", caller, list);
        Ok(())
    }

    /// After a property: every held session works (its refresh token too),
    /// every ended one is refused, and each account lists exactly its held
    /// sessions.
    fn check_held(&self, session: &Session) {
        let check = || -> TestCaseResult {
            self.expect_live(session)?;
            for gone in session.ended.borrow().iter() {
                self.expect_ended(gone)?;
            }
            for role in Role::ALL {
                let answer = self.call(
                    Method::GET,
                    "/auth/sessions",
                    Some(&session.token(role)),
                    None,
                )?;
                self.check_session_list(session, role, &answer)?;
            }
            for role in Role::ALL {
                let body = json!({"refreshToken": session.held(role).refresh});
                let answer = self.call(Method::POST, "/auth/refresh", None, Some(&body))?;
                let bytes = serde_json::to_vec(&body).expect("a JSON value serialises");
                self.check_refresh_body(session, &bytes, &answer)?;
            }
            Ok(())
        };
        if let Err(err) = check() {
            panic!("after the property, the sessions the test holds: {err}");
        }
        eprintln!(
            "sessions: {} ended and replaced, {} refreshes",
            session.ended.borrow().len(),
            session.refreshes.get()
        );
    }

    fn passkey_count(&self, token: &str) -> Result<Value, TestCaseError> {
        Ok(self.ok(Method::GET, "/auth/me", Some(token))?["passkeyCount"].clone())
    }

    /// Properties 1 and 2: `bytes` as the body of the case's route, and
    /// the checks of [`Api::check_account_route`].
    fn run_body_case<B>(
        &self,
        session: &Session,
        ledger: &Ledger,
        case: &BodyCase<B>,
        bytes: Vec<u8>,
    ) -> TestCaseResult {
        let answer = self.send_body_case(session, case, bytes.clone())?;
        self.check_account_route(session, ledger, case.route, case.token, &bytes, &answer)
    }

    fn send_body_case<B>(
        &self,
        session: &Session,
        case: &BodyCase<B>,
        bytes: Vec<u8>,
    ) -> Result<Answer, TestCaseError> {
        let token = case.token.header(session);
        if case.live_challenge && token.is_some() {
            // Let a parsable body reach the ceremony instead of stopping at
            // "no live challenge"; the options answer is checked like any other.
            if let Some(options) = case.route.options_path() {
                self.send(&Request {
                    method: Method::GET,
                    url: self.url(options, None),
                    headers: vec![(AUTHORIZATION, token.clone().unwrap())],
                    body: None,
                })?;
            }
        }
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push((AUTHORIZATION, token));
        }
        if let Some(content_type) = case.content_type.value() {
            headers.push((CONTENT_TYPE, HeaderValue::from_static(content_type)));
        }
        self.send(&Request {
            method: case.route.method(),
            url: self.url(&case.route.path(session), None),
            headers,
            body: Some(bytes),
        })
    }

    /// Property 4. Session ids in the path are filled in when sent. At the
    /// session-ending routes the answer is checked exactly when the test can
    /// tell it ([`Ending::expected`]). What a request ended is then checked
    /// exactly: after `DELETE /auth/me` with
    /// a token that passed, every token of that account is refused and the
    /// whole session is replaced; after a 204 of logout or
    /// `DELETE /auth/sessions[/{id}]` exactly the sessions the contract
    /// names have ended (then replaced); after any other answer there,
    /// nothing has.
    fn send_request_case(
        &self,
        session: &RefCell<Session>,
        case: &RequestCase,
    ) -> Result<Answer, TestCaseError> {
        let mut headers = Vec::new();
        let (path, auth) = {
            let session = session.borrow();
            (session.resolve(&case.path), case.auth.header(&session))
        };
        if let Some(value) = auth {
            headers.push((AUTHORIZATION, value));
        }
        if case.body.is_some() {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        for (name, value) in &case.extra {
            headers.push((name.clone(), header_value(&value.0)));
        }
        let url = self.url(&path, case.query.as_deref());
        // As sent: dot segments are gone.
        let sent_path = url.path().to_owned();
        let answer = self.send(&Request {
            method: case.method.clone(),
            url,
            headers,
            body: case.body.as_ref().map(|b| b.0.clone()),
        })?;
        let caller = case.auth.role();
        if case.method == Method::DELETE && sent_path == "/auth/me" && answer.status == 204 {
            self.account_deleted(session, caller)?;
        } else if let Some(ending) = Ending::of(&case.method, &sent_path) {
            let session = session.borrow();
            // Without the extra headers (a refused CORS origin is its own
            // answer), the answer is fixed by the token and the id.
            let expected = match case.extra.is_empty() {
                true => ending.expected(&session, &case.auth),
                false => None,
            };
            match expected {
                Some(Expected::NoContent) => {
                    prop_assert_eq!(answer.status, 204, "{:?}: {}", ending, answer.text())
                }
                Some(Expected::Problem(status, code)) => expect_problem(&answer, status, code)
                    .map_err(|e| fail_with(format!("{ending:?}"), e))?,
                Some(Expected::SessionList) | None => {}
            }
            let ended = self.ended_by(&session, &ending, caller, &answer)?;
            if ended.is_empty() {
                self.expect_live(&session)
                    .map_err(|e| fail_with(format!("{ending:?} answered {}", answer.status), e))?;
            } else {
                self.sessions_ended(&session, &ended, &format!("{ending:?}"))?;
            }
        }
        Ok(answer)
    }

    /// The held sessions a session-ending request ended by the contract:
    /// none unless it answered 204, which takes a held token (logout: the
    /// caller's; all others: the caller's sibling; one id: that session,
    /// which must be of the caller's account).
    fn ended_by(
        &self,
        session: &Session,
        ending: &Ending,
        caller: Option<Role>,
        answer: &Answer,
    ) -> Result<Vec<Role>, TestCaseError> {
        if answer.status != 204 {
            return Ok(Vec::new());
        }
        let Some(caller) = caller else {
            return Err(TestCaseError::fail(format!(
                "{ending:?} answered 204 to a token the test holds no live session of"
            )));
        };
        Ok(match ending {
            Ending::Logout => vec![caller],
            Ending::Others => vec![caller.sibling()],
            Ending::One(id) => {
                let target = session.role_with_sid(id);
                prop_assert!(
                    target.is_some_and(|t| caller.account().contains(&t)),
                    "DELETE /auth/sessions/{} answered 204 to {:?}, yet it is none of its account's sessions",
                    id,
                    caller
                );
                vec![target.unwrap()]
            }
        })
    }

    /// After a 204 of `DELETE /auth/me`: exactly one account is gone (the
    /// caller's, when the test knows it), every token of it refused, the
    /// other account's sessions still work; then the whole session is
    /// replaced.
    fn account_deleted(&self, session: &RefCell<Session>, caller: Option<Role>) -> TestCaseResult {
        let gone = {
            let old = session.borrow();
            let mut gone = Vec::new();
            for account in [Role::Main.account(), Role::Plain.account()] {
                let first =
                    self.call(Method::GET, "/auth/me", Some(&old.token(account[0])), None)?;
                if first.status == 200 {
                    let other = old.token(account[1]);
                    let answer = self.call(Method::GET, "/auth/me", Some(&other), None)?;
                    prop_assert_eq!(
                        answer.status,
                        200,
                        "{:?} after DELETE /auth/me of the other account: {}",
                        account[1],
                        answer.text()
                    );
                    continue;
                }
                for role in account {
                    self.expect_ended(&old.held(role))
                        .map_err(|e| fail_with(format!("{role:?} after DELETE /auth/me"), e))?;
                }
                gone.push(account);
            }
            prop_assert_eq!(
                gone.len(),
                1,
                "DELETE /auth/me answered 204 and deleted {} accounts",
                gone.len()
            );
            if let Some(caller) = caller {
                prop_assert!(
                    gone[0].contains(&caller),
                    "DELETE /auth/me through {:?} deleted the other account",
                    caller
                );
            }
            let mut ended = old.ended.borrow().clone();
            ended.extend(gone[0].iter().map(|role| old.held(*role)));
            ended
        };
        let new = self.session_with_passkey();
        *new.ended.borrow_mut() = gone;
        new.refreshes.set(session.borrow().refreshes.get());
        *session.borrow_mut() = new;
        Ok(())
    }

    /// Properties 1 and 2 at the account routes and the refresh route: the
    /// answer the contract fixes for the token and the body, and what an
    /// accepted body changed. (Other routes are left to [`Api::send`]'s
    /// checks.)
    fn check_account_route(
        &self,
        session: &Session,
        ledger: &Ledger,
        route: BodyRoute,
        token: TokenKind,
        body: &[u8],
        answer: &Answer,
    ) -> TestCaseResult {
        // Public: whatever the Authorization header, the body decides.
        if let BodyRoute::Refresh = route {
            return self.check_refresh_body(session, body, answer);
        }
        if let BodyRoute::SignInVerify = route {
            return check_sign_in_body(body, answer);
        }
        if !route.is_account_route() {
            return Ok(());
        }
        // A body over the limit may be refused before anything else.
        if body.len() > MAX_BODY_BYTES && answer.status == 413 {
            return expect_problem(answer, 413, "payload_too_large");
        }
        // The guard's refusal, for a token it refuses.
        let guard = match (route, token) {
            (_, TokenKind::Missing) => Some((401, "missing_token")),
            (_, TokenKind::Forged) => Some((401, "invalid_token")),
            (
                BodyRoute::Password | BodyRoute::RecoveryCodes,
                TokenKind::PasswordLevel | TokenKind::Second,
            ) => Some((403, "passkey_required")),
            _ => None,
        };
        if let Some((status, code)) = guard {
            if answer.status == status && answer.json()["code"] == code {
                return Ok(());
            }
            // The recent guard reads the database to tell the token's level
            // is too low, and meanwhile the body extractor can refuse a
            // malformed body first (the server's order varies from run to
            // run). Still a refusal: checked exactly below, where a body
            // that needs the service to answer fails.
            let body_first = matches!(token, TokenKind::PasswordLevel | TokenKind::Second)
                && matches!(route, BodyRoute::Password)
                && matches!(answer.status, 400 | 413);
            prop_assert!(
                body_first,
                "expected {} {} from the guard, got {} {}",
                status,
                code,
                answer.status,
                answer.text()
            );
        }
        match route {
            // Takes no body: the token decides.
            BodyRoute::RecoveryCodes => {
                if matches!(token, TokenKind::NoPasskey) {
                    return expect_problem(answer, 409, "no_passkeys");
                }
                prop_assert_eq!(answer.status, 201, "recovery codes: {}", answer.text());
                let codes = shown_codes(&answer.json()["codes"]).map_err(TestCaseError::fail)?;
                *ledger.codes.borrow_mut() = codes;
                ledger.code_sets.set(ledger.code_sets.get() + 1);
                Ok(())
            }
            _ if body.len() > MAX_BODY_BYTES => expect_problem(answer, 413, "payload_too_large"),
            BodyRoute::Recovery => self.check_recovery_body(session, ledger, token, body, answer),
            BodyRoute::Password => self.check_password_body(session, ledger, token, body, answer),
            _ => Ok(()),
        }
    }

    /// `POST /auth/recovery` past the guard: 200 only for an unspent code
    /// of the caller's (then spent), 401 for any other string, 400 for a
    /// missing or non-string `code`.
    fn check_recovery_body(
        &self,
        session: &Session,
        ledger: &Ledger,
        token: TokenKind,
        body: &[u8],
        answer: &Answer,
    ) -> TestCaseResult {
        #[derive(Deserialize)]
        struct Fields {
            code: Option<Value>,
        }
        let code = match json_fields::<Fields>(body) {
            // Not an object (see property 7).
            JsonFields::Array | JsonFields::Invalid => {
                return expect_problem(answer, 400, "invalid_request")
            }
            JsonFields::Object(Fields {
                code: Some(Value::String(code)),
            }) => code,
            JsonFields::Object(_) => return expect_field_error(answer, &["code"]),
        };
        // The account without passkeys has no codes.
        let mut codes = ledger.codes.borrow_mut();
        let matched = match token {
            TokenKind::NoPasskey => None,
            _ => normalise_code(&code).and_then(|read| {
                codes
                    .iter()
                    .position(|c| normalise_code(c) == Some(read.clone()))
            }),
        };
        match matched {
            Some(i) => {
                prop_assert_eq!(answer.status, 200, "a real code refused: {}", answer.text());
                let caller = token.role().expect("a token past the guard");
                expect_recovery_token(answer, &session.held(caller).sid)?;
                codes.remove(i);
                drop(codes);
                ledger.recoveries.set(ledger.recoveries.get() + 1);
                // Every other session of the account ends; the caller's stays.
                self.sessions_ended(session, &[caller.sibling()], "a recovery code")
            }
            None => expect_problem(answer, 401, "invalid_recovery_code"),
        }
    }

    /// `POST /auth/refresh`: 200 exactly for an object whose `refreshToken`
    /// is the live refresh token of a held session (which then rotates), 401
    /// `invalid_refresh_token` for any other string (a rotated one ends
    /// nothing within the grace, its whole session after it), 400 naming the
    /// field for a missing or non-string one, 400 for a body that is not an
    /// object, 413 over the limit.
    fn check_refresh_body(
        &self,
        session: &Session,
        body: &[u8],
        answer: &Answer,
    ) -> TestCaseResult {
        if body.len() > MAX_BODY_BYTES {
            return expect_problem(answer, 413, "payload_too_large");
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Fields {
            refresh_token: Option<Value>,
        }
        let presented = match json_fields::<Fields>(body) {
            JsonFields::Array | JsonFields::Invalid => {
                return expect_problem(answer, 400, "invalid_request")
            }
            JsonFields::Object(Fields {
                refresh_token: Some(Value::String(presented)),
            }) => presented,
            JsonFields::Object(_) => return expect_field_error(answer, &["refreshToken"]),
        };
        if let Some(role) = session.role_of_refresh(&presented) {
            prop_assert_eq!(
                answer.status,
                200,
                "the live refresh token of {:?} refused: {}",
                role,
                answer.text()
            );
            let next = self.expect_refreshed(&session.held(role), answer)?;
            let mut held = session.held.borrow_mut();
            let held = held.get_mut(&role).expect("a held session");
            let old = std::mem::replace(&mut held.refresh, next);
            held.rotated.push((old, session.epoch.get()));
            session.refreshes.set(session.refreshes.get() + 1);
            return Ok(());
        }
        expect_problem(answer, 401, "invalid_refresh_token")?;
        match session.role_of_rotated(&presented) {
            // A race between two requests of one client: nothing ends.
            Some((_, true)) => self
                .expect_live(session)
                .map_err(|e| fail_with("a rotated refresh token within the grace".into(), e)),
            // A stolen copy: its whole session ends.
            Some((role, false)) => self.sessions_ended(
                session,
                &[role],
                "a rotated refresh token presented after the grace",
            ),
            None => Ok(()),
        }
    }

    /// A refresh of `held`'s session: the token response at the password
    /// level with a new refresh token, for the same session, the login's
    /// `amr` and `auth_time`; the new access token works. Returns the new
    /// refresh token.
    fn expect_refreshed(&self, held: &Held, answer: &Answer) -> Result<String, TestCaseError> {
        let body = answer.json();
        prop_assert_eq!(&body["tokenType"], "Bearer", "{}", body);
        prop_assert_eq!(&body["authLevel"], "password", "{}", body);
        prop_assert!(body["expiresIn"].is_u64(), "{}", body);
        prop_assert!(body["refreshExpiresIn"].is_u64(), "{}", body);
        let (Some(token), Some(next)) =
            (body["accessToken"].as_str(), body["refreshToken"].as_str())
        else {
            return Err(TestCaseError::fail(format!("no tokens in {body}")));
        };
        prop_assert!(
            !next.is_empty() && next != held.refresh,
            "the refresh token did not rotate: {}",
            body
        );
        prop_assert_eq!(token.split('.').count(), 3, "{}", body);
        let (now, login) = (claims(token), claims(&held.token));
        prop_assert_eq!(&now["sid"], &json!(held.sid), "{}", now);
        prop_assert_eq!(&now["authLevel"], "password", "{}", now);
        prop_assert_eq!(&now["acr"], "password", "{}", now);
        prop_assert_eq!(&now["amr"], &login["amr"], "{}", now);
        prop_assert_eq!(&now["auth_time"], &login["auth_time"], "{}", now);
        self.ok(Method::GET, "/protected/basic", Some(token))?;
        Ok(next.to_owned())
    }

    /// `POST /auth/password` past the guard: 204 only for both fields as
    /// strings, the right current password and a valid new one (the change
    /// is then checked and undone); else the contract's refusal.
    fn check_password_body(
        &self,
        session: &Session,
        ledger: &Ledger,
        token: TokenKind,
        body: &[u8],
        answer: &Answer,
    ) -> TestCaseResult {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Fields {
            current_password: Option<Value>,
            new_password: Option<Value>,
        }
        let (current, new) = match json_fields::<Fields>(body) {
            // Not an object (see property 7).
            JsonFields::Array | JsonFields::Invalid => {
                return expect_problem(answer, 400, "invalid_request")
            }
            JsonFields::Object(Fields {
                current_password: Some(Value::String(current)),
                new_password: Some(Value::String(new)),
            }) => (current, new),
            JsonFields::Object(fields) => {
                let mut wrong = Vec::new();
                if !matches!(fields.current_password, Some(Value::String(_))) {
                    wrong.push("currentPassword");
                }
                if !matches!(fields.new_password, Some(Value::String(_))) {
                    wrong.push("newPassword");
                }
                return expect_field_error(answer, &wrong);
            }
        };
        let new_valid = (8..=128).contains(&new.chars().count());
        match (current == PASSWORD, new_valid) {
            (true, true) => {
                prop_assert_eq!(
                    answer.status,
                    204,
                    "a valid change refused: {}",
                    answer.text()
                );
                ledger
                    .password_changes
                    .set(ledger.password_changes.get() + 1);
                let caller = token.role().expect("a token past the guard");
                self.undo_password_change(session, caller, &new)?;
                // Both changes ended every other session of the account;
                // the caller's stays.
                self.sessions_ended(session, &[caller.sibling()], "a password change")
            }
            (false, true) => expect_problem(answer, 401, "invalid_credentials"),
            (true, false) => expect_field_error(answer, &["newPassword"]),
            // Both wrong: the contract does not say which is reported.
            (false, false) if answer.status == 401 => {
                expect_problem(answer, 401, "invalid_credentials")
            }
            (false, false) => expect_field_error(answer, &["newPassword"]),
        }
    }

    /// After an accepted change to `new`: the new password logs in and the
    /// old one does not; then the old one is set again, with the token that
    /// made the change (its session outlives the change).
    fn undo_password_change(&self, session: &Session, caller: Role, new: &str) -> TestCaseResult {
        let username = session.username_of(caller);
        let bearer = match caller {
            Role::Main => session.full_token(),
            _ => session.token(caller),
        };
        self.login_and_me(&json!({"username": username, "password": new}))?;
        let old = json!({"username": username, "password": PASSWORD});
        let login = self.call(Method::POST, "/auth/login", None, Some(&old))?;
        expect_problem(&login, 401, "invalid_credentials")?;
        let undo = json!({"currentPassword": new, "newPassword": PASSWORD});
        let answer = self.call(Method::POST, "/auth/password", Some(&bearer), Some(&undo))?;
        prop_assert_eq!(
            answer.status,
            204,
            "undoing a password change: {}",
            answer.text()
        );
        Ok(())
    }

    /// After properties 1 and 2: both accounts still log in with their
    /// password, and the passkey account has exactly the codes the ledger
    /// says (one of them still works, and ends the other session).
    fn check_ledger(&self, session: &Session, ledger: &Ledger) {
        let login = |username: &str| {
            self.login_and_me(&json!({"username": username, "password": PASSWORD}))
                .unwrap_or_else(|e| panic!("the password of {username} no longer logs in: {e}"))
        };
        let me = login(&session.username);
        let codes = ledger.codes.borrow();
        assert_eq!(me["passkeyCount"], 1, "{me}");
        assert_eq!(me["recoveryCodesRemaining"], codes.len(), "{me}");
        let me = login(&session.plain_username);
        assert_eq!(me["passkeyCount"], 0, "{me}");
        assert_eq!(me["recoveryCodesRemaining"], 0, "{me}");
        if let Some(code) = codes.first() {
            let body = json!({"code": code});
            let token = session.password_token();
            let answer = self.expect(
                Method::POST,
                "/auth/recovery",
                Some(&token),
                Some(&body),
                200,
            );
            let ended = self.sessions_ended(session, &[Role::Second], "a recovery code");
            if let Err(err) = ended {
                panic!("the last recovery ({answer}): {err}");
            }
        }
        eprintln!(
            "account routes: {} password changes (undone), {} recoveries, {} new code sets",
            ledger.password_changes.get(),
            ledger.recoveries.get(),
            ledger.code_sets.get()
        );
    }

    /// Property 6: one typed code, and the answer [`normalise_code`] predicts.
    fn check_code_input(
        &self,
        session: &Session,
        book: &RefCell<CodeBook>,
        input: &CodeInput,
    ) -> TestCaseResult {
        let mut book = book.borrow_mut();
        // Keep a few unspent codes: replacing them needs a recent full token.
        if book.live.len() < 2 {
            let path = "/auth/recovery-codes";
            let answer = self.call(Method::POST, path, Some(&session.full_token()), None)?;
            prop_assert_eq!(answer.status, 201, "replacing the codes: {}", answer.text());
            let new = shown_codes(&answer.json()["codes"]).map_err(TestCaseError::fail)?;
            let old = std::mem::replace(&mut book.live, new);
            book.replaced.extend(old);
        }
        let typed = input.text(&book);
        let read = normalise_code(&typed);
        let matched = read.as_ref().and_then(|read| {
            book.live
                .iter()
                .position(|c| normalise_code(c).as_ref() == Some(read))
        });
        let body = json!({"code": typed});
        let token = session.password_token();
        let token = Some(token.as_str());
        let answer = self.call(Method::POST, "/auth/recovery", token, Some(&body))?;
        match matched {
            Some(i) => {
                prop_assert_eq!(
                    answer.status,
                    200,
                    "{:?} reads as the unspent {:?}: {}",
                    typed,
                    book.live[i],
                    answer.text()
                );
                expect_recovery_token(&answer, &session.held(Role::Main).sid)?;
                let code = book.live.remove(i);
                book.spent.push(code);
                // Spent: the same string again is refused.
                let again = self.call(Method::POST, "/auth/recovery", token, Some(&body))?;
                expect_problem(&again, 401, "invalid_recovery_code")?;
                // The account's other session has ended; the caller's stays.
                self.sessions_ended(session, &[Role::Second], "a recovery code")?;
            }
            None => {
                prop_assert!(
                    answer.status == 401 && answer.json()["code"] == "invalid_recovery_code",
                    "{:?} (read as {:?}) is none of the unspent codes, yet: {} {}",
                    typed,
                    read,
                    answer.status,
                    answer.text()
                );
            }
        }
        let me = self.ok(Method::GET, "/auth/me", token)?;
        prop_assert_eq!(
            &me["recoveryCodesRemaining"],
            &json!(book.live.len()),
            "recoveryCodesRemaining"
        );
        Ok(())
    }

    /// Property 5, usernames: 400 `invalid_request` naming `username`, or 201
    /// and stored exactly (409 only for a name taken earlier in this run).
    fn check_username(&self, taken: &RefCell<HashSet<String>>, name: &str) -> TestCaseResult {
        let credentials = json!({"username": name, "password": PASSWORD});
        let signup = self.call(Method::POST, "/auth/signup", None, Some(&credentials))?;
        let answer = signup.json();
        match signup.status {
            201 => {
                prop_assert_eq!(&answer["username"], name, "signup echoed another username");
                prop_assert_eq!(
                    &answer["displayName"],
                    name,
                    "default displayName is not the username"
                );
                prop_assert!(
                    taken.borrow_mut().insert(name.to_ascii_lowercase()),
                    "201 for a username already taken case-insensitively"
                );
                let me = self.login_and_me(&credentials)?;
                prop_assert_eq!(
                    &me["username"],
                    name,
                    "username not stored exactly as given"
                );
                prop_assert_eq!(
                    &me["displayName"],
                    name,
                    "displayName not stored exactly as given"
                );
            }
            409 => {
                prop_assert_eq!(&answer["code"], "username_taken");
                prop_assert!(
                    taken.borrow().contains(&name.to_ascii_lowercase()),
                    "409 for a username nobody has taken"
                );
            }
            400 => {
                prop_assert_eq!(&answer["code"], "invalid_request");
                let detail = answer["detail"].as_str().unwrap_or_default();
                prop_assert!(
                    detail.contains("username"),
                    "detail does not name username: {detail}"
                );
                // Logging in with a refused name is an ordinary failed login.
                let login = self.call(Method::POST, "/auth/login", None, Some(&credentials))?;
                prop_assert_eq!(
                    login.status,
                    401,
                    "login with a refused username: {}",
                    login.text()
                );
                prop_assert_eq!(&login.json()["code"], "invalid_credentials");
            }
            other => prop_assert!(false, "signup answered {other}: {}", signup.text()),
        }
        Ok(())
    }

    /// Property 5, display names: 400 `invalid_request` naming
    /// `displayName`, or 201 and stored exactly.
    fn check_display_name(&self, display_name: &str) -> TestCaseResult {
        let username = format!("dn-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let body = json!({"username": username, "password": PASSWORD, "displayName": display_name});
        let signup = self.call(Method::POST, "/auth/signup", None, Some(&body))?;
        let answer = signup.json();
        match signup.status {
            201 => {
                prop_assert_eq!(
                    &answer["displayName"],
                    display_name,
                    "signup echoed another displayName"
                );
                let me = self.login_and_me(&json!({"username": username, "password": PASSWORD}))?;
                prop_assert_eq!(
                    &me["displayName"],
                    display_name,
                    "displayName not stored exactly as given"
                );
            }
            400 => {
                prop_assert_eq!(&answer["code"], "invalid_request");
                let detail = answer["detail"].as_str().unwrap_or_default();
                prop_assert!(
                    detail.contains("displayName"),
                    "detail does not name displayName: {detail}"
                );
            }
            other => prop_assert!(false, "signup answered {other}: {}", signup.text()),
        }
        Ok(())
    }
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("a JWT is a valid header value")
}

/// The contract's body limit.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The answer is the problem `status` with `code`.
/// `POST /passkeys/login/verify` (public): whatever the Authorization
/// header, no generated body is a signed assertion, so the answer is 413
/// over the limit, else 400 `invalid_request` (a body that is no
/// `AuthenticationResponseJSON`) or 401 `passkey_verification_failed`;
/// never 200.
fn check_sign_in_body(body: &[u8], answer: &Answer) -> TestCaseResult {
    if body.len() > MAX_BODY_BYTES {
        return expect_problem(answer, 413, "payload_too_large");
    }
    match answer.status {
        400 => expect_problem(answer, 400, "invalid_request"),
        _ => expect_problem(answer, 401, "passkey_verification_failed"),
    }
}

fn expect_problem(answer: &Answer, status: u16, code: &str) -> TestCaseResult {
    prop_assert!(
        answer.status == status && answer.json()["code"] == code,
        "expected {} {}, got {} {}",
        status,
        code,
        answer.status,
        answer.text()
    );
    Ok(())
}

/// 400 `invalid_request` whose detail names one of `fields`.
fn expect_field_error(answer: &Answer, fields: &[&str]) -> TestCaseResult {
    expect_problem(answer, 400, "invalid_request")?;
    let problem = answer.json();
    let detail = problem["detail"].as_str().unwrap_or_default();
    prop_assert!(
        fields.iter().any(|f| detail.contains(f)),
        "detail names none of {:?}: {}",
        fields,
        detail
    );
    Ok(())
}

/// A recovery's token response: full level, `amr: ["pwd", "otp"]`, in the
/// caller's session `sid`, which keeps its refresh token (none is shown).
fn expect_recovery_token(answer: &Answer, sid: &str) -> TestCaseResult {
    let body = answer.json();
    prop_assert_eq!(&body["authLevel"], "full", "{}", body);
    prop_assert!(body.get("refreshToken").is_none(), "{}", body);
    let token = body["accessToken"].as_str().unwrap_or_default();
    prop_assert_eq!(token.split('.').count(), 3, "{}", body);
    let claims = claims(token);
    prop_assert_eq!(&claims["amr"], &json!(["pwd", "otp"]), "{}", claims);
    prop_assert_eq!(&claims["authLevel"], "full", "{}", claims);
    prop_assert_eq!(&claims["sid"], sid, "{}", claims);
    Ok(())
}

/// `err` with what the test was checking.
fn fail_with(context: String, err: TestCaseError) -> TestCaseError {
    TestCaseError::fail(format!("{context}: {err}"))
}

/// How a body reads as a route's fields `T` (a struct of `Option<Value>`
/// members): by serde_json, as any JSON client library would read it.
enum JsonFields<T> {
    /// A JSON object (unknown members ignored, duplicates refused).
    Object(T),
    /// A JSON array (or text starting like one): a wrong type per the
    /// contract, even when its elements would fill the fields in order
    /// (property 7).
    Array,
    /// Anything else: not JSON, trailing text, another kind of value, a
    /// repeated member, a value JSON cannot hold.
    Invalid,
}

fn json_fields<T: serde::de::DeserializeOwned>(body: &[u8]) -> JsonFields<T> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match first {
        Some(b'{') => serde_json::from_slice(body).map_or(JsonFields::Invalid, JsonFields::Object),
        Some(b'[') => JsonFields::Array,
        _ => JsonFields::Invalid,
    }
}

/// Crockford's base32, as API.md's recovery codes use it.
const CODE_ALPHABET: &str = "0123456789abcdefghjkmnpqrstvwxyz";

/// The contract's reading of a typed recovery code, written from API.md and
/// independent of the server: at most 64 bytes; spaces, hyphens and tabs
/// dropped; ASCII letters in either case; `o` read as `0`, `i` and `l` as
/// `1`; then exactly 10 characters of [`CODE_ALPHABET`]. Anything else
/// (other whitespace, other dashes, Unicode look-alikes) is no code.
fn normalise_code(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let mut read = String::new();
    for c in typed.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' | '\t' => continue,
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        };
        if !CODE_ALPHABET.contains(c) {
            return None;
        }
        read.push(c);
    }
    (read.chars().count() == 10).then_some(read)
}

/// Ten distinct codes shown as two groups of five (`k7m2q-9xw4d`).
fn shown_codes(value: &Value) -> Result<Vec<String>, String> {
    let codes: Vec<String> = value
        .as_array()
        .ok_or_else(|| format!("not an array: {value}"))?
        .iter()
        .map(|c| {
            c.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("not a string: {c}"))
        })
        .collect::<Result<_, _>>()?;
    let shown = |c: &str| {
        c.len() == 11
            && c.char_indices().all(|(i, ch)| {
                if i == 5 {
                    ch == '-'
                } else {
                    CODE_ALPHABET.contains(ch)
                }
            })
    };
    if codes.len() != 10 || !codes.iter().all(|c| shown(c)) {
        return Err(format!("not 10 codes like k7m2q-9xw4d: {value}"));
    }
    if codes.iter().collect::<HashSet<_>>().len() != codes.len() {
        return Err(format!("repeated codes: {value}"));
    }
    Ok(codes)
}

/// Any bytes as a header value: the bytes HTTP forbids there (controls other
/// than tab, DEL) become `?`; obs-text (0x80–0xFF) is kept.
fn header_value(bytes: &[u8]) -> HeaderValue {
    let clean: Vec<u8> = bytes
        .iter()
        .map(|&b| {
            if (b < 0x20 && b != b'\t') || b == 0x7f {
                b'?'
            } else {
                b
            }
        })
        .collect();
    HeaderValue::from_bytes(&clean).expect("sanitised header value")
}

/// Bytes printed as an escaped byte string (readable in shrunk failures).
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 400;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "b\"{}\"", shown.escape_ascii())?;
        if self.0.len() > SHOWN {
            write!(f, "… ({} bytes in all)", self.0.len())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Properties 1 and 2: bodies at the body routes
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum BodyRoute {
    Signup,
    Login,
    RegisterVerify,
    AuthenticateVerify,
    Rename,
    /// `POST /auth/recovery` (login guard).
    Recovery,
    /// `POST /auth/password` (recent guard).
    Password,
    /// `POST /auth/recovery-codes` (recent guard), which takes no body.
    RecoveryCodes,
    /// `POST /auth/refresh` (public).
    Refresh,
    /// `POST /passkeys/login/verify` (public): a passkey sign-in.
    SignInVerify,
}

impl BodyRoute {
    const ALL: [BodyRoute; 10] = [
        BodyRoute::Signup,
        BodyRoute::Login,
        BodyRoute::RegisterVerify,
        BodyRoute::AuthenticateVerify,
        BodyRoute::Rename,
        BodyRoute::Recovery,
        BodyRoute::Password,
        BodyRoute::RecoveryCodes,
        BodyRoute::Refresh,
        BodyRoute::SignInVerify,
    ];

    /// The routes whose answers [`Api::check_account_route`] checks exactly.
    fn is_account_route(self) -> bool {
        matches!(
            self,
            BodyRoute::Recovery | BodyRoute::Password | BodyRoute::RecoveryCodes
        )
    }

    fn method(self) -> Method {
        match self {
            BodyRoute::Rename => Method::PATCH,
            _ => Method::POST,
        }
    }

    /// Rename targets the session's own passkey, so a full-level token gets
    /// past the guard and the path to the body.
    fn path(self, session: &Session) -> String {
        match self {
            BodyRoute::Signup => "/auth/signup".into(),
            BodyRoute::Login => "/auth/login".into(),
            BodyRoute::RegisterVerify => "/passkeys/register/verify".into(),
            BodyRoute::AuthenticateVerify => "/passkeys/authenticate/verify".into(),
            BodyRoute::Rename => format!("/passkeys/{}", session.passkey_id),
            BodyRoute::Recovery => "/auth/recovery".into(),
            BodyRoute::Password => "/auth/password".into(),
            BodyRoute::RecoveryCodes => "/auth/recovery-codes".into(),
            BodyRoute::Refresh => "/auth/refresh".into(),
            BodyRoute::SignInVerify => "/passkeys/login/verify".into(),
        }
    }

    fn options_path(self) -> Option<&'static str> {
        match self {
            BodyRoute::RegisterVerify => Some("/passkeys/register/options"),
            BodyRoute::AuthenticateVerify => Some("/passkeys/authenticate/options"),
            BodyRoute::SignInVerify => Some("/passkeys/login/options"),
            _ => None,
        }
    }

    /// The field names the route reads, at any depth.
    fn fields(self) -> &'static [&'static str] {
        match self {
            BodyRoute::Signup => &["username", "password", "displayName"],
            BodyRoute::Login => &["username", "password"],
            BodyRoute::RegisterVerify => REGISTRATION_NAMES,
            BodyRoute::AuthenticateVerify | BodyRoute::SignInVerify => ASSERTION_NAMES,
            BodyRoute::Rename => &["nickname"],
            BodyRoute::Recovery => &["code"],
            BodyRoute::Password => &["currentPassword", "newPassword"],
            // Reads nothing; the names a client might send.
            BodyRoute::RecoveryCodes => &["codes", "code"],
            BodyRoute::Refresh => &["refreshToken", "accessToken", "refresh_token"],
        }
    }

    /// A well-formed body (with made-up WebAuthn data, recovery code and
    /// refresh token: no edit of them is a live one).
    /// The password change's is valid: its edits reach every check.
    fn sample(self) -> Value {
        match self {
            BodyRoute::Signup => {
                json!({"username": "fuzz-sample", "password": PASSWORD, "displayName": "Fuzz"})
            }
            BodyRoute::Login => json!({"username": "fuzz-sample", "password": PASSWORD}),
            BodyRoute::RegisterVerify => json!({
                "id": "AAEC", "rawId": "AAEC", "type": "public-key",
                "response": {"clientDataJSON": "e30", "attestationObject": "oA", "transports": ["internal"]},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform", "nickname": "Fuzz",
            }),
            BodyRoute::AuthenticateVerify | BodyRoute::SignInVerify => json!({
                "id": "AAEC", "rawId": "AAEC", "type": "public-key",
                "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "MAA", "userHandle": "AA"},
                "clientExtensionResults": {},
            }),
            BodyRoute::Rename => json!({"nickname": "Fuzzed"}),
            BodyRoute::Recovery => json!({"code": "k7m2q-9xw4d"}),
            BodyRoute::Password => {
                json!({"currentPassword": PASSWORD, "newPassword": "a new horse battery"})
            }
            // Takes no body; a client may still send one.
            BodyRoute::RecoveryCodes => json!({"code": "k7m2q-9xw4d"}),
            BodyRoute::Refresh => {
                json!({"refreshToken": "q3Vt1bXc9mKf0LwE7hYs2NpRj4GzAuDi8oTk6CxWn5M"})
            }
        }
    }
}

/// What the account routes may legitimately change during properties 1 and
/// 2, so that each answer and the end state can be checked exactly.
struct Ledger {
    /// The passkey account's unspent recovery codes, as shown.
    codes: RefCell<Vec<String>>,
    /// Accepted password changes (each checked, then undone).
    password_changes: Cell<u32>,
    /// Accepted recovery codes.
    recoveries: Cell<u32>,
    /// Code sets replaced by `POST /auth/recovery-codes`.
    code_sets: Cell<u32>,
}

impl Ledger {
    fn new(session: &Session) -> Self {
        Ledger {
            codes: RefCell::new(session.recovery_codes.clone()),
            password_changes: Cell::new(0),
            recoveries: Cell::new(0),
            code_sets: Cell::new(0),
        }
    }
}

const REGISTRATION_NAMES: &[&str] = &[
    "id",
    "rawId",
    "type",
    "response",
    "clientDataJSON",
    "attestationObject",
    "transports",
    "publicKeyAlgorithm",
    "publicKey",
    "authenticatorData",
    "clientExtensionResults",
    "authenticatorAttachment",
    "nickname",
];

const ASSERTION_NAMES: &[&str] = &[
    "id",
    "rawId",
    "type",
    "response",
    "clientDataJSON",
    "authenticatorData",
    "signature",
    "userHandle",
    "clientExtensionResults",
    "authenticatorAttachment",
];

/// Both ceremonies' member names, for values that replace a member.
const WEBAUTHN_NAMES: &[&str] = &[
    "id",
    "rawId",
    "type",
    "response",
    "clientDataJSON",
    "attestationObject",
    "authenticatorData",
    "signature",
    "userHandle",
    "transports",
    "publicKey",
    "clientExtensionResults",
    "authenticatorAttachment",
    "nickname",
];

#[derive(Debug, Clone, Copy)]
enum TokenKind {
    Missing,
    /// Of the passkey account: refused by the recent guard.
    PasswordLevel,
    FullLevel,
    /// A fresh password-level token of the account without passkeys: it
    /// passes the recent guard.
    NoPasskey,
    /// An unsigned `alg: none` token.
    Forged,
    /// Of the passkey account's second session (password level): refused
    /// by the recent guard.
    Second,
}

impl TokenKind {
    const ALL: [TokenKind; 6] = [
        TokenKind::Missing,
        TokenKind::PasswordLevel,
        TokenKind::FullLevel,
        TokenKind::NoPasskey,
        TokenKind::Forged,
        TokenKind::Second,
    ];

    fn header(self, session: &Session) -> Option<HeaderValue> {
        match self {
            TokenKind::Missing => None,
            TokenKind::PasswordLevel => Some(bearer(&session.password_token())),
            TokenKind::FullLevel => Some(bearer(&session.full_token())),
            TokenKind::NoPasskey => Some(bearer(&session.plain_token())),
            TokenKind::Forged => Some(bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")),
            TokenKind::Second => Some(bearer(&session.token(Role::Second))),
        }
    }

    /// The held session the token is of.
    fn role(self) -> Option<Role> {
        match self {
            TokenKind::Missing | TokenKind::Forged => None,
            TokenKind::PasswordLevel | TokenKind::FullLevel => Some(Role::Main),
            TokenKind::NoPasskey => Some(Role::Plain),
            TokenKind::Second => Some(Role::Second),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum ContentType {
    Missing,
    Json,
    JsonUtf8,
    TextPlain,
    Form,
    Nonsense,
}

impl ContentType {
    const ALL: [ContentType; 6] = [
        ContentType::Missing,
        ContentType::Json,
        ContentType::JsonUtf8,
        ContentType::TextPlain,
        ContentType::Form,
        ContentType::Nonsense,
    ];

    fn value(self) -> Option<&'static str> {
        match self {
            ContentType::Missing => None,
            ContentType::Json => Some("application/json"),
            ContentType::JsonUtf8 => Some("application/json; charset=utf-8"),
            ContentType::TextPlain => Some("text/plain"),
            ContentType::Form => Some("application/x-www-form-urlencoded"),
            ContentType::Nonsense => Some("x/;;=\"\\"),
        }
    }
}

#[derive(Debug, Clone)]
struct BodyCase<B> {
    route: BodyRoute,
    token: TokenKind,
    content_type: ContentType,
    /// Fetch the ceremony's options first, so a parsable body meets a live challenge.
    live_challenge: bool,
    body: B,
}

/// A route, token, content type and a body made for that route by `body`.
fn body_case<B, S>(body: fn(BodyRoute) -> S) -> impl Strategy<Value = BodyCase<B>>
where
    B: fmt::Debug + Clone,
    S: Strategy<Value = B>,
{
    (
        select(BodyRoute::ALL.to_vec()),
        select(TokenKind::ALL.to_vec()),
        select(ContentType::ALL.to_vec()),
        any::<bool>(),
    )
        .prop_flat_map(move |(route, token, content_type, live_challenge)| {
            body(route).prop_map(move |body| BodyCase {
                route,
                token,
                content_type,
                live_challenge,
                body,
            })
        })
}

/// Property 2's hand-picked bodies at the account routes: a valid password
/// change with each token (accepted where the guard lets it through, then
/// undone; the account's other session ends), a wrong current password, a
/// short new one, a real code in another case (then spent), another
/// account's code, a code through the second session (which ends the main
/// one: the main session is logged in and stepped up again, and changes the
/// password once more), a code of a replaced set, a code that is not a
/// string.
fn tricky_account_bodies(session: &Session) -> Vec<BodyCase<Value>> {
    let case = |route, token, body| BodyCase {
        route,
        token,
        content_type: ContentType::Json,
        live_challenge: false,
        body,
    };
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    let valid = change(PASSWORD, "a new horse battery");
    let code = |i: usize| json!({"code": session.recovery_codes[i].to_uppercase()});
    use BodyRoute::{Password, Recovery, RecoveryCodes};
    use TokenKind::{FullLevel, NoPasskey, PasswordLevel, Second};
    vec![
        case(Password, FullLevel, valid.clone()),
        case(Password, NoPasskey, valid.clone()),
        case(Password, PasswordLevel, valid.clone()),
        case(Password, Second, valid.clone()),
        case(
            Password,
            FullLevel,
            change("wrong horse battery", "a new horse battery"),
        ),
        case(Password, FullLevel, change(PASSWORD, "short")),
        case(Password, NoPasskey, json!({"currentPassword": PASSWORD})),
        case(Recovery, PasswordLevel, code(0)),
        case(Recovery, FullLevel, code(0)),
        case(Recovery, NoPasskey, code(1)),
        case(Recovery, PasswordLevel, json!({"code": 5})),
        case(Recovery, Second, code(2)),
        case(Password, FullLevel, valid),
        case(RecoveryCodes, Second, json!({})),
        case(RecoveryCodes, FullLevel, json!({})),
        case(RecoveryCodes, NoPasskey, json!({})),
        case(Recovery, PasswordLevel, code(1)),
    ]
}

/// The README's grace for a rotated refresh token presented again.
const REUSE_GRACE_SECS: u64 = 3;

/// Makes a hand-picked body from the tokens held when it runs.
type MakeBody<B> = Box<dyn Fn(&Session) -> B>;

/// A hand-picked refresh body, as JSON.
fn refresh_case(token: TokenKind, body: Value) -> BodyCase<Value> {
    BodyCase {
        route: BodyRoute::Refresh,
        token,
        content_type: ContentType::Json,
        live_challenge: false,
        body,
    }
}

/// Property 2's hand-picked refresh bodies (with any Authorization header:
/// the route is public): each held session's live token (200, then
/// rotated), with extra members; the token it replaced (401, ending
/// nothing within the grace); the live token edited (padding, spaces, case,
/// a character less, the other base64 alphabet: 401, consuming nothing, as
/// the live token's next use shows); the token in the wrong place or shape
/// (400 naming `refreshToken`); an access token; an ended session's token.
fn tricky_refresh_bodies() -> Vec<(TokenKind, MakeBody<Value>)> {
    fn with(role: Role, body: fn(String) -> Value) -> MakeBody<Value> {
        Box::new(move |s: &Session| body(s.held(role).refresh))
    }
    fn rotated(role: Role) -> MakeBody<Value> {
        Box::new(move |s: &Session| {
            let rotated = s.held(role).rotated.last().cloned();
            json!({"refreshToken": rotated.map_or_else(String::new, |(t, _)| t)})
        })
    }
    fn live(t: String) -> Value {
        json!({"refreshToken": t})
    }
    use Role::{Main, Plain, PlainSecond, Second};
    use TokenKind as T;
    vec![
        (T::Missing, with(Main, live)),
        (T::Missing, rotated(Main)),
        (
            T::Forged,
            with(
                Main,
                |t| json!({"refreshToken": t, "accessToken": t, "refresh_token": 5, "extra": [null]}),
            ),
        ),
        (T::FullLevel, rotated(Main)),
        (T::FullLevel, with(Second, live)),
        (T::Missing, with(Second, |t| live(format!("{t} ")))),
        (T::Missing, with(Second, |t| live(format!(" {t}")))),
        (T::Missing, with(Second, |t| live(format!("{t}=")))),
        (T::Missing, with(Second, |t| live(format!("{t}\u{0}")))),
        (T::Missing, with(Second, |t| live(t.to_uppercase()))),
        (
            T::Missing,
            with(Second, |t| live(t[..t.len() - 1].to_owned())),
        ),
        (
            T::Missing,
            with(Second, |t| live(t.replace('-', "+").replace('_', "/"))),
        ),
        (T::Missing, with(Second, |t| json!({"refreshToken": [t]}))),
        (
            T::Missing,
            with(Second, |t| json!({"refreshToken": {"refreshToken": t}})),
        ),
        (T::Missing, with(Second, |t| json!([t]))),
        (T::Missing, with(Second, |t| json!({"refresh_token": t}))),
        (T::Missing, with(Second, |t| json!({"RefreshToken": t}))),
        (
            T::Missing,
            with(Second, |t| json!({"refreshToken": null, "token": t})),
        ),
        (T::Second, Box::new(|s: &Session| live(s.token(Second)))),
        (T::Missing, with(Second, live)),
        (T::Missing, rotated(Second)),
        (T::NoPasskey, with(Plain, live)),
        (T::Missing, with(PlainSecond, live)),
        (
            T::Missing,
            Box::new(|s: &Session| {
                let ended = s.last_ended().expect("the password changes ended sessions");
                live(ended.refresh)
            }),
        ),
        (T::Missing, with(Second, live)),
    ]
}

/// Property 1's hand-picked refresh bodies, as bytes: a live token with an
/// escaped first character (the same string: 200), in a duplicated member,
/// with trailing text or a trailing comma, after a byte order mark, with
/// invalid UTF-8 after it, form-encoded, padded past the body limit.
fn tricky_refresh_bytes() -> Vec<(TokenKind, MakeBody<Vec<u8>>)> {
    fn with(role: Role, body: fn(&str) -> Vec<u8>) -> MakeBody<Vec<u8>> {
        Box::new(move |s: &Session| body(&s.held(role).refresh))
    }
    use Role::{Main, Plain, Second};
    use TokenKind as T;
    vec![
        (
            T::Missing,
            with(Main, |t| {
                let mut chars = t.chars();
                let first = chars.next().map_or(0, u32::from);
                format!("{{\"refreshToken\":\"\\u{first:04x}{}\"}}", chars.as_str()).into_bytes()
            }),
        ),
        (
            T::Missing,
            with(Main, |t| {
                format!("{{\"refreshToken\":\"{t}\",\"refreshToken\":\"{t}\"}}").into_bytes()
            }),
        ),
        (
            T::Missing,
            with(Main, |t| {
                format!("{{\"refreshToken\":\"{t}\"}}x").into_bytes()
            }),
        ),
        (
            T::Missing,
            with(Main, |t| {
                format!("{{\"refreshToken\":\"{t}\",}}").into_bytes()
            }),
        ),
        (
            T::Missing,
            with(Main, |t| {
                format!("\u{feff}{{\"refreshToken\":\"{t}\"}}").into_bytes()
            }),
        ),
        (
            T::Missing,
            with(Main, |t| {
                let mut body = format!("{{\"refreshToken\":\"{t}").into_bytes();
                body.extend(b"\xff\"}");
                body
            }),
        ),
        (
            T::Missing,
            with(Main, |t| format!("refreshToken={t}").into_bytes()),
        ),
        (
            T::Missing,
            with(Main, |t| {
                let pad = " ".repeat(MAX_BODY_BYTES);
                format!("{{\"refreshToken\":\"{t}\"}}{pad}").into_bytes()
            }),
        ),
        (
            T::Forged,
            with(Second, |t| {
                format!(" \r\n{{\"refreshToken\":\"{t}\"}}\n").into_bytes()
            }),
        ),
        (
            T::Missing,
            with(Main, |t| {
                format!("{{\"refreshToken\":\"{t}\"}}").into_bytes()
            }),
        ),
        (
            T::NoPasskey,
            with(Plain, |t| {
                format!("{{\"refreshToken\":\"{t}\"}}").into_bytes()
            }),
        ),
    ]
}

/// Property 1's bodies: raw bytes (invalid UTF-8 included), deep nesting,
/// huge numbers, byte edits of a valid body, oversized bodies.
fn arb_bytes(route: BodyRoute) -> impl Strategy<Value = Bytes> {
    let fields = route.fields();
    let sample = serde_json::to_vec(&route.sample()).unwrap();
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes),
        1 => (1usize..60_000).prop_map(|n| Bytes("[".repeat(n).into_bytes())),
        1 => (1usize..30_000).prop_map(|n| Bytes(format!("{}0{}", "[".repeat(n), "]".repeat(n)).into_bytes())),
        1 => (1usize..5_000, select(fields)).prop_map(|(n, f)| {
            Bytes(format!("{}null{}", format!("{{\"{f}\":").repeat(n), "}".repeat(n)).into_bytes())
        }),
        2 => (select(fields), number_literal())
            .prop_map(|(f, n)| Bytes(format!("{{\"{f}\":{n}}}").into_bytes())),
        1 => (select(fields), prop::collection::vec(any::<u8>(), 1..24)).prop_map(|(f, raw)| {
            let mut body = format!("{{\"{f}\":\"").into_bytes();
            body.extend(raw);
            body.extend(b"\"}");
            Bytes(body)
        }),
        3 => prop::collection::vec(arb_byte_edit(), 1..5).prop_map(move |edits| {
            let mut body = sample.clone();
            for edit in &edits {
                edit.apply(&mut body);
            }
            Bytes(body)
        }),
        1 => prop::collection::vec(select(b" \t\r\n".to_vec()), 0..8).prop_map(Bytes),
        1 => (64 * 1024 - 8..64 * 1024 + 4096usize).prop_map(|n| Bytes(vec![b' '; n])),
    ]
}

/// One edit of a byte string: overwrite, insert or remove a byte.
#[derive(Debug, Clone)]
enum ByteEdit {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
}

fn arb_byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Remove),
    ]
}

impl ByteEdit {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match *self {
            ByteEdit::Insert(at, b) => bytes.insert(at.index(bytes.len() + 1), b),
            ByteEdit::Set(at, b) if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            ByteEdit::Remove(at) if !bytes.is_empty() => {
                bytes.remove(at.index(bytes.len()));
            }
            _ => {}
        }
    }
}

/// JSON number literals no `f64`/`i64`/`u64` holds, and edge cases.
fn number_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[1-9][0-9]{18,400}",
        "-?[0-9]{1,3}\\.[0-9]{1,30}[eE][+-]?[0-9]{1,9}",
        select(vec![
            "1e999999999",
            "-1e999999999",
            "-0",
            "0.0000000000000000000000000000001",
            "18446744073709551616",
            "-9223372036854775809",
            "4.9e-324",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Property 2's bodies: any JSON value, an object of the route's fields with
/// any values, or the route's well-formed body with one member replaced
/// (by any value, or by a string).
fn arb_route_json(route: BodyRoute) -> impl Strategy<Value = Value> {
    let fields = route.fields();
    prop_oneof![
        1 => arb_json(fields),
        2 => (
            prop::collection::vec(prop::option::of(arb_json(fields)), fields.len()),
            prop::collection::vec((arb_text(), arb_json(fields)), 0..2),
        )
            .prop_map(move |(values, extra)| {
                let mut object: Map<String, Value> = fields
                    .iter()
                    .zip(values)
                    .filter_map(|(name, value)| Some(((*name).to_owned(), value?)))
                    .collect();
                object.extend(extra);
                Value::Object(object)
            }),
        2 => (any::<Index>(), arb_json(fields)).prop_map(move |(at, value)| {
            let mut body = route.sample();
            let pointers = json_pointers(&body);
            set_pointer(&mut body, at.get::<String>(&pointers), Some(value));
            body
        }),
        2 => (any::<Index>(), arb_text()).prop_map(move |(at, text)| {
            let mut body = route.sample();
            let pointers = json_pointers(&body);
            set_pointer(&mut body, at.get::<String>(&pointers), Some(Value::String(text)));
            body
        }),
    ]
}

/// A recursive JSON value: null, booleans, numbers (incl. extremes and
/// negatives), strings (incl. Unicode, NUL, controls), arrays and objects
/// whose keys are often the given field names.
fn arb_json(fields: &'static [&'static str]) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        select(vec![
            u64::MAX as f64,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -0.0
        ])
        .prop_map(Value::from),
        arb_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        let key = prop_oneof![3 => select(fields).prop_map(str::to_owned), 1 => arb_text()];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Strings as clients get them wrong: any Unicode (controls and NUL
/// included), base64url-looking text and real base64url, and known nasties.
fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,24}",
        2 => prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        2 => "[A-Za-z0-9_-]{0,48}",
        1 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        2 => select(NASTY_STRINGS).prop_map(str::to_owned),
    ]
}

const NASTY_STRINGS: &[&str] = &[
    "",
    "\0",
    "a\0b",
    "' OR 1=1 --",
    "\"; DROP TABLE users; --",
    "\\",
    "%",
    "_",
    "\u{202E}evil",
    "аdmin",
    "ａｄｍｉｎ",
    "ad\u{200D}min",
    "\u{FEFF}",
    "e\u{301}",
    "\u{10FFFF}",
    "\u{FFFD}",
    "../../etc/passwd",
    "null",
    "NaN",
    "-1",
    "1e999",
    "webauthn.create",
    "webauthn.get",
    "public-key",
    "http://localhost:3000",
    "none",
    "platform",
    "internal",
    "00000000-0000-0000-0000-000000000000",
];

/// Every JSON pointer in `value` (objects and arrays, at any depth).
fn json_pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, here: &str, out: &mut Vec<String>) {
        let children: Vec<(String, &Value)> = match value {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => Vec::new(),
        };
        for (key, child) in children {
            let pointer = format!("{here}/{key}");
            out.push(pointer.clone());
            walk(child, &pointer, out);
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

/// Sets (or with `None` removes) the member at `pointer`, if its parent is an
/// object; array elements are replaced in place.
fn set_pointer(root: &mut Value, pointer: &str, value: Option<Value>) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    match (root.pointer_mut(parent), value) {
        (Some(Value::Object(map)), Some(value)) => {
            map.insert(key.to_owned(), value);
        }
        (Some(Value::Object(map)), None) => {
            map.remove(key);
        }
        (Some(Value::Array(items)), value) => {
            if let Some(slot) = key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = value.unwrap_or(Value::Null);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Property 3: mutated WebAuthn responses
// ---------------------------------------------------------------------------

/// Where mutations land in one ceremony's response (JSON pointers).
struct ResponseFields {
    /// Members a mutation may replace or remove.
    members: &'static [&'static str],
    /// Base64url members whose bytes the server must verify.
    verified: &'static [&'static str],
    /// Other base64url members (the server may ignore them).
    other: &'static [&'static str],
}

const REGISTRATION: ResponseFields = ResponseFields {
    members: &[
        "/id",
        "/rawId",
        "/type",
        "/response",
        "/response/clientDataJSON",
        "/response/attestationObject",
        "/response/transports",
        "/response/publicKeyAlgorithm",
        "/response/publicKey",
        "/response/authenticatorData",
        "/clientExtensionResults",
        "/authenticatorAttachment",
        "/nickname",
    ],
    verified: &["/response/clientDataJSON", "/response/attestationObject"],
    other: &[
        "/id",
        "/rawId",
        "/response/authenticatorData",
        "/response/publicKey",
    ],
};

const ASSERTION: ResponseFields = ResponseFields {
    members: &[
        "/id",
        "/rawId",
        "/type",
        "/response",
        "/response/clientDataJSON",
        "/response/authenticatorData",
        "/response/signature",
        "/response/userHandle",
        "/clientExtensionResults",
        "/authenticatorAttachment",
    ],
    verified: &[
        "/rawId",
        "/response/clientDataJSON",
        "/response/authenticatorData",
        "/response/signature",
        "/response/userHandle",
    ],
    other: &["/id"],
};

/// A base64url member: most often one the server must verify.
#[derive(Debug, Clone)]
struct Binary {
    verified: bool,
    index: Index,
}

fn arb_binary() -> impl Strategy<Value = Binary> {
    (prop::bool::weighted(0.75), any::<Index>())
        .prop_map(|(verified, index)| Binary { verified, index })
}

impl ResponseFields {
    fn member(&self, index: &Index) -> &'static str {
        self.members[index.index(self.members.len())]
    }

    fn binary(&self, field: &Binary) -> &'static str {
        let list = if field.verified {
            self.verified
        } else {
            self.other
        };
        list[field.index.index(list.len())]
    }
}

/// One change to a ceremony response. Fields are picked by index from the
/// ceremony's [`ResponseFields`], so one strategy serves both ceremonies.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace (or add) a member with any JSON value.
    Replace {
        member: Index,
        value: Value,
    },
    Remove {
        member: Index,
    },
    /// Keep only a strict prefix of a base64url string.
    Truncate {
        field: Binary,
        keep: Index,
    },
    /// Append characters (base64url or not) to a base64url string.
    Extend {
        field: Binary,
        extra: String,
    },
    /// XOR one byte of a decoded base64url member, then re-encode it.
    FlipByte {
        field: Binary,
        at: Index,
        mask: u8,
    },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<Index>(), arb_json(WEBAUTHN_NAMES)).prop_map(|(member, value)| Mutation::Replace { member, value }),
        1 => any::<Index>().prop_map(|member| Mutation::Remove { member }),
        2 => (arb_binary(), any::<Index>()).prop_map(|(field, keep)| Mutation::Truncate { field, keep }),
        2 => (arb_binary(), "[A-Za-z0-9_-]{1,8}|[=+/!. ]{1,3}")
            .prop_map(|(field, extra)| Mutation::Extend { field, extra }),
        5 => (arb_binary(), any::<Index>(), 1u8..=255)
            .prop_map(|(field, at, mask)| Mutation::FlipByte { field, at, mask }),
    ]
}

impl Mutation {
    fn apply(&self, body: &mut Value, fields: &ResponseFields) {
        match self {
            Mutation::Replace { member, value } => {
                set_pointer(body, fields.member(member), Some(value.clone()))
            }
            Mutation::Remove { member } => set_pointer(body, fields.member(member), None),
            Mutation::Truncate { field, keep } => {
                if let Some(Value::String(s)) = body.pointer_mut(fields.binary(field)) {
                    if !s.is_empty() {
                        s.truncate(keep.index(s.len()));
                    }
                }
            }
            Mutation::Extend { field, extra } => {
                if let Some(Value::String(s)) = body.pointer_mut(fields.binary(field)) {
                    s.push_str(extra);
                }
            }
            Mutation::FlipByte { field, at, mask } => {
                if let Some(Value::String(s)) = body.pointer_mut(fields.binary(field)) {
                    xor_byte(s, |len| at.index(len), *mask);
                }
            }
        }
    }
}

/// XORs the byte `at(len)` of a base64url string's decoded bytes with `mask`
/// and re-encodes them; an empty or undecodable string is left alone.
fn xor_byte(encoded: &mut String, at: impl FnOnce(usize) -> usize, mask: u8) {
    let mut bytes = b64_lenient(encoded).unwrap_or_default();
    if !bytes.is_empty() {
        let i = at(bytes.len());
        bytes[i] ^= mask;
        *encoded = URL_SAFE_NO_PAD.encode(bytes);
    }
}

/// Base64url or base64, padded or not, trailing bits allowed: at least as
/// lenient as the server, so "decodes to the same bytes" never misjudges a
/// mutation the server could still accept.
fn b64_lenient(s: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s.replace('+', "-").replace('/', "_")).ok()
}

fn binary_field(body: &Value, pointer: &str) -> Option<Vec<u8>> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(b64_lenient)
}

/// Whether a (mutated) registration response still passes every check the
/// server must make for `none` attestation, so that a 201 is allowed: the
/// clientDataJSON type, challenge, origin and crossOrigin, and an
/// authenticator data with our RP ID hash and the User Present flag.
/// Anything else (flags, AAGUID, credential id, key bytes) may legitimately
/// be accepted.
fn registration_may_succeed(body: &Value, challenge: &[u8]) -> bool {
    let client_data = binary_field(body, "/response/clientDataJSON")
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let Some(Value::Object(client_data)) = client_data else {
        return false;
    };
    let expected_origin = Url::parse(ORIGIN).unwrap().origin();
    let client_data_ok = client_data.get("type") == Some(&json!("webauthn.create"))
        && client_data
            .get("challenge")
            .and_then(Value::as_str)
            .and_then(b64_lenient)
            .as_deref()
            == Some(challenge)
        && client_data
            .get("origin")
            .and_then(Value::as_str)
            .and_then(|o| Url::parse(o).ok())
            .is_some_and(|o| o.origin() == expected_origin)
        && client_data.get("crossOrigin") != Some(&Value::Bool(true));
    let rp_id_hash = Sha256::digest(RP_ID.as_bytes());
    let auth_data_ok = binary_field(body, "/response/attestationObject").is_some_and(|object| {
        object
            .windows(33)
            .any(|w| w[..32] == rp_id_hash[..] && w[32] & FLAG_UP != 0)
    });
    client_data_ok && auth_data_ok
}

/// Whether every signed part of an assertion (and the credential id it
/// names) decodes to the original bytes, so that a 200 is allowed. A missing
/// `userHandle` is allowed; another one is not.
fn assertion_signed_parts_intact(original: &Value, mutated: &Value) -> bool {
    let same = |pointer: &str| {
        let now = binary_field(mutated, pointer);
        now.is_some() && now == binary_field(original, pointer)
    };
    let user_handle_ok = match mutated.pointer("/response/userHandle") {
        None | Some(Value::Null) => true,
        Some(_) => same("/response/userHandle"),
    };
    [
        "/rawId",
        "/response/clientDataJSON",
        "/response/authenticatorData",
        "/response/signature",
    ]
    .into_iter()
    .all(same)
        && user_handle_ok
}

// ---------------------------------------------------------------------------
// Property 4: arbitrary requests
// ---------------------------------------------------------------------------

const ROUTE_PATHS: &[&str] = &[
    "/",
    "/app.js",
    "/style.css",
    "/auth/signup",
    "/auth/login",
    "/auth/me",
    "/passkeys",
    "/passkeys/register/options",
    "/passkeys/register/verify",
    "/passkeys/authenticate/options",
    "/passkeys/authenticate/verify",
    "/users/profile",
    "/protected/basic",
    "/protected/full",
    "/auth/password",
    "/auth/recovery",
    "/auth/recovery-codes",
    "/auth/events",
    "/auth/refresh",
    "/auth/logout",
    "/auth/sessions",
    "/passkeys/login/options",
    "/passkeys/login/verify",
];

/// The session routes, with the ids of held sessions (and of the one ended
/// last) as placeholders filled in when sent.
const SESSION_PATHS: &[&str] = &[
    "/auth/logout",
    "/auth/sessions",
    "/auth/refresh",
    "/auth/sessions/{main}",
    "/auth/sessions/{second}",
    "/auth/sessions/{plain}",
    "/auth/sessions/{plain-second}",
    "/auth/sessions/{ended}",
];

/// A request that ends sessions when it answers 204.
#[derive(Debug)]
enum Ending {
    /// `POST /auth/logout`: the caller's session.
    Logout,
    /// `DELETE /auth/sessions`: every other session of the caller's account.
    Others,
    /// `DELETE /auth/sessions/{id}`, with the id as sent.
    One(String),
}

impl Ending {
    /// The answer the contract fixes for `auth` (none for a header the test
    /// cannot tell): the login guard (logout) or the recent guard, then 204,
    /// or 404 for an id that is none of the caller's account's live
    /// sessions.
    fn expected(&self, session: &Session, auth: &AuthHeader) -> Option<Expected> {
        let no_token = match auth {
            AuthHeader::Missing => true,
            AuthHeader::Ended => session.last_ended().is_none(),
            _ => false,
        };
        if no_token {
            return Some(Expected::Problem(401, "missing_token"));
        }
        if let AuthHeader::Ended = auth {
            return Some(Expected::Problem(401, "invalid_token"));
        }
        let caller = match auth {
            AuthHeader::PasswordLevel | AuthHeader::FullLevel => Role::Main,
            AuthHeader::NoPasskey => Role::Plain,
            AuthHeader::Second => Role::Second,
            _ => return None,
        };
        // The recent guard: a password-level token of the passkey account.
        let recent = !matches!(auth, AuthHeader::PasswordLevel | AuthHeader::Second);
        Some(match self {
            Ending::Logout => Expected::NoContent,
            _ if !recent => Expected::Problem(403, "passkey_required"),
            Ending::Others => Expected::NoContent,
            Ending::One(id) => match session.role_with_sid(id) {
                Some(target) if caller.account().contains(&target) => Expected::NoContent,
                _ => Expected::Problem(404, "not_found"),
            },
        })
    }

    /// The ending a request to `path` (as sent) asks for, if any.
    fn of(method: &Method, path: &str) -> Option<Ending> {
        if *method == Method::POST && path == "/auth/logout" {
            Some(Ending::Logout)
        } else if *method == Method::DELETE && path == "/auth/sessions" {
            Some(Ending::Others)
        } else if *method == Method::DELETE {
            path.strip_prefix("/auth/sessions/")
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(|id| Ending::One(id.to_owned()))
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
enum AuthHeader {
    Missing,
    PasswordLevel,
    FullLevel,
    /// The account without passkeys (passes the recent guard).
    NoPasskey,
    /// The passkey account's second session (password level).
    Second,
    /// The token of the session ended last (none before one has).
    Ended,
    /// `Bearer ` and any bytes.
    Bearer(Bytes),
    /// Any bytes at all.
    Raw(Bytes),
    /// A valid full-level token, altered.
    Tampered(ByteEdit),
}

impl AuthHeader {
    fn header(&self, session: &Session) -> Option<HeaderValue> {
        match self {
            AuthHeader::Missing => None,
            AuthHeader::PasswordLevel => Some(bearer(&session.password_token())),
            AuthHeader::FullLevel => Some(bearer(&session.full_token())),
            AuthHeader::NoPasskey => Some(bearer(&session.plain_token())),
            AuthHeader::Second => Some(bearer(&session.token(Role::Second))),
            AuthHeader::Ended => session.last_ended().map(|held| bearer(&held.token)),
            AuthHeader::Bearer(bytes) => {
                Some(header_value(&[&b"Bearer "[..], &bytes.0[..]].concat()))
            }
            AuthHeader::Raw(bytes) => Some(header_value(&bytes.0)),
            AuthHeader::Tampered(edit) => {
                let mut value = format!("Bearer {}", session.full_token()).into_bytes();
                edit.apply(&mut value);
                Some(header_value(&value))
            }
        }
    }

    /// The held session the header is a token of. An altered token that
    /// still passes is the main session's: the signature covers the claims.
    fn role(&self) -> Option<Role> {
        match self {
            AuthHeader::PasswordLevel | AuthHeader::FullLevel | AuthHeader::Tampered(_) => {
                Some(Role::Main)
            }
            AuthHeader::NoPasskey => Some(Role::Plain),
            AuthHeader::Second => Some(Role::Second),
            AuthHeader::Missing
            | AuthHeader::Ended
            | AuthHeader::Bearer(_)
            | AuthHeader::Raw(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
struct RequestCase {
    method: Method,
    path: String,
    query: Option<String>,
    auth: AuthHeader,
    /// Other headers the app reads (client IP, user agent, CORS), any value.
    extra: Vec<(HeaderName, Bytes)>,
    body: Option<Bytes>,
}

fn arb_extra_header() -> impl Strategy<Value = (HeaderName, Bytes)> {
    let names = vec![
        HeaderName::from_static("x-forwarded-for"),
        HeaderName::from_static("user-agent"),
        HeaderName::from_static("origin"),
        HeaderName::from_static("access-control-request-method"),
        HeaderName::from_static("access-control-request-headers"),
        HeaderName::from_static("accept"),
        HeaderName::from_static("content-type"),
    ];
    let value = prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..64),
        2 => select(vec![
            "1.2.3.4", "127.0.0.1, 10.0.0.1", "::1", "[::1]:80", "2001:db8::1 ,, garbage", "999.1.1.1",
            ORIGIN, "http://evil.example", "null", "GET", "PATCH", "authorization, content-type",
            "application/json; charset=\"", "*/*",
        ])
        .prop_map(|v| v.as_bytes().to_vec()),
        1 => (1usize..6000).prop_map(|n| "1.1.1.1,".repeat(n).into_bytes()),
    ];
    (select(names), value.prop_map(Bytes))
}

/// CORS preflights (refused and allowed), raw escapes in the passkey id, an
/// unknown passkey id with a full token, a long `X-Forwarded-For`.
fn tricky_requests() -> Vec<RequestCase> {
    let request =
        |method: Method, path: &str, auth: AuthHeader, extra: &[(&str, &str)]| RequestCase {
            method,
            path: path.to_owned(),
            query: None,
            auth,
            extra: extra
                .iter()
                .map(|(name, value)| {
                    (
                        HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                        Bytes(value.as_bytes().to_vec()),
                    )
                })
                .collect(),
            body: None,
        };
    let preflight = |extra: &[(&str, &str)]| {
        request(Method::OPTIONS, "/auth/login", AuthHeader::Missing, extra)
    };
    let unknown_id = format!("/passkeys/{}", Uuid::new_v4());
    let long_forwarded_for = "1.1.1.1,".repeat(4000);
    vec![
        preflight(&[
            ("origin", ORIGIN),
            ("access-control-request-method", "POST"),
        ]),
        preflight(&[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ]),
        preflight(&[("access-control-request-method", "POST")]),
        preflight(&[("origin", ORIGIN), ("access-control-request-method", "PUT")]),
        request(Method::GET, "/passkeys/%FF", AuthHeader::FullLevel, &[]),
        request(Method::DELETE, "/passkeys/%00", AuthHeader::FullLevel, &[]),
        request(Method::DELETE, &unknown_id, AuthHeader::FullLevel, &[]),
        request(
            Method::GET,
            "/auth/me",
            AuthHeader::PasswordLevel,
            &[("x-forwarded-for", &long_forwarded_for)],
        ),
    ]
}

/// What a hand-picked request of property 4 must get.
#[derive(Debug, Clone, Copy)]
enum Expected {
    NoContent,
    Problem(u16, &'static str),
    /// 200: exactly the held sessions of the caller's account, the
    /// caller's marked `current`.
    SessionList,
}

/// The recent, account and session routes with tokens the guard refuses or
/// lets through, with the answer each must get: the session routes' guards,
/// ids that are none of the caller's sessions (made up, malformed, another
/// user's, one already ended: 404), wrong methods; then sessions ended
/// every way (another by id, all others, logout with each kind of token,
/// the caller's own by id; each checked and replaced by a new login), an
/// ended session's token; last, each account deleted (the session is then
/// replaced).
fn account_requests(session: &Session) -> Vec<(RequestCase, Expected)> {
    let request = |method: Method, path: &str, auth: AuthHeader| RequestCase {
        method,
        path: path.to_owned(),
        query: None,
        auth,
        extra: Vec::new(),
        body: None,
    };
    let own_id = format!("/passkeys/{}", session.passkey_id);
    let unknown = format!("/auth/sessions/{}", Uuid::new_v4());
    let raw = |s: &str| AuthHeader::Raw(Bytes(s.as_bytes().to_vec()));
    use AuthHeader::{Ended, FullLevel, Missing, NoPasskey, PasswordLevel, Second};
    use Expected::{NoContent, Problem, SessionList};
    let (delete, get, post) = (Method::DELETE, Method::GET, Method::POST);
    let passkey_required = Problem(403, "passkey_required");
    let not_found = Problem(404, "not_found");
    let method_not_allowed = Problem(405, "method_not_allowed");
    let missing_token = Problem(401, "missing_token");
    let invalid_token = Problem(401, "invalid_token");
    vec![
        (
            request(delete.clone(), &own_id, PasswordLevel),
            passkey_required,
        ),
        // Another user's passkey.
        (request(delete.clone(), &own_id, NoPasskey), not_found),
        (
            request(delete.clone(), "/auth/me", PasswordLevel),
            passkey_required,
        ),
        (
            request(delete.clone(), "/auth/me", Second),
            passkey_required,
        ),
        (
            request(post.clone(), "/auth/recovery-codes", PasswordLevel),
            passkey_required,
        ),
        (
            request(post.clone(), "/auth/recovery-codes", NoPasskey),
            Problem(409, "no_passkeys"),
        ),
        (
            request(post.clone(), "/auth/recovery", FullLevel),
            Problem(400, "invalid_request"),
        ),
        (
            request(post.clone(), "/auth/password", NoPasskey),
            Problem(400, "invalid_request"),
        ),
        (
            request(post.clone(), "/auth/password", FullLevel),
            Problem(400, "invalid_request"),
        ),
        // The session routes' guards.
        (
            request(get.clone(), "/auth/sessions", Missing),
            missing_token,
        ),
        (
            request(post.clone(), "/auth/logout", Missing),
            missing_token,
        ),
        (
            request(delete.clone(), "/auth/sessions", Missing),
            missing_token,
        ),
        (
            request(delete.clone(), "/auth/sessions/{second}", Missing),
            missing_token,
        ),
        (
            request(post.clone(), "/auth/logout", raw("Bearer x")),
            invalid_token,
        ),
        (
            request(get.clone(), "/auth/sessions", PasswordLevel),
            SessionList,
        ),
        (
            request(get.clone(), "/auth/sessions", FullLevel),
            SessionList,
        ),
        (request(get.clone(), "/auth/sessions", Second), SessionList),
        (
            request(get.clone(), "/auth/sessions", NoPasskey),
            SessionList,
        ),
        (
            request(delete.clone(), "/auth/sessions/{second}", PasswordLevel),
            passkey_required,
        ),
        (
            request(delete.clone(), "/auth/sessions/{main}", Second),
            passkey_required,
        ),
        (
            request(delete.clone(), "/auth/sessions", PasswordLevel),
            passkey_required,
        ),
        (
            request(delete.clone(), "/auth/sessions", Second),
            passkey_required,
        ),
        // Ids that are none of the caller's sessions.
        (request(delete.clone(), &unknown, FullLevel), not_found),
        (
            request(
                delete.clone(),
                "/auth/sessions/00000000-0000-0000-0000-000000000000",
                FullLevel,
            ),
            not_found,
        ),
        (
            request(delete.clone(), "/auth/sessions/not-a-session", FullLevel),
            not_found,
        ),
        (
            request(delete.clone(), "/auth/sessions/%00", FullLevel),
            not_found,
        ),
        (
            request(delete.clone(), "/auth/sessions/{plain}", FullLevel),
            not_found,
        ),
        (
            request(delete.clone(), "/auth/sessions/{main}", NoPasskey),
            not_found,
        ),
        (
            request(delete.clone(), "/auth/sessions/{second}", NoPasskey),
            not_found,
        ),
        (request(delete.clone(), &unknown, NoPasskey), not_found),
        // Wrong methods.
        (
            request(get.clone(), "/auth/sessions/{second}", FullLevel),
            method_not_allowed,
        ),
        (
            request(Method::PUT, "/auth/sessions", FullLevel),
            method_not_allowed,
        ),
        (
            request(post.clone(), "/auth/sessions", FullLevel),
            method_not_allowed,
        ),
        (
            request(get.clone(), "/auth/logout", PasswordLevel),
            method_not_allowed,
        ),
        (
            request(get.clone(), "/auth/refresh", Missing),
            method_not_allowed,
        ),
        (
            request(post.clone(), "/auth/refresh", Missing),
            Problem(400, "invalid_request"),
        ),
        // Sessions ended every way (each then replaced by a new login).
        (
            request(delete.clone(), "/auth/sessions/{second}", FullLevel),
            NoContent,
        ),
        (
            request(delete.clone(), "/auth/sessions/{ended}", FullLevel),
            not_found,
        ),
        (request(post.clone(), "/auth/logout", Ended), invalid_token),
        (request(get.clone(), "/auth/sessions", Ended), invalid_token),
        (
            request(delete.clone(), "/auth/sessions/{plain-second}", NoPasskey),
            NoContent,
        ),
        (
            request(delete.clone(), "/auth/sessions", FullLevel),
            NoContent,
        ),
        (
            request(delete.clone(), "/auth/sessions", NoPasskey),
            NoContent,
        ),
        (request(post.clone(), "/auth/logout", Second), NoContent),
        (
            request(post.clone(), "/auth/logout", PasswordLevel),
            NoContent,
        ),
        (request(post.clone(), "/auth/logout", FullLevel), NoContent),
        (request(post.clone(), "/auth/logout", NoPasskey), NoContent),
        (
            request(delete.clone(), "/auth/sessions", Ended),
            invalid_token,
        ),
        (
            request(delete.clone(), "/auth/sessions/{main}", FullLevel),
            NoContent,
        ),
        (
            request(delete.clone(), "/auth/sessions/{plain}", NoPasskey),
            NoContent,
        ),
        (
            request(get.clone(), "/auth/sessions", FullLevel),
            SessionList,
        ),
        (
            request(get.clone(), "/auth/sessions", NoPasskey),
            SessionList,
        ),
        (request(post.clone(), "/auth/logout", Ended), invalid_token),
        (request(delete.clone(), "/auth/me", FullLevel), NoContent),
        (request(delete, "/auth/me", NoPasskey), NoContent),
    ]
}

fn arb_method() -> impl Strategy<Value = Method> {
    let standard = vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
    ];
    prop_oneof![
        4 => select(standard),
        1 => select(vec!["FUZZ", "PROPFIND", "get", "M-SEARCH"])
            .prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// A path segment: URL-ish text (raw `%` escapes included), any Unicode, dot
/// segments, ids, and long runs.
fn arb_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._~%-]{0,40}",
        2 => "\\PC{0,16}",
        2 => select(vec![
                "", ".", "..", "%00", "%FF", "%C0%AF", "%2F", "%2e%2e", "%", "%zz", ";", "register", "options",
                "00000000-0000-0000-0000-000000000000", "' OR 1=1 --",
            ])
        .prop_map(str::to_owned),
        1 => Just(Uuid::new_v4().to_string()),
        1 => (1usize..9000).prop_map(|n| "a".repeat(n)),
    ]
}

/// The session routes: with held (or ended) sessions' ids, made-up ids and
/// one segment too many.
fn arb_session_path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(SESSION_PATHS).prop_map(str::to_owned),
        2 => arb_segment().prop_map(|s| format!("/auth/sessions/{s}")),
        1 => (select(SESSION_PATHS), arb_segment()).prop_map(|(p, s)| format!("{p}/{s}")),
    ]
}

fn arb_path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(ROUTE_PATHS).prop_map(str::to_owned),
        1 => arb_session_path(),
        4 => arb_segment().prop_map(|s| format!("/passkeys/{s}")),
        1 => (arb_segment(), arb_segment()).prop_map(|(a, b)| format!("/passkeys/{a}/{b}")),
        1 => (select(ROUTE_PATHS), arb_segment()).prop_map(|(p, s)| format!("{p}/{s}")),
        1 => arb_segment().prop_map(|s| format!("/{s}")),
        1 => arb_segment().prop_map(|s| format!("/auth/{s}")),
    ]
}

fn arb_request_case() -> impl Strategy<Value = RequestCase> {
    let auth = prop_oneof![
        2 => Just(AuthHeader::Missing),
        2 => Just(AuthHeader::PasswordLevel),
        3 => Just(AuthHeader::FullLevel),
        1 => Just(AuthHeader::NoPasskey),
        1 => Just(AuthHeader::Second),
        1 => Just(AuthHeader::Ended),
        2 => prop::collection::vec(any::<u8>(), 0..80).prop_map(|b| AuthHeader::Bearer(Bytes(b))),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(|b| AuthHeader::Raw(Bytes(b))),
        1 => select(vec!["Bearer", "Bearer ", "bearer x", "Basic YTpi", "Bearer a b", "Bearer ....", "Bearer \u{0}"])
            .prop_map(|s| AuthHeader::Raw(Bytes(s.as_bytes().to_vec()))),
        1 => arb_byte_edit().prop_map(AuthHeader::Tampered),
    ];
    let query = prop::option::weighted(0.3, prop_oneof!["\\PC{0,40}", "[a-z=&%0-9]{0,40}"]);
    let body = prop::option::weighted(
        0.3,
        prop_oneof![
            arb_json(&[
                "nickname",
                "username",
                "password",
                "code",
                "currentPassword",
                "newPassword",
                "refreshToken"
            ])
            .prop_map(|v| Bytes(serde_json::to_vec(&v).unwrap())),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes),
        ],
    );
    let extra = prop::collection::vec(arb_extra_header(), 0..3);
    // Any method at any path, or the methods the session routes take there.
    let target = prop_oneof![
        6 => (arb_method(), arb_path()),
        1 => (select(vec![Method::POST, Method::DELETE, Method::GET]), arb_session_path()),
    ];
    (target, query, auth, extra, body).prop_map(|((method, path), query, auth, extra, body)| {
        RequestCase {
            method,
            path,
            query,
            auth,
            extra,
            body,
        }
    })
}

// ---------------------------------------------------------------------------
// Property 5: hostile usernames and display names
// ---------------------------------------------------------------------------

/// Run as usernames and as display names before the random cases.
const TRICKY_NAMES: &[&str] = &[
    // SQL metacharacters and LIKE wildcards.
    "' OR 1=1 --",
    "\"; DROP TABLE users; --",
    "\\",
    "admin'--",
    "Robert'); DROP TABLE users;--",
    "abc",
    "a_c",
    "a%c",
    "%%%",
    "___",
    "ABC",
    // Unicode confusables and invisible or direction characters.
    "аdmin",
    "ａｄｍｉｎ",
    "ad\u{200D}min",
    "ad\u{200B}min",
    "\u{202E}nimda",
    "admın",
    "ADMİN",
    "\u{212A}elvin",
    "ſtraße",
    "e\u{301}clair",
    "\u{FEFF}bom",
    // NUL and other control characters.
    "abc\0",
    "\0abc",
    "ab\0c",
    "\0\0\0",
    "tab\tname",
    "new\nline",
    // Lengths around and far past the limits.
    "ab",
    "a_b",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "",
    " ",
    // Valid names that mean something elsewhere.
    "...",
    "-rf",
    "null",
    "__proto__",
    "constructor",
];

#[derive(Debug, Clone)]
enum NameCase {
    Username(String),
    DisplayName(String),
}

fn arb_name() -> impl Strategy<Value = String> {
    let pieces = select(TRICKY_NAMES).prop_map(str::to_owned);
    prop_oneof![
        4 => "[A-Za-z0-9._-]{0,70}",
        3 => ("[a-z]{1,8}", pieces.clone(), "[a-z0-9]{0,4}").prop_map(|(a, b, c)| format!("{a}{b}{c}")),
        2 => pieces,
        2 => "\\PC{0,40}",
        2 => prop::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter),
        1 => (select(vec!["a", "а", "ａ", "\0", "'", "\u{200D}", "😀"]), 10 * 1024..10 * 1024 + 64usize)
            .prop_map(|(c, n)| c.repeat(n)),
    ]
}

fn arb_name_case() -> impl Strategy<Value = NameCase> {
    prop_oneof![
        3 => arb_name().prop_map(NameCase::Username),
        2 => arb_name().prop_map(NameCase::DisplayName),
    ]
}

// ---------------------------------------------------------------------------
// Property 6: typed recovery codes
// ---------------------------------------------------------------------------

/// The caller's codes, as shown, by what has happened to them.
struct CodeBook {
    live: Vec<String>,
    spent: Vec<String>,
    /// Unspent when their set was replaced.
    replaced: Vec<String>,
}

/// Which of the caller's codes an input starts from.
#[derive(Debug, Clone, Copy)]
enum Pool {
    Live,
    Spent,
    Replaced,
}

/// A position in a string, as a fraction of its length (so that it fits
/// any code, and shrinks towards the start).
#[derive(Debug, Clone, Copy)]
struct At(u8);

impl At {
    /// One of `0..len` (`len` > 0).
    fn of(self, len: usize) -> usize {
        usize::from(self.0) * len / 256
    }
}

#[derive(Debug, Clone)]
enum CodeInput {
    /// One of the caller's codes as shown, then edited.
    Near {
        pool: Pool,
        pick: u8,
        edits: Vec<CodeEdit>,
    },
    /// Any text (by chance, a well-formed code of nobody's).
    Other(String),
}

#[derive(Debug, Clone)]
enum CodeEdit {
    /// Upper-case the ASCII letters the mask marks (cycled over the text).
    Case(Vec<bool>),
    /// Insert text (a separator the contract allows or not, or anything).
    Insert(At, String),
    /// Replace one character.
    Substitute(At, char),
    /// Replace every `from` with `to` (e.g. `k` with the Kelvin sign).
    Swap(char, char),
    /// Write each `0` as `o` or `O` and each `1` as `i`, `I`, `l` or `L`.
    Crockford(u8),
    /// Keep a strict prefix of the characters.
    Truncate(At),
    /// Append text.
    Extend(String),
    /// Pad with `fill` on both sides to `len` bytes (around the 64-byte limit).
    PadTo(usize, char),
    /// Append `n` times `fill` (far past the limit).
    Flood(usize, char),
}

impl CodeEdit {
    fn apply(&self, text: &mut String) {
        let mut chars: Vec<char> = text.chars().collect();
        match self {
            CodeEdit::Case(mask) => {
                for (i, c) in chars.iter_mut().enumerate() {
                    if mask[i % mask.len()] {
                        c.make_ascii_uppercase();
                    }
                }
            }
            CodeEdit::Insert(at, insert) => {
                let i = at.of(chars.len() + 1);
                chars.splice(i..i, insert.chars());
            }
            CodeEdit::Substitute(at, with) if !chars.is_empty() => {
                let i = at.of(chars.len());
                chars[i] = *with;
            }
            CodeEdit::Swap(from, to) => {
                for c in chars.iter_mut().filter(|c| **c == *from) {
                    *c = *to;
                }
            }
            CodeEdit::Crockford(style) => {
                let style = usize::from(*style);
                for c in &mut chars {
                    match c {
                        '0' => *c = ['o', 'O'][style % 2],
                        '1' => *c = ['i', 'I', 'l', 'L'][style % 4],
                        _ => {}
                    }
                }
            }
            CodeEdit::Truncate(keep) if !chars.is_empty() => {
                chars.truncate(keep.of(chars.len()));
            }
            CodeEdit::Extend(extra) => chars.extend(extra.chars()),
            CodeEdit::PadTo(len, fill) => {
                let mut bytes = text.len();
                let mut front = true;
                while bytes < *len {
                    if front {
                        chars.insert(0, *fill);
                    } else {
                        chars.push(*fill);
                    }
                    front = !front;
                    bytes += fill.len_utf8();
                }
            }
            CodeEdit::Flood(n, fill) => chars.extend(std::iter::repeat_n(*fill, *n)),
            CodeEdit::Substitute(..) | CodeEdit::Truncate(_) => {}
        }
        *text = chars.into_iter().collect();
    }
}

impl CodeInput {
    /// The text typed, starting from a code of the book (a live one when
    /// the pool picked is empty).
    fn text(&self, book: &CodeBook) -> String {
        match self {
            CodeInput::Other(text) => text.clone(),
            CodeInput::Near { pool, pick, edits } => {
                let list = match pool {
                    Pool::Spent if !book.spent.is_empty() => &book.spent,
                    Pool::Replaced if !book.replaced.is_empty() => &book.replaced,
                    _ => &book.live,
                };
                let mut text = list[usize::from(*pick) % list.len()].clone();
                for edit in edits {
                    edit.apply(&mut text);
                }
                text
            }
        }
    }
}

/// Separators and other in-between text: the first three kinds the
/// contract allows, the rest it does not (other whitespace, other dashes,
/// invisible characters, punctuation).
const CODE_SEPARATORS: &[&str] = &[
    " ", "-", "\t", "  ", "- -", "\t\t", "\n", "\r", "\r\n", "_", ".", "/", "+", "\0", "\u{a0}",
    "\u{2010}", "\u{2011}", "\u{2013}", "\u{2212}", "\u{200b}", "\u{3000}", "\u{feff}", "\u{2028}",
];

/// Characters that look like (or case-map to) code characters: Crockford's
/// readings, the letters outside the alphabet, full-width, Cyrillic and
/// mathematical forms, the Kelvin sign (whose Unicode lower case is `k`).
const CODE_LOOKALIKES: &[char] = &[
    'o', 'O', 'i', 'I', 'l', 'L', 'u', 'U', '０', '１', 'ａ', 'Ｋ', 'О', 'о', 'І', 'і', 'К',
    '\u{212A}', 'ℓ', '𝟎', '٠', 'ⅰ', 'Ⅰ', 'ß', 'ſ', 'ı', 'İ',
];

fn arb_code_char() -> impl Strategy<Value = char> {
    let alphabet: Vec<char> = CODE_ALPHABET.chars().collect();
    prop_oneof![
        3 => select(alphabet),
        3 => select(CODE_LOOKALIKES),
        1 => any::<char>(),
    ]
}

fn arb_code_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(CODE_SEPARATORS).prop_map(str::to_owned),
        2 => "[0-9a-z]{1,4}",
        1 => prop::collection::vec(arb_code_char(), 1..4).prop_map(String::from_iter),
        1 => "\\PC{1,3}",
    ]
}

fn arb_code_edit() -> impl Strategy<Value = CodeEdit> {
    let fill = || select(vec![' ', '-', '\t']);
    let alphabet: Vec<char> = CODE_ALPHABET.chars().collect();
    prop_oneof![
        3 => prop::collection::vec(any::<bool>(), 1..12).prop_map(CodeEdit::Case),
        4 => (any::<u8>(), arb_code_text()).prop_map(|(at, text)| CodeEdit::Insert(At(at), text)),
        3 => (any::<u8>(), arb_code_char()).prop_map(|(at, c)| CodeEdit::Substitute(At(at), c)),
        2 => (select(alphabet), select(CODE_LOOKALIKES)).prop_map(|(from, to)| CodeEdit::Swap(from, to)),
        2 => any::<u8>().prop_map(CodeEdit::Crockford),
        1 => any::<u8>().prop_map(|keep| CodeEdit::Truncate(At(keep))),
        1 => arb_code_text().prop_map(CodeEdit::Extend),
        2 => (56usize..=72, fill()).prop_map(|(len, c)| CodeEdit::PadTo(len, c)),
        1 => (100usize..10_000, select(vec![' ', '-', '0', 'a'])).prop_map(|(n, c)| CodeEdit::Flood(n, c)),
    ]
}

fn arb_code_input() -> impl Strategy<Value = CodeInput> {
    let pool =
        prop_oneof![6 => Just(Pool::Live), 1 => Just(Pool::Spent), 1 => Just(Pool::Replaced)];
    prop_oneof![
        8 => (pool, any::<u8>(), prop::collection::vec(arb_code_edit(), 0..4))
            .prop_map(|(pool, pick, edits)| CodeInput::Near { pool, pick, edits }),
        1 => "[0-9a-hjkmnp-tv-zA-Z -]{10,14}".prop_map(CodeInput::Other),
        1 => prop_oneof!["\\PC{0,24}", select(NASTY_STRINGS).prop_map(str::to_owned)]
            .prop_map(CodeInput::Other),
    ]
}

/// Run before the random inputs: each reading the contract names once, the
/// 64-byte limit from both sides, spent and replaced codes.
fn tricky_code_inputs() -> Vec<CodeInput> {
    let near = |pool, edits: Vec<CodeEdit>| CodeInput::Near {
        pool,
        pick: 0,
        edits,
    };
    let live = |edits| near(Pool::Live, edits);
    let middle = At(128);
    vec![
        live(vec![]),
        // The code just spent.
        near(Pool::Spent, vec![]),
        near(Pool::Spent, vec![CodeEdit::Case(vec![true])]),
        live(vec![CodeEdit::Case(vec![true])]),
        live(vec![CodeEdit::Swap('-', ' ')]),
        live(vec![CodeEdit::Swap('-', '\t')]),
        live(vec![CodeEdit::Insert(At(0), " - \t".into())]),
        live(vec![CodeEdit::Crockford(0)]),
        live(vec![CodeEdit::Crockford(3)]),
        live(vec![CodeEdit::PadTo(64, ' ')]),
        live(vec![CodeEdit::PadTo(65, ' ')]),
        live(vec![CodeEdit::PadTo(65, '\t')]),
        live(vec![CodeEdit::Flood(10_000, ' ')]),
        live(vec![CodeEdit::Swap('-', '\u{2011}')]),
        live(vec![CodeEdit::Swap('-', '\u{a0}')]),
        live(vec![CodeEdit::Swap('-', '\n')]),
        live(vec![CodeEdit::Swap('k', '\u{212A}')]),
        live(vec![CodeEdit::Swap('0', 'О')]),
        live(vec![CodeEdit::Insert(middle, "u".into())]),
        live(vec![CodeEdit::Truncate(At(250))]),
        live(vec![CodeEdit::Extend("0".into())]),
        CodeInput::Other(String::new()),
        CodeInput::Other("0000000000".into()),
    ]
}
