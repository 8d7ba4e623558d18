//! Multi-replica tests in one process over the simulated network: leader
//! loss, partitions, restarts from disk, snapshot catch-up, membership.
//! Faults come from the network's filters, so they are reproducible.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::etcdserverpb as pb;
use proto::storepb::MemberInfo;
use store::mvcc::Mvcc;
use store::sim::SimNetwork;
use store::watch::WatchHub;
use store::{Bootstrap, Node, NodeConfig, Store, StoreError};

struct Replica {
    store: Store,
}

struct SimCluster {
    net: Arc<SimNetwork>,
    root: tempfile::TempDir,
    replicas: HashMap<u64, Replica>,
    snapshot_entries: u64,
}

fn member(id: u64) -> MemberInfo {
    MemberInfo {
        id,
        name: format!("m{id}"),
        peer_urls: vec![format!("sim://{id}")],
        ..Default::default()
    }
}

impl SimCluster {
    async fn new(n: u64) -> Self {
        Self::with_snapshot_entries(n, 10_000).await
    }

    async fn with_snapshot_entries(n: u64, snapshot_entries: u64) -> Self {
        let mut c = Self {
            net: SimNetwork::new(),
            root: tempfile::tempdir().unwrap(),
            replicas: HashMap::new(),
            snapshot_entries,
        };
        let members: Vec<_> = (1..=n).map(member).collect();
        for id in 1..=n {
            c.start(id, Bootstrap::NewCluster(members.clone()));
        }
        c
    }

    fn start(&mut self, id: u64, bootstrap: Bootstrap) {
        let dir = self.root.path().join(id.to_string());
        let data = Arc::new(store::DataDir::open(&dir).unwrap());
        let mvcc = Mvcc::open(&data.state).unwrap();
        let hub = WatchHub::new(mvcc.current_revision());
        let mut cfg = NodeConfig::new(id);
        cfg.tick = Duration::from_millis(20);
        cfg.election_ticks = 10;
        cfg.request_timeout = Duration::from_secs(2);
        cfg.snapshot_entries = self.snapshot_entries;
        cfg.catchup_entries = (self.snapshot_entries / 2).max(1);
        let runtime = store::node::RaftRuntime::new().unwrap();
        let node = Node::start(cfg, data, mvcc, hub, self.net.transport(id), bootstrap, runtime).unwrap();
        self.net.register(node.clone());
        self.replicas.insert(
            id,
            Replica {
                store: Store::new(node),
            },
        );
    }

    /// Stops a replica and releases its data dir.
    fn stop(&mut self, id: u64) {
        self.net.unregister(id);
        if let Some(r) = self.replicas.remove(&id) {
            r.store.node().stop();
        }
    }

    fn store(&self, id: u64) -> &Store {
        &self.replicas[&id].store
    }

    fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<_> = self.replicas.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Waits until every replica in `among` agrees on one leader from
    /// `among`, and returns it.
    async fn leader_among(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let leaders: Vec<u64> = among.iter().map(|id| self.store(*id).status().leader).collect();
            let l = leaders[0];
            if l != 0 && among.contains(&l) && leaders.iter().all(|x| *x == l) && self.store(l).status().is_leader {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn leader(&self) -> u64 {
        self.leader_among(&self.ids()).await
    }

    /// Waits until every replica has applied the same state.
    async fn converged(&self, ids: &[u64]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let hashes: Vec<_> = ids.iter().map(|id| self.store(*id).mvcc().hash_kv(0).ok()).collect();
            let revs: Vec<_> = ids.iter().map(|id| self.store(*id).mvcc().current_revision()).collect();
            if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) && revs.iter().all(|r| *r == revs[0]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge: revisions {revs:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls a condition until it holds (bounded).
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put(s: &Store, k: &str, v: &str) -> Result<i64, StoreError> {
    let r = s
        .put(pb::PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })
        .await?;
    Ok(r.header.unwrap().revision)
}

async fn get(s: &Store, k: &str) -> Result<Option<String>, StoreError> {
    let r = s
        .range(pb::RangeRequest {
            key: k.into(),
            ..Default::default()
        })
        .await?;
    Ok(r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

/// Retries a write until some replica accepts it (after elections).
async fn put_anywhere(c: &SimCluster, ids: &[u64], k: &str, v: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for id in ids {
            if let Ok(rev) = put(c.store(*id), k, v).await {
                return rev;
            }
        }
        assert!(Instant::now() < deadline, "no replica accepted the write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        for id in self.ids() {
            self.stop(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replicates_and_follower_reads_are_linearizable() {
    let c = SimCluster::new(3).await;
    let leader = c.leader().await;
    let follower = c.ids().into_iter().find(|id| *id != leader).unwrap();
    // A write through a follower is forwarded to the leader by Raft.
    let rev = put(c.store(follower), "a", "1").await.unwrap();
    assert_eq!(rev, 2);
    // Every replica's linearizable read sees it at once.
    for id in c.ids() {
        assert_eq!(
            get(c.store(id), "a").await.unwrap().as_deref(),
            Some("1"),
            "replica {id}"
        );
    }
    c.converged(&c.ids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_leader_loss_and_restart_catches_up() {
    let mut c = SimCluster::new(3).await;
    let old = c.leader().await;
    put(c.store(old), "before", "1").await.unwrap();
    c.stop(old);
    let rest: Vec<u64> = c.ids();
    let new = c.leader_among(&rest).await;
    assert_ne!(new, old);
    put(c.store(new), "after", "2").await.unwrap();
    assert_eq!(
        get(c.store(new), "before").await.unwrap().as_deref(),
        Some("1"),
        "acknowledged write survives"
    );
    c.start(old, Bootstrap::Join);
    c.converged(&c.ids()).await;
    assert_eq!(get(c.store(old), "after").await.unwrap().as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_partitioned_leader_steps_down_and_minority_cannot_commit() {
    let c = SimCluster::new(3).await;
    let old = c.leader().await;
    let majority: Vec<u64> = c.ids().into_iter().filter(|id| *id != old).collect();
    c.net.partition(vec![vec![old], majority.clone()]);
    let new = c.leader_among(&majority).await;
    put(c.store(new), "k", "majority").await.unwrap();
    // The old leader can neither commit nor serve a linearizable read.
    let w = put(c.store(old), "k", "minority").await;
    assert!(w.is_err(), "minority write must not be acknowledged: {w:?}");
    assert!(
        get(c.store(old), "k").await.is_err(),
        "minority linearizable read must fail"
    );
    // A serializable read is allowed to be stale, and it is.
    let stale = c
        .store(old)
        .range(pb::RangeRequest {
            key: b"k".to_vec(),
            serializable: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(stale.kvs.is_empty());
    c.net.heal();
    c.converged(&c.ids()).await;
    for id in c.ids() {
        assert_eq!(
            get(c.store(id), "k").await.unwrap().as_deref(),
            Some("majority"),
            "replica {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_minority_partition_keeps_majority_serving() {
    let c = SimCluster::new(5).await;
    let leader = c.leader().await;
    let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
    let minority = vec![others[0], others[1]];
    let majority: Vec<u64> = c.ids().into_iter().filter(|id| !minority.contains(id)).collect();
    c.net.partition(vec![minority.clone(), majority.clone()]);
    for i in 0..20 {
        put(c.store(leader), &format!("k{i}"), "v").await.unwrap();
    }
    assert!(put(c.store(minority[0]), "m", "v").await.is_err());
    c.net.heal();
    c.converged(&c.ids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_isolated_follower_rejoins() {
    let c = SimCluster::new(3).await;
    let leader = c.leader().await;
    let f = c.ids().into_iter().find(|id| *id != leader).unwrap();
    c.net.isolate(f);
    for i in 0..10 {
        put(c.store(leader), &format!("k{i}"), "v").await.unwrap();
    }
    c.net.heal();
    c.converged(&c.ids()).await;
    // Pre-vote keeps the rejoining follower from disrupting the leader.
    assert!(c.store(leader).status().is_leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_restart_from_disk_keeps_everything() {
    let mut c = SimCluster::new(3).await;
    let leader = c.leader().await;
    for i in 0..50 {
        put(c.store(leader), &format!("k{i}"), &i.to_string()).await.unwrap();
    }
    c.converged(&c.ids()).await;
    let hash = c.store(leader).mvcc().hash_kv(0).unwrap();
    for id in c.ids() {
        c.stop(id);
    }
    for id in 1..=3 {
        c.start(id, Bootstrap::Join);
    }
    let leader = c.leader().await;
    assert_eq!(c.store(leader).mvcc().hash_kv(0).unwrap(), hash);
    put(c.store(leader), "after-restart", "ok").await.unwrap();
    c.converged(&c.ids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_lagging_member_catches_up_by_snapshot() {
    let mut c = SimCluster::with_snapshot_entries(3, 50).await;
    let leader = c.leader().await;
    let lagger = c.ids().into_iter().find(|id| *id != leader).unwrap();
    c.stop(lagger);
    for i in 0..300 {
        put_anywhere(&c, &c.ids(), &format!("k{i}"), "v").await;
    }
    let leader = c.leader().await;
    let first = c.store(leader).status().applied;
    assert!(first > 200);
    c.start(lagger, Bootstrap::Join);
    c.converged(&c.ids()).await;
    // The leader's log no longer holds what the lagger missed, so only a
    // snapshot can have brought it here. (Its state is visible a moment
    // before its Raft thread reports the snapshot's index as applied.)
    wait_for("the lagger to report the snapshot applied", || {
        c.store(lagger).status().applied >= first
    })
    .await;
    assert_eq!(get(c.store(lagger), "k0").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_membership_add_learner_promote_remove() {
    let mut c = SimCluster::new(1).await;
    let first = c.leader().await;
    for i in 0..20 {
        put(c.store(first), &format!("k{i}"), "v").await.unwrap();
    }
    // Add member 2 as a learner; it starts empty and catches up.
    c.store(first)
        .node()
        .add_member(MemberInfo {
            is_learner: true,
            ..member(2)
        })
        .await
        .unwrap();
    c.start(2, Bootstrap::Join);
    c.converged(&[1, 2]).await;
    wait_for("member 2 to know it is a learner", || c.store(2).status().is_learner).await;
    assert!(c.store(1).members().iter().any(|m| m.id == 2 && m.is_learner));
    // The joiner learned the whole membership (from the snapshot).
    wait_for("member 2 to know both members", || c.store(2).members().len() == 2).await;
    // A learner does not vote: the single voter still commits alone.
    put(c.store(first), "with-learner", "v").await.unwrap();
    c.store(first).promote_member(2).await.unwrap();
    assert!(c.store(1).members().iter().any(|m| m.id == 2 && !m.is_learner));
    // Promoting a voter is refused.
    assert_eq!(
        c.store(first).promote_member(2).await.unwrap_err(),
        StoreError::NotLearner
    );
    // Add a third voter, then remove the original member.
    c.store(first).node().add_member(member(3)).await.unwrap();
    c.start(3, Bootstrap::Join);
    c.converged(&[1, 2, 3]).await;
    c.store(first).remove_member(1).await.unwrap();
    c.stop(1);
    let leader = c.leader_among(&[2, 3]).await;
    put(c.store(leader), "after-removal", "v").await.unwrap();
    assert_eq!(c.store(leader).members().len(), 2);
    assert_eq!(
        c.store(leader).remove_member(99).await.unwrap_err(),
        StoreError::MemberNotFound
    );
    c.converged(&[2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drops_and_delays_lose_no_acknowledged_write() {
    let c = SimCluster::new(3).await;
    c.leader().await;
    c.net.set_drop_rate(0.2);
    c.net.set_delay(Some(Duration::from_millis(5)));
    let mut acked = Vec::new();
    for i in 0..60 {
        let id = c.ids()[i % 3];
        if put(c.store(id), &format!("k{i}"), "v").await.is_ok() {
            acked.push(i);
        }
    }
    c.net.heal();
    c.converged(&c.ids()).await;
    assert!(!acked.is_empty());
    for i in acked {
        for id in c.ids() {
            assert_eq!(
                get(c.store(id), &format!("k{i}")).await.unwrap().as_deref(),
                Some("v"),
                "k{i} on {id}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_watch_sees_every_revision_across_leader_change() {
    let mut c = SimCluster::new(3).await;
    let leader = c.leader().await;
    let watcher_on = c.ids().into_iter().find(|id| *id != leader).unwrap();
    let mut w = c
        .store(watcher_on)
        .watch(store::WatchSpec {
            key: b"w/".to_vec(),
            range_end: b"w0".to_vec(),
            start_revision: 1,
            ..Default::default()
        })
        .unwrap();
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(put(c.store(leader), &format!("w/{i}"), "v").await.unwrap());
    }
    c.stop(leader);
    let rest = c.ids();
    let new = c.leader_among(&rest).await;
    for i in 10..20 {
        revs.push(put(c.store(new), &format!("w/{i}"), "v").await.unwrap());
    }
    let mut seen = Vec::new();
    while seen.len() < revs.len() {
        let item = tokio::time::timeout(Duration::from_secs(5), w.next(100, None))
            .await
            .unwrap()
            .unwrap();
        if let store::WatchItem::Events { events, .. } = item {
            seen.extend(events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
        }
    }
    assert_eq!(seen, revs, "every write once, in order");
}
