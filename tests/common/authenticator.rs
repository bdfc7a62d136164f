//! Test-only software WebAuthn authenticator ("platform passkey").
//!
//! It works purely on the WebAuthn Level 3 JSON forms that browsers use: it reads the
//! server's `{"publicKey": PublicKeyCredential{Creation,Request}OptionsJSON}` as a
//! `serde_json::Value` (binary fields as unpadded base64url strings) and returns what
//! `PublicKeyCredential.toJSON()` returns in a browser. Attestation is always "none", the key is
//! ECDSA P-256 / SHA-256 (COSE alg -7), and every response is signed correctly, so when a test
//! tampers with the ceremony through [`Tweaks`] (wrong origin, wrong RP ID hash, chosen counter,
//! wrong challenge, someone else's credential id, ...) the failure comes from the server's real
//! checks and never from a broken signature.
//!
//! One `TestAuthenticator` holds exactly one credential (key pair + 32-byte credential id). Like
//! a real authenticator it refuses to register when its credential is in `excludeCredentials`
//! and refuses to authenticate when `allowCredentials` is non-empty and does not name it (both
//! can be overridden with tweaks). Unlike a browser it deliberately does NOT check that the
//! origin matches the RP ID: catching that is the server's job.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::Value as Cbor;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::EncodePublicKey as _;
use rand::RngCore as _;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Authenticator data flag: User Present.
pub const FLAG_UP: u8 = 0x01;
/// Authenticator data flag: User Verified.
pub const FLAG_UV: u8 = 0x04;
/// Authenticator data flag: Backup Eligible.
pub const FLAG_BE: u8 = 0x08;
/// Authenticator data flag: Backup State (credential is currently backed up).
pub const FLAG_BS: u8 = 0x10;
/// Authenticator data flag: Attested credential data included.
pub const FLAG_AT: u8 = 0x40;
/// Authenticator data flag: Extension data included.
pub const FLAG_ED: u8 = 0x80;

/// COSE algorithm identifier for ES256 (ECDSA P-256 with SHA-256).
pub const COSE_ALG_ES256: i64 = -7;

/// Ways to make the authenticator (and the "browser" around it) misbehave. Every field left at
/// its default means "behave like a real, honest platform authenticator".
#[derive(Debug, Clone, Default)]
pub struct Tweaks {
    /// Put this origin in clientDataJSON instead of the `origin` argument.
    pub origin: Option<String>,
    /// Hash this RP ID into authenticatorData instead of the one from the options.
    pub rp_id: Option<String>,
    /// Put this string in clientDataJSON's `challenge` instead of the options' challenge.
    pub challenge: Option<String>,
    /// Use (and remember) this signature counter instead of the current / incremented one.
    pub counter: Option<u32>,
    /// Put this in clientDataJSON's `type` instead of "webauthn.create" / "webauthn.get".
    pub ceremony_type: Option<String>,
    /// Assertion only: `Some(None)` omits `userHandle`, `Some(Some(s))` sends the base64url
    /// string `s`; `None` sends the user handle this authenticator was registered with.
    pub user_handle: Option<Option<String>>,
    /// Use exactly this authenticator-data flags byte (see the `FLAG_*` constants). Registration
    /// always appends the attested credential data, whatever this byte says.
    pub flags: Option<u8>,
    /// Put this in clientDataJSON's `crossOrigin` instead of `false`.
    pub cross_origin: Option<bool>,
    /// Present this credential id (base64url) as `id`/`rawId` instead of our own; the response is
    /// still signed with our own key (models presenting someone else's credential id).
    pub credential_id: Option<String>,
    /// Assertion only: answer even if `allowCredentials` does not name our credential.
    pub ignore_allow_list: bool,
    /// Registration only: register even if `excludeCredentials` names our credential.
    pub ignore_exclude_list: bool,
}

/// A software passkey holding one P-256 credential. See the module documentation.
#[derive(Clone)]
pub struct TestAuthenticator {
    signing_key: SigningKey,
    credential_id: Vec<u8>,
    counter: u32,
    /// The `user.id` (base64url string, exactly as the server sent it) from the last registration.
    user_handle: Option<String>,
    backup_eligible: bool,
    backup_state: bool,
    /// What registrations report as `clientExtensionResults.credProps.rk`;
    /// `None` leaves `credProps` out.
    cred_props_rk: Option<bool>,
}

impl Default for TestAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

