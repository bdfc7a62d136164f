//! Where WebAuthn ceremony state waits between options and verify.
//!
//! The store holds a ceremony's state under a (user, ceremony) key, or, for
//! a passkey sign-in (no user yet), under the challenge itself, for a
//! bounded time; `take` removes the entry atomically, so each challenge
//! serves at most one verify attempt. The passkey service serializes the
//! webauthn-rs state and its expiry into opaque bytes, which every store
//! takes (Redis, for state shared across nodes, keeps nothing else); a
//! store in this process may also keep a step-up's state as the value
//! itself ([`Held::Value`]), which spares every step-up a JSON round trip.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use uuid::Uuid;

use super::redis::{unavailable, Redis};
use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ceremony {
    Registration,
    Authentication,
    /// A passkey sign-in: no user until the verify names one.
    SignIn,
}

impl Ceremony {
    pub fn as_str(self) -> &'static str {
        match self {
            Ceremony::Registration => "register",
            Ceremony::Authentication => "authenticate",
            Ceremony::SignIn => "signin",
        }
    }
}

/// A challenge belongs to one user and one kind of ceremony, or (a sign-in)
/// is found by the challenge itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChallengeKey {
    owner: Owner,
    pub ceremony: Ceremony,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Owner {
    User(Uuid),
    /// The challenge, base64url as in `clientDataJSON`.
    Challenge(String),
}

impl ChallengeKey {
    pub fn new(user_id: Uuid, ceremony: Ceremony) -> Self {
        ChallengeKey {
            owner: Owner::User(user_id),
            ceremony,
        }
    }

    /// The key of a sign-in ceremony: its challenge (base64url).
    pub fn sign_in(challenge: &str) -> Self {
        ChallengeKey {
            owner: Owner::Challenge(challenge.to_owned()),
            ceremony: Ceremony::SignIn,
        }
    }

    /// Bytes the key takes in memory (for the store's byte bound).
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + match &self.owner {
                Owner::User(_) => 0,
                Owner::Challenge(c) => c.len(),
            }
    }
}

impl std::fmt::Display for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.owner {
            Owner::User(user_id) => write!(f, "challenge:{}:{user_id}", self.ceremony.as_str()),
            Owner::Challenge(c) => write!(f, "challenge:{}:{c}", self.ceremony.as_str()),
        }
    }
}

/// A ceremony's state as a store keeps it.
#[derive(Clone)]
pub enum Held {
    /// Serialized: what every store takes.
    Bytes(Vec<u8>),
    /// The value itself, for a store that
    /// [holds values](ChallengeStore::holds_values), counted as `weight`
    /// bytes against the store's byte bound.
    Value {
        value: Arc<dyn Any + Send + Sync>,
        weight: usize,
    },
}

impl Held {
    /// The bytes the state counts as.
    fn weight(&self) -> usize {
        match self {
            Held::Bytes(bytes) => bytes.capacity(),
            Held::Value { weight, .. } => *weight,
        }
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Held::Value { weight, .. } => write!(f, "Value(weighed {weight} bytes)"),
        }
    }
}

#[async_trait]
pub trait ChallengeStore: Send + Sync {
    /// Stores `state` under `key`, replacing any earlier challenge for it.
    /// A [`Held::Value`] is refused by a store that does not
    /// [hold values](Self::holds_values).
    async fn put(&self, key: ChallengeKey, state: Held) -> Result<(), StoreError>;

    /// Removes and returns the state under `key`, if any.
    async fn take(&self, key: &ChallengeKey) -> Result<Option<Held>, StoreError>;

    /// Whether the store keeps a [`Held::Value`] as it is (a store in this
    /// process); one that does not takes bytes only.
    fn holds_values(&self) -> bool {
        false
    }

    /// Whether the store can be reached (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// What the store holds in this process, for the metrics; `None` for
    /// a store whose entries live elsewhere (Redis).
    fn usage(&self) -> Option<StoreUsage> {
        None
    }
}

/// Entries held, and the bytes counted against the store's byte bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    pub entries: u64,
    pub bytes: u64,
}

/// Bytes moka itself spends per entry, beyond key and value (its node,
/// the hash table slot, the frequency sketch), roughly.
const ENTRY_OVERHEAD: usize = 128;

