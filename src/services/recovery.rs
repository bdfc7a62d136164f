//! Recovery codes: ten single-use codes that stand in for a passkey.
//!
//! A code is 10 characters of Crockford's base32 alphabet (50 random bits),
//! shown as `k7m2q-9xw4d`, and accepted in any case, with spaces or
//! hyphens anywhere (and `o`, `i`, `l` read as `0`, `1`, `1`, as Crockford
//! intends). Only Argon2id PHC strings are stored. All codes of one set share
//! one random salt, so checking a code costs one hash whatever the set's
//! size, and spending it is a conditional delete of the row holding exactly
//! that hash: two concurrent uses of one code cannot both succeed.
//!
//! Offline, an attacker holding the database must still guess 50 random bits
//! through Argon2id (m = 8 MiB, t = 1): about 2^46 hashes on average to find
//! one of ten codes, some hundred thousand core-years.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use rand::Rng;
use uuid::Uuid;

use super::audit::{Audit, EventKind};
use super::hashing::HashingPool;
use super::passwords::{hash_phc, recompute};
use super::ServiceError;
use crate::clock::Clock;
use crate::domain::ClientInfo;
use crate::repositories::recovery_codes::{CodeSet, Replaced};
use crate::repositories::sessions::{Ended, SessionEnding};
use crate::repositories::{RecoveryCodeRecord, RecoveryCodeRepository};

/// Codes in one set.
pub const CODES_PER_SET: usize = 10;

/// Characters of a code, without grouping.
const CODE_LEN: usize = 10;

/// Crockford's base32: no `i`, `l`, `o`, `u`.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Argon2id parameters for codes: 50 random bits need far less work per
/// guess than a person's password to be out of reach.
const MEMORY_KIB: u32 = 8_192;
const ITERATIONS: u32 = 1;

/// A well-formed code, normalised (lowercase, ungrouped). `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

impl RecoveryCode {
    fn generate(rng: &mut impl Rng) -> Self {
        let code = (0..CODE_LEN)
            .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
            .collect();
        RecoveryCode(code)
    }

    /// Reads what a person typed; `None` if it cannot be a code.
    pub fn parse(input: &str) -> Option<Self> {
        if input.len() > 64 {
            return None;
        }
        let mut code = String::with_capacity(CODE_LEN);
        for c in input.chars() {
            let c = match c.to_ascii_lowercase() {
                ' ' | '-' | '\t' => continue,
                'o' => '0',
                'i' | 'l' => '1',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return None,
            };
            code.push(c);
        }
        (code.len() == CODE_LEN).then_some(RecoveryCode(code))
    }

    /// The form shown to people: two groups of five.
    pub fn grouped(&self) -> String {
        format!("{}-{}", &self.0[..5], &self.0[5..])
    }
}

/// Makes and checks code hashes, on the hashing pool.
#[derive(Clone)]
pub struct RecoveryCodeHasher {
    pool: HashingPool,
}

/// A new set: the codes to show once, and the hashes to store.
pub struct NewCodeSet {
    pub codes: Vec<RecoveryCode>,
    pub hashes: Vec<String>,
}

impl RecoveryCodeHasher {
    pub fn new(pool: HashingPool) -> Self {
        RecoveryCodeHasher { pool }
    }

