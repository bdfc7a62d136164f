//! The keys access tokens are signed with, kept in the `signing_keys` table
//! so that tokens survive restarts and every node signs with the same key.
//!
//! - The first start creates a key (EdDSA by default); nodes starting
//!   together create exactly one (the table's generation is unique).
//! - A rotation publishes a new key at once and lets it sign only after
//!   `KEY_ACTIVATION_DELAY_SECS`, so every verifier's JWKS cache has seen it
//!   first. The key it replaces is retired at that moment and stays
//!   published for the longest token lifetime after, until the last token
//!   it signed has expired.
//! - Which key signs is decided by time, from the rows: every node switches
//!   at the same moment. Nodes re-read the table every `KEY_POLL_SECS`, so a
//!   rotation made anywhere (`passkey-auth keys rotate`) reaches them well
//!   within the activation delay, without a restart.
//! - Verification picks the key by the token's `kid` and pins its
//!   algorithm, through the guard crate's [`TokenVerifier`], the same code
//!   other services run.

pub mod material;
pub mod sealing;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, NaiveDateTime, Utc};
use passkey_auth_guard::{
    JwkSet, KeyAlgorithm, KeySet, Principal, PublicJwk, TokenError, TokenVerifier,
};
use serde::Serialize;

use crate::clock::Clock;
use crate::repositories::{RepoError, SigningKeyRecord, SigningKeyRepository};
pub use material::KeyMaterial;
pub use sealing::KeyEncryptionKey;

/// How keys are made and how long they are kept.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// The algorithm of keys created from now on.
    pub algorithm: KeyAlgorithm,
    /// How long a rotated-in key is published before it signs.
    pub activation_delay: Duration,
    /// The longest access-token lifetime: how long a retired key stays
    /// published.
    pub token_ttl: Duration,
    /// Seals private keys at rest when set.
    pub encryption: Option<KeyEncryptionKey>,
}

impl KeyPolicy {
    /// The `max-age` of the JWKS: well under the activation delay, so a
    /// verifier's cache sees a new key before it signs.
    pub fn jwks_max_age(&self) -> Duration {
        (self.activation_delay / 2).min(Duration::from_secs(300))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("signing key {kid} cannot be used: {reason}")]
    Unreadable { kid: String, reason: String },
    #[error("no signing key could be created or read")]
    NoKey,
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A key as read from its row.
#[derive(Debug)]
pub struct LoadedKey {
    pub material: KeyMaterial,
    pub generation: i64,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    pub sealed: bool,
}

impl LoadedKey {
    fn published_until(&self, ttl: Duration) -> Option<i64> {
        self.retired_at.map(|at| at + ttl.as_millis() as i64)
    }

    fn is_published(&self, now: i64, ttl: Duration) -> bool {
        self.published_until(ttl).is_none_or(|until| now < until)
    }
}

/// The JWKS answer, with its `ETag`.
#[derive(Debug, Clone)]
pub struct JwksDocument {
    pub body: Vec<u8>,
    pub etag: String,
}

/// What one key is doing, for `passkey-auth keys list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    pub kid: String,
    pub algorithm: String,
    pub generation: i64,
    /// `pending` (published, not signing yet), `active` (signing),
    /// `retired` (published, no longer signing) or `unpublished`.
    pub state: &'static str,
    pub created_at: DateTime<Utc>,
    pub activates_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub published_until: Option<DateTime<Utc>>,
    pub encrypted: bool,
}

/// The loaded keys and what follows from them at one moment.
struct KeyRing {
    keys: Vec<Arc<LoadedKey>>,
    verifying: KeySet,
    jwks: Arc<JwksDocument>,
    /// When a retired key leaves the published set next (milliseconds).
    changes_at: Option<i64>,
}

