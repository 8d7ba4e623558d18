//! The scheduling queue (upstream's `PriorityQueue`): an active queue in
//! priority order, a back-off queue of pods that failed recently, and the
//! unschedulable pods, moved back when a cluster event could make them fit
//! (by the events each rejecting plugin registered) or after five minutes.
//! Also the nominator: pods that preemption nominated to a node.
//!
//! [`SchedulingQueue`] is plain data; every time-dependent method takes
//! `now`, so tests drive it with made-up instants. [`Queue`] wraps it for
//! the scheduler: a mutex and a condition variable for the blocking pop.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::framework::runtime::Framework;
use crate::framework::{ClusterEvent, PodInfo};

/// Unschedulable pods are retried at least this often.
pub const UNSCHEDULABLE_MAX_STAY: Duration = Duration::from_secs(5 * 60);

/// A pod in the queue with its scheduling history.
#[derive(Clone, Debug)]
pub struct QueuedPodInfo {
    pub pod: Arc<PodInfo>,
    /// When it entered (or last re-entered) the queue; orders equal
    /// priorities and starts its back-off.
    pub timestamp: Instant,
    /// When it was first popped (the SLI latency's start).
    pub initial_attempt: Option<Instant>,
    /// When it was first added (the SLI's start as upstream's).
    pub first_added: Instant,
    pub attempts: u32,
    /// The plugins that rejected it last (what events may help).
    pub unschedulable_plugins: HashSet<&'static str>,
    /// Rejected by a PreEnqueue plugin (scheduling gates).
    pub gated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    Active(ActiveKey),
    Backoff((Instant, u64)),
    Unschedulable,
    Gated,
    /// Popped and being scheduled.
    InFlight,
}

/// PrioritySort's order: higher priority, then earlier timestamp (then
/// arrival, to keep keys unique).
type ActiveKey = (Reverse<i32>, Instant, u64);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PendingCounts {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub gated: usize,
}

pub struct SchedulingQueue {
    profiles: HashMap<String, Arc<Framework>>,
    entries: HashMap<String, (QueuedPodInfo, Location)>,
    active: BTreeMap<ActiveKey, String>,
    backoff: BTreeMap<(Instant, u64), String>,
    /// The uids whose location is `Unschedulable` (events scan only these).
    unschedulable: HashSet<String>,
    seq: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// Bumped on every pop; a pod that fails in cycle C goes to back-off
    /// instead of unschedulable if a move request came at or after C.
    scheduling_cycle: u64,
    move_request_cycle: u64,
    pod_cycle: HashMap<String, u64>,
    nominated: HashMap<String, (String, Arc<PodInfo>)>,
    nominated_by_node: Arc<HashMap<String, Vec<Arc<PodInfo>>>>,
    pub closed: bool,
}

impl SchedulingQueue {
    pub fn new(profiles: Vec<Arc<Framework>>, initial_backoff: Duration, max_backoff: Duration) -> Self {
        SchedulingQueue {
            profiles: profiles.into_iter().map(|f| (f.scheduler_name.clone(), f)).collect(),
            entries: HashMap::new(),
            active: BTreeMap::new(),
            backoff: BTreeMap::new(),
            unschedulable: HashSet::new(),
            seq: 0,
            initial_backoff,
            max_backoff,
            scheduling_cycle: 0,
            move_request_cycle: 0,
            pod_cycle: HashMap::new(),
            nominated: HashMap::new(),
            nominated_by_node: Arc::default(),
            closed: false,
        }
    }

    fn framework(&self, pod: &PodInfo) -> Option<&Arc<Framework>> {
        self.profiles.get(pod.scheduler_name())
    }

