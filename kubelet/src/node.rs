//! The Node: registration (labels, taints, capacity and allocatable from
//! the host), NodeStatus every `--node-status-update-frequency` (written
//! when changed, or every `--node-status-report-frequency`), and the node
//! Lease in `kube-node-lease`, renewed every quarter of its duration.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::{Kubelet, Options};

pub const KUBELET_VERSION: &str = "v1.33.0";

pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// --node-ip, else the source address of the default route, else loopback.
pub fn node_ip(opts: &Options) -> IpAddr {
    if let Some(ip) = opts.node_ip {
        return ip;
    }
    // Connecting a UDP socket sends nothing; it picks the route's source.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The host's memory in bytes.
pub fn capacity_memory() -> i64 {
    meminfo_total()
}

fn meminfo_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn cpus() -> i64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count() as i64)
        .unwrap_or(1)
        .max(1)
}

/// Bytes of the filesystem holding `path`: (capacity, available).
pub fn fs_bytes(path: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(path) {
        Ok(s) => ((s.f_blocks * s.f_frsize) as i64, (s.f_bavail * s.f_frsize) as i64),
        Err(_) => (0, 0),
    }
}

fn hugepages(size_kb: u64) -> i64 {
    std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/hugepages-{size_kb}kB/nr_hugepages"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0)
        * (size_kb as i64)
        * 1024
}

fn q(v: i64) -> Quantity {
    Quantity(v.to_string())
}

fn reserved(opts: &Options, resource: &str) -> i64 {
    opts.kube_reserved
        .iter()
        .chain(&opts.system_reserved)
        .filter(|(k, _)| k == resource)
        .filter_map(|(_, v)| apimachinery::quantity::Quantity::parse(v).ok())
        .map(|q| if resource == "cpu" { q.milli_value() } else { q.value() })
        .sum()
}

/// Capacity from the host; allocatable subtracts --kube-reserved,
/// --system-reserved and the hard eviction thresholds.
pub fn capacity_and_allocatable(k: &Kubelet) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let opts = &k.opts;
    let cpu = cpus();
    let mem = meminfo_total();
    let (disk, _) = fs_bytes(&opts.root_dir);
    let mut cap = BTreeMap::new();
    cap.insert("cpu".to_string(), q(cpu));
    cap.insert("memory".to_string(), Quantity(format!("{}Ki", mem / 1024)));
    cap.insert("ephemeral-storage".to_string(), Quantity(format!("{}Ki", disk / 1024)));
    cap.insert("hugepages-1Gi".to_string(), q(hugepages(1024 * 1024)));
    cap.insert("hugepages-2Mi".to_string(), q(hugepages(2048)));
    cap.insert("pods".to_string(), q(opts.max_pods as i64));
    let thresholds = crate::eviction::thresholds(opts).unwrap_or_default();
    let evict = |signal: &str, total: i64| {
        thresholds
            .iter()
            .find(|t| t.signal == signal)
            .map(|t| t.bytes(total))
            .unwrap_or(0)
    };
    let mut alloc = cap.clone();
    let cpu_m = (cpu * 1000 - reserved(opts, "cpu")).max(0);
    alloc.insert(
        "cpu".to_string(),
        Quantity(if cpu_m % 1000 == 0 {
            (cpu_m / 1000).to_string()
        } else {
            format!("{cpu_m}m")
        }),
    );
    let mem_a = (mem - reserved(opts, "memory") - evict("memory.available", mem)).max(0);
    alloc.insert("memory".to_string(), Quantity(format!("{}Ki", mem_a / 1024)));
    let disk_a = (disk - reserved(opts, "ephemeral-storage") - evict("nodefs.available", disk)).max(0);
    alloc.insert("ephemeral-storage".to_string(), q(disk_a));
    (cap, alloc)
}

