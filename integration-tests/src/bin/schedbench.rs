//! `make bench-scheduler`: kube-scheduler throughput in upstream's
//! `scheduler_perf` shapes against a real kube-apiserver (release builds,
//! one machine; this load generator shares its cores). Per row: create the
//! nodes (and the initial pods, bound by the scheduler), then the measured
//! pods as fast as the apiserver takes them; pods/s counts from the first
//! measured create to the last binding seen. Also the scheduler's
//! attempt-latency quantiles (from its own histogram) and the CPU seconds
//! and peak RSS of the scheduler and the apiserver.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::TryStreamExt;
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::bench::{create_all, usage};
use integration_tests::components::Component;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Rows to run, by name (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Concurrent creates from the load generator.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Where to write the table.
    #[arg(long, default_value = "target/bench-scheduler.md")]
    out: String,
    /// Extra kube-scheduler flags (e.g. --scheduler-arg=--config=sched.yaml).
    #[arg(long, allow_hyphen_values = true)]
    scheduler_arg: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Basic,
    PodAntiAffinity,
    NodeAffinity,
    TopologySpreading,
    Preemption,
}

struct Row {
    name: &'static str,
    shape: Shape,
    nodes: usize,
    init_pods: usize,
    pods: usize,
    /// Upstream's CI floor (pods/s), where it publishes one.
    floor: Option<f64>,
}

/// Upstream's rows (test/integration/scheduler_perf); floors are the
/// `threshold`s of their performance configs, where one is published.
const ROWS: &[Row] = &[
    Row {
        name: "SchedulingBasic",
        shape: Shape::Basic,
        nodes: 500,
        init_pods: 500,
        pods: 1000,
        floor: None,
    },
    Row {
        name: "SchedulingBasic",
        shape: Shape::Basic,
        nodes: 5000,
        init_pods: 1000,
        pods: 10000,
        floor: Some(680.0),
    },
    Row {
        name: "SchedulingBasic",
        shape: Shape::Basic,
        nodes: 5000,
        init_pods: 1000,
        pods: 50000,
        floor: Some(810.0),
    },
    Row {
        name: "SchedulingPodAntiAffinity",
        shape: Shape::PodAntiAffinity,
        nodes: 5000,
        init_pods: 1000,
        pods: 2000,
        floor: Some(60.0),
    },
    Row {
        name: "SchedulingNodeAffinity",
        shape: Shape::NodeAffinity,
        nodes: 5000,
        init_pods: 5000,
        pods: 10000,
        floor: Some(220.0),
    },
    // Upstream's floor is for 5,000 measured pods; the issue asks for 10,000.
    Row {
        name: "TopologySpreading",
        shape: Shape::TopologySpreading,
        nodes: 5000,
        init_pods: 5000,
        pods: 10000,
        floor: Some(460.0),
    },
    Row {
        name: "PreemptionBasic",
        shape: Shape::Preemption,
        nodes: 1000,
        init_pods: 4000,
        pods: 1000,
        floor: None,
    },
];

/// A node as upstream's `node-default.yaml` (110 pods, 4 cpu, 32 Gi), with
/// the zone label the shape's `labelNodePrepareStrategy` gives it.
fn node(i: usize, shape: Shape) -> Value {
    let zone = match shape {
        Shape::TopologySpreading => format!("moon-{}", i % 3 + 1),
        _ => "zone1".to_string(),
    };
    let (cpu, pods) = ("4", "110");
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i}"),
            "topology.kubernetes.io/zone": zone,
        }},
        "status": {
            "capacity": {"cpu": cpu, "memory": "32Gi", "pods": pods},
            "allocatable": {"cpu": cpu, "memory": "32Gi", "pods": pods},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    })
}

