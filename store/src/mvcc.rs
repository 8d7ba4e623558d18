//! The replicated state machine: a multi-version key-value store with etcd's
//! semantics, kept in one sled tree.
//!
//! Layout of the `state` tree (every value sealed with a checksum, see
//! [`crate::codec`]):
//!
//! | key                    | value                                  |
//! |------------------------|----------------------------------------|
//! | `k` + revision (16 B)  | [`Record`]: the key-value or tombstone |
//! | `l` + lease id (8 B)   | [`LeaseRecord`]                        |
//! | `p` + member id (8 B)  | [`MemberInfo`]                         |
//! | `m` + name             | metadata: applied index, revisions     |
//!
//! Writes come only from the Raft thread, one committed entry at a time
//! ([`Mvcc::apply`]); each entry's changes and its applied index go to sled
//! in one atomic batch, and only then become visible in the in-memory
//! [`KeyIndex`]. Reads come from any thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use proto::etcdserverpb as pb;
use proto::mvccpb::{Event, KeyValue, event::EventType};
use proto::storepb::{LeaseRecord, MemberInfo, Record, internal_request::Request as InternalReq};

use crate::codec;
use crate::error::{Result, StoreError};
use crate::index::{KeyIndex, Revision};

const PREFIX_KV: u8 = b'k';
const PREFIX_LEASE: u8 = b'l';
const PREFIX_MEMBER: u8 = b'p';
const META_APPLIED: &[u8] = b"mapplied";
const META_REVISION: &[u8] = b"mrevision";
const META_COMPACT: &[u8] = b"mcompact";
const META_COMPACT_DONE: &[u8] = b"mcompact_done";

/// Leases shorter than this are extended to it, as etcd does (1.5 election
/// timeouts, rounded up).
pub const MIN_LEASE_TTL: i64 = 2;
/// etcd's upper bound on a lease's TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// How many keys the compactor handles per hold of the index lock, and how
/// many records it deletes per batch.
const COMPACT_CHUNK: usize = 2_000;

/// How often the state syncer fsyncs the `state` database. The Raft
/// thread writes staged changes to sled every few Readys
/// ([`Mvcc::flush_staged_unless_syncing`]); only the fsync is periodic.
/// Measured (`make bench-store`, 256-client put, single member): 100 ms
/// syncs gave p99 22–25 ms, 1 s syncs 23–29 ms.
const SYNC_EVERY: Duration = Duration::from_millis(100);

/// The revision a fresh store starts at, as in etcd.
const INITIAL_REVISION: i64 = 1;

/// The result of applying one entry.
#[derive(Debug, Clone)]
pub enum Applied {
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compaction(pb::CompactionResponse),
    LeaseGrant(pb::LeaseGrantResponse),
    LeaseRevoke(pb::LeaseRevokeResponse),
    LeaseRenew { ttl: i64 },
    Published,
    MemberUpdated,
}

/// All events of one revision. Watchers never see a revision split.
#[derive(Debug, Clone)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

#[derive(Debug)]
struct Revisions {
    index: KeyIndex,
    current: i64,
    compacted: i64,
}

#[derive(Debug, Clone, Default)]
struct Lease {
    ttl: i64,
    keys: HashSet<Vec<u8>>,
}

/// What the in-memory lease table must learn once an entry's batch is on
/// disk.
#[derive(Debug)]
enum LeaseChange {
    Grant(i64, i64),
    Revoke(i64),
    Attach(i64, Vec<u8>),
    Detach(i64, Vec<u8>),
}

/// Writes of applied entries not yet in sled. The Raft thread stages each
/// entry's writes here and, once a Ready's replies are sent, writes them in
/// batches cut at entry boundaries ([`Mvcc::flush_staged`]): a sled batch
/// seals sled's IO buffer, too costly per entry. Readers look here before
/// sled, so staged records are visible as soon as the index points at them.
#[derive(Default)]
struct Staged {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    records: HashMap<Revision, Record>,
    /// Metadata rewritten by every entry: only the newest value of each
    /// key goes into the batch.
    meta: Meta,
    /// Where each staged entry ends in `ops`, with the metadata as of that
    /// entry: a flush may cut its batches there, and only there.
    ends: Vec<(usize, Meta)>,
}

/// Metadata keys and their newest values.
type Meta = BTreeMap<&'static [u8], Vec<u8>>;

/// Which entry ends (indexes into `ends`, the op counts at the end of each
/// staged entry) close a flush batch: a batch closes once it holds at least
/// `chunk` ops, and the last entry always closes one.
fn batch_cuts(ends: &[usize], chunk: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut from = 0;
    for (i, end) in ends.iter().enumerate() {
        if end - from >= chunk || i + 1 == ends.len() {
            cuts.push(i);
            from = *end;
        }
    }
    cuts
}

/// Most operations per sled batch when flushing. sled makes every batch
/// exclusive against all reads and writes of every tree in the process (a
/// global lock), so one big batch would stall the Raft log's writes and
/// every read for its whole duration.
const FLUSH_CHUNK: usize = 512;

pub struct Mvcc {
    db: crate::data_dir::Db,
    tree: sled::Tree,
    staged: RwLock<Staged>,
    flush_lock: Mutex<()>,
    /// Held by the state syncer while it fsyncs. sled holds its global lock
    /// shared for a whole fsync, and a batch needs it exclusive: the Raft
    /// thread skips its flush rather than wait behind the state's fsync.
    sync_gate: Mutex<()>,
    /// The applied index the `state` database holds durably (fsynced).
    durable_applied: std::sync::atomic::AtomicU64,
    revs: RwLock<Revisions>,
    leases: Mutex<HashMap<i64, Lease>>,
    /// When each lease expires. Local to this replica, never replicated:
    /// only the leader acts on it, and a new leader restarts every clock.
    deadlines: Mutex<HashMap<i64, Instant>>,
    members: RwLock<BTreeMap<u64, MemberInfo>>,
    applied: Mutex<(u64, u64)>,
    compactor: Mutex<Option<mpsc::Sender<i64>>>,
}