/// clientDataJSON, with its members in the order browsers emit them.
#[derive(Serialize)]
struct ClientData<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    challenge: &'a str,
    origin: &'a str,
    #[serde(rename = "crossOrigin")]
    cross_origin: bool,
}

impl TestAuthenticator {
    /// A fresh authenticator: random P-256 key, random 32-byte credential id, counter 0,
    /// not backup eligible.
    pub fn new() -> Self {
        let mut rng = rand::thread_rng();
        let signing_key = SigningKey::random(&mut rng);
        let mut credential_id = vec![0u8; 32];
        rng.fill_bytes(&mut credential_id);
        TestAuthenticator {
            signing_key,
            credential_id,
            counter: 0,
            user_handle: None,
            backup_eligible: false,
            backup_state: false,
            cred_props_rk: Some(false),
        }
    }

    /// A fresh authenticator that makes discoverable credentials (resident
    /// keys) and says so: registrations report `credProps.rk = true`.
    pub fn discoverable() -> Self {
        let mut authenticator = Self::new();
        authenticator.set_cred_props_rk(Some(true));
        authenticator
    }

    /// What later registrations report in `clientExtensionResults`:
    /// `Some(rk)` sends `{"credProps": {"rk": rk}}`, `None` sends `{}` (an
    /// authenticator or browser that does not say). The default is
    /// `Some(false)`.
    pub fn set_cred_props_rk(&mut self, rk: Option<bool>) {
        self.cred_props_rk = rk;
    }

    /// A copy of this device: same key, same credential id, same counter and user handle.
    /// Models a cloned authenticator (for counter-regression tests); the two then count
    /// independently.
    pub fn clone_device(&self) -> TestAuthenticator {
        self.clone()
    }

    /// Our credential id as an unpadded base64url string (the `id` of our responses).
    pub fn credential_id_b64(&self) -> String {
        b64(&self.credential_id)
    }

    /// Our raw credential id.
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// Current signature counter (the value used by the last response).
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// Set the signature counter; the next assertion uses `n + 1`.
    pub fn set_counter(&mut self, n: u32) {
        self.counter = n;
    }

    /// The base64url user handle (`user.id`) of the last successful registration, if any.
    pub fn user_handle(&self) -> Option<&str> {
        self.user_handle.as_deref()
    }

    /// Set the BE (backup eligible) and BS (backed up) flags used by default in all later
    /// registrations and assertions (a synced passkey is `(true, true)`).
    pub fn set_backup_flags(&mut self, backup_eligible: bool, backup_state: bool) {
        self.backup_eligible = backup_eligible;
        self.backup_state = backup_state;
    }

