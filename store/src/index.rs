//! The in-memory key index: for every key, the revisions at which it was
//! written or deleted, oldest first. It answers "which record holds key K as
//! of revision R" without touching disk; the records themselves live in the
//! backend, addressed by [`Revision`].
//!
//! Plain data, no IO: the MVCC layer owns one behind a lock and rebuilds it
//! from the backend on start.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

/// A point in the store's history. `main` is the cluster-wide revision a
/// write committed at; `sub` orders the changes within one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// Big-endian encoding, so byte order is revision order in the backend.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.main.to_be_bytes());
        b[8..].copy_from_slice(&self.sub.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let main = i64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let sub = i64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        Some(Self { main, sub })
    }
}

/// One change to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Change {
    rev: Revision,
    tombstone: bool,
}

/// A key's history. Never empty while the key is in the index.
#[derive(Clone, Debug, Default)]
struct KeyHistory {
    changes: Vec<Change>,
}

impl KeyHistory {
    /// The newest change at or before `at` (a main revision).
    fn at(&self, at: i64) -> Option<&Change> {
        let n = self.changes.partition_point(|c| c.rev.main <= at);
        n.checked_sub(1).map(|i| &self.changes[i])
    }

    /// The live record at `at`, if the key existed then.
    fn live_at(&self, at: i64) -> Option<Revision> {
        self.at(at).filter(|c| !c.tombstone).map(|c| c.rev)
    }

    /// Drops what no read at or after `at` can need. Returns the revision
    /// kept to represent the key at `at`, if any.
    fn compact(&mut self, at: i64) -> Option<Revision> {
        let n = self.changes.partition_point(|c| c.rev.main <= at);
        if n == 0 {
            return None;
        }
        let newest = self.changes[n - 1];
        if newest.tombstone {
            self.changes.drain(..n);
            None
        } else {
            self.changes.drain(..n - 1);
            Some(newest.rev)
        }
    }
}

/// The index over all keys.
#[derive(Debug, Default)]
pub struct KeyIndex {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
}

impl KeyIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Records a write of `key` at `rev`. Revisions must arrive in order.
    pub fn put(&mut self, key: &[u8], rev: Revision) {
        self.push(key, Change { rev, tombstone: false });
    }

    /// Records a deletion of `key` at `rev`.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) {
        self.push(key, Change { rev, tombstone: true });
    }

    fn push(&mut self, key: &[u8], change: Change) {
        let history = match self.keys.get_mut(key) {
            Some(h) => h,
            None => self.keys.entry(key.to_vec()).or_default(),
        };
        debug_assert!(history.changes.last().is_none_or(|c| c.rev < change.rev));
        history.changes.push(change);
    }

    /// The record holding `key` as of main revision `at`, if it was live.
    pub fn get(&self, key: &[u8], at: i64) -> Option<Revision> {
        self.keys.get(key)?.live_at(at)
    }

    /// Live records for keys in `[start, end)` as of `at`, in key order.
    /// `end` empty means just `start`; `end == [0]` means every key from
    /// `start` on (etcd's conventions). Stops after `limit` keys when it is
    /// non-zero, and reports the total count of live keys in range.
    pub fn range(&self, start: &[u8], end: &[u8], at: i64, limit: usize) -> RangeResult {
        let mut out = RangeResult::default();
        if end.is_empty() {
            if let Some(rev) = self.get(start, at) {
                out.count = 1;
                out.revs.push(rev);
            }
            return out;
        }
        let upper = if end == [0] {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        if let Bound::Excluded(e) = upper
            && e <= start
        {
            return out;
        }
        for h in self
            .keys
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|(_, h)| h)
        {
            if let Some(rev) = h.live_at(at) {
                out.count += 1;
                if limit == 0 || out.revs.len() < limit {
                    out.revs.push(rev);
                }
            }
        }
        out
    }

    /// Compacts every key's history at main revision `at`, and returns the
    /// revisions at or below `at` that must be kept in the backend.
    pub fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        let mut cursor = Some(Vec::new());
        while let Some(from) = cursor {
            cursor = self.compact_chunk(at, &from, usize::MAX, &mut keep);
        }
        keep
    }

    /// Compacts at most `max_keys` keys starting at `from`, adding the
    /// revisions to keep to `keep`. Returns where to continue, if anywhere:
    /// callers release their lock between chunks so writes never stall.
    pub fn compact_chunk(
        &mut self,
        at: i64,
        from: &[u8],
        max_keys: usize,
        keep: &mut HashSet<Revision>,
    ) -> Option<Vec<u8>> {
        let mut emptied = Vec::new();
        let mut next = None;
        for (n, (k, h)) in self
            .keys
            .range_mut::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .enumerate()
        {
            if n == max_keys {
                next = Some(k.clone());
                break;
            }
            if let Some(rev) = h.compact(at) {
                keep.insert(rev);
            }
            if h.changes.is_empty() {
                emptied.push(k.clone());
            }
        }
        for k in emptied {
            self.keys.remove(&k);
        }
        next
    }

    /// Every key's latest live record (for snapshots, lease rebuilding).
    pub fn live(&self, at: i64) -> impl Iterator<Item = (&[u8], Revision)> {
        self.keys
            .iter()
            .filter_map(move |(k, h)| h.live_at(at).map(|r| (k.as_slice(), r)))
    }
}

