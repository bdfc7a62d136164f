//! Recovery codes: ten single-use codes with the first passkey, replaced on
//! demand, each raising a login to the full level once.

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::common::authenticator::TestAuthenticator;
use crate::helpers::*;

on_both_backends!(
    the_first_passkey_comes_with_ten_codes_and_later_ones_without,
    a_code_gives_the_full_level_once_in_any_typed_form,
    wrong_malformed_and_missing_codes_are_refused,
    two_concurrent_uses_of_one_code_succeed_once,
    replacing_the_codes_invalidates_the_old_set,
    deleting_the_last_passkey_deletes_the_codes,
    codes_are_stored_only_as_argon2id_hashes,
    recovery_is_rate_limited_and_audited,
);

/// A user with one passkey; returns the user, the authenticator and the codes.
async fn user_with_codes(app: &TestApp) -> (TestUser, TestAuthenticator, Vec<String>) {
    let user = app.new_user().await;
    let mut device = TestAuthenticator::new();
    let summary = app.register_passkey(&user.token, &mut device).await;
    let codes = summary["recoveryCodes"]
        .as_array()
        .expect("the first passkey's answer carries recoveryCodes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (user, device, codes)
}

fn is_grouped_code(code: &str) -> bool {
    let alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
    code.len() == 11
        && code.char_indices().all(|(i, c)| {
            if i == 5 {
                c == '-'
            } else {
                alphabet.contains(c)
            }
        })
}

async fn remaining(app: &TestApp, token: &str) -> i64 {
    app.me(token).await["recoveryCodesRemaining"]
        .as_i64()
        .unwrap()
}

async fn the_first_passkey_comes_with_ten_codes_and_later_ones_without(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let fresh = app.new_user().await;
    assert_eq!(remaining(&app, &fresh.token).await, 0);

    let (user, mut device, codes) = user_with_codes(&app).await;
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| is_grouped_code(c)), "{codes:?}");
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    assert_eq!(remaining(&app, &user.token).await, 10);

    let full = app.step_up(&user.token, &mut device).await;
    let second = app
        .register_passkey(&full, &mut TestAuthenticator::new())
        .await;
    assert!(second.get("recoveryCodes").is_none(), "{second}");
    assert_eq!(remaining(&app, &user.token).await, 10);
}

async fn a_code_gives_the_full_level_once_in_any_typed_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, _device, codes) = user_with_codes(&app).await;

    // Upper case with spaces instead of the hyphen.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let res = app.recover(&user.token, &format!(" {typed} ")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["authLevel"], "full");
    let full = body["accessToken"].as_str().unwrap();
    assert_eq!(claims(full)["amr"], json!(["pwd", "otp"]));
    assert_eq!(app.get("/protected/full", Some(full)).await.status(), 200);
    assert_eq!(remaining(&app, &user.token).await, 9);

    // Spent: in any form, again.
    for again in [codes[0].clone(), typed, codes[0].replace('-', "")] {
        let res = app.recover(&user.token, &again).await;
        assert_problem(res, 401, "invalid_recovery_code").await;
    }
    // Another code, without its hyphen and split differently.
    let other = codes[1].replace('-', "");
    let split = format!("{}-{}-{}", &other[..3], &other[3..7], &other[7..]);
    assert_eq!(app.recover(&user.token, &split).await.status(), 200);
    // A full-level token can use one too (it stays full).
    assert_eq!(app.recover(full, &codes[2]).await.status(), 200);
    assert_eq!(remaining(&app, &user.token).await, 7);
}

async fn wrong_malformed_and_missing_codes_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, _device, codes) = user_with_codes(&app).await;
    // Someone else's code is wrong for this account.
    let (_, _, others) = user_with_codes(&app).await;
    for wrong in [
        others[0].as_str(),
        "00000-00000",
        "",
        "abc",
        "k7m2q-9xw4d-zzzzz",
        "ü7m2q-9xw4d",
        "'; DELETE FROM recovery_codes; --",
    ] {
        let res = app.recover(&user.token, wrong).await;
        assert_problem(res, 401, "invalid_recovery_code").await;
    }
    for bad in [
        json!({}),
        json!({"code": 5}),
        json!({"code": null}),
        json!([]),
    ] {
        let res = app
            .post_json("/auth/recovery", &bad, Some(&user.token))
            .await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("code") || detail.contains("object"),
            "{detail}"
        );
    }
    let res = app
        .post_json("/auth/recovery", &json!({"code": codes[0]}), None)
        .await;
    assert_problem(res, 401, "missing_token").await;
    // None of that spent a code.
    assert_eq!(remaining(&app, &user.token).await, 10);
    assert_eq!(app.recover(&user.token, &codes[0]).await.status(), 200);
}