impl KeyRing {
    fn build(keys: Vec<Arc<LoadedKey>>, now: i64, ttl: Duration) -> Self {
        let published: Vec<PublicJwk> = keys
            .iter()
            .filter(|k| k.is_published(now, ttl))
            .map(|k| k.material.public_jwk().clone())
            .collect();
        let changes_at = keys
            .iter()
            .filter_map(|k| k.published_until(ttl))
            .filter(|until| *until > now)
            .min();
        let body = serde_json::to_vec(&JwkSet {
            keys: published.clone(),
        })
        .unwrap_or_default();
        let etag = format!("\"{}\"", super::sha256_hex(&body, 12));
        KeyRing {
            verifying: KeySet::from_jwks(&published),
            jwks: Arc::new(JwksDocument { body, etag }),
            keys,
            changes_at,
        }
    }

    /// The key that signs at `now`: the newest one already active.
    fn signer(&self, now: i64) -> Option<&LoadedKey> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.activates_at <= now)
            .or_else(|| self.keys.first())
            .map(Arc::as_ref)
    }

    /// What identifies the rows' content (a reload that changes none of it
    /// keeps the ring).
    fn fingerprint(&self) -> Vec<(String, i64, Option<i64>)> {
        self.keys
            .iter()
            .map(|k| (k.material.kid().to_owned(), k.activates_at, k.retired_at))
            .collect()
    }
}

fn millis(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp_millis()
}