fn kv_key(rev: Revision) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = PREFIX_KV;
    k[1..].copy_from_slice(&rev.to_bytes());
    k
}

fn id_key(prefix: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn i64_value(v: i64) -> Vec<u8> {
    codec::seal(v.to_be_bytes().to_vec())
}

fn read_i64(tree: &sled::Tree, key: &[u8]) -> Result<Option<i64>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => {
            let b = codec::open(&v, "metadata")?;
            let arr: [u8; 8] = b
                .try_into()
                .map_err(|_| StoreError::Corrupt("metadata: bad length".into()))?;
            Ok(Some(i64::from_be_bytes(arr)))
        }
    }
}

impl Mvcc {
    /// Opens the state machine in `db`, verifying every record and
    /// rebuilding the in-memory index. A damaged record fails the open.
    pub fn open(db: &crate::data_dir::Db) -> Result<Arc<Self>> {
        let tree = db.open_tree("state")?;
        let mvcc = Arc::new(Self {
            db: db.clone(),
            tree,
            staged: RwLock::new(Staged::default()),
            flush_lock: Mutex::new(()),
            sync_gate: Mutex::new(()),
            durable_applied: std::sync::atomic::AtomicU64::new(0),
            revs: RwLock::new(Revisions {
                index: KeyIndex::new(),
                current: INITIAL_REVISION,
                compacted: 0,
            }),
            leases: Mutex::new(HashMap::new()),
            deadlines: Mutex::new(HashMap::new()),
            members: RwLock::new(BTreeMap::new()),
            applied: Mutex::new((0, 0)),
            compactor: Mutex::new(None),
        });
        mvcc.load()?;
        mvcc.durable_applied
            .store(mvcc.applied().0, std::sync::atomic::Ordering::Release);
        Self::start_compactor(&mvcc);
        Self::start_syncer(&mvcc);
        Ok(mvcc)
    }

    /// (Re)builds every in-memory structure from the tree.
    fn load(&self) -> Result<()> {
        let mut index = KeyIndex::new();
        let mut leases: HashMap<i64, Lease> = HashMap::new();
        let mut members = BTreeMap::new();
        let mut last_rev = INITIAL_REVISION;
        let mut lease_of_key: HashMap<Vec<u8>, i64> = HashMap::new();
        for item in self.tree.scan_prefix([PREFIX_KV]) {
            let (k, v) = item?;
            let rev = Revision::from_bytes(&k[1..]).ok_or_else(|| StoreError::Corrupt("bad revision key".into()))?;
            let rec: Record = codec::open_msg(&v, "key-value record")?;
            let kv = rec.kv.unwrap_or_default();
            if rec.tombstone {
                index.tombstone(&kv.key, rev);
                lease_of_key.remove(&kv.key);
            } else {
                index.put(&kv.key, rev);
                if kv.lease != 0 {
                    lease_of_key.insert(kv.key.clone(), kv.lease);
                } else {
                    lease_of_key.remove(&kv.key);
                }
            }
            last_rev = last_rev.max(rev.main);
        }
        for item in self.tree.scan_prefix([PREFIX_LEASE]) {
            let (_, v) = item?;
            let rec: LeaseRecord = codec::open_msg(&v, "lease record")?;
            leases.insert(
                rec.id,
                Lease {
                    ttl: rec.ttl,
                    keys: HashSet::new(),
                },
            );
        }
        for (key, lease) in lease_of_key {
            if let Some(l) = leases.get_mut(&lease) {
                l.keys.insert(key);
            }
        }
        for item in self.tree.scan_prefix([PREFIX_MEMBER]) {
            let (_, v) = item?;
            let m: MemberInfo = codec::open_msg(&v, "member record")?;
            members.insert(m.id, m);
        }
        let applied = match self.tree.get(META_APPLIED)? {
            None => (0, 0),
            Some(v) => {
                let b = codec::open(&v, "applied index")?;
                if b.len() != 16 {
                    return Err(StoreError::Corrupt("applied index: bad length".into()));
                }
                let idx = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
                let term = u64::from_be_bytes(b[8..].try_into().expect("8 bytes"));
                (idx, term)
            }
        };
        let current = read_i64(&self.tree, META_REVISION)?
            .unwrap_or(INITIAL_REVISION)
            .max(last_rev);
        let compacted = read_i64(&self.tree, META_COMPACT)?.unwrap_or(0);
        if compacted > 0 {
            index.compact(compacted);
        }
        let now = Instant::now();
        *self.deadlines.lock() = leases
            .iter()
            .map(|(id, l)| (*id, now + Duration::from_secs(l.ttl as u64)))
            .collect();
        *self.leases.lock() = leases;
        *self.members.write() = members;
        *self.applied.lock() = applied;
        *self.revs.write() = Revisions {
            index,
            current,
            compacted,
        };
        if compacted > read_i64(&self.tree, META_COMPACT_DONE)?.unwrap_or(0)
            && let Some(tx) = self.compactor.lock().as_ref()
        {
            let _ = tx.send(compacted);
        }
        Ok(())
    }

    fn start_compactor(this: &Arc<Self>) {
        let (tx, rx) = mpsc::channel::<i64>();
        let weak = Arc::downgrade(this);
        let pending = read_i64(&this.tree, META_COMPACT).ok().flatten().unwrap_or(0);
        let done = read_i64(&this.tree, META_COMPACT_DONE).ok().flatten().unwrap_or(0);
        if pending > done {
            let _ = tx.send(pending);
        }
        *this.compactor.lock() = Some(tx);
        std::thread::Builder::new()
            .name("compactor".into())
            .spawn(move || {
                while let Ok(mut at) = rx.recv() {
                    while let Ok(later) = rx.try_recv() {
                        at = at.max(later);
                    }
                    let Some(mvcc) = weak.upgrade() else { return };
                    if let Err(e) = mvcc.compact_physical(at) {
                        tracing::error!(error = %e, revision = at, "compaction failed");
                    }
                }
            })
            .expect("spawn compactor thread");
    }

