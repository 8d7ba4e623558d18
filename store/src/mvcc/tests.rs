use super::*;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::request_op::Request;
use pb::response_op::Response;

struct Fixture {
    _dir: tempfile::TempDir,
    db: crate::data_dir::Db,
    mvcc: Arc<Mvcc>,
    index: u64,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::data_dir::Db::open(&dir.path().join("db")).unwrap();
        let mvcc = Mvcc::open(&db).unwrap();
        Self {
            _dir: dir,
            db,
            mvcc,
            index: 0,
        }
    }

    fn apply(&mut self, req: InternalReq) -> (Result<Applied>, Option<RevisionEvents>) {
        self.index += 1;
        let out = self.mvcc.apply(self.index, 1, req).unwrap();
        self.mvcc.flush_staged().unwrap(); // as the Raft thread does per Ready
        out
    }

    fn put(&mut self, k: &str, v: &str) -> pb::PutResponse {
        self.put_req(pb::PutRequest {
            key: k.into(),
            value: v.into(),
            prev_kv: true,
            ..Default::default()
        })
        .unwrap()
    }

    fn put_req(&mut self, req: pb::PutRequest) -> Result<pb::PutResponse> {
        match self.apply(InternalReq::Put(req)).0? {
            Applied::Put(r) => Ok(r),
            other => panic!("{other:?}"),
        }
    }

    fn del(&mut self, k: &str, end: &str) -> pb::DeleteRangeResponse {
        let req = pb::DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            prev_kv: true,
        };
        match self.apply(InternalReq::DeleteRange(req)).0.unwrap() {
            Applied::DeleteRange(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn txn(&mut self, t: pb::TxnRequest) -> Result<pb::TxnResponse> {
        match self.apply(InternalReq::Txn(t)).0? {
            Applied::Txn(r) => Ok(r),
            other => panic!("{other:?}"),
        }
    }

    fn get(&self, k: &str, rev: i64) -> Result<Vec<(String, String)>> {
        let r = self.mvcc.range(&pb::RangeRequest {
            key: k.into(),
            revision: rev,
            ..Default::default()
        })?;
        Ok(r.kvs.into_iter().map(|kv| (s(&kv.key), s(&kv.value))).collect())
    }

    fn reopen(self) -> Self {
        let Fixture { _dir, db, mvcc, index } = self;
        mvcc.close();
        drop(mvcc);
        db.flush().unwrap();
        let mvcc = Mvcc::open(&db).unwrap();
        Self { _dir, db, mvcc, index }
    }
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mod_eq(key: &str, rev: i64) -> pb::Compare {
    pb::Compare {
        key: key.into(),
        target: CompareTarget::Mod as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::ModRevision(rev)),
        range_end: vec![],
    }
}

fn put_op(k: &str, v: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Request::RequestPut(pb::PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn get_op(k: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Request::RequestRange(pb::RangeRequest {
            key: k.into(),
            ..Default::default()
        })),
    }
}

#[test]
fn revisions_versions_and_history() {
    let mut f = Fixture::new();
    assert_eq!(
        f.mvcc.current_revision(),
        1,
        "a fresh store is at revision 1, like etcd"
    );
    let r = f.put("a", "1");
    assert_eq!(r.header.unwrap().revision, 2);
    assert!(r.prev_kv.is_none());
    let r = f.put("a", "2");
    let prev = r.prev_kv.unwrap();
    assert_eq!((prev.version, prev.mod_revision, s(&prev.value)), (1, 2, "1".into()));
    let kv = f.mvcc.get(b"a").unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    f.del("a", "");
    f.put("a", "3");
    let kv = f.mvcc.get(b"a").unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.version),
        (5, 1),
        "a new generation restarts version"
    );
    assert_eq!(f.get("a", 2).unwrap(), vec![("a".into(), "1".into())]);
    assert_eq!(f.get("a", 4).unwrap(), vec![], "deleted at 4");
    assert_eq!(f.get("a", 6), Err(StoreError::FutureRevision));
}

