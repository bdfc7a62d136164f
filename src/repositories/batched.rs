//! Hot reads by key, answered in batches while the database is busy.
//!
//! A read that finds fewer than `limit` batches under way starts one at
//! once, alone: an idle server adds no wait. A read that finds `limit`
//! batches under way waits, with every other read arriving meanwhile, for
//! the next: those go to the database together, one blocking trip and one
//! round of statements for all of them. Under load the trips and round
//! trips per request fall, which is where the time of a short read goes
//! (thread hand-offs and the database's own per-statement work).
//!
//! No read is answered from an older one: a batch takes only the reads
//! that were waiting when it started, so every answer was read after its
//! request arrived, and a caller sees its own writes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::RepoError;

/// Loads the values of a batch of distinct keys; a key it leaves out has
/// no value (`None` to its reader).
pub type BatchLoader<K, V> =
    Arc<dyn Fn(Vec<K>) -> BoxFuture<'static, Result<HashMap<K, V>, RepoError>> + Send + Sync>;

type Answer<V> = oneshot::Sender<Result<Option<V>, RepoError>>;

/// One kind of read by key, batched (see the module's documentation).
pub struct Batched<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for Batched<K, V> {
    fn clone(&self) -> Self {
        Batched {
            shared: self.shared.clone(),
        }
    }
}

/// What one kind of batched read has done since start.
#[derive(Debug, Default)]
pub struct BatchCounts {
    /// Reads answered (values or failures).
    reads: AtomicU64,
    /// Batches loaded: trips to the database.
    batches: AtomicU64,
}

impl BatchCounts {
    /// (reads answered, batches loaded).
    pub fn get(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
        )
    }
}

struct Shared<K, V> {
    load: BatchLoader<K, V>,
    counts: Arc<BatchCounts>,
    /// Batches under way at most.
    limit: usize,
    /// Keys per batch at most.
    max_keys: usize,
    queue: Mutex<Queue<K, V>>,
}

struct Queue<K, V> {
    waiting: Vec<(K, Answer<V>)>,
    running: usize,
}

impl<K, V> Batched<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// At most `limit` batches under way, of at most `max_keys` keys each
    /// (both at least 1).
    pub fn new(limit: usize, max_keys: usize, load: BatchLoader<K, V>) -> Self {
        Batched {
            shared: Arc::new(Shared {
                load,
                counts: Arc::default(),
                limit: limit.max(1),
                max_keys: max_keys.max(1),
                queue: Mutex::new(Queue {
                    waiting: Vec::new(),
                    running: 0,
                }),
            }),
        }
    }

    /// What these reads have done, live.
    pub fn counts(&self) -> Arc<BatchCounts> {
        self.shared.counts.clone()
    }

    /// The value of `key`, read after this call began.
    pub async fn get(&self, key: K) -> Result<Option<V>, RepoError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.shared.lock();
            queue.waiting.push((key, answer));
            let start = queue.running < self.shared.limit;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            // A task of its own, so that the batch goes on for the others
            // if this reader's request is dropped.
            tokio::spawn(self.shared.clone().run());
        }
        answered
            .await
            .map_err(|_| RepoError::Blocking("a batched read was dropped".to_owned()))?
    }
}

impl<K, V> Shared<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<K, V>> {
        // The queue stays consistent under every panic point: a poisoned
        // lock is taken as it is.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The loop again, for [`Running`]'s drop: boxed, as the future's type
    /// would otherwise contain itself.
    fn restart(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.run())
    }

    /// Runs batches until no reader waits.
    async fn run(self: Arc<Self>) {
        let mut running = Running(Some(self.clone()));
        loop {
            let batch = {
                let mut queue = self.lock();
                // Readers whose requests were dropped need no answer.
                queue.waiting.retain(|(_, answer)| !answer.is_closed());
                if queue.waiting.is_empty() {
                    // Under the lock that readers queue under: a reader
                    // that comes after this sees a free place and starts
                    // a batch of its own.
                    queue.running -= 1;
                    running.0 = None;
                    return;
                }
                let take = queue.waiting.len().min(self.max_keys);
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            let mut keys: Vec<K> = Vec::with_capacity(batch.len());
            for (key, _) in &batch {
                if !keys.contains(key) {
                    keys.push(key.clone());
                }
            }
            let loaded = (self.load)(keys).await;
            self.counts.batches.fetch_add(1, Ordering::Relaxed);
            self.counts
                .reads
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            match loaded {
                Ok(values) => {
                    for (key, answer) in batch {
                        let _ = answer.send(Ok(values.get(&key).cloned()));
                    }
                }
                Err(err) => {
                    for (_, answer) in batch {
                        let _ = answer.send(Err(err.copy()));
                    }
                }
            }
        }
    }
}

/// A running batch loop's place, given back if the loop ends other than
/// by finding no reader (a panic in a loader, the runtime shutting down):
/// the readers still waiting get a new loop if a runtime is there to run
/// it, and the place is free for later readers either way.
struct Running<K, V>(Option<Arc<Shared<K, V>>>)
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static;

