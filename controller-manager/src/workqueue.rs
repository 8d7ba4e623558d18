//! Work queues with client-go's semantics: a key is queued at most once,
//! is never handed to two workers at once (a key added while it is being
//! processed is queued again when `done`), can be added after a delay, and
//! failures are retried with upstream's default controller rate limiter:
//! the larger of a per-item exponential back-off (5 ms doubling to 1000 s)
//! and an overall token bucket (10 qps, burst 100). Every queue reports
//! upstream's `workqueue_*` metrics under its name.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub name: String,
}

fn duration_histogram() -> Histogram {
    // Upstream's buckets: 10ns … 10s in decades.
    Histogram::new((0..10).map(|i| 1e-8 * 10f64.powi(i)))
}

/// The `workqueue_*` metric families, shared by every queue.
#[derive(Clone)]
pub struct QueueMetrics {
    depth: Family<QueueLabel, Gauge>,
    adds: Family<QueueLabel, Counter>,
    retries: Family<QueueLabel, Counter>,
    queue_duration: Family<QueueLabel, Histogram, fn() -> Histogram>,
    work_duration: Family<QueueLabel, Histogram, fn() -> Histogram>,
    unfinished: Family<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    longest: Family<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl QueueMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = QueueMetrics {
            depth: Family::default(),
            adds: Family::default(),
            retries: Family::default(),
            queue_duration: Family::new_with_constructor(duration_histogram),
            work_duration: Family::new_with_constructor(duration_histogram),
            unfinished: Family::default(),
            longest: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("workqueue");
        r.register("depth", "Current depth of workqueue", m.depth.clone());
        r.register("adds", "Total number of adds handled by workqueue", m.adds.clone());
        r.register(
            "retries",
            "Total number of retries handled by workqueue",
            m.retries.clone(),
        );
        r.register(
            "queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            m.queue_duration.clone(),
        );
        r.register(
            "work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            m.work_duration.clone(),
        );
        r.register(
            "unfinished_work_seconds",
            "How many seconds of work has done that is in progress and hasn't been observed by work_duration.",
            m.unfinished.clone(),
        );
        r.register(
            "longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            m.longest.clone(),
        );
        m
    }

    /// Metrics that go nowhere (unit tests).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }
}

/// Upstream's `DefaultControllerRateLimiter`.
struct RateLimiter {
    failures: HashMap<String, u32>,
    base: Duration,
    max: Duration,
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    fn new() -> Self {
        RateLimiter {
            failures: HashMap::new(),
            base: Duration::from_millis(5),
            max: Duration::from_secs(1000),
            qps: 10.0,
            burst: 100.0,
            tokens: 100.0,
            last: Instant::now(),
        }
    }

    fn when(&mut self, key: &str) -> Duration {
        let n = self.failures.entry(key.to_string()).or_insert(0);
        let exp = self.base.as_secs_f64() * 2f64.powi((*n).min(40) as i32);
        *n += 1;
        let backoff = Duration::from_secs_f64(exp.min(self.max.as_secs_f64()));
        // Token bucket: take a token, waiting for it if none is left.
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.qps).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        let bucket = if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        };
        backoff.max(bucket)
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashMap<String, Instant>,
    added_at: HashMap<String, Instant>,
    shutting_down: bool,
}

/// A rate-limited, delaying work queue of keys.
pub struct Queue {
    name: String,
    label: QueueLabel,
    state: Mutex<State>,
    limiter: Mutex<RateLimiter>,
    notify: Notify,
    metrics: QueueMetrics,
}