    /// Makes the state machine durable (fsync).
    pub fn sync(&self) -> Result<()> {
        let _gate = self.sync_gate.lock();
        // Everything applied before this point is staged already.
        let applied = self.applied().0;
        self.flush_staged()?;
        self.db.sync()?;
        self.durable_applied
            .fetch_max(applied, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Writes staged changes to sled, unless the state syncer is in the
    /// middle of an fsync (then they stay staged for the next call). The
    /// Raft thread calls it after each Ready.
    pub fn flush_staged_unless_syncing(&self) -> Result<()> {
        match self.sync_gate.try_lock() {
            Some(_gate) => self.flush_staged(),
            None => Ok(()),
        }
    }

    /// The applied index the `state` database holds durably: the Raft log
    /// may drop entries up to here.
    pub fn durable_applied(&self) -> u64 {
        self.durable_applied.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Syncs the state database every [`SYNC_EVERY`], off the Raft thread.
    fn start_syncer(this: &Arc<Self>) {
        let weak = Arc::downgrade(this);
        std::thread::Builder::new()
            .name("state-syncer".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(SYNC_EVERY);
                    let Some(mvcc) = weak.upgrade() else { return };
                    if mvcc.compactor.lock().is_none() {
                        return; // closed
                    }
                    if let Err(e) = mvcc.sync() {
                        tracing::error!(error = %e, "syncing the state machine");
                    }
                }
            })
            .expect("spawn state syncer thread");
    }

    /// Stops the background compactor (the tree stays usable).
    pub fn close(&self) {
        self.compactor.lock().take();
    }

    // ---------------------------------------------------------------- reads

    pub fn current_revision(&self) -> i64 {
        self.revs.read().current
    }

    pub fn compacted_revision(&self) -> i64 {
        self.revs.read().compacted
    }

    /// (index, term) of the last applied Raft entry.
    pub fn applied(&self) -> (u64, u64) {
        *self.applied.lock()
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        self.members.read().values().cloned().collect()
    }

    pub fn member(&self, id: u64) -> Option<MemberInfo> {
        self.members.read().get(&id).cloned()
    }

    fn record(&self, rev: Revision) -> Result<Option<Record>> {
        {
            let staged = self.staged.read();
            if !staged.records.is_empty()
                && let Some(r) = staged.records.get(&rev)
            {
                return Ok(Some(r.clone()));
            }
        }
        match self.tree.get(kv_key(rev))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::open_msg(&v, "key-value record")?)),
        }
    }

    fn kv_at(&self, rev: Revision) -> Result<KeyValue> {
        let compacted = self.compacted_revision();
        match self.record(rev)? {
            Some(Record { kv: Some(kv), .. }) => Ok(kv),
            // The compactor removed it after the index pointed at it.
            _ => Err(StoreError::Compacted {
                compact_revision: compacted,
            }),
        }
    }

    /// The key-values at `revs`, in that order. When the revisions are
    /// dense (a list after compaction, or of keys written together), one
    /// ordered scan of the history replaces a tree descent per record.
    fn kvs_at(&self, revs: &[Revision]) -> Result<Vec<KeyValue>> {
        const DENSE_MIN: usize = 64;
        let (Some(min), Some(max)) = (revs.iter().min(), revs.iter().max()) else {
            return Ok(Vec::new());
        };
        let span = (max.main - min.main + 1) as usize;
        if revs.len() < DENSE_MIN || span > revs.len() * 4 {
            return revs.iter().map(|r| self.kv_at(*r)).collect();
        }
        let mut wanted: Vec<(Revision, usize)> = revs.iter().copied().zip(0..).collect();
        wanted.sort_unstable();
        let mut out: Vec<Option<KeyValue>> = vec![None; revs.len()];
        let mut next = wanted.iter().peekable();
        for item in self.tree.range(kv_key(*min)..=kv_key(*max)) {
            let (k, v) = item?;
            let rev = Revision::from_bytes(&k[1..]).ok_or_else(|| StoreError::Corrupt("bad revision key".into()))?;
            while next.next_if(|(r, _)| *r < rev).is_some() {}
            if let Some((_, pos)) = next.next_if(|(r, _)| *r == rev) {
                let rec: Record = codec::open_msg(&v, "key-value record")?;
                out[*pos] = rec.kv;
            }
        }
        // Staged (not yet in sled) or concurrently compacted records.
        out.into_iter()
            .zip(revs)
            .map(|(kv, r)| kv.map_or_else(|| self.kv_at(*r), Ok))
            .collect()
    }

    /// The key's latest value.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let rev = {
            let revs = self.revs.read();
            revs.index.get(key, revs.current)
        };
        rev.map(|r| self.kv_at(r)).transpose()
    }

    /// Serves a Range request against the current state. The caller has
    /// already made it linearizable if asked to.
    pub fn range(&self, req: &pb::RangeRequest) -> Result<pb::RangeResponse> {
        let (current, selected) = {
            let revs = self.revs.read();
            let at = if req.revision <= 0 { revs.current } else { req.revision };
            if at > revs.current {
                return Err(StoreError::FutureRevision);
            }
            if at < revs.compacted {
                return Err(StoreError::Compacted {
                    compact_revision: revs.compacted,
                });
            }
            let plain = is_plain_order(req);
            let limit = if plain && req.limit > 0 { req.limit as usize } else { 0 };
            (revs.current, revs.index.range(&req.key, &req.range_end, at, limit))
        };
        let mut resp = pb::RangeResponse {
            header: Some(header(current)),
            ..Default::default()
        };
        if req.count_only && !needs_values_to_count(req) {
            resp.count = selected.count as i64;
            return Ok(resp);
        }
        let mut kvs = self.kvs_at(&selected.revs)?;
        let mut count = selected.count as i64;
        if needs_values_to_count(req) {
            kvs.retain(|kv| passes_filters(req, kv));
            count = kvs.len() as i64;
        }
        sort_kvs(req, &mut kvs);
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
        }
        resp.more = (kvs.len() as i64) < count && req.limit > 0;
        resp.count = count;
        if req.count_only {
            return Ok(resp);
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        resp.kvs = kvs;
        Ok(resp)
    }

    /// The events of every revision in `[from, to]` whose keys fall in
    /// `[key, range_end)`, from the on-disk history, in order. Used by
    /// watchers that are behind the in-memory event window.
    pub fn history(
        &self,
        from: i64,
        to: i64,
        key: &[u8],
        range_end: &[u8],
        prev_kv: bool,
    ) -> Result<Vec<RevisionEvents>> {
        let compacted = self.compacted_revision();
        if from <= compacted {
            return Err(StoreError::Compacted {
                compact_revision: compacted,
            });
        }
        let mut out: Vec<RevisionEvents> = Vec::new();
        // Records not yet flushed to sled come from the staged map. Copy
        // them first: a record that leaves the map was written to sled
        // before it left, so the sled read below still finds it.
        let staged: std::collections::BTreeMap<Revision, Record> = self
            .staged
            .read()
            .records
            .iter()
            .filter(|(r, _)| r.main >= from && r.main <= to)
            .map(|(r, rec)| (*r, rec.clone()))
            .collect();
        let start = kv_key(Revision::new(from, 0));
        let end = kv_key(Revision::new(to.saturating_add(1), 0));
        let mut records: std::collections::BTreeMap<Revision, Record> = staged;
        for item in self.tree.range(start..end) {
            let (k, v) = item?;
            let rev = Revision::from_bytes(&k[1..]).ok_or_else(|| StoreError::Corrupt("bad revision key".into()))?;
            if records.contains_key(&rev) {
                continue;
            }
            records.insert(rev, codec::open_msg(&v, "key-value record")?);
        }
        for (rev, rec) in records {
            let kv = rec.kv.unwrap_or_default();
            if !key_in_range(&kv.key, key, range_end) {
                continue;
            }
            let prev = if prev_kv {
                self.prev_kv(&kv.key, rev.main)?
            } else {
                None
            };
            let event = Event {
                r#type: if rec.tombstone {
                    EventType::Delete
                } else {
                    EventType::Put
                } as i32,
                kv: Some(kv),
                prev_kv: prev,
            };
            match out.last_mut() {
                Some(last) if last.revision == rev.main => last.events.push(event),
                _ => out.push(RevisionEvents {
                    revision: rev.main,
                    events: vec![event],
                }),
            }
        }
        // A compaction that raced with this read may have removed part of
        // what it returned; callers must not see a gap.
        let compacted = self.compacted_revision();
        if from <= compacted {
            return Err(StoreError::Compacted {
                compact_revision: compacted,
            });
        }
        Ok(out)
    }

    fn prev_kv(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        let prev = self.revs.read().index.get(key, rev - 1);
        match prev {
            None => Ok(None),
            Some(r) => Ok(self.record(r)?.and_then(|rec| rec.kv)),
        }
    }

    pub fn lease_ttl(&self, id: i64) -> Option<(i64, i64, Vec<Vec<u8>>)> {
        let leases = self.leases.lock();
        let lease = leases.get(&id)?;
        let remaining = self
            .deadlines
            .lock()
            .get(&id)
            .map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64().ceil() as i64)
            .unwrap_or(lease.ttl);
        let mut keys: Vec<_> = lease.keys.iter().cloned().collect();
        keys.sort();
        Some((lease.ttl, remaining, keys))
    }

    pub fn lease_ids(&self) -> Vec<i64> {
        let mut ids: Vec<_> = self.leases.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Leases whose deadline has passed on this replica's clock.
    pub fn expired_leases(&self, now: Instant) -> Vec<i64> {
        self.deadlines
            .lock()
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Restarts every lease's clock; called when this replica becomes
    /// leader, so no lease expires early because of a leader change.
    pub fn refresh_all_leases(&self) {
        let leases = self.leases.lock();
        let now = Instant::now();
        let mut deadlines = self.deadlines.lock();
        for (id, l) in leases.iter() {
            deadlines.insert(*id, now + Duration::from_secs(l.ttl as u64));
        }
    }

    /// A checksum of every record up to `revision` (0: the current one), and
    /// the compacted revision: equal on replicas that agree.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64)> {
        self.flush_staged()?;
        let (at, compacted) = {
            let revs = self.revs.read();
            (if revision <= 0 { revs.current } else { revision }, revs.compacted)
        };
        if at < compacted {
            return Err(StoreError::Compacted {
                compact_revision: compacted,
            });
        }
        let mut h = crc32fast::Hasher::new();
        for item in self.tree.range(
            kv_key(Revision::new(compacted.saturating_add(1), 0))..kv_key(Revision::new(at.saturating_add(1), 0)),
        ) {
            let (k, v) = item?;
            h.update(&k);
            h.update(&v);
        }
        Ok((h.finalize(), compacted))
    }

    /// etcd's comparison: every key in the compare's range must satisfy it;
    /// a missing key compares as a zero key-value, except by value.
    /// Whether every compare of a txn holds at revision `at`.
    pub fn compares_hold(&self, compares: &[pb::Compare], at: i64) -> Result<bool> {
        for c in compares {
            if !self.compare_at(c, at)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub fn compare_at(&self, c: &pb::Compare, at: i64) -> Result<bool> {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        let range = pb::RangeRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            revision: at,
            ..Default::default()
        };
        let kvs = self.range(&range)?.kvs;
        let target =
            CompareTarget::try_from(c.target).map_err(|_| StoreError::InvalidArgument("compare target".into()))?;
        let result =
            CompareResult::try_from(c.result).map_err(|_| StoreError::InvalidArgument("compare result".into()))?;
        let check = |kv: &KeyValue| -> bool {
            let ord = match (&c.target_union, target) {
                (Some(TargetUnion::Version(v)), CompareTarget::Version) => kv.version.cmp(v),
                (Some(TargetUnion::CreateRevision(v)), CompareTarget::Create) => kv.create_revision.cmp(v),
                (Some(TargetUnion::ModRevision(v)), CompareTarget::Mod) => kv.mod_revision.cmp(v),
                (Some(TargetUnion::Value(v)), CompareTarget::Value) => kv.value.as_slice().cmp(v.as_slice()),
                (Some(TargetUnion::Lease(v)), CompareTarget::Lease) => kv.lease.cmp(v),
                // A missing union compares against zero, as protobuf defaults.
                (None, CompareTarget::Version) => kv.version.cmp(&0),
                (None, CompareTarget::Create) => kv.create_revision.cmp(&0),
                (None, CompareTarget::Mod) => kv.mod_revision.cmp(&0),
                (None, CompareTarget::Lease) => kv.lease.cmp(&0),
                (None, CompareTarget::Value) => kv.value.as_slice().cmp(&[][..]),
                _ => return false,
            };
            match result {
                CompareResult::Equal => ord.is_eq(),
                CompareResult::NotEqual => ord.is_ne(),
                CompareResult::Greater => ord.is_gt(),
                CompareResult::Less => ord.is_lt(),
            }
        };
        if kvs.is_empty() {
            if target == CompareTarget::Value {
                return Ok(false);
            }
            return Ok(check(&KeyValue::default()));
        }
        Ok(kvs.iter().all(check))
    }

    // --------------------------------------------------------------- writes

    /// Records an entry that changes no key (empty entries, conf changes).
    pub fn apply_noop(&self, index: u64, term: u64) -> Result<()> {
        self.stage(
            vec![(META_APPLIED.to_vec(), Some(applied_value(index, term)))],
            Vec::new(),
        );
        *self.applied.lock() = (index, term);
        Ok(())
    }

    fn stage(&self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>, records: Vec<(Revision, Record)>) {
        let mut staged = self.staged.write();
        for (k, v) in ops {
            match (k.as_slice(), v) {
                (META_APPLIED, Some(v)) => {
                    staged.meta.insert(META_APPLIED, v);
                }
                (META_REVISION, Some(v)) => {
                    staged.meta.insert(META_REVISION, v);
                }
                (_, v) => staged.ops.push((k, v)),
            }
        }
        staged.records.extend(records);
        let end = (staged.ops.len(), staged.meta.clone());
        staged.ends.push(end);
    }

    /// Writes every staged change to sled in one batch. The Raft thread
    /// calls it after applying a Ready's entries, before anything reads
    /// sled directly (watch history, snapshots).
    pub fn flush_staged(&self) -> Result<()> {
        // Flushes run one at a time so batches reach sled in staging order.
        let _order = self.flush_lock.lock();
        let (ops, meta, ends) = {
            let mut staged = self.staged.write();
            (
                std::mem::take(&mut staged.ops),
                std::mem::take(&mut staged.meta),
                std::mem::take(&mut staged.ends),
            )
        };
        if ops.is_empty() && meta.is_empty() {
            return Ok(());
        }
        // Batches end at entry boundaries, each with the metadata (applied
        // index, revision) as of its last entry: after a crash between two
        // batches the state is exactly that of an applied prefix of the log.
        let entry_ends: Vec<usize> = ends.iter().map(|(end, _)| *end).collect();
        let mut cuts: Vec<(usize, &Meta)> = batch_cuts(&entry_ends, FLUSH_CHUNK)
            .into_iter()
            .map(|i| (ends[i].0, &ends[i].1))
            .collect();
        if cuts.last().is_none_or(|(end, _)| *end < ops.len()) {
            cuts.push((ops.len(), &meta));
        }
        let mut ops = ops.into_iter();
        let mut done = 0;
        for (end, chunk_meta) in cuts {
            let mut batch = sled::Batch::default();
            for (k, v) in chunk_meta {
                batch.insert(*k, v.clone());
            }
            let mut flushed = Vec::new();
            for (k, v) in ops.by_ref().take(end - done) {
                if k.first() == Some(&PREFIX_KV)
                    && let Some(rev) = Revision::from_bytes(&k[1..])
                {
                    flushed.push(rev);
                }
                match v {
                    Some(v) => batch.insert(k, v),
                    None => batch.remove(k),
                }
            }
            done = end;
            self.tree.apply_batch(batch)?;
            // Only now, with the records in sled, may readers stop finding
            // them in the staged map. Records staged meanwhile stay.
            let mut staged = self.staged.write();
            for rev in flushed {
                staged.records.remove(&rev);
            }
        }
        Ok(())
    }

    /// How many writes wait in the staged batch.
    pub fn staged_len(&self) -> usize {
        let staged = self.staged.read();
        staged.ops.len() + staged.meta.len()
    }

    /// Adds, updates or removes a member as part of applying the entry at
    /// `index`.
    pub fn apply_member(&self, index: u64, term: u64, member: Option<&MemberInfo>, remove: Option<u64>) -> Result<()> {
        let mut ops = Vec::new();
        if let Some(m) = member {
            ops.push((id_key(PREFIX_MEMBER, m.id).to_vec(), Some(codec::seal_msg(m))));
        }
        if let Some(id) = remove {
            ops.push((id_key(PREFIX_MEMBER, id).to_vec(), None));
        }
        ops.push((META_APPLIED.to_vec(), Some(applied_value(index, term))));
        self.stage(ops, Vec::new());
        let mut members = self.members.write();
        if let Some(m) = member {
            members.insert(m.id, m.clone());
        }
        if let Some(id) = remove {
            members.remove(&id);
        }
        drop(members);
        *self.applied.lock() = (index, term);
        Ok(())
    }

    /// Writes members directly, outside Raft: bootstrap of a new cluster
    /// (every member writes the same table) and forced recovery.
    pub fn reset_members(&self, members: &[MemberInfo]) -> Result<()> {
        self.flush_staged()?;
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix([PREFIX_MEMBER]) {
            batch.remove(item?.0);
        }
        for m in members {
            batch.insert(&id_key(PREFIX_MEMBER, m.id)[..], codec::seal_msg(m));
        }
        self.tree.apply_batch(batch)?;
        *self.members.write() = members.iter().map(|m| (m.id, m.clone())).collect();
        Ok(())
    }

    /// Applies one committed request. Deterministic: every replica computes
    /// the same result and the same new state from the same entry. An error
    /// result leaves the state unchanged but still advances the applied
    /// index.
    pub fn apply(&self, index: u64, term: u64, req: InternalReq) -> Result<(Result<Applied>, Option<RevisionEvents>)> {
        let current = self.current_revision();
        let mut w = Writer::new(self, current + 1);
        let result = match req {
            InternalReq::Put(put) => w.put(&put).map(|mut r| {
                r.header = Some(header(w.revision_after()));
                Applied::Put(r)
            }),
            InternalReq::DeleteRange(del) => w.delete_range(&del).map(|mut r| {
                r.header = Some(header(w.revision_after()));
                Applied::DeleteRange(r)
            }),
            InternalReq::Txn(txn) => w.txn(&txn).map(|mut r| {
                let h = header(w.revision_after());
                set_txn_headers(&mut r, &h);
                Applied::Txn(r)
            }),
            InternalReq::Compaction(c) => w.compact(&c).map(|()| {
                Applied::Compaction(pb::CompactionResponse {
                    header: Some(header(current)),
                })
            }),
            InternalReq::LeaseGrant(g) => w.lease_grant(&g).map(|ttl| {
                Applied::LeaseGrant(pb::LeaseGrantResponse {
                    header: Some(header(current)),
                    id: g.id,
                    ttl,
                    error: String::new(),
                })
            }),
            InternalReq::LeaseRevoke(r) => w.lease_revoke(r.id).map(|()| {
                Applied::LeaseRevoke(pb::LeaseRevokeResponse {
                    header: Some(header(w.revision_after())),
                })
            }),
            InternalReq::LeaseRenew(r) => match self.leases.lock().get(&r.id) {
                None => Err(StoreError::LeaseNotFound),
                Some(l) => {
                    w.renewed = Some((r.id, l.ttl));
                    Ok(Applied::LeaseRenew { ttl: l.ttl })
                }
            },
            InternalReq::MemberUpdate(m) => match self.member(m.id) {
                None => Err(StoreError::MemberNotFound),
                Some(mut existing) => {
                    existing.peer_urls = m.peer_urls.clone();
                    w.member = Some(existing);
                    Ok(Applied::MemberUpdated)
                }
            },
            InternalReq::Publish(m) => match self.member(m.id) {
                None => Err(StoreError::MemberNotFound),
                Some(mut existing) => {
                    existing.name = m.name.clone();
                    existing.client_urls = m.client_urls.clone();
                    w.member = Some(existing);
                    Ok(Applied::Published)
                }
            },
        };
        if result.is_err() {
            // Nothing of a failed request is written.
            w = Writer::new(self, current + 1);
        }
        let events = w.commit(index, term)?;
        Ok((result, events))
    }

    /// Restarts lease deadlines for granted or renewed leases.
    fn touch_lease(&self, id: i64, ttl: i64) {
        self.deadlines
            .lock()
            .insert(id, Instant::now() + Duration::from_secs(ttl as u64));
    }

    // ------------------------------------------------------------ compaction

    /// Removes history at or below `at` that no read can need any more, in
    /// chunks: the index lock and the tree are held briefly per chunk.
    fn compact_physical(&self, at: i64) -> Result<()> {
        // Records at or below `at` may still be staged; delete them from
        // sled only once they are there.
        self.flush_staged()?;
        let started = Instant::now();
        let mut keep = HashSet::new();
        let mut cursor = Some(Vec::new());
        while let Some(from) = cursor {
            let mut revs = self.revs.write();
            cursor = revs.index.compact_chunk(at, &from, COMPACT_CHUNK, &mut keep);
        }
        let end = kv_key(Revision::new(at.saturating_add(1), 0));
        let mut removed = 0usize;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            let mut last = None;
            for item in self.tree.range(kv_key(Revision::new(0, 0))..end) {
                let (k, _) = item?;
                let rev =
                    Revision::from_bytes(&k[1..]).ok_or_else(|| StoreError::Corrupt("bad revision key".into()))?;
                last = Some(rev);
                if !keep.contains(&rev) {
                    batch.remove(k);
                    n += 1;
                    if n == COMPACT_CHUNK {
                        break;
                    }
                }
            }
            self.tree.apply_batch(batch)?;
            removed += n;
            if n < COMPACT_CHUNK || last.is_none() {
                break;
            }
            std::thread::yield_now();
        }
        self.tree.insert(META_COMPACT_DONE, i64_value(at))?;
        tracing::debug!(revision = at, removed, took = ?started.elapsed(), "compacted history");
        Ok(())
    }

    // ------------------------------------------------------------- snapshots

    /// Every entry of the state tree, for a Raft snapshot. Consistent when
    /// called from the Raft thread, which is the only writer.
    pub fn dump(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.flush_staged()?;
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Forgets the applied Raft position: the state came from a snapshot
    /// file and a new Raft log starts from scratch (offline restore).
    pub fn reset_applied(&self) -> Result<()> {
        self.tree.insert(META_APPLIED, applied_value(0, 0))?;
        *self.applied.lock() = (0, 0);
        Ok(())
    }

    /// Replaces the whole state with a snapshot's entries.
    pub fn restore(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        // No flush from another thread may land between the clear and the
        // new contents.
        let order = self.flush_lock.lock();
        *self.staged.write() = Staged::default();
        self.tree.clear()?;
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k, v);
        }
        self.tree.apply_batch(batch)?;
        drop(order);
        self.load()?;
        self.sync()
    }
}