    /// Our public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.signing_key.verifying_key()
    }

    /// Default flags for registration: UP | UV | AT, plus BE/BS as configured.
    fn default_flags(&self, attested: bool) -> u8 {
        let mut flags = FLAG_UP | FLAG_UV;
        if attested {
            flags |= FLAG_AT;
        }
        if self.backup_eligible {
            flags |= FLAG_BE;
        }
        if self.backup_state {
            flags |= FLAG_BS;
        }
        flags
    }

    /// `navigator.credentials.create()` + `toJSON()` with no tweaks.
    pub fn register(&mut self, options: &Value, origin: &str) -> Result<Value, String> {
        self.register_with(options, origin, &Tweaks::default())
    }

    /// `navigator.credentials.create()` + `toJSON()`: `options` is `{"publicKey": {...}}` (a bare
    /// PublicKeyCredentialCreationOptionsJSON is accepted too). Errors when the options are
    /// malformed, do not offer ES256, or exclude our credential (unless tweaked).
    pub fn register_with(
        &mut self,
        options: &Value,
        origin: &str,
        tweaks: &Tweaks,
    ) -> Result<Value, String> {
        let pk = public_key_options(options)?;

        let challenge = str_field(pk, "challenge")?;
        let user_handle = pk
            .get("user")
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str)
            .ok_or("options.publicKey.user.id missing or not a string")?
            .to_string();
        let rp_id = match tweaks.rp_id.as_deref() {
            Some(id) => id.to_string(),
            None => match pk.get("rp").and_then(|rp| rp.get("id")) {
                Some(Value::String(id)) => id.clone(),
                Some(other) => {
                    return Err(format!("options.publicKey.rp.id is not a string: {other}"))
                }
                None => host_of(origin)?,
            },
        };

        // A real authenticator only creates credentials for an algorithm the RP accepts.
        if let Some(params) = pk.get("pubKeyCredParams").and_then(Value::as_array) {
            let es256 = params.iter().any(|p| {
                p.get("alg").and_then(Value::as_i64) == Some(COSE_ALG_ES256)
                    && p.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("public-key")
                        == "public-key"
            });
            if !params.is_empty() && !es256 {
                return Err("NotSupportedError: pubKeyCredParams does not offer ES256 (-7)".into());
            }
        }

        if !tweaks.ignore_exclude_list
            && descriptor_ids(pk, "excludeCredentials")?.contains(&self.credential_id)
        {
            return Err("InvalidStateError: credential is in excludeCredentials".into());
        }

        if let Some(n) = tweaks.counter {
            self.counter = n;
        }
        let flags = tweaks.flags.unwrap_or_else(|| self.default_flags(true));

        let client_data_json = client_data_json(
            tweaks.ceremony_type.as_deref().unwrap_or("webauthn.create"),
            tweaks.challenge.as_deref().unwrap_or(challenge),
            tweaks.origin.as_deref().unwrap_or(origin),
            tweaks.cross_origin.unwrap_or(false),
        );

        let presented_id = self.presented_id(tweaks)?;
        let mut auth_data = authenticator_data(&rp_id, flags, self.counter);
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        let id_len = u16::try_from(presented_id.len()).map_err(|_| "credential id too long")?;
        auth_data.extend_from_slice(&id_len.to_be_bytes());
        auth_data.extend_from_slice(&presented_id);
        auth_data.extend_from_slice(&self.cose_public_key());

        let attestation_object = cbor(&Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (
                Cbor::Text("authData".into()),
                Cbor::Bytes(auth_data.clone()),
            ),
        ]));

        let spki = self
            .signing_key
            .verifying_key()
            .to_public_key_der()
            .expect("P-256 public key always encodes as SubjectPublicKeyInfo");

        self.user_handle = Some(user_handle);

        Ok(json!({
            "id": b64(&presented_id),
            "rawId": b64(&presented_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": match self.cred_props_rk {
                Some(rk) => json!({ "credProps": { "rk": rk } }),
                None => json!({}),
            },
            "response": {
                "clientDataJSON": b64(&client_data_json),
                "attestationObject": b64(&attestation_object),
                "transports": ["internal"],
                "publicKeyAlgorithm": COSE_ALG_ES256,
                "authenticatorData": b64(&auth_data),
                "publicKey": b64(spki.as_bytes()),
            },
        }))
    }

    /// `navigator.credentials.get()` + `toJSON()` with no tweaks.
    pub fn authenticate(&mut self, options: &Value, origin: &str) -> Result<Value, String> {
        self.authenticate_with(options, origin, &Tweaks::default())
    }

    /// Like [`authenticate`](Self::authenticate) but answers even if `allowCredentials` does not
    /// name our credential.
    pub fn authenticate_ignoring_allow_list(
        &mut self,
        options: &Value,
        origin: &str,
    ) -> Result<Value, String> {
        let tweaks = Tweaks {
            ignore_allow_list: true,
            ..Tweaks::default()
        };
        self.authenticate_with(options, origin, &tweaks)
    }

    /// `navigator.credentials.get()` + `toJSON()`: `options` is `{"publicKey": {...}}` (a bare
    /// PublicKeyCredentialRequestOptionsJSON is accepted too). The counter is incremented before
    /// signing unless `tweaks.counter` sets it. Errors when the options are malformed or a
    /// non-empty `allowCredentials` does not name our credential (unless tweaked); the counter is
    /// left untouched on error.
    pub fn authenticate_with(
        &mut self,
        options: &Value,
        origin: &str,
        tweaks: &Tweaks,
    ) -> Result<Value, String> {
        let pk = public_key_options(options)?;

        let challenge = str_field(pk, "challenge")?;
        let rp_id = match tweaks.rp_id.as_deref() {
            Some(id) => id.to_string(),
            None => match pk.get("rpId") {
                Some(Value::String(id)) => id.clone(),
                Some(other) => {
                    return Err(format!("options.publicKey.rpId is not a string: {other}"))
                }
                None => host_of(origin)?,
            },
        };

        let allowed = descriptor_ids(pk, "allowCredentials")?;
        if !tweaks.ignore_allow_list
            && !allowed.is_empty()
            && !allowed.contains(&self.credential_id)
        {
            return Err("NotAllowedError: credential is not in allowCredentials".into());
        }

        let presented_id = self.presented_id(tweaks)?;
        self.counter = match tweaks.counter {
            Some(n) => n,
            None => self.counter.wrapping_add(1),
        };
        let flags = tweaks.flags.unwrap_or_else(|| self.default_flags(false));

        let client_data_json = client_data_json(
            tweaks.ceremony_type.as_deref().unwrap_or("webauthn.get"),
            tweaks.challenge.as_deref().unwrap_or(challenge),
            tweaks.origin.as_deref().unwrap_or(origin),
            tweaks.cross_origin.unwrap_or(false),
        );
        let auth_data = authenticator_data(&rp_id, flags, self.counter);

        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data_json));
        let signature: Signature = self.signing_key.sign(&signed);

        let mut response = json!({
            "clientDataJSON": b64(&client_data_json),
            "authenticatorData": b64(&auth_data),
            "signature": b64(signature.to_der().as_bytes()),
        });
        let user_handle = match &tweaks.user_handle {
            Some(chosen) => chosen.clone(),
            None => self.user_handle.clone(),
        };
        if let Some(handle) = user_handle {
            response["userHandle"] = Value::String(handle);
        }

        Ok(json!({
            "id": b64(&presented_id),
            "rawId": b64(&presented_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": response,
        }))
    }

    /// The credential id put in `id`/`rawId` (and in attested credential data).
    fn presented_id(&self, tweaks: &Tweaks) -> Result<Vec<u8>, String> {
        match &tweaks.credential_id {
            Some(id) => b64_decode(id).map_err(|e| format!("tweaks.credential_id: {e}")),
            None => Ok(self.credential_id.clone()),
        }
    }

    /// COSE_Key for our public key: {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
    fn cose_public_key(&self) -> Vec<u8> {
        let point = self.signing_key.verifying_key().to_encoded_point(false);
        let x = point.x().expect("uncompressed point has x").to_vec();
        let y = point.y().expect("uncompressed point has y").to_vec();
        cbor(&Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
            (
                Cbor::Integer(3.into()),
                Cbor::Integer(COSE_ALG_ES256.into()),
            ),
            (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
            (Cbor::Integer((-2).into()), Cbor::Bytes(x)),
            (Cbor::Integer((-3).into()), Cbor::Bytes(y)),
        ]))
    }
}

