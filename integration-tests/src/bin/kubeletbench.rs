//! `make bench-kubelet`: the kubelet's pod startup latency on a real node
//! (release builds, one machine; this load generator, the apiserver and
//! containerd share its cores). One kube-apiserver, one node (a registry,
//! its own containerd, a kubelet), no scheduler: pods name the node. The
//! image is pulled by a warm-up pod first, so no measured pod pulls.
//!
//! Latency is from the create call to the watch event showing the pod
//! Running, for one pod at a time (created, Running, deleted, repeated)
//! and for bursts of pods created at once. Per scenario, the mean time of
//! each runtime operation and of a pod status sync, from the kubelet's own
//! histograms (sum and count deltas over the scenario). Then, with the
//! last burst's pods running, the kubelet's RSS and its CPU (and
//! containerd's) over an idle window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::bench::{rss_mib, usage};
use integration_tests::node::{TestNode, missing_prerequisites};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::{Value, json};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
const NODE: &str = "bench-node";
const LABEL: &str = "bench=kubelet";
/// Upstream's pod startup SLO (p99, stateless pods, image already
/// present) and this project's aim.
const SLO_P99: Duration = Duration::from_secs(5);
const AIM_P99: Duration = Duration::from_secs(1);
/// The kubelet's runtime operations the table splits startup into.
const OPS: &[&str] = &["run_podsandbox", "pull_image", "create_container", "start_container"];

#[derive(Parser)]
struct Args {
    /// Sequential single-pod runs.
    #[arg(long, default_value_t = 10)]
    single: usize,
    /// Pods per burst, created at once.
    #[arg(long, default_value_t = 30)]
    burst: usize,
    /// Burst rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The idle window over which the kubelet's CPU is measured.
    #[arg(long, default_value = "10s", value_parser = seconds)]
    idle: Duration,
    /// Give pods the volume the ServiceAccount admission plugin would (a
    /// TokenRequest token, the cluster CA, the namespace), as most pods
    /// have; off, pods have no volumes.
    #[arg(long)]
    service_account_token: bool,
    /// Where to write the table.
    #[arg(long, default_value = "target/bench-kubelet.md")]
    out: String,
    /// Extra kubelet flags (e.g. --kubelet-arg=--serialize-image-pulls=false).
    #[arg(long, allow_hyphen_values = true)]
    kubelet_arg: Vec<String>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| format!("{s:?}: want seconds like 10s ({e})"))
}

fn pod(name: &str, args: &Args) -> Value {
    let mut spec = json!({
        "nodeName": NODE,
        "containers": [{"name": "c", "image": AGNHOST, "args": ["pause"]}],
        // agnhost pause exits on SIGTERM; deletion is prompt.
        "terminationGracePeriodSeconds": 5,
    });
    if args.service_account_token {
        spec["serviceAccountName"] = json!("default");
        spec["volumes"] = json!([{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}]);
        spec["containers"][0]["volumeMounts"] = json!([{"name": "kube-api-access",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]);
    } else {
        spec["automountServiceAccountToken"] = json!(false);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "kubelet"}}, "spec": spec})
}

/// When each bench pod was first seen Running through a watch.
type Running = Arc<Mutex<HashMap<String, Instant>>>;

fn watch_running(pods: Api<Pod>) -> (Running, tokio::task::JoinHandle<()>) {
    let seen: Running = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let stream = watcher(pods, watcher::Config::default().labels(LABEL)).default_backoff();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            {
                out.lock().entry(p.metadata.name.unwrap_or_default()).or_insert(now);
            }
        }
    });
    (seen, task)
}