fn applied_value(index: u64, term: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&index.to_be_bytes());
    b.extend_from_slice(&term.to_be_bytes());
    codec::seal(b)
}

fn header(revision: i64) -> pb::ResponseHeader {
    pb::ResponseHeader {
        revision,
        ..Default::default()
    }
}

/// Puts `h` on a txn response and every response inside it.
pub(crate) fn set_txn_headers(r: &mut pb::TxnResponse, h: &pb::ResponseHeader) {
    use pb::response_op::Response;
    r.header = Some(*h);
    for op in &mut r.responses {
        match op.response.as_mut() {
            Some(Response::ResponseRange(x)) => x.header = Some(*h),
            Some(Response::ResponsePut(x)) => x.header = Some(*h),
            Some(Response::ResponseDeleteRange(x)) => x.header = Some(*h),
            Some(Response::ResponseTxn(x)) => set_txn_headers(x, h),
            None => {}
        }
    }
}

/// `[start, end)` with etcd's conventions: empty end = just `start`;
/// end `\0` = every key from `start` on.
pub fn key_in_range(k: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == start
    } else if end == [0] {
        k >= start
    } else {
        k >= start && k < end
    }
}

fn is_plain_order(req: &pb::RangeRequest) -> bool {
    use pb::range_request::{SortOrder, SortTarget};
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let sorted_by_key = order == SortOrder::None || (order == SortOrder::Ascend && target == SortTarget::Key);
    sorted_by_key && !needs_values_to_count(req)
}