/// The embedded default: an in-process moka cache, bounded in bytes, in
/// entries and in time, so a flood of options requests cannot grow memory
/// past `max_bytes`.
///
/// Each entry weighs its bytes, and at least `max_bytes / capacity`, so
/// the one weighted bound is both a byte bound and an entry bound. Past
/// nine tenths of it, new challenges are refused ([`StoreError::Full`], a
/// 503) rather than evicting the ones people are using; moka's own
/// eviction at the bound is the backstop.
pub struct MokaChallengeStore {
    cache: moka::sync::Cache<ChallengeKey, Held>,
    max_bytes: u64,
    refusals: RefusalLog,
}

/// Refusals of a full store, logged once per [`REFUSAL_LOG_EVERY`] with
/// their count, so that a flood of requests is not a flood of log lines.
#[derive(Default)]
struct RefusalLog {
    since_last_line: std::sync::atomic::AtomicU64,
    last_line: std::sync::Mutex<Option<std::time::Instant>>,
}

const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl RefusalLog {
    fn refused(&self, max_bytes: u64) {
        use std::sync::atomic::Ordering;
        let count = self.since_last_line.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
            *last = Some(std::time::Instant::now());
            self.since_last_line.store(0, Ordering::Relaxed);
            log::warn!(
                "challenge store full ({max_bytes} bytes, CHALLENGE_STORE_MAX_BYTES): {count} new ceremonies refused with 503 since the last such line"
            );
        }
    }
}

