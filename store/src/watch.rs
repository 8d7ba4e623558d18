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
        let (tx, _) = tokio_watch::channel(current_revision);
        Arc::new(Self {
            window: Mutex::new(Window::default()),
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
            while w.revs.len() > WINDOW_REVISIONS || (w.bytes > WINDOW_BYTES && w.revs.len() > 1) {
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
        })
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