fn needs_values_to_count(req: &pb::RangeRequest) -> bool {
    req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

fn passes_filters(req: &pb::RangeRequest, kv: &KeyValue) -> bool {
    (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
        && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
        && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
}

fn sort_kvs(req: &pb::RangeRequest, kvs: &mut [KeyValue]) {
    use pb::range_request::{SortOrder, SortTarget};
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    if order == SortOrder::None {
        return;
    }
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    kvs.sort_by(|a, b| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    });
    if order == SortOrder::Descend {
        kvs.reverse();
    }
}

/// The changes of one entry, collected before anything is written.
struct Writer<'a> {
    mvcc: &'a Mvcc,
    main: i64,
    sub: i64,
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    records: Vec<(Revision, Record)>,
    index_ops: Vec<(Vec<u8>, Revision, bool)>,
    events: Vec<Event>,
    lease_changes: Vec<LeaseChange>,
    renewed: Option<(i64, i64)>,
    member: Option<MemberInfo>,
    compact_to: Option<i64>,
}

impl<'a> Writer<'a> {
    fn new(mvcc: &'a Mvcc, main: i64) -> Self {
        Self {
            mvcc,
            main,
            sub: 0,
            ops: Vec::new(),
            records: Vec::new(),
            index_ops: Vec::new(),
            events: Vec::new(),
            lease_changes: Vec::new(),
            renewed: None,
            member: None,
            compact_to: None,
        }
    }

