//! State that lives outside the database: ceremony challenges, rate-limit
//! counters, ended sessions. One file per store, holding its trait and its
//! two implementations: in this process (the embedded default) and in Redis
//! (chosen by `REDIS_URL`, shared by every node). [`redis`] holds the
//! connection and names every Redis key this server writes.

pub mod challenges;
pub mod rate_limits;
pub mod redis;
pub mod sessions;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store holds as much as it may (its byte bound).
    #[error("store full")]
    Full,
}
