//! Passkey ceremonies (through webauthn-rs), the counter policy, and the
//! caller's passkey management.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, Credential, DiscoverableAuthentication,
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Webauthn, WebauthnError,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use super::audit::{Audit, EventKind};
use super::rate_limit::{Action, RateLimiter};
use super::recovery::RecoveryCodes;
use super::tokens::{Grant, IssuedToken, Principal, Subject, TokenService};
use super::{outcome, ServiceError};
use crate::clock::Clock;
use crate::domain::{AuthLevel, AuthMethod, ClientInfo, Nickname};
use crate::repositories::passkeys::{CheckedUse, Enrolment, PasskeyUse};
use crate::repositories::EventRecord;
use crate::repositories::{PasskeyRecord, PasskeyRepository, RepoError, UserRepository};
use crate::stores::challenges::{Ceremony, ChallengeKey, ChallengeStore, Held};
use crate::telemetry::Metrics;

/// A passkey as clients see it: no public key, no counter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasskeySummary {
    pub id: String,
    pub credential_id: String,
    pub nickname: String,
    pub transports: Vec<String>,
    pub backup_eligible: bool,
    pub backup_state: bool,
    /// Whether the credential can sign in without a username (`credProps`);
    /// `None` when the authenticator did not say.
    pub discoverable: Option<bool>,
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
            discoverable: r.discoverable,
            created_at: r.created_at.and_utc(),
            last_used_at: r.last_used_at.map(|t| t.and_utc()),
        }
    }
}

/// A registered passkey; the account's first one comes with its recovery
/// codes, shown this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// A step-up's offered passkeys, by credential id: which stored
    /// passkey an assertion names. (A state stored without it offers none.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    offered: Vec<OfferedPasskey>,
}

/// A passkey a step-up offered: its credential id (base64url) and its id.
#[derive(Serialize, Deserialize)]
struct OfferedPasskey {
    credential_id: String,
    id: String,
}

/// The parts of an assertion's clientDataJSON read here: `crossOrigin`,
/// which webauthn-rs leaves unchecked, and, for a sign-in, the challenge
/// that finds the ceremony (webauthn-rs checks it against the state later).
#[derive(Deserialize)]
struct AssertionClientData {
    #[serde(default)]
    challenge: String,
    #[serde(default, rename = "crossOrigin")]
    cross_origin: bool,
}

/// The bytes a step-up's state counts as beyond its credentials: its
/// challenge, options and expiry (about what their JSON takes).
const STATE_BASE_WEIGHT: usize = 256;

/// The bytes a step-up's state offering `records` counts as in the
/// challenge store, roughly what its JSON would take, without serializing
/// it: the credentials (as stored) and the ids offered, and the challenge
/// and options beside them.
fn step_up_state_weight(records: &[PasskeyRecord]) -> usize {
    STATE_BASE_WEIGHT
        + records
            .iter()
            .map(|r| r.credential.len() + r.credential_id.len() + r.id.len())
            .sum::<usize>()
}

/// webauthn-rs's challenges are 32 bytes (43 base64url characters); a
/// longer one names no ceremony and is not looked up.
const MAX_CHALLENGE_LEN: usize = 128;

/// Who a passkey sign-in verified.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: Uuid,
    pub username: String,
}

/// The signature check an unknown credential gets instead of none, so that
/// it answers in the time a wrong signature takes: an ECDSA P-256
/// verification (what nearly every passkey uses) against a key no one holds.
pub struct DecoyVerifier {
    key: p256::ecdsa::VerifyingKey,
}

impl Default for DecoyVerifier {
    fn default() -> Self {
        let secret = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        DecoyVerifier {
            key: *secret.verifying_key(),
        }
    }
}

impl DecoyVerifier {
    fn verify(&self, response: &PublicKeyCredential) {
        use p256::ecdsa::signature::Verifier;
        use sha2::Sha256;
        let assertion = &response.response;
        let mut message: Vec<u8> = assertion.authenticator_data.to_vec();
        message.extend_from_slice(&Sha256::digest(&assertion.client_data_json[..]));
        let signature = p256::ecdsa::Signature::from_der(&assertion.signature[..])
            .or_else(|_| p256::ecdsa::Signature::from_der(&DECOY_SIGNATURE));
        if let Ok(signature) = signature {
            let _ = self.key.verify(&message, &signature);
        }
    }
}

