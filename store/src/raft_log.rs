//! The Raft log and hard state in sled, behind raft-rs's [`Storage`] trait.
//!
//! Layout of the `raft` tree (values sealed with a checksum):
//!
//! | key              | value                                   |
//! |------------------|-----------------------------------------|
//! | `e` + index (8B) | an `eraftpb::Entry`                     |
//! | `hard`           | `HardState` (term, vote, commit)        |
//! | `conf`           | `ConfState` (voters, learners)          |
//! | `trunc`          | index and term of the last removed entry|
//!
//! Writes are not durable until [`RaftLog::sync`]; the node syncs once per
//! Ready, before acknowledging anything that depends on them.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::codec;
use crate::error::{Result, StoreError};
use crate::mvcc::Mvcc;
use crate::snapshot;

const KEY_HARD: &[u8] = b"hard";
const KEY_CONF: &[u8] = b"conf";
const KEY_TRUNC: &[u8] = b"trunc";

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

struct LogState {
    hard: HardState,
    conf: ConfState,
    /// Index and term of the last entry removed by compaction or covered by
    /// a snapshot; the log holds `(trunc_index, trunc_index + terms.len()]`.
    trunc_index: u64,
    trunc_term: u64,
    /// Term of every entry in the log, oldest first: `term()` is on Raft's
    /// hot path and must not decode entries.
    terms: VecDeque<u64>,
    /// The newest entries, decoded: Raft reads what it just appended (to
    /// apply it, to send it to followers); sled need not decode it again.
    tail: VecDeque<Entry>,
}

/// Entries kept decoded in memory.
const TAIL_ENTRIES: usize = 4096;

impl LogState {
    /// The cached entries `[low, high)`, if the tail holds all of them.
    fn cached(&self, low: u64, high: u64) -> Option<Vec<Entry>> {
        let first = self.tail.front()?.index;
        if low < first || high > self.last_index() + 1 {
            return None;
        }
        let start = (low - first) as usize;
        Some(self.tail.range(start..start + (high - low) as usize).cloned().collect())
    }

    fn cache(&mut self, entries: &[Entry]) {
        if let (Some(first), Some(back)) = (entries.first(), self.tail.back())
            && first.index != back.index + 1
        {
            // Replacing a suffix: drop what it replaces.
            let keep = self.tail.iter().take_while(|e| e.index < first.index).count();
            self.tail.truncate(keep);
            if self.tail.back().is_some_and(|b| b.index + 1 != first.index) {
                self.tail.clear();
            }
        }
        self.tail.extend(entries.iter().cloned());
        while self.tail.len() > TAIL_ENTRIES {
            self.tail.pop_front();
        }
    }
}

impl LogState {
    fn last_index(&self) -> u64 {
        self.trunc_index + self.terms.len() as u64
    }
}

pub struct RaftLog {
    db: crate::data_dir::Db,
    tree: sled::Tree,
    mvcc: Arc<Mvcc>,
    state: Mutex<LogState>,
}

fn pb_err(what: &str, e: protobuf::ProtobufError) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn read_pb<M: protobuf::Message>(tree: &sled::Tree, key: &[u8], what: &str) -> Result<Option<M>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => {
            let payload = codec::open(&v, what)?;
            let mut m = M::new();
            m.merge_from_bytes(payload).map_err(|e| pb_err(what, e))?;
            Ok(Some(m))
        }
    }
}

fn seal_pb<M: protobuf::Message>(m: &M) -> Vec<u8> {
    codec::seal(
        m.write_to_bytes()
            .expect("encoding a raft message into memory cannot fail"),
    )
}

/// A chunk: the consecutive entries one Ready appended, stored as one
/// value under the first entry's index (a sled insert copies a leaf, so one
/// per Ready, not one per entry): `(u32 length, eraftpb.Entry)*`, sealed.
fn encode_chunk(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let bytes = e
            .write_to_bytes()
            .expect("encoding a raft entry into memory cannot fail");
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    codec::seal(out)
}

