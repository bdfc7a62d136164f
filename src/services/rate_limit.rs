//! Rate limits per client IP and per account, and the login lockout.
//!
//! Every limited action (sign-up, login, both passkey verifies) takes one
//! request from two token buckets: one for the client IP, one for the target
//! account. Failed logins additionally lock the pair (account, client IP)
//! for a time that doubles with each failure past a threshold, up to a cap:
//! an attacker guessing from one address is slowed to a crawl there, while
//! the owner logging in from elsewhere is not locked out, and no lock lasts
//! longer than the cap. The counters live behind [`RateLimitStore`], so a
//! store shared by several nodes can replace the in-process one.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::challenges::StoreError;
use super::ServiceError;
use crate::clock::Clock;

/// An action the limits apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Signup,
    Login,
    PasskeyRegistration,
    PasskeyAuthentication,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Signup => "signup",
            Action::Login => "login",
            Action::PasskeyRegistration => "passkey_register",
            Action::PasskeyAuthentication => "passkey_authenticate",
        }
    }
}

/// A token bucket: `per_minute` requests a minute on average, `burst` at
/// once. `per_minute == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    fn quota(self) -> Option<Quota> {
        let per_minute = NonZeroU32::new(self.per_minute)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Some(Quota::per_minute(per_minute).allow_burst(burst))
    }
}

/// After `threshold` consecutive failures, each further failure locks the
/// (account, IP) pair for `base × 2^(failures − threshold)`, at most `max`.
/// `threshold == 0` turns the lockout off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub base: Duration,
    pub max: Duration,
}

impl LockoutPolicy {
    /// How long a failure tally is kept after its last failure.
    pub fn tally_ttl(&self) -> Duration {
        self.max.max(Duration::from_secs(3600))
    }

    fn lock_for(&self, failures: u32) -> Option<Duration> {
        if self.threshold == 0 || failures < self.threshold {
            return None;
        }
        let doublings = (failures - self.threshold).min(20);
        Some(self.base.saturating_mul(1 << doublings).min(self.max))
    }
}

/// Which bucket a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ClientIp,
    Account,
}

/// Consecutive failed logins of one (account, IP) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last_at_ms: i64,
}

#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Takes one request from `key`'s bucket in `scope`; `Some(wait)` when
    /// the bucket is empty.
    async fn take(&self, scope: Scope, key: &str) -> Result<Option<Duration>, StoreError>;

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError>;

    /// Counts one more failure at `now_ms` and returns the new tally.
    async fn record_failure(&self, key: &str, now_ms: i64) -> Result<Failures, StoreError>;

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError>;
}

/// The embedded store: governor's keyed GCRA limiters and a moka cache of
/// failure tallies, both bounded.
pub struct MemoryRateLimitStore {
    ip: Option<DefaultKeyedRateLimiter<String>>,
    account: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    takes: AtomicU64,
    failures: moka::sync::Cache<String, Failures>,
}

/// How often (in takes) idle buckets are dropped from the limiters.
const RETAIN_EVERY: u64 = 4096;

impl MemoryRateLimitStore {
    pub fn new(ip: RateLimit, account: RateLimit, lockout: &LockoutPolicy) -> Self {
        let limiter = |limit: RateLimit| limit.quota().map(DefaultKeyedRateLimiter::keyed);
        MemoryRateLimitStore {
            ip: limiter(ip),
            account: limiter(account),
            clock: DefaultClock::default(),
            takes: AtomicU64::new(0),
            failures: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(lockout.tally_ttl())
                .build(),
        }
    }
}

#[async_trait]
impl RateLimitStore for MemoryRateLimitStore {
    async fn take(&self, scope: Scope, key: &str) -> Result<Option<Duration>, StoreError> {
        let limiter = match scope {
            Scope::ClientIp => &self.ip,
            Scope::Account => &self.account,
        };
        let Some(limiter) = limiter else {
            return Ok(None);
        };
        if self.takes.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            limiter.retain_recent();
        }
        Ok(limiter
            .check_key(&key.to_owned())
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now())))
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

/// The rules on top of a [`RateLimitStore`].
#[derive(Clone)]
pub struct RateLimiter {
    pub store: Arc<dyn RateLimitStore>,
    pub lockout: LockoutPolicy,
    pub clock: Arc<dyn Clock>,
}

fn limited(wait: Duration) -> ServiceError {
    ServiceError::RateLimited {
        retry_after: wait.max(Duration::from_secs(1)),
    }
}

fn lockout_key(account: &str, ip: IpAddr) -> String {
    format!("login-failures:{account}:{ip}")
}

impl RateLimiter {
    /// Takes one request of `action` for the client IP and the account.
    pub async fn check(
        &self,
        action: Action,
        ip: IpAddr,
        account: &str,
    ) -> Result<(), ServiceError> {
        let action = action.as_str();
        let ip_key = format!("{action}:ip:{ip}");
        if let Some(wait) = self.store.take(Scope::ClientIp, &ip_key).await? {
            log::warn!("rate limited: action={action} ip={ip}");
            return Err(limited(wait));
        }
        let account_key = format!("{action}:account:{account}");
        if let Some(wait) = self.store.take(Scope::Account, &account_key).await? {
            log::warn!("rate limited: action={action} account={account}");
            return Err(limited(wait));
        }
        Ok(())
    }

