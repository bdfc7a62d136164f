//! The JSON body extractor: at most 64 KiB, and every parse failure is a
//! 400 `invalid_request` whose detail names the offending field.
//!
//! Details are built in one place, [`describe`], in the contract's words:
//! serde's messages name Rust types (`expected struct CredProps`, `u32`,
//! `a base64 encoded string`), which a client never sees. The detail starts
//! with the field's path (`response.clientDataJSON: …`), and says what was
//! expected and which JSON kind was sent, never echoing the sent value:
//!
//! | serde message | detail |
//! |---|---|
//! | ``invalid type: integer `5`, expected struct X`` | `path: expected an object, got a number` |
//! | `invalid type: string "…", expected a boolean` | `path: expected true or false, got a string` |
//! | `… expected a sequence` / `a string` / `f64` | `… expected an array` / `a string` / `a number` |
//! | `… expected u8` (`u16`, `u32`, `i8`, `i16`, `i32`) | `… expected a whole number from 0 to 255` (its range) |
//! | `… expected u64` / `i64` | `… expected a whole number, 0 or more` / `a whole number` |
//! | `… expected a base64 encoded string`, `Invalid symbol …`, `Invalid input length: …` | `path: expected an unpadded base64url string` |
//! | `invalid length 0, expected struct X with 3 elements` | `path: expected an object, got an array` |
//! | ``missing field `foo` `` | `path.foo: is required` |
//! | ``duplicate field `foo` `` | `path.foo: appears more than once` |
//! | ``unknown field `foo`, …`` | `path.foo: is not a known field` |
//! | ``unknown variant `x`, expected one of `a`, `b` `` | `path: must be one of "a", "b"` |
//! | `EOF while parsing …`, `expected value`, `trailing characters`, … | `the request body is not valid JSON (line L, column C)` |
//! | `number out of range` (well-formed JSON) | `path: is a number out of range` |
//! | anything else | `path: has the wrong type or format` |
//!
//! At the root: `the request body must be a JSON object` when an object was
//! expected, `invalid JSON body: …` otherwise.

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_path_to_error::{Path, Segment};

use crate::errors::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
                return Err(ApiError::PayloadTooLarge);
            }
            let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| {
                    ApiError::InvalidRequest("the request body could not be read".into())
                })?;
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ApiError::PayloadTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(JsonBody)
        })
    }
}

/// Parses `bytes` as a `T`; errors name the field (`response.clientDataJSON: …`).
/// Every body of the contract is a JSON object: anything else is refused
/// before it reaches `T` (serde would read a struct from an array too).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
            Err(err) if first.is_some() => ApiError::InvalidRequest(describe(Failure::Text(&err))),
            _ => ApiError::InvalidRequest(describe(Failure::NotAnObject)),
        });
    }
    // Most bodies fit: parse them without tracking the path, and parse
    // again, tracking it, only to say where one that does not fit went
    // wrong (the path costs a few µs per body; a refusal can pay them).
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let shape_error = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => {
            return match de.end() {
                Ok(()) => Ok(value),
                Err(err) => Err(ApiError::InvalidRequest(describe(Failure::Text(&err)))),
            }
        }
        Err(err) => err,
    };
    // Deserialising stops at the first value that does not fit, possibly
    // before a syntax error further on: text that is not JSON is reported
    // as such, whatever the values seen before it.
    if let Err(err) = serde_json::from_slice::<IgnoredAny>(bytes) {
        return Err(ApiError::InvalidRequest(describe(Failure::Text(&err))));
    }
    Err(shape(&shape_error))
}

/// Converts an already-parsed JSON object into a `T`, naming the field on failure.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::InvalidRequest(describe(Failure::NotAnObject)));
    }
    serde_path_to_error::deserialize(value).map_err(|e| shape(&e))
}

/// The error for well-formed JSON that does not fit a `T`.
fn shape(err: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    ApiError::InvalidRequest(describe(Failure::Shape(err.path(), err.inner())))
}

