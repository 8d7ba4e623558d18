//! Upstream's `ControllerExpectations`: a controller that creates or
//! deletes in bulk records how many adds and deletes it expects to see
//! through its informer, and does not act on the owner again until it has
//! seen them (or they expire after five minutes). A cache that lags its own
//! writes then never causes duplicate creations or double deletions.
//! Deletions are tracked by pod key (`UIDTrackingControllerExpectations`)
//! so a deletion seen twice is counted once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long expectations hold before the controller acts anyway.
pub const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Record {
    add: i64,
    del: i64,
    /// Keys of the dependents whose deletion is expected.
    deleting: HashSet<String>,
    at: Instant,
}

#[derive(Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the controller may sync `key`: everything it expected has
    /// been observed, the expectations expired, or there are none.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.records.lock().get(key) {
            None => true,
            Some(r) => (r.add <= 0 && r.del <= 0) || r.at.elapsed() > TTL,
        }
    }

    /// Expects `n` creations for `key` (replacing earlier expectations).
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.set(key, n as i64, 0, HashSet::new());
    }

    /// Expects the deletion of the dependents `deps` (their keys).
    pub fn expect_deletions(&self, key: &str, deps: Vec<String>) {
        let n = deps.len() as i64;
        self.set(key, 0, n, deps.into_iter().collect());
    }

    fn set(&self, key: &str, add: i64, del: i64, deleting: HashSet<String>) {
        self.records.lock().insert(
            key.to_string(),
            Record {
                add,
                del,
                deleting,
                at: Instant::now(),
            },
        );
    }

    /// One expected creation was seen (or will never happen: the create
    /// failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(r) = self.records.lock().get_mut(key) {
            r.add -= 1;
        }
    }

    /// The dependent `dep` of `key` was seen deleted (or its deletion
    /// failed); counted once per dependent.
    pub fn deletion_observed(&self, key: &str, dep: &str) {
        if let Some(r) = self.records.lock().get_mut(key)
            && r.deleting.remove(dep)
        {
            r.del -= 1;
        }
    }

    /// Forgets `key` (its owner was deleted).
    pub fn delete(&self, key: &str) {
        self.records.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_must_all_be_observed() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn a_deletion_seen_twice_counts_once() {
        let e = Expectations::new();
        e.expect_deletions("ns/rs", vec!["ns/p1".into(), "ns/p2".into()]);
        e.deletion_observed("ns/rs", "ns/p1");
        e.deletion_observed("ns/rs", "ns/p1");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/p2");
        assert!(e.satisfied("ns/rs"));
        e.delete("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
