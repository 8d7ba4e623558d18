//! Histories under faults: concurrent clients record every operation against
//! a 3-process cluster while its leader is killed; the linearizability
//! checker must accept the history, and every watcher must have seen every
//! revision exactly once, in order, whole, and the same as every other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use integration_tests::linearizability::{CheckResult, Input, Output, Recorder};
use integration_tests::store_cluster::{StoreCluster, channel, eventually};
use proto::etcdserverpb as pb;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::watch_client::WatchClient;
use rand::Rng;
use tonic::transport::Channel;

const KEYS: usize = 6;
const CLIENTS: u64 = 8;

fn key(i: usize) -> String {
    format!("h/{i}")
}

async fn run_client(id: u64, endpoints: Vec<String>, rec: Recorder, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut clients: Vec<KvClient<Channel>> = Vec::new();
    for e in &endpoints {
        if let Ok(ch) = channel(e).await {
            clients.push(KvClient::new(ch));
        }
    }
    let mut n = 0usize;
    let mut seq = 0u64;
    while !*stop.borrow() {
        let (k, choice, target) = {
            let mut rng = rand::rng();
            (
                key(rng.random_range(0..KEYS)),
                rng.random_range(0..10u8),
                rng.random_range(0..clients.len()),
            )
        };
        let c = &mut clients[target];
        seq += 1;
        let value = format!("c{id}-{seq}");
        match choice {
            0..=3 => {
                let op = rec.invoke(
                    id,
                    Input::Put {
                        key: k.clone(),
                        value: value.clone(),
                    },
                );
                let req = pb::PutRequest {
                    key: k.into_bytes(),
                    value: value.into_bytes(),
                    ..Default::default()
                };
                match c.put(req).await {
                    Ok(_) => op.complete(Output::Put),
                    Err(_) => op.unknown(),
                }
            }
            4..=6 => {
                let op = rec.invoke(id, Input::Get { key: k.clone() });
                match c
                    .range(pb::RangeRequest {
                        key: k.into_bytes(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(r) => {
                        let value = r
                            .into_inner()
                            .kvs
                            .first()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                        op.complete(Output::Get { value });
                    }
                    // A failed read changed nothing.
                    Err(_) => op.discard(),
                }
            }
            _ => {
                // Compare-and-swap on the value we last read, the way
                // Kubernetes updates on a resourceVersion.
                let current = c
                    .range(pb::RangeRequest {
                        key: k.clone().into_bytes(),
                        serializable: true,
                        ..Default::default()
                    })
                    .await
                    .ok()
                    .and_then(|r| {
                        r.into_inner()
                            .kvs
                            .first()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                    });
                let op = rec.invoke(
                    id,
                    Input::Cas {
                        key: k.clone(),
                        expected: current.clone(),
                        new: value.clone(),
                    },
                );
                use pb::compare::{CompareResult, CompareTarget, TargetUnion};
                let compare = match &current {
                    Some(v) => pb::Compare {
                        key: k.clone().into_bytes(),
                        target: CompareTarget::Value as i32,
                        result: CompareResult::Equal as i32,
                        target_union: Some(TargetUnion::Value(v.clone().into_bytes())),
                        range_end: vec![],
                    },
                    None => pb::Compare {
                        key: k.clone().into_bytes(),
                        target: CompareTarget::Create as i32,
                        result: CompareResult::Equal as i32,
                        target_union: Some(TargetUnion::CreateRevision(0)),
                        range_end: vec![],
                    },
                };
                let put = pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: k.into_bytes(),
                        value: value.into_bytes(),
                        ..Default::default()
                    })),
                };
                match c
                    .txn(pb::TxnRequest {
                        compare: vec![compare],
                        success: vec![put],
                        failure: vec![],
                    })
                    .await
                {
                    Ok(r) => op.complete(Output::Cas {
                        succeeded: r.into_inner().succeeded,
                    }),
                    Err(_) => op.unknown(),
                }
            }
        }
        n += 1;
    }
    n
}

/// One event as a watcher saw it, and which response carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    revision: i64,
    key: String,
    value: String,
    delete: bool,
}

#[derive(Default, Debug)]
struct WatchLog {
    /// Each response's events, in arrival order.
    responses: Vec<Vec<Seen>>,
    progress: Vec<i64>,
    resumes: usize,
}

