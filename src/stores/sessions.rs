//! Ended sessions, as every guarded request checks them: an in-memory set,
//! so the check costs a hash lookup and no I/O.
//!
//! The database is the record (`sessions.ended_at`); this store is how a
//! node knows at once. In process, an ending is known to this node the
//! moment it happens. With Redis, the node that ends a session also
//! publishes its id, and every node's listener adds it to its own set
//! within milliseconds; what a node misses while Redis is away it learns
//! from the database, which the session service re-reads every few seconds
//! and whenever the listener reconnects. An ending that cannot be published
//! (Redis away) still counts: the database holds it and the re-read
//! carries it.
//!
//! An id is kept as long as a token carrying it may live (the longest
//! access-token lifetime), then forgotten.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::Notify;
use uuid::Uuid;

use super::redis::{unavailable, Redis};
use super::StoreError;

#[async_trait]
pub trait EndedSessions: Send + Sync {
    /// Whether the session has ended: an in-memory lookup, on every request.
    fn is_ended(&self, id: &Uuid) -> bool;

    /// Records sessions ended by this node, and tells the other nodes.
    async fn end(&self, ids: &[Uuid]) -> Result<(), StoreError>;

    /// Records sessions ended elsewhere (read back from the database).
    fn learn(&self, ids: &[Uuid]);
}

/// The in-process set: exact for this node at once.
pub struct MemoryEndedSessions {
    ended: moka::sync::Cache<Uuid, ()>,
}

impl MemoryEndedSessions {
    /// `keep_for`: the longest lifetime of an access token.
    pub fn new(keep_for: Duration) -> Self {
        MemoryEndedSessions {
            ended: moka::sync::Cache::builder()
                .time_to_live(keep_for + Duration::from_secs(60))
                .build(),
        }
    }
}

#[async_trait]
impl EndedSessions for MemoryEndedSessions {
    fn is_ended(&self, id: &Uuid) -> bool {
        self.ended.contains_key(id)
    }

    async fn end(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        self.learn(ids);
        Ok(())
    }

    fn learn(&self, ids: &[Uuid]) {
        for id in ids {
            self.ended.insert(*id, ());
        }
    }
}

/// The in-process set, kept in step across nodes by Redis pub/sub on the
/// channel `PREFIXsessions:ended` (each message: comma-separated ids).
pub struct RedisEndedSessions {
    local: MemoryEndedSessions,
    redis: Redis,
}

fn parse_ids(payload: &str) -> Vec<Uuid> {
    payload
        .split(',')
        .filter_map(|id| Uuid::parse_str(id.trim()).ok())
        .collect()
}

impl RedisEndedSessions {
    pub fn new(redis: Redis, keep_for: Duration) -> Self {
        RedisEndedSessions {
            local: MemoryEndedSessions::new(keep_for),
            redis,
        }
    }

    fn channel(&self) -> String {
        self.redis.key("sessions:ended")
    }

    /// Listens for endings published by every node, for as long as the
    /// process runs; after a lost connection it reconnects and wakes
    /// `resync`, so that what was published meanwhile is read from the
    /// database.
    pub async fn listen(self: Arc<Self>, resync: Arc<Notify>) {
        let channel = self.channel();
        loop {
            match self.redis.client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        resync.notify_one();
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            if let Ok(payload) = message.get_payload::<String>() {
                                self.local.learn(&parse_ids(&payload));
                            }
                        }
                        log::warn!("lost the Redis subscription to {channel}; reconnecting");
                    }
                    Err(err) => log::warn!("cannot subscribe to {channel}: {err}"),
                },
                Err(err) => log::warn!("cannot reach Redis for {channel}: {err}"),
            }
            actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[async_trait]
impl EndedSessions for RedisEndedSessions {
    fn is_ended(&self, id: &Uuid) -> bool {
        self.local.is_ended(id)
    }

    async fn end(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        self.local.learn(ids);
        if ids.is_empty() {
            return Ok(());
        }
        let payload = ids
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut conn = self.redis.conn.clone();
        // The ending is recorded in the database already, and this node
        // knows it; if Redis cannot carry it now, the other nodes read it
        // from the database within seconds, so the request that ended the
        // session does not fail for it.
        if let Err(err) = conn.publish::<_, _, ()>(self.channel(), payload).await {
            log::warn!(
                "cannot publish ended sessions (other nodes will read them from the database): {}",
                unavailable(err)
            );
        }
        Ok(())
    }

    fn learn(&self, ids: &[Uuid]) {
        self.local.learn(ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn an_ended_session_is_known_at_once_and_others_are_not() {
        let store = MemoryEndedSessions::new(Duration::from_secs(60));
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        store.end(&[a]).await.unwrap();
        store.learn(&[b]);
        assert!(store.is_ended(&a));
        assert!(store.is_ended(&b));
        assert!(!store.is_ended(&c));
    }

    #[test]
    fn published_ids_are_read_back_and_garbage_is_skipped() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(parse_ids(&format!("{a},{b}")), [a, b]);
        assert_eq!(parse_ids(&format!("x,{a}, ,")), [a]);
        assert!(parse_ids("").is_empty());
    }
}