#[test]
fn range_limit_count_sort_and_filters() {
    let mut f = Fixture::new();
    for (k, v) in [("p/a", "3"), ("p/b", "1"), ("p/c", "2"), ("q", "x")] {
        f.put(k, v);
    }
    let req = |limit, order, target| pb::RangeRequest {
        key: b"p/".to_vec(),
        range_end: b"p0".to_vec(),
        limit,
        sort_order: order as i32,
        sort_target: target as i32,
        ..Default::default()
    };
    use pb::range_request::{SortOrder, SortTarget};
    let r = f.mvcc.range(&req(2, SortOrder::None, SortTarget::Key)).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (2, 3, true));
    let r = f.mvcc.range(&req(0, SortOrder::Descend, SortTarget::Value)).unwrap();
    let keys: Vec<_> = r.kvs.iter().map(|kv| s(&kv.key)).collect();
    assert_eq!(keys, ["p/a", "p/c", "p/b"]);
    let r = f
        .mvcc
        .range(&pb::RangeRequest {
            count_only: true,
            ..req(0, SortOrder::None, SortTarget::Key)
        })
        .unwrap();
    assert_eq!((r.count, r.kvs.len()), (3, 0));
    let r = f
        .mvcc
        .range(&pb::RangeRequest {
            keys_only: true,
            ..req(1, SortOrder::None, SortTarget::Key)
        })
        .unwrap();
    assert!(r.kvs[0].value.is_empty());
    let r = f
        .mvcc
        .range(&pb::RangeRequest {
            min_mod_revision: 4,
            ..req(0, SortOrder::None, SortTarget::Key)
        })
        .unwrap();
    assert_eq!(r.count, 1, "only p/c was written at revision 4 or later within p/");
    let all = f
        .mvcc
        .range(&pb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.count, 4, "\\0..\\0 is every key");
}