    /// Whether one of our profiles schedules this pod.
    pub fn responsible_for(&self, pod: &PodInfo) -> bool {
        self.framework(pod).is_some()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    pub fn counts(&self) -> PendingCounts {
        let mut c = PendingCounts::default();
        for (_, loc) in self.entries.values() {
            match loc {
                Location::Active(_) => c.active += 1,
                Location::Backoff(_) => c.backoff += 1,
                Location::Unschedulable => c.unschedulable += 1,
                Location::Gated => c.gated += 1,
                Location::InFlight => {}
            }
        }
        c
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn detach(&mut self, uid: &str) -> Option<QueuedPodInfo> {
        let (info, loc) = self.entries.remove(uid)?;
        match loc {
            Location::Active(k) => {
                self.active.remove(&k);
            }
            Location::Backoff(k) => {
                self.backoff.remove(&k);
            }
            Location::Unschedulable => {
                self.unschedulable.remove(uid);
            }
            _ => {}
        }
        Some(info)
    }

    fn put_active(&mut self, info: QueuedPodInfo) {
        let key = (Reverse(info.pod.priority), info.timestamp, self.next_seq());
        self.active.insert(key, info.pod.uid.clone());
        self.entries.insert(info.pod.uid.clone(), (info, Location::Active(key)));
    }

    fn put_backoff(&mut self, info: QueuedPodInfo, expiry: Instant) {
        let key = (expiry, self.next_seq());
        self.backoff.insert(key, info.pod.uid.clone());
        self.entries
            .insert(info.pod.uid.clone(), (info, Location::Backoff(key)));
    }

    /// The back-off after `attempts` failures: initial × 2^(attempts−1),
    /// at most the maximum.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }

    fn backoff_expiry(&self, info: &QueuedPodInfo) -> Instant {
        info.timestamp + self.backoff_duration(info.attempts)
    }

    /// Active if PreEnqueue lets it in, else gated.
    fn enqueue(&mut self, mut info: QueuedPodInfo, now: Instant) {
        let gate = self.framework(&info.pod).map(|f| f.run_pre_enqueue(&info.pod));
        match gate {
            Some(st) if !st.is_success() => {
                info.gated = true;
                info.unschedulable_plugins = [st.plugin].into_iter().collect();
                self.entries.insert(info.pod.uid.clone(), (info, Location::Gated));
            }
            _ => {
                info.gated = false;
                if info.attempts > 0 && self.backoff_expiry(&info) > now {
                    let expiry = self.backoff_expiry(&info);
                    self.put_backoff(info, expiry);
                } else {
                    self.put_active(info);
                }
            }
        }
    }

    /// A new unscheduled pod.
    pub fn add(&mut self, pod: Arc<PodInfo>, now: Instant) {
        if self.entries.contains_key(&pod.uid) {
            self.update(pod, now);
            return;
        }
        let info = QueuedPodInfo {
            pod,
            timestamp: now,
            initial_attempt: None,
            first_added: now,
            attempts: 0,
            unschedulable_plugins: HashSet::new(),
            gated: false,
        };
        self.enqueue(info, now);
    }

    /// The unscheduled pod changed: its new version replaces the queued one;
    /// an unschedulable or gated pod is tried again.
    pub fn update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let Some((_, loc)) = self.entries.get(&pod.uid) else {
            self.add(pod, now);
            return;
        };
        match *loc {
            Location::InFlight => {
                if let Some((info, _)) = self.entries.get_mut(&pod.uid) {
                    info.pod = pod;
                }
                // The failure handler sees a move request for this cycle.
                self.move_request_cycle = self.scheduling_cycle;
            }
            Location::Active(_) | Location::Backoff(_) => {
                let loc = *loc;
                if let Some(mut info) = self.detach(&pod.uid) {
                    info.pod = pod;
                    match loc {
                        Location::Backoff(k) => {
                            self.put_backoff(info, k.0);
                        }
                        _ => self.put_active(info),
                    }
                }
            }
            Location::Unschedulable | Location::Gated => {
                if let Some(mut info) = self.detach(&pod.uid) {
                    info.pod = pod;
                    self.enqueue(info, now);
                }
            }
        }
    }

    pub fn delete(&mut self, uid: &str) {
        self.detach(uid);
        self.pod_cycle.remove(uid);
        self.delete_nominated(uid);
    }

    /// The next pod to schedule, if any is active.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPodInfo> {
        let (_, uid) = self.active.pop_first()?;
        let (info, loc) = self.entries.get_mut(&uid)?;
        *loc = Location::InFlight;
        info.attempts += 1;
        info.initial_attempt.get_or_insert(now);
        self.scheduling_cycle += 1;
        self.pod_cycle.insert(uid, self.scheduling_cycle);
        Some(info.clone())
    }

