//! `/openapi.json`: it documents every registered route and only real ones,
//! it is valid OpenAPI 3.1 (against the official schema, vendored in
//! `tests/openapi/`), it is cached like the JWKS; and Swagger UI at `/docs/`.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use passkey_auth::controllers::route_table;

on_both_backends!(
    the_document_covers_every_route_and_only_real_routes,
    the_document_is_public_and_cacheable,
    swagger_ui_is_served_under_the_strict_policy,
);

/// Routes that are in the table but not in the document, and why.
const UNDOCUMENTED: &[(&str, &str)] = &[
    ("/", "the demo page: HTML for browsers, not API"),
    ("/app.js", "the demo page's script"),
    ("/style.css", "the demo page's stylesheet"),
    ("/docs", "Swagger UI: a redirect to /docs/"),
    ("/docs/{file:.*}", "Swagger UI's own files"),
];

const OAS_31_SCHEMA: &str = include_str!("../openapi/oas-3.1-schema.json");

fn oas_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(OAS_31_SCHEMA).unwrap();
    jsonschema::draft202012::new(&schema).expect("the OpenAPI 3.1 schema compiles")
}

/// Every way `doc` is not a valid OpenAPI 3.1 document: against the
/// official schema, its component schemas against JSON Schema 2020-12, and
/// what the schema cannot say (unique operation ids, `$ref`s that resolve).
fn problems(doc: &Value) -> Vec<String> {
    let mut found: Vec<String> = oas_validator()
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
                found.push(format!("components.schemas.{name}: {e}"));
            }
        }
    }
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            match operation["operationId"].as_str() {
                Some(id) if !ids.insert(id.to_owned()) => {
                    found.push(format!("{method} {path}: operationId {id} is not unique"))
                }
                Some(_) => {}
                None => found.push(format!("{method} {path}: no operationId")),
            }
        }
    }
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for reference in refs {
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer));
        if target.is_none() {
            found.push(format!("$ref {reference} resolves to nothing"));
        }
    }
    found
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                refs.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

async fn fetch_document(app: &TestApp) -> Value {
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    res.json().await.unwrap()
}

async fn the_document_covers_every_route_and_only_real_routes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = fetch_document(&app).await;
    assert_eq!(doc["openapi"].as_str().unwrap().get(..4), Some("3.1."));
    let found = problems(&doc);
    assert!(found.is_empty(), "invalid document: {found:#?}");

    // Every registered (method, path) is documented, or excluded above.
    let table = route_table();
    let mut registered = BTreeSet::new();
    for endpoint in table {
        for method in endpoint.verb.methods() {
            registered.insert((method.to_string(), endpoint.path.to_owned()));
            if UNDOCUMENTED.iter().any(|(p, _)| *p == endpoint.path) {
                continue;
            }
            assert!(
                doc["paths"][endpoint.path][method].is_object(),
                "{} {} is a route but not in /openapi.json",
                method.to_uppercase(),
                endpoint.path
            );
        }
    }
    for (path, why) in UNDOCUMENTED {
        assert!(
            table.iter().any(|e| e.path == *path),
            "{path} is excluded ({why}) but is no route"
        );
        assert!(doc["paths"].get(*path).is_none(), "{path} is documented");
    }

    // Every documented operation is a registered route that answers, and
    // its security requirement is the truth: without a token a guarded
    // operation is 401 missing_token, a public one never is.
    let paths = doc["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|i| i.as_object().unwrap().len()).sum();
    let excluded = registered
        .iter()
        .filter(|(_, path)| UNDOCUMENTED.iter().any(|(p, _)| p == path))
        .count();
    assert_eq!(operations, registered.len() - excluded);
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let id = &operation["operationId"];
            assert!(
                registered.contains(&(method.clone(), path.clone())),
                "{method} {path} ({id}) is documented but not registered"
            );
            let url = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
            assert!(!url.contains('{'), "{path}: unknown path parameter");
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app
                .client
                .request(verb, app.url(&url))
                .send()
                .await
                .unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body["detail"] == "route not found"),
                "{method} {path}: no such route"
            );
            let secured = operation["security"] == json!([{ "bearer": [] }]);
            let description = operation["description"].as_str().unwrap_or_default();
            if secured {
                assert_eq!(status, 401, "{method} {path} without a token");
                assert_eq!(body["code"], "missing_token", "{method} {path}");
                assert!(
                    ["login", "full", "recent"]
                        .iter()
                        .any(|level| description.contains(&format!("**Guard: {level}**"))),
                    "{method} {path}: the level is not in the description"
                );
                assert!(operation["responses"]["401"].is_object(), "{method} {path}");
            } else {
                assert!(operation.get("security").is_none(), "{method} {path}");
                assert_ne!(body["code"], "missing_token", "{method} {path} is guarded");
                assert!(description.contains("**Guard: public**"), "{method} {path}");
            }
            // Every operation names its answers: a success and the 500.
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success answer"
            );
            assert!(responses.contains_key("500"), "{method} {path}");
        }
    }
}

