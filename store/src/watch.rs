//! Watches: every watcher tails the store's revision history on its own.
//!
//! The Raft thread publishes each new revision's events into the
//! [`WatchHub`], a bounded in-memory window of recent revisions, and bumps a
//! revision counter. A [`Watcher`] remembers the next revision it owes its
//! client and reads forward from there: from the window when it still holds
//! that revision, otherwise from the on-disk history. So:
//!
//! * publishing never waits for a watcher (a slow watcher only falls behind
//!   the window and reads from disk later);
//! * nothing is lost or repeated: each watcher's position only moves past
//!   revisions it has returned;
//! * a revision's events are always returned together;
//! * a watcher that falls behind a compaction fails with
//!   [`StoreError::Compacted`] instead of skipping events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use proto::mvccpb::{Event, event::EventType};
use tokio::sync::{Notify, watch as tokio_watch};

use crate::error::{Result, StoreError};
use crate::mvcc::{Mvcc, RevisionEvents, key_in_range};

/// Revisions kept in memory, and the byte budget for them.
const WINDOW_REVISIONS: usize = 8192;
const WINDOW_BYTES: usize = 64 << 20;
/// Revisions read from disk per step of a lagging watcher.
const HISTORY_STEP: i64 = 1024;

pub struct WatchHub {
    window: Mutex<Window>,
    capacity: usize,
    revision: tokio_watch::Sender<i64>,
}

#[derive(Default)]
struct Window {
    /// Revisions with their approximate sizes.
    revs: VecDeque<(Arc<RevisionEvents>, usize)>,
    bytes: usize,
    /// The newest published revision, read together with the watchers'
    /// `pending` flags.
    revision: i64,
    /// Every watcher's range; dropped watchers are pruned on publish.
    interests: Vec<Weak<Interest>>,
}

/// A watcher's registration with the hub: a watcher is woken only by a
/// revision with an event in its range (or when asked for progress), not
/// by every write. (Waking every watcher per revision cost each write a
/// wakeup per watch cache and per watch on every apiserver.)
struct Interest {
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// A revision published since the watcher last polled the hub has an
    /// event in range. Set and taken under the window lock.
    pending: AtomicBool,
    /// A [`ProgressRequester`] asked for progress.
    progress_wanted: AtomicBool,
    wake: Notify,
}

impl Interest {
    fn matches(&self, events: &RevisionEvents) -> bool {
        events.events.iter().any(|e| {
            e.kv.as_ref()
                .is_some_and(|kv| key_in_range(&kv.key, &self.key, &self.range_end))
        })
    }
}

/// Asks a [`Watcher`] how far it has seen (see [`Watcher::progress_requester`]).
#[derive(Clone)]
pub struct ProgressRequester(Arc<Interest>);

impl ProgressRequester {
    /// The watcher's next [`WatchItem`] (or the one it is waiting for now)
    /// is progress up to at least the revision published before this
    /// call, unless it has events to return first.
    pub fn request(&self) {
        self.0.progress_wanted.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

fn approx_size(r: &RevisionEvents) -> usize {
    r.events
        .iter()
        .map(|e| {
            64 + e.kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len())
                + e.prev_kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len())
        })
        .sum()
}

impl WatchHub {
    pub fn new(current_revision: i64) -> Arc<Self> {
        Self::with_capacity(current_revision, WINDOW_REVISIONS)
    }

    /// A hub keeping at most `capacity` revisions in memory.
    pub fn with_capacity(current_revision: i64, capacity: usize) -> Arc<Self> {
        let (tx, _) = tokio_watch::channel(current_revision);
        Arc::new(Self {
            window: Mutex::new(Window {
                revision: current_revision,
                ..Window::default()
            }),
            capacity: capacity.max(1),
            revision: tx,
        })
    }

    /// Adds a committed revision. Called by the Raft thread, in order.
    pub fn publish(&self, events: RevisionEvents) {
        let rev = events.revision;
        let mut woken = Vec::new();
        {
            let mut w = self.window.lock();
            w.interests.retain(|i| {
                let Some(i) = i.upgrade() else { return false };
                if !i.pending.load(Ordering::Relaxed) && i.matches(&events) {
                    i.pending.store(true, Ordering::Relaxed);
                    woken.push(i);
                }
                true
            });
            let size = approx_size(&events);
            w.bytes += size;
            w.revs.push_back((Arc::new(events), size));
            while w.revs.len() > self.capacity || (w.bytes > WINDOW_BYTES && w.revs.len() > 1) {
                if let Some((_, size)) = w.revs.pop_front() {
                    w.bytes -= size;
                }
            }
            w.revision = rev;
        }
        for i in woken {
            i.wake.notify_one();
        }
        self.revision.send_replace(rev);
    }