/// What [`describe`] is told about a body that did not parse.
enum Failure<'a> {
    /// The bytes are not well-formed JSON.
    Text(&'a serde_json::Error),
    /// Well-formed JSON whose value at the path does not fit.
    Shape(&'a Path, &'a serde_json::Error),
    /// Something other than the JSON object the body must be.
    NotAnObject,
}

/// The detail of a parse failure: the only place serde's messages are
/// turned into words a client reads.
fn describe(failure: Failure<'_>) -> String {
    const NOT_AN_OBJECT: &str = "the request body must be a JSON object";
    match failure {
        Failure::NotAnObject => NOT_AN_OBJECT.into(),
        Failure::Text(err) => {
            let position = format!("(line {}, column {})", err.line(), err.column());
            if message(err).starts_with("recursion limit exceeded") {
                format!("the request body is nested too deeply {position}")
            } else {
                format!("the request body is not valid JSON {position}")
            }
        }
        Failure::Shape(path, err) => {
            let mut field = field_path(path);
            let problem = Problem::of(&message(err));
            match &problem {
                Problem::TooDeep => return "the request body is nested too deeply".into(),
                Problem::Missing(name) | Problem::Duplicate(name) => {
                    push_key(&mut field, name);
                }
                _ => {}
            }
            if !field.is_empty() {
                format!("{field}: {problem}")
            } else if problem.expects_object() {
                NOT_AN_OBJECT.into()
            } else {
                format!("invalid JSON body: {problem}")
            }
        }
    }
}

/// serde_json's message without its ` at line L column C` suffix.
fn message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if err.line() == 0 {
        return text;
    }
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => text,
    }
}

/// Longest member name a detail repeats; longer ones are cut.
const MAX_KEY_CHARS: usize = 64;

/// `response.clientDataJSON`, `transports[2]`; empty at the root.
fn field_path(path: &Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => {}
        }
    }
    out
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    if key.chars().count() > MAX_KEY_CHARS {
        path.extend(key.chars().take(MAX_KEY_CHARS));
        path.push('…');
    } else {
        path.push_str(key);
    }
}

/// A field's problem, in the contract's words.
#[derive(Debug, PartialEq)]
enum Problem {
    /// The member named is absent.
    Missing(String),
    /// The member named appears twice.
    Duplicate(String),
    /// The member (last in the path) is not one the body has.
    Unknown,
    /// The value is not of the expected kind; `got` is the JSON kind sent.
    Expected {
        expected: String,
        got: Option<&'static str>,
    },
    /// The value is not one of these JSON strings.
    OneOf(Vec<String>),
    /// A fixed phrase (`has too many items`).
    Phrase(&'static str),
    /// Deeper nesting than the parser accepts.
    TooDeep,
}

const WRONG_TYPE: &str = "has the wrong type or format";
const BASE64URL: &str = "an unpadded base64url string";

impl Problem {
    fn of(msg: &str) -> Problem {
        if let Some(rest) = msg.strip_prefix("invalid type: ") {
            return match split_expected(rest) {
                Some((unexpected, expected)) => Problem::expected(expected, got(unexpected)),
                None => Problem::Phrase(WRONG_TYPE),
            };
        }
        if let Some(rest) = msg.strip_prefix("invalid value: ") {
            return match split_expected(rest) {
                Some((_, expected)) => Problem::expected(expected, None),
                None => Problem::Phrase(WRONG_TYPE),
            };
        }
        if let Some(rest) = msg.strip_prefix("invalid length ") {
            return match split_expected(rest) {
                Some((_, expected)) if expected.starts_with("struct ") => Problem::Expected {
                    expected: "an object".into(),
                    got: Some("an array"),
                },
                Some((_, "fewer elements in array")) => Problem::Phrase("has too many items"),
                Some((_, expected)) => match expected_words(expected) {
                    Some(words) if words.starts_with("an array") => Problem::Expected {
                        expected: words,
                        got: None,
                    },
                    _ => Problem::Phrase("has the wrong number of items"),
                },
                None => Problem::Phrase("has the wrong number of items"),
            };
        }
        if let Some(rest) = msg.strip_prefix("missing field ") {
            return Problem::Missing(unquote(rest).to_owned());
        }
        if let Some(rest) = msg.strip_prefix("duplicate field ") {
            return Problem::Duplicate(unquote(rest).to_owned());
        }
        if msg.starts_with("unknown field ") {
            return Problem::Unknown;
        }
        if let Some(rest) = msg.strip_prefix("unknown variant ") {
            let allowed: Vec<String> = match split_expected(rest) {
                // `a`, `a` or `b`, one of `a`, `b`, `c`: the odd pieces.
                Some((_, expected)) => expected
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect(),
                None => Vec::new(),
            };
            return if allowed.is_empty() {
                Problem::Phrase(WRONG_TYPE)
            } else {
                Problem::OneOf(allowed)
            };
        }
        // The base64 crate's decode errors, as serde_with reports them.
        if [
            "Invalid symbol",
            "Invalid input length",
            "Invalid last symbol",
            "Invalid padding",
        ]
        .iter()
        .any(|p| msg.starts_with(p))
            || msg.contains("base64")
        {
            return Problem::expected(BASE64URL, None);
        }
        // Syntax-class errors about one value of well-formed JSON.
        if msg.starts_with("recursion limit exceeded") {
            return Problem::TooDeep;
        }
        if msg.starts_with("number out of range") {
            return Problem::Phrase("is a number out of range");
        }
        if msg.contains("hex escape") || msg.contains("surrogate") || msg.contains("code point") {
            return Problem::Phrase("is not a valid string");
        }
        if msg.starts_with("trailing characters") {
            return Problem::Phrase("has too many items");
        }
        Problem::Phrase(WRONG_TYPE)
    }