impl MokaChallengeStore {
    pub fn new(ttl: Duration, capacity: u64, max_bytes: u64) -> Self {
        let floor = (max_bytes / capacity.max(1)).max(1);
        MokaChallengeStore {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |key: &ChallengeKey, value: &Held| {
                    let bytes = (key.weight() + value.weight() + ENTRY_OVERHEAD) as u64;
                    u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            max_bytes,
            refusals: RefusalLog::default(),
        }
    }

    /// Entries currently held (after pending evictions run).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// The weight held, in bytes (after pending evictions run).
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ChallengeStore for MokaChallengeStore {
    async fn put(&self, key: ChallengeKey, state: Held) -> Result<(), StoreError> {
        // moka counts weight as it applies its pending writes, so they are
        // applied first: a figure a batch behind would admit challenges
        // that the bound then drops silently.
        self.cache.run_pending_tasks();
        if self.cache.weighted_size() >= self.max_bytes / 10 * 9 {
            self.refusals.refused(self.max_bytes);
            return Err(StoreError::Full);
        }
        self.cache.insert(key, state);
        Ok(())
    }

    async fn take(&self, key: &ChallengeKey) -> Result<Option<Held>, StoreError> {
        Ok(self.cache.remove(key))
    }

    fn holds_values(&self) -> bool {
        true
    }

    fn usage(&self) -> Option<StoreUsage> {
        Some(StoreUsage {
            entries: self.len(),
            bytes: self.weighted_bytes(),
        })
    }
}

/// Challenges under `PREFIXchallenge:CEREMONY:USER`, with a TTL set in
/// Redis; `GETDEL` makes each one single-use across all nodes.
pub struct RedisChallengeStore {
    redis: Redis,
    ttl: Duration,
}

impl RedisChallengeStore {
    pub fn new(redis: Redis, ttl: Duration) -> Self {
        RedisChallengeStore { redis, ttl }
    }
}

#[async_trait]
impl ChallengeStore for RedisChallengeStore {
    async fn put(&self, key: ChallengeKey, state: Held) -> Result<(), StoreError> {
        let Held::Bytes(state) = state else {
            return Err(StoreError::Unavailable(
                "Redis keeps ceremony state as bytes only".to_owned(),
            ));
        };
        let mut conn = self.redis.conn.clone();
        let ttl_ms = self.ttl.as_millis().max(1) as u64;
        conn.pset_ex::<_, _, ()>(self.redis.key(&key), state, ttl_ms)
            .await
            .map_err(unavailable)
    }

    async fn take(&self, key: &ChallengeKey) -> Result<Option<Held>, StoreError> {
        let mut conn = self.redis.conn.clone();
        let bytes: Option<Vec<u8>> = conn
            .get_del(self.redis.key(key))
            .await
            .map_err(unavailable)?;
        Ok(bytes.map(Held::Bytes))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ceremony: Ceremony) -> ChallengeKey {
        ChallengeKey::new(Uuid::nil(), ceremony)
    }

    fn bytes(b: &[u8]) -> Held {
        Held::Bytes(b.to_vec())
    }

    /// The bytes of a state taken, if one was there.
    fn taken(held: Option<Held>) -> Option<Vec<u8>> {
        held.map(|held| match held {
            Held::Bytes(bytes) => bytes,
            Held::Value { .. } => panic!("a value where bytes were stored"),
        })
    }

    #[actix_web::test]
    async fn take_is_single_use_and_per_ceremony() {
        let store = MokaChallengeStore::new(Duration::from_secs(60), 100, 1 << 20);
        store
            .put(key(Ceremony::Registration), bytes(b"reg"))
            .await
            .unwrap();
        assert_eq!(
            taken(store.take(&key(Ceremony::Authentication)).await.unwrap()),
            None
        );
        assert_eq!(
            taken(store.take(&key(Ceremony::Registration)).await.unwrap()),
            Some(b"reg".to_vec())
        );
        assert_eq!(
            taken(store.take(&key(Ceremony::Registration)).await.unwrap()),
            None
        );
    }

    #[actix_web::test]
    async fn a_new_challenge_replaces_the_old_one() {
        let store = MokaChallengeStore::new(Duration::from_secs(60), 100, 1 << 20);
        let k = key(Ceremony::Authentication);
        store.put(k.clone(), bytes(b"first")).await.unwrap();
        store.put(k.clone(), bytes(b"second")).await.unwrap();
        assert_eq!(
            taken(store.take(&k).await.unwrap()),
            Some(b"second".to_vec())
        );
    }

    #[actix_web::test]
    async fn capacity_bounds_the_entries() {
        let store = MokaChallengeStore::new(Duration::from_secs(60), 50, 1 << 20);
        for _ in 0..1_000 {
            let k = ChallengeKey::new(Uuid::new_v4(), Ceremony::Registration);
            let _ = store.put(k, Held::Bytes(vec![0; 16])).await;
        }
        assert!(store.len() <= 50, "{} entries", store.len());
    }

    #[actix_web::test]
    async fn bytes_bound_the_store_and_a_full_store_refuses() {
        let max = 256 * 1024;
        let store = MokaChallengeStore::new(Duration::from_secs(60), 1_000_000, max);
        let mut refused = 0;
        for i in 0..2_000 {
            let k = ChallengeKey::sign_in(&format!("challenge-{i}"));
            if let Err(StoreError::Full) = store.put(k, Held::Bytes(vec![0; 1024])).await {
                refused += 1;
            }
        }
        assert!(
            store.weighted_bytes() <= max,
            "{} bytes",
            store.weighted_bytes()
        );
        assert!(refused > 1_000, "only {refused} refused");
        // What was admitted is still there to be taken.
        assert_eq!(
            taken(
                store
                    .take(&ChallengeKey::sign_in("challenge-0"))
                    .await
                    .unwrap()
            )
            .map(|v| v.len()),
            Some(1024)
        );
    }

    #[actix_web::test]
    async fn a_value_comes_back_as_it_was_kept_and_counts_its_weight() {
        let max = 256 * 1024;
        let store = MokaChallengeStore::new(Duration::from_secs(60), 1_000_000, max);
        assert!(store.holds_values());
        let value: Arc<dyn Any + Send + Sync> = Arc::new(String::from("state"));
        let k = key(Ceremony::Authentication);
        let held = Held::Value {
            value: value.clone(),
            weight: 4096,
        };
        store.put(k.clone(), held).await.unwrap();
        assert!(store.weighted_bytes() >= 4096, "{}", store.weighted_bytes());
        match store.take(&k).await.unwrap() {
            Some(Held::Value { value: back, .. }) => assert!(Arc::ptr_eq(&back, &value)),
            other => panic!("{other:?}"),
        }
        // The weight, not the value's own size, fills the store.
        let mut refused = 0;
        for i in 0..200 {
            let k = ChallengeKey::sign_in(&format!("value-{i}"));
            let held = Held::Value {
                value: value.clone(),
                weight: 4096,
            };
            if let Err(StoreError::Full) = store.put(k, held).await {
                refused += 1;
            }
        }
        assert!(store.weighted_bytes() <= max);
        assert!(refused > 100, "only {refused} refused");
    }

    #[test]
    fn keys_print_without_ambiguity() {
        let k = ChallengeKey::new(Uuid::nil(), Ceremony::Authentication);
        assert_eq!(
            k.to_string(),
            "challenge:authenticate:00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            ChallengeKey::sign_in("q9A_x").to_string(),
            "challenge:signin:q9A_x"
        );
    }
}