    /// Refuses a login attempt while the (account, IP) pair is locked.
    pub async fn check_lockout(&self, account: &str, ip: IpAddr) -> Result<(), ServiceError> {
        let Some(failures) = self.store.failures(&lockout_key(account, ip)).await? else {
            return Ok(());
        };
        let Some(lock) = self.lockout.lock_for(failures.count) else {
            return Ok(());
        };
        let until_ms = failures.last_at_ms + lock.as_millis() as i64;
        let now_ms = self.clock.now().timestamp_millis();
        if now_ms < until_ms {
            log::warn!(
                "login locked: account={account} ip={ip} failures={}",
                failures.count
            );
            return Err(limited(Duration::from_millis((until_ms - now_ms) as u64)));
        }
        Ok(())
    }

    pub async fn login_failed(&self, account: &str, ip: IpAddr) -> Result<(), ServiceError> {
        let now_ms = self.clock.now().timestamp_millis();
        self.store
            .record_failure(&lockout_key(account, ip), now_ms)
            .await?;
        Ok(())
    }

    pub async fn login_succeeded(&self, account: &str, ip: IpAddr) -> Result<(), ServiceError> {
        self.store.clear_failures(&lockout_key(account, ip)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            threshold: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn lock_time_doubles_from_the_threshold_up_to_the_cap() {
        let p = policy();
        let locks: Vec<Option<u64>> = (0..8).map(|f| p.lock_for(f).map(|d| d.as_secs())).collect();
        assert_eq!(
            locks,
            [
                None,
                None,
                None,
                Some(10),
                Some(20),
                Some(40),
                Some(60),
                Some(60)
            ]
        );
        assert_eq!(p.lock_for(u32::MAX), Some(Duration::from_secs(60)));
        let off = LockoutPolicy { threshold: 0, ..p };
        assert_eq!(off.lock_for(100), None);
    }

    fn limiter(ip: RateLimit, account: RateLimit, clock: Arc<ManualClock>) -> RateLimiter {
        RateLimiter {
            store: Arc::new(MemoryRateLimitStore::new(ip, account, &policy())),
            lockout: policy(),
            clock,
        }
    }

    const OFF: RateLimit = RateLimit {
        per_minute: 0,
        burst: 0,
    };

    #[actix_web::test]
    async fn buckets_are_per_ip_and_per_account() {
        let clock = Arc::new(ManualClock::new());
        let ip_limited = limiter(
            RateLimit {
                per_minute: 1,
                burst: 2,
            },
            OFF,
            clock.clone(),
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            ip_limited.check(Action::Login, a, "alice").await.unwrap();
        }
        let err = ip_limited.check(Action::Login, a, "bob").await.unwrap_err();
        assert!(
            matches!(err, ServiceError::RateLimited { retry_after } if retry_after >= Duration::from_secs(1))
        );
        ip_limited.check(Action::Login, b, "alice").await.unwrap();
        ip_limited.check(Action::Signup, a, "alice").await.unwrap();

        let account_limited = limiter(
            OFF,
            RateLimit {
                per_minute: 1,
                burst: 1,
            },
            clock,
        );
        account_limited
            .check(Action::Login, a, "alice")
            .await
            .unwrap();
        assert!(account_limited
            .check(Action::Login, b, "alice")
            .await
            .is_err());
        account_limited
            .check(Action::Login, a, "bob")
            .await
            .unwrap();
    }

    #[actix_web::test]
    async fn lockout_is_per_account_and_ip_and_success_clears_it() {
        let clock = Arc::new(ManualClock::new());
        let l = limiter(OFF, OFF, clock.clone());
        let attacker: IpAddr = "198.51.100.9".parse().unwrap();
        let owner: IpAddr = "203.0.113.4".parse().unwrap();
        for _ in 0..3 {
            l.check_lockout("alice", attacker).await.unwrap();
            l.login_failed("alice", attacker).await.unwrap();
        }
        let err = l.check_lockout("alice", attacker).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::RateLimited { retry_after } if retry_after == Duration::from_secs(10))
        );
        // The owner, elsewhere, is not locked out.
        l.check_lockout("alice", owner).await.unwrap();
        // The lock lapses, and the next failure locks for twice as long.
        clock.advance(Duration::from_secs(10));
        l.check_lockout("alice", attacker).await.unwrap();
        l.login_failed("alice", attacker).await.unwrap();
        let err = l.check_lockout("alice", attacker).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::RateLimited { retry_after } if retry_after == Duration::from_secs(20))
        );
        l.login_succeeded("alice", attacker).await.unwrap();
        l.check_lockout("alice", attacker).await.unwrap();
    }
}
