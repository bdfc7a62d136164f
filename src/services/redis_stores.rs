//! State shared by several nodes, in Redis: ceremony challenges and rate-limit
//! counters. Chosen by `REDIS_URL`; without it the in-process stores serve.
//!
//! One multiplexed connection (redis's `ConnectionManager`, which reconnects
//! by itself) serves every request. Each command has a bounded response
//! time, so with Redis down the affected routes answer 503 quickly and
//! recover when it returns.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::challenges::{ChallengeKey, ChallengeStore, StoreError};
use super::rate_limit::{Bucket, Failures, RateLimit, RateLimitStore, Scope};

fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {err}"))
}

/// A Redis connection and the prefix every key of this deployment carries.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
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
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Redis { conn, prefix })
    }

    fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
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

/// GCRA over several buckets in one atomic step, all or none: returns 0
/// when a request may pass (and books it in every bucket, if ARGV[1] is
/// 1), else the longest wait in milliseconds (booking nothing). ARGV[2k],
/// ARGV[2k+1]: emission interval and burst tolerance of KEYS[k], in
/// milliseconds. Redis's own clock is used, so every node agrees on time.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
local booked = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local allow_at = tat - tolerance
  if now < allow_at then
    if allow_at - now > wait then wait = allow_at - now end
  else
    booked[i] = tat + interval
  end
end
if wait > 0 or ARGV[1] ~= '1' then return wait end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, booked[i], 'PX', booked[i] - now)
end
return 0
"#;

/// Counts a failed login: the tally, the time of the last one, an expiry.
const RECORD_FAILURE: &str = r#"
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return count
"#;

pub struct RedisRateLimitStore {
    redis: Redis,
    ip: RateLimit,
    account: RateLimit,
    /// How long a failure tally lives after its last failure.
    failures_ttl: Duration,
    gcra: Script,
    record_failure: Script,
}

impl RedisRateLimitStore {
    pub fn new(redis: Redis, ip: RateLimit, account: RateLimit, failures_ttl: Duration) -> Self {
        RedisRateLimitStore {
            redis,
            ip,
            account,
            failures_ttl,
            gcra: Script::new(GCRA),
            record_failure: Script::new(RECORD_FAILURE),
        }
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimitStore {
    async fn take(&self, buckets: &[Bucket], charge: bool) -> Result<Option<Duration>, StoreError> {
        let mut invocation = self.gcra.prepare_invoke();
        invocation.arg(u8::from(charge));
        let mut any = false;
        for bucket in buckets {
            let limit = match bucket.scope {
                Scope::ClientIp => self.ip,
                Scope::Account => self.account,
            };
            let Some((interval_ms, tolerance_ms)) = limit.gcra_ms() else {
                continue;
            };
            invocation
                .key(self.redis.key(format!("rate:{}", bucket.key)))
                .arg(interval_ms)
                .arg(tolerance_ms);
            any = true;
        }
        if !any {
            return Ok(None);
        }
        let mut conn = self.redis.conn.clone();
        let wait_ms: u64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError> {
        let mut conn = self.redis.conn.clone();
        let (count, last): (Option<u32>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.redis.key(key))
            .arg("count")
            .arg("last")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(count
            .zip(last)
            .map(|(count, last_at_ms)| Failures { count, last_at_ms }))
    }

    async fn record_failure(&self, key: &str, now_ms: i64) -> Result<Failures, StoreError> {
        let mut conn = self.redis.conn.clone();
        let count: u32 = self
            .record_failure
            .key(self.redis.key(key))
            .arg(now_ms)
            .arg(self.failures_ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Failures {
            count,
            last_at_ms: now_ms,
        })
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.redis.conn.clone();
        conn.del::<_, ()>(self.redis.key(key))
            .await
            .map_err(unavailable)
    }
}