async fn two_concurrent_uses_of_one_code_succeed_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, _device, codes) = user_with_codes(&app).await;
    let statuses = app
        .concurrent_posts("/auth/recovery", &json!({"code": codes[3]}), &user.token, 6)
        .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    assert_eq!(remaining(&app, &user.token).await, 9);
}

async fn replacing_the_codes_invalidates_the_old_set(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, mut device, old) = user_with_codes(&app).await;
    assert_eq!(app.recover(&user.token, &old[0]).await.status(), 200);
    assert_eq!(remaining(&app, &user.token).await, 9);

    let full = app.step_up(&user.token, &mut device).await;
    let res = app
        .post_json("/auth/recovery-codes", &json!({}), Some(&full))
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(sorted_keys(&body), ["codes", "createdAt"]);
    assert!(chrono::DateTime::parse_from_rfc3339(body["createdAt"].as_str().unwrap()).is_ok());
    let new: Vec<String> = body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| is_grouped_code(c) && !old.contains(c)));
    assert_eq!(remaining(&app, &user.token).await, 10);

    let res = app.recover(&user.token, &old[1]).await;
    assert_problem(res, 401, "invalid_recovery_code").await;
    assert_eq!(app.recover(&user.token, &new[9]).await.status(), 200);
    assert_eq!(remaining(&app, &user.token).await, 9);

    // An account without a passkey has no codes to replace.
    let plain = app.new_user().await;
    let res = app
        .post_json("/auth/recovery-codes", &json!({}), Some(&plain.token))
        .await;
    assert_problem(res, 409, "no_passkeys").await;
}

async fn deleting_the_last_passkey_deletes_the_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, mut device, codes) = user_with_codes(&app).await;
    let full = app.step_up(&user.token, &mut device).await;
    let second = app
        .register_passkey(&full, &mut TestAuthenticator::new())
        .await;
    let list: Value = app
        .get("/passkeys", Some(&full))
        .await
        .json()
        .await
        .unwrap();
    let first_id = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .find(|id| *id != second["id"])
        .unwrap();

    // One of two deleted: the codes stay.
    let res = app
        .delete(
            &format!("/passkeys/{}", second["id"].as_str().unwrap()),
            Some(&full),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(remaining(&app, &user.token).await, 10);
    // The last one: the codes go with it.
    let res = app
        .delete(&format!("/passkeys/{first_id}"), Some(&full))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(remaining(&app, &user.token).await, 0);
    let res = app.recover(&user.token, &codes[0]).await;
    assert_problem(res, 401, "invalid_recovery_code").await;

    // The account is guarded as one without a passkey again: a fresh
    // password login enrols the next first passkey, with new codes.
    let login: Value = app
        .login(&user.username, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap();
    let again = app
        .register_passkey(token, &mut TestAuthenticator::new())
        .await;
    let new = again["recoveryCodes"].as_array().unwrap();
    assert_eq!(new.len(), 10);
    assert!(new
        .iter()
        .all(|c| !codes.contains(&c.as_str().unwrap().to_owned())));
}

async fn codes_are_stored_only_as_argon2id_hashes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, _device, codes) = user_with_codes(&app).await;
    let mut conn = app.db();
    use passkey_auth::schema::recovery_codes::dsl::*;
    let stored: Vec<String> = recovery_codes
        .filter(user_id.eq(&user.id))
        .select(code_hash)
        .load(&mut conn)
        .unwrap();
    assert_eq!(stored.len(), 10);
    for hash in &stored {
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        for code in &codes {
            assert!(!hash.contains(code.as_str()));
            assert!(!hash.contains(&code.replace('-', "")));
        }
    }
    let mut distinct = stored.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
}

async fn recovery_is_rate_limited_and_audited(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "1"),
            ("RATE_LIMIT_ACCOUNT_BURST", "2"),
        ],
    )
    .await;
    let (user, _device, codes) = user_with_codes(&app).await;
    let res = app.recover(&user.token, "00000-00000").await;
    assert_problem(res, 401, "invalid_recovery_code").await;
    assert_eq!(app.recover(&user.token, &codes[0]).await.status(), 200);
    // The bucket is empty: even a right code waits.
    let res = app.recover(&user.token, &codes[1]).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "rate_limited").await;
    // Waiting the advertised minute is enough.
    app.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(app.recover(&user.token, &codes[1]).await.status(), 200);

    let page: Value = app
        .get("/auth/events?limit=100", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    let kinds = app.event_kinds(&user.token).await;
    for kind in [
        "recovery_codes_issued",
        "recovery_code_failed",
        "recovery_code_used",
        "rate_limited",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "recovery_code_used").count(),
        2
    );
    // No event shows a code.
    let text = page.to_string();
    for code in &codes {
        assert!(!text.contains(code.as_str()));
    }
}
