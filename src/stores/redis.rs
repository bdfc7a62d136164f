//! The Redis connection the Redis halves of the stores share.
//!
//! One multiplexed connection (redis's `ConnectionManager`, which reconnects
//! by itself) serves every request. Each command has a bounded response
//! time, so with Redis down the affected routes answer 503 quickly and
//! recover when it returns.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::StoreError;

pub(super) fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {err}"))
}

/// A Redis connection and the prefix every key of this deployment carries.
///
/// Every key, after the prefix (`REDIS_KEY_PREFIX`, default `passkey-auth:`):
///
/// | key | type | written by |
/// |---|---|---|
/// | `challenge:CEREMONY:USER` | string, TTL = challenge lifetime | [`super::challenges`] |
/// | `challenge:signin:CHALLENGE` | string, TTL = challenge lifetime (a passkey sign-in, found by its challenge) | [`super::challenges`] |
/// | `rate:ACTION:ip:IP`, `rate:ACTION:account:ACCOUNT` | string (GCRA arrival time, ms), TTL = refill time | [`super::rate_limits`] |
/// | `login-failures:ACCOUNT:IP` | hash `count`, `last`; TTL = tally lifetime | [`super::rate_limits`] |
/// | `sessions:ended` | pub/sub channel: ids of sessions just ended | [`super::sessions`] |
#[derive(Clone)]
pub struct Redis {
    pub(super) conn: ConnectionManager,
    /// For connections of their own (pub/sub).
    pub(super) client: redis::Client,
    prefix: String,
}

impl Redis {
    /// Connects (failing if Redis cannot be reached now); every later
    /// command waits at most `timeout`.
    pub async fn connect(url: &str, prefix: String, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        Ok(Redis {
            conn,
            client,
            prefix,
        })
    }

    pub(super) fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.prefix)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }
}
