//! Where WebAuthn ceremony state waits between options and verify.
//!
//! The store holds opaque bytes under a (user, ceremony) key for a bounded
//! time; `take` removes the entry atomically, so each challenge serves at most
//! one verify attempt. The passkey service serializes the webauthn-rs state
//! and its expiry into those bytes, so another store (Redis, for state shared
//! across nodes) can be added without touching the service.

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
}

impl Ceremony {
    pub fn as_str(self) -> &'static str {
        match self {
            Ceremony::Registration => "register",
            Ceremony::Authentication => "authenticate",
        }
    }
}

/// A challenge belongs to one user and one kind of ceremony.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChallengeKey {
    pub user_id: Uuid,
    pub ceremony: Ceremony,
}

impl ChallengeKey {
    pub fn new(user_id: Uuid, ceremony: Ceremony) -> Self {
        ChallengeKey { user_id, ceremony }
    }
}

impl std::fmt::Display for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "challenge:{}:{}", self.ceremony.as_str(), self.user_id)
    }
}

#[async_trait]
pub trait ChallengeStore: Send + Sync {
    /// Stores `state` under `key`, replacing any earlier challenge for it.
    async fn put(&self, key: ChallengeKey, state: Vec<u8>) -> Result<(), StoreError>;

    /// Removes and returns the state under `key`, if any.
    async fn take(&self, key: &ChallengeKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Whether the store can be reached (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The embedded default: an in-process moka cache, bounded in entries and
/// time, so a flood of options requests cannot grow memory without limit.
pub struct MokaChallengeStore {
    cache: moka::sync::Cache<ChallengeKey, Vec<u8>>,
}

impl MokaChallengeStore {
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        MokaChallengeStore {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Entries currently held (after pending evictions run).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ChallengeStore for MokaChallengeStore {
    async fn put(&self, key: ChallengeKey, state: Vec<u8>) -> Result<(), StoreError> {
        self.cache.insert(key, state);
        Ok(())
    }

    async fn take(&self, key: &ChallengeKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.cache.remove(key))
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
    async fn put(&self, key: ChallengeKey, state: Vec<u8>) -> Result<(), StoreError> {
        let mut conn = self.redis.conn.clone();
        let ttl_ms = self.ttl.as_millis().max(1) as u64;
        conn.pset_ex::<_, _, ()>(self.redis.key(key), state, ttl_ms)
            .await
            .map_err(unavailable)
    }

    async fn take(&self, key: &ChallengeKey) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.redis.conn.clone();
        conn.get_del(self.redis.key(key)).await.map_err(unavailable)
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

    #[actix_web::test]
    async fn take_is_single_use_and_per_ceremony() {
        let store = MokaChallengeStore::new(Duration::from_secs(60), 100);
        store
            .put(key(Ceremony::Registration), b"reg".to_vec())
            .await
            .unwrap();
        assert_eq!(
            store.take(&key(Ceremony::Authentication)).await.unwrap(),
            None
        );
        assert_eq!(
            store.take(&key(Ceremony::Registration)).await.unwrap(),
            Some(b"reg".to_vec())
        );
        assert_eq!(
            store.take(&key(Ceremony::Registration)).await.unwrap(),
            None
        );
    }

    #[actix_web::test]
    async fn a_new_challenge_replaces_the_old_one() {
        let store = MokaChallengeStore::new(Duration::from_secs(60), 100);
        let k = key(Ceremony::Authentication);
        store.put(k, b"first".to_vec()).await.unwrap();
        store.put(k, b"second".to_vec()).await.unwrap();
        assert_eq!(store.take(&k).await.unwrap(), Some(b"second".to_vec()));
    }

    #[actix_web::test]
    async fn capacity_bounds_the_entries() {
        let store = MokaChallengeStore::new(Duration::from_secs(60), 50);
        for _ in 0..1_000 {
            let k = ChallengeKey::new(Uuid::new_v4(), Ceremony::Registration);
            store.put(k, vec![0; 16]).await.unwrap();
        }
        assert!(store.len() <= 50, "{} entries", store.len());
    }

    #[test]
    fn keys_print_without_ambiguity() {
        let k = ChallengeKey::new(Uuid::nil(), Ceremony::Authentication);
        assert_eq!(
            k.to_string(),
            "challenge:authenticate:00000000-0000-0000-0000-000000000000"
        );
    }
}