    fn changed(&self) -> bool {
        !self.index_ops.is_empty()
    }

    /// The store's revision once this entry is applied.
    fn revision_after(&self) -> i64 {
        if self.changed() { self.main } else { self.main - 1 }
    }

    fn next_rev(&mut self) -> Revision {
        let r = Revision::new(self.main, self.sub);
        self.sub += 1;
        r
    }

    fn lease_exists(&self, id: i64) -> bool {
        self.mvcc.leases.lock().contains_key(&id)
            || self
                .lease_changes
                .iter()
                .any(|c| matches!(c, LeaseChange::Grant(g, _) if *g == id))
    }

    fn put(&mut self, req: &pb::PutRequest) -> Result<pb::PutResponse> {
        let prev = self.mvcc.get(&req.key)?;
        let (value, lease) = match (&prev, req.ignore_value, req.ignore_lease) {
            (None, true, _) | (None, _, true) => return Err(StoreError::KeyNotFound),
            (Some(p), iv, il) => (
                if iv { p.value.clone() } else { req.value.clone() },
                if il { p.lease } else { req.lease },
            ),
            (None, false, false) => (req.value.clone(), req.lease),
        };
        if lease != 0 && !self.lease_exists(lease) {
            return Err(StoreError::LeaseNotFound);
        }
        let rev = self.next_rev();
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(self.main, |p| p.create_revision),
            mod_revision: self.main,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        if let Some(p) = &prev
            && p.lease != 0
            && p.lease != lease
        {
            self.lease_changes.push(LeaseChange::Detach(p.lease, req.key.clone()));
        }
        if lease != 0 {
            self.lease_changes.push(LeaseChange::Attach(lease, req.key.clone()));
        }
        self.put_record(
            rev,
            Record {
                kv: Some(kv.clone()),
                tombstone: false,
            },
        );
        self.index_ops.push((req.key.clone(), rev, false));
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        Ok(pb::PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_range(&mut self, req: &pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse> {
        let range = pb::RangeRequest {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            ..Default::default()
        };
        let existing = self.mvcc.range(&range)?.kvs;
        let mut resp = pb::DeleteRangeResponse {
            deleted: existing.len() as i64,
            ..Default::default()
        };
        for prev in existing {
            self.tombstone(&prev);
            if req.prev_kv {
                resp.prev_kvs.push(prev);
            }
        }
        Ok(resp)
    }

    fn tombstone(&mut self, prev: &KeyValue) {
        let rev = self.next_rev();
        let kv = KeyValue {
            key: prev.key.clone(),
            mod_revision: self.main,
            ..Default::default()
        };
        if prev.lease != 0 {
            self.lease_changes
                .push(LeaseChange::Detach(prev.lease, prev.key.clone()));
        }
        self.put_record(
            rev,
            Record {
                kv: Some(kv.clone()),
                tombstone: true,
            },
        );
        self.index_ops.push((prev.key.clone(), rev, true));
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: Some(prev.clone()),
        });
    }

    fn txn(&mut self, req: &pb::TxnRequest) -> Result<pb::TxnResponse> {
        use pb::request_op::Request;
        use pb::response_op::Response;
        let succeeded = self.mvcc.compares_hold(&req.compare, self.main - 1)?;
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Response::ResponseRange(self.mvcc.range(r)?),
                Some(Request::RequestPut(p)) => Response::ResponsePut(self.put(p)?),
                Some(Request::RequestDeleteRange(d)) => Response::ResponseDeleteRange(self.delete_range(d)?),
                Some(Request::RequestTxn(t)) => Response::ResponseTxn(self.txn(t)?),
                None => return Err(StoreError::InvalidArgument("empty request op".into())),
            };
            responses.push(pb::ResponseOp {
                response: Some(response),
            });
        }
        Ok(pb::TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn compact(&mut self, req: &pb::CompactionRequest) -> Result<()> {
        let revs = self.mvcc.revs.read();
        if req.revision <= revs.compacted {
            return Err(StoreError::Compacted {
                compact_revision: revs.compacted,
            });
        }
        if req.revision > revs.current {
            return Err(StoreError::FutureRevision);
        }
        self.ops.push((META_COMPACT.to_vec(), Some(i64_value(req.revision))));
        self.compact_to = Some(req.revision);
        Ok(())
    }

    fn lease_grant(&mut self, req: &pb::LeaseGrantRequest) -> Result<i64> {
        if req.id == 0 {
            return Err(StoreError::InvalidArgument("lease id 0".into()));
        }
        if self.mvcc.leases.lock().contains_key(&req.id) {
            return Err(StoreError::LeaseExists);
        }
        if req.ttl > MAX_LEASE_TTL {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        let ttl = req.ttl.max(MIN_LEASE_TTL);
        self.ops.push((
            id_key(PREFIX_LEASE, req.id as u64).to_vec(),
            Some(codec::seal_msg(&LeaseRecord { id: req.id, ttl })),
        ));
        self.lease_changes.push(LeaseChange::Grant(req.id, ttl));
        Ok(ttl)
    }

    fn lease_revoke(&mut self, id: i64) -> Result<()> {
        let keys = match self.mvcc.leases.lock().get(&id) {
            None => return Err(StoreError::LeaseNotFound),
            Some(l) => {
                let mut keys: Vec<_> = l.keys.iter().cloned().collect();
                keys.sort();
                keys
            }
        };
        for key in keys {
            if let Some(prev) = self.mvcc.get(&key)? {
                self.tombstone(&prev);
            }
        }
        self.ops.push((id_key(PREFIX_LEASE, id as u64).to_vec(), None));
        self.lease_changes.push(LeaseChange::Revoke(id));
        Ok(())
    }

    fn put_record(&mut self, rev: Revision, record: Record) {
        self.ops.push((kv_key(rev).to_vec(), Some(codec::seal_msg(&record))));
        self.records.push((rev, record));
    }

    /// Stages the writes with the applied index (one atomic sled batch per
    /// Ready, see [`Staged`]), then publishes the changes in memory.
    /// Returns the events of the new revision, if any.
    fn commit(mut self, index: u64, term: u64) -> Result<Option<RevisionEvents>> {
        let changed = self.changed();
        if changed {
            self.ops.push((META_REVISION.to_vec(), Some(i64_value(self.main))));
        }
        if let Some(m) = &self.member {
            self.ops
                .push((id_key(PREFIX_MEMBER, m.id).to_vec(), Some(codec::seal_msg(m))));
        }
        self.ops.push((META_APPLIED.to_vec(), Some(applied_value(index, term))));
        let mvcc = self.mvcc;
        mvcc.stage(self.ops, self.records);
        {
            let mut leases = mvcc.leases.lock();
            for change in self.lease_changes {
                match change {
                    LeaseChange::Grant(id, ttl) => {
                        leases.insert(
                            id,
                            Lease {
                                ttl,
                                keys: HashSet::new(),
                            },
                        );
                        mvcc.touch_lease(id, ttl);
                    }
                    LeaseChange::Revoke(id) => {
                        leases.remove(&id);
                        mvcc.deadlines.lock().remove(&id);
                    }
                    LeaseChange::Attach(id, key) => {
                        if let Some(l) = leases.get_mut(&id) {
                            l.keys.insert(key);
                        }
                    }
                    LeaseChange::Detach(id, key) => {
                        if let Some(l) = leases.get_mut(&id) {
                            l.keys.remove(&key);
                        }
                    }
                }
            }
        }
        if let Some((id, ttl)) = self.renewed {
            mvcc.touch_lease(id, ttl);
        }
        if let Some(m) = self.member {
            mvcc.members.write().insert(m.id, m);
        }
        if changed {
            let mut revs = mvcc.revs.write();
            for (key, rev, tombstone) in &self.index_ops {
                if *tombstone {
                    revs.index.tombstone(key, *rev);
                } else {
                    revs.index.put(key, *rev);
                }
            }
            revs.current = self.main;
        }
        if let Some(at) = self.compact_to {
            mvcc.revs.write().compacted = at;
            if let Some(tx) = mvcc.compactor.lock().as_ref() {
                let _ = tx.send(at);
            }
        }
        *mvcc.applied.lock() = (index, term);
        Ok(changed.then_some(RevisionEvents {
            revision: self.main,
            events: self.events,
        }))
    }
}

#[cfg(test)]
mod tests;
