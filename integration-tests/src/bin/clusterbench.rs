//! `make bench-cluster`: whole clusters from the launcher, release builds
//! (the `cluster` binary beside this one starts the components beside
//! it), one machine.
//!
//! - Cold start: `cluster up` of a new cluster (one control plane, 1 and 3
//!   workers) until every node is Ready and the cluster DNS available,
//!   split at the launcher's own progress lines; then the example app
//!   (examples/hello.yaml: 3 replicas and NodePort 30080) applied until
//!   its NodePort answers from the host and all 3 replicas are available.
//! - Idle footprint: the 1-worker cluster with the app running, after a
//!   settle time (`--settle`, 300 s as in the issue), every process's RSS
//!   and CPU over a window: the launcher's processes, the containerd and
//!   docker-registry their node-setup runs, and each worker's pods (shims
//!   and containers).
//! - Scale: a Deployment of 100 pause pods on 2 workers, create call to
//!   all Running.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use cluster::plan::Plan;
use integration_tests::bench::{rss_mib, usage};
use integration_tests::netns::unique_tag;
use integration_tests::store_cluster::{free_port, workspace_bin};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Time the 1-worker cluster runs before its idle footprint is taken.
    #[arg(long, default_value = "300s", value_parser = component_base::duration::parse)]
    settle: Duration,
    /// The window CPU is measured over.
    #[arg(long, default_value = "30s", value_parser = component_base::duration::parse)]
    window: Duration,
    /// Pods of the scale Deployment.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Bound of each wait.
    #[arg(long, default_value = "600s", value_parser = component_base::duration::parse)]
    timeout: Duration,
    /// Where to write the table.
    #[arg(long, default_value = "target/bench-cluster.md")]
    out: String,
}

/// A cluster of this run: its own state root; `cluster down` on drop.
struct Bench {
    plan: Plan,
    _root: tempfile::TempDir,
    /// `cluster up`'s progress lines and its wall time, s.
    progress: Vec<(f64, String)>,
    took: f64,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Err(e) = cluster::lifecycle::down(&self.plan) {
            eprintln!("cluster down {}: {e:#}", self.plan.name);
        }
    }
}

/// Seconds from the start of `cluster up` to each of its progress lines
/// (`[ 12.3s] control plane is up`).
fn progress(stdout: &str) -> Vec<(f64, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (secs, what) = rest.split_once("s] ")?;
            Some((secs.trim().parse().ok()?, what.to_owned()))
        })
        .collect()
}

/// When the last progress line matching `pred` came.
fn at(lines: &[(f64, String)], pred: impl Fn(&str) -> bool) -> Option<f64> {
    lines.iter().filter(|(_, w)| pred(w)).map(|(t, _)| *t).last()
}

struct ColdStart {
    workers: usize,
    /// `cluster up`'s own wall time.
    up: f64,
    control_plane: Option<f64>,
    nodes_ready: Option<f64>,
    dns: Option<f64>,
    /// From the app's apply: its NodePort's first answer, all 3 available.
    app_answers: f64,
    app_available: f64,
}