    fn expected(expected: &str, got: Option<&'static str>) -> Problem {
        let Some(expected) = expected_words(expected) else {
            return Problem::Phrase(WRONG_TYPE);
        };
        // "expected a whole number, got a number" says nothing more.
        let got = got.filter(|kind| !(expected.contains("number") && *kind == "a number"));
        Problem::Expected { expected, got }
    }

    fn expects_object(&self) -> bool {
        matches!(self, Problem::Expected { expected, .. } if expected == "an object")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing(_) => f.write_str("is required"),
            Problem::Duplicate(_) => f.write_str("appears more than once"),
            Problem::Unknown => f.write_str("is not a known field"),
            Problem::Expected {
                expected,
                got: Some(got),
            } => write!(f, "expected {expected}, got {got}"),
            Problem::Expected {
                expected,
                got: None,
            } => write!(f, "expected {expected}"),
            Problem::OneOf(allowed) => {
                let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
                match quoted.as_slice() {
                    [only] => write!(f, "must be {only}"),
                    all => write!(f, "must be one of {}", all.join(", ")),
                }
            }
            Problem::Phrase(phrase) => f.write_str(phrase),
            Problem::TooDeep => f.write_str("is nested too deeply"),
        }
    }
}

/// Splits `<unexpected>, expected <expected>` at the last `, expected `:
/// the unexpected part may hold the client's own text, the expected part
/// never does.
fn split_expected(rest: &str) -> Option<(&str, &str)> {
    if let Some(at) = rest.rfind(", expected ") {
        return Some((&rest[..at], &rest[at + ", expected ".len()..]));
    }
    rest.rfind(", there are no ").map(|at| (&rest[..at], ""))
}

/// `foo` → foo.
fn unquote(text: &str) -> &str {
    text.trim().trim_matches('`')
}

/// The JSON kind of serde's "unexpected" description.
fn got(unexpected: &str) -> Option<&'static str> {
    let kinds: [(&str, &str); 9] = [
        ("integer", "a number"),
        ("floating point", "a number"),
        ("boolean", "a boolean"),
        ("null", "null"),
        ("unit value", "null"),
        ("sequence", "an array"),
        ("map", "an object"),
        ("string", "a string"),
        ("character", "a string"),
    ];
    kinds
        .iter()
        .find(|(serde, _)| unexpected.starts_with(serde))
        .map(|(_, json)| *json)
}

