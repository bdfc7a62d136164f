//! Argon2id password hashing with OWASP's recommended parameters, stored as
//! PHC strings. Callers run these on the blocking pool.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use super::hashing::HashingPool;
use super::ServiceError;
use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1.
pub const OWASP_MEMORY_KIB: u32 = 19_456;
pub const OWASP_ITERATIONS: u32 = 2;
pub const OWASP_PARALLELISM: u32 = 1;

pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// A hash of a random password: verified against when the user is
    /// unknown, so that path costs the same as a wrong password.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, argon2::Error> {
        let params = Params::new(memory_kib, iterations, parallelism, None)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy_hash = argon2
            .hash_password(&random, &salt)
            .map_err(|_| argon2::Error::OutputTooShort)?
            .to_string();
        Ok(PasswordHasher { argon2, dummy_hash })
    }

    pub fn owasp() -> Result<Self, argon2::Error> {
        Self::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_PARALLELISM)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub fn hash(&self, password: &Password) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Ok(self
            .argon2
            .hash_password(password.expose().as_bytes(), &salt)?
            .to_string())
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
        // The comparison inside verify_password is constant-time.
        let matches = self
            .argon2
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matches && known
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
