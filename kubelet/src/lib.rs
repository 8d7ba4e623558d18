//! The kubelet: registers its Node, then runs the pods bound to it through
//! a CRI runtime and reports their status.
//!
//! - [`node`]: registration, NodeStatus, the node Lease.
//! - [`pod`]: the desired pods (API watch + static manifests), one worker
//!   per pod that drives sandbox and containers toward the spec
//!   ([`pod::plan`] decides, [`pod::worker`] acts), and the status it writes
//!   ([`pod::status`]).
//! - [`pleg`]: relists the runtime every second and wakes the workers of
//!   pods whose containers changed.
//! - [`prober`]: liveness, readiness and startup probes.
//! - [`server`]: the kubelet API on :10250 (logs, exec/attach/port-forward
//!   through the runtime's streaming server, stats, pods, metrics).
//! - [`cri`]: the CRI client; [`cgroups`], [`cni`]: the node's plumbing.

pub mod cgroups;
pub mod cni;
pub mod cri;
pub mod events;
pub mod eviction;
pub mod images;
pub mod logs;
pub mod node;
pub mod options;
pub mod pleg;
pub mod pod;
pub mod prober;
pub mod server;
pub mod sources;
pub mod stats;

pub mod dns;
pub mod envvars;
pub mod hosts;
pub mod volumes;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;

pub use options::Options;

/// Everything the kubelet's loops share.
pub struct Kubelet {
    pub opts: Options,
    pub node_name: String,
    pub node_ips: Vec<String>,
    pub client: kube::Client,
    pub runtime: cri::Runtime,
    /// "containerd", the scheme of containerIDs.
    pub runtime_name: String,
    pub runtime_version: String,
    pub pods: pod::manager::PodManager,
    pub workers: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    pub probes: prober::Manager,
    pub backoff: Mutex<pod::backoff::Backoff>,
    pub pull_backoff: Mutex<pod::backoff::Backoff>,
    pub recorder: events::Recorder,
    pub statuses: pod::status_manager::StatusManager,
    pub pull_lock: tokio::sync::Mutex<()>,
    /// When each image pull (pod/image) last failed.
    pub pull_failures: Mutex<HashMap<String, std::time::Instant>>,
    /// Resources applied by in-place resizes, by container id.
    pub resized: Mutex<HashMap<String, cri::LinuxContainerResources>>,
    pub metrics: server::Metrics,
    pub pressure: eviction::Pressure,
    pub volumes: volumes::VolumeManager<sources::ApiSources>,
}

impl Kubelet {
    /// Wakes (or starts) the worker of pod `uid`.
    pub fn wake(self: &Arc<Self>, uid: &str) {
        let mut workers = self.workers.lock();
        if let Some(n) = workers.get(uid) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(tokio::sync::Notify::new());
        workers.insert(uid.to_string(), notify.clone());
        let k = self.clone();
        let uid = uid.to_string();
        tokio::spawn(async move { pod::worker::run(k, uid, notify).await });
    }

    pub fn pod(&self, uid: &str) -> Option<Arc<Pod>> {
        self.pods.get(uid)
    }
}

/// The node's name: --hostname-override, else the hostname, lowercased.
pub fn node_name(opts: &Options) -> String {
    opts.hostname_override
        .clone()
        .unwrap_or_else(|| rustix::system::uname().nodename().to_string_lossy().into_owned())
        .to_lowercase()
}

