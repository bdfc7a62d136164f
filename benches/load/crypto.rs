//! What an access token costs in CPU, measured in the benchmark process
//! with the server's own code: signing one (`KeyMaterial::sign`, what every
//! login, refresh and step-up does once) and verifying one that was never
//! seen before (the guard crate's `TokenVerifier::verify` on a token not in
//! its cache of verified tokens), for both algorithms, and, for comparison,
//! verifying a token the cache remembers (what a client repeating its token
//! costs).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use passkey_auth::services::signing::KeyMaterial;
use passkey_auth_guard::{AuthLevel, Claims, KeyAlgorithm, KeySet, TokenVerifier};
use uuid::Uuid;

/// Operations per timed batch, and batches per figure (the median batch
/// counts, robust to a neighbour's burst on a shared machine).
pub const BATCH: usize = 400;
pub const BATCHES: usize = 7;

/// One operation's cost: the median over the batches of the time per
/// operation, on the wall clock and in this thread's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct OpCost {
    pub ops: usize,
    pub wall: Duration,
    /// The thread's own CPU time per operation (unaffected by waiting for a
    /// core another process holds); `None` without a thread clock.
    pub cpu: Option<Duration>,
}

impl OpCost {
    pub fn wall_us(&self) -> f64 {
        self.wall.as_secs_f64() * 1e6
    }

    pub fn cpu_us(&self) -> Option<f64> {
        self.cpu.map(|d| d.as_secs_f64() * 1e6)
    }

    /// Operations per second one core does at this cost.
    pub fn per_core_second(&self) -> f64 {
        1.0 / self.wall.as_secs_f64().max(1e-12)
    }
}

/// The costs of one algorithm's tokens.
#[derive(Debug, Clone)]
pub struct TokenCosts {
    pub algorithm: KeyAlgorithm,
    pub token_bytes: usize,
    pub sign: OpCost,
    /// A token never verified before (the cache misses).
    pub verify: OpCost,
    /// The same token again (the cache hits).
    pub verify_cached: OpCost,
}

/// Claims as a password login issues them (`iss`/`aud` the defaults).
fn claims(now: i64) -> Claims {
    Claims {
        sub: Uuid::new_v4().to_string(),
        username: "lb-cost-user".into(),
        auth_level: AuthLevel::Password,
        acr: AuthLevel::Password,
        amr: vec!["pwd".into()],
        auth_time: now,
        iat: now,
        exp: now + 3600,
        iss: "passkey-auth".into(),
        aud: "passkey-auth".into(),
        jti: Uuid::new_v4().to_string(),
        sid: Uuid::new_v4().to_string(),
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// This thread's CPU time so far.
fn thread_cpu() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Times `op` over `BATCHES` batches of `BATCH` calls (`op` gets the call's
/// index, 0..BATCH*BATCHES) and returns the median batch's cost per call.
pub fn time<E: std::fmt::Display>(
    mut op: impl FnMut(usize) -> Result<(), E>,
) -> Result<OpCost, String> {
    let mut walls = Vec::with_capacity(BATCHES);
    let mut cpus = Vec::with_capacity(BATCHES);
    for batch in 0..BATCHES {
        let cpu_before = thread_cpu();
        let started = Instant::now();
        for i in 0..BATCH {
            op(batch * BATCH + i).map_err(|e| e.to_string())?;
        }
        walls.push(started.elapsed() / BATCH as u32);
        if let Some(cpu) = cpu_before
            .zip(thread_cpu())
            .map(|(a, b)| (b - a) / BATCH as u32)
        {
            cpus.push(cpu);
        }
    }
    walls.sort();
    cpus.sort();
    Ok(OpCost {
        ops: BATCH * BATCHES,
        wall: walls[walls.len() / 2],
        cpu: (cpus.len() == BATCHES).then(|| cpus[cpus.len() / 2]),
    })
}

/// Signs `BATCH * BATCHES` distinct tokens with a new key of `algorithm`,
/// then verifies each once (each is new to the verifier), then one of them
/// over and over (remembered).
pub fn measure(algorithm: KeyAlgorithm) -> Result<TokenCosts, String> {
    let key = KeyMaterial::generate(algorithm);
    let keys = KeySet::from_jwks(&[key.public_jwk().clone()]);
    let verifier = TokenVerifier::new("passkey-auth", "passkey-auth");
    let now = now_secs();
    // Distinct claims (each its own jti, sub and sid), built beforehand:
    // the figure is the signature and its encoding, which is what
    // `SigningKeys::sign` adds to a login.
    let all: Vec<Claims> = (0..BATCH * BATCHES).map(|_| claims(now)).collect();
    // Warm-up (caches, lazy tables) outside the timed batches.
    let warm = key.sign(&all[0]).map_err(|e| e.to_string())?;
    TokenVerifier::new("passkey-auth", "passkey-auth")
        .verify(&keys, &warm, now)
        .map_err(|e| format!("{algorithm} warm-up token refused: {e}"))?;

    let mut tokens = Vec::with_capacity(all.len());
    let sign = time(|i| {
        tokens.push(key.sign(&all[i])?);
        Ok::<_, serde_json::Error>(())
    })?;
    let verify = time(|i| verifier.verify(&keys, &tokens[i], now).map(drop))?;
    let repeated = &tokens[0];
    let verify_cached = time(|_| verifier.verify(&keys, repeated, now).map(drop))?;
    Ok(TokenCosts {
        algorithm,
        token_bytes: tokens[0].len(),
        sign,
        verify,
        verify_cached,
    })
}