/// Pods as upstream's templates: `pod-default.yaml` (100m, 500Mi) and the
/// shape's own affinity or spreading.
fn pod(name: &str, shape: Shape, measured: bool) -> Value {
    let group = if measured { "measured" } else { "init" };
    let mut spec = json!({
        "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "100m", "memory": "500Mi"}}}],
    });
    let mut labels = json!({"bench": group, "color": "green"});
    match shape {
        Shape::Basic => {}
        Shape::PodAntiAffinity => {
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        Shape::NodeAffinity if measured => {
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone1", "zone2"]}]}]}}});
        }
        Shape::NodeAffinity => {}
        Shape::TopologySpreading if measured => {
            labels["app"] = json!("spread");
            spec["topologySpreadConstraints"] = json!([{"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]);
        }
        Shape::TopologySpreading => {}
        Shape::Preemption => {
            // Four low-priority pods take 3.6 of a node's 4 cpu; a
            // high-priority one needs 3, so preempts three of them.
            let cpu = if measured { "3" } else { "900m" };
            spec["containers"][0]["resources"] = json!({"requests": {"cpu": cpu, "memory": "500Mi"}});
            spec["terminationGracePeriodSeconds"] = json!(0);
            spec["priorityClassName"] = json!(if measured { "bench-high" } else { "bench-low" });
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

/// Watches pods labelled `bench=<group>` until `want` of them are bound;
/// returns the instant each binding was seen.
async fn watch_bound(client: kube::Client, group: &str, want: usize) -> anyhow::Result<Vec<Instant>> {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let wc = watcher::Config::default().labels(&format!("bench={group}"));
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let stream = watcher(pods, wc);
    futures::pin_mut!(stream);
    while seen.len() < want {
        let ev = tokio::time::timeout(Duration::from_secs(120), stream.try_next())
            .await
            .context("no pod bound for 120 s")??
            .context("watch ended")?;
        if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = ev
            && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
        {
            seen.entry(p.metadata.name.unwrap_or_default())
                .or_insert_with(Instant::now);
        }
    }
    Ok(seen.into_values().collect())
}

/// Quantile `q` of a Prometheus histogram from its cumulative buckets
/// (linear within a bucket, as `histogram_quantile`).
fn histogram_quantile(metrics: &str, name: &str, result: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines() {
        if !line.starts_with(&format!("{name}_bucket{{")) || !line.contains(&format!("result=\"{result}\"")) {
            continue;
        }
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        buckets.push((le, count));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, c) in &buckets {
        if c >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let frac = if c > prev.1 {
                (rank - prev.1) / (c - prev.1)
            } else {
                0.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, c);
    }
    None
}

struct RowResult {
    pods_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    sched_cpu: f64,
    sched_rss: f64,
    api_cpu: f64,
    api_rss: f64,
    seconds: f64,
}

async fn run_row(row: &Row, clients: usize, extra: &[String]) -> anyhow::Result<RowResult> {
    let api = ApiServers::start(1).await?;
    let mut args = vec!["--leader-elect=false"];
    args.extend(extra.iter().map(String::as_str));
    let sched = Component::scheduler(&api, "kube-scheduler", &args)?;
    let client = api.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let shape = row.shape;
    if shape == Shape::Preemption {
        let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
        create_all(&classes, 2, 2, |i| {
            let (name, value) = [("bench-low", 1), ("bench-high", 10)][i];
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value})
        })
        .await?;
    }
    create_all(&nodes, row.nodes, clients, |i| node(i, shape)).await?;
    // Initial pods, bound before the measurement starts.
    let init = tokio::spawn(watch_bound(client.clone(), "init", row.init_pods));
    create_all(&pods, row.init_pods, clients, |i| {
        pod(&format!("init-{i}"), shape, false)
    })
    .await?;
    init.await??;

    let api_pid = api.pid(0).context("apiserver pid")?;
    let sched_pid = sched.pid().context("scheduler pid")?;
    let (api_cpu0, _) = usage(api_pid);
    let (sched_cpu0, _) = usage(sched_pid);
    let measured = tokio::spawn(watch_bound(client.clone(), "measured", row.pods));
    let start = Instant::now();
    create_all(&pods, row.pods, clients, |i| pod(&format!("pod-{i}"), shape, true)).await?;
    let times = measured.await??;
    let last = times.iter().max().copied().unwrap_or(start);
    let seconds = last.duration_since(start).as_secs_f64();
    let (api_cpu1, api_rss) = usage(api_pid);
    let (sched_cpu1, sched_rss) = usage(sched_pid);
    let (_, metrics) = sched.get("/metrics").await?;
    let name = "scheduler_scheduling_attempt_duration_seconds";
    let p50 = histogram_quantile(&metrics, name, "scheduled", 0.5).unwrap_or(0.0) * 1000.0;
    let p99 = histogram_quantile(&metrics, name, "scheduled", 0.99).unwrap_or(0.0) * 1000.0;
    Ok(RowResult {
        pods_per_sec: row.pods as f64 / seconds.max(1e-9),
        p50_ms: p50,
        p99_ms: p99,
        sched_cpu: sched_cpu1 - sched_cpu0,
        sched_rss,
        api_cpu: api_cpu1 - api_cpu0,
        api_rss,
        seconds,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut table = String::from(
        "| workload | nodes | init pods | measured pods | pods/s | upstream floor | attempt p50 ms | attempt p99 ms | seconds | scheduler CPU s | scheduler peak RSS MiB | apiserver CPU s | apiserver peak RSS MiB |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    let mut headline = None;
    for row in ROWS {
        if !args.only.is_empty()
            && !args
                .only
                .iter()
                .any(|o| o == row.name || o == &format!("{}/{}", row.name, row.pods))
        {
            continue;
        }
        eprintln!("{} {} nodes, {} pods…", row.name, row.nodes, row.pods);
        let r = run_row(row, args.clients, &args.scheduler_arg)
            .await
            .with_context(|| format!("{} {}", row.name, row.nodes))?;
        let line = format!(
            "| {} | {} | {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} |\n",
            row.name,
            row.nodes,
            row.init_pods,
            row.pods,
            r.pods_per_sec,
            row.floor.map(|f| format!("{f:.0}")).unwrap_or_else(|| "–".into()),
            r.p50_ms,
            r.p99_ms,
            r.seconds,
            r.sched_cpu,
            r.sched_rss,
            r.api_cpu,
            r.api_rss,
        );
        eprint!("{line}");
        table.push_str(&line);
        if row.shape == Shape::Basic && row.nodes == 5000 && row.pods == 10000 {
            headline = Some(r.pods_per_sec);
        }
    }
    println!("{table}");
    if let Some(h) = headline {
        let l = format!("SchedulingBasic 5000 nodes 10000 pods: {h:.0} pods/s");
        println!("{l}");
        table.push_str(&format!("\n{l}\n"));
    }
    std::fs::write(&args.out, &table).with_context(|| format!("writing {}", args.out))?;
    Ok(())
}