    /// The popped pod was bound (or given up on): it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        if matches!(self.entries.get(uid), Some((_, Location::InFlight))) {
            self.entries.remove(uid);
        }
        self.pod_cycle.remove(uid);
    }

    /// The popped pod could not be scheduled. It waits as unschedulable,
    /// or in back-off if something changed during its attempt (or the
    /// failure was an error, not a verdict: `plugins` empty).
    pub fn add_unschedulable(&mut self, mut info: QueuedPodInfo, now: Instant) {
        let uid = info.pod.uid.clone();
        // Deleted while in flight: forget it.
        if !matches!(self.entries.get(&uid), Some((_, Location::InFlight))) {
            return;
        }
        if let Some((current, _)) = self.entries.get(&uid) {
            info.pod = current.pod.clone();
        }
        self.entries.remove(&uid);
        let cycle = self.pod_cycle.remove(&uid).unwrap_or(0);
        info.timestamp = now;
        if info.unschedulable_plugins.is_empty() || self.move_request_cycle >= cycle {
            let expiry = self.backoff_expiry(&info);
            self.put_backoff(info, expiry);
        } else {
            self.unschedulable.insert(uid.clone());
            self.entries.insert(uid, (info, Location::Unschedulable));
        }
    }

    /// Moves the unschedulable pods that `event` may help to back-off (or
    /// active when their back-off is over).
    pub fn move_all_to_active_or_backoff(&mut self, event: ClusterEvent, now: Instant) {
        self.move_request_cycle = self.scheduling_cycle;
        let candidates: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.entries.get(*uid).is_some_and(|(info, _)| {
                    self.framework(&info.pod)
                        .is_none_or(|f| f.event_may_help(&info.unschedulable_plugins, event))
                })
            })
            .cloned()
            .collect();
        for uid in candidates {
            if let Some(info) = self.detach(&uid) {
                self.requeue(info, now);
            }
        }
    }

    fn requeue(&mut self, info: QueuedPodInfo, now: Instant) {
        let expiry = self.backoff_expiry(&info);
        if expiry > now {
            self.put_backoff(info, expiry);
        } else {
            self.put_active(info);
        }
    }

    /// Pods whose back-off is over go to the active queue.
    pub fn flush_backoff_completed(&mut self, now: Instant) -> usize {
        let mut moved = 0;
        while let Some(entry) = self.backoff.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let uid = entry.remove();
            if let Some((info, _)) = self.entries.remove(&uid) {
                self.put_active(info);
                moved += 1;
            }
        }
        moved
    }

    /// Pods unschedulable for longer than the maximum stay are tried again.
    pub fn flush_unschedulable_left_over(&mut self, now: Instant) -> usize {
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.entries
                    .get(*uid)
                    .is_some_and(|(info, _)| now.duration_since(info.timestamp) > UNSCHEDULABLE_MAX_STAY)
            })
            .cloned()
            .collect();
        let n = stale.len();
        for uid in stale {
            if let Some(info) = self.detach(&uid) {
                self.requeue(info, now);
            }
        }
        n
    }

    /// Records that preemption nominated `pod` to `node`.
    pub fn add_nominated(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.nominated.insert(pod.uid.clone(), (node.to_string(), pod));
        self.rebuild_nominated();
    }

    pub fn delete_nominated(&mut self, uid: &str) {
        if self.nominated.remove(uid).is_some() {
            self.rebuild_nominated();
        }
    }

    fn rebuild_nominated(&mut self) {
        let mut by_node: HashMap<String, Vec<Arc<PodInfo>>> = HashMap::new();
        for (node, pod) in self.nominated.values() {
            by_node.entry(node.clone()).or_default().push(pod.clone());
        }
        self.nominated_by_node = Arc::new(by_node);
    }

    pub fn nominated_by_node(&self) -> Arc<HashMap<String, Vec<Arc<PodInfo>>>> {
        self.nominated_by_node.clone()
    }
}

/// The queue shared between the informers' handlers and the scheduling
/// loop: a blocking pop that wakes on every add.
pub struct Queue {
    pub inner: Mutex<SchedulingQueue>,
    ready: Condvar,
}

impl Queue {
    pub fn new(q: SchedulingQueue) -> Self {
        Queue {
            inner: Mutex::new(q),
            ready: Condvar::new(),
        }
    }

    /// Runs `f` on the queue and wakes the scheduling loop.
    pub fn with<R>(&self, f: impl FnOnce(&mut SchedulingQueue) -> R) -> R {
        let r = f(&mut self.inner.lock());
        self.ready.notify_one();
        r
    }

    /// Blocks until a pod is active (None once closed).
    pub fn pop(&self) -> Option<QueuedPodInfo> {
        let mut q = self.inner.lock();
        loop {
            if q.closed {
                return None;
            }
            if let Some(p) = q.pop(Instant::now()) {
                return Some(p);
            }
            self.ready.wait_for(&mut q, Duration::from_secs(1));
        }
    }

    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;
    use serde_json::json;

