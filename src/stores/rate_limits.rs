//! Rate-limit counters: GCRA token buckets and failed-login tallies.
//!
//! A take over several buckets is one step, all or none: either every
//! bucket had room and each is charged, or none is and the longest wait is
//! named. The in-process store runs on the service's clock; the Redis one
//! on Redis's, so every node agrees on time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::redis::{unavailable, Redis};
use super::StoreError;
use crate::clock::Clock;

/// A token bucket: `per_minute` requests a minute on average, `burst` at
/// once. `per_minute == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    /// GCRA's emission interval and burst tolerance, in milliseconds;
    /// `None` when the limit is off.
    pub fn gcra_ms(self) -> Option<(i64, i64)> {
        if self.per_minute == 0 {
            return None;
        }
        let interval = (60_000 / i64::from(self.per_minute)).max(1);
        Some((interval, interval * i64::from(self.burst.max(1) - 1)))
    }
}

/// Which bucket a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ClientIp,
    Account,
}

/// One bucket of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub scope: Scope,
    pub key: String,
}

/// Consecutive failed logins of one (account, IP) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last_at_ms: i64,
}

/// GCRA for one bucket at `now_ms`: `Ok(new theoretical arrival time)` when
/// a request may pass, `Err(wait in ms)` when it must wait.
pub fn gcra(tat_ms: Option<i64>, now_ms: i64, interval: i64, tolerance: i64) -> Result<i64, i64> {
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let allow_at = tat - tolerance;
    if now_ms < allow_at {
        Err(allow_at - now_ms)
    } else {
        Ok(tat + interval)
    }
}

#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Takes one request from every bucket in `buckets`, all or none:
    /// `None` when each had room (and, if `charge`, each was charged), else
    /// the longest wait among those that refused (and none was charged).
    async fn take(&self, buckets: &[Bucket], charge: bool) -> Result<Option<Duration>, StoreError>;

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError>;

    /// Counts one more failure at `now_ms` and returns the new tally.
    async fn record_failure(&self, key: &str, now_ms: i64) -> Result<Failures, StoreError>;

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError>;
}

/// The embedded store: GCRA arrival times and failure tallies in bounded
/// moka caches, on the service's clock.
pub struct MemoryRateLimitStore {
    ip: Option<(i64, i64)>,
    account: Option<(i64, i64)>,
    clock: Arc<dyn Clock>,
    /// Theoretical arrival times (ms) by `scope:key`. A bucket idle for its
    /// whole refill time is full again, so entries expire after that.
    arrivals: moka::sync::Cache<String, i64>,
    /// Makes a take over several buckets one step.
    taking: Mutex<()>,
    failures: moka::sync::Cache<String, Failures>,
}

impl MemoryRateLimitStore {
    /// `tally_ttl`: how long a failure tally is kept after its last failure.
    pub fn new(
        ip: RateLimit,
        account: RateLimit,
        tally_ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let refill_ms = [ip.gcra_ms(), account.gcra_ms()]
            .into_iter()
            .flatten()
            .map(|(interval, tolerance)| interval + tolerance)
            .max()
            .unwrap_or(1);
        MemoryRateLimitStore {
            ip: ip.gcra_ms(),
            account: account.gcra_ms(),
            clock,
            arrivals: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_millis(refill_ms as u64))
                .build(),
            taking: Mutex::new(()),
            failures: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(tally_ttl)
                .build(),
        }
    }
}

#[async_trait]
impl RateLimitStore for MemoryRateLimitStore {
    async fn take(&self, buckets: &[Bucket], charge: bool) -> Result<Option<Duration>, StoreError> {
        let now_ms = self.clock.now().timestamp_millis();
        let _one_step = self.taking.lock().unwrap_or_else(|e| e.into_inner());
        let mut longest_wait = 0;
        let mut booked = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            let limit = match bucket.scope {
                Scope::ClientIp => self.ip,
                Scope::Account => self.account,
            };
            let Some((interval, tolerance)) = limit else {
                continue;
            };
            let name = format!("{:?}:{}", bucket.scope, bucket.key);
            match gcra(self.arrivals.get(&name), now_ms, interval, tolerance) {
                Ok(tat) => booked.push((name, tat)),
                Err(wait) => longest_wait = longest_wait.max(wait),
            }
        }
        if longest_wait > 0 {
            return Ok(Some(Duration::from_millis(longest_wait as u64)));
        }
        if charge {
            for (name, tat) in booked {
                self.arrivals.insert(name, tat);
            }
        }
        Ok(None)
    }

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError> {
        Ok(self.failures.get(key))
    }

    async fn record_failure(&self, key: &str, now_ms: i64) -> Result<Failures, StoreError> {
        let entry = self
            .failures
            .entry(key.to_owned())
            .and_upsert_with(|old| Failures {
                count: old.map_or(0, |e| e.value().count).saturating_add(1),
                last_at_ms: now_ms,
            });
        Ok(entry.into_value())
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        self.failures.invalidate(key);
        Ok(())
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