/// The records a range selected (in key order; the keys themselves are in
/// the records) and how many keys matched in all.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub revs: Vec<Revision>,
    pub count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// Names the selected records, for the fixture below where each key
    /// was written once: a@2, b@3, ba@4, c@5.
    fn keys(res: &RangeResult) -> Vec<&'static [u8]> {
        let name = |r: &Revision| -> &'static [u8] {
            match r.main {
                2 => b"a",
                3 => b"b",
                4 => b"ba",
                5 => b"c",
                _ => b"?",
            }
        };
        res.revs.iter().map(name).collect()
    }

    #[test]
    fn get_follows_history() {
        let mut ix = KeyIndex::new();
        ix.put(b"a", r(2));
        ix.put(b"a", r(4));
        ix.tombstone(b"a", r(6));
        ix.put(b"a", r(8));
        let cases = [
            (1, None, "before creation"),
            (2, Some(r(2)), "first write"),
            (3, Some(r(2)), "between writes"),
            (5, Some(r(4)), "second write"),
            (6, None, "deleted"),
            (7, None, "still deleted"),
            (8, Some(r(8)), "recreated"),
            (100, Some(r(8)), "latest"),
        ];
        for (at, want, why) in cases {
            assert_eq!(ix.get(b"a", at), want, "{why}");
        }
    }

    #[test]
    fn range_conventions() {
        let mut ix = KeyIndex::new();
        for (i, k) in [&b"a"[..], b"b", b"ba", b"c"].iter().enumerate() {
            ix.put(k, r(i as i64 + 2));
        }
        ix.tombstone(b"b", r(10));
        assert_eq!(
            keys(&ix.range(b"b", b"", 100, 0)),
            Vec::<&[u8]>::new(),
            "deleted single key"
        );
        assert_eq!(
            keys(&ix.range(b"b", b"", 9, 0)),
            vec![&b"b"[..]],
            "single key in the past"
        );
        assert_eq!(keys(&ix.range(b"b", b"c", 100, 0)), vec![&b"ba"[..]], "half-open range");
        assert_eq!(
            keys(&ix.range(b"a", &[0], 100, 0)),
            vec![&b"a"[..], b"ba", b"c"],
            "from key"
        );
        assert_eq!(ix.range(b"c", b"a", 100, 0), RangeResult::default(), "inverted range");
        let limited = ix.range(b"a", &[0], 100, 2);
        assert_eq!(
            (keys(&limited), limited.count),
            (vec![&b"a"[..], b"ba"], 3),
            "limit keeps count"
        );
    }

    #[test]
    fn compact_keeps_what_reads_need() {
        let mut ix = KeyIndex::new();
        ix.put(b"a", r(2));
        ix.put(b"a", r(3));
        ix.put(b"b", r(4));
        ix.tombstone(b"b", r(5));
        ix.put(b"c", r(6));
        let keep = ix.compact(5);
        assert_eq!(
            keep,
            [r(3)].into_iter().collect(),
            "a@3 survives, b is gone, c untouched"
        );
        assert_eq!(ix.get(b"a", 5), Some(r(3)));
        assert_eq!(ix.get(b"b", 5), None);
        assert_eq!(ix.len(), 2, "b's history is dropped entirely");
        assert_eq!(ix.get(b"c", 6), Some(r(6)));
    }

    #[test]
    fn chunked_compaction_matches_whole() {
        let build = || {
            let mut ix = KeyIndex::new();
            for i in 0..50i64 {
                let key = format!("k{:02}", i % 7);
                if i % 5 == 4 {
                    ix.tombstone(key.as_bytes(), r(i + 2));
                } else {
                    ix.put(key.as_bytes(), r(i + 2));
                }
            }
            ix
        };
        let mut whole = build();
        let want = whole.compact(30);
        let mut chunked = build();
        let mut got = HashSet::new();
        let mut cursor = Some(Vec::new());
        while let Some(from) = cursor {
            cursor = chunked.compact_chunk(30, &from, 2, &mut got);
        }
        assert_eq!(got, want);
        for at in 30..60 {
            assert_eq!(
                chunked.range(b"k", &[0], at, 0),
                whole.range(b"k", &[0], at, 0),
                "at {at}"
            );
        }
    }

    #[test]
    fn revision_bytes_sort_like_revisions() {
        let a = Revision::new(5, 1).to_bytes();
        let b = Revision::new(5, 2).to_bytes();
        let c = Revision::new(6, 0).to_bytes();
        assert!(a < b && b < c);
        assert_eq!(Revision::from_bytes(&b), Some(Revision::new(5, 2)));
        assert_eq!(Revision::from_bytes(&b[..3]), None);
    }
}
