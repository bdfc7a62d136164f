//! Passkey ceremonies (through webauthn-rs), the counter policy, and the
//! caller's passkey management.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Credential, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Webauthn,
    WebauthnError,
};

use super::audit::{Audit, EventKind};
use super::rate_limit::{Action, RateLimiter};
use super::recovery::RecoveryCodes;
use super::tokens::{Grant, IssuedToken, Principal, Subject, TokenService};
use super::ServiceError;
use crate::clock::Clock;
use crate::domain::{AuthLevel, AuthMethod, ClientInfo, Nickname};
use crate::repositories::passkeys::{Enrolment, PasskeyUse};
use crate::repositories::{PasskeyRecord, PasskeyRepository, RepoError, UserRepository};
use crate::stores::challenges::{Ceremony, ChallengeKey, ChallengeStore};

/// A passkey as clients see it: no public key, no counter.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasskeySummary {
    pub id: String,
    pub credential_id: String,
    pub nickname: String,
    pub transports: Vec<String>,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<PasskeyRecord> for PasskeySummary {
    fn from(r: PasskeyRecord) -> Self {
        PasskeySummary {
            id: r.id,
            credential_id: r.credential_id,
            nickname: r.nickname,
            transports: serde_json::from_str(&r.transports).unwrap_or_default(),
            backup_eligible: r.backup_eligible,
            backup_state: r.backup_state,
            created_at: r.created_at.and_utc(),
            last_used_at: r.last_used_at.map(|t| t.and_utc()),
        }
    }
}

/// A registered passkey; the account's first one comes with its recovery
/// codes, shown this once.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    #[serde(flatten)]
    pub passkey: PasskeySummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

/// Ceremony state as kept in the challenge store, with its own expiry so
/// that the service's clock (not only the store's) decides when it is stale.
#[derive(Serialize, Deserialize)]
struct PendingCeremony<S> {
    expires_at_ms: i64,
    state: S,
}

/// The part of clientDataJSON webauthn-rs leaves unchecked on assertions.
#[derive(Deserialize)]
struct ClientDataFlags {
    #[serde(default, rename = "crossOrigin")]
    cross_origin: bool,
}

/// Built once at start from the parts it is given (no globals).
#[derive(Clone)]
pub struct PasskeyService {
    pub webauthn: Arc<Webauthn>,
    pub users: UserRepository,
    pub passkeys: PasskeyRepository,
    pub challenges: Arc<dyn ChallengeStore>,
    pub tokens: Arc<TokenService>,
    pub clock: Arc<dyn Clock>,
    pub challenge_ttl: Duration,
    pub limiter: RateLimiter,
    pub audit: Audit,
    pub recovery: RecoveryCodes,
    /// `STEP_UP_MAX_AGE_SECS`, named in a refusal.
    pub step_up_max_age: Duration,
}

