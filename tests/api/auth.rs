//! Sign-up, login and the caller's account, through the HTTP app.

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::helpers::*;

on_both_backends!(
    signup_answers_201_with_the_user,
    signup_keeps_a_given_display_name,
    signup_rejects_each_invalid_field_naming_it,
    taken_username_is_409_case_insensitively,
    concurrent_signups_of_one_name_give_one_201_and_409s,
    login_issues_a_password_level_token_with_the_contract_claims,
    unknown_user_and_wrong_password_fail_the_same_way,
    login_matches_the_username_case_insensitively,
    passwords_are_stored_as_argon2id_phc_strings,
    me_returns_the_account_and_token_level,
    malformed_bodies_are_400_naming_the_problem,
    oversize_bodies_are_413,
);

async fn signup_answers_201_with_the_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.signup("Alice.Smith", PASSWORD).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "Alice.Smith");
    assert_eq!(body["displayName"], "Alice.Smith");
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    let created = body["createdAt"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    assert_eq!(
        sorted_keys(&body),
        ["createdAt", "displayName", "id", "username"]
    );
}

async fn signup_keeps_a_given_display_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .post_json(
            "/auth/signup",
            &json!({"username": "bob", "password": PASSWORD, "displayName": "Bob B. 🙂"}),
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["displayName"], "Bob B. 🙂");
}

async fn signup_rejects_each_invalid_field_naming_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (json!({"username": "ab", "password": PASSWORD}), "username"),
        (
            json!({"username": "a".repeat(65), "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "al ice", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "x' OR '1'='1", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "alice\u{0}", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "аlice", "password": PASSWORD}),
            "username",
        ), // Cyrillic а
        (
            json!({"username": "alice", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "alice", "password": "p".repeat(129)}),
            "password",
        ),
        (
            json!({"username": "alice", "password": PASSWORD, "displayName": "  "}),
            "displayName",
        ),
        (
            json!({"username": "alice", "password": PASSWORD, "displayName": "d".repeat(129)}),
            "displayName",
        ),
        (json!({"password": PASSWORD}), "username"),
        (json!({"username": "alice"}), "password"),
        (json!({"username": 42, "password": PASSWORD}), "username"),
        (json!({"username": "alice", "password": ["x"]}), "password"),
    ];
    for (body, field) in cases {
        let res = app.post_json("/auth/signup", &body, None).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{body} → {detail}");
    }
    // Nothing was created along the way.
    assert_eq!(app.signup("alice", PASSWORD).await.status(), 201);
}

async fn taken_username_is_409_case_insensitively(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.signup("carol", PASSWORD).await.status(), 201);
    assert_problem(app.signup("carol", PASSWORD).await, 409, "username_taken").await;
    assert_problem(
        app.signup("CaRoL", "another password").await,
        409,
        "username_taken",
    )
    .await;
}

async fn concurrent_signups_of_one_name_give_one_201_and_409s(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let attempts = (0..8).map(|i| {
        let name = if i % 2 == 0 { "Dave" } else { "dave" };
        app.signup(name, PASSWORD)
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut created = 0;
    let mut conflicts = 0;
    for res in results {
        match res.status().as_u16() {
            201 => created += 1,
            409 => {
                assert_problem(res, 409, "username_taken").await;
                conflicts += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((created, conflicts), (1, 7));
}

async fn login_issues_a_password_level_token_with_the_contract_claims(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let signup: Value = app.signup("erin", PASSWORD).await.json().await.unwrap();
    let res = app.login("erin", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["authLevel"], "password");
    assert_eq!(body["expiresIn"], 3600);
    let c = claims(body["accessToken"].as_str().unwrap());
    assert_eq!(c["sub"], signup["id"]);
    assert_eq!(c["username"], "erin");
    assert_eq!(c["authLevel"], "password");
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["iss"], "passkey-auth");
    assert_eq!(c["aud"], "passkey-auth");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert!(!c["jti"].as_str().unwrap().is_empty());

    let again: Value = app.login("erin", PASSWORD).await.json().await.unwrap();
    assert_ne!(
        claims(again["accessToken"].as_str().unwrap())["jti"],
        c["jti"]
    );
}

async fn unknown_user_and_wrong_password_fail_the_same_way(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("frank", PASSWORD).await;
    let wrong_password = app.login("frank", "not the password").await;
    let unknown_user = app.login("nobody-here", PASSWORD).await;
    let a = assert_problem(wrong_password, 401, "invalid_credentials").await;
    let b = assert_problem(unknown_user, 401, "invalid_credentials").await;
    assert_eq!(a, b);
    // A password differing only by trailing space is a different password.
    let padded = format!("{PASSWORD} ");
    assert_problem(
        app.login("frank", &padded).await,
        401,
        "invalid_credentials",
    )
    .await;
    // Strings that cannot be usernames (NUL, 10 KiB) fail the same way.
    for name in ["frank\u{0}", &"f".repeat(10 * 1024)] {
        let res = app.login(name, PASSWORD).await;
        assert_eq!(assert_problem(res, 401, "invalid_credentials").await, b);
    }
    // Wrong types are still a 400, not a 401.
    let res = app
        .post_json("/auth/login", &json!({"username": "frank"}), None)
        .await;
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert!(problem["detail"].as_str().unwrap().contains("password"));
}

async fn login_matches_the_username_case_insensitively(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("Grace", PASSWORD).await;
    let res = app.login("GRACE", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        claims(body["accessToken"].as_str().unwrap())["username"],
        "Grace"
    );
}

async fn passwords_are_stored_as_argon2id_phc_strings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signup("heidi", PASSWORD).await;
    let mut conn = app.db();
    use passkey_auth::schema::users::dsl::*;
    let stored: Vec<String> = users.select(password_hash).load(&mut conn).unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        stored[0]
    );
    assert!(!stored[0].contains(PASSWORD));
}

async fn me_returns_the_account_and_token_level(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.new_user().await;
    let res = app.get("/auth/me", Some(&user.token)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], user.id.as_str());
    assert_eq!(body["username"], user.username.as_str());
    assert_eq!(body["displayName"], user.username.as_str());
    assert_eq!(body["authLevel"], "password");
    assert_eq!(body["passkeyCount"], 0);
}

async fn malformed_bodies_are_400_naming_the_problem(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for raw in [
        "",
        "{",
        "not json",
        "[]",
        "null",
        r#"{"username":"a","password":"b"} trailing"#,
    ] {
        let res = app.post_raw("/auth/signup", raw, None).await;
        assert_problem(res, 400, "invalid_request").await;
    }
    let res = app
        .post_raw("/auth/login", r#"{"username": 1, "password": "x"}"#, None)
        .await;
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert!(problem["detail"].as_str().unwrap().starts_with("username"));
}

async fn oversize_bodies_are_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let huge = json!({"username": "ivan", "password": "x".repeat(70 * 1024)}).to_string();
    let res = app.post_raw("/auth/signup", huge, None).await;
    assert_problem(res, 413, "payload_too_large").await;
    let user = app.new_user().await;
    let huge = json!({"id": "x".repeat(65 * 1024)}).to_string();
    let res = app
        .post_raw("/passkeys/register/verify", huge, Some(&user.token))
        .await;
    assert_problem(res, 413, "payload_too_large").await;
    // Just under the limit is parsed (and refused for its content, not its size).
    let near = json!({"username": "ivan", "password": "x".repeat(60 * 1024)}).to_string();
    let res = app.post_raw("/auth/signup", near, None).await;
    assert_problem(res, 400, "invalid_request").await;
}