fn decode_chunk(v: &[u8]) -> Result<Vec<Entry>> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("raft log chunk: {why}"));
    let mut payload = codec::open(v, "raft log chunk")?;
    let mut out: Vec<Entry> = Vec::new();
    while !payload.is_empty() {
        let len = payload.get(..4).ok_or_else(|| corrupt("truncated length"))?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let bytes = payload.get(4..4 + len).ok_or_else(|| corrupt("truncated entry"))?;
        let mut e = Entry::default();
        e.merge_from_bytes(bytes).map_err(|e| pb_err("raft entry", e))?;
        if out.last().is_some_and(|p| p.index + 1 != e.index) {
            return Err(corrupt("entries out of sequence"));
        }
        out.push(e);
        payload = &payload[4 + len..];
    }
    Ok(out)
}

fn chunk_start(key: &[u8]) -> Result<u64> {
    key.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("raft log chunk key".into()))
}

/// Every chunk key, in index order.
fn all_chunks() -> std::ops::RangeInclusive<[u8; 9]> {
    entry_key(0)..=entry_key(u64::MAX)
}

impl RaftLog {
    /// Opens the log in `db`, checking every entry's checksum and that the
    /// entries are contiguous.
    pub fn open(db: &crate::data_dir::Db, mvcc: Arc<Mvcc>) -> Result<Self> {
        let tree = db.open_tree("raft")?;
        let hard: HardState = read_pb(&tree, KEY_HARD, "hard state")?.unwrap_or_default();
        let conf: ConfState = read_pb(&tree, KEY_CONF, "conf state")?.unwrap_or_default();
        let (trunc_index, trunc_term) = match tree.get(KEY_TRUNC)? {
            None => (0, 0),
            Some(v) => {
                let b = codec::open(&v, "log truncation point")?;
                if b.len() != 16 {
                    return Err(StoreError::Corrupt("log truncation point: bad length".into()));
                }
                (
                    u64::from_be_bytes(b[..8].try_into().expect("8")),
                    u64::from_be_bytes(b[8..].try_into().expect("8")),
                )
            }
        };
        let mut terms = VecDeque::new();
        let mut expect = trunc_index + 1;
        for item in tree.range(all_chunks()) {
            let (k, v) = item?;
            let start = chunk_start(&k)?;
            let chunk = decode_chunk(&v)?;
            if chunk.first().is_none_or(|e| e.index != start) {
                return Err(StoreError::Corrupt(format!(
                    "raft log chunk at {start} holds other entries"
                )));
            }
            // The first chunk may straddle the truncation point.
            for e in chunk.into_iter().filter(|e| e.index > trunc_index) {
                if e.index != expect {
                    return Err(StoreError::Corrupt(format!(
                        "raft log has a gap or stray entry at index {}, expected {expect}",
                        e.index
                    )));
                }
                terms.push_back(e.term);
                expect += 1;
            }
        }
        let log = Self {
            db: db.clone(),
            tree,
            mvcc,
            state: Mutex::new(LogState {
                hard,
                conf,
                trunc_index,
                trunc_term,
                terms,
                tail: VecDeque::new(),
            }),
        };
        log.check_against_state()?;
        Ok(log)
    }

    /// Cross-checks the log with the state machine, which lives in another
    /// database: each is evidence of what the other must hold.
    fn check_against_state(&self) -> Result<()> {
        let (applied, _) = self.mvcc.applied();
        let mut s = self.state.lock();
        let (first, last) = (s.trunc_index + 1, s.last_index());
        if s.hard.commit > last {
            return Err(StoreError::Corrupt(format!(
                "raft log: commit index {} is past the end of the log ({last}); the log was truncated",
                s.hard.commit
            )));
        }
        if applied > last {
            return Err(StoreError::Corrupt(format!(
                "raft log ends at {last} but the state machine applied {applied}; the log was truncated or lost"
            )));
        }
        if applied + 1 < first {
            return Err(StoreError::Corrupt(format!(
                "state machine applied {applied} but the raft log starts at {first}; state was lost"
            )));
        }
        if applied > s.hard.commit {
            // The commit index is persisted lazily; applied entries were
            // committed, so it is at least that.
            s.hard.commit = applied;
            let hard = s.hard.clone();
            drop(s);
            self.tree.insert(KEY_HARD, seal_pb(&hard))?;
        }
        Ok(())
    }