fn encode_id(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn stored_passkey(record: &PasskeyRecord) -> Result<Passkey, ServiceError> {
    serde_json::from_str(&record.credential).map_err(ServiceError::internal)
}

/// Why a ceremony was refused, before it is recorded and answered.
enum Refusal {
    /// The response did not verify; the reason goes to the log and the audit trail.
    Failed(String),
    /// The signature counter did not increase: a possible cloned authenticator.
    CounterRegression { passkey_id: String },
    /// The credential is registered already.
    Exists,
    /// Not a verdict on the response (no challenge, database down, …).
    Service(ServiceError),
}

impl From<ServiceError> for Refusal {
    fn from(err: ServiceError) -> Self {
        Refusal::Service(err)
    }
}

fn failed(reason: impl std::fmt::Display) -> Refusal {
    Refusal::Failed(reason.to_string())
}

impl PasskeyService {
    async fn put_ceremony<S: Serialize>(
        &self,
        key: ChallengeKey,
        state: &S,
    ) -> Result<(), ServiceError> {
        let ttl = chrono::Duration::from_std(self.challenge_ttl).map_err(ServiceError::internal)?;
        let pending = PendingCeremony {
            expires_at_ms: (self.clock.now() + ttl).timestamp_millis(),
            state,
        };
        let bytes = serde_json::to_vec(&pending).map_err(ServiceError::internal)?;
        self.challenges.put(key, bytes).await?;
        Ok(())
    }

    /// Removes the ceremony state whatever happens next: a challenge serves
    /// one verify attempt, successful or not.
    async fn take_ceremony<S: DeserializeOwned>(
        &self,
        key: ChallengeKey,
    ) -> Result<S, ServiceError> {
        let bytes = self
            .challenges
            .take(&key)
            .await?
            .ok_or(ServiceError::ChallengeExpired)?;
        let pending: PendingCeremony<S> =
            serde_json::from_slice(&bytes).map_err(ServiceError::internal)?;
        if pending.expires_at_ms <= self.clock.now().timestamp_millis() {
            return Err(ServiceError::ChallengeExpired);
        }
        Ok(pending.state)
    }

    async fn owned_passkeys(&self, user_id: Uuid) -> Result<Vec<PasskeyRecord>, ServiceError> {
        Ok(self.passkeys.list_for_user(user_id.to_string()).await?)
    }

    /// Options for `navigator.credentials.create`, excluding the caller's
    /// existing credentials.
    pub async fn start_registration(
        &self,
        caller: &Principal,
    ) -> Result<CreationChallengeResponse, ServiceError> {
        let user = self
            .users
            .find_by_id(caller.user_id.to_string())
            .await?
            .ok_or(ServiceError::UnknownUser)?;
        let exclude = self
            .owned_passkeys(caller.user_id)
            .await?
            .iter()
            .map(|r| stored_passkey(r).map(|pk| pk.cred_id().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                caller.user_id,
                &user.username,
                &user.display_name,
                Some(exclude),
            )
            .map_err(ServiceError::internal)?;
        self.put_ceremony(
            ChallengeKey::new(caller.user_id, Ceremony::Registration),
            &state,
        )
        .await?;
        Ok(options)
    }

    pub async fn finish_registration(
        &self,
        caller: &Principal,
        response: RegisterPublicKeyCredential,
        nickname: Nickname,
        client: &ClientInfo,
    ) -> Result<Registered, ServiceError> {
        self.check_limits(Action::PasskeyRegistration, caller, client)
            .await?;
        let outcome = self.register(caller, response, nickname, client).await;
        self.settle(caller, client, Ceremony::Registration, outcome)
            .await
    }

    async fn register(
        &self,
        caller: &Principal,
        response: RegisterPublicKeyCredential,
        nickname: Nickname,
        client: &ClientInfo,
    ) -> Result<Registered, Refusal> {
        let state: PasskeyRegistration = self
            .take_ceremony(ChallengeKey::new(caller.user_id, Ceremony::Registration))
            .await?;
        let passkey = match self.webauthn.finish_passkey_registration(&response, &state) {
            Ok(passkey) => passkey,
            // webauthn-rs reports a credential from the exclude list (the
            // caller's own) with this variant; it is also used for an
            // unrequested algorithm, so check which one it was.
            Err(WebauthnError::CredentialAlteredAlgFromRequest)
                if self
                    .is_own_credential(caller.user_id, &response.raw_id)
                    .await? =>
            {
                return Err(Refusal::Exists)
            }
            Err(err) => return Err(failed(format!("{err:?}"))),
        };

        let credential: Credential = passkey.clone().into();
        // Transports are hints browsers use with allowCredentials; the
        // ones webauthn-rs does not know come back as "unknown" and are dropped.
        let transports: Vec<String> = serde_json::to_value(&response.response.transports)
            .ok()
            .and_then(|v| serde_json::from_value::<Option<Vec<String>>>(v).ok())
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t != "unknown")
            .collect();
        let record = PasskeyRecord {
            id: Uuid::new_v4().to_string(),
            user_id: caller.user_id.to_string(),
            credential_id: encode_id(passkey.cred_id().as_ref()),
            credential: serde_json::to_string(&passkey).map_err(ServiceError::internal)?,
            sign_count: i64::from(credential.counter),
            transports: serde_json::to_string(&transports).map_err(ServiceError::internal)?,
            nickname: nickname.as_str().to_owned(),
            backup_eligible: credential.backup_eligible,
            backup_state: credential.backup_state,
            created_at: self.clock.now().naive_utc(),
            last_used_at: None,
        };
        let event = self.audit.event(
            EventKind::PasskeyRegistered,
            Some(caller.user_id),
            client,
            Some(record.id.clone()),
        );
        let caller_full = caller.auth_level == AuthLevel::Full;
        // The first passkey comes with recovery codes, hashed before the
        // transaction that decides whether it is the first. The recent guard
        // admits a password-level token only to an account without passkeys
        // (it just looked), so only a full-level caller needs the look here.
        let first_expected = match caller.auth_level {
            AuthLevel::Password => true,
            AuthLevel::Full => !self
                .passkeys
                .any_for_user(record.user_id.clone())
                .await
                .map_err(ServiceError::from)?,
        };
        let mut codes = if first_expected {
            Some(self.recovery.new_set(caller.user_id, client).await?)
        } else {
            None
        };
        loop {
            let set = codes.as_ref().map(|(set, _)| set.clone());
            let enrolled = self
                .passkeys
                .enrol(record.clone(), event.clone(), caller_full, set)
                .await;
            match enrolled {
                Ok(Enrolment::Enrolled { first }) => {
                    self.audit.log(&event);
                    let recovery_codes = match (first, codes) {
                        (true, Some((set, shown))) => {
                            self.audit.log(&set.event);
                            Some(shown)
                        }
                        _ => None,
                    };
                    return Ok(Registered {
                        passkey: record.into(),
                        recovery_codes,
                    });
                }
                // The account lost its passkeys since the look above.
                Ok(Enrolment::CodesNeeded) if codes.is_none() => {
                    codes = Some(self.recovery.new_set(caller.user_id, client).await?);
                }
                Ok(Enrolment::CodesNeeded) => {
                    return Err(ServiceError::internal("codes were given but not taken").into())
                }
                Ok(Enrolment::StepUpRequired) => {
                    return Err(ServiceError::PasskeyRequired {
                        max_age: Some(self.step_up_max_age),
                    }
                    .into())
                }
                Ok(Enrolment::UserGone) => return Err(ServiceError::UnknownUser.into()),
                Err(RepoError::AlreadyExists) => return Err(Refusal::Exists),
                Err(other) => return Err(ServiceError::from(other).into()),
            }
        }
    }

    /// The caller's rate limits for `action`; a refusal is recorded.
    async fn check_limits(
        &self,
        action: Action,
        caller: &Principal,
        client: &ClientInfo,
    ) -> Result<(), ServiceError> {
        let limit = self
            .limiter
            .check(action, client.ip, &caller.user_id.to_string())
            .await;
        self.audit
            .on_limit(limit, Some(caller.user_id), client, action)
            .await
    }

    /// Records a refused ceremony and turns it into the error to answer.
    async fn settle<T>(
        &self,
        caller: &Principal,
        client: &ClientInfo,
        ceremony: Ceremony,
        outcome: Result<T, Refusal>,
    ) -> Result<T, ServiceError> {
        let failure_kind = match ceremony {
            Ceremony::Registration => EventKind::PasskeyRegistrationFailed,
            Ceremony::Authentication => EventKind::PasskeyVerificationFailed,
        };
        let user_id = caller.user_id;
        let (kind, detail, error) = match outcome {
            Ok(value) => return Ok(value),
            Err(Refusal::Service(err)) => return Err(err),
            Err(Refusal::Failed(reason)) => {
                log::warn!(
                    "passkey {} failed for user_id={user_id}: {reason}",
                    ceremony.as_str()
                );
                (
                    failure_kind,
                    reason,
                    ServiceError::PasskeyVerificationFailed,
                )
            }
            Err(Refusal::Exists) => {
                log::warn!("passkey registration refused: credential already registered (user_id={user_id})");
                (
                    failure_kind,
                    "credential already registered".to_owned(),
                    ServiceError::CredentialExists,
                )
            }
            Err(Refusal::CounterRegression { passkey_id }) => {
                log::warn!("possible cloned authenticator: counter did not increase (user_id={user_id} passkey_id={passkey_id})");
                (
                    EventKind::CounterRegression,
                    passkey_id,
                    ServiceError::PasskeyVerificationFailed,
                )
            }
        };
        self.audit
            .record(kind, Some(user_id), client, Some(detail))
            .await?;
        Err(error)
    }

    async fn is_own_credential(&self, user_id: Uuid, raw_id: &[u8]) -> Result<bool, ServiceError> {
        Ok(self
            .passkeys
            .find_by_credential_for_user(user_id.to_string(), encode_id(raw_id))
            .await?
            .is_some())
    }

    /// Options for `navigator.credentials.get`, allowing only the caller's credentials.
    pub async fn start_authentication(
        &self,
        caller: &Principal,
    ) -> Result<RequestChallengeResponse, ServiceError> {
        let passkeys = self
            .owned_passkeys(caller.user_id)
            .await?
            .iter()
            .map(stored_passkey)
            .collect::<Result<Vec<_>, _>>()?;
        if passkeys.is_empty() {
            return Err(ServiceError::NoPasskeys);
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(ServiceError::internal)?;
        self.put_ceremony(
            ChallengeKey::new(caller.user_id, Ceremony::Authentication),
            &state,
        )
        .await?;
        Ok(options)
    }

    /// Verifies an assertion and, on success, issues a full-level token.
    pub async fn finish_authentication(
        &self,
        caller: &Principal,
        response: PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        self.check_limits(Action::PasskeyAuthentication, caller, client)
            .await?;
        let outcome = self.authenticate(caller, response, client).await;
        self.settle(caller, client, Ceremony::Authentication, outcome)
            .await
    }

    async fn authenticate(
        &self,
        caller: &Principal,
        response: PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<IssuedToken, Refusal> {
        let user_id = caller.user_id;
        let state: PasskeyAuthentication = self
            .take_ceremony(ChallengeKey::new(user_id, Ceremony::Authentication))
            .await?;

        let client_data: ClientDataFlags =
            serde_json::from_slice(&response.response.client_data_json)
                .map_err(|_| failed("clientDataJSON is not JSON"))?;
        if client_data.cross_origin {
            return Err(failed("crossOrigin assertion"));
        }
        if let Some(handle) = response.get_user_unique_id() {
            if handle != user_id.as_bytes() {
                return Err(failed("userHandle names another user"));
            }
        }

        let record = self
            .passkeys
            .find_by_credential_for_user(user_id.to_string(), encode_id(&response.raw_id))
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(|| failed("credential is not one of the caller's passkeys"))?;

        let result = match self
            .webauthn
            .finish_passkey_authentication(&response, &state)
        {
            Ok(result) => result,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                return Err(Refusal::CounterRegression {
                    passkey_id: record.id,
                })
            }
            Err(err) => return Err(failed(format!("{err:?}"))),
        };

        // The counter policy, against the stored value (the ceremony state
        // holds the value from when the options were made).
        let stored = record.sign_count;
        let presented = i64::from(result.counter());
        if (presented > 0 || stored > 0) && presented <= stored {
            return Err(Refusal::CounterRegression {
                passkey_id: record.id,
            });
        }

        let mut passkey = stored_passkey(&record)?;
        passkey.update_credential(&result);
        let event = self.audit.event(
            EventKind::PasskeyVerified,
            Some(user_id),
            client,
            Some(record.id.clone()),
        );
        let applied = self
            .passkeys
            .record_use(
                PasskeyUse {
                    id: record.id.clone(),
                    expected_sign_count: stored,
                    sign_count: presented.max(stored),
                    credential: serde_json::to_string(&passkey).map_err(ServiceError::internal)?,
                    backup_eligible: record.backup_eligible || result.backup_eligible(),
                    backup_state: result.backup_state(),
                    used_at: self.clock.now().naive_utc(),
                },
                event.clone(),
            )
            .await
            .map_err(ServiceError::from)?;
        if !applied {
            return Err(failed("a concurrent assertion updated the counter first"));
        }
        self.audit.log(&event);
        Ok(self
            .tokens
            .issue(
                &Subject::of(caller),
                Grant::new(AuthMethod::PasskeyStepUp, self.clock.now()),
                self.clock.now(),
            )
            .map_err(ServiceError::internal)?)
    }

    pub async fn list(&self, caller: &Principal) -> Result<Vec<PasskeySummary>, ServiceError> {
        Ok(self
            .owned_passkeys(caller.user_id)
            .await?
            .into_iter()
            .map(PasskeySummary::from)
            .collect())
    }

    pub async fn rename(
        &self,
        caller: &Principal,
        passkey_id: &str,
        nickname: Nickname,
        client: &ClientInfo,
    ) -> Result<PasskeySummary, ServiceError> {
        let id = Uuid::parse_str(passkey_id).map_err(|_| ServiceError::PasskeyNotFound)?;
        let event = self.audit.event(
            EventKind::PasskeyRenamed,
            Some(caller.user_id),
            client,
            Some(id.to_string()),
        );
        let record = self
            .passkeys
            .rename(
                caller.user_id.to_string(),
                id.to_string(),
                nickname.as_str().to_owned(),
                event.clone(),
            )
            .await?
            .ok_or(ServiceError::PasskeyNotFound)?;
        self.audit.log(&event);
        Ok(record.into())
    }

    pub async fn delete(
        &self,
        caller: &Principal,
        passkey_id: &str,
        client: &ClientInfo,
    ) -> Result<(), ServiceError> {
        let id = Uuid::parse_str(passkey_id).map_err(|_| ServiceError::PasskeyNotFound)?;
        let event = self.audit.event(
            EventKind::PasskeyDeleted,
            Some(caller.user_id),
            client,
            Some(id.to_string()),
        );
        let codes_event = self.audit.event(
            EventKind::RecoveryCodesDeleted,
            Some(caller.user_id),
            client,
            Some("last passkey deleted".into()),
        );
        let codes_gone = self
            .passkeys
            .delete(
                caller.user_id.to_string(),
                id.to_string(),
                event.clone(),
                codes_event.clone(),
            )
            .await?
            .ok_or(ServiceError::PasskeyNotFound)?;
        self.audit.log(&event);
        if codes_gone {
            self.audit.log(&codes_event);
        }
        Ok(())
    }
}
