//! Whole clusters from the launcher losing processes: the Raft leader's
//! apiserver SIGKILLed under a steady stream of writes (three control
//! planes), and every process stopped, or SIGKILLed as a power cut does,
//! then `cluster up` bringing the same cluster back from its state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use integration_tests::launched::{self, Launched};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;

const HA: &str = "nodes:\n- role: control-plane\n- role: control-plane\n- role: control-plane\n- role: worker\n";
const SINGLE: &str = "nodes:\n- role: control-plane\n- role: worker\n";
/// Concurrent writers: a request stuck on the apiserver that died does not
/// hold up the others.
const WRITERS: usize = 4;
/// How long writes may stop when the leader dies.
const MAX_PAUSE: Duration = Duration::from_secs(3);

fn skip() -> bool {
    match launched::missing_prerequisites() {
        Some(why) => {
            eprintln!("skipping: {why}");
            true
        }
        None => false,
    }
}

/// Control-plane member `i`'s apiserver, directly (not through the
/// balancer).
async fn member_client(l: &Launched, i: usize) -> anyhow::Result<kube::Client> {
    let addr = SocketAddr::from((l.plan.control_planes[i].ip, cluster::plan::API_PORT));
    cluster::lifecycle::client_at(&l.plan, Some(addr)).await
}

/// The control-plane member whose store is the Raft leader, from each
/// apiserver's `/metrics`.
async fn store_leader(l: &Launched) -> Option<usize> {
    for i in 0..l.plan.control_planes.len() {
        let Ok(client) = member_client(l, i).await else {
            continue;
        };
        let req = http::Request::get("/metrics").body(Vec::new()).ok()?;
        if let Ok(text) = client.request_text(req).await
            && text.lines().any(|l| l == "store_is_leader 1")
        {
            return Some(i);
        }
    }
    None
}

/// Polls `check` until it succeeds (bounded); the last failure says why
/// not.
async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("timed out after {timeout:?} waiting for {what}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn readyz(client: &kube::Client) -> bool {
    let req = http::Request::get("/readyz").body(Vec::new()).expect("valid request");
    client.request_text(req).await.is_ok_and(|t| t.trim() == "ok")
}

/// ConfigMaps created one after another by a few tasks through the
/// balancer; each acknowledged one is recorded with when it was.
struct Writers {
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    failures: Arc<AtomicUsize>,
    last_error: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(client: kube::Client, n: usize) -> Writers {
        let w = Writers {
            acked: Arc::default(),
            failures: Arc::default(),
            last_error: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..n)
            .map(|k| {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
                let (acked, failures, last_error, stop) = (
                    w.acked.clone(),
                    w.failures.clone(),
                    w.last_error.clone(),
                    w.stop.clone(),
                );
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let name = format!("w{k}-{i:06}");
                        let cm: ConfigMap = serde_json::from_value(json!({
                            "metadata": {"name": name},
                            "data": {"writer": k.to_string(), "seq": i.to_string()},
                        }))
                        .expect("valid ConfigMap");
                        match api.create(&PostParams::default(), &cm).await {
                            Ok(_) => acked.lock().push((name, Instant::now())),
                            Err(e) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                                *last_error.lock() = e.to_string();
                                // Not a wait for readiness: keeps a
                                // refused connection from spinning.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Writers { tasks, ..w }
    }

    fn acked(&self) -> Vec<(String, Instant)> {
        self.acked.lock().clone()
    }

    async fn finish(self) -> Vec<(String, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().clone()
    }
}

/// The longest stretch without an acknowledged write that overlaps
/// `from..=to`; None unless there are writes on both sides of it.
fn longest_pause(acks: &[Instant], from: Instant, to: Instant) -> Option<Duration> {
    let mut times = acks.to_vec();
    times.sort();
    times.iter().rposition(|t| *t <= from)?;
    times.iter().position(|t| *t > to)?;
    times
        .windows(2)
        .filter(|w| w[0] <= to && w[1] > from)
        .map(|w| w[1] - w[0])
        .max()
}

fn pause_deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }))
    .expect("valid Deployment")
}

fn pod_running(p: &Pod) -> bool {
    p.spec.as_ref().is_some_and(|s| s.node_name.is_some())
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

async fn running_pods(client: &kube::Client, app: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items.into_iter().filter(pod_running).collect())
        .unwrap_or_default()
}

#[test]
fn pauses_are_measured_around_the_window() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let acks = [at(0), at(100), at(900), at(200), at(3500), at(3600), at(20_000)];
    for (from, to, want, why) in [
        (
            1000,
            3000,
            Some(2600),
            "from the last ack before the kill to the first after",
        ),
        (1000, 5000, Some(16_400), "a later gap inside the window counts too"),
        (3550, 3560, Some(100), "a window between two acks"),
        (30_000, 31_000, None, "no ack after"),
        (1000, 20_000, None, "no ack after the window's end"),
    ] {
        assert_eq!(
            longest_pause(&acks, at(from), at(to)),
            want.map(Duration::from_millis),
            "{why}"
        );
    }
    assert_eq!(longest_pause(&acks[4..], at(1000), at(3000)), None, "no ack before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_control_planes_survive_losing_the_leader() -> anyhow::Result<()> {
    if skip() {
        return Ok(());
    }
    let l = Launched::up("ha", HA, Duration::from_secs(600))?;
    let r = losing_the_leader(&l).await;
    if r.is_err() {
        eprintln!("{}", l.logs());
    }
    r
}

