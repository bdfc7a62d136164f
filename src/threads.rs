//! Fixed pools of threads that the async workers hand blocking work to:
//! the database's queries (see [`crate::repositories::Database`]) and the
//! password hashes (see [`crate::services::hashing`]).
//!
//! Why not tokio's blocking pool: it keeps threads around (up to hundreds)
//! and wakes a sleeping one for every job it is given, even while a busy
//! thread is about to take the next job. A wake-up is a futex call, an
//! inter-processor interrupt and two context switches, and on a virtual
//! machine the interrupt costs a trip through the hypervisor; profiled
//! during the benchmark's step-ups, wake-ups took more of the server's CPU
//! than anything but the P-256 signature check. Here a pool has a fixed
//! number of threads, a thread that finishes a job takes the next one
//! without sleeping, and a job wakes a thread only when one is asleep and
//! none has been woken for it already: under load, when every thread is
//! busy, handing over work costs no wake-up at all.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the thread pool has stopped")]
    Stopped,
    #[error("a job on the thread pool panicked")]
    Panicked,
}

/// A fixed pool of named threads; cloning shares it. The threads stop when
/// the last clone is dropped, after the jobs already given.
#[derive(Clone)]
pub struct ThreadPool {
    shared: Arc<Shared>,
    /// Dropped with the last clone of the pool (the threads hold `shared`
    /// only), which tells them to stop.
    _owner: Arc<Owner>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    threads: usize,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting on `wake`.
    sleeping: usize,
    /// Sleeping threads already notified, not yet awake.
    woken: usize,
    stopped: bool,
}

struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.wake.notify_all();
    }
}

impl Shared {
    /// A poisoned lock is taken all the same: jobs run outside it, so no
    /// panic can leave the queue half-changed.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                // A panicking job loses its answer, not the thread.
                let _ = catch_unwind(AssertUnwindSafe(job));
                state = self.lock();
                continue;
            }
            if state.stopped {
                return;
            }
            state.sleeping += 1;
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            state.sleeping -= 1;
            state.woken = state.woken.saturating_sub(1);
        }
    }
}

/// This machine's cores (2 if the system does not say): the thread count
/// of a pool whose jobs are CPU work.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl ThreadPool {
    /// Starts `threads` threads (at least one) named `name-N`, each running
    /// `on_start` first.
    pub fn new(
        threads: usize,
        name: &str,
        on_start: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            wake: Condvar::new(),
            threads,
        });
        let on_start = Arc::new(on_start);
        let owner = Arc::new(Owner(shared.clone()));
        for n in 0..threads {
            let (shared, on_start) = (shared.clone(), on_start.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    on_start();
                    shared.work();
                })?;
        }
        Ok(ThreadPool {
            shared,
            _owner: owner,
        })
    }

    /// How many threads the pool has.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Jobs given that no thread has started yet.
    pub fn queue_depth(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Runs `work` on one of the pool's threads and waits for its result
    /// without blocking the async worker.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (answer, result) = oneshot::channel();
        self.submit(Box::new(move || {
            let _ = answer.send(work());
        }))?;
        result.await.map_err(|_| PoolError::Panicked)
    }

    fn submit(&self, job: Job) -> Result<(), PoolError> {
        let mut state = self.shared.lock();
        if state.stopped {
            return Err(PoolError::Stopped);
        }
        state.jobs.push_back(job);
        // A thread is needed only if more jobs wait than threads are on
        // their way to take them; a busy thread takes the job when done.
        if state.sleeping > state.woken && state.jobs.len() > state.woken {
            state.woken += 1;
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn pool(threads: usize) -> ThreadPool {
        ThreadPool::new(threads, "test", || {}).unwrap()
    }

    #[actix_web::test]
    async fn runs_work_and_survives_a_panicking_job() {
        let pool = pool(2);
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
        let panicked = pool.run(|| -> u8 { panic!("job bug") }).await;
        assert_eq!(panicked, Err(PoolError::Panicked));
        let results =
            futures_util::future::join_all((0..100).map(|i| pool.run(move || i * 2))).await;
        let values: Vec<i32> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(values, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[actix_web::test]
    async fn jobs_run_on_every_thread_at_once() {
        // Three jobs that each wait until all three have started: they
        // finish only if the three threads run them side by side.
        let pool = pool(3);
        let started = Arc::new(std::sync::Barrier::new(3));
        let jobs = (0..3).map(|_| {
            let started = started.clone();
            pool.run(move || {
                started.wait();
                std::thread::current().name().map(str::to_owned)
            })
        });
        let names = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::future::join_all(jobs),
        )
        .await
        .expect("the jobs did not run at once");
        let mut names: Vec<String> = names.into_iter().map(|n| n.unwrap().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["test-0", "test-1", "test-2"]);
    }

    #[test]
    fn counts_the_jobs_waiting_for_a_thread() {
        use futures_util::FutureExt;
        let pool = pool(1);
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        let (started_tx, started) = mpsc::channel();
        let (release_tx, release) = mpsc::channel::<()>();
        let mut busy = Box::pin(pool.run(move || {
            let _ = started_tx.send(());
            let _ = release.recv();
        }));
        assert!(busy.poll_unpin(&mut cx).is_pending());
        started.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(pool.queue_depth(), 0, "a running job is not waiting");
        let mut queued = Box::pin(pool.run(|| 1));
        assert!(queued.poll_unpin(&mut cx).is_pending());
        assert_eq!(pool.queue_depth(), 1);
        release_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.queue_depth() > 0 {
            assert!(Instant::now() < deadline, "the queue never drained");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn threads_run_their_start_hook_and_stop_with_the_pool() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let pool = ThreadPool::new(2, "hooked", move || {
            let name = std::thread::current().name().unwrap().to_owned();
            tx.lock().unwrap().send(name).unwrap();
        })
        .unwrap();
        let mut names: Vec<String> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["hooked-0", "hooked-1"]);
        let shared = pool.shared.clone();
        drop(pool);
        // Both threads leave, dropping their handle on the shared state.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&shared) > 1 {
            assert!(Instant::now() < deadline, "the threads did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
