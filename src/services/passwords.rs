//! Argon2id password hashing with OWASP's recommended parameters, stored as
//! PHC strings. Callers run these on the hashing pool (`super::hashing`).

use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use std::cell::RefCell;
use std::sync::Arc;

use argon2::password_hash::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;

use super::hashing::HashingPool;
use super::ServiceError;
use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1.
pub const OWASP_MEMORY_KIB: u32 = 19_456;
pub const OWASP_ITERATIONS: u32 = 2;
pub const OWASP_PARALLELISM: u32 = 1;

thread_local! {
    /// Argon2's working memory (19 MiB with the OWASP parameters), kept per
    /// hashing thread and reused: a fresh zeroed allocation per hash cost
    /// CPU, and the allocator kept the freed buffers resident anyway.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The raw Argon2 output for `password` and `salt`, computed in this
/// thread's reused memory.
fn compute(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: Salt<'_>,
    output_len: usize,
) -> argon2::password_hash::Result<Output> {
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let blocks = params.block_count();
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Output::init_with(output_len, |out| {
            Ok(
                argon2.hash_password_into_with_memory(
                    password,
                    salt,
                    out,
                    &mut memory[..blocks],
                )?,
            )
        })
    })
}

pub struct PasswordHasher {
    argon2: Argon2<'static>,
    params: Params,
    /// A hash of a random password: verified against when the user is
    /// unknown, so that path costs the same as a wrong password.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, argon2::Error> {
        let params = Params::new(memory_kib, iterations, parallelism, None)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy_hash = argon2
            .hash_password(&random, &salt)
            .map_err(|_| argon2::Error::OutputTooShort)?
            .to_string();
        Ok(PasswordHasher {
            argon2,
            params,
            dummy_hash,
        })
    }

    pub fn owasp() -> Result<Self, argon2::Error> {
        Self::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_PARALLELISM)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub fn hash(&self, password: &Password) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        hash_phc(
            &self.argon2,
            &self.params,
            password.expose().as_bytes(),
            salt.as_salt(),
        )
    }

    /// Checks `password` against `stored`, or against the dummy hash when
    /// there is no stored hash (unknown user), which always fails.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let (phc, known) = match stored {
            Some(phc) => (phc, true),
            None => (self.dummy_hash.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(phc) else {
            log::error!("stored password hash is not a valid PHC string");
            return false;
        };
        matches_phc(password.as_bytes(), &parsed) && known
    }
}

/// The Argon2id PHC string of `secret` with `salt`, in this thread's reused
/// memory. The same secret and salt always give the same string.
pub(crate) fn hash_phc(
    argon2: &Argon2<'_>,
    params: &Params,
    secret: &[u8],
    salt: Salt<'_>,
) -> argon2::password_hash::Result<String> {
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = compute(argon2, params, secret, salt, output_len)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Argon2's output for `secret` under the algorithm, version, parameters
/// and salt that `phc` names.
pub(crate) fn recompute(
    secret: &[u8],
    phc: &PasswordHash<'_>,
) -> argon2::password_hash::Result<Output> {
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return Err(argon2::password_hash::Error::PhcStringField);
    };
    let params = Params::try_from(phc)?;
    let algorithm = Algorithm::try_from(phc.algorithm)?;
    let version = phc
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let argon2 = Argon2::new(algorithm, version, params.clone());
    compute(&argon2, &params, secret, salt, expected.len())
}

/// Recomputes `phc` (with its own algorithm, version and parameters) for
/// `password` and compares; `Output`'s equality is constant-time.
fn matches_phc(password: &[u8], phc: &PasswordHash<'_>) -> bool {
    match (recompute(password, phc), phc.hash) {
        (Ok(computed), Some(expected)) => computed == expected,
        _ => false,
    }
}

/// The hasher and the pool it runs on: what the auth service uses.
#[derive(Clone)]
pub struct Passwords {
    pub hasher: Arc<PasswordHasher>,
    pub pool: HashingPool,
}

impl Passwords {
    pub async fn hash(&self, password: Password) -> Result<String, ServiceError> {
        let hasher = self.hasher.clone();
        self.pool
            .run(move || hasher.hash(&password))
            .await
            .map_err(ServiceError::internal)?
            .map_err(ServiceError::internal)
    }

    /// See [`PasswordHasher::verify`]; `stored` is `None` for an unknown user.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, ServiceError> {
        let hasher = self.hasher.clone();
        self.pool
            .run(move || hasher.verify(&password, stored.as_deref()))
            .await
            .map_err(ServiceError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    fn hasher() -> PasswordHasher {
        // Small parameters: these tests check behaviour, not cost.
        PasswordHasher::new(1024, 1, 1).unwrap()
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_with_unique_salts() {
        let h = hasher();
        let pw = Password::parse("correct horse".into()).unwrap();
        let a = h.hash(&pw).unwrap();
        let b = h.hash(&pw).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(h.verify("correct horse", Some(&a)));
        assert!(!h.verify("correct horsf", Some(&a)));
        assert!(!h.verify("correct horse ", Some(&a)));
    }

    #[test]
    fn owasp_parameters_are_the_default() {
        let h = PasswordHasher::owasp().unwrap();
        let hash = h
            .hash(&Password::parse("password123".into()).unwrap())
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
    }

    #[test]
    fn hashes_interoperate_with_the_stock_argon2_api() {
        let h = hasher();
        let ours = h
            .hash(&Password::parse("interop pass".into()).unwrap())
            .unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        let stock = Argon2::default();
        assert!(stock.verify_password(b"interop pass", &parsed).is_ok());
        assert!(stock.verify_password(b"interop pasS", &parsed).is_err());

        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 2, 1, None).unwrap(),
        )
        .hash_password(b"stock pass", &salt)
        .unwrap()
        .to_string();
        assert!(h.verify("stock pass", Some(&theirs)));
        assert!(!h.verify("stock pasS", Some(&theirs)));
    }

    #[test]
    fn unknown_user_never_verifies() {
        let h = hasher();
        assert!(!h.verify("anything at all", None));
        assert!(!h.verify("", None));
    }

    #[test]
    fn corrupt_stored_hash_fails_closed() {
        assert!(!hasher().verify("password123", Some("not-a-phc-string")));
    }
}