/// serde's "expected" description (a visitor's `expecting`) in the
/// contract's words; `None` when it names a type we do not know.
fn expected_words(expected: &str) -> Option<String> {
    let expected = expected.trim();
    let words = match expected {
        "a sequence" | "sequence" => "an array",
        "a string" | "a borrowed string" | "string" | "string or map" | "a string or map" => {
            "a string"
        }
        "a character" | "char" => "a single character",
        "a boolean" | "bool" => "true or false",
        "unit" | "null" => "null",
        "a map" | "map" => "an object",
        "f32" | "f64" => "a number",
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" => "a whole number from -128 to 127",
        "i16" => "a whole number from -32768 to 32767",
        "i32" => "a whole number from -2147483648 to 2147483647",
        "i64" | "i128" | "isize" => "a whole number",
        _ if expected.starts_with("struct ") => "an object",
        _ if expected.contains("base64") => BASE64URL,
        _ => {
            if let Some(n) = array_length(expected) {
                return Some(format!("an array of {n} items"));
            }
            return is_plain(expected).then(|| expected.to_owned());
        }
    };
    Some(words.to_owned())
}

/// The size of `a tuple of size N` or `tuple struct X with N elements`.
fn array_length(expected: &str) -> Option<usize> {
    if let Some(n) = expected.strip_prefix("a tuple of size ") {
        return n.parse().ok();
    }
    if expected.starts_with("tuple struct ") || expected.starts_with("tuple variant ") {
        let tail = expected.rsplit(" with ").next()?;
        return tail.split(' ').next()?.parse().ok();
    }
    None
}