impl<K, V> Drop for Running<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else {
            return;
        };
        let mut queue = shared.lock();
        queue.running -= 1;
        if queue.waiting.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            queue.running += 1;
            drop(queue);
            runtime.spawn(shared.restart());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A loader that answers `key * 10` for even keys (odd ones have no
    /// value), after `delay`, and keeps every batch it was given.
    fn tens(delay: Duration, batches: Arc<Mutex<Vec<Vec<u32>>>>) -> BatchLoader<u32, u32> {
        Arc::new(move |keys: Vec<u32>| {
            let batches = batches.clone();
            Box::pin(async move {
                batches.lock().unwrap().push(keys.clone());
                tokio::time::sleep(delay).await;
                Ok(keys
                    .into_iter()
                    .filter(|k| k % 2 == 0)
                    .map(|k| (k, k * 10))
                    .collect())
            })
        })
    }

    #[tokio::test]
    async fn a_lone_read_goes_at_once_and_alone() {
        let batches = Arc::default();
        let reads = Batched::new(2, 64, tens(Duration::ZERO, Arc::clone(&batches)));
        assert_eq!(reads.get(4).await.unwrap(), Some(40));
        assert_eq!(reads.get(3).await.unwrap(), None);
        assert_eq!(*batches.lock().unwrap(), vec![vec![4], vec![3]]);
    }

    #[tokio::test]
    async fn reads_arriving_while_batches_run_go_together_and_each_gets_its_own_value() {
        let batches: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let reads = Batched::new(1, 64, tens(Duration::from_millis(50), Arc::clone(&batches)));
        let first = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get(2).await }
        });
        // The first batch is under way (its loader was called) before the
        // others arrive.
        while batches.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let later: Vec<_> = [8, 5, 6, 8]
            .into_iter()
            .map(|key| {
                let reads = reads.clone();
                tokio::spawn(async move { reads.get(key).await })
            })
            .collect();
        assert_eq!(first.await.unwrap().unwrap(), Some(20));
        let mut answers = Vec::new();
        for read in later {
            answers.push(read.await.unwrap().unwrap());
        }
        assert_eq!(answers, vec![Some(80), None, Some(60), Some(80)]);
        // One batch for the four that waited, each key once.
        assert_eq!(*batches.lock().unwrap(), vec![vec![2], vec![8, 5, 6]]);
        assert_eq!(reads.counts().get(), (5, 2));
    }

    #[tokio::test]
    async fn a_read_is_not_answered_by_a_batch_that_began_before_it() {
        // The value of every key is the version of the data when the batch
        // read it; a write bumps the version while the first batch runs.
        let version = Arc::new(AtomicUsize::new(1));
        let load: BatchLoader<u32, usize> = {
            let version = version.clone();
            Arc::new(move |keys: Vec<u32>| {
                let read = version.load(Ordering::SeqCst);
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Ok(keys.into_iter().map(|k| (k, read)).collect())
                })
            })
        };
        let reads = Batched::new(1, 64, load);
        let before = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get(7).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        version.store(2, Ordering::SeqCst);
        let after = reads.get(7).await.unwrap();
        assert_eq!(before.await.unwrap().unwrap(), Some(1));
        assert_eq!(
            after,
            Some(2),
            "the read after the write saw the data before it"
        );
    }

    #[tokio::test]
    async fn batches_hold_at_most_max_keys_and_every_reader_is_answered() {
        let batches: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let reads = Batched::new(2, 3, tens(Duration::from_millis(2), Arc::clone(&batches)));
        let tasks: Vec<_> = (0..40u32)
            .map(|key| {
                let reads = reads.clone();
                tokio::spawn(async move { (key, reads.get(key).await.unwrap()) })
            })
            .collect();
        for task in tasks {
            let (key, value) = task.await.unwrap();
            assert_eq!(value, (key % 2 == 0).then_some(key * 10));
        }
        let batches = batches.lock().unwrap();
        assert!(batches.iter().all(|keys| keys.len() <= 3), "{batches:?}");
        assert!(batches.len() < 40, "no read was batched: {batches:?}");
        let mut all: Vec<u32> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..40).collect::<Vec<_>>(), "each read loaded once");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_readers_and_the_next_batch_runs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let load: BatchLoader<u32, u32> = {
            let calls = calls.clone();
            Arc::new(move |keys: Vec<u32>| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if first {
                        Err(RepoError::Unavailable("down".to_owned()))
                    } else {
                        Ok(keys.into_iter().map(|k| (k, k)).collect())
                    }
                })
            })
        };
        let reads = Batched::new(1, 64, load);
        let first = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get(1).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get(2).await }
        });
        assert!(matches!(
            first.await.unwrap(),
            Err(RepoError::Unavailable(cause)) if cause == "down"
        ));
        assert_eq!(second.await.unwrap().unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_loader_that_panics_fails_its_readers_and_frees_its_place() {
        let calls = Arc::new(AtomicUsize::new(0));
        let load: BatchLoader<u32, u32> = {
            let calls = calls.clone();
            Arc::new(move |keys: Vec<u32>| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("a loader bug");
                }
                Box::pin(async move { Ok(keys.into_iter().map(|k| (k, k)).collect()) })
            })
        };
        let reads = Batched::new(1, 64, load);
        let first = reads.get(1).await;
        assert!(matches!(first, Err(RepoError::Blocking(_))), "{first:?}");
        // The one place was given back: the next read is answered.
        let next = tokio::time::timeout(Duration::from_secs(5), reads.get(2))
            .await
            .expect("a read after the panic was never answered");
        assert_eq!(next.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_dropped_reader_does_not_stop_the_batch_of_the_others() {
        let batches = Arc::default();
        let reads = Batched::new(1, 64, tens(Duration::from_millis(30), Arc::clone(&batches)));
        let starter = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get(2).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        // The reader that started the batch goes away; its batch goes on.
        starter.abort();
        let waiting = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get(4).await }
        });
        let dropped = tokio::spawn({
            let reads = reads.clone();
            async move { reads.get(6).await }
        });
        dropped.abort();
        assert_eq!(waiting.await.unwrap().unwrap(), Some(40));
        assert_eq!(*batches.lock().unwrap(), vec![vec![2], vec![4]]);
        // Nothing is left running: a new read starts a batch at once.
        assert_eq!(reads.get(8).await.unwrap(), Some(80));
    }
}
