//! The step-up policy of the **recent** routes: everything that changes how
//! an account is protected needs the highest level the account can reach,
//! verified at most `max_age` ago (the token's `auth_time`).
//!
//! - An account with a passkey: a full-level token, recent. A password-level
//!   token is refused with "passkey required"; an old full-level one with
//!   "re-authenticate at the full level".
//! - An account without one: any token whose password login is recent; an
//!   old one is refused with "re-authenticate with the password".
//!
//! So someone who knows only the password can enrol a first passkey (trust
//! on first use, audited), but never a further one, and never reaches the
//! full level of an account that has a passkey.

use std::sync::Arc;
use std::time::Duration;

use super::tokens::Principal;
use super::ServiceError;
use crate::clock::Clock;
use crate::domain::AuthLevel;
use crate::repositories::PasskeyRepository;

/// Why a token does not admit a recent route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PasskeyRequired,
    /// Verify again at this level.
    Reauthenticate(AuthLevel),
}

/// The rule itself: `has_passkey` is asked only for a password-level token.
pub fn verdict(
    level: AuthLevel,
    age: i64,
    max_age: Duration,
    has_passkey: impl FnOnce() -> bool,
) -> Result<(), Refusal> {
    let recent = age <= max_age.as_secs() as i64;
    match level {
        AuthLevel::Full if recent => Ok(()),
        AuthLevel::Full => Err(Refusal::Reauthenticate(AuthLevel::Full)),
        AuthLevel::Password if has_passkey() => Err(Refusal::PasskeyRequired),
        AuthLevel::Password if recent => Ok(()),
        AuthLevel::Password => Err(Refusal::Reauthenticate(AuthLevel::Password)),
    }
}

#[derive(Clone)]
pub struct StepUpPolicy {
    pub max_age: Duration,
    pub passkeys: PasskeyRepository,
    pub clock: Arc<dyn Clock>,
}

impl StepUpPolicy {
    /// Admits `caller` to a recent route, or says what they must do first.
    /// A full-level token costs no database round trip; a password-level
    /// one costs one indexed lookup (does the account have a passkey?).
    pub async fn require_recent(&self, caller: &Principal) -> Result<(), ServiceError> {
        let age = self.clock.now().timestamp() - caller.auth_time();
        let has_passkey = match caller.auth_level {
            AuthLevel::Full => false,
            AuthLevel::Password => {
                self.passkeys
                    .any_for_user(caller.user_id.to_string())
                    .await?
            }
        };
        verdict(caller.auth_level, age, self.max_age, || has_passkey).map_err(|refusal| {
            match refusal {
                Refusal::PasskeyRequired => ServiceError::PasskeyRequired {
                    max_age: Some(self.max_age),
                },
                Refusal::Reauthenticate(acr) => ServiceError::ReauthenticationRequired {
                    acr,
                    max_age: self.max_age,
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(300);

    #[test]
    fn a_recent_full_token_passes_without_asking_about_passkeys() {
        let asked = std::cell::Cell::new(false);
        let ask = || {
            asked.set(true);
            true
        };
        assert_eq!(verdict(AuthLevel::Full, 300, MAX, ask), Ok(()));
        assert!(!asked.get());
    }

    #[test]
    fn an_old_full_token_must_verify_again_at_the_full_level() {
        assert_eq!(
            verdict(AuthLevel::Full, 301, MAX, || true),
            Err(Refusal::Reauthenticate(AuthLevel::Full))
        );
    }

    #[test]
    fn a_password_token_of_an_account_with_a_passkey_needs_the_passkey_however_fresh() {
        for age in [0, 300, 10_000] {
            assert_eq!(
                verdict(AuthLevel::Password, age, MAX, || true),
                Err(Refusal::PasskeyRequired)
            );
        }
    }

    #[test]
    fn an_account_without_passkeys_needs_a_recent_password_login() {
        assert_eq!(verdict(AuthLevel::Password, 0, MAX, || false), Ok(()));
        assert_eq!(verdict(AuthLevel::Password, 300, MAX, || false), Ok(()));
        assert_eq!(
            verdict(AuthLevel::Password, 301, MAX, || false),
            Err(Refusal::Reauthenticate(AuthLevel::Password))
        );
    }

    #[test]
    fn an_auth_time_from_a_clock_ahead_counts_as_recent() {
        assert_eq!(verdict(AuthLevel::Full, -5, MAX, || true), Ok(()));
    }
}
