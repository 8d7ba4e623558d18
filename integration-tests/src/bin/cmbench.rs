//! `make bench-controllers`: kube-controller-manager against a real
//! kube-apiserver and kube-scheduler (release builds, one machine; this
//! load generator shares its cores) and 1,000 Node objects. It plays the
//! kubelets: bound pods are marked Running and Ready, pods marked for
//! deletion are deleted for good. Phases, each timed:
//!
//! 1. `kubectl apply` of a 10,000-replica Deployment until all its pods
//!    exist and are bound;
//! 2. a rolling update (new image) until the rollout is complete;
//! 3. deleting the Deployment until all its pods are gone (garbage
//!    collection);
//! 4. deleting a namespace holding 10,000 ConfigMaps until it is gone.
//!
//! Then the controller-manager's CPU seconds and peak RSS.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use integration_tests::apiserver_cluster::{ApiServers, run_kubectl, upstream_kubectl};
use integration_tests::bench::{create_all, usage};
use integration_tests::components::Component;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    #[arg(long, default_value_t = 10000)]
    replicas: usize,
    /// ConfigMaps in the namespace that is deleted.
    #[arg(long, default_value_t = 10000)]
    objects: usize,
    /// Concurrent requests of the load generator (kubelet stand-in).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value = "target/bench-controllers.md")]
    out: String,
    /// Extra kube-controller-manager flags.
    #[arg(long, allow_hyphen_values = true)]
    cm_arg: Vec<String>,
}

#[derive(Default)]
struct Pods {
    /// name -> bound
    live: HashMap<String, bool>,
    readied: HashSet<String>,
    /// Whether bound pods are marked ready (off while phase 1 measures
    /// creation and binding alone).
    ready: bool,
}

/// Watches the bench pods: keeps the live set, marks bound pods ready
/// (when `ready` is on) and deletes terminating ones for good.
fn kubelets(
    client: kube::Client,
    clients: usize,
    state: Arc<Mutex<Pods>>,
    tx: tokio::sync::mpsc::UnboundedSender<(String, bool)>,
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, bool)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let api = pods.clone();
        tokio::spawn(async move {
            tokio_stream_from(rx)
                .for_each_concurrent(clients, |(name, delete)| {
                    let api = api.clone();
                    async move {
                        if delete {
                            let dp = DeleteParams {
                                grace_period_seconds: Some(0),
                                ..Default::default()
                            };
                            let _ = api.delete(&name, &dp).await;
                        } else {
                            let _ = api
                                .patch_status(&name, &PatchParams::default(), &Patch::Merge(ready_status()))
                                .await;
                        }
                    }
                })
                .await;
        });
        let stream = watcher(pods, watcher::Config::default().labels("app=bench"));
        futures::pin_mut!(stream);
        while let Ok(Some(ev)) = stream.try_next().await {
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                    let mut s = state.lock();
                    s.live.insert(name.clone(), bound);
                    if p.metadata.deletion_timestamp.is_some() {
                        let _ = tx.send((name, true));
                    } else if bound && s.ready && s.readied.insert(name.clone()) {
                        let _ = tx.send((name, false));
                    }
                }
                watcher::Event::Delete(p) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let mut s = state.lock();
                    s.live.remove(&name);
                    s.readied.remove(&name);
                }
                _ => {}
            }
        }
    })
}

fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::UnboundedReceiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn ready_status() -> serde_json::Value {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({"status": {
        "phase": "Running",
        "podIP": "10.244.0.10",
        "startTime": now,
        "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "bench", "imageID": "",
                               "started": true, "state": {"running": {"startedAt": now}}}],
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ],
    }})
}