/// Waits until every pod in `names` was seen Running; their latencies
/// from `created`.
async fn wait_running(seen: &Running, created: &[(String, Instant)], node: &TestNode) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        {
            let seen = seen.lock();
            if created.iter().all(|(n, _)| seen.contains_key(n)) {
                return Ok(created.iter().map(|(n, t)| seen[n].duration_since(*t)).collect());
            }
        }
        if Instant::now() > deadline {
            let missing: Vec<&str> = {
                let seen = seen.lock();
                created
                    .iter()
                    .filter(|(n, _)| !seen.contains_key(n))
                    .map(|(n, _)| n.as_str())
                    .collect()
            };
            anyhow::bail!("pods not Running within 120 s: {missing:?}\n{}", node.logs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes the bench pods and waits until the kubelet has stopped them,
/// the API no longer has them and the kubelet has cleaned up after them
/// (their directories, with the volume mounts, gone), so nothing of one
/// scenario overlaps the next.
async fn delete_all(pods: &Api<Pod>, node: &TestNode) -> anyhow::Result<()> {
    let lp = ListParams::default().labels(LABEL);
    pods.delete_collection(&DeleteParams::default(), &lp).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods.list(&lp).await?.items.is_empty() {
        if Instant::now() > deadline {
            anyhow::bail!("bench pods not gone within 120 s\n{}", node.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pod_dirs = node.dir.join("kubelet").join("pods");
    let left = || std::fs::read_dir(&pod_dirs).map(|d| d.count()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while left() > 0 {
        if Instant::now() > deadline {
            eprintln!(
                "warning: {} pod directories left in {} 30 s after their pods were deleted",
                left(),
                pod_dirs.display()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The kubelet's /metrics, read with the apiserver's kubelet client
/// certificate.
async fn scrape(api: &ApiServers, node: &TestNode) -> anyhow::Result<String> {
    let pki = api.dir().join("pki");
    let out = tokio::process::Command::new("curl")
        .args(["-sfk", "--max-time", "10"])
        .arg("--cert")
        .arg(pki.join("apiserver-kubelet-client.crt"))
        .arg("--key")
        .arg(pki.join("apiserver-kubelet-client.key"))
        .arg(node.api_url("/metrics"))
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "GET {}: curl {}",
        node.api_url("/metrics"),
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The sum over the series of `name` whose labels contain `label`.
fn series_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.contains(label)
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Sum and count deltas of the histograms the table splits startup into.
#[derive(Default)]
struct Phases {
    /// operation -> (seconds, count)
    ops: HashMap<String, (f64, f64)>,
}

impl Phases {
    fn add(&mut self, before: &str, after: &str) {
        let mut one = |key: &str, name: &str, label: &str| {
            let sum =
                series_sum(after, &format!("{name}_sum"), label) - series_sum(before, &format!("{name}_sum"), label);
            let count = series_sum(after, &format!("{name}_count"), label)
                - series_sum(before, &format!("{name}_count"), label);
            let e = self.ops.entry(key.to_string()).or_default();
            e.0 += sum;
            e.1 += count;
        };
        for op in OPS {
            one(
                op,
                "kubelet_runtime_operations_duration_seconds",
                &format!("operation_type=\"{op}\""),
            );
        }
        one("pod_status_sync", "kubelet_pod_status_sync_duration_seconds", "");
    }

    /// Mean seconds per operation (0 when it did not run).
    fn mean(&self, key: &str) -> f64 {
        match self.ops.get(key) {
            Some(&(sum, count)) if count > 0.0 => sum / count,
            _ => 0.0,
        }
    }

    /// "mean ms (n)" or "–" when the operation did not run.
    fn cell(&self, key: &str) -> String {
        match self.ops.get(key) {
            Some(&(sum, count)) if count > 0.0 => format!("{:.1} ({count:.0})", sum / count * 1000.0),
            _ => "–".into(),
        }
    }
}

/// Nearest-rank quantile.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Scenario {
    name: String,
    latencies: Vec<Duration>,
    phases: Phases,
    /// The kubelet's CPU seconds over the scenario (deletions included).
    kubelet_cpu: f64,
}

impl Scenario {
    fn row(&self) -> String {
        let mut l = self.latencies.clone();
        l.sort();
        let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
        let p99 = quantile(&l, 0.99);
        let verdict = if p99 < AIM_P99 {
            "yes"
        } else if p99 <= SLO_P99 {
            "within SLO"
        } else {
            "no"
        };
        let mean = l.iter().map(Duration::as_secs_f64).sum::<f64>() / l.len().max(1) as f64;
        let in_ops: f64 = OPS.iter().map(|op| self.phases.mean(op)).sum();
        let mut cells = vec![
            self.name.clone(),
            l.len().to_string(),
            ms(quantile(&l, 0.5)),
            ms(p99),
            ms(l.last().copied().unwrap_or_default()),
            verdict.into(),
            format!("{:.0}", mean * 1000.0),
        ];
        cells.extend(OPS.iter().map(|op| self.phases.cell(op)));
        cells.push(format!("{:.0}", (mean - in_ops) * 1000.0));
        cells.push(self.phases.cell("pod_status_sync"));
        cells.push(format!("{:.1}", self.kubelet_cpu * 1000.0 / l.len().max(1) as f64));
        format!("| {} |\n", cells.join(" | "))
    }
}

struct Idle {
    pods: usize,
    /// CPU seconds over the window (plus the settling before it).
    kubelet_cpu: f64,
    rss: f64,
    peak_rss: f64,
    cpu_percent: f64,
    containerd_cpu_percent: f64,
    window: Duration,
}

async fn run(args: &Args) -> anyhow::Result<(Vec<Scenario>, Idle)> {
    let api = ApiServers::start_with(1, &["--kubelet-preferred-address-types=InternalIP,Hostname"]).await?;
    let mut extra: Vec<&str> = vec![
        // A developer machine's disk may be above 85% full; collecting the
        // bench's image between scenarios would make pods pull it.
        "--image-gc-high-threshold-percent=100",
    ];
    extra.extend(args.kubelet_arg.iter().map(String::as_str));
    let node = TestNode::start(&api, NODE, &extra).await?;
    let client = api.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (seen, watch) = watch_running(pods.clone());
    if args.service_account_token {
        // What the controller-manager would have made (it does not run).
        let pp = PostParams::default();
        Api::<ServiceAccount>::namespaced(client.clone(), "default")
            .create(&pp, &serde_json::from_value(json!({"metadata": {"name": "default"}}))?)
            .await?;
        Api::<ConfigMap>::namespaced(client.clone(), "default")
            .create(
                &pp,
                &serde_json::from_value(
                    json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": api.ca_pem()?}}),
                )?,
            )
            .await?;
    }

    // Warm-up: the image (and the sandbox image) pulled, a pod run to
    // completion.
    eprintln!("warm-up…");
    let mut warm = pod("warm-up", args);
    warm["spec"]["containers"][0]["command"] = json!(["sh", "-c", "true"]);
    warm["spec"]["restartPolicy"] = json!("Never");
    pods.create(&PostParams::default(), &serde_json::from_value(warm)?)
        .await?;
    integration_tests::node::wait_pod(
        &client,
        "default",
        "warm-up",
        Duration::from_secs(120),
        "Succeeded",
        |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"),
    )
    .await
    .with_context(|| node.logs())?;
    delete_all(&pods, &node).await?;

    let mut scenarios = Vec::new();

    eprintln!("{} single pods…", args.single);
    let mut single = Scenario {
        name: "1 pod".into(),
        latencies: Vec::new(),
        phases: Phases::default(),
        kubelet_cpu: 0.0,
    };
    let kubelet = node.kubelet_pid().context("kubelet pid")?;
    let cpu0 = usage(kubelet).0;
    for i in 0..args.single {
        let name = format!("single-{i}");
        let before = scrape(&api, &node).await?;
        let t0 = Instant::now();
        pods.create(&PostParams::default(), &serde_json::from_value(pod(&name, args))?)
            .await?;
        single
            .latencies
            .extend(wait_running(&seen, &[(name, t0)], &node).await?);
        single.phases.add(&before, &scrape(&api, &node).await?);
        delete_all(&pods, &node).await?;
    }
    single.kubelet_cpu = usage(kubelet).0 - cpu0;
    scenarios.push(single);

    eprintln!("{} rounds of {} pods at once…", args.rounds, args.burst);
    let mut burst = Scenario {
        name: format!("{} pods at once", args.burst),
        latencies: Vec::new(),
        phases: Phases::default(),
        kubelet_cpu: 0.0,
    };
    let cpu0 = usage(kubelet).0;
    let mut idle_cpu = 0.0;
    let mut idle = None;
    for round in 0..args.rounds {
        let before = scrape(&api, &node).await?;
        let created: Vec<(String, Instant)> = futures::stream::iter(0..args.burst)
            .map(|i| {
                let pods = pods.clone();
                let name = format!("burst-{round}-{i}");
                let body = pod(&name, args);
                async move {
                    let p: Pod = serde_json::from_value(body)?;
                    let t0 = Instant::now();
                    pods.create(&PostParams::default(), &p).await?;
                    anyhow::Ok((name, t0))
                }
            })
            .buffer_unordered(args.burst.max(1))
            .try_collect()
            .await?;
        burst.latencies.extend(wait_running(&seen, &created, &node).await?);
        burst.phases.add(&before, &scrape(&api, &node).await?);
        if round + 1 == args.rounds {
            let i = measure_idle(&node, args.burst, args.idle).await?;
            idle_cpu = i.kubelet_cpu;
            idle = Some(i);
        }
        delete_all(&pods, &node).await?;
    }
    burst.kubelet_cpu = usage(kubelet).0 - cpu0 - idle_cpu;
    scenarios.push(burst);
    watch.abort();
    let idle = idle.context("no burst round ran (--rounds 0)")?;
    Ok((scenarios, idle))
}

/// The kubelet's RSS and CPU (and containerd's CPU) with `pods` running,
/// after the status updates of their start have settled.
async fn measure_idle(node: &TestNode, pods: usize, window: Duration) -> anyhow::Result<Idle> {
    let kubelet = node.kubelet_pid().context("kubelet pid")?;
    let settle0 = usage(kubelet).0;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let containerd = node.containerd.pid().context("containerd pid")?;
    eprintln!("idle window of {window:?} with {pods} pods running…");
    let (k0, _) = usage(kubelet);
    let (c0, _) = usage(containerd);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let (k1, peak_rss) = usage(kubelet);
    let (c1, _) = usage(containerd);
    Ok(Idle {
        pods,
        kubelet_cpu: k1 - settle0,
        rss: rss_mib(kubelet),
        peak_rss,
        cpu_percent: (k1 - k0) / secs * 100.0,
        containerd_cpu_percent: (c1 - c0) / secs * 100.0,
        window,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(why) = missing_prerequisites() {
        anyhow::bail!("cannot run a node here: {why}");
    }
    let (scenarios, idle) = run(&args).await?;
    let mut table = format!(
        "Pod startup, create call → Running seen through a watch (image present; upstream SLO p99 ≤ {} s, our aim p99 < {} s). \
         Operation columns: the kubelet's mean per runtime operation, ms (count), over the scenario; \
         outside them: mean latency minus those means (API, watch, the kubelet's own work); \
         pod_status_sync: mean per status write; kubelet CPU per pod, deletion included.\n\n\
         | scenario | pods | p50 ms | p99 ms | max ms | p99 < 1 s | mean ms | run_podsandbox | pull_image | create_container | start_container | outside them ms | pod_status_sync | kubelet CPU ms/pod |\n\
         |---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        SLO_P99.as_secs(),
        AIM_P99.as_secs()
    );
    for s in &scenarios {
        table.push_str(&s.row());
    }
    table.push_str(&format!(
        "\n| kubelet, {} pods running | RSS MiB | peak RSS MiB | CPU % over {} s idle | containerd CPU % |\n|---|--:|--:|--:|--:|\n| | {:.1} | {:.1} | {:.2} | {:.2} |\n",
        idle.pods,
        idle.window.as_secs(),
        idle.rss,
        idle.peak_rss,
        idle.cpu_percent,
        idle.containerd_cpu_percent,
    ));
    println!("{table}");
    std::fs::write(&args.out, &table).with_context(|| format!("writing {}", args.out))?;
    Ok(())
}
