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

use super::challenges::{Ceremony, ChallengeKey, ChallengeStore};
use super::rate_limit::{Action, RateLimiter};
use super::tokens::{IssuedToken, Principal, TokenService};
use super::ServiceError;
use crate::clock::Clock;
use crate::domain::{AuthLevel, ClientInfo, Nickname};
use crate::repositories::passkeys::PasskeyUse;
use crate::repositories::{PasskeyRecord, PasskeyRepository, RepoError, UserRepository};

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
}

fn encode_id(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn stored_passkey(record: &PasskeyRecord) -> Result<Passkey, ServiceError> {
    serde_json::from_str(&record.credential).map_err(ServiceError::internal)
}

fn verification_failed(
    user_id: Uuid,
    ceremony: Ceremony,
    reason: impl std::fmt::Display,
) -> ServiceError {
    log::warn!(
        "passkey {} failed for user_id={user_id}: {reason}",
        ceremony.as_str()
    );
    ServiceError::PasskeyVerificationFailed
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
    ) -> Result<PasskeySummary, ServiceError> {
        self.limiter
            .check(
                Action::PasskeyRegistration,
                client.ip,
                &caller.user_id.to_string(),
            )
            .await?;
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
                return Err(ServiceError::CredentialExists)
            }
            Err(err) => {
                return Err(verification_failed(
                    caller.user_id,
                    Ceremony::Registration,
                    err,
                ))
            }
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
        match self.passkeys.insert(record.clone()).await {
            Ok(()) => {
                log::info!(
                    "passkey registered: user_id={} passkey_id={}",
                    caller.user_id,
                    record.id
                );
                Ok(record.into())
            }
            Err(RepoError::AlreadyExists) => {
                log::warn!(
                    "passkey registration refused: credential already registered (user_id={})",
                    caller.user_id
                );
                Err(ServiceError::CredentialExists)
            }
            Err(other) => Err(other.into()),
        }
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
        let user_id = caller.user_id;
        self.limiter
            .check(
                Action::PasskeyAuthentication,
                client.ip,
                &user_id.to_string(),
            )
            .await?;
        let fail = |reason: &dyn std::fmt::Display| {
            verification_failed(user_id, Ceremony::Authentication, reason)
        };
        let state: PasskeyAuthentication = self
            .take_ceremony(ChallengeKey::new(user_id, Ceremony::Authentication))
            .await?;

        let client_data: ClientDataFlags =
            serde_json::from_slice(&response.response.client_data_json)
                .map_err(|_| fail(&"clientDataJSON is not JSON"))?;
        if client_data.cross_origin {
            return Err(fail(&"crossOrigin assertion"));
        }
        if let Some(handle) = response.get_user_unique_id() {
            if handle != user_id.as_bytes() {
                return Err(fail(&"userHandle names another user"));
            }
        }

        let record = self
            .passkeys
            .find_by_credential_for_user(user_id.to_string(), encode_id(&response.raw_id))
            .await?
            .ok_or_else(|| fail(&"credential is not one of the caller's passkeys"))?;

        let result = match self
            .webauthn
            .finish_passkey_authentication(&response, &state)
        {
            Ok(result) => result,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                log::warn!(
                    "possible cloned authenticator: counter did not increase (user_id={user_id} passkey_id={})",
                    record.id
                );
                return Err(ServiceError::PasskeyVerificationFailed);
            }
            Err(err) => return Err(fail(&err)),
        };

        // The counter policy, against the stored value (the ceremony state
        // holds the value from when the options were made).
        let stored = record.sign_count;
        let presented = i64::from(result.counter());
        if (presented > 0 || stored > 0) && presented <= stored {
            log::warn!(
                "possible cloned authenticator: counter {presented} not above stored {stored} (user_id={user_id} passkey_id={})",
                record.id
            );
            return Err(ServiceError::PasskeyVerificationFailed);
        }

        let mut passkey = stored_passkey(&record)?;
        passkey.update_credential(&result);
        let applied = self
            .passkeys
            .record_use(PasskeyUse {
                id: record.id.clone(),
                expected_sign_count: stored,
                sign_count: presented.max(stored),
                credential: serde_json::to_string(&passkey).map_err(ServiceError::internal)?,
                backup_eligible: record.backup_eligible || result.backup_eligible(),
                backup_state: result.backup_state(),
                used_at: self.clock.now().naive_utc(),
            })
            .await?;
        if !applied {
            log::warn!(
                "passkey assertion lost a concurrent counter update (user_id={user_id} passkey_id={})",
                record.id
            );
            return Err(ServiceError::PasskeyVerificationFailed);
        }

        log::info!(
            "passkey verified: user_id={user_id} passkey_id={}",
            record.id
        );
        self.tokens
            .issue(user_id, &caller.username, AuthLevel::Full, self.clock.now())
            .map_err(ServiceError::internal)
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
    ) -> Result<PasskeySummary, ServiceError> {
        let id = Uuid::parse_str(passkey_id).map_err(|_| ServiceError::PasskeyNotFound)?;
        let record = self
            .passkeys
            .rename(
                caller.user_id.to_string(),
                id.to_string(),
                nickname.as_str().to_owned(),
            )
            .await?
            .ok_or(ServiceError::PasskeyNotFound)?;
        log::info!(
            "passkey renamed: user_id={} passkey_id={}",
            caller.user_id,
            record.id
        );
        Ok(record.into())
    }

    pub async fn delete(&self, caller: &Principal, passkey_id: &str) -> Result<(), ServiceError> {
        let id = Uuid::parse_str(passkey_id).map_err(|_| ServiceError::PasskeyNotFound)?;
        if !self
            .passkeys
            .delete(caller.user_id.to_string(), id.to_string())
            .await?
        {
            return Err(ServiceError::PasskeyNotFound);
        }
        log::info!(
            "passkey deleted: user_id={} passkey_id={id}",
            caller.user_id
        );
        Ok(())
    }
}