fn up(workers: usize, timeout: Duration) -> anyhow::Result<Bench> {
    let bin = workspace_bin("cluster")?;
    let root = tempfile::Builder::new().prefix("kubelite-bench").tempdir()?;
    let name = format!("bench{}", unique_tag());
    let mut config = String::from("apiVersion: kubelite.dev/v1alpha1\nkind: Cluster\nnodes:\n- role: control-plane\n");
    for _ in 0..workers {
        config.push_str("- role: worker\n");
    }
    config.push_str(&format!("networking:\n  apiServerPort: {}\n", free_port()?));
    let file = root.path().join("config.yaml");
    std::fs::write(&file, config)?;
    eprintln!("cluster up {name} (1 control plane, {workers} workers)…");
    let start = Instant::now();
    let out = Command::new(&bin)
        .arg("--root")
        .arg(root.path())
        .args(["--name", &name, "up", "--config"])
        .arg(&file)
        .args(["--wait", &format!("{}s", timeout.as_secs())])
        .output()
        .context("running cluster up")?;
    let took = start.elapsed().as_secs_f64();
    let bin_dir = bin.parent().context("bin dir")?.to_owned();
    let plan = cluster::lifecycle::load(root.path(), &name, &bin_dir)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let bench = Bench {
        plan,
        _root: root,
        progress: progress(&stdout),
        took,
    };
    if !out.status.success() {
        bail!("cluster up failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(bench)
}

async fn wait<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn cold_start(workers: usize, timeout: Duration) -> anyhow::Result<(Bench, ColdStart)> {
    let bench = up(workers, timeout)?;
    let (lines, took) = (&bench.progress, bench.took);
    let plan = &bench.plan;
    let client = cluster::lifecycle::admin_client(plan).await?;
    let hello = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.yaml"))?;
    let start = Instant::now();
    cluster::lifecycle::kubectl(plan, &["apply", "-f", "-"], Some(&hello))?;
    let node_port = SocketAddr::from((plan.workers[0].ip, 30080));
    wait("the app's NodePort", timeout, || async {
        node_setup::registry::http_get(node_port, "/hostname").is_ok_and(|(status, _)| status == 200)
    })
    .await?;
    let app_answers = start.elapsed().as_secs_f64();
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    wait("the app's 3 replicas available", timeout, || async {
        deployments
            .get_opt("hello")
            .await
            .ok()
            .flatten()
            .and_then(|d| d.status?.available_replicas)
            == Some(3)
    })
    .await?;
    let result = ColdStart {
        workers,
        up: took,
        control_plane: at(lines, |w| w == "control plane is up"),
        nodes_ready: at(lines, |w| w.starts_with("node ") && w.ends_with(" is Ready")),
        dns: at(lines, |w| w.starts_with("cluster DNS answers")),
        app_answers,
        app_available: start.elapsed().as_secs_f64(),
    };
    Ok((bench, result))
}

/// One measured process.
struct Proc {
    name: String,
    pids: Vec<i32>,
}

/// Every pid under `root` (itself included), from /proc's parent links.
fn with_descendants(roots: &[i32], parents: &BTreeMap<i32, i32>) -> Vec<i32> {
    let mut out: Vec<i32> = roots.to_vec();
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

fn parents() -> BTreeMap<i32, i32> {
    let mut map = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            map.insert(pid, ppid);
        }
    }
    map
}

/// The cluster's processes: the launcher's (node-setup's children apart),
/// and each worker's pods (their shims and everything under them).
fn processes(plan: &Plan) -> Vec<Proc> {
    let parents = parents();
    let mut out = Vec::new();
    for spec in plan.processes() {
        let Some(pid) = cluster::process::running(&spec) else {
            continue;
        };
        let children: Vec<i32> = parents.iter().filter(|(_, p)| **p == pid).map(|(c, _)| *c).collect();
        out.push(Proc {
            name: spec.id(),
            pids: vec![pid],
        });
        if spec.program.ends_with("node-setup") && !children.is_empty() {
            let what = if spec.component == "registry" {
                "docker-registry"
            } else {
                "containerd"
            };
            out.push(Proc {
                name: format!("{}/{what} (node-setup's)", spec.node),
                pids: with_descendants(&children, &parents),
            });
        }
    }
    for w in &plan.workers {
        let shims: Vec<i32> = node_setup::cleanup::find_shims(&plan.containerd_socket(w))
            .iter()
            .map(|s| s.pid)
            .collect();
        out.push(Proc {
            name: format!("{}/pods ({} shims and their containers)", w.name, shims.len()),
            pids: with_descendants(&shims, &parents),
        });
    }
    out
}

fn cpu_seconds(pids: &[i32]) -> f64 {
    pids.iter().map(|p| usage(*p as u32).0).sum()
}

struct Footprint {
    name: String,
    rss: f64,
    cpu_percent: f64,
}

async fn idle(plan: &Plan, settle: Duration, window: Duration) -> anyhow::Result<Vec<Footprint>> {
    eprintln!("settling for {settle:?}, then measuring over {window:?}…");
    tokio::time::sleep(settle).await;
    let procs = processes(plan);
    let before: Vec<f64> = procs.iter().map(|p| cpu_seconds(&p.pids)).collect();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    Ok(procs
        .iter()
        .zip(before)
        .map(|(p, cpu0)| Footprint {
            name: p.name.clone(),
            rss: p.pids.iter().map(|pid| rss_mib(*pid as u32)).sum(),
            cpu_percent: (cpu_seconds(&p.pids) - cpu0) / secs * 100.0,
        })
        .collect())
}

struct Scale {
    pods: usize,
    running: f64,
    per_node: BTreeMap<String, usize>,
}

async fn scale(pods: usize, timeout: Duration) -> anyhow::Result<Scale> {
    let bench = up(2, timeout)?;
    let client = cluster::lifecycle::admin_client(&bench.plan).await?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "scale"},
        "spec": {
            "replicas": pods,
            "selector": {"matchLabels": {"app": "scale"}},
            "template": {
                "metadata": {"labels": {"app": "scale"}},
                "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }))?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    Api::<Deployment>::namespaced(client, "default")
        .create(&PostParams::default(), &deployment)
        .await?;
    let deadline = start + timeout;
    let per_node = loop {
        let list = api.list(&ListParams::default().labels("app=scale")).await?;
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for p in &list.items {
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                *per_node.entry(node).or_insert(0) += 1;
            }
        }
        if per_node.values().sum::<usize>() == pods {
            break per_node;
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {pods} pods Running: {per_node:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(Scale {
        pods,
        running: start.elapsed().as_secs_f64(),
        per_node,
    })
}

fn cell(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

fn table(args: &Args, cold: &[ColdStart], footprint: &[Footprint], scale: &Scale, bin_dir: &Path) -> String {
    let mut t = format!(
        "Whole clusters from the launcher ({}, release build), one machine ({} CPUs); \
         every component, containerd and the pods share its cores.\n\n\
         Cold start: `cluster up` of a new cluster (1 control plane) until every node is Ready and the cluster DNS \
         available (phases: the launcher's progress, s since `up` began), then examples/hello.yaml applied until \
         its NodePort answers from the host and its 3 replicas are available (s since the apply). \
         Anchor: kind ≈33 s to a ready cluster.\n\n\
         | workers | `cluster up` s | control plane up | nodes Ready | cluster DNS | app answers | app 3/3 available | total to app answering |\n\
         |--:|--:|--:|--:|--:|--:|--:|--:|\n",
        bin_dir.display(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    for c in cold {
        t.push_str(&format!(
            "| {} | {:.1} | {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
            c.workers,
            c.up,
            cell(c.control_plane),
            cell(c.nodes_ready),
            cell(c.dns),
            c.app_answers,
            c.app_available,
            c.up + c.app_answers
        ));
    }
    let total: f64 = footprint.iter().map(|f| f.rss).sum();
    let cpu: f64 = footprint.iter().map(|f| f.cpu_percent).sum();
    t.push_str(&format!(
        "\nIdle footprint: the 1-worker cluster with the app (3 replicas) and the cluster DNS running, {} s after \
         it was ready; RSS at the end of a {} s window, CPU % of one core over it. \
         Anchors: k3s server ≈1.6 GB with a workload; klights 76 MiB for its single process.\n\n\
         | process | RSS MiB | CPU % |\n|---|--:|--:|\n",
        args.settle.as_secs(),
        args.window.as_secs()
    ));
    for f in footprint {
        t.push_str(&format!("| {} | {:.1} | {:.2} |\n", f.name, f.rss, f.cpu_percent));
    }
    t.push_str(&format!("| **sum** | **{total:.1}** | **{cpu:.2}** |\n"));
    let split: Vec<String> = scale.per_node.iter().map(|(n, c)| format!("{n}: {c}")).collect();
    t.push_str(&format!(
        "\nScale: one Deployment of {} pause pods on 2 workers, create call to all Running (polled every 100 ms).\n\n\
         | pods | s to all Running | pods/s | per node |\n|--:|--:|--:|---|\n| {} | {:.1} | {:.1} | {} |\n",
        scale.pods,
        scale.pods,
        scale.running,
        scale.pods as f64 / scale.running,
        split.join(", ")
    ));
    t
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(why) = integration_tests::launched::missing_prerequisites() {
        bail!("cannot launch clusters here: {why}");
    }
    let bin_dir: PathBuf = workspace_bin("cluster")?.parent().context("bin dir")?.to_owned();
    let (small, one) = cold_start(1, args.timeout).await?;
    eprintln!(
        "1 worker: up {:.1}s, app answering {:.1}s later",
        one.up, one.app_answers
    );
    let footprint = idle(&small.plan, args.settle, args.window).await?;
    drop(small);
    let (big, three) = cold_start(3, args.timeout).await?;
    eprintln!(
        "3 workers: up {:.1}s, app answering {:.1}s later",
        three.up, three.app_answers
    );
    drop(big);
    let scale = scale(args.pods, args.timeout).await?;
    let t = table(&args, &[one, three], &footprint, &scale, &bin_dir);
    println!("{t}");
    std::fs::write(&args.out, &t).with_context(|| format!("writing {}", args.out))?;
    Ok(())
}