    /// True when this log was never initialized (a fresh data dir).
    pub fn is_empty(&self) -> bool {
        let s = self.state.lock();
        s.conf.voters.is_empty() && s.conf.learners.is_empty() && s.last_index() == 0 && s.hard.term == 0
    }

    pub fn hard_state(&self) -> HardState {
        self.state.lock().hard.clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.state.lock().conf.clone()
    }

    pub fn last(&self) -> u64 {
        self.state.lock().last_index()
    }

    pub fn first(&self) -> u64 {
        self.state.lock().trunc_index + 1
    }

    /// Appends entries, replacing any conflicting suffix.
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        let mut s = self.state.lock();
        if first.index <= s.trunc_index {
            return Err(StoreError::Storage(format!(
                "append at {} below the log start {}",
                first.index,
                s.trunc_index + 1
            )));
        }
        let last = s.last_index();
        if first.index > last + 1 {
            return Err(StoreError::Storage(format!(
                "append at {} leaves a gap after {last}",
                first.index
            )));
        }
        if first.index == last + 1 {
            // A plain append: one insert (a sled batch would also seal
            // sled's IO buffer).
            self.tree.insert(entry_key(first.index), encode_chunk(entries))?;
        } else {
            // Replacing a suffix must not leave a gap if interrupted.
            let mut batch = sled::Batch::default();
            self.cut_from(first.index, &mut batch)?;
            batch.insert(&entry_key(first.index)[..], encode_chunk(entries));
            self.tree.apply_batch(batch)?;
        }
        let keep = (first.index - s.trunc_index - 1) as usize;
        s.terms.truncate(keep);
        s.terms.extend(entries.iter().map(|e| e.term));
        s.cache(entries);
        Ok(())
    }

    /// Adds to `batch` the removal of every entry at or after `from`: later
    /// chunks go, and the chunk straddling `from` is rewritten shorter.
    fn cut_from(&self, from: u64, batch: &mut sled::Batch) -> Result<()> {
        if let Some(item) = self.tree.range(entry_key(0)..entry_key(from)).next_back() {
            let (k, v) = item?;
            let kept: Vec<Entry> = decode_chunk(&v)?.into_iter().filter(|e| e.index < from).collect();
            batch.insert(k, encode_chunk(&kept));
        }
        for item in self.tree.range(entry_key(from)..=entry_key(u64::MAX)) {
            batch.remove(item?.0);
        }
        Ok(())
    }

    /// Entries `[low, high)` from sled.
    fn read_range(&self, low: u64, high: u64) -> Result<Vec<Entry>> {
        let start = match self.tree.range(entry_key(0)..=entry_key(low)).next_back() {
            Some(item) => chunk_start(&item?.0)?,
            None => low,
        };
        let mut out = Vec::new();
        for item in self.tree.range(entry_key(start)..entry_key(high)) {
            let (_, v) = item?;
            out.extend(
                decode_chunk(&v)?
                    .into_iter()
                    .filter(|e| e.index >= low && e.index < high),
            );
        }
        Ok(out)
    }

    /// Initializes a new cluster's log as if a snapshot at index 1, term 1
    /// held the initial membership. Members that join later have an empty
    /// log, which lies before this point, so the leader must send them a
    /// snapshot — and with it the member table and conf state, which the
    /// log alone does not carry.
    pub fn bootstrap(&self, cs: &ConfState) -> Result<()> {
        let mut hard = HardState::default();
        hard.term = 1;
        hard.commit = 1;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_TRUNC, trunc_value(1, 1));
        batch.insert(KEY_HARD, seal_pb(&hard));
        batch.insert(KEY_CONF, seal_pb(cs));
        self.tree.apply_batch(batch)?;
        let mut s = self.state.lock();
        s.trunc_index = 1;
        s.trunc_term = 1;
        s.terms.clear();
        s.tail.clear();
        s.hard = hard;
        s.conf = cs.clone();
        Ok(())
    }

    /// Drops every entry after `index` (forced recovery only).
    pub fn truncate_after(&self, index: u64) -> Result<()> {
        let mut s = self.state.lock();
        let last = s.last_index();
        if index >= last || index < s.trunc_index {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        self.cut_from(index + 1, &mut batch)?;
        self.tree.apply_batch(batch)?;
        let keep = (index - s.trunc_index) as usize;
        s.terms.truncate(keep);
        s.tail.retain(|e| e.index <= index);
        Ok(())
    }

    /// Records Raft's hard state. Only a new term or vote is written (and
    /// must then be synced before anyone hears of it, as etcd's MustSync);
    /// a new commit index alone stays in memory: on open it is recovered
    /// as at least the applied index, and the leader tells the rest. (Its
    /// write, twice per Ready, was 1% of the CPU of 3 apiservers under
    /// load.) Returns whether it wrote.
    pub fn set_hard_state(&self, hs: &HardState) -> Result<bool> {
        let old = self.hard_state();
        let write = hs.term != old.term || hs.vote != old.vote;
        if write {
            self.tree.insert(KEY_HARD, seal_pb(hs))?;
        }
        self.state.lock().hard = hs.clone();
        Ok(write)
    }

    pub fn set_conf_state(&self, cs: &ConfState) -> Result<()> {
        self.tree.insert(KEY_CONF, seal_pb(cs))?;
        self.state.lock().conf = cs.clone();
        Ok(())
    }

    /// Removes entries up to and including `index`, which must be applied,
    /// but at most `max_chunks` chunks: a whole compaction at once (~330
    /// chunks at 64 clients) stalled the Raft thread for 4–12 ms. Returns
    /// the index it compacted to, `index` once it got there.
    pub fn compact(&self, index: u64, max_chunks: usize) -> Result<u64> {
        let mut s = self.state.lock();
        if index <= s.trunc_index || index > s.last_index() {
            return Ok(s.trunc_index);
        }
        // A chunk goes once all its entries are at or below `index`, which
        // the next chunk's start tells; one straddling `index` stays.
        let budget = max_chunks.max(1);
        let keys: Vec<sled::IVec> = self
            .tree
            .range(entry_key(0)..=entry_key(index + 1))
            .keys()
            .take(budget.saturating_add(1))
            .collect::<std::result::Result<_, _>>()?;
        let mut index = index;
        if keys.len() > budget {
            // The budget ends where the chunk after it starts; that start
            // is past the truncation point, as the first chunk holds it.
            index = index.min(chunk_start(&keys[keys.len() - 1])? - 1);
        }
        let term = s.terms[(index - s.trunc_index - 1) as usize];
        // The truncation point moves first, then the chunks below it go
        // one by one: single writes, unlike a batch, neither seal sled's
        // IO buffer nor take its exclusive lock (so they need not wait for
        // a WAL sync), and took half the time. sled recovers a prefix of
        // its writes, so a crash can leave chunks below the truncation
        // point but never a gap above it; open skips them and the next
        // compaction removes them.
        self.tree.insert(KEY_TRUNC, trunc_value(index, term))?;
        for pair in keys.windows(2) {
            if chunk_start(&pair[1])? <= index + 1 {
                self.tree.remove(&pair[0])?;
            }
        }
        if s.last_index() == index
            && let Some(last) = keys.last()
        {
            self.tree.remove(last)?;
        }
        let n = (index - s.trunc_index) as usize;
        s.terms.drain(..n);
        while s.tail.front().is_some_and(|e| e.index <= index) {
            s.tail.pop_front();
        }
        s.trunc_index = index;
        s.trunc_term = term;
        Ok(index)
    }

    /// Installs a snapshot received from the leader: the log restarts after
    /// it and the state machine is replaced by its contents.
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        let entries = snapshot::decode(snap.get_data())?;
        // The state (synced by restore) must be durable before the log
        // forgets what came before the snapshot.
        self.mvcc.restore(entries)?;
        let mut s = self.state.lock();
        let mut batch = sled::Batch::default();
        for item in self.tree.range(all_chunks()) {
            batch.remove(item?.0);
        }
        let mut hard = s.hard.clone();
        hard.commit = hard.commit.max(meta.index);
        hard.term = hard.term.max(meta.term);
        batch.insert(KEY_TRUNC, trunc_value(meta.index, meta.term));
        batch.insert(KEY_HARD, seal_pb(&hard));
        batch.insert(KEY_CONF, seal_pb(meta.get_conf_state()));
        self.tree.apply_batch(batch)?;
        s.terms.clear();
        s.tail.clear();
        s.trunc_index = meta.index;
        s.trunc_term = meta.term;
        s.hard = hard;
        s.conf = meta.get_conf_state().clone();
        Ok(())
    }

    /// Makes every write so far durable (fsync).
    pub fn sync(&self) -> Result<()> {
        self.db.sync()
    }

    /// Builds a snapshot of the state machine as of its applied index.
    pub fn build_snapshot(&self) -> Result<Snapshot> {
        let (index, term) = self.mvcc.applied();
        let data = snapshot::encode(&self.mvcc.dump()?);
        let mut meta = SnapshotMetadata::default();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state());
        let mut snap = Snapshot::default();
        snap.set_data(data.into());
        snap.set_metadata(meta);
        Ok(snap)
    }
}