impl Queue {
    pub fn new(name: &str, metrics: QueueMetrics) -> Arc<Self> {
        let q = Arc::new(Queue {
            name: name.to_string(),
            label: QueueLabel { name: name.to_string() },
            state: Mutex::new(State::default()),
            limiter: Mutex::new(RateLimiter::new()),
            notify: Notify::new(),
            metrics,
        });
        // Unfinished work is reported every half second, as upstream.
        let weak = Arc::downgrade(&q);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let Some(q) = weak.upgrade() else { return };
                    q.update_unfinished();
                }
            });
        }
        q
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `key` unless it is queued already.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.state.lock();
        if s.shutting_down || s.dirty.contains(&key) {
            return;
        }
        self.metrics.adds.get_or_create(&self.label).inc();
        s.dirty.insert(key.clone());
        if s.processing.contains_key(&key) {
            return;
        }
        s.added_at.insert(key.clone(), Instant::now());
        s.queue.push_back(key);
        self.metrics.depth.get_or_create(&self.label).set(s.queue.len() as i64);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            return self.add(key);
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = weak.upgrade() {
                q.add(key);
            }
        });
    }

    /// Queues `key` again after its back-off (a failed sync).
    pub fn add_rate_limited(self: &Arc<Self>, key: impl Into<String>) {
        let key = key.into();
        let delay = self.limiter.lock().when(&key);
        self.metrics.retries.get_or_create(&self.label).inc();
        self.add_after(key, delay);
    }

    /// Clears `key`'s back-off (a successful sync).
    pub fn forget(&self, key: &str) {
        self.limiter.lock().failures.remove(key);
    }

    /// How many times `key` has failed since it was last forgotten.
    pub fn num_requeues(&self, key: &str) -> u32 {
        self.limiter.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process; `None` once shut down.
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    let now = Instant::now();
                    if let Some(t) = s.added_at.remove(&key) {
                        self.metrics
                            .queue_duration
                            .get_or_create(&self.label)
                            .observe(now.duration_since(t).as_secs_f64());
                    }
                    s.processing.insert(key.clone(), now);
                    self.metrics.depth.get_or_create(&self.label).set(s.queue.len() as i64);
                    return Some(key);
                }
                if s.shutting_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; queues it again if it was added meanwhile.
    pub fn done(&self, key: &str) {
        let mut s = self.state.lock();
        if let Some(t) = s.processing.remove(key) {
            self.metrics
                .work_duration
                .get_or_create(&self.label)
                .observe(t.elapsed().as_secs_f64());
        }
        if s.dirty.contains(key) {
            s.added_at.insert(key.to_string(), Instant::now());
            s.queue.push_back(key.to_string());
            self.metrics.depth.get_or_create(&self.label).set(s.queue.len() as i64);
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn shutdown(&self) {
        self.state.lock().shutting_down = true;
        self.notify.notify_waiters();
    }

    fn update_unfinished(&self) {
        let s = self.state.lock();
        let now = Instant::now();
        let mut total = 0.0;
        let mut longest: f64 = 0.0;
        for t in s.processing.values() {
            let d = now.duration_since(*t).as_secs_f64();
            total += d;
            longest = longest.max(d);
        }
        self.metrics.unfinished.get_or_create(&self.label).set(total);
        self.metrics.longest.get_or_create(&self.label).set(longest);
    }
}

/// Runs `workers` workers over `queue`: each takes a key, runs `sync`,
/// forgets the key's back-off on success and retries it rate-limited on
/// error (upstream's `processNextWorkItem`). A sync that panics is
/// reported and retried like a failed one (upstream's `HandleCrash`):
/// the key is never left marked as being processed.
pub fn run_workers<F, Fut>(queue: Arc<Queue>, workers: usize, sync: F)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let sync = Arc::new(sync);
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let sync = sync.clone();
        tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                let result = match tokio::spawn(sync(key.clone())).await {
                    Ok(r) => r,
                    Err(e) if e.is_panic() => {
                        tracing::error!(queue = %queue.name(), key = %key, "sync panicked; will retry");
                        Err(anyhow::anyhow!("sync panicked"))
                    }
                    Err(e) => Err(anyhow::anyhow!("sync cancelled: {e}")),
                };
                match result {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        tracing::info!(queue = %queue.name(), key = %key, error = %format!("{e:#}"), "sync failed; will retry");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_requeued_if_added_while_processing() {
        let q = Queue::new("t", QueueMetrics::unregistered());
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.get().await.unwrap();
        assert_eq!(k, "a");
        q.add("a"); // while processing: not handed out twice.
        assert_eq!(q.get().await.unwrap(), "b");
        assert!(q.is_empty());
        q.done("a");
        assert_eq!(q.get().await.unwrap(), "a");
        q.done("a");
        q.done("b");
        assert!(q.is_empty());
        q.shutdown();
        assert_eq!(q.get().await, None);
    }

    #[test]
    fn back_off_doubles_from_5ms_and_caps_at_1000s() {
        let mut r = RateLimiter::new();
        let got: Vec<Duration> = (0..4).map(|_| r.when("k")).collect();
        assert_eq!(
            got,
            [5, 10, 20, 40].map(Duration::from_millis).to_vec(),
            "per-item exponential back-off"
        );
        for _ in 0..40 {
            r.when("k");
        }
        assert!(r.when("k") <= Duration::from_secs(1000));
        r.failures.remove("k");
        assert_eq!(r.when("k"), Duration::from_millis(5));
    }

    #[test]
    fn the_bucket_limits_many_keys_to_10_per_second_after_a_burst_of_100() {
        let mut r = RateLimiter::new();
        let delays: Vec<Duration> = (0..120).map(|i| r.when(&format!("k{i}"))).collect();
        assert!(delays[..99].iter().all(|d| *d == Duration::from_millis(5)));
        // The 110th key waits about a second for its token.
        assert!(delays[109] > Duration::from_millis(900), "{:?}", delays[109]);
    }

    #[tokio::test]
    async fn a_panicking_sync_is_retried_not_stuck() {
        let q = Queue::new("t", QueueMetrics::unregistered());
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c = calls.clone();
        run_workers(q.clone(), 1, move |_k| {
            let c = c.clone();
            async move {
                if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    panic!("a bug in a sync");
                }
                Ok(())
            }
        });
        q.add("x");
        let deadline = Instant::now() + Duration::from_secs(5);
        while calls.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "the key was not retried after a panic");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        q.shutdown();
    }

    #[tokio::test]
    async fn failed_syncs_are_retried_and_success_forgets() {
        let q = Queue::new("t", QueueMetrics::unregistered());
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c = calls.clone();
        run_workers(q.clone(), 2, move |_k| {
            let c = c.clone();
            async move {
                if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                    anyhow::bail!("not yet")
                }
                Ok(())
            }
        });
        q.add("x");
        let deadline = Instant::now() + Duration::from_secs(5);
        while calls.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "retries did not happen");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Forgotten after the success.
        let deadline = Instant::now() + Duration::from_secs(5);
        while q.num_requeues("x") != 0 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        q.shutdown();
    }
}