#[test]
fn kubernetes_txn_shapes() {
    let mut f = Fixture::new();
    // create: mod_revision == 0 -> put
    let create = |v: &str| pb::TxnRequest {
        compare: vec![mod_eq("obj", 0)],
        success: vec![put_op("obj", v)],
        failure: vec![],
    };
    let r = f.txn(create("v1")).unwrap();
    assert!(r.succeeded);
    let rev = r.header.unwrap().revision;
    let r = f.txn(create("again")).unwrap();
    assert!(!r.succeeded, "second create must fail: AlreadyExists");
    assert_eq!(f.mvcc.current_revision(), rev, "a failed txn writes nothing");
    // update: mod_revision == rv -> put, else get
    let update = |rv: i64, v: &str| pb::TxnRequest {
        compare: vec![mod_eq("obj", rv)],
        success: vec![put_op("obj", v)],
        failure: vec![get_op("obj")],
    };
    let r = f.txn(update(rev, "v2")).unwrap();
    assert!(r.succeeded);
    let r = f.txn(update(rev, "stale")).unwrap();
    assert!(!r.succeeded, "stale resourceVersion conflicts");
    match &r.responses[0].response {
        Some(Response::ResponseRange(rr)) => {
            assert_eq!(s(&rr.kvs[0].value), "v2", "failure branch returns current object")
        }
        other => panic!("{other:?}"),
    }
    // delete: mod_revision == rv -> delete, else get
    let cur = f.mvcc.get(b"obj").unwrap().unwrap().mod_revision;
    let del = pb::TxnRequest {
        compare: vec![mod_eq("obj", cur)],
        success: vec![pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: b"obj".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![get_op("obj")],
    };
    assert!(f.txn(del).unwrap().succeeded);
    assert_eq!(f.mvcc.get(b"obj").unwrap(), None);
}

#[test]
fn compare_targets() {
    let mut f = Fixture::new();
    f.put("k", "v");
    let cmp = |target: CompareTarget, result: CompareResult, u: TargetUnion| pb::Compare {
        key: b"k".to_vec(),
        target: target as i32,
        result: result as i32,
        target_union: Some(u),
        range_end: vec![],
    };
    use CompareResult::*;
    use CompareTarget::*;
    let cases = [
        (cmp(Version, Equal, TargetUnion::Version(1)), true, "version 1"),
        (cmp(Version, Greater, TargetUnion::Version(1)), false, "not greater"),
        (cmp(Create, Equal, TargetUnion::CreateRevision(2)), true, "created at 2"),
        (cmp(Mod, Less, TargetUnion::ModRevision(3)), true, "mod 2 < 3"),
        (cmp(Value, Equal, TargetUnion::Value(b"v".to_vec())), true, "value"),
        (
            cmp(Value, NotEqual, TargetUnion::Value(b"v".to_vec())),
            false,
            "value equal",
        ),
        (cmp(Lease, Equal, TargetUnion::Lease(0)), true, "no lease"),
        (
            pb::Compare {
                key: b"missing".to_vec(),
                ..cmp(Value, Equal, TargetUnion::Value(vec![]))
            },
            false,
            "a missing key never matches by value",
        ),
        (
            pb::Compare {
                key: b"missing".to_vec(),
                ..cmp(Create, Equal, TargetUnion::CreateRevision(0))
            },
            true,
            "a missing key has create revision 0",
        ),
    ];
    for (c, want, why) in cases {
        assert_eq!(f.mvcc.compare_at(&c, f.mvcc.current_revision()).unwrap(), want, "{why}");
    }
}

#[test]
fn failed_request_changes_nothing() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let before = (f.mvcc.current_revision(), f.mvcc.dump().unwrap().len());
    let err = f.put_req(pb::PutRequest {
        key: b"b".to_vec(),
        lease: 42,
        ..Default::default()
    });
    assert_eq!(err.unwrap_err(), StoreError::LeaseNotFound);
    let err = f.put_req(pb::PutRequest {
        key: b"nope".to_vec(),
        ignore_value: true,
        ..Default::default()
    });
    assert_eq!(err.unwrap_err(), StoreError::KeyNotFound);
    // A txn whose second op fails writes none of its ops.
    let t = pb::TxnRequest {
        compare: vec![],
        success: vec![
            put_op("x", "1"),
            pb::RequestOp {
                request: Some(Request::RequestPut(pb::PutRequest {
                    key: b"y".to_vec(),
                    lease: 7,
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    assert_eq!(f.txn(t).unwrap_err(), StoreError::LeaseNotFound);
    assert_eq!(f.mvcc.get(b"x").unwrap(), None);
    assert_eq!(f.mvcc.current_revision(), before.0);
    assert_eq!(f.mvcc.applied().0, f.index, "the entry still counts as applied");
}

#[test]
fn leases_attach_and_revoke() {
    let mut f = Fixture::new();
    let (r, _) = f.apply(InternalReq::LeaseGrant(pb::LeaseGrantRequest { id: 9, ttl: 1 }));
    match r.unwrap() {
        Applied::LeaseGrant(g) => assert_eq!(g.ttl, MIN_LEASE_TTL, "short TTLs are raised to the minimum"),
        other => panic!("{other:?}"),
    }
    let (r, _) = f.apply(InternalReq::LeaseGrant(pb::LeaseGrantRequest { id: 9, ttl: 10 }));
    assert_eq!(r.unwrap_err(), StoreError::LeaseExists);
    f.put_req(pb::PutRequest {
        key: b"a".to_vec(),
        lease: 9,
        ..Default::default()
    })
    .unwrap();
    f.put_req(pb::PutRequest {
        key: b"b".to_vec(),
        lease: 9,
        ..Default::default()
    })
    .unwrap();
    f.put("b", "detached"); // re-put without lease detaches
    assert_eq!(f.mvcc.lease_ttl(9).unwrap().2, vec![b"a".to_vec()]);
    // Lease state survives a restart.
    let mut f = f.reopen();
    assert_eq!(f.mvcc.lease_ttl(9).unwrap().2, vec![b"a".to_vec()]);
    let (r, events) = f.apply(InternalReq::LeaseRevoke(pb::LeaseRevokeRequest { id: 9 }));
    r.unwrap();
    let events = events.unwrap();
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].r#type, EventType::Delete as i32);
    assert_eq!(f.mvcc.get(b"a").unwrap(), None);
    assert_eq!(
        f.mvcc.get(b"b").unwrap().map(|kv| s(&kv.value)),
        Some("detached".into())
    );
    assert!(f.mvcc.lease_ttl(9).is_none());
}

#[test]
fn events_carry_whole_revisions() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("b", "1");
    let t = pb::TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "2"), put_op("b", "2")],
        failure: vec![],
    };
    let (_, events) = f.apply(InternalReq::Txn(t));
    let events = events.unwrap();
    assert_eq!(events.revision, 4);
    assert_eq!(events.events.len(), 2);
    assert!(events.events.iter().all(|e| e.kv.as_ref().unwrap().mod_revision == 4));
    let r = f.del("a", "c");
    assert_eq!(r.deleted, 2);
    let hist = f.mvcc.history(2, 5, b"a", b"c", true).unwrap();
    let shape: Vec<(i64, usize)> = hist.iter().map(|r| (r.revision, r.events.len())).collect();
    assert_eq!(shape, vec![(2, 1), (3, 1), (4, 2), (5, 2)]);
    let deleted_a = &hist[3].events[0];
    assert_eq!(deleted_a.r#type, EventType::Delete as i32);
    assert_eq!(
        s(&deleted_a.prev_kv.as_ref().unwrap().value),
        "2",
        "history carries prev_kv"
    );
}

#[test]
fn compaction_drops_old_revisions_and_keeps_latest() {
    let mut f = Fixture::new();
    for i in 0..100 {
        f.put(&format!("k{}", i % 10), &i.to_string());
    }
    f.del("k0", "");
    let at = f.mvcc.current_revision() - 5;
    let (r, _) = f.apply(InternalReq::Compaction(pb::CompactionRequest {
        revision: at,
        physical: true,
    }));
    r.unwrap();
    let (r, _) = f.apply(InternalReq::Compaction(pb::CompactionRequest {
        revision: at,
        physical: true,
    }));
    assert!(
        matches!(r, Err(StoreError::Compacted { .. })),
        "compacting twice at one revision"
    );
    let (r, _) = f.apply(InternalReq::Compaction(pb::CompactionRequest {
        revision: 10_000,
        physical: true,
    }));
    assert_eq!(r.unwrap_err(), StoreError::FutureRevision);
    assert!(matches!(f.get("k1", at - 1), Err(StoreError::Compacted { .. })));
    assert_eq!(
        f.get("k1", at).unwrap().len(),
        1,
        "reading at the compacted revision itself works"
    );
    assert!(matches!(
        f.mvcc.history(at, at + 1, b"k", &[0], false),
        Err(StoreError::Compacted { .. })
    ));
    // Wait for the background compactor, then check what is left on disk.
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_i64(&f.mvcc.tree, META_COMPACT_DONE).unwrap() != Some(at) {
        assert!(Instant::now() < deadline, "compactor did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let records = f.mvcc.tree.scan_prefix([PREFIX_KV]).count();
    assert!(
        records <= 9 + 6,
        "9 live keys at the compact point plus 5 later writes, got {records}"
    );
    for i in 1..10 {
        assert_eq!(f.get(&format!("k{i}"), 0).unwrap().len(), 1);
    }
    // The compacted state survives a restart with identical reads.
    let before: Vec<_> = (1..10).map(|i| f.get(&format!("k{i}"), 0).unwrap()).collect();
    let f = f.reopen();
    let after: Vec<_> = (1..10).map(|i| f.get(&format!("k{i}"), 0).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(f.mvcc.compacted_revision(), at);
}

#[test]
fn restart_rebuilds_same_state() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("b", "2");
    f.del("a", "");
    let hash = f.mvcc.hash_kv(0).unwrap();
    let rev = f.mvcc.current_revision();
    let f = f.reopen();
    assert_eq!(f.mvcc.current_revision(), rev);
    assert_eq!(f.mvcc.hash_kv(0).unwrap(), hash);
    assert_eq!(f.mvcc.applied(), (3, 1));
    assert_eq!(f.get("b", 0).unwrap(), vec![("b".into(), "2".into())]);
}

#[test]
fn snapshot_restore_into_another_store() {
    let mut a = Fixture::new();
    a.put("x", "1");
    a.put("y", "2");
    a.apply(InternalReq::LeaseGrant(pb::LeaseGrantRequest { id: 5, ttl: 100 }))
        .0
        .unwrap();
    let data = crate::snapshot::encode(&a.mvcc.dump().unwrap());
    let mut b = Fixture::new();
    b.put("junk", "gone");
    b.mvcc.restore(crate::snapshot::decode(&data).unwrap()).unwrap();
    assert_eq!(b.mvcc.hash_kv(0).unwrap(), a.mvcc.hash_kv(0).unwrap());
    assert_eq!(b.mvcc.current_revision(), a.mvcc.current_revision());
    assert_eq!(b.get("junk", 0).unwrap(), vec![]);
    assert_eq!(b.mvcc.lease_ids(), vec![5]);
    assert_eq!(b.mvcc.applied(), a.mvcc.applied());
    b.index = b.mvcc.applied().0;
    b.put("z", "3");
    assert_eq!(b.mvcc.current_revision(), a.mvcc.current_revision() + 1);
}

#[test]
fn corrupt_record_is_detected_on_open() {
    let f = Fixture::new();
    let mut f = f;
    f.put("a", "value");
    let (k, v) = f.mvcc.tree.scan_prefix([PREFIX_KV]).next().unwrap().unwrap();
    let mut bad = v.to_vec();
    bad[3] ^= 0xff;
    f.mvcc.tree.insert(k, bad).unwrap();
    f.mvcc.close();
    let err = Mvcc::open(&f.db).err().expect("open must fail");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn dense_range_scan_matches_point_reads() {
    let mut f = Fixture::new();
    for i in 0..300 {
        f.put(&format!("d/{i:03}"), &format!("v{i}"));
    }
    for i in (0..300).step_by(7) {
        f.put(&format!("d/{i:03}"), "rewritten");
    }
    f.del("d/100", "d/110");
    let past = f.mvcc.current_revision() - 20;
    // Some writes stay staged (not flushed to sled), as between flushes.
    for i in 200..230 {
        f.index += 1;
        let put = pb::PutRequest {
            key: format!("d/{i:03}").into(),
            value: b"staged".to_vec(),
            ..Default::default()
        };
        f.mvcc.apply(f.index, 1, InternalReq::Put(put)).unwrap().0.unwrap();
    }
    assert!(f.mvcc.staged_len() > 0);
    for at in [0, past] {
        let all = f
            .mvcc
            .range(&pb::RangeRequest {
                key: b"d/".to_vec(),
                range_end: b"d0".to_vec(),
                revision: at,
                ..Default::default()
            })
            .unwrap();
        assert!(all.kvs.len() > 64, "the dense path is taken");
        for kv in &all.kvs {
            let one = f.get(&s(&kv.key), at).unwrap();
            assert_eq!(one, vec![(s(&kv.key), s(&kv.value))], "key {} at {at}", s(&kv.key));
        }
    }
    let latest = f.get("d/215", 0).unwrap();
    assert_eq!(latest[0].1, "staged");
}

#[test]
fn flush_batches_end_at_entry_boundaries() {
    // Entries of 3, 3, 1, 5 and 2 ops (cumulative ends below).
    let ends = [3, 6, 7, 12, 14];
    assert_eq!(super::batch_cuts(&ends, 4), vec![1, 3, 4], "6, 12 and 14 ops");
    assert_eq!(super::batch_cuts(&ends, 100), vec![4], "one batch");
    assert_eq!(super::batch_cuts(&ends, 1), vec![0, 1, 2, 3, 4], "every entry");
    assert!(super::batch_cuts(&[], 4).is_empty());
}

/// A flush of many entries goes to sled in several batches; the state and
/// applied index after it (and after a reopen) are those of every entry.
#[test]
fn a_flush_larger_than_one_batch_keeps_everything() {
    let mut f = Fixture::new();
    let n = super::FLUSH_CHUNK * 3 + 7;
    for i in 0..n {
        f.index += 1;
        let req = InternalReq::Put(pb::PutRequest {
            key: format!("k{i:05}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        f.mvcc.apply(f.index, 1, req).unwrap().0.unwrap();
    }
    f.mvcc.flush_staged().unwrap();
    let last = f.index;
    let f = f.reopen();
    assert_eq!(f.mvcc.applied().0, last);
    assert_eq!(f.mvcc.current_revision(), n as i64 + 1);
    let all = f
        .mvcc
        .range(&pb::RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.count, n as i64);
}
