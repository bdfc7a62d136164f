//! Liveness and readiness: is the process up, and can it reach what it needs.

use std::sync::Arc;

use crate::repositories::Database;
use crate::stores::challenges::ChallengeStore;

/// Which dependencies answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub database: bool,
    pub challenge_store: bool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.database && self.challenge_store
    }
}

#[derive(Clone)]
pub struct HealthService {
    pub db: Database,
    pub challenges: Arc<dyn ChallengeStore>,
}

impl HealthService {
    pub async fn readiness(&self) -> Readiness {
        let (database, challenge_store) =
            futures_util::future::join(self.db.ping(), self.challenges.ping()).await;
        if let Err(err) = &database {
            log::warn!("readiness: database unreachable: {err}");
        }
        if let Err(err) = &challenge_store {
            log::warn!("readiness: challenge store unreachable: {err}");
        }
        Readiness {
            database: database.is_ok(),
            challenge_store: challenge_store.is_ok(),
        }
    }
}