/// Polls `done` every 100 ms; the time from `start` until it held.
async fn until(what: &str, start: Instant, limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<f64> {
    loop {
        if done() {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > limit {
            anyhow::bail!("{what}: not done after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = ApiServers::start(1).await?;
    let sched = Component::scheduler(&api, "kube-scheduler", &["--leader-elect=false"])?;
    // No kubelet renews the nodes' Leases here: a long grace period keeps
    // node-lifecycle from tainting every node mid-run.
    let mut cm_args = vec![
        "--leader-elect=false",
        "--node-monitor-grace-period=1h",
        "--node-startup-grace-period=1h",
    ];
    cm_args.extend(args.cm_arg.iter().map(String::as_str));
    let cm = Component::controller_manager(&api, "kube-controller-manager", &cm_args)?;
    sched.wait_ready().await?;
    cm.wait_ready().await?;
    let client = api.client().await?;
    let kubectl = upstream_kubectl("1.33")?;
    let kc = api.kubeconfig();
    let home = api.dir().to_path_buf();
    let kubectl_ok = |a: &[&str], stdin: Option<&str>| -> anyhow::Result<String> {
        let out = run_kubectl(&kubectl, &kc, &home, a, stdin)?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl {a:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };

    let nodes: Api<Node> = Api::all(client.clone());
    eprintln!("creating {} nodes…", args.nodes);
    create_all(&nodes, args.nodes, args.clients, |i| {
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/hostname": format!("node-{i}")}},
               "status": {"capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                          "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                          "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
    })
    .await?;

    let cm_pid = cm.pid().context("controller-manager pid")?;
    let (cpu0, _) = usage(cm_pid);
    let state = Arc::new(Mutex::new(Pods::default()));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool)>();
    let _kubelets = kubelets(client.clone(), args.clients, state.clone(), tx.clone(), rx);
    let mut rows: Vec<(String, f64, String)> = Vec::new();

    // 1. Apply until every pod exists and is bound.
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bench\nspec:\n  replicas: {}\n  selector:\n    matchLabels: {{app: bench}}\n  strategy:\n    rollingUpdate: {{maxSurge: 25%, maxUnavailable: 25%}}\n  template:\n    metadata:\n      labels: {{app: bench}}\n    spec:\n      containers:\n      - name: c\n        image: bench:v1\n",
        args.replicas
    );
    eprintln!("applying a {}-replica deployment…", args.replicas);
    let pids = [
        ("apiserver", api.pid(0).context("apiserver pid")?),
        ("scheduler", sched.pid().context("scheduler pid")?),
        ("controller-manager", cm_pid),
    ];
    let before: Vec<f64> = pids.iter().map(|(_, p)| usage(*p).0).collect();
    let start = Instant::now();
    kubectl_ok(&["apply", "-f", "-"], Some(&manifest))?;
    let n = args.replicas;
    let s = state.clone();
    let created = until("all pods created", start, Duration::from_secs(600), || {
        s.lock().live.len() >= n
    })
    .await?;
    let s = state.clone();
    let secs = until("all pods bound", start, Duration::from_secs(600), || {
        s.lock().live.values().filter(|b| **b).count() >= n
    })
    .await?;
    rows.push((
        format!("apply → {n} pods exist (seen by a watch)"),
        created,
        format!("{:.0} pods/s", n as f64 / created),
    ));
    rows.push((
        format!("apply → {n} pods exist and are bound"),
        secs,
        format!("{:.0} pods/s (target: within 20 s)", n as f64 / secs),
    ));
    let phase1_cpu: Vec<String> = pids
        .iter()
        .zip(&before)
        .map(|((name, p), b)| format!("{name} {:.1}", usage(*p).0 - b))
        .collect();
    eprintln!("{secs:.1} s");

    // 2. Rolling update, once every pod is ready (the kubelets mark them
    // from now on).
    {
        let mut s = state.lock();
        s.ready = true;
        let bound: Vec<String> = s.live.iter().filter(|(_, b)| **b).map(|(n, _)| n.clone()).collect();
        for name in bound {
            if s.readied.insert(name.clone()) {
                let _ = tx.send((name, false));
            }
        }
    }
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rolled = |d: &Deployment, n: usize| {
        let st = d.status.clone().unwrap_or_default();
        d.metadata.generation == st.observed_generation
            && st.updated_replicas == Some(n as i32)
            && st.available_replicas == Some(n as i32)
            && st.replicas == Some(n as i32)
    };
    let t = Instant::now();
    loop {
        if deploys.get("bench").await.is_ok_and(|d| rolled(&d, n)) {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "deployment never became available"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("rolling update…");
    let start = Instant::now();
    kubectl_ok(&["set", "image", "deployment/bench", "c=bench:v2"], None)?;
    let deadline = start + Duration::from_secs(1200);
    loop {
        let d = deploys.get("bench").await?;
        let images_updated = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .is_some_and(|s| s.containers[0].image.as_deref() == Some("bench:v2"));
        if images_updated && rolled(&d, n) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "rolling update not done after 20 min: {:?}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    rows.push((
        format!("rolling update of {n} pods (25% surge/unavailable)"),
        secs,
        format!("{:.0} pods replaced/s", n as f64 / secs),
    ));
    eprintln!("{secs:.1} s");

    // 3. Delete the Deployment; the garbage collector removes the rest.
    let start = Instant::now();
    deploys.delete("bench", &DeleteParams::background()).await?;
    let s = state.clone();
    let secs = until("all pods gone", start, Duration::from_secs(900), || {
        s.lock().live.is_empty()
    })
    .await?;
    rows.push((
        format!("delete the Deployment → all {n} pods gone"),
        secs,
        format!("{:.0} pods/s", n as f64 / secs),
    ));
    eprintln!("{secs:.1} s");

    // 4. A namespace holding many objects.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    kubectl_ok(&["create", "namespace", "bulk"], None)?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bulk");
    eprintln!("creating {} configmaps…", args.objects);
    create_all(&cms, args.objects, args.clients, |i| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"}})
    })
    .await?;
    let start = Instant::now();
    namespaces.delete("bulk", &DeleteParams::default()).await?;
    loop {
        if namespaces.get_opt("bulk").await?.is_none() {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "namespace not gone after 10 min"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    rows.push((
        format!("delete a namespace of {} objects → gone", args.objects),
        secs,
        format!("{:.0} objects/s", args.objects as f64 / secs),
    ));

    let (cpu1, rss) = usage(cm_pid);
    let mut table = format!(
        "controller-manager benchmark: {} nodes, {n} replicas (release builds, one machine)\n\n| phase | seconds | rate |\n|---|--:|---|\n",
        args.nodes
    );
    for (what, secs, rate) in &rows {
        table.push_str(&format!("| {what} | {secs:.1} | {rate} |\n"));
    }
    table.push_str(&format!(
        "\ncontroller-manager: {:.1} CPU seconds over the run, peak RSS {:.0} MiB\n\nCPU seconds while the {n} pods were created and bound: {} (this machine: 2 cores)\n",
        cpu1 - cpu0,
        rss,
        phase1_cpu.join(", ")
    ));
    println!("{table}");
    std::fs::write(&args.out, &table).with_context(|| format!("writing {}", args.out))?;
    Ok(())
}