/// Plain English a library may say (`a valid date`): lowercase words only,
/// none of them a Rust type or serde term.
fn is_plain(text: &str) -> bool {
    const RUST_WORDS: [&str; 18] = [
        "struct", "enum", "tuple", "variant", "unit", "option", "vec", "str", "bool", "char",
        "serde", "newtype", "map", "sequence", "byte", "bytes", "usize", "isize",
    ];
    // `u8`, `i64`, `f32`.
    let primitive = |word: &str| {
        word.len() > 1
            && word.starts_with(['u', 'i', 'f'])
            && word[1..].chars().all(|c| c.is_ascii_digit())
    };
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || " ,'-".contains(c);
    !text.is_empty()
        && text.len() <= 80
        && text.chars().all(allowed)
        && text
            .split([' ', ','])
            .all(|word| !RUST_WORDS.contains(&word) && !primitive(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::{json, Value};
    use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Login {
        username: String,
        password: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    enum Mode {
        FastMode,
        Slow,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        flag: Option<bool>,
        count: Option<u32>,
        small: Option<u8>,
        offset: Option<i64>,
        ratio: Option<f64>,
        names: Option<Vec<String>>,
        label: Option<String>,
        #[serde(default)]
        text: String,
        mode: Option<Mode>,
        pair: Option<(u8, u8)>,
        #[serde(default, deserialize_with = "odd")]
        odd: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        settings: Settings,
    }

    /// A field whose deserialiser fails with a library-style message.
    fn odd<'de, D: serde::Deserializer<'de>>(_: D) -> Result<Option<String>, D::Error> {
        Err(serde::de::Error::custom(
            "invalid Foo::Bar<Vec<u8>> in struct OddThing",
        ))
    }

    fn detail(err: ApiError) -> String {
        match err {
            ApiError::InvalidRequest(d) => d,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn parse_detail<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> String {
        detail(parse::<T>(body.as_bytes()).unwrap_err())
    }

    /// Both entry points give the same detail for a well-formed body.
    fn both_detail<T: DeserializeOwned + std::fmt::Debug>(body: &Value) -> String {
        let streamed = detail(parse::<T>(body.to_string().as_bytes()).unwrap_err());
        let from_tree = detail(from_value::<T>(body.clone()).unwrap_err());
        assert_eq!(streamed, from_tree, "{body}");
        streamed
    }

    fn settings(field: &str, value: Value) -> String {
        both_detail::<Outer>(&json!({ "settings": { field: value } }))
    }

    /// A syntactically valid `RegistrationResponseJSON` (the values only
    /// have to decode; nothing verifies them here).
    fn registration() -> Value {
        json!({
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {
                "attestationObject": "AAAA",
                "clientDataJSON": "AAAA",
                "transports": ["usb", "internal"]
            },
            "clientExtensionResults": {
                "credProps": {"rk": true},
                "appid": false,
                "hmacSecret": true,
                "credProtect": "userVerificationRequired",
                "minPinLength": 4
            },
            "authenticatorAttachment": "platform"
        })
    }

    /// A syntactically valid `AuthenticationResponseJSON`.
    fn authentication() -> Value {
        json!({
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {
                "authenticatorData": "AAAA",
                "clientDataJSON": "AAAA",
                "signature": "AAAA",
                "userHandle": "AAAA"
            },
            "clientExtensionResults": {
                "appid": false,
                "hmacGetSecret": {"output1": "AAAA", "output2": "AAAA"}
            },
            "authenticatorAttachment": "cross-platform"
        })
    }

    #[test]
    fn valid_ceremony_bodies_parse() {
        parse::<RegisterPublicKeyCredential>(registration().to_string().as_bytes()).unwrap();
        from_value::<RegisterPublicKeyCredential>(registration()).unwrap();
        parse::<PublicKeyCredential>(authentication().to_string().as_bytes()).unwrap();
        from_value::<PublicKeyCredential>(authentication()).unwrap();
    }

    #[test]
    fn a_mistyped_struct_is_an_object_not_a_rust_type() {
        let mut body = registration();
        body["clientExtensionResults"] = json!(5);
        assert_eq!(
            both_detail::<RegisterPublicKeyCredential>(&body),
            "clientExtensionResults: expected an object, got a number"
        );
        body["clientExtensionResults"] = json!({"credProps": "yes"});
        assert_eq!(
            both_detail::<RegisterPublicKeyCredential>(&body),
            "clientExtensionResults.credProps: expected an object, got a string"
        );
        let mut body = authentication();
        body["response"] = json!(null);
        assert_eq!(
            both_detail::<PublicKeyCredential>(&body),
            "response: expected an object, got null"
        );
        body["response"] = json!([]);
        assert_eq!(
            both_detail::<PublicKeyCredential>(&body),
            "response: expected an object, got an array"
        );
    }

    #[test]
    fn the_got_part_is_the_json_kind() {
        for (value, kind) in [
            (json!(5), "a number"),
            (json!(-1.5), "a number"),
            (json!("yes"), "a string"),
            (json!(true), "a boolean"),
            (json!({}), "an object"),
        ] {
            assert_eq!(
                settings("names", value),
                format!("settings.names: expected an array, got {kind}")
            );
        }
        for (value, kind) in [(json!(null), "null"), (json!([]), "an array")] {
            assert_eq!(
                settings("text", value),
                format!("settings.text: expected a string, got {kind}")
            );
        }
    }

    #[test]
    fn the_clients_value_is_never_echoed() {
        let sneaky = "x".repeat(500) + ", expected struct Secret";
        let d = settings("flag", json!(sneaky));
        assert_eq!(d, "settings.flag: expected true or false, got a string");
        let d = settings("mode", json!(sneaky));
        assert_eq!(d, r#"settings.mode: must be one of "fastMode", "slow""#);
    }

    #[test]
    fn scalar_expectations_in_plain_words() {
        assert_eq!(
            settings("label", json!(5)),
            "settings.label: expected a string, got a number"
        );
        assert_eq!(
            settings("flag", json!("yes")),
            "settings.flag: expected true or false, got a string"
        );
        assert_eq!(
            settings("names", json!("x")),
            "settings.names: expected an array, got a string"
        );
        assert_eq!(
            settings("names", json!([1])),
            "settings.names[0]: expected a string, got a number"
        );
        assert_eq!(
            settings("count", json!("5")),
            "settings.count: expected a whole number from 0 to 4294967295, got a string"
        );
        assert_eq!(
            settings("count", json!(1.5)),
            "settings.count: expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            settings("count", json!(-1)),
            "settings.count: expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            settings("small", json!(300)),
            "settings.small: expected a whole number from 0 to 255"
        );
        assert_eq!(
            settings("offset", json!(true)),
            "settings.offset: expected a whole number, got a boolean"
        );
        assert_eq!(
            settings("ratio", json!("1.5")),
            "settings.ratio: expected a number, got a string"
        );
        assert_eq!(
            settings("pair", json!([1])),
            "settings.pair: expected an array of 2 items"
        );
    }

    #[test]
    fn base64_fields_expect_unpadded_base64url() {
        for (value, got) in [
            (json!("not base64!!"), ""),
            (json!("x"), ""),
            (json!(5), ", got a number"),
            (json!({}), ", got an object"),
        ] {
            let mut body = registration();
            body["response"]["clientDataJSON"] = value.clone();
            assert_eq!(
                both_detail::<RegisterPublicKeyCredential>(&body),
                format!("response.clientDataJSON: expected an unpadded base64url string{got}"),
                "{value}"
            );
            let mut body = authentication();
            body["rawId"] = value;
            assert_eq!(
                both_detail::<PublicKeyCredential>(&body),
                format!("rawId: expected an unpadded base64url string{got}")
            );
        }
    }

    #[test]
    fn missing_fields_are_named_with_their_full_path() {
        let mut body = registration();
        body["response"]
            .as_object_mut()
            .unwrap()
            .remove("clientDataJSON");
        assert_eq!(
            both_detail::<RegisterPublicKeyCredential>(&body),
            "response.clientDataJSON: is required"
        );
        let mut body = authentication();
        body.as_object_mut().unwrap().remove("rawId");
        assert_eq!(
            both_detail::<PublicKeyCredential>(&body),
            "rawId: is required"
        );
        assert_eq!(
            parse_detail::<Login>(r#"{"username":"a"}"#),
            "password: is required"
        );
    }

    #[test]
    fn unknown_variants_list_the_json_values() {
        let mut body = registration();
        body["clientExtensionResults"]["credProtect"] = json!("never");
        assert_eq!(
            both_detail::<RegisterPublicKeyCredential>(&body),
            r#"clientExtensionResults.credProtect: must be one of "userVerificationOptional", "userVerificationOptionalWithCredentialIDList", "userVerificationRequired""#
        );
        assert_eq!(
            settings("mode", json!("fast")),
            r#"settings.mode: must be one of "fastMode", "slow""#
        );
        // Not a string at all: the streaming parser only knows it is wrong.
        assert_eq!(
            parse_detail::<Outer>(r#"{"settings":{"mode":5}}"#),
            "settings.mode: has the wrong type or format"
        );
        assert_eq!(
            detail(from_value::<Outer>(json!({"settings":{"mode":5}})).unwrap_err()),
            "settings.mode: expected a string, got a number"
        );
    }

    #[test]
    fn unknown_and_duplicate_fields_are_named() {
        assert_eq!(
            settings("colour", json!(1)),
            "settings.colour: is not a known field"
        );
        let long = "k".repeat(500);
        let d = settings(&long, json!(1));
        assert!(
            d.len() < 120 && d.ends_with("…: is not a known field"),
            "{d}"
        );
        assert_eq!(
            parse_detail::<Login>(r#"{"username":"a","password":"b","username":"c"}"#),
            "username: appears more than once"
        );
    }

    #[test]
    fn text_that_is_not_json_says_so_with_its_position() {
        for (body, position) in [
            ("{", "(line 1, column 1)"),
            (r#"{"username": "#, "(line 1, column 13)"),
            ("{\n  \"username\" 1}", "(line 2, column 14)"),
            ("nul", "(line 1, column 3)"),
            (
                r#"{"username":"a","password":"b"} x"#,
                "(line 1, column 33)",
            ),
            (r#"{"username":"a","password":"b",}"#, "(line 1, column 32)"),
            // A value that does not fit comes before the syntax error.
            (r#"{"username":5,"password":"b""#, "(line 1, column 28)"),
            (
                r#"{"username":"a","password":"b"}{}"#,
                "(line 1, column 32)",
            ),
        ] {
            assert_eq!(
                parse_detail::<Login>(body),
                format!("the request body is not valid JSON {position}"),
                "{body}"
            );
        }
        let deep = format!(r#"{{"a":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(parse_detail::<Value>(&deep).starts_with("the request body is nested too deeply"));
    }

    #[test]
    fn values_of_well_formed_json_the_parser_refuses() {
        assert_eq!(
            parse_detail::<Outer>(r#"{"settings":{"ratio":1e999}}"#),
            "settings.ratio: is a number out of range"
        );
        assert_eq!(
            parse_detail::<Login>(r#"{"username":"\ud800","password":"b"}"#),
            "username: is not a valid string"
        );
        assert_eq!(
            parse_detail::<Outer>(r#"{"settings":{"pair":[1,2,3]}}"#),
            "settings.pair: has too many items"
        );
        assert_eq!(
            detail(from_value::<Outer>(json!({"settings":{"pair":[1,2,3]}})).unwrap_err()),
            "settings.pair: has too many items"
        );
    }

    #[test]
    fn whole_body_errors() {
        for body in ["[]", "5", "\"x\"", "null", "true", "[{}]", r#"["a", 5]"#] {
            assert_eq!(
                parse_detail::<Login>(body),
                "the request body must be a JSON object",
                "{body}"
            );
            assert_eq!(
                parse_detail::<PublicKeyCredential>(body),
                "the request body must be a JSON object",
                "{body}"
            );
        }
        assert_eq!(
            parse_detail::<Login>("  \n"),
            "the request body must be a JSON object"
        );
        // Every body is an object, even where serde could read an array.
        assert_eq!(
            parse_detail::<Vec<String>>(r#"["a"]"#),
            "the request body must be a JSON object"
        );
        assert_eq!(
            parse_detail::<Login>(r#"["alice", "correct horse"]"#),
            "the request body must be a JSON object"
        );
    }

    #[test]
    fn unrecognised_messages_fall_back_to_a_generic_detail() {
        assert_eq!(
            parse_detail::<Outer>(r#"{"settings":{"odd":"x"}}"#),
            "settings.odd: has the wrong type or format"
        );
        for msg in [
            "invalid type: integer `5`, expected enum Secret",
            "invalid type: map, expected HashMap<String, Vec<u8>>",
            "invalid value: string \"x\", expected a valid Uuid",
            "invalid type: string \"x\", expected tuple struct Base64UrlSafeData",
            "expected value",
            "Can't convert a Byte Vector of length 3 to the output type.",
            "something::internal failed",
            "invalid type: integer `5`",
            "invalid value: map, expected map with a single key",
            "invalid type: string \"x\", expected i256 or usize",
            "invalid type: string \"x\", expected a byte array",
            "unknown variant `x`, there are no variants",
        ] {
            assert_eq!(Problem::of(msg).to_string(), WRONG_TYPE, "{msg}");
        }
        // Plain words from a library are kept.
        assert_eq!(
            Problem::of("invalid value: string \"x\", expected a valid date").to_string(),
            "expected a valid date"
        );
    }

    #[test]
    fn names_missing_and_mistyped_fields() {
        let d = parse_detail::<Login>(r#"{"username":5,"password":"x"}"#);
        assert_eq!(d, "username: expected a string, got a number");
        let d = parse_detail::<Login>(r#"{"username":"a","password":["x"]}"#);
        assert_eq!(d, "password: expected a string, got an array");
    }

    #[test]
    fn rejects_empty_malformed_and_trailing_input() {
        assert!(parse::<Login>(b"").is_err());
        assert!(parse::<Login>(b"{").is_err());
        assert!(parse::<Login>(br#"{"username":"a","password":"b"} x"#).is_err());
        assert!(parse::<Login>(br#"{"username":"a","password":"b"}"#).is_ok());
    }

    /// Every member name of `value`, at any depth.
    fn member_names(value: &Value, names: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    names.push(k.clone());
                    member_names(v, names);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| member_names(v, names)),
            _ => {}
        }
    }

    /// The paths (`response.clientDataJSON`) of every member at any depth.
    fn member_paths(value: &Value, prefix: &[String], out: &mut Vec<Vec<String>>) {
        if let Value::Object(map) = value {
            for (k, v) in map {
                let mut path = prefix.to_vec();
                path.push(k.clone());
                out.push(path.clone());
                member_paths(v, &path, out);
            }
        }
    }

    fn slot<'a>(root: &'a mut Value, path: &[String]) -> &'a mut Value {
        path.iter().fold(root, |v, k| &mut v[k.as_str()])
    }

    /// The words of a detail outside its double-quoted JSON values.
    fn unquoted_words(detail: &str) -> Vec<String> {
        detail
            .split('"')
            .step_by(2)
            .flat_map(|part| part.split(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn assert_plain(detail: &str, field: &str, allowed: &[String], case: &str) {
        for banned in [
            "struct",
            "enum",
            "Base64",
            "Vec",
            "::",
            "serde",
            "RegistrationExtensions",
            "AuthenticationExtensions",
            "CredProps",
            "Authenticator",
            "PublicKeyCredential",
            "`",
            " at line ",
        ] {
            assert!(
                !detail.contains(banned),
                "{case}: {detail:?} has {banned:?}"
            );
        }
        for word in unquoted_words(detail) {
            let camel = word.len() > 3 && word.chars().any(|c| c.is_ascii_uppercase());
            assert!(
                !camel || allowed.contains(&word) || word == "JSON",
                "{case}: {detail:?} has the word {word:?}"
            );
        }
        assert!(
            detail.starts_with(field),
            "{case}: {detail:?} does not name {field}"
        );
    }

    /// Replacing any member at any depth of a ceremony body with a value of
    /// another kind (or removing it) gives a detail naming that member's
    /// path, in the contract's words only.
    fn check_mutations<T: DeserializeOwned + std::fmt::Debug>(base: Value) -> usize {
        let mut allowed = Vec::new();
        member_names(&base, &mut allowed);
        let mut paths = Vec::new();
        member_paths(&base, &[], &mut paths);
        let replacements = [
            json!(5),
            json!("x"),
            json!(true),
            json!(null),
            json!([]),
            json!({}),
            json!(-1),
            json!(1.5),
            json!("not base64!!"),
            json!(["x"]),
            json!({"a": 1}),
        ];
        let mut refused = 0;
        for path in &paths {
            let field = path.join(".");
            let mut bodies = Vec::new();
            for replacement in &replacements {
                let mut body = base.clone();
                *slot(&mut body, path) = replacement.clone();
                bodies.push((format!("{field} = {replacement}"), body));
            }
            let mut body = base.clone();
            let (last, parent) = path.split_last().unwrap();
            slot(&mut body, parent)
                .as_object_mut()
                .unwrap()
                .remove(last);
            bodies.push((format!("{field} removed"), body));
            for (case, body) in bodies {
                let streamed = parse::<T>(body.to_string().as_bytes());
                let from_tree = from_value::<T>(body.clone());
                assert_eq!(streamed.is_ok(), from_tree.is_ok(), "{case}");
                for result in [streamed, from_tree] {
                    if let Err(err) = result {
                        refused += 1;
                        assert_plain(&detail(err), &field, &allowed, &case);
                    }
                }
            }
        }
        refused
    }

    #[test]
    fn mutated_ceremony_bodies_never_show_rust_types() {
        let refused = check_mutations::<RegisterPublicKeyCredential>(registration());
        assert!(refused > 100, "only {refused} refusals");
        let refused = check_mutations::<PublicKeyCredential>(authentication());
        assert!(refused > 100, "only {refused} refusals");
    }
}
