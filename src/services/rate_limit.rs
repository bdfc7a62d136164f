//! Rate limits per client IP and per account, and the login lockout.
//!
//! Every limited action (sign-up, login, the passkey and recovery verifies,
//! password change) takes one request from two token buckets (GCRA): one
//! for the client IP, one for the target account, both or neither. Failed
//! logins additionally lock the pair (account, client IP) for a time that
//! doubles with each failure past a threshold, up to a cap: an attacker
//! guessing from one address is slowed to a crawl there, while the owner
//! logging in from elsewhere is not locked out, and no lock lasts longer
//! than the cap. The counters live behind [`RateLimitStore`], so a store
//! shared by several nodes can replace the in-process one.
//!
//! A refusal names the time after which the same request is refused by
//! none of the limits: the longest wait among all that refuse it, lockout
//! included, and a refused request is charged to no bucket. A client that
//! waits that long is heard.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

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
    RecoveryCode,
    PasswordChange,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Signup => "signup",
            Action::Login => "login",
            Action::PasskeyRegistration => "passkey_register",
            Action::PasskeyAuthentication => "passkey_authenticate",
            Action::RecoveryCode => "recovery_code",
            Action::PasswordChange => "password_change",
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
    pub fn new(
        ip: RateLimit,
        account: RateLimit,
        lockout: &LockoutPolicy,
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
                .time_to_idle(lockout.tally_ttl())
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

fn buckets(action: Action, ip: IpAddr, account: &str) -> [Bucket; 2] {
    let action = action.as_str();
    [
        Bucket {
            scope: Scope::ClientIp,
            key: format!("{action}:ip:{ip}"),
        },
        Bucket {
            scope: Scope::Account,
            key: format!("{action}:account:{account}"),
        },
    ]
}

impl RateLimiter {
    /// Takes one request of `action` for the client IP and the account.
    pub async fn check(
        &self,
        action: Action,
        ip: IpAddr,
        account: &str,
    ) -> Result<(), ServiceError> {
        if let Some(wait) = self.store.take(&buckets(action, ip, account), true).await? {
            log::warn!(
                "rate limited: action={} ip={ip} account={account}",
                action.as_str()
            );
            return Err(limited(wait));
        }
        Ok(())
    }

    /// As [`RateLimiter::check`], for an action that guesses the account's
    /// password (`account` being its username key): refused too while the
    /// (account, IP) pair is locked, for the longest of the waits.
    pub async fn check_password_guess(
        &self,
        action: Action,
        ip: IpAddr,
        account: &str,
    ) -> Result<(), ServiceError> {
        let Some(lock) = self.lockout_wait(account, ip).await? else {
            return self.check(action, ip, account).await;
        };
        let buckets_wait = self
            .store
            .take(&buckets(action, ip, account), false)
            .await?;
        log::warn!("login locked: account={account} ip={ip}");
        Err(limited(lock.max(buckets_wait.unwrap_or_default())))
    }

    /// How long the (account, IP) pair stays locked, if it is.
    async fn lockout_wait(
        &self,
        account: &str,
        ip: IpAddr,
    ) -> Result<Option<Duration>, ServiceError> {
        let Some(failures) = self.store.failures(&lockout_key(account, ip)).await? else {
            return Ok(None);
        };
        let Some(lock) = self.lockout.lock_for(failures.count) else {
            return Ok(None);
        };
        let until_ms = failures.last_at_ms + lock.as_millis() as i64;
        let now_ms = self.clock.now().timestamp_millis();
        Ok((now_ms < until_ms).then(|| Duration::from_millis((until_ms - now_ms) as u64)))
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
            store: Arc::new(MemoryRateLimitStore::new(
                ip,
                account,
                &policy(),
                clock.clone(),
            )),
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
        let guess = |ip| l.check_password_guess(Action::Login, ip, "alice");
        for _ in 0..3 {
            guess(attacker).await.unwrap();
            l.login_failed("alice", attacker).await.unwrap();
        }
        let err = guess(attacker).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::RateLimited { retry_after } if retry_after == Duration::from_secs(10))
        );
        // The owner, elsewhere, is not locked out.
        guess(owner).await.unwrap();
        // The lock lapses, and the next failure locks for twice as long.
        clock.advance(Duration::from_secs(10));
        guess(attacker).await.unwrap();
        l.login_failed("alice", attacker).await.unwrap();
        let err = guess(attacker).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::RateLimited { retry_after } if retry_after == Duration::from_secs(20))
        );
        l.login_succeeded("alice", attacker).await.unwrap();
        guess(attacker).await.unwrap();
    }

    fn wait_of(err: ServiceError) -> Duration {
        match err {
            ServiceError::RateLimited { retry_after } => retry_after,
            other => panic!("not a rate limit: {other:?}"),
        }
    }

    #[actix_web::test]
    async fn a_refusal_names_the_longest_wait_and_charges_no_bucket() {
        let clock = Arc::new(ManualClock::new());
        // IP: 60 a minute, burst 1 (1 s). Account: 6 a minute, burst 1 (10 s).
        let l = limiter(
            RateLimit {
                per_minute: 60,
                burst: 1,
            },
            RateLimit {
                per_minute: 6,
                burst: 1,
            },
            clock.clone(),
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other_ip: IpAddr = "192.0.2.2".parse().unwrap();
        l.check(Action::Login, ip, "alice").await.unwrap();
        // Both buckets refuse: the account's 10 s is named, not the IP's 1 s.
        let wait = wait_of(l.check(Action::Login, ip, "alice").await.unwrap_err());
        assert_eq!(wait, Duration::from_secs(10));
        // A second later the IP bucket has room, the account's does not: the
        // refused request is charged to neither, so the IP still has room.
        clock.advance(Duration::from_secs(1));
        let wait = wait_of(l.check(Action::Login, ip, "alice").await.unwrap_err());
        assert_eq!(wait, Duration::from_secs(9));
        l.check(Action::Login, ip, "bob").await.unwrap();
        // Waiting exactly the named time is enough.
        clock.advance(Duration::from_secs(9));
        l.check(Action::Login, other_ip, "alice").await.unwrap();
    }

    #[actix_web::test]
    async fn a_lockout_longer_than_the_buckets_is_the_wait_named() {
        let clock = Arc::new(ManualClock::new());
        let l = limiter(
            RateLimit {
                per_minute: 60,
                burst: 1,
            },
            OFF,
            clock.clone(),
        );
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        for _ in 0..3 {
            clock.advance(Duration::from_secs(1));
            l.check_password_guess(Action::Login, ip, "alice")
                .await
                .unwrap();
            l.login_failed("alice", ip).await.unwrap();
        }
        // Locked for 10 s from the last failure; every refusal says so,
        // however often the client asks meanwhile.
        for (named, then_wait) in [(10, 3), (7, 6), (1, 1)] {
            let wait = wait_of(
                l.check_password_guess(Action::Login, ip, "alice")
                    .await
                    .unwrap_err(),
            );
            assert_eq!(wait, Duration::from_secs(named));
            clock.advance(Duration::from_secs(then_wait));
        }
        l.check_password_guess(Action::Login, ip, "alice")
            .await
            .unwrap();
    }

    #[test]
    fn gcra_allows_a_burst_then_one_per_interval() {
        let (interval, tolerance) = RateLimit {
            per_minute: 60,
            burst: 3,
        }
        .gcra_ms()
        .unwrap();
        assert_eq!((interval, tolerance), (1_000, 2_000));
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 0, interval, tolerance).unwrap());
        }
        assert_eq!(gcra(tat, 0, interval, tolerance), Err(1_000));
        assert!(gcra(tat, 1_000, interval, tolerance).is_ok());
        assert_eq!(OFF.gcra_ms(), None);
    }
}
