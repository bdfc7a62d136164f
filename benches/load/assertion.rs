//! What checking one passkey assertion's signature costs, measured in the
//! benchmark process with the code the server runs: webauthn-rs 0.6 hands
//! the check to webauthn-rs-core's `COSEKey::verify_signature`, which builds
//! the P-256 point from the credential's COSE coordinates, parses the DER
//! signature and verifies it with crypto-glue's `EcdsaP256VerifyingKey`
//! (p256 0.14), over authenticatorData ‖ SHA-256(clientDataJSON). That
//! figure is what a ceremony cannot do without; the server's CPU per
//! ceremony beyond it is the server's own overhead. For comparison, the
//! ECDSA verification alone (point and signature already parsed).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use crypto_glue::ecdsa_p256::{
    self, EcdsaP256Signature, EcdsaP256SigningKey, EcdsaP256VerifyingKey,
};
use crypto_glue::traits::{Signer as _, Verifier as _};
use sha2::{Digest as _, Sha256};
use webauthn_rs::prelude::COSEKey;

use crate::crypto::{time, OpCost, BATCH, BATCHES};

/// The costs of one assertion signature.
#[derive(Debug, Clone)]
pub struct AssertionCosts {
    /// authenticatorData ‖ SHA-256(clientDataJSON), bytes.
    pub message_bytes: usize,
    /// The DER signatures' mean length, bytes.
    pub signature_bytes: f64,
    /// `COSEKey::verify_signature`: what webauthn-rs-core does per assertion.
    pub verify: OpCost,
    /// `EcdsaP256VerifyingKey::verify` on a parsed key and signature.
    pub ecdsa_only: OpCost,
}

impl AssertionCosts {
    /// The figure the ceremonies are compared with: the thread's CPU time
    /// per verification (the wall clock without a thread clock).
    pub fn verify_us(&self) -> f64 {
        self.verify
            .cpu_us()
            .unwrap_or_else(|| self.verify.wall_us())
    }
}

/// What an authenticator signs for a `webauthn.get` ceremony: rpIdHash,
/// flags (UP | UV), the counter, then the hash of a client data of the
/// size the benchmark's authenticator sends (a 32-byte challenge).
fn signed_message(counter: u32) -> Vec<u8> {
    let mut data = Sha256::digest(b"localhost").to_vec();
    data.push(0x05);
    data.extend_from_slice(&counter.to_be_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(counter.to_be_bytes()));
    let client_data = format!(
        r#"{{"type":"webauthn.get","challenge":"{challenge}","origin":"{}","crossOrigin":false}}"#,
        crate::ORIGIN
    );
    data.extend_from_slice(&Sha256::digest(client_data.as_bytes()));
    data
}

/// Signs `BATCH * BATCHES` distinct messages with a new P-256 key (not
/// timed), then verifies each once through `COSEKey::verify_signature`,
/// then each once more with the parsed key and signature.
pub fn measure() -> Result<AssertionCosts, String> {
    let private = ecdsa_p256::new_key();
    let public = private.public_key();
    let signer = EcdsaP256SigningKey::from(&private);
    let cose = COSEKey::try_from(&public).map_err(|e| format!("COSE key: {e:?}"))?;
    let verifier = EcdsaP256VerifyingKey::from(&public);
    let total = BATCH * BATCHES;
    let messages: Vec<Vec<u8>> = (0..total).map(|i| signed_message(i as u32 + 1)).collect();
    let signatures: Vec<EcdsaP256Signature> = messages
        .iter()
        .map(|m| signer.try_sign(m).map_err(|e| format!("P-256 sign: {e}")))
        .collect::<Result<_, _>>()?;
    let der: Vec<Vec<u8>> = signatures
        .iter()
        .map(|s| s.to_der().as_bytes().to_vec())
        .collect();
    // Warm-up, and the check that the figures are of verifications that pass.
    match cose.verify_signature(&der[0], &messages[0]) {
        Ok(true) => {}
        other => {
            return Err(format!(
                "a valid assertion signature was refused: {other:?}"
            ))
        }
    }
    if cose.verify_signature(&der[0], &messages[1]).ok() != Some(false) {
        return Err("a signature over another message was accepted".into());
    }
    let verify = time(|i| match cose.verify_signature(&der[i], &messages[i]) {
        Ok(true) => Ok(()),
        other => Err(format!("signature {i} refused: {other:?}")),
    })?;
    let ecdsa_only = time(|i| {
        verifier
            .verify(&messages[i], &signatures[i])
            .map_err(|e| format!("signature {i} refused: {e}"))
    })?;
    Ok(AssertionCosts {
        message_bytes: messages[0].len(),
        signature_bytes: der.iter().map(Vec::len).sum::<usize>() as f64 / total as f64,
        verify,
        ecdsa_only,
    })
}