    fn queue() -> SchedulingQueue {
        let fwk = Arc::new(crate::profile::test_framework(Vec::new()));
        SchedulingQueue::new(vec![fwk], Duration::from_secs(1), Duration::from_secs(10))
    }

    fn p(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": name, "uid": name}, "spec": {"containers": [], "priority": priority}}),
        ))
    }

    fn failed(q: &mut SchedulingQueue, info: QueuedPodInfo, plugin: &'static str, now: Instant) {
        let mut info = info;
        info.unschedulable_plugins = [plugin].into_iter().collect();
        q.add_unschedulable(info, now);
    }

    #[test]
    fn pops_by_priority_then_age() {
        let mut q = queue();
        let t = Instant::now();
        q.add(p("old-low", 1), t);
        q.add(p("new-low", 1), t + Duration::from_millis(1));
        q.add(p("high", 10), t + Duration::from_millis(2));
        let order: Vec<String> = std::iter::from_fn(|| q.pop(t).map(|i| i.pod.name.clone())).collect();
        assert_eq!(order, ["high", "old-low", "new-low"]);
    }

    #[test]
    fn backoff_doubles_to_the_maximum() {
        let q = queue();
        let secs: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pod_moves_on_an_event_its_plugin_registered() {
        let mut q = queue();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let info = q.pop(t).unwrap();
        failed(&mut q, info, "NodeResourcesFit", t);
        assert_eq!(q.counts().unschedulable, 1);
        // A namespace change does not help a pod that lacked resources.
        q.move_all_to_active_or_backoff(ClusterEvent::NamespaceChange, t);
        assert_eq!(q.counts().unschedulable, 1);
        // A node added may: it goes to back-off (its 1 s is not over)…
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd, t + Duration::from_millis(100));
        assert_eq!(q.counts().backoff, 1);
        assert!(q.pop(t + Duration::from_millis(100)).is_none());
        // …and to the active queue once it is.
        assert_eq!(q.flush_backoff_completed(t + Duration::from_millis(999)), 0);
        assert_eq!(q.flush_backoff_completed(t + Duration::from_secs(1)), 1);
        assert_eq!(q.pop(t + Duration::from_secs(1)).unwrap().attempts, 2);
    }

    #[test]
    fn event_during_the_attempt_sends_the_pod_to_backoff() {
        let mut q = queue();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let info = q.pop(t).unwrap();
        // A node appeared while the pod was being scheduled.
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd, t);
        failed(&mut q, info, "NodeResourcesFit", t);
        assert_eq!(
            q.counts(),
            PendingCounts {
                backoff: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn unschedulable_pods_are_flushed_after_five_minutes() {
        let mut q = queue();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let info = q.pop(t).unwrap();
        failed(&mut q, info, "NodeResourcesFit", t);
        assert_eq!(q.flush_unschedulable_left_over(t + Duration::from_secs(299)), 0);
        assert_eq!(q.flush_unschedulable_left_over(t + Duration::from_secs(301)), 1);
        assert!(q.pop(t + Duration::from_secs(301)).is_some());
    }

    #[test]
    fn gated_pods_wait_until_their_gates_are_removed() {
        let mut q = queue();
        let t = Instant::now();
        let gated = Arc::new(pod(
            json!({"metadata": {"name": "g", "uid": "g"}, "spec": {"containers": [], "schedulingGates": [{"name": "x"}]}}),
        ));
        q.add(gated, t);
        assert_eq!(q.counts().gated, 1);
        assert!(q.pop(t).is_none());
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd, t);
        assert_eq!(q.counts().gated, 1, "events do not ungate");
        q.update(p("g", 0), t);
        assert_eq!(q.pop(t).unwrap().pod.name, "g");
    }

    #[test]
    fn deleted_in_flight_pod_is_not_requeued() {
        let mut q = queue();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let info = q.pop(t).unwrap();
        q.delete("a");
        failed(&mut q, info, "NodeResourcesFit", t);
        assert_eq!(q.counts(), PendingCounts::default());
        assert!(!q.contains("a"));
    }

    #[test]
    fn nominated_pods_are_listed_by_node() {
        let mut q = queue();
        q.add_nominated(p("a", 5), "n1");
        q.add_nominated(p("b", 5), "n1");
        assert_eq!(q.nominated_by_node().get("n1").map(|v| v.len()), Some(2));
        q.delete("a");
        assert_eq!(q.nominated_by_node().get("n1").map(|v| v.len()), Some(1));
    }
}