fn utc(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

pub struct SigningKeys {
    /// `None` for a fixed key kept nowhere (unit tests).
    repo: Option<SigningKeyRepository>,
    policy: KeyPolicy,
    clock: Arc<dyn Clock>,
    ring: ArcSwap<KeyRing>,
    verifier: TokenVerifier,
}

impl SigningKeys {
    /// Reads the keys, creating the first one when there is none, and
    /// sealing keys stored unencrypted when an encryption key is set.
    pub async fn start(
        repo: SigningKeyRepository,
        policy: KeyPolicy,
        clock: Arc<dyn Clock>,
        verifier: TokenVerifier,
    ) -> Result<Self, SigningKeyError> {
        let mut rows = repo.all().await?;
        if rows.is_empty() {
            let material = KeyMaterial::generate(policy.algorithm);
            let now = clock.now().naive_utc();
            let record = record_for(&material, &policy, now, now)?;
            match repo.add_first(record).await {
                Ok(()) => log::info!(
                    "created the first signing key {} ({})",
                    material.kid(),
                    material.algorithm()
                ),
                // Another node created it a moment ago: use theirs.
                Err(RepoError::AlreadyExists) => {}
                Err(err) => return Err(err.into()),
            }
            rows = repo.all().await?;
        }
        if let Some(kek) = &policy.encryption {
            if seal_plain_rows(&repo, kek, &rows).await? {
                rows = repo.all().await?;
            }
        }
        let keys = load_all(&rows, &policy)?;
        if keys.is_empty() {
            return Err(SigningKeyError::NoKey);
        }
        let now = clock.now().timestamp_millis();
        let ring = KeyRing::build(keys, now, policy.token_ttl);
        Ok(SigningKeys {
            repo: Some(repo),
            ring: ArcSwap::from_pointee(ring),
            policy,
            clock,
            verifier,
        })
    }

    /// One key, kept nowhere: for tests of what is built on the keys.
    pub fn fixed(
        material: KeyMaterial,
        policy: KeyPolicy,
        clock: Arc<dyn Clock>,
        verifier: TokenVerifier,
    ) -> Self {
        let key = LoadedKey {
            material,
            generation: 1,
            created_at: 0,
            activates_at: 0,
            retired_at: None,
            sealed: false,
        };
        let ring = KeyRing::build(vec![Arc::new(key)], 0, policy.token_ttl);
        SigningKeys {
            repo: None,
            ring: ArcSwap::from_pointee(ring),
            policy,
            clock,
            verifier,
        }
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// The ring as it stands at `now`: rebuilt (without the database) when
    /// a retired key has left the published set since it was built.
    fn ring(&self, now: i64) -> Arc<KeyRing> {
        let ring = self.ring.load_full();
        if ring.changes_at.is_some_and(|at| now >= at) {
            let rebuilt = Arc::new(KeyRing::build(
                ring.keys.clone(),
                now,
                self.policy.token_ttl,
            ));
            self.ring.store(rebuilt.clone());
            return rebuilt;
        }
        ring
    }

    /// Re-reads the table; `true` when the keys changed. A row that cannot
    /// be read leaves the keys as they were.
    pub async fn reload(&self) -> Result<bool, SigningKeyError> {
        let Some(repo) = &self.repo else {
            return Ok(false);
        };
        let rows = repo.all().await?;
        let keys = load_all(&rows, &self.policy)?;
        let now = self.clock.now().timestamp_millis();
        let ring = KeyRing::build(keys, now, self.policy.token_ttl);
        let current = self.ring.load();
        if ring.fingerprint() == current.fingerprint() {
            return Ok(false);
        }
        self.ring.store(Arc::new(ring));
        Ok(true)
    }

    /// Re-reads the table every `every`, for as long as the server runs.
    pub async fn run_background(self: Arc<Self>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match self.reload().await {
                Ok(true) => log::info!("signing keys changed: {}", self.describe()),
                Ok(false) => {}
                Err(err) => log::error!("signing keys not re-read: {err}"),
            }
        }
    }

    /// `kid (state), …` of every key, for the log.
    pub fn describe(&self) -> String {
        self.list()
            .iter()
            .map(|k| format!("{} {} ({})", k.kid, k.algorithm, k.state))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A compact JWS of `claims`, signed with the key active at `now`.
    pub fn sign<T: Serialize>(
        &self,
        claims: &T,
        now: DateTime<Utc>,
    ) -> Result<String, SigningKeyError> {
        let ring = self.ring(now.timestamp_millis());
        let signer = ring
            .signer(now.timestamp_millis())
            .ok_or(SigningKeyError::NoKey)?;
        signer
            .material
            .sign(claims)
            .map_err(|e| SigningKeyError::Unreadable {
                kid: signer.material.kid().to_owned(),
                reason: e.to_string(),
            })
    }

    /// The caller a token describes, if a published key signed it and it
    /// is valid at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Principal, TokenError> {
        let ring = self.ring(now.timestamp_millis());
        self.verifier
            .verify(&ring.verifying, token, now.timestamp())
    }

    /// The published public keys.
    pub fn jwks(&self) -> Arc<JwksDocument> {
        self.ring(self.clock.now().timestamp_millis()).jwks.clone()
    }

    /// Every key and what it is doing now.
    pub fn list(&self) -> Vec<KeySummary> {
        let now = self.clock.now().timestamp_millis();
        let ring = self.ring(now);
        let signer = ring.signer(now).map(|k| k.generation);
        ring.keys
            .iter()
            .map(|k| KeySummary {
                kid: k.material.kid().to_owned(),
                algorithm: k.material.algorithm().to_string(),
                generation: k.generation,
                state: if Some(k.generation) == signer {
                    "active"
                } else if !k.is_published(now, self.policy.token_ttl) {
                    "unpublished"
                } else if k.activates_at > now {
                    "pending"
                } else {
                    "retired"
                },
                created_at: utc(k.created_at),
                activates_at: utc(k.activates_at),
                retired_at: k.retired_at.map(utc),
                published_until: k.published_until(self.policy.token_ttl).map(utc),
                encrypted: k.sealed,
            })
            .collect()
    }

    /// Publishes a new key that signs after the activation delay; the
    /// current one retires then. Returns the new key.
    pub async fn rotate(&self) -> Result<KeySummary, SigningKeyError> {
        let material = KeyMaterial::generate(self.policy.algorithm);
        let now = self.clock.now().naive_utc();
        let activates_at =
            now + chrono::Duration::from_std(self.policy.activation_delay).unwrap_or_default();
        let kid = material.kid().to_owned();
        let record = record_for(&material, &self.policy, now, activates_at)?;
        let repo = self.repo.as_ref().ok_or(SigningKeyError::NoKey)?;
        repo.add_next(record).await?;
        self.reload().await?;
        self.list()
            .into_iter()
            .find(|k| k.kid == kid)
            .ok_or(SigningKeyError::NoKey)
    }
}

/// The row of a new key.
fn record_for(
    material: &KeyMaterial,
    policy: &KeyPolicy,
    now: NaiveDateTime,
    activates_at: NaiveDateTime,
) -> Result<SigningKeyRecord, SigningKeyError> {
    let unreadable = |reason: String| SigningKeyError::Unreadable {
        kid: material.kid().to_owned(),
        reason,
    };
    let der = material.to_pkcs8().map_err(|e| unreadable(e.to_string()))?;
    Ok(SigningKeyRecord {
        kid: material.kid().to_owned(),
        generation: 0,
        algorithm: material.algorithm().to_string(),
        public_jwk: serde_json::to_string(material.public_jwk())
            .map_err(|e| unreadable(e.to_string()))?,
        private_key: sealing::seal(policy.encryption.as_ref(), material.kid(), &der),
        created_at: now,
        activates_at,
        retired_at: None,
    })
}

/// Seals the rows stored before an encryption key was set; `true` if any
/// was sealed.
async fn seal_plain_rows(
    repo: &SigningKeyRepository,
    kek: &KeyEncryptionKey,
    rows: &[SigningKeyRecord],
) -> Result<bool, SigningKeyError> {
    let mut sealed_any = false;
    for row in rows.iter().filter(|r| !sealing::is_sealed(&r.private_key)) {
        let Some(der) = sealing::open_plain(&row.private_key) else {
            continue;
        };
        let sealed = sealing::seal(Some(kek), &row.kid, &der);
        if repo
            .replace_private_key(row.kid.clone(), row.private_key.clone(), sealed)
            .await?
        {
            log::info!("signing key {} is now encrypted at rest", row.kid);
            sealed_any = true;
        }
    }
    Ok(sealed_any)
}

/// Reads every row; one that cannot be read is an error naming it.
fn load_all(
    rows: &[SigningKeyRecord],
    policy: &KeyPolicy,
) -> Result<Vec<Arc<LoadedKey>>, SigningKeyError> {
    rows.iter()
        .map(|row| load(row, policy).map(Arc::new))
        .collect()
}

fn load(row: &SigningKeyRecord, policy: &KeyPolicy) -> Result<LoadedKey, SigningKeyError> {
    let unreadable = |reason: &str| SigningKeyError::Unreadable {
        kid: row.kid.clone(),
        reason: reason.to_owned(),
    };
    let algorithm =
        KeyAlgorithm::parse(&row.algorithm).ok_or_else(|| unreadable("unknown algorithm"))?;
    let der = sealing::open(policy.encryption.as_ref(), &row.kid, &row.private_key)
        .map_err(|e| unreadable(&format!("its private key {e}")))?;
    let material =
        KeyMaterial::from_pkcs8(algorithm, &der).map_err(|e| unreadable(&e.to_string()))?;
    // The published half is derived from the private key; the stored JWK
    // must say the same, and so must the row's kid.
    let stored: PublicJwk = serde_json::from_str(&row.public_jwk)
        .map_err(|_| unreadable("its public JWK does not parse"))?;
    if material.kid() != row.kid || &stored != material.public_jwk() {
        return Err(unreadable(
            "its public JWK or kid does not match its private key",
        ));
    }
    Ok(LoadedKey {
        material,
        generation: row.generation,
        created_at: millis(row.created_at),
        activates_at: millis(row.activates_at),
        retired_at: row.retired_at.map(millis),
        sealed: sealing::is_sealed(&row.private_key),
    })
}