async fn losing_the_leader(l: &Launched) -> anyhow::Result<()> {
    let client = l.client().await?;
    let leader = until("a store leader", Duration::from_secs(30), || async {
        store_leader(l).await.context("no member leads")
    })
    .await?;
    let victim = l.plan.control_planes[leader].clone();
    println!("store leader: {} ({})", victim.name, victim.ip);

    let writers = Writers::start(client.clone(), WRITERS);
    eventually("writes flowing", Duration::from_secs(30), || async {
        writers.acked().len() >= 20
    })
    .await?;

    let kill_at = Instant::now();
    l.cluster_ok(&["kill", &victim.name, "kube-apiserver"])?;
    let spec = l
        .plan
        .control_plane_processes()
        .into_iter()
        .find(|s| s.node == victim.name && s.component == "kube-apiserver")
        .context("the leader's apiserver spec")?;
    ensure!(cluster::process::running(&spec).is_none(), "the apiserver still runs");

    // Writes resume through the others.
    eventually("writes after the kill", Duration::from_secs(30), || async {
        writers.acked().iter().filter(|(_, t)| *t > kill_at + MAX_PAUSE).count() >= 5
    })
    .await
    .with_context(|| format!("last write error: {}", writers.last_error.lock()))?;
    let times: Vec<Instant> = writers.acked().iter().map(|(_, t)| *t).collect();
    let pause = longest_pause(&times, kill_at, kill_at + MAX_PAUSE).context("no write on either side of the kill")?;
    println!(
        "writes paused for {:.3}s after the leader's apiserver was killed ({} failed attempts so far)",
        pause.as_secs_f64(),
        writers.failures.load(Ordering::Relaxed)
    );
    ensure!(
        pause <= MAX_PAUSE,
        "writes stopped for {pause:?} (> {MAX_PAUSE:?}); last error: {}",
        writers.last_error.lock()
    );
    let new_leader = until("a new store leader", Duration::from_secs(30), || async {
        store_leader(l).await.context("no member leads")
    })
    .await?;
    ensure!(new_leader != leader, "the dead member still leads");
    println!("new store leader: {}", l.plan.control_planes[new_leader].name);

    // The scheduler and the controller-manager work on through the others.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &pause_deployment("after-kill", 2))
        .await?;
    eventually(
        "the Deployment's pods scheduled and Running",
        Duration::from_secs(180),
        || async { running_pods(&client, "after-kill").await.len() == 2 },
    )
    .await?;

    let acked = writers.finish().await;
    let written_while_down: Vec<&String> = acked.iter().filter(|(_, t)| *t > kill_at).map(|(n, _)| n).collect();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stored: std::collections::BTreeSet<String> = configmaps
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked.iter().map(|(n, _)| n).filter(|n| !stored.contains(*n)).collect();
    ensure!(lost.is_empty(), "{} acknowledged writes lost: {lost:?}", lost.len());
    println!(
        "{} writes acknowledged ({} while the member was down), none lost",
        acked.len(),
        written_while_down.len()
    );

    // Back with `cluster up`, it catches up and serves what it missed.
    let restart = Instant::now();
    l.cluster_ok(&["up", "--wait", "300s"])?;
    ensure!(
        cluster::process::running(&spec).is_some(),
        "cluster up did not restart it"
    );
    let direct = member_client(l, leader).await?;
    eventually("its /readyz", Duration::from_secs(60), || readyz(&direct)).await?;
    let direct_api: Api<ConfigMap> = Api::namespaced(direct.clone(), "default");
    until(
        "its own cache to hold what it missed",
        Duration::from_secs(60),
        || async {
            // resourceVersion=0: served from this apiserver's own store.
            let list = direct_api.list(&ListParams::default().match_any()).await?.items;
            let names: std::collections::BTreeSet<String> = list.into_iter().filter_map(|c| c.metadata.name).collect();
            let missing = written_while_down.iter().filter(|n| !names.contains(**n)).count();
            ensure!(missing == 0, "{missing} writes made while it was down are not there");
            Ok(())
        },
    )
    .await?;
    let consistent = direct_api.list(&ListParams::default()).await?;
    ensure!(
        consistent.items.len() >= acked.len(),
        "a quorum read from it misses objects"
    );
    println!(
        "the restarted apiserver caught up {:.1}s after `cluster up` began",
        restart.elapsed().as_secs_f64()
    );
    Ok(())
}

/// UIDs that must survive a restart of every process.
#[derive(Debug, PartialEq)]
struct Identity {
    node: String,
    namespace: String,
    deployment: String,
    service: String,
    configmap: String,
}