/// Unpadded base64url, as in the WebAuthn JSON forms.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode base64url, tolerating trailing `=` padding.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("invalid base64url {s:?}: {e}"))
}

/// rpIdHash(32) | flags(1) | signCount(4, big endian).
fn authenticator_data(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
    data.push(flags);
    data.extend_from_slice(&counter.to_be_bytes());
    data
}

fn client_data_json(type_: &str, challenge: &str, origin: &str, cross_origin: bool) -> Vec<u8> {
    serde_json::to_vec(&ClientData {
        type_,
        challenge,
        origin,
        cross_origin,
    })
    .expect("clientDataJSON always serializes")
}

fn cbor(value: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into a Vec cannot fail");
    out
}

/// `options["publicKey"]`, or `options` itself if it is already the inner dictionary.
fn public_key_options(options: &Value) -> Result<&Value, String> {
    let pk = options.get("publicKey").unwrap_or(options);
    if pk.is_object() {
        Ok(pk)
    } else {
        Err(format!(
            "options are not {{\"publicKey\": {{...}}}}: {options}"
        ))
    }
}

fn str_field<'a>(pk: &'a Value, name: &str) -> Result<&'a str, String> {
    pk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("options.publicKey.{name} missing or not a string"))
}

/// Decoded ids of a descriptor list (`excludeCredentials` / `allowCredentials`); absent or null
/// means empty. Malformed entries are an error, as they are for a browser's JSON parser.
fn descriptor_ids(pk: &Value, name: &str) -> Result<Vec<Vec<u8>>, String> {
    match pk.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|d| {
                let id = d
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{name} entry without a string id: {d}"))?;
                b64_decode(id)
            })
            .collect(),
        Some(other) => Err(format!("options.publicKey.{name} is not an array: {other}")),
    }
}

/// Default RP ID when the options carry none: the origin's host.
fn host_of(origin: &str) -> Result<String, String> {
    url::Url::parse(origin)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .ok_or_else(|| format!("no RP ID in options and origin {origin:?} has no host"))
}