    /// Forgets the window after the state was replaced by a snapshot;
    /// every watcher reads on from the store.
    pub fn reset(&self, current_revision: i64) {
        let interests: Vec<Arc<Interest>> = {
            let mut w = self.window.lock();
            let interests = std::mem::take(&mut w.interests);
            *w = Window {
                revision: current_revision,
                interests,
                ..Window::default()
            };
            w.interests.iter().filter_map(Weak::upgrade).collect()
        };
        for i in interests {
            i.pending.store(true, Ordering::Relaxed);
            i.wake.notify_one();
        }
        self.revision.send_replace(current_revision);
    }

    /// Registers a watcher's range; returns it with the newest revision.
    fn register(&self, key: &[u8], range_end: &[u8]) -> (Arc<Interest>, i64) {
        let interest = Arc::new(Interest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            pending: AtomicBool::new(false),
            progress_wanted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let mut w = self.window.lock();
        // Dropped watchers go here too, for a store without writes.
        w.interests.retain(|i| i.strong_count() > 0);
        w.interests.push(Arc::downgrade(&interest));
        (interest, w.revision)
    }

    /// The newest revision, and whether any revision since the watcher
    /// last asked had an event in its range.
    fn poll(&self, interest: &Interest) -> (i64, bool) {
        let w = self.window.lock();
        (w.revision, interest.pending.swap(false, Ordering::Relaxed))
    }

    pub fn current_revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Follows the newest applied revision.
    pub fn subscribe_revision(&self) -> tokio_watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// Revisions `from..=to` if the window holds all of them.
    fn window_range(&self, from: i64, to: i64, max_events: usize) -> Option<Vec<Arc<RevisionEvents>>> {
        let w = self.window.lock();
        let first = w.revs.front()?.0.revision;
        if from < first {
            return None;
        }
        let start = w.revs.partition_point(|(r, _)| r.revision < from);
        let mut out = Vec::new();
        let mut n = 0;
        for (r, _) in w.revs.iter().skip(start) {
            if r.revision > to || (n >= max_events && !out.is_empty()) {
                break;
            }
            n += r.events.len();
            out.push(r.clone());
        }
        Some(out)
    }
}

/// What a watcher asked for.
#[derive(Clone, Debug, Default)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// First revision to return; 0 means "after the current one".
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

/// What a watcher yields.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchItem {
    /// Events of whole revisions, in order; `revision` is the newest
    /// revision the watcher has now covered.
    Events { revision: i64, events: Vec<Event> },
    /// No events up to `revision` (a progress notification).
    Progress { revision: i64 },
}

pub struct Watcher {
    spec: WatchSpec,
    next: i64,
    mvcc: Arc<Mvcc>,
    hub: Arc<WatchHub>,
    interest: Arc<Interest>,
    /// Revisions up to here may hold events for this watcher: those before
    /// it registered, then those up to where the hub last said a revision
    /// in range was published.
    read_to: i64,
}

impl Watcher {
    pub fn new(mvcc: Arc<Mvcc>, hub: Arc<WatchHub>, spec: WatchSpec) -> Result<Self> {
        let (interest, current) = hub.register(&spec.key, &spec.range_end);
        let next = if spec.start_revision > 0 {
            spec.start_revision
        } else {
            current + 1
        };
        let compacted = mvcc.compacted_revision();
        if next <= compacted {
            return Err(StoreError::Compacted {
                compact_revision: compacted,
            });
        }
        Ok(Self {
            spec,
            next,
            mvcc,
            hub,
            interest,
            read_to: current,
        })
    }

    /// A handle that makes this watcher report how far it has seen, so
    /// that a consumer (the apiserver's watch cache) can learn it has
    /// caught up with a revision that had nothing for it.
    pub fn progress_requester(&self) -> ProgressRequester {
        ProgressRequester(self.interest.clone())
    }

    /// The next revision this watcher will return.
    pub fn next_revision(&self) -> i64 {
        self.next
    }