async fn identity(client: &kube::Client, node: &str) -> anyhow::Result<Identity> {
    let uid = |m: kube::api::ObjectMeta| m.uid.context("no uid");
    Ok(Identity {
        node: uid(Api::<Node>::all(client.clone()).get(node).await?.metadata)?,
        namespace: uid(Api::<Namespace>::all(client.clone()).get("default").await?.metadata)?,
        deployment: uid(Api::<Deployment>::namespaced(client.clone(), "default")
            .get("hello")
            .await?
            .metadata)?,
        service: uid(Api::<Service>::namespaced(client.clone(), "default")
            .get("hello")
            .await?
            .metadata)?,
        configmap: uid(Api::<ConfigMap>::namespaced(client.clone(), "default")
            .get("marker")
            .await?
            .metadata)?,
    })
}

/// Node Ready with a heartbeat from after `since` (not the status stored
/// before the restart), the example app's three pods Running and each
/// answering on its own IP, and its NodePort answering from the host.
async fn app_serves(l: &Launched, client: &kube::Client, since: jiff::Timestamp) -> anyhow::Result<()> {
    let worker = &l.plan.workers[0];
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(
        "the node Ready with a fresh heartbeat",
        Duration::from_secs(120),
        || async {
            nodes.get(&worker.name).await.ok().is_some_and(|n| {
                n.status.and_then(|s| s.conditions).unwrap_or_default().iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.last_heartbeat_time.as_ref().is_some_and(|t| t.0 >= since)
                })
            })
        },
    )
    .await?;
    until(
        "the app's pods Running and answering",
        Duration::from_secs(240),
        || async {
            let pods = running_pods(client, "hello").await;
            ensure!(pods.len() == 3, "{} pods Running", pods.len());
            for p in &pods {
                let name = p.metadata.name.clone().unwrap_or_default();
                let ip: std::net::IpAddr = p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .with_context(|| format!("{name} has no IP"))?
                    .parse()?;
                let (status, body) = node_setup::registry::http_get(SocketAddr::new(ip, 8080), "/hostname")
                    .with_context(|| format!("{name} at {ip}"))?;
                ensure!(
                    status == 200 && body == name.as_bytes(),
                    "{name} at {ip} answers {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        },
    )
    .await?;
    let node_port = SocketAddr::from((worker.ip, 30080));
    eventually("the Service's NodePort answering", Duration::from_secs(60), || async {
        node_setup::registry::http_get(node_port, "/hostname")
            .is_ok_and(|(status, body)| status == 200 && String::from_utf8_lossy(&body).starts_with("hello-"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_and_up_brings_back_the_same_cluster() -> anyhow::Result<()> {
    if skip() {
        return Ok(());
    }
    let l = Launched::up("stopup", SINGLE, Duration::from_secs(300))?;
    let r = stop_and_up(&l).await;
    if r.is_err() {
        eprintln!("{}", l.logs());
    }
    r
}

async fn stop_and_up(l: &Launched) -> anyhow::Result<()> {
    let client = l.client().await?;
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.yaml");
    l.kubectl(&["apply", "-f", hello])?;
    l.kubectl(&["create", "configmap", "marker", "--from-literal=k=v"])?;
    app_serves(l, &client, jiff::Timestamp::now()).await?;
    let before = identity(&client, &l.plan.workers[0].name).await?;

    for phase in ["stop", "kill"] {
        let since = jiff::Timestamp::now();
        match phase {
            "stop" => {
                l.cluster_ok(&["stop"])?;
            }
            _ => {
                // A power cut: every process SIGKILLed, nothing cleaned.
                for spec in l.plan.processes() {
                    l.cluster_ok(&["kill", &spec.node, &spec.component])?;
                }
            }
        }
        let still: Vec<String> = l
            .plan
            .processes()
            .iter()
            .filter(|s| cluster::process::running(s).is_some())
            .map(|s| s.id())
            .collect();
        ensure!(still.is_empty(), "after `{phase}` these still run: {still:?}");

        let start = Instant::now();
        let out = l.cluster(&["up", "--wait", "300s"])?;
        if !out.status.success() {
            bail!(
                "cluster up after {phase} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!("after {phase}: `cluster up` took {:.1}s", start.elapsed().as_secs_f64());
        // One containerd per worker (none left over from before).
        for w in &l.plan.workers {
            let config = w.containerd_dir.join("config.toml");
            let daemons = node_setup::cleanup::find_processes(|args| {
                node_setup::cleanup::runs_with_config(args, "containerd", &config)
            });
            ensure!(daemons.len() == 1, "{}: containerds {daemons:?}", w.name);
        }
        let client = l.client().await?;
        let after = identity(&client, &l.plan.workers[0].name).await?;
        ensure!(
            after == before,
            "after {phase}, another cluster: {after:?} vs {before:?}"
        );
        app_serves(l, &client, since)
            .await
            .with_context(|| format!("after {phase}"))?;
        println!(
            "after {phase}: same cluster, app serving {:.1}s after `cluster up` began",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
