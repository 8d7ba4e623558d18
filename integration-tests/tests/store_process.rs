//! Real `store` processes on loopback: `kill -9` of leaders and followers
//! while clients write; restarts from disk; damaged data dirs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::store_cluster::{StoreCluster, eventually, workspace_bin};
use proto::etcdserverpb as pb;

/// Acknowledged writes, shared by writer tasks.
#[derive(Default)]
struct Acked(std::sync::Mutex<BTreeSet<String>>);

impl Acked {
    fn add(&self, k: String) {
        self.0.lock().expect("lock").insert(k);
    }
}

/// Writes unique keys to the running members round-robin until `stop`,
/// recording each acknowledged one.
async fn writer(
    id: usize,
    endpoints: Vec<String>,
    acked: Arc<Acked>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let mut seq = 0usize;
    let mut clients = Vec::new();
    for e in &endpoints {
        if let Ok(ch) = integration_tests::store_cluster::channel(e).await {
            clients.push(proto::etcdserverpb::kv_client::KvClient::new(ch));
        }
    }
    while !*stop.borrow() {
        let key = format!("w{id}/{seq:06}");
        let c = &mut clients[seq % endpoints.len()];
        let req = pb::PutRequest {
            key: key.clone().into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        if c.put(req).await.is_ok() {
            acked.add(key);
        }
        seq += 1;
    }
    seq
}

async fn all_keys(c: &StoreCluster, i: usize) -> anyhow::Result<BTreeSet<String>> {
    let mut kv = c.kv(i).await?;
    let r = kv
        .range(pb::RangeRequest {
            key: b"w".to_vec(),
            range_end: b"x".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .await?;
    Ok(r.into_inner()
        .kvs
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_kill9_leader_and_follower_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let mut c = StoreCluster::start(3).await?;
    let acked = Arc::new(Acked::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..4)
        .map(|i| tokio::spawn(writer(i, c.endpoints(), acked.clone(), stop_rx.clone())))
        .collect();
    let count = |a: &Acked| a.0.lock().expect("lock").len();

    // Let writes flow, then kill the leader mid-stream.
    let before = count(&acked);
    eventually("writes before the first kill", Duration::from_secs(20), || async {
        count(&acked) >= before + 100
    })
    .await?;
    let leader = c.leader().await?;
    c.kill9(leader);
    let after_kill = count(&acked);
    eventually("writes after leader loss", Duration::from_secs(30), || async {
        count(&acked) >= after_kill + 100
    })
    .await?;
    c.restart(leader)?;

    // Now a follower.
    let leader = c.leader().await?;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    c.kill9(follower);
    let after_kill = count(&acked);
    eventually("writes after follower loss", Duration::from_secs(30), || async {
        count(&acked) >= after_kill + 100
    })
    .await?;
    c.restart(follower)?;

    stop_tx.send(true)?;
    let mut attempted = 0;
    for w in writers {
        attempted += w.await?;
    }
    let acked: BTreeSet<String> = acked.0.lock().expect("lock").clone();
    assert!(
        acked.len() > 300,
        "only {} of {attempted} writes acknowledged",
        acked.len()
    );

    // Every member, including both restarted ones, holds every acknowledged
    // write (a linearizable read on each).
    for i in 0..3 {
        let c = &c;
        let acked = &acked;
        eventually(
            &format!("member {i} to hold every acknowledged write"),
            Duration::from_secs(30),
            || async move { all_keys(c, i).await.map(|keys| acked.is_subset(&keys)).unwrap_or(false) },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_single_member_survives_kill9() -> anyhow::Result<()> {
    let mut c = StoreCluster::start(1).await?;
    let mut kv = c.kv(0).await?;
    let mut acked = BTreeSet::new();
    for i in 0..200 {
        let key = format!("w/{i:04}");
        kv.put(pb::PutRequest {
            key: key.clone().into_bytes(),
            value: vec![7; 100],
            ..Default::default()
        })
        .await?;
        acked.insert(key);
    }
    c.kill9(0);
    c.restart(0)?;
    c.leader().await?;
    let keys = all_keys(&c, 0).await?;
    assert_eq!(
        keys, acked,
        "every acknowledged write survives kill -9 of a single member"
    );
    Ok(())
}

/// Runs the store binary on a member's data dir and expects it to refuse
/// to start within a bounded time, naming the problem.
fn expect_refusal(c: &StoreCluster, i: usize, want: &[&str]) -> anyhow::Result<()> {
    let m = &c.members[i];
    let mut child = std::process::Command::new(workspace_bin("store")?)
        .args(["--name", &m.name])
        .arg("--data-dir")
        .arg(&m.data_dir)
        .args([
            "--listen-client-urls",
            "http://127.0.0.1:0",
            "--listen-peer-urls",
            "http://127.0.0.1:0",
        ])
        .args([
            "--initial-advertise-peer-urls",
            &m.peer_url,
            "--initial-cluster",
            &format!("{}={}", m.name, m.peer_url),
        ])
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("the store started on a damaged data dir instead of refusing ({want:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)?;
    assert!(
        !status.success(),
        "a damaged data dir must not be served; stderr:\n{stderr}"
    );
    assert!(
        want.iter().any(|w| stderr.contains(w)),
        "error should say what is wrong ({want:?}):\n{stderr}"
    );
    Ok(())
}

fn damage(path: &std::path::Path, how: &str) -> anyhow::Result<()> {
    let mut data = std::fs::read(path)?;
    match how {
        "truncate" => data.truncate(data.len() / 3),
        _ => {
            let mid = data.len() / 2;
            for b in &mut data[mid..mid + 64] {
                *b ^= 0x5a;
            }
        }
    }
    std::fs::write(path, &data)?;
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_damaged_data_dir_is_detected_not_served() -> anyhow::Result<()> {
    let mut c = StoreCluster::start(1).await?;
    let mut kv = c.kv(0).await?;
    for i in 0..50 {
        kv.put(pb::PutRequest {
            key: format!("w/{i:02}").into_bytes(),
            value: vec![b'x'; 200],
            ..Default::default()
        })
        .await?;
    }
    c.stop(0)?;
    let dir = c.members[0].data_dir.clone();
    let pristine = c.dir().join("pristine");
    copy_dir(&dir, &pristine)?;
    let reset = || -> anyhow::Result<()> {
        std::fs::remove_dir_all(&dir)?;
        copy_dir(&pristine, &dir)
    };

    std::fs::write(dir.join("member.id"), b"not hex at all")?;
    expect_refusal(&c, 0, &["member.id is corrupt"])?;

    // The Raft log (WAL) is the record of what was acknowledged: losing any
    // of it is fatal, and the state machine's applied index proves the loss.
    reset()?;
    damage(&dir.join("wal").join("db"), "truncate")?;
    expect_refusal(&c, 0, &["truncated", "corrupt"])?;
    reset()?;
    damage(&dir.join("wal").join("db"), "flip")?;
    expect_refusal(&c, 0, &["truncated", "corrupt"])?;

    // Damage to the state machine's database is recovered from the log:
    // every acknowledged key is served again, correctly.
    for how in ["truncate", "flip"] {
        reset()?;
        damage(&dir.join("state").join("db"), how)?;
        c.restart(0)?;
        c.leader().await?;
        let keys = all_keys(&c, 0).await?;
        assert_eq!(keys.len(), 50, "state damaged by {how}: all keys replayed from the log");
        let mut kv = c.kv(0).await?;
        let r = kv
            .range(pb::RangeRequest {
                key: b"w/49".to_vec(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(r.kvs[0].value, vec![b'x'; 200]);
        c.stop(0)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_force_new_cluster_recovers_from_quorum_loss() -> anyhow::Result<()> {
    let mut c = StoreCluster::start(3).await?;
    let mut kv = c.kv(0).await?;
    for i in 0..20 {
        kv.put(pb::PutRequest {
            key: format!("w/{i:02}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await?;
    }
    let survivor = 0;
    c.kill9(1);
    c.kill9(2);
    let mut kv = c.kv(survivor).await?;
    let lost = kv
        .put(pb::PutRequest {
            key: b"w/lost".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(lost.is_err(), "one of three members cannot commit");
    c.restart_with(survivor, &["--force-new-cluster"])?;
    c.leader().await?;
    let mut kv = c.kv(survivor).await?;
    kv.put(pb::PutRequest {
        key: b"w/after".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    })
    .await?;
    let keys = all_keys(&c, survivor).await?;
    assert!(
        keys.contains("w/after") && (0..20).all(|i| keys.contains(&format!("w/{i:02}"))),
        "{keys:?}"
    );
    let mut cluster = proto::etcdserverpb::cluster_client::ClusterClient::new(
        integration_tests::store_cluster::channel(&c.members[survivor].client_url).await?,
    );
    let members = cluster
        .member_list(pb::MemberListRequest::default())
        .await?
        .into_inner()
        .members;
    assert_eq!(members.len(), 1, "the survivor is alone in its new cluster");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_leases_expire_unless_kept_alive() -> anyhow::Result<()> {
    use futures::StreamExt;
    let c = StoreCluster::start(1).await?;
    let ch = integration_tests::store_cluster::channel(&c.members[0].client_url).await?;
    let mut lease = proto::etcdserverpb::lease_client::LeaseClient::new(ch);
    let granted = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 2, id: 0 })
        .await?
        .into_inner();
    assert_eq!(granted.ttl, 2);
    let mut kv = c.kv(0).await?;
    kv.put(pb::PutRequest {
        key: b"leased".to_vec(),
        value: b"v".to_vec(),
        lease: granted.id,
        ..Default::default()
    })
    .await?;

    // Keep it alive past its TTL: it stays.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        tx.send(pb::LeaseKeepAliveRequest { id: granted.id }).await?;
        let r = responses.next().await.expect("keepalive response")?;
        assert_eq!(r.ttl, 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = kv
        .range(pb::RangeRequest {
            key: b"leased".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(r.count, 1, "kept alive beyond its TTL");
    drop(tx);

    // Stop renewing: the leader revokes it and its key goes.
    let kvc = kv.clone();
    eventually("the lease to expire and take its key", Duration::from_secs(10), || {
        let mut kv = kvc.clone();
        async move {
            kv.range(pb::RangeRequest {
                key: b"leased".to_vec(),
                ..Default::default()
            })
            .await
            .is_ok_and(|r| r.into_inner().count == 0)
        }
    })
    .await?;
    let ttl = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: granted.id,
            keys: false,
        })
        .await?
        .into_inner();
    assert_eq!(ttl.ttl, -1, "an expired lease is gone");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_periodic_auto_compaction() -> anyhow::Result<()> {
    let c = StoreCluster::start_with(1, &["--auto-compaction-retention", "1s"]).await?;
    let mut kv = c.kv(0).await?;
    kv.put(pb::PutRequest {
        key: b"k".to_vec(),
        value: b"1".to_vec(),
        ..Default::default()
    })
    .await?;
    let kvc = kv.clone();
    eventually(
        "history older than the retention to be compacted",
        Duration::from_secs(20),
        || {
            let mut kv = kvc.clone();
            async move {
                // Keep writing so there is history to compact.
                let _ = kv
                    .put(pb::PutRequest {
                        key: b"k".to_vec(),
                        value: b"x".to_vec(),
                        ..Default::default()
                    })
                    .await;
                let old = kv
                    .range(pb::RangeRequest {
                        key: b"k".to_vec(),
                        revision: 2,
                        ..Default::default()
                    })
                    .await;
                old.is_err_and(|e| e.message().contains("compacted"))
            }
        },
    )
    .await?;
    let latest = kv
        .range(pb::RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(latest.kvs[0].value, b"x");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_member_joins_as_learner_and_is_promoted() -> anyhow::Result<()> {
    use integration_tests::store_cluster::channel;
    use proto::etcdserverpb::cluster_client::ClusterClient;
    use proto::etcdserverpb::maintenance_client::MaintenanceClient;
    let mut c = StoreCluster::start(1).await?;
    let mut kv = c.kv(0).await?;
    for i in 0..30 {
        kv.put(pb::PutRequest {
            key: format!("w/{i:02}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await?;
    }
    // The operator's flow: add the member as a learner, then start it with
    // --initial-cluster-state existing.
    let new = c.new_member("joiner")?;
    let mut cluster = ClusterClient::new(channel(&c.members[0].client_url).await?);
    let added = cluster
        .member_add(pb::MemberAddRequest {
            peer_ur_ls: vec![c.members[new].peer_url.clone()],
            is_learner: true,
        })
        .await?
        .into_inner();
    let id = added.member.map_or(0, |m| m.id);
    c.start_joined(new)?;

    // It catches up (by snapshot: it starts with an empty log), under the
    // id the cluster gave it.
    let leader = MaintenanceClient::new(channel(&c.members[0].client_url).await?)
        .status(pb::StatusRequest {})
        .await?;
    let target = leader.into_inner().raft_applied_index;
    let joiner = channel(&c.members[new].client_url).await?;
    let j = joiner.clone();
    eventually("the joiner to catch up", Duration::from_secs(20), || {
        let j = j.clone();
        async move {
            MaintenanceClient::new(j)
                .status(pb::StatusRequest {})
                .await
                .is_ok_and(|s| {
                    let s = s.into_inner();
                    s.is_learner && s.raft_applied_index >= target && s.header.is_some_and(|h| h.member_id == id)
                })
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;

    // Promote it once the leader agrees it is in sync; then it is a voter,
    // knows the whole membership, and serves reads.
    eventually("the promotion to be accepted", Duration::from_secs(20), || {
        let mut cl = cluster.clone();
        async move { cl.member_promote(pb::MemberPromoteRequest { id }).await.is_ok() }
    })
    .await?;
    let members = ClusterClient::new(joiner.clone())
        .member_list(pb::MemberListRequest { linearizable: true })
        .await?
        .into_inner()
        .members;
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| !m.is_learner), "{members:?}");
    assert_eq!(all_keys(&c, new).await?.len(), 30);
    kv.put(pb::PutRequest {
        key: b"w/after".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    })
    .await?;
    assert!(all_keys(&c, new).await?.contains("w/after"));
    Ok(())
}