    /// Waits for matching events. If `progress_at` passes while the watcher
    /// is caught up and has nothing to return, or progress was requested,
    /// yields a progress item.
    pub async fn next(&mut self, max_events: usize, progress_at: Option<Instant>) -> Result<WatchItem> {
        loop {
            if self.next <= self.read_to {
                let (covered, events) = self.read(self.read_to, max_events).await?;
                self.next = covered + 1;
                if !events.is_empty() {
                    return Ok(WatchItem::Events {
                        revision: covered,
                        events,
                    });
                }
                continue;
            }
            if self.catch_up() {
                continue;
            }
            if self.interest.progress_wanted.swap(false, Ordering::AcqRel) {
                return Ok(WatchItem::Progress {
                    revision: self.next - 1,
                });
            }
            let woken = self.interest.wake.notified();
            match progress_at {
                Some(at) => {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep_until(at.into()) => {
                            // Progress as of now, unless events came first.
                            if self.catch_up() {
                                continue;
                            }
                            return Ok(WatchItem::Progress { revision: self.next - 1 });
                        }
                    }
                }
                None => woken.await,
            }
        }
    }

    /// Asks the hub what was published since: true if revisions up to the
    /// newest may hold events to read; otherwise moves past them.
    fn catch_up(&mut self) -> bool {
        let (current, pending) = self.hub.poll(&self.interest);
        if pending {
            self.read_to = current;
            return self.next <= current;
        }
        self.next = self.next.max(current + 1);
        false
    }

    /// Reads forward from `self.next`, up to `current`. Returns the last
    /// revision covered and the matching events.
    async fn read(&self, current: i64, max_events: usize) -> Result<(i64, Vec<Event>)> {
        let revs = match self.hub.window_range(self.next, current, max_events) {
            Some(revs) if !revs.is_empty() => revs,
            _ => {
                let (mvcc, from, spec) = (self.mvcc.clone(), self.next, self.spec.clone());
                let to = current.min(from + HISTORY_STEP - 1);
                let revs = tokio::task::spawn_blocking(move || {
                    mvcc.history(from, to, &spec.key, &spec.range_end, spec.prev_kv)
                })
                .await
                .map_err(|e| StoreError::Storage(format!("history read: {e}")))??;
                let events = revs
                    .into_iter()
                    .flat_map(|r| r.events)
                    .filter(|e| self.wants(e))
                    .collect();
                return Ok((to, events));
            }
        };
        let covered = revs.last().map_or(self.next - 1, |r| r.revision);
        let mut events = Vec::new();
        for r in revs {
            for e in &r.events {
                if self.wants(e) {
                    let mut e = e.clone();
                    if !self.spec.prev_kv {
                        e.prev_kv = None;
                    }
                    events.push(e);
                }
            }
        }
        Ok((covered, events))
    }

    fn wants(&self, e: &Event) -> bool {
        let Some(kv) = &e.kv else { return false };
        if !key_in_range(&kv.key, &self.spec.key, &self.spec.range_end) {
            return false;
        }
        let is_put = e.r#type == EventType::Put as i32;
        !(is_put && self.spec.no_put || !is_put && self.spec.no_delete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::etcdserverpb as pb;
    use proto::storepb::internal_request::Request as InternalReq;

    struct Fixture {
        _dir: tempfile::TempDir,
        mvcc: Arc<Mvcc>,
        hub: Arc<WatchHub>,
        index: u64,
    }

    impl Fixture {
        fn new(capacity: usize) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let db = crate::data_dir::Db::open(dir.path()).unwrap();
            let mvcc = Mvcc::open(&db).unwrap();
            let hub = WatchHub::with_capacity(mvcc.current_revision(), capacity);
            Self {
                _dir: dir,
                mvcc,
                hub,
                index: 0,
            }
        }

        /// Applies like the Raft thread: apply, flush, then publish.
        fn apply(&mut self, req: InternalReq) {
            self.index += 1;
            let (r, events) = self.mvcc.apply(self.index, 1, req).unwrap();
            r.unwrap();
            self.mvcc.flush_staged().unwrap();
            if let Some(e) = events {
                self.hub.publish(e);
            }
        }

        fn put(&mut self, k: &str, v: &str) {
            self.apply(InternalReq::Put(pb::PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            }));
        }

        fn watcher(&self, spec: WatchSpec) -> Result<Watcher> {
            Watcher::new(self.mvcc.clone(), self.hub.clone(), spec)
        }
    }

    fn prefix(start_revision: i64) -> WatchSpec {
        WatchSpec {
            key: b"a/".to_vec(),
            range_end: b"a0".to_vec(),
            start_revision,
            ..Default::default()
        }
    }

    async fn drain(w: &mut Watcher, until: i64) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        while w.next_revision() <= until {
            match w.next(50, None).await.unwrap() {
                WatchItem::Events { events, .. } => out.extend(events.iter().map(|e| {
                    let kv = e.kv.as_ref().unwrap();
                    (kv.mod_revision, String::from_utf8_lossy(&kv.value).into_owned())
                })),
                WatchItem::Progress { .. } => unreachable!("no progress deadline given"),
            }
        }
        out
    }

    #[tokio::test]
    async fn slow_watcher_catches_up_from_disk_without_loss() {
        let mut f = Fixture::new(16);
        let mut slow = f.watcher(prefix(0)).unwrap();
        // Writes go on while the watcher reads nothing: publishing never
        // waits for it, and the window forgets most of these revisions.
        for i in 0..500 {
            f.put(&format!("a/{}", i % 7), &i.to_string());
            f.put("b", "other prefix");
        }
        let end = f.mvcc.current_revision();
        let got = drain(&mut slow, end).await;
        let want: Vec<(i64, String)> = (0..500).map(|i| (2 + 2 * i as i64, i.to_string())).collect();
        assert_eq!(
            got, want,
            "every matching revision once, in order, none from the other prefix"
        );
    }

    #[tokio::test]
    async fn watch_filters_and_prev_kv() {
        let mut f = Fixture::new(1024);
        let mut w = f
            .watcher(WatchSpec {
                prev_kv: true,
                no_put: false,
                no_delete: false,
                ..prefix(0)
            })
            .unwrap();
        let mut puts_only = f
            .watcher(WatchSpec {
                no_delete: true,
                ..prefix(0)
            })
            .unwrap();
        f.put("a/x", "1");
        f.put("a/x", "2");
        f.apply(InternalReq::DeleteRange(pb::DeleteRangeRequest {
            key: b"a/x".to_vec(),
            ..Default::default()
        }));
        let end = f.mvcc.current_revision();
        let mut types = Vec::new();
        while w.next_revision() <= end {
            if let WatchItem::Events { events, .. } = w.next(10, None).await.unwrap() {
                for e in events {
                    let prev = e.prev_kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                    types.push((e.r#type, prev));
                }
            }
        }
        assert_eq!(types, vec![(0, None), (0, Some("1".into())), (1, Some("2".into()))]);
        let got = drain(&mut puts_only, end).await;
        assert_eq!(got.len(), 2, "the delete is filtered out");
    }

    #[tokio::test]
    async fn compaction_cancels_a_watcher_behind_it() {
        let mut f = Fixture::new(4);
        for i in 0..20 {
            f.put("a/k", &i.to_string());
        }
        let mut behind = f.watcher(prefix(2)).unwrap();
        f.apply(InternalReq::Compaction(pb::CompactionRequest {
            revision: 10,
            physical: false,
        }));
        assert_eq!(
            behind.next(10, None).await.unwrap_err(),
            StoreError::Compacted { compact_revision: 10 }
        );
        assert_eq!(
            f.watcher(prefix(5)).err(),
            Some(StoreError::Compacted { compact_revision: 10 })
        );
        let mut from_compacted_plus_one = f.watcher(prefix(11)).unwrap();
        assert_eq!(drain(&mut from_compacted_plus_one, 21).await.len(), 11);
    }

    #[tokio::test]
    async fn watchers_wake_only_for_their_range_and_report_progress_on_request() {
        use futures::FutureExt;
        let mut f = Fixture::new(16);
        let mut w = f.watcher(prefix(0)).unwrap();
        let progress = w.progress_requester();
        for _ in 0..5 {
            f.put("b", "other prefix");
        }
        assert!(
            !w.interest.pending.load(Ordering::Relaxed),
            "woken by revisions out of range"
        );
        assert!(w.next(10, None).now_or_never().is_none(), "nothing to return");
        progress.request();
        let current = f.mvcc.current_revision();
        assert_eq!(
            w.next(10, None).await.unwrap(),
            WatchItem::Progress { revision: current },
            "progress through the revisions it skipped"
        );
        f.put("a/x", "1");
        assert!(w.interest.pending.load(Ordering::Relaxed));
        match w.next(10, None).await.unwrap() {
            WatchItem::Events { revision, events } => {
                assert_eq!((revision, events.len()), (current + 1, 1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn progress_when_idle() {
        let f = Fixture::new(16);
        let mut w = f.watcher(prefix(0)).unwrap();
        let at = Instant::now() + std::time::Duration::from_secs(600);
        let item = w.next(10, Some(at)).await.unwrap();
        assert_eq!(
            item,
            WatchItem::Progress {
                revision: f.mvcc.current_revision()
            }
        );
    }
}