    /// Ten fresh codes and their hashes under one new salt.
    pub async fn new_set(&self) -> Result<NewCodeSet, ServiceError> {
        let mut rng = rand::rngs::OsRng;
        let codes: Vec<RecoveryCode> = (0..CODES_PER_SET)
            .map(|_| RecoveryCode::generate(&mut rng))
            .collect();
        let salt = SaltString::generate(&mut rng);
        let to_hash = codes.clone();
        let hashes = self
            .pool
            .run(move || {
                let params =
                    Params::new(MEMORY_KIB, ITERATIONS, 1, None).map_err(|e| e.to_string())?;
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                to_hash
                    .iter()
                    .map(|code| {
                        hash_phc(&argon2, &params, code.0.as_bytes(), salt.as_salt())
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .await
            .map_err(ServiceError::internal)?
            .map_err(ServiceError::internal)?;
        Ok(NewCodeSet { codes, hashes })
    }

    /// The hash `code` would have in the set that `stored` (any hash of
    /// that set) belongs to; `None` if `stored` is unreadable.
    pub async fn hash_like(
        &self,
        code: RecoveryCode,
        stored: String,
    ) -> Result<Option<String>, ServiceError> {
        self.pool
            .run(move || {
                let phc = PasswordHash::new(&stored).ok()?;
                let output = recompute(code.0.as_bytes(), &phc).ok()?;
                let mut recomputed = phc.clone();
                recomputed.hash = Some(output);
                Some(recomputed.to_string())
            })
            .await
            .map_err(ServiceError::internal)
    }
}

/// Codes just issued, to show once.
#[derive(Debug, Clone)]
pub struct IssuedCodes {
    pub codes: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// The account's recovery codes: issue, replace, spend, count.
#[derive(Clone)]
pub struct RecoveryCodes {
    pub hasher: RecoveryCodeHasher,
    pub repo: RecoveryCodeRepository,
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
}

impl RecoveryCodes {
    /// A new set for `user_id`: the rows to store, with their event, and the
    /// codes to show.
    pub async fn new_set(
        &self,
        user_id: Uuid,
        client: &ClientInfo,
    ) -> Result<(CodeSet, Vec<String>), ServiceError> {
        let set = self.hasher.new_set().await?;
        let now = self.clock.now().naive_utc();
        let records = set
            .hashes
            .into_iter()
            .map(|code_hash| RecoveryCodeRecord {
                id: Uuid::new_v4().to_string(),
                user_id: user_id.to_string(),
                code_hash,
                created_at: now,
            })
            .collect();
        let event = self
            .audit
            .event(EventKind::RecoveryCodesIssued, Some(user_id), client, None);
        let shown = set.codes.iter().map(RecoveryCode::grouped).collect();
        Ok((CodeSet { records, event }, shown))
    }

    /// Replaces the account's codes; the old ones stop working at once.
    pub async fn replace(
        &self,
        user_id: Uuid,
        client: &ClientInfo,
    ) -> Result<IssuedCodes, ServiceError> {
        let (set, codes) = self.new_set(user_id, client).await?;
        let event = set.event.clone();
        let now = self.clock.now();
        match self
            .repo
            .replace(user_id.to_string(), set, now.naive_utc())
            .await?
        {
            Replaced::Done => {
                self.audit.log(&event);
                Ok(IssuedCodes {
                    codes,
                    created_at: now,
                })
            }
            Replaced::NoPasskeys => Err(ServiceError::NoPasskeys),
            Replaced::UserGone => Err(ServiceError::UnknownUser),
        }
    }

    /// Spends the code `input` names, if it is one of the account's unused
    /// codes, ending the sessions `ending` names with it; returns their
    /// ids. A wrong, spent or malformed code is recorded and refused.
    pub async fn spend(
        &self,
        user_id: Uuid,
        input: &str,
        client: &ClientInfo,
        ending: SessionEnding,
    ) -> Result<Ended, ServiceError> {
        if let Some(ended) = self.try_spend(user_id, input, client, ending).await? {
            return Ok(ended);
        }
        self.audit
            .record(EventKind::RecoveryCodeFailed, Some(user_id), client, None)
            .await?;
        Err(ServiceError::InvalidRecoveryCode)
    }

    /// The sessions ended if `input` was an unused code of the account, now
    /// spent; `None` if it was not.
    async fn try_spend(
        &self,
        user_id: Uuid,
        input: &str,
        client: &ClientInfo,
        ending: SessionEnding,
    ) -> Result<Option<Ended>, ServiceError> {
        let Some(code) = RecoveryCode::parse(input) else {
            return Ok(None);
        };
        let Some(sample) = self.repo.sample_hash(user_id.to_string()).await? else {
            return Ok(None);
        };
        let Some(code_hash) = self.hasher.hash_like(code, sample).await? else {
            return Ok(None);
        };
        let event = self
            .audit
            .event(EventKind::RecoveryCodeUsed, Some(user_id), client, None);
        let ended = self
            .repo
            .spend(user_id.to_string(), code_hash, event.clone(), ending)
            .await?;
        if ended.is_some() {
            self.audit.log(&event);
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_ten_alphabet_characters_shown_in_two_groups() {
        let mut rng = rand::thread_rng();
        let code = RecoveryCode::generate(&mut rng);
        assert_eq!(code.0.len(), 10);
        assert!(code.0.bytes().all(|b| ALPHABET.contains(&b)));
        let shown = code.grouped();
        assert_eq!(shown.len(), 11);
        assert_eq!(&shown[5..6], "-");
        assert_eq!(RecoveryCode::parse(&shown), Some(code));
    }

    #[test]
    fn input_is_normalised_for_case_spaces_hyphens_and_look_alikes() {
        let want = RecoveryCode::parse("k7m2q9xw4d").unwrap();
        for typed in [
            "k7m2q-9xw4d",
            "K7M2Q-9XW4D",
            " k7m2q 9xw4d ",
            "k7-m2-q9-xw-4d",
            "k7m2q\t9xw4d",
        ] {
            assert_eq!(RecoveryCode::parse(typed).as_ref(), Some(&want), "{typed}");
        }
        assert_eq!(
            RecoveryCode::parse("1o0il-abcde"),
            RecoveryCode::parse("10011-abcde")
        );
    }

    #[test]
    fn strings_that_cannot_be_codes_are_refused() {
        for bad in [
            "",
            "k7m2q",
            "k7m2q-9xw4d-1",
            "k7m2q-9xw4u",
            "k7m2q_9xw4d",
            "ķ7m2q-9xw4d",
            &"-".repeat(65),
            "k7m2q-9xw4d\0",
        ] {
            assert!(RecoveryCode::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_code() {
        let code = RecoveryCode::parse("k7m2q-9xw4d").unwrap();
        assert!(!format!("{code:?}").contains("k7m2q"));
    }

    #[actix_web::test]
    async fn a_set_shares_one_salt_and_each_code_rehashes_to_its_own_hash() {
        let hasher = RecoveryCodeHasher::new(HashingPool::new(1).unwrap());
        let set = hasher.new_set().await.unwrap();
        assert_eq!(set.codes.len(), CODES_PER_SET);
        assert_eq!(set.hashes.len(), CODES_PER_SET);
        let salt = |phc: &str| PasswordHash::new(phc).unwrap().salt.unwrap().to_string();
        assert!(set.hashes.iter().all(|h| salt(h) == salt(&set.hashes[0])));
        assert!(set.hashes[0].starts_with("$argon2id$v=19$m=8192,t=1,p=1$"));
        for (code, hash) in set.codes.iter().zip(&set.hashes) {
            let again = hasher
                .hash_like(code.clone(), set.hashes[0].clone())
                .await
                .unwrap();
            assert_eq!(again.as_ref(), Some(hash));
        }
        let stranger = RecoveryCode::parse("00000-00000").unwrap();
        let guess = hasher
            .hash_like(stranger, set.hashes[0].clone())
            .await
            .unwrap()
            .unwrap();
        assert!(!set.hashes.contains(&guess));
        assert_eq!(
            hasher
                .hash_like(set.codes[0].clone(), "garbage".into())
                .await
                .unwrap(),
            None
        );
    }
}