fn taints(opts: &Options) -> anyhow::Result<Vec<Taint>> {
    opts.register_with_taints
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (kv, effect) = t
                .rsplit_once(':')
                .ok_or_else(|| anyhow::anyhow!("--register-with-taints {t:?}: want key[=value]:Effect"))?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                anyhow::bail!("--register-with-taints {t:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute");
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (kv.to_string(), None),
            };
            Ok(Taint {
                key,
                value,
                effect: effect.into(),
                time_added: None,
            })
        })
        .collect()
}

fn labels(k: &Kubelet) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("kubernetes.io/hostname".into(), k.node_name.clone());
    l.insert("kubernetes.io/os".into(), "linux".into());
    l.insert("kubernetes.io/arch".into(), "amd64".into());
    l.insert("beta.kubernetes.io/os".into(), "linux".into());
    l.insert("beta.kubernetes.io/arch".into(), "amd64".into());
    if let Some(t) = &k.opts.instance_type {
        l.insert("node.kubernetes.io/instance-type".into(), t.clone());
        l.insert("beta.kubernetes.io/instance-type".into(), t.clone());
    }
    for (key, v) in &k.opts.node_labels {
        l.insert(key.clone(), v.clone());
    }
    l
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_else(|| "Linux".into())
}

#[allow(clippy::too_many_arguments)]
fn condition(
    type_: &str,
    pressure: bool,
    ok_reason: &str,
    ok_msg: &str,
    bad_reason: &str,
    bad_msg: &str,
    old: Option<&NodeCondition>,
    now: &Time,
) -> NodeCondition {
    let status = if pressure { "True" } else { "False" };
    let transition = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(if pressure { bad_reason } else { ok_reason }.into()),
        message: Some(if pressure { bad_msg } else { ok_msg }.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: transition,
    }
}

/// The status this kubelet reports now.
pub async fn status(k: &Kubelet, old: Option<&NodeStatus>) -> NodeStatus {
    let (capacity, allocatable) = capacity_and_allocatable(k);
    let now = Time(jiff::Timestamp::now());
    let old_cond = |t: &str| old.and_then(|o| o.conditions.iter().flatten().find(|c| c.type_ == t));
    let p = &k.pressure;
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            p.memory(),
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
            old_cond("MemoryPressure"),
            &now,
        ),
        condition(
            "DiskPressure",
            p.disk(),
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
            old_cond("DiskPressure"),
            &now,
        ),
        condition(
            "PIDPressure",
            p.pid(),
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
            old_cond("PIDPressure"),
            &now,
        ),
    ];
    let runtime_problem = match k.runtime.status().await {
        Ok(s) => {
            let conds = s.status.map(|s| s.conditions).unwrap_or_default();
            conds.iter().find(|c| !c.status).map(|c| {
                format!(
                    "container runtime status check may not have completed yet: {} is false: {}: {}",
                    c.r#type, c.reason, c.message
                )
            })
        }
        Err(e) => Some(format!("container runtime is down: {}", e.message())),
    };
    let not_ready = runtime_problem.unwrap_or_default();
    let ok = not_ready.is_empty();
    let status = if ok { "True" } else { "False" };
    let ready = NodeCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(if ok { "KubeletReady" } else { "KubeletNotReady" }.into()),
        message: Some(if ok {
            "kubelet is posting ready status".to_string()
        } else {
            not_ready
        }),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: match old_cond("Ready") {
            Some(o) if o.status == status => o.last_transition_time.clone(),
            _ => Some(now.clone()),
        },
    };
    conditions.push(ready);
    let mut images: Vec<ContainerImage> = k
        .runtime
        .list_images()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| ContainerImage {
            names: Some(i.repo_tags.iter().chain(&i.repo_digests).cloned().collect()),
            size_bytes: Some(i.size as i64),
        })
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    images.truncate(50);
    let mut addresses: Vec<NodeAddress> = k
        .node_ips
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.clone(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: k.node_name.clone(),
    });
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: k.opts.port as i32,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: read_trim("/etc/machine-id"),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            kernel_version: rustix::system::uname().release().to_string_lossy().into_owned(),
            os_image: os_image(),
            container_runtime_version: format!("{}://{}", k.runtime_name, k.runtime_version),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: KUBELET_VERSION.into(),
            operating_system: "linux".into(),
            architecture: "amd64".into(),
            swap: None,
        }),
        images: Some(images),
        ..Default::default()
    }
}

