//! How a private signing key is stored: sealed with XChaCha20-Poly1305 under
//! `SIGNING_KEY_ENCRYPTION_KEY` when it is set, else as plain base64. The
//! key's `kid` is the associated data, so a sealed key cannot be moved to
//! another row.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

const PLAIN: &str = "plain:";
const SEALED: &str = "xchacha20poly1305:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("it is encrypted, and SIGNING_KEY_ENCRYPTION_KEY is not set")]
    KeyNeeded,
    #[error("it does not decrypt with SIGNING_KEY_ENCRYPTION_KEY (another key, or altered)")]
    WrongKey,
    #[error("it is stored unencrypted, and SIGNING_KEY_ENCRYPTION_KEY is set")]
    NotSealed,
    #[error("its stored form is not one this server writes")]
    Malformed,
}

/// The key-encryption key. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct KeyEncryptionKey(XChaCha20Poly1305);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

impl KeyEncryptionKey {
    /// 32 bytes, given as base64 (standard or URL-safe, padded or not) or
    /// as 64 hex digits.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let decoded = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&raw[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(raw).ok())
        };
        let bytes = Zeroizing::new(decoded.unwrap_or_default());
        if bytes.len() != 32 {
            return Err("must be 32 random bytes, as base64 or 64 hex digits (e.g. `openssl rand -base64 32`)".into());
        }
        XChaCha20Poly1305::new_from_slice(&bytes)
            .map(KeyEncryptionKey)
            .map_err(|_| "must be 32 bytes".into())
    }
}

/// Seals a private key (its PKCS#8 bytes) for the row of `kid`.
pub fn seal(kek: Option<&KeyEncryptionKey>, kid: &str, der: &[u8]) -> String {
    let Some(kek) = kek else {
        return format!("{PLAIN}{}", STANDARD.encode(der));
    };
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = kek
        .0
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: der,
                aad: kid.as_bytes(),
            },
        )
        // Encryption fails only for messages of gigabytes.
        .unwrap_or_default();
    format!(
        "{SEALED}{}:{}",
        STANDARD.encode(nonce),
        STANDARD.encode(sealed)
    )
}

/// Whether a stored key is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

/// The PKCS#8 bytes of a stored key. With a key-encryption key, only
/// sealed keys are read: a plain row is one this server did not write
/// (keys stored before the encryption key was set are sealed at start).
pub fn open(
    kek: Option<&KeyEncryptionKey>,
    kid: &str,
    stored: &str,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if let Some(plain) = stored.strip_prefix(PLAIN) {
        if kek.is_some() {
            return Err(SealError::NotSealed);
        }
        return read_plain(plain);
    }
    let sealed = stored.strip_prefix(SEALED).ok_or(SealError::Malformed)?;
    let kek = kek.ok_or(SealError::KeyNeeded)?;
    let (nonce, ciphertext) = sealed.split_once(':').ok_or(SealError::Malformed)?;
    let nonce = STANDARD.decode(nonce).map_err(|_| SealError::Malformed)?;
    let ciphertext = STANDARD
        .decode(ciphertext)
        .map_err(|_| SealError::Malformed)?;
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| SealError::Malformed)?;
    kek.0
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &ciphertext,
                aad: kid.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::WrongKey)
}

/// The PKCS#8 bytes of a key stored plain, whatever the configuration
/// (for sealing keys written before the encryption key was set).
pub fn open_plain(stored: &str) -> Option<Zeroizing<Vec<u8>>> {
    read_plain(stored.strip_prefix(PLAIN)?).ok()
}

fn read_plain(encoded: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
    STANDARD
        .decode(encoded)
        .map(Zeroizing::new)
        .map_err(|_| SealError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::parse(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn sealed_keys_open_only_with_the_same_key_and_kid() {
        let (a, b) = (kek(1), kek(2));
        let stored = seal(Some(&a), "kid-1", b"private");
        assert!(is_sealed(&stored));
        assert!(!stored.contains(&STANDARD.encode(b"private")));
        assert_eq!(&open(Some(&a), "kid-1", &stored).unwrap()[..], b"private");
        assert_eq!(open(Some(&b), "kid-1", &stored), Err(SealError::WrongKey));
        assert_eq!(open(Some(&a), "kid-2", &stored), Err(SealError::WrongKey));
        assert_eq!(open(None, "kid-1", &stored), Err(SealError::KeyNeeded));
        // Two seals of one key differ (a fresh nonce each time).
        assert_ne!(stored, seal(Some(&a), "kid-1", b"private"));
    }

    #[test]
    fn plain_keys_are_read_only_without_an_encryption_key() {
        let stored = seal(None, "kid-1", b"private");
        assert!(!is_sealed(&stored));
        assert_eq!(&open(None, "kid-1", &stored).unwrap()[..], b"private");
        assert_eq!(
            open(Some(&kek(1)), "kid-1", &stored),
            Err(SealError::NotSealed)
        );
        assert_eq!(&open_plain(&stored).unwrap()[..], b"private");
        assert_eq!(open(None, "kid-1", "rot13:abc"), Err(SealError::Malformed));
    }

    #[test]
    fn the_encryption_key_is_32_bytes_in_base64_or_hex() {
        assert!(KeyEncryptionKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(KeyEncryptionKey::parse(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
        assert!(KeyEncryptionKey::parse(&"ab".repeat(32)).is_ok());
        assert!(KeyEncryptionKey::parse(&STANDARD.encode([7u8; 16])).is_err());
        assert!(KeyEncryptionKey::parse("correct horse battery staple").is_err());
        assert!(!format!("{:?}", kek(9)).contains("9"));
    }
}