/// Watches the prefix from revision 1 on one member; when the stream
/// breaks (its member was killed), resumes from the last revision + 1 on
/// the next member.
async fn run_watcher(
    endpoints: Vec<String>,
    first: usize,
    log: Arc<std::sync::Mutex<WatchLog>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut next_rev = 1i64;
    let mut target = first;
    loop {
        if *stop.borrow()
            && log
                .lock()
                .expect("lock")
                .progress
                .last()
                .is_some_and(|p| *p >= next_rev - 1)
        {
            return;
        }
        let Ok(ch) = channel(&endpoints[target % endpoints.len()]).await else {
            return;
        };
        let mut client = WatchClient::new(ch);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: b"h/".to_vec(),
                range_end: b"h0".to_vec(),
                start_revision: next_rev,
                progress_notify: true,
                ..Default::default()
            })),
        };
        if tx.send(create).await.is_err() {
            return;
        }
        let stream = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
        if let Ok(stream) = stream {
            let mut stream = stream.into_inner();
            let mut stop = stop.clone();
            loop {
                let msg = tokio::select! {
                    m = stream.next() => m,
                    _ = stop.changed() => None,
                };
                let Some(Ok(resp)) = msg else { break };
                assert!(!resp.canceled, "watch canceled: {}", resp.cancel_reason);
                let mut log = log.lock().expect("lock");
                if resp.events.is_empty() {
                    if !resp.created {
                        log.progress.push(resp.header.map_or(0, |h| h.revision));
                    }
                    continue;
                }
                let seen: Vec<Seen> = resp
                    .events
                    .iter()
                    .map(|e| {
                        let kv = e.kv.clone().unwrap_or_default();
                        Seen {
                            revision: kv.mod_revision,
                            key: String::from_utf8_lossy(&kv.key).into_owned(),
                            value: String::from_utf8_lossy(&kv.value).into_owned(),
                            delete: e.r#type == 1,
                        }
                    })
                    .collect();
                next_rev = seen.last().map_or(next_rev, |s| s.revision + 1);
                log.responses.push(seen);
            }
        }
        if *stop.borrow() {
            return;
        }
        log.lock().expect("lock").resumes += 1;
        target += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_history_and_watch_guarantees_under_leader_kill() -> anyhow::Result<()> {
    let mut c = StoreCluster::start_with(3, &["--experimental-watch-progress-notify-interval", "300ms"]).await?;
    let rec = Recorder::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (wstop_tx, wstop_rx) = tokio::sync::watch::channel(false);
    let logs: Vec<_> = (0..3)
        .map(|_| Arc::new(std::sync::Mutex::new(WatchLog::default())))
        .collect();
    let watchers: Vec<_> = (0..3)
        .map(|i| tokio::spawn(run_watcher(c.endpoints(), i, logs[i].clone(), wstop_rx.clone())))
        .collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(run_client(i, c.endpoints(), rec.clone(), stop_rx.clone())))
        .collect();

    // Operations per phase (before the kill, during, after the restart);
    // STORE_HISTORY_OPS raises it for longer runs outside CI.
    let phase: usize = std::env::var("STORE_HISTORY_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(800);
    let wait = Duration::from_secs(30).max(Duration::from_millis(phase as u64 * 40));
    let ops = || rec.history().len();
    eventually("operations before the kill", wait, || async { ops() >= phase }).await?;
    let leader = c.leader().await?;
    c.kill9(leader);
    let at_kill = ops();
    eventually("operations after the kill", wait, || async { ops() >= at_kill + phase }).await?;
    c.restart(leader)?;
    let at_restart = ops();
    eventually("operations after the restart", wait, || async {
        ops() >= at_restart + phase
    })
    .await?;
    stop_tx.send(true)?;
    for cl in clients {
        cl.await?;
    }

    let history = rec.history();
    let started = Instant::now();
    let verdict = integration_tests::linearizability::check(&history);
    eprintln!(
        "checked {} operations in {:?}: {verdict}",
        history.len(),
        started.elapsed()
    );
    assert_eq!(verdict, CheckResult::Ok, "{}", c.logs());
    assert!(history.len() >= 3 * phase);
    // The checker has teeth on this very history: one read of a value
    // nobody wrote makes it illegal.
    let mut forged = history.clone();
    let read = forged
        .iter_mut()
        .find(|o| matches!(o.output, Output::Get { value: Some(_) }))
        .expect("some read saw a value");
    read.output = Output::Get {
        value: Some("never-written".into()),
    };
    assert!(matches!(
        integration_tests::linearizability::check(&forged),
        CheckResult::Illegal { .. }
    ));

    // The authoritative end state: every revision since 1 wrote this prefix.
    let mut kv = c.kv((leader + 1) % 3).await?;
    let final_rev = kv
        .range(pb::RangeRequest {
            key: b"h/".to_vec(),
            range_end: b"h0".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map_or(0, |h| h.revision);
    // Watchers end once a progress notification says they are caught up.
    for log in &logs {
        let log = log.clone();
        eventually("watchers to catch up", Duration::from_secs(30), || {
            let log = log.clone();
            async move {
                log.lock()
                    .expect("lock")
                    .responses
                    .iter()
                    .flatten()
                    .last()
                    .is_some_and(|s| s.revision >= final_rev)
            }
        })
        .await?;
    }
    eventually(
        "a progress notification at the final revision",
        Duration::from_secs(10),
        || async {
            logs.iter()
                .all(|l| l.lock().expect("lock").progress.iter().any(|p| *p >= final_rev))
        },
    )
    .await?;
    wstop_tx.send(true)?;
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }

    let mut sequences = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let log = log.lock().expect("lock");
        let mut last = 0i64;
        for resp in &log.responses {
            // Ordered, and a revision never split across responses.
            assert!(
                resp[0].revision > last,
                "watcher {i}: revision {} after {last}: out of order, duplicated or split",
                resp[0].revision
            );
            for w in resp.windows(2) {
                assert!(
                    w[0].revision <= w[1].revision,
                    "watcher {i}: out of order inside a response"
                );
            }
            last = resp.last().map_or(last, |s| s.revision);
        }
        let all: Vec<Seen> = log.responses.iter().flatten().cloned().collect();
        let revisions: BTreeSet<i64> = all.iter().map(|s| s.revision).collect();
        // No gaps: every revision from the first write to the end.
        let want: BTreeSet<i64> = (2..=final_rev).collect();
        assert_eq!(
            revisions, want,
            "watcher {i} (resumed {} times) missed or invented revisions",
            log.resumes
        );
        sequences.push(all);
    }
    // All watchers agree on every revision's events.
    assert_eq!(sequences[0], sequences[1], "watchers 0 and 1 disagree");
    assert_eq!(sequences[0], sequences[2], "watchers 0 and 2 disagree");

    // Every acknowledged put is in the stream with its value.
    let written: BTreeSet<(String, String)> = sequences[0].iter().map(|s| (s.key.clone(), s.value.clone())).collect();
    for op in history.iter().filter(|o| !o.is_unknown()) {
        if let (Input::Put { key, value }, Output::Put) = (&op.input, &op.output) {
            assert!(
                written.contains(&(key.clone(), value.clone())),
                "acknowledged put {key}={value} missing from watch"
            );
        }
    }

    // Resumable: a new watch from the middle yields exactly the suffix.
    let mid = final_rev / 2;
    let ch = channel(&c.endpoints()[(leader + 1) % 3]).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: b"h/".to_vec(),
            range_end: b"h0".to_vec(),
            start_revision: mid,
            ..Default::default()
        })),
    })
    .await?;
    let mut stream = WatchClient::new(ch)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut suffix: Vec<(i64, String, String)> = Vec::new();
    while suffix.last().is_none_or(|s| s.0 < final_rev) {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await?
            .expect("stream open")?;
        suffix.extend(resp.events.iter().map(|e| {
            let kv = e.kv.clone().unwrap_or_default();
            (
                kv.mod_revision,
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        }));
    }
    let want: Vec<_> = sequences[0]
        .iter()
        .filter(|s| s.revision >= mid)
        .map(|s| (s.revision, s.key.clone(), s.value.clone()))
        .collect();
    assert_eq!(suffix, want, "resumed watch differs from the original stream");
    drop(tx);

    let per_key: BTreeMap<&str, usize> = history.iter().fold(BTreeMap::new(), |mut m, o| {
        *m.entry(o.input.key()).or_default() += 1;
        m
    });
    eprintln!("operations per key: {per_key:?}");
    Ok(())
}