/// Creates the Node, or adopts an existing one (its labels updated).
pub async fn register(k: &Arc<Kubelet>) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(k.client.clone());
    let taints = taints(&k.opts)?;
    if !k.opts.register_node {
        return Ok(());
    }
    let node = Node {
        metadata: ObjectMeta {
            name: Some(k.node_name.clone()),
            labels: Some(labels(k)),
            annotations: Some(
                [(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: if taints.is_empty() { None } else { Some(taints) },
            ..Default::default()
        }),
        status: Some(status(k, None).await),
    };
    let mut delay = Duration::from_millis(100);
    loop {
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {
                tracing::info!(node = %k.node_name, "registered the node");
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = serde_json::json!({"metadata": {"labels": labels(k)}});
                api.patch(&k.node_name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                    .context("updating the existing node's labels")?;
                tracing::info!(node = %k.node_name, "node already registered; adopted it");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "registering the node; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(7));
            }
        }
    }
    write_status(k).await?;
    Ok(())
}

async fn write_status(k: &Kubelet) -> anyhow::Result<NodeStatus> {
    let api: Api<Node> = Api::all(k.client.clone());
    let current = api.get_status(&k.node_name).await?;
    let st = status(k, current.status.as_ref()).await;
    let patch = serde_json::json!({"status": st});
    api.patch_status(&k.node_name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(st)
}

/// Whether two node statuses differ beyond heartbeat times.
fn changed(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(a) != strip(b)
}

pub async fn status_loop(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(k.client.clone());
    let mut last: Option<(NodeStatus, Instant)> = None;
    let mut tick = tokio::time::interval(k.opts.node_status_update_frequency);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = match api.get_status(&k.node_name).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "reading the node for its status update");
                continue;
            }
        };
        let st = status(&k, current.status.as_ref()).await;
        let due = match &last {
            None => true,
            Some((prev, at)) => changed(prev, &st) || at.elapsed() >= k.opts.node_status_report_frequency,
        };
        if !due {
            continue;
        }
        let patch = serde_json::json!({"status": st});
        match api
            .patch_status(&k.node_name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => last = Some((st, Instant::now())),
            Err(e) => tracing::warn!(error = %e, "updating the node status"),
        }
    }
}

/// Creates and renews `kube-node-lease/<node>`.
pub async fn lease_loop(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(k.client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(k.client.clone());
    let period = Duration::from_secs((k.opts.node_lease_duration_seconds.max(4) / 4) as u64);
    loop {
        let now = MicroTime(jiff::Timestamp::now());
        let r = match api.get_opt(&k.node_name).await {
            Ok(Some(mut l)) => {
                let spec = l.spec.get_or_insert_with(Default::default);
                spec.holder_identity = Some(k.node_name.clone());
                spec.lease_duration_seconds = Some(k.opts.node_lease_duration_seconds);
                spec.renew_time = Some(now);
                api.replace(&k.node_name, &PostParams::default(), &l).await.map(|_| ())
            }
            Ok(None) => {
                let owner = nodes
                    .get(&k.node_name)
                    .await
                    .ok()
                    .and_then(|n| n.metadata.uid)
                    .map(|uid| OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: k.node_name.clone(),
                        uid,
                        ..Default::default()
                    });
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(k.node_name.clone()),
                        namespace: Some("kube-node-lease".into()),
                        owner_references: owner.map(|o| vec![o]),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(k.node_name.clone()),
                        lease_duration_seconds: Some(k.opts.node_lease_duration_seconds),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                api.create(&PostParams::default(), &lease).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        let wait = match r {
            Ok(()) => period,
            Err(e) => {
                tracing::warn!(error = %e, "renewing the node lease");
                Duration::from_millis(500)
            }
        };
        tokio::time::sleep(wait).await;
    }
}