/// A well-formed DER signature (r = s = 1), for a response whose signature
/// does not even parse: it is checked all the same.
const DECOY_SIGNATURE: [u8; 8] = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01];

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
    /// What an unknown credential's sign-in is checked against.
    pub decoy: Arc<DecoyVerifier>,
    /// Counts step-ups by outcome.
    pub metrics: Metrics,
}

fn encode_id(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored passkey as webauthn-rs takes it: the credential as
/// registered, with the counter and backup flags of their columns (an
/// assertion updates those, not the credential).
fn stored_passkey(record: &PasskeyRecord) -> Result<Passkey, ServiceError> {
    let mut credential: Credential = serde_json::from_str::<Passkey>(&record.credential)
        .map_err(ServiceError::internal)?
        .into();
    credential.counter = u32::try_from(record.sign_count).map_err(ServiceError::internal)?;
    credential.backup_eligible = record.backup_eligible;
    credential.backup_state = record.backup_state;
    Ok(credential.into())
}

/// What a verified assertion of the user's passkey `passkey_id` stores.
/// webauthn-rs has held its counter to the one the passkey had when it was
/// read (a regression is [`Refusal::CounterRegression`]); the
/// compare-and-set holds it to the stored one.
fn judge_assertion(
    passkey_id: String,
    user_id: Uuid,
    verified: Result<AuthenticationResult, WebauthnError>,
    used_at: chrono::NaiveDateTime,
) -> Result<PasskeyUse, Refusal> {
    let result = match verified {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            return Err(Refusal::CounterRegression { passkey_id })
        }
        Err(err) => return Err(failed(format!("{err:?}"))),
    };
    Ok(PasskeyUse {
        id: passkey_id,
        user_id: user_id.to_string(),
        sign_count: i64::from(result.counter()),
        backup_eligible: result.backup_eligible(),
        backup_state: result.backup_state(),
        used_at,
    })
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
    /// A sign-in's credential is not one of the named user's passkeys: a
    /// failure like [`Refusal::Failed`], but one that names no user (the
    /// handle may name no one).
    UnknownCredential(&'static str),
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
    /// Keeps a ceremony's state, serialized.
    async fn put_ceremony<S: Serialize>(
        &self,
        key: ChallengeKey,
        state: &S,
    ) -> Result<(), ServiceError> {
        let bytes = serde_json::to_vec(&self.pending(state, Vec::new())?)
            .map_err(ServiceError::internal)?;
        self.challenges.put(key, Held::Bytes(bytes)).await?;
        Ok(())
    }

    /// Keeps a step-up's state with the passkeys it offered: as it is in a
    /// store in this process, which counts it as `weight` bytes (every
    /// step-up is spared a JSON round trip of it), serialized elsewhere.
    async fn put_offering<S: Serialize + Send + Sync + 'static>(
        &self,
        key: ChallengeKey,
        state: S,
        offered: Vec<OfferedPasskey>,
        weight: usize,
    ) -> Result<(), ServiceError> {
        let pending = self.pending(state, offered)?;
        let held = if self.challenges.holds_values() {
            Held::Value {
                value: Arc::new(pending),
                weight,
            }
        } else {
            Held::Bytes(serde_json::to_vec(&pending).map_err(ServiceError::internal)?)
        };
        self.challenges.put(key, held).await?;
        Ok(())
    }

    /// `state` with the expiry of a ceremony begun now.
    fn pending<S>(
        &self,
        state: S,
        offered: Vec<OfferedPasskey>,
    ) -> Result<PendingCeremony<S>, ServiceError> {
        let ttl = chrono::Duration::from_std(self.challenge_ttl).map_err(ServiceError::internal)?;
        Ok(PendingCeremony {
            expires_at_ms: (self.clock.now() + ttl).timestamp_millis(),
            state,
            offered,
        })
    }

    /// Removes the ceremony state whatever happens next: a challenge serves
    /// one verify attempt, successful or not.
    async fn take_ceremony<S: DeserializeOwned + Send + Sync + 'static>(
        &self,
        key: ChallengeKey,
    ) -> Result<S, ServiceError> {
        let pending = self.take_offering(key).await?;
        Arc::try_unwrap(pending)
            .map(|pending| pending.state)
            .map_err(|_| ServiceError::internal("a ceremony state kept as a shared value"))
    }

    /// A ceremony's state with the passkeys it offered, removed as
    /// [`Self::take_ceremony`] removes it: parsed from its bytes, or as it
    /// was kept.
    async fn take_offering<S: DeserializeOwned + Send + Sync + 'static>(
        &self,
        key: ChallengeKey,
    ) -> Result<Arc<PendingCeremony<S>>, ServiceError> {
        let held = self
            .challenges
            .take(&key)
            .await?
            .ok_or(ServiceError::ChallengeExpired)?;
        let pending: Arc<PendingCeremony<S>> = match held {
            Held::Bytes(bytes) => {
                Arc::new(serde_json::from_slice(&bytes).map_err(ServiceError::internal)?)
            }
            Held::Value { value, .. } => value
                .downcast()
                .map_err(|_| ServiceError::internal("a ceremony state of another type"))?,
        };
        if pending.expires_at_ms <= self.clock.now().timestamp_millis() {
            return Err(ServiceError::ChallengeExpired);
        }
        Ok(pending)
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
        let (mut options, state) = self
            .webauthn
            .start_passkey_registration(
                caller.user_id,
                &user.username,
                &user.display_name,
                Some(exclude),
            )
            .map_err(ServiceError::internal)?;
        // webauthn-rs asks for a non-discoverable credential; ask for a
        // discoverable one, so new passkeys can sign in without a username.
        // Its verification takes either kind (the state requires none), and
        // credProps (requested) tells which one came.
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Preferred);
            selection.require_resident_key = false;
        }
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
        self.settle(
            Some(caller.user_id),
            client,
            Ceremony::Registration,
            outcome,
        )
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
            discoverable: response.extensions.cred_props.as_ref().and_then(|p| p.rk),
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
    /// `user_id`: whose ceremony it was, when known (a refused sign-in may
    /// name no one).
    async fn settle<T>(
        &self,
        user_id: Option<Uuid>,
        client: &ClientInfo,
        ceremony: Ceremony,
        outcome: Result<T, Refusal>,
    ) -> Result<T, ServiceError> {
        let failure_kind = match ceremony {
            Ceremony::Registration => EventKind::PasskeyRegistrationFailed,
            Ceremony::Authentication => EventKind::PasskeyVerificationFailed,
            Ceremony::SignIn => EventKind::PasskeySignInFailed,
        };
        let who = user_id.map_or_else(|| "unknown".to_owned(), |id| id.to_string());
        let failure = |reason: String| {
            log::warn!(
                "passkey {} failed for user_id={who}: {reason}",
                ceremony.as_str()
            );
            (
                failure_kind,
                reason,
                ServiceError::PasskeyVerificationFailed,
            )
        };
        let (kind, detail, error) = match outcome {
            Ok(value) => return Ok(value),
            Err(Refusal::Service(err)) => return Err(err),
            Err(Refusal::Failed(reason)) => failure(reason),
            Err(Refusal::UnknownCredential(reason)) => failure(reason.to_owned()),
            Err(Refusal::Exists) => {
                log::warn!(
                    "passkey registration refused: credential already registered (user_id={who})"
                );
                (
                    failure_kind,
                    "credential already registered".to_owned(),
                    ServiceError::CredentialExists,
                )
            }
            Err(Refusal::CounterRegression { passkey_id }) => {
                log::warn!("possible cloned authenticator: counter did not increase (user_id={who} passkey_id={passkey_id})");
                (
                    EventKind::CounterRegression,
                    passkey_id,
                    ServiceError::PasskeyVerificationFailed,
                )
            }
        };
        self.audit
            .record(kind, user_id, client, Some(detail))
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
        let records = self.owned_passkeys(caller.user_id).await?;
        let passkeys = records
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
        let weight = step_up_state_weight(&records);
        let offered = records
            .into_iter()
            .map(|record| OfferedPasskey {
                credential_id: record.credential_id,
                id: record.id,
            })
            .collect();
        self.put_offering(
            ChallengeKey::new(caller.user_id, Ceremony::Authentication),
            state,
            offered,
            weight,
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
        let result = self.step_up(caller, response, client).await;
        self.metrics.step_ups.record(outcome(&result));
        result
    }

    async fn step_up(
        &self,
        caller: &Principal,
        response: PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<IssuedToken, ServiceError> {
        self.check_limits(Action::PasskeyAuthentication, caller, client)
            .await?;
        let outcome = self.authenticate(caller, response, client).await;
        self.settle(
            Some(caller.user_id),
            client,
            Ceremony::Authentication,
            outcome,
        )
        .await
    }

    async fn authenticate(
        &self,
        caller: &Principal,
        response: PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<IssuedToken, Refusal> {
        let user_id = caller.user_id;
        let pending: Arc<PendingCeremony<PasskeyAuthentication>> = self
            .take_offering(ChallengeKey::new(user_id, Ceremony::Authentication))
            .await?;

        let client_data: AssertionClientData =
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

        // The ceremony offered the caller's passkeys as they were when the
        // options were made; webauthn-rs checks the assertion against the
        // one it names, and the compare-and-set against the stored counter.
        let credential_id = encode_id(&response.raw_id);
        let passkey_id = pending
            .offered
            .iter()
            .find(|offered| offered.credential_id == credential_id)
            .map(|offered| offered.id.clone())
            .ok_or_else(|| failed("credential is not one of the caller's passkeys"))?;
        let webauthn = self.webauthn.clone();
        let event = self.audit.event(
            EventKind::PasskeyVerified,
            Some(user_id),
            client,
            Some(passkey_id.clone()),
        );
        let used_at = self.clock.now().naive_utc();
        let regression = Refusal::CounterRegression {
            passkey_id: passkey_id.clone(),
        };
        let checked = self
            .passkeys
            .verify_and_record_use(move || {
                let verified = webauthn.finish_passkey_authentication(&response, &pending.state);
                Ok((
                    judge_assertion(passkey_id, user_id, verified, used_at)?,
                    event,
                ))
            })
            .await
            .map_err(ServiceError::from)?;
        self.recorded(checked, regression)?;
        Ok(self
            .tokens
            .issue(
                &Subject::of(caller),
                Grant::new(AuthMethod::PasskeyStepUp, self.clock.now()),
                self.clock.now(),
            )
            .map_err(ServiceError::internal)?)
    }

    /// What an assertion's trip to the database says: stored (and logged),
    /// or refused; a counter the stored one has reached meanwhile is
    /// refused as `not_newer`.
    fn recorded(&self, checked: CheckedUse<Refusal>, not_newer: Refusal) -> Result<(), Refusal> {
        match checked {
            CheckedUse::Recorded(event) => {
                self.audit.log(&event);
                Ok(())
            }
            CheckedUse::Refused(refusal) => Err(refusal),
            CheckedUse::NotNewer => Err(not_newer),
            CheckedUse::Gone => Err(failed("the passkey was deleted meanwhile")),
        }
    }

    /// A sign-in assertion of `user_id`'s passkey `credential_id`, checked
    /// and recorded in one trip to the database (see
    /// [`PasskeyRepository::check_and_record_use`]): `verify` checks the
    /// response against the stored passkey, on the query thread; an
    /// unknown credential is refused with what `unknown` says.
    async fn check_assertion<V, U>(
        &self,
        user_id: Uuid,
        credential_id: String,
        client: &ClientInfo,
        verify: V,
        unknown: U,
    ) -> Result<(), Refusal>
    where
        V: FnOnce(&Passkey) -> Result<AuthenticationResult, WebauthnError> + Send + 'static,
        U: FnOnce() -> Refusal + Send + 'static,
    {
        let event = self
            .audit
            .event(EventKind::PasskeyVerified, Some(user_id), client, None);
        let used_at = self.clock.now().naive_utc();
        let checked = self
            .passkeys
            .check_and_record_use(user_id.to_string(), credential_id, move |record| {
                let Some(record) = record else {
                    return Err(unknown());
                };
                let verified = verify(&stored_passkey(&record)?);
                let event = EventRecord {
                    detail: Some(record.id.clone()),
                    ..event
                };
                Ok((
                    judge_assertion(record.id, user_id, verified, used_at)?,
                    event,
                ))
            })
            .await
            .map_err(ServiceError::from)?;
        // The counter was read with the passkey: a later one came first.
        self.recorded(
            checked,
            failed("a concurrent assertion updated the counter first"),
        )
    }

    /// Options for a passkey sign-in: no user yet, an empty
    /// `allowCredentials` (the authenticator offers its discoverable
    /// credentials), the state kept under its own challenge.
    pub async fn start_sign_in(
        &self,
        client: &ClientInfo,
    ) -> Result<RequestChallengeResponse, ServiceError> {
        let limit = self
            .limiter
            .check_ip(Action::PasskeySignInOptions, client.ip)
            .await;
        self.audit
            .on_limit(limit, None, client, Action::PasskeySignInOptions)
            .await?;
        let (mut options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(ServiceError::internal)?;
        // webauthn-rs sets `mediation: conditional`; the page chooses it
        // (autofill) or not (a button), so the answer is `publicKey` alone.
        options.mediation = None;
        let challenge = encode_id(options.public_key.challenge.as_ref());
        self.put_ceremony(ChallengeKey::sign_in(&challenge), &state)
            .await?;
        Ok(options)
    }

    /// Verifies a sign-in assertion: the ceremony is found by the challenge
    /// in `clientDataJSON`, the user by `userHandle`, the passkey by its id
    /// among that user's. Every refusal is the same
    /// [`ServiceError::PasskeyVerificationFailed`], and an unknown
    /// credential costs a signature check as a known one does.
    pub async fn finish_sign_in(
        &self,
        response: PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<SignedIn, ServiceError> {
        // The bucket is named by a digest of the id: the id is the client's
        // and may be long, the digest is 32 characters.
        let credential_key = super::sha256_hex(&response.raw_id, 16);
        let limit = self
            .limiter
            .check(Action::PasskeySignIn, client.ip, &credential_key)
            .await;
        self.audit
            .on_limit(limit, None, client, Action::PasskeySignIn)
            .await?;
        let (user_id, outcome) = match self.sign_in(Arc::new(response), client).await {
            Ok(signed_in) => (Some(signed_in.user_id), Ok(signed_in)),
            Err((user_id, refusal)) => (user_id, Err(refusal)),
        };
        self.settle(user_id, client, Ceremony::SignIn, outcome)
            .await
    }

    /// The sign-in ceremony; a refusal names the user when one was found.
    async fn sign_in(
        &self,
        response: Arc<PublicKeyCredential>,
        client: &ClientInfo,
    ) -> Result<SignedIn, (Option<Uuid>, Refusal)> {
        let anonymous = |refusal: Refusal| (None, refusal);
        let client_data: AssertionClientData =
            serde_json::from_slice(&response.response.client_data_json)
                .map_err(|_| anonymous(failed("clientDataJSON is not JSON with a challenge")))?;
        if client_data.challenge.is_empty() || client_data.challenge.len() > MAX_CHALLENGE_LEN {
            return Err(anonymous(failed(
                "clientDataJSON names no usable challenge",
            )));
        }
        if client_data.cross_origin {
            return Err(anonymous(failed("crossOrigin assertion")));
        }
        let state: DiscoverableAuthentication = self
            .take_ceremony(ChallengeKey::sign_in(&client_data.challenge))
            .await
            .map_err(|err| match err {
                ServiceError::ChallengeExpired => {
                    anonymous(failed("no live sign-in ceremony for this challenge"))
                }
                other => anonymous(Refusal::Service(other)),
            })?;
        let user_id = response
            .get_user_unique_id()
            .and_then(|handle| Uuid::from_slice(handle).ok());
        let Some(user_id) = user_id else {
            // The same work as a wrong signature: a signature check. The
            // refusal names no user.
            self.decoy.verify(&response);
            return Err((None, failed("no userHandle naming a user")));
        };
        let (webauthn, decoy) = (self.webauthn.clone(), self.decoy.clone());
        let (to_verify, to_decoy) = (response.clone(), response.clone());
        let outcome = self
            .check_assertion(
                user_id,
                encode_id(&response.raw_id),
                client,
                move |stored| {
                    webauthn.finish_discoverable_authentication_v2(&to_verify, state, stored)
                },
                // The same work as a wrong signature. The handle may name
                // no one, so the refusal names no user.
                move || {
                    decoy.verify(&to_decoy);
                    Refusal::UnknownCredential("credential is not one of that user's passkeys")
                },
            )
            .await;
        match outcome {
            Ok(()) => {}
            Err(Refusal::UnknownCredential(reason)) => return Err((None, failed(reason))),
            Err(refusal) => return Err((Some(user_id), refusal)),
        }
        let named = |refusal: Refusal| (Some(user_id), refusal);
        let user = self
            .users
            .find_by_id(user_id.to_string())
            .await
            .map_err(|e| named(ServiceError::from(e).into()))?
            .ok_or_else(|| named(failed("the user is gone")))?;
        Ok(SignedIn {
            user_id,
            username: user.username,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored credential as webauthn-rs writes it, counter 2, no backup.
    fn credential_json() -> String {
        let coordinate = format!("[{}]", vec!["7"; 32].join(","));
        format!(
            r#"{{"cred":{{"cred_id":"AAECAw","cred":{{"type_":"ES256","key":{{"EC_EC2":{{"curve":"SECP256R1","x":{coordinate},"y":{coordinate}}}}}}},"counter":2,"transports":null,"user_verified":true,"backup_eligible":false,"backup_state":false,"registration_policy":"required","extensions":{{"cred_protect":"NotRequested","hmac_create_secret":"NotRequested"}},"attestation":{{"data":"None","metadata":"None"}},"attestation_format":"none"}}}}"#
        )
    }

    fn record(sign_count: i64, backup_eligible: bool, backup_state: bool) -> PasskeyRecord {
        PasskeyRecord {
            id: "id".into(),
            user_id: "user".into(),
            credential_id: "AAECAw".into(),
            credential: credential_json(),
            sign_count,
            transports: "[]".into(),
            nickname: "key".into(),
            backup_eligible,
            backup_state,
            created_at: chrono::NaiveDateTime::default(),
            last_used_at: None,
            discoverable: None,
        }
    }

    #[test]
    fn a_stored_passkey_takes_its_counter_and_flags_from_the_columns() {
        let credential: Credential = stored_passkey(&record(41, true, true)).unwrap().into();
        assert_eq!(credential.counter, 41);
        assert!(credential.backup_eligible && credential.backup_state);
        let credential: Credential = stored_passkey(&record(0, false, false)).unwrap().into();
        assert_eq!(credential.counter, 0);
        assert!(!credential.backup_eligible && !credential.backup_state);
        // A counter no authenticator can send is a fault, not a wrap.
        assert!(stored_passkey(&record(i64::from(u32::MAX) + 1, false, false)).is_err());
    }

    #[test]
    fn a_step_up_state_counts_about_what_its_json_would() {
        let webauthn = webauthn_rs::WebauthnBuilder::new(
            "localhost",
            &url::Url::parse("https://localhost").unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for passkeys in 1..=4 {
            let records: Vec<PasskeyRecord> = (0..passkeys)
                .map(|i| PasskeyRecord {
                    id: format!("id-{i}"),
                    ..record(2, false, false)
                })
                .collect();
            let stored: Vec<Passkey> = records.iter().map(|r| stored_passkey(r).unwrap()).collect();
            let (_, state) = webauthn.start_passkey_authentication(&stored).unwrap();
            let pending = PendingCeremony {
                expires_at_ms: i64::MAX,
                state,
                offered: records
                    .iter()
                    .map(|r| OfferedPasskey {
                        credential_id: r.credential_id.clone(),
                        id: r.id.clone(),
                    })
                    .collect(),
            };
            let json = serde_json::to_vec(&pending).unwrap().len() as f64;
            let weight = step_up_state_weight(&records) as f64;
            assert!(
                (0.75..=1.5).contains(&(weight / json)),
                "{passkeys} passkeys: weight {weight} against {json} bytes of JSON"
            );
        }
    }

    #[test]
    fn a_ceremony_stored_without_offered_passkeys_offers_none() {
        let pending: PendingCeremony<u8> =
            serde_json::from_str(r#"{"expires_at_ms":1,"state":7}"#).unwrap();
        assert!(pending.offered.is_empty());
        let bytes = serde_json::to_string(&pending).unwrap();
        assert_eq!(bytes, r#"{"expires_at_ms":1,"state":7}"#);
        let offered = PendingCeremony {
            expires_at_ms: 1,
            state: 7u8,
            offered: vec![OfferedPasskey {
                credential_id: "AAECAw".into(),
                id: "id".into(),
            }],
        };
        let again: PendingCeremony<u8> =
            serde_json::from_slice(&serde_json::to_vec(&offered).unwrap()).unwrap();
        assert_eq!(again.offered[0].id, "id");
    }
}
