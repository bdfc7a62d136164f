//! What every handler and guard can reach: the services, built once at
//! start by [`crate::startup`], which controllers and guards see only
//! through this type.

use std::sync::Arc;

use crate::clock::Clock;
use crate::services::auth::AuthService;
use crate::services::health::HealthService;
use crate::services::passkeys::PasskeyService;
use crate::services::sessions::SessionService;
use crate::services::step_up::StepUpPolicy;
use crate::services::tokens::TokenService;
use crate::telemetry::Metrics;

pub struct AppState {
    pub auth: AuthService,
    pub passkeys: PasskeyService,
    /// `PASSKEY_SIGN_IN`: off makes the sign-in routes answer 404.
    pub passkey_sign_in: bool,
    pub health: HealthService,
    pub tokens: Arc<TokenService>,
    pub step_up: StepUpPolicy,
    /// Asked by every guard whether the token's session has ended.
    pub sessions: SessionService,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub clock: Arc<dyn Clock>,
    /// The application's own metrics (no-op handles when they are off).
    pub metrics: Metrics,
}
