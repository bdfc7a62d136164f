//! Password hashing on its own small pool of low-priority threads.
//!
//! Argon2id is deliberately expensive (tens of milliseconds of CPU and
//! 19 MiB each). Run on a general blocking pool, a login flood starts as
//! many hashes at once as there are requests, and they compete on equal
//! terms with the async workers that answer every other route. Here there
//! are exactly as many hashing threads as cores, so hashes queue instead of
//! thrashing, and each thread runs in Linux's SCHED_IDLE class (or, if that
//! is refused, at nice [`HASHING_NICE`]): the kernel preempts a hash as soon
//! as an async worker has something to do, so guarded routes stay fast
//! during a login flood, while CPU time the workers do not need still goes
//! to hashing at full speed. The price: while the workers keep every core
//! busy, logins wait.

use std::time::Instant;

use metrics::Histogram;

pub use crate::threads::PoolError;
use crate::threads::ThreadPool;

/// The nice value of hashing threads (0 is normal, 19 the lowest).
pub const HASHING_NICE: i32 = 10;

#[derive(Clone)]
pub struct HashingPool {
    threads: ThreadPool,
    /// How long each job takes on its thread (a no-op unless metrics are on).
    job_time: Histogram,
}

impl HashingPool {
    /// Starts `threads` hashing threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        Ok(HashingPool {
            threads: ThreadPool::new(threads, "argon2", lower_priority)?,
            job_time: Histogram::noop(),
        })
    }

    /// Records each job's time on its thread in `job_time`.
    pub fn timed(mut self, job_time: Histogram) -> Self {
        self.job_time = job_time;
        self
    }

    /// Jobs waiting for a hashing thread now.
    pub fn queue_depth(&self) -> usize {
        self.threads.queue_depth()
    }

    /// One thread per core: with it, logins reach 96% of the cores / hash
    /// time ceiling (BENCHMARKS.md), so more threads would only queue.
    pub fn per_core() -> std::io::Result<Self> {
        Self::new(crate::threads::cores())
    }

    /// Runs `work` on the pool and waits for its result without blocking
    /// the async worker.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let job_time = self.job_time.clone();
        self.threads
            .run(move || {
                let started = Instant::now();
                let done = work();
                job_time.record(started.elapsed().as_secs_f64());
                done
            })
            .await
    }
}

/// Puts the calling thread in Linux's SCHED_IDLE class: it runs on CPU time
/// no normal thread wants, and the kernel preempts it at once when a normal
/// thread (an async worker) wakes up. If that is refused, it falls back to
/// a nice value. Best effort: elsewhere the thread keeps normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: the pointer is to a live sched_param; pid 0 is this thread.
        let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0;
        // SAFETY: setpriority only reads its integer arguments.
        let niced = idle || unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICE) } == 0;
        if !niced {
            log::warn!("could not lower the priority of a hashing thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn runs_work_and_survives_a_panicking_job() {
        let pool = HashingPool::new(2).unwrap();
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
        let panicked = pool.run(|| -> u8 { panic!("job bug") }).await;
        assert!(matches!(panicked, Err(PoolError::Panicked)));
        let results =
            futures_util::future::join_all((0..10).map(|i| pool.run(move || i * 2))).await;
        let values: Vec<i32> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(values, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[cfg(target_os = "linux")]
    #[actix_web::test]
    async fn hashing_threads_run_at_idle_priority() {
        let pool = HashingPool::new(1).unwrap();
        // SAFETY: both calls only read their integer arguments.
        let (policy, nice) = pool
            .run(|| unsafe {
                (
                    libc::sched_getscheduler(0),
                    libc::getpriority(libc::PRIO_PROCESS, 0),
                )
            })
            .await
            .unwrap();
        assert!(
            policy == libc::SCHED_IDLE || nice == HASHING_NICE,
            "policy {policy}, nice {nice}"
        );
    }
}