fn trunc_value(index: u64, term: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&index.to_be_bytes());
    b.extend_from_slice(&term.to_be_bytes());
    codec::seal(b)
}

fn storage_err(e: StoreError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let s = self.state.lock();
        Ok(RaftState::new(s.hard.clone(), s.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        {
            let s = self.state.lock();
            if low <= s.trunc_index {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
            if high > s.last_index() + 1 {
                return Err(raft::Error::Store(StorageError::Unavailable));
            }
            if let Some(mut ents) = s.cached(low, high) {
                raft::util::limit_size(&mut ents, max_size);
                return Ok(ents);
            }
        }
        let mut out = self.read_range(low, high).map_err(storage_err)?;
        raft::util::limit_size(&mut out, max_size);
        if out.is_empty() && low < high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let s = self.state.lock();
        if idx == s.trunc_index {
            return Ok(s.trunc_term);
        }
        if idx < s.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        s.terms
            .get((idx - s.trunc_index - 1) as usize)
            .copied()
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap = self.build_snapshot().map_err(storage_err)?;
        if snap.get_metadata().index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = format!("{index}@{term}").into_bytes().into();
        e
    }

    fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| ent(i, term)).collect()
    }

    /// Records `applied` (index, term) durably, closes the log and opens it
    /// again.
    fn reopen_applied(
        dir: &std::path::Path,
        db: crate::data_dir::Db,
        log: RaftLog,
        applied: (u64, u64),
    ) -> (crate::data_dir::Db, RaftLog) {
        log.mvcc.apply_noop(applied.0, applied.1).unwrap();
        log.mvcc.sync().unwrap();
        drop(log);
        db.flush().unwrap();
        drop(db);
        open(dir)
    }

    fn open(dir: &std::path::Path) -> (crate::data_dir::Db, RaftLog) {
        // The state syncer thread may hold the previous database (and its
        // file lock) for a moment after the test dropped it: wait for the
        // lock, boundedly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match crate::data_dir::Db::open(dir) {
                Ok(db) => break db,
                Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("opening {}: {e}", dir.display()),
            }
        };
        let mvcc = Mvcc::open(&db).unwrap();
        let log = RaftLog::open(&db, mvcc).unwrap();
        (db, log)
    }

    /// What the log holds, read through sled (not the in-memory tail).
    fn stored(log: &RaftLog) -> Vec<(u64, u64)> {
        log.read_range(log.first(), log.last() + 1)
            .unwrap()
            .iter()
            .map(|e| (e.index, e.term))
            .collect()
    }

    #[test]
    fn chunks_survive_replace_compact_truncate_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (db, log) = open(dir.path());
        log.append(&ents(1..=5, 1)).unwrap();
        log.append(&ents(6..=9, 1)).unwrap();
        log.append(&ents(10..=12, 2)).unwrap();
        // A new leader replaces the suffix from 8, inside the second chunk.
        log.append(&ents(8..=10, 3)).unwrap();
        let want: Vec<(u64, u64)> = (1..=7).map(|i| (i, 1)).chain((8..=10).map(|i| (i, 3))).collect();
        assert_eq!(stored(&log), want, "conflicting suffix replaced");
        assert_eq!(raft::Storage::term(&log, 9).unwrap(), 3);
        // Compaction inside a chunk keeps the straddling chunk's later part.
        assert_eq!(log.compact(3, usize::MAX).unwrap(), 3);
        assert_eq!(log.first(), 4);
        assert_eq!(
            raft::Storage::term(&log, 3).unwrap(),
            1,
            "the truncation point keeps its term"
        );
        assert_eq!(stored(&log), want[3..].to_vec());
        assert!(matches!(
            raft::Storage::entries(&log, 3, 5, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(log.compact(7, usize::MAX).unwrap(), 7);
        assert_eq!(stored(&log), want[7..].to_vec(), "the whole first chunk group is gone");
        log.truncate_after(9).unwrap();
        assert_eq!(stored(&log), vec![(8, 3), (9, 3)]);
        // Entries are compacted only once applied; say so, durably.
        let (_db, log) = reopen_applied(dir.path(), db, log, (9, 3));
        assert_eq!((log.first(), log.last()), (8, 9), "reopened with the same span");
        assert_eq!(stored(&log), vec![(8, 3), (9, 3)]);
        let got = raft::Storage::entries(&log, 8, 10, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got[1].data.as_ref(), b"9@3");
    }

    #[test]
    fn compaction_removes_at_most_its_chunk_budget_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let (db, log) = open(dir.path());
        // Ten chunks of three entries: 1-3, 4-6, ..., 28-30.
        for c in 0..10 {
            log.append(&ents(c * 3 + 1..=c * 3 + 3, 1)).unwrap();
        }
        let chunks = |log: &RaftLog| log.tree.range(entry_key(0)..=entry_key(u64::MAX)).count();
        assert_eq!(chunks(&log), 10);
        // Toward 26 (inside chunk 25-27), four chunks at a time.
        assert_eq!(log.compact(26, 4).unwrap(), 12, "stops where the fifth chunk starts");
        assert_eq!((log.first(), chunks(&log)), (13, 6));
        assert_eq!(log.compact(26, 4).unwrap(), 24);
        // The chunk holding 26 straddles it, and stays.
        assert_eq!(log.compact(26, 4).unwrap(), 26);
        assert_eq!((log.first(), chunks(&log)), (27, 2));
        assert_eq!(log.compact(26, 4).unwrap(), 26, "nothing left to do");
        assert_eq!(stored(&log), (27..=30).map(|i| (i, 1)).collect::<Vec<_>>());
        // What a partial compaction wrote is what a reopened log starts from.
        let (_db, log) = reopen_applied(dir.path(), db, log, (30, 1));
        assert_eq!((log.first(), log.last()), (27, 30));
        assert_eq!(raft::Storage::term(&log, 26).unwrap(), 1);
    }

    #[test]
    fn chunks_a_crash_left_below_the_truncation_point_are_skipped_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (db, log) = open(dir.path());
        for c in 0..4 {
            log.append(&ents(c * 3 + 1..=c * 3 + 3, 1)).unwrap();
        }
        // A compaction to 7 that crashed after moving the truncation point,
        // before removing a chunk: all four chunks are still there.
        log.tree.insert(KEY_TRUNC, trunc_value(7, 1)).unwrap();
        let chunks = |log: &RaftLog| log.tree.range(entry_key(0)..=entry_key(u64::MAX)).count();
        let (_db, log) = reopen_applied(dir.path(), db, log, (12, 1));
        assert_eq!((log.first(), log.last(), chunks(&log)), (8, 12, 4));
        assert_eq!(stored(&log), (8..=12).map(|i| (i, 1)).collect::<Vec<_>>());
        assert_eq!(raft::Storage::term(&log, 7).unwrap(), 1);
        // The next compaction removes the leftovers with what it compacts.
        assert_eq!(log.compact(10, usize::MAX).unwrap(), 10);
        assert_eq!((log.first(), chunks(&log)), (11, 1));
        assert_eq!(stored(&log), vec![(11, 1), (12, 1)]);
    }
}