/// The CRI runtime and its version. A runtime that is still starting (its
/// socket there, its CRI service not yet initialized) is retried for up to
/// `--runtime-request-timeout`: with no init system to restart the kubelet,
/// as systemd restarts upstream's when it exits on this.
async fn connect_runtime(opts: &Options) -> anyhow::Result<(cri::Runtime, k8s_cri::v1::VersionResponse)> {
    let endpoint = &opts.container_runtime_endpoint;
    let deadline = tokio::time::Instant::now() + opts.runtime_request_timeout;
    let mut warned = false;
    loop {
        let attempt = async {
            let runtime = cri::Runtime::connect(endpoint, opts.runtime_request_timeout).await?;
            let version = runtime
                .version()
                .await
                .with_context(|| format!("asking the CRI runtime at {endpoint} for its version"))?;
            anyhow::Ok((runtime, version))
        };
        match attempt.await {
            Ok(ok) => return Ok(ok),
            Err(e) if tokio::time::Instant::now() < deadline => {
                if !warned {
                    tracing::warn!(error = %format!("{e:#}"), "the container runtime is not ready; retrying");
                    warned = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs the kubelet until SIGTERM/SIGINT.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    if opts.cgroup_driver != "cgroupfs" {
        anyhow::bail!(
            "--cgroup-driver={} is not supported: this kubelet manages cgroups itself (cgroupfs); use --cgroup-driver=cgroupfs",
            opts.cgroup_driver
        );
    }
    let client = component_base::client::from_kubeconfig(&opts.kubeconfig).await?;
    let (runtime, version) = connect_runtime(&opts).await?;
    let node_name = node_name(&opts);
    let node_ips = vec![node::node_ip(&opts).to_string()];
    tracing::info!(
        node = %node_name,
        runtime = %format!("{} {}", version.runtime_name, version.runtime_version),
        "kubelet starting"
    );
    std::fs::create_dir_all(&opts.root_dir).with_context(|| format!("creating {}", opts.root_dir.display()))?;
    std::fs::create_dir_all(&opts.pod_log_dir).with_context(|| format!("creating {}", opts.pod_log_dir.display()))?;
    cgroups::ensure_hierarchy(&opts.cgroup_root)?;

    let k = Arc::new(Kubelet {
        recorder: events::Recorder::new(client.clone(), &node_name),
        statuses: pod::status_manager::StatusManager::new(client.clone()),
        pods: pod::manager::PodManager::default(),
        workers: Mutex::new(HashMap::new()),
        probes: prober::Manager::default(),
        backoff: Mutex::new(pod::backoff::Backoff::new(
            opts.container_restart_backoff_base,
            opts.container_restart_backoff_max,
        )),
        pull_backoff: Mutex::new(pod::backoff::Backoff::new(
            opts.container_restart_backoff_base,
            opts.container_restart_backoff_max,
        )),
        runtime_name: version.runtime_name.clone(),
        runtime_version: version.runtime_version.clone(),
        pull_lock: tokio::sync::Mutex::new(()),
        pull_failures: Mutex::new(HashMap::new()),
        resized: Mutex::new(HashMap::new()),
        metrics: server::Metrics::default(),
        pressure: eviction::Pressure::default(),
        volumes: volumes::VolumeManager::new(
            opts.root_dir.clone(),
            Arc::new(sources::ApiSources::new(client.clone())),
        )
        .with_cluster_domain(opts.cluster_domain.clone()),
        opts,
        node_name,
        node_ips,
        client,
        runtime,
    });

    // The API first: the node must exist before pods can be bound to it.
    node::register(&k).await?;
    let serving = server::serve(k.clone()).await?;
    tracing::info!(address = %serving, "kubelet API serving");

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(cni::run(k.clone()));
    tasks.spawn(node::status_loop(k.clone()));
    tasks.spawn(node::lease_loop(k.clone()));
    tasks.spawn(pod::manager::watch_api(k.clone()));
    tasks.spawn(pod::manager::static_pods(k.clone()));
    tasks.spawn(pleg::run(k.clone()));
    tasks.spawn(eviction::run(k.clone()));
    tasks.spawn(images::gc_loop(k.clone()));
    tasks.spawn(logs::rotate_loop(k.clone()));
    // Pods the runtime already runs (a restarted kubelet) get workers so
    // they are adopted, or cleaned up if no longer wanted.
    pleg::adopt(&k).await;

    tokio::select! {
        _ = component_base::signals::shutdown() => {
            tracing::info!("shutting down; containers keep running");
            Ok(())
        }
        Some(r) = tasks.join_next() => {
            match r {
                Ok(Ok(())) => anyhow::bail!("a kubelet loop ended"),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("a kubelet loop panicked: {e}")),
            }
        }
    }
}
