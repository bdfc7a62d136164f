//! Schemas for JSON whose Rust type cannot carry a derive: bodies the
//! handlers build with `json!`, types of other crates (the guard crate's
//! claims, webauthn-rs's ceremony types). Documentation only: nothing is
//! (de)serialised through them.
//!
//! The WebAuthn JSON forms are described by their key members and left open
//! (`additionalProperties: true`, see [`OPEN_SCHEMAS`]): the contract takes
//! what a browser's `toJSON()` returns, as is.

// Documentation only: these types are never built, only described.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

/// Schemas that allow members beyond those listed.
pub const OPEN_SCHEMAS: &[&str] = &[
    "PublicKeyCredentialCreationOptionsJSON",
    "PublicKeyCredentialRequestOptionsJSON",
    "RegistrationResponse",
    "AuthenticatorAttestationResponseJSON",
    "AuthenticationResponse",
    "AuthenticatorAssertionResponseJSON",
    "Jwk",
];

/// How strongly the bearer of a token has authenticated: `password` after a
/// password login or a refresh, `full` after a passkey or a recovery code.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthLevel {
    Password,
    Full,
}

/// The claims of an access token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    /// The user id.
    sub: String,
    username: String,
    auth_level: AuthLevel,
    /// The same as `authLevel` (RFC 9470).
    acr: AuthLevel,
    /// RFC 8176 methods, e.g. `["pwd", "hwk"]`.
    #[schema(example = json!(["pwd", "hwk"]))]
    amr: Vec<String>,
    /// When the authentication that gave the token its level happened (seconds).
    #[serde(rename = "auth_time")]
    auth_time: i64,
    iat: i64,
    exp: i64,
    iss: String,
    aud: String,
    jti: String,
    /// The session the token belongs to.
    sid: String,
}

/// The answer of the example protected routes.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Greeting {
    message: String,
    auth_level: AuthLevel,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    status: String,
    checks: ReadinessChecks,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessChecks {
    #[schema(example = "ok")]
    database: String,
    #[schema(example = "ok")]
    challenge_store: String,
}

/// A JWK Set (RFC 7517).
#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// A public key (RFC 7517): `OKP`/`Ed25519` with `x`, or `EC`/`P-256` with `x`, `y`.
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    kty: String,
    #[schema(example = "Ed25519")]
    crv: String,
    /// Base64url.
    x: String,
    /// Base64url; EC keys only.
    y: Option<String>,
    kid: String,
    #[schema(example = "EdDSA")]
    alg: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    use_: String,
}

/// `{"publicKey": PublicKeyCredentialCreationOptionsJSON}`, for
/// `navigator.credentials.create()` (after `PublicKeyCredential.parseCreationOptionsFromJSON`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreationOptions {
    public_key: PublicKeyCredentialCreationOptionsJSON,
}

/// WebAuthn Level 3 `PublicKeyCredentialCreationOptionsJSON`; binary values
/// are unpadded base64url.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyCredentialCreationOptionsJSON {
    #[schema(value_type = Object)]
    rp: (),
    /// `{"id", "name", "displayName"}`; `id` is base64url.
    #[schema(value_type = Object)]
    user: (),
    challenge: String,
    #[schema(value_type = Vec<Object>)]
    pub_key_cred_params: (),
    /// Milliseconds.
    timeout: Option<u64>,
    /// The caller's existing credentials.
    #[schema(value_type = Option<Vec<Object>>)]
    exclude_credentials: (),
    /// Asks for a discoverable credential (`residentKey: "preferred"`).
    #[schema(value_type = Option<Object>)]
    authenticator_selection: (),
    attestation: Option<String>,
    #[schema(value_type = Option<Object>)]
    extensions: (),
}

/// `{"publicKey": PublicKeyCredentialRequestOptionsJSON}`, for
/// `navigator.credentials.get()`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestOptions {
    public_key: PublicKeyCredentialRequestOptionsJSON,
}

/// WebAuthn Level 3 `PublicKeyCredentialRequestOptionsJSON`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyCredentialRequestOptionsJSON {
    challenge: String,
    /// Milliseconds.
    timeout: Option<u64>,
    rp_id: Option<String>,
    /// The caller's credentials; empty for a passkey sign-in.
    #[schema(value_type = Option<Vec<Object>>)]
    allow_credentials: (),
    user_verification: Option<String>,
    #[schema(value_type = Option<Object>)]
    extensions: (),
}

/// WebAuthn Level 3 `RegistrationResponseJSON` as `toJSON()` returns it,
/// plus an optional top-level `nickname` for the new passkey.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationResponse {
    id: String,
    raw_id: String,
    #[serde(rename = "type")]
    #[schema(example = "public-key")]
    type_: String,
    response: AuthenticatorAttestationResponseJSON,
    #[schema(value_type = Option<Object>)]
    client_extension_results: (),
    authenticator_attachment: Option<String>,
    /// 1–64 characters; a default name when absent.
    nickname: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatorAttestationResponseJSON {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    attestation_object: String,
    transports: Option<Vec<String>>,
}

/// WebAuthn Level 3 `AuthenticationResponseJSON` as `toJSON()` returns it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationResponse {
    id: String,
    raw_id: String,
    #[serde(rename = "type")]
    #[schema(example = "public-key")]
    type_: String,
    response: AuthenticatorAssertionResponseJSON,
    #[schema(value_type = Option<Object>)]
    client_extension_results: (),
    authenticator_attachment: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatorAssertionResponseJSON {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    authenticator_data: String,
    signature: String,
    /// The user id the credential was created for; sign-in finds the user by it.
    user_handle: Option<String>,
}
