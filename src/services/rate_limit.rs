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
use std::sync::Arc;
use std::time::Duration;

use super::ServiceError;
use crate::clock::Clock;
pub use crate::stores::rate_limits::RateLimit;
use crate::stores::rate_limits::{Bucket, RateLimitStore, Scope};

/// An action the limits apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Signup,
    Login,
    PasskeyRegistration,
    PasskeyAuthentication,
    RecoveryCode,
    PasswordChange,
    /// Public: options for a passkey sign-in (per client IP only).
    PasskeySignInOptions,
    /// Public: a passkey sign-in verify (per client IP and credential id).
    PasskeySignIn,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Signup,
        Action::Login,
        Action::PasskeyRegistration,
        Action::PasskeyAuthentication,
        Action::RecoveryCode,
        Action::PasswordChange,
        Action::PasskeySignInOptions,
        Action::PasskeySignIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Signup => "signup",
            Action::Login => "login",
            Action::PasskeyRegistration => "passkey_register",
            Action::PasskeyAuthentication => "passkey_authenticate",
            Action::RecoveryCode => "recovery_code",
            Action::PasswordChange => "password_change",
            Action::PasskeySignInOptions => "passkey_signin_options",
            Action::PasskeySignIn => "passkey_signin",
        }
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

    /// Takes one request of `action` for the client IP alone (a public
    /// route that names no account).
    pub async fn check_ip(&self, action: Action, ip: IpAddr) -> Result<(), ServiceError> {
        let [by_ip, _] = buckets(action, ip, "");
        if let Some(wait) = self.store.take(std::slice::from_ref(&by_ip), true).await? {
            log::warn!("rate limited: action={} ip={ip}", action.as_str());
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
    use crate::stores::rate_limits::{gcra, MemoryRateLimitStore};

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
                policy().tally_ttl(),
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