/// A document the checks above would pass must be broken in ways the
/// validation catches: proof that it can fail.
#[test]
fn the_validation_rejects_broken_documents() {
    let good = passkey_auth::openapi::build();
    let found = problems(&good);
    assert!(found.is_empty(), "{found:#?}");
    type Breakage = fn(&mut Value);
    let breakages: [(&str, Breakage); 7] = [
        ("no info", |d| {
            d.as_object_mut().unwrap().remove("info");
        }),
        ("OpenAPI 3.0", |d| d["openapi"] = json!("3.0.3")),
        ("a response without description", |d| {
            d["paths"]["/auth/login"]["post"]["responses"]["200"]
                .as_object_mut()
                .unwrap()
                .remove("description");
        }),
        ("a parameter in nowhere", |d| {
            d["paths"]["/passkeys/{id}"]["patch"]["parameters"][0]["in"] = json!("nowhere")
        }),
        ("an unknown security scheme type", |d| {
            d["components"]["securitySchemes"]["bearer"]["type"] = json!("magic")
        }),
        ("a schema of an unknown type", |d| {
            d["components"]["schemas"]["Problem"]["type"] = json!("invalid_type")
        }),
        ("a dangling $ref", |d| {
            d["paths"]["/auth/login"]["post"]["requestBody"]["content"]["application/json"]
                ["schema"] = json!({"$ref": "#/components/schemas/Nothing"})
        }),
    ];
    for (what, breakage) in breakages {
        let mut doc = good.clone();
        breakage(&mut doc);
        assert!(!problems(&doc).is_empty(), "{what} was not caught");
    }
    let mut doc = good.clone();
    let login = doc["paths"]["/auth/login"]["post"].clone();
    doc["paths"]["/auth/signup"]["post"] = login;
    assert!(
        !problems(&doc).is_empty(),
        "a duplicate operationId was not caught"
    );
}

/// The document's problem answers name the codes the contract gives them.
#[test]
fn refusals_carry_their_codes_and_headers() {
    let doc = passkey_auth::openapi::build();
    let codes = |path: &str, method: &str, status: &str| -> Vec<String> {
        let response = &doc["paths"][path][method]["responses"][status];
        response["content"]["application/problem+json"]["schema"]["allOf"][1]["properties"]["code"]
            ["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no {status}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(codes("/auth/signup", "post", "409"), ["username_taken"]);
    assert_eq!(codes("/auth/signup", "post", "400"), ["invalid_request"]);
    assert_eq!(codes("/auth/signup", "post", "413"), ["payload_too_large"]);
    assert_eq!(codes("/auth/login", "post", "401"), ["invalid_credentials"]);
    assert_eq!(
        codes("/auth/me", "get", "401"),
        ["missing_token", "invalid_token"]
    );
    assert_eq!(codes("/protected/full", "get", "403"), ["passkey_required"]);
    assert_eq!(
        codes("/auth/me", "delete", "403"),
        ["passkey_required", "reauthentication_required"]
    );
    assert_eq!(
        codes("/passkeys/register/verify", "post", "400"),
        ["challenge_expired", "invalid_request"]
    );
    assert_eq!(
        codes("/passkeys/register/verify", "post", "409"),
        ["credential_exists"]
    );
    assert_eq!(codes("/passkeys/{id}", "delete", "404"), ["not_found"]);
    assert_eq!(codes("/readyz", "get", "503"), ["service_unavailable"]);
    assert_eq!(codes("/healthz", "get", "500"), ["internal_error"]);
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["503"].is_null());
    let limited = &doc["paths"]["/auth/login"]["post"]["responses"]["429"];
    assert_eq!(codes("/auth/login", "post", "429"), ["rate_limited"]);
    assert!(limited["headers"]["Retry-After"].is_object());
    let refused = &doc["paths"]["/auth/me"]["delete"]["responses"]["403"];
    assert!(refused["headers"]["WWW-Authenticate"].is_object());
    // HEAD answers have no body and their own operation id.
    let head = &doc["paths"]["/openapi.json"]["head"];
    assert_eq!(head["operationId"], "openapiHead");
    assert!(head["responses"]["200"].get("content").is_none());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
    );
}

async fn the_document_is_public_and_cacheable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    let cache = headers["cache-control"].to_str().unwrap();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let body = res.bytes().await.unwrap();

    let again = app.get("/openapi.json", None).await;
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        again.bytes().await.unwrap(),
        body,
        "built once: the same bytes"
    );

    let res = app
        .client
        .get(app.url("/openapi.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let head = app
        .client
        .head(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    assert!(head.bytes().await.unwrap().is_empty());
}

async fn swagger_ui_is_served_under_the_strict_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // `/docs` redirects to `/docs/` (Swagger UI's paths are relative).
    let res = app.get("/docs", None).await;
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/docs/");
    let res = app.get("/docs/", None).await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // Swagger UI's logo's one inline <style>, by its hash; nothing else.
    assert!(
        csp.contains("style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w=';"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-initializer.js"), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");

    let init = app.get("/docs/swagger-initializer.js", None).await;
    assert_eq!(init.status(), 200);
    let script = init.text().await.unwrap();
    assert!(script.contains("\"url\": \"/openapi.json\""), "{script}");
    assert!(script.contains("\"validatorUrl\": \"none\""), "{script}");
    for (file, content_type) in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
    ] {
        let res = app.get(&format!("/docs/{file}"), None).await;
        assert_eq!(res.status(), 200, "{file}");
        let ct = res.headers()["content-type"].to_str().unwrap();
        assert!(ct.starts_with(content_type), "{file}: {ct}");
    }
    assert_problem(app.get("/docs/nope.js", None).await, 404, "not_found").await;
    assert_problem(app.get("/docs/../Cargo.toml", None).await, 404, "not_found").await;
}
