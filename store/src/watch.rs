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
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use proto::mvccpb::{Event, event::EventType};
use tokio::sync::watch as tokio_watch;

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
    revs: VecDeque<Arc<RevisionEvents>>,
    bytes: usize,
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
            window: Mutex::new(Window::default()),
            capacity: capacity.max(1),
            revision: tx,
        })
    }

    /// Adds a committed revision. Called by the Raft thread, in order.
    pub fn publish(&self, events: RevisionEvents) {
        let rev = events.revision;
        {
            let mut w = self.window.lock();
            w.bytes += approx_size(&events);
            w.revs.push_back(Arc::new(events));
            while w.revs.len() > self.capacity || (w.bytes > WINDOW_BYTES && w.revs.len() > 1) {
                if let Some(old) = w.revs.pop_front() {
                    w.bytes -= approx_size(&old);
                }
            }
        }
        self.revision.send_replace(rev);
    }

    /// Forgets the window after the state was replaced by a snapshot.
    pub fn reset(&self, current_revision: i64) {
        *self.window.lock() = Window::default();
        self.revision.send_replace(current_revision);
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
        let first = w.revs.front()?.revision;
        if from < first {
            return None;
        }
        let start = w.revs.partition_point(|r| r.revision < from);
        let mut out = Vec::new();
        let mut n = 0;
        for r in w.revs.iter().skip(start) {
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
    revision: tokio_watch::Receiver<i64>,
    eager_progress: bool,
}

impl Watcher {
    pub fn new(mvcc: Arc<Mvcc>, hub: Arc<WatchHub>, spec: WatchSpec) -> Result<Self> {
        let revision = hub.revision.subscribe();
        let current = *revision.borrow();
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
            revision,
            eager_progress: false,
        })
    }

    /// Makes [`Watcher::next`] report progress as soon as it has covered
    /// new revisions without matching events, so that a consumer (the
    /// apiserver's watch cache) always knows how far it has seen.
    pub fn with_eager_progress(mut self) -> Self {
        self.eager_progress = true;
        self
    }

    /// The next revision this watcher will return.
    pub fn next_revision(&self) -> i64 {
        self.next
    }

    /// Waits for matching events. If `progress_at` passes while the watcher
    /// is caught up and has nothing to return, yields a progress item.
    pub async fn next(&mut self, max_events: usize, progress_at: Option<Instant>) -> Result<WatchItem> {
        loop {
            let current = *self.revision.borrow_and_update();
            if self.next > current {
                let changed = self.revision.changed();
                match progress_at {
                    Some(at) => {
                        tokio::select! {
                            r = changed => if r.is_err() { return Err(StoreError::Stopped) },
                            _ = tokio::time::sleep_until(at.into()) => {
                                return Ok(WatchItem::Progress { revision: self.next - 1 });
                            }
                        }
                    }
                    None => {
                        if changed.await.is_err() {
                            return Err(StoreError::Stopped);
                        }
                    }
                }
                continue;
            }
            let (covered, events) = self.read(current, max_events).await?;
            self.next = covered + 1;
            if !events.is_empty() {
                return Ok(WatchItem::Events {
                    revision: covered,
                    events,
                });
            }
            if self.eager_progress {
                return Ok(WatchItem::Progress { revision: covered });
            }
        }
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
