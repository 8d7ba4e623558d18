//! Resource usage: `/stats/summary` (the Summary API metrics-server
//! reads), `/metrics/resource` and `/metrics/cadvisor`, from the
//! runtime's container stats (CRI) and the node's cgroups and /proc.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::OnceLock;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::Kubelet;
use crate::cri::{self, keys};

/// Previous CPU samples (id → (usage ns, at ns)) for usageNanoCores.
fn samples() -> &'static Mutex<HashMap<String, (u64, i64)>> {
    static S: OnceLock<Mutex<HashMap<String, (u64, i64)>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn nano_cores(id: &str, usage: u64, at: i64) -> Option<u64> {
    let mut s = samples().lock();
    let prev = s.insert(id.to_string(), (usage, at));
    let (pu, pt) = prev?;
    let dt = at - pt;
    if dt <= 0 || usage < pu {
        return None;
    }
    Some(((usage - pu) as u128 * 1_000_000_000 / dt as u128) as u64)
}

fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

struct CStat {
    id: String,
    name: String,
    pod: String,
    namespace: String,
    uid: String,
    at: i64,
    cpu_ns: u64,
    working_set: u64,
    rootfs_used: u64,
}

async fn container_stats(k: &Kubelet) -> Vec<CStat> {
    let list = k.runtime.list_container_stats().await.unwrap_or_default();
    let mut out = Vec::new();
    for s in list {
        let Some(attrs) = s.attributes.as_ref() else { continue };
        let l = &attrs.labels;
        let label = |k: &str| l.get(k).cloned().unwrap_or_default();
        out.push(CStat {
            id: attrs.id.clone(),
            name: attrs
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| label(keys::CONTAINER_NAME)),
            pod: label(keys::POD_NAME),
            namespace: label(keys::POD_NAMESPACE),
            uid: label(keys::POD_UID),
            at: s.cpu.as_ref().map(|c| c.timestamp).unwrap_or(0),
            cpu_ns: s
                .cpu
                .as_ref()
                .and_then(|c| c.usage_core_nano_seconds.as_ref())
                .map(|v| v.value)
                .unwrap_or(0),
            working_set: s
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .map(|v| v.value)
                .unwrap_or(0),
            rootfs_used: s
                .writable_layer
                .as_ref()
                .and_then(|w| w.used_bytes.as_ref())
                .map(|v| v.value)
                .unwrap_or(0),
        });
    }
    out
}

fn running_ids(list: &[cri::Container]) -> std::collections::HashSet<String> {
    list.iter()
        .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .map(|c| c.id.clone())
        .collect()
}

fn node_cpu_ns() -> u64 {
    // The root cpuacct cgroup counts every CPU's time.
    std::fs::read_to_string("/sys/fs/cgroup/cpuacct/cpuacct.usage")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn node_memory() -> (i64, i64, i64) {
    let total = crate::node::capacity_memory();
    let usage: i64 = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.usage_in_bytes")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let inactive: i64 = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.stat")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("total_inactive_file ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0);
    let ws = (usage - inactive).max(0);
    (total, usage, ws)
}

pub async fn summary(k: &Kubelet) -> anyhow::Result<Value> {
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let list = k.runtime.list_containers().await?;
    let running = running_ids(&list);
    let stats = container_stats(k).await;
    let (mem_total, mem_usage, mem_ws) = node_memory();
    let node_cpu = node_cpu_ns();
    let (fs_cap, fs_avail) = crate::node::fs_bytes(&k.opts.root_dir);
    let image_fs = k.runtime.image_fs_info().await.ok();
    let image_used = image_fs
        .as_ref()
        .and_then(|i| i.image_filesystems.first())
        .and_then(|f| f.used_bytes.as_ref())
        .map(|u| u.value)
        .unwrap_or(0);
    let mut pods_out = Vec::new();
    for p in k.pods.all() {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let mut containers = Vec::new();
        let (mut cpu_ns, mut cores, mut ws) = (0u64, 0u64, 0u64);
        for s in stats.iter().filter(|s| s.uid == uid && running.contains(&s.id)) {
            let nc = nano_cores(&s.id, s.cpu_ns, s.at);
            cpu_ns += s.cpu_ns;
            cores += nc.unwrap_or(0);
            ws += s.working_set;
            containers.push(json!({
                "name": s.name,
                "startTime": list.iter().find(|c| c.id == s.id).map(|c| rfc3339(c.created_at)),
                "cpu": {"time": rfc3339(s.at), "usageNanoCores": nc, "usageCoreNanoSeconds": s.cpu_ns},
                "memory": {"time": rfc3339(s.at), "workingSetBytes": s.working_set, "usageBytes": s.working_set},
                "rootfs": {"time": rfc3339(s.at), "usedBytes": s.rootfs_used, "capacityBytes": fs_cap, "availableBytes": fs_avail},
                "logs": {"time": rfc3339(now), "capacityBytes": fs_cap, "availableBytes": fs_avail},
            }));
        }
        let volumes: Vec<Value> = k
            .volumes
            .usage(&uid)
            .into_iter()
            .map(|(name, (used, inodes))| json!({"name": name, "time": rfc3339(now), "usedBytes": used, "inodesUsed": inodes, "capacityBytes": fs_cap, "availableBytes": fs_avail}))
            .collect();
        let eph: u64 = volumes.iter().filter_map(|v| v["usedBytes"].as_u64()).sum::<u64>()
            + stats
                .iter()
                .filter(|s| s.uid == uid)
                .map(|s| s.rootfs_used)
                .sum::<u64>();
        pods_out.push(json!({
            "podRef": {"name": p.metadata.name, "namespace": p.metadata.namespace, "uid": uid},
            "startTime": p.status.as_ref().and_then(|s| s.start_time.clone()),
            "containers": containers,
            "cpu": {"time": rfc3339(now), "usageNanoCores": cores, "usageCoreNanoSeconds": cpu_ns},
            "memory": {"time": rfc3339(now), "workingSetBytes": ws, "usageBytes": ws},
            "volume": volumes,
            "ephemeral-storage": {"time": rfc3339(now), "usedBytes": eph, "capacityBytes": fs_cap, "availableBytes": fs_avail},
        }));
    }
    Ok(json!({
        "node": {
            "nodeName": k.node_name,
            "startTime": rfc3339(now),
            "cpu": {"time": rfc3339(now), "usageNanoCores": nano_cores("/", node_cpu, now), "usageCoreNanoSeconds": node_cpu},
            "memory": {"time": rfc3339(now), "availableBytes": (mem_total - mem_ws).max(0), "usageBytes": mem_usage, "workingSetBytes": mem_ws},
            "fs": {"time": rfc3339(now), "availableBytes": fs_avail, "capacityBytes": fs_cap, "usedBytes": fs_cap - fs_avail},
            "runtime": {"imageFs": {"time": rfc3339(now), "availableBytes": fs_avail, "capacityBytes": fs_cap, "usedBytes": image_used}},
            "rlimit": {"time": rfc3339(now)},
        },
        "pods": pods_out,
    }))
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub async fn resource_metrics(k: &Kubelet) -> String {
    let list = k.runtime.list_containers().await.unwrap_or_default();
    let running = running_ids(&list);
    let stats = container_stats(k).await;
    let (_, _, mem_ws) = node_memory();
    let ms = jiff::Timestamp::now().as_millisecond();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds\n# TYPE node_cpu_usage_seconds_total counter"
    );
    let _ = writeln!(out, "node_cpu_usage_seconds_total {} {ms}", node_cpu_ns() as f64 / 1e9);
    let _ = writeln!(
        out,
        "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes\n# TYPE node_memory_working_set_bytes gauge"
    );
    let _ = writeln!(out, "node_memory_working_set_bytes {mem_ws} {ms}");
    let _ = writeln!(
        out,
        "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds\n# TYPE container_cpu_usage_seconds_total counter"
    );
    for s in stats.iter().filter(|s| running.contains(&s.id)) {
        let _ = writeln!(
            out,
            "container_cpu_usage_seconds_total{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
            esc(&s.name),
            esc(&s.namespace),
            esc(&s.pod),
            s.cpu_ns as f64 / 1e9
        );
    }
    let _ = writeln!(
        out,
        "# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes\n# TYPE container_memory_working_set_bytes gauge"
    );
    for s in stats.iter().filter(|s| running.contains(&s.id)) {
        let _ = writeln!(
            out,
            "container_memory_working_set_bytes{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
            esc(&s.name),
            esc(&s.namespace),
            esc(&s.pod),
            s.working_set
        );
    }
    let mut pods: HashMap<(String, String), (u64, u64)> = HashMap::new();
    for s in stats.iter().filter(|s| running.contains(&s.id)) {
        let e = pods.entry((s.namespace.clone(), s.pod.clone())).or_default();
        e.0 += s.cpu_ns;
        e.1 += s.working_set;
    }
    let _ = writeln!(
        out,
        "# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds\n# TYPE pod_cpu_usage_seconds_total counter"
    );
    for ((ns, pod), (cpu, _)) in &pods {
        let _ = writeln!(
            out,
            "pod_cpu_usage_seconds_total{{namespace=\"{}\",pod=\"{}\"}} {} {ms}",
            esc(ns),
            esc(pod),
            *cpu as f64 / 1e9
        );
    }
    let _ = writeln!(
        out,
        "# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes\n# TYPE pod_memory_working_set_bytes gauge"
    );
    for ((ns, pod), (_, ws)) in &pods {
        let _ = writeln!(
            out,
            "pod_memory_working_set_bytes{{namespace=\"{}\",pod=\"{}\"}} {ws} {ms}",
            esc(ns),
            esc(pod)
        );
    }
    let _ = writeln!(
        out,
        "# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE scrape_error gauge\nscrape_error 0"
    );
    out
}

pub async fn cadvisor_metrics(k: &Kubelet) -> String {
    let list = k.runtime.list_containers().await.unwrap_or_default();
    let stats = container_stats(k).await;
    let ms = jiff::Timestamp::now().as_millisecond();
    let mut out = String::new();
    let image_of: HashMap<&str, String> = list
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n# TYPE container_cpu_usage_seconds_total counter"
    );
    for s in &stats {
        let _ = writeln!(
            out,
            "container_cpu_usage_seconds_total{{container=\"{}\",cpu=\"total\",id=\"{}\",image=\"{}\",name=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
            esc(&s.name),
            esc(&s.id),
            esc(image_of.get(s.id.as_str()).map(String::as_str).unwrap_or("")),
            esc(&s.id),
            esc(&s.namespace),
            esc(&s.pod),
            s.cpu_ns as f64 / 1e9
        );
    }
    let _ = writeln!(
        out,
        "# HELP container_memory_working_set_bytes Current working set in bytes.\n# TYPE container_memory_working_set_bytes gauge"
    );
    for s in &stats {
        let _ = writeln!(
            out,
            "container_memory_working_set_bytes{{container=\"{}\",id=\"{}\",image=\"{}\",name=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {ms}",
            esc(&s.name),
            esc(&s.id),
            esc(image_of.get(s.id.as_str()).map(String::as_str).unwrap_or("")),
            esc(&s.id),
            esc(&s.namespace),
            esc(&s.pod),
            s.working_set
        );
    }
    out
}

/// kubelet_running_pods and kubelet_running_containers.
pub async fn kubelet_gauges(k: &Kubelet) -> String {
    let sandboxes = k.runtime.list_pod_sandboxes().await.unwrap_or_default();
    let containers = k.runtime.list_containers().await.unwrap_or_default();
    let ready = sandboxes
        .iter()
        .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
        .count();
    let mut by_state: HashMap<&str, usize> = HashMap::new();
    for c in &containers {
        let s = match cri::ContainerState::try_from(c.state) {
            Ok(cri::ContainerState::ContainerRunning) => "running",
            Ok(cri::ContainerState::ContainerExited) => "exited",
            Ok(cri::ContainerState::ContainerCreated) => "created",
            _ => "unknown",
        };
        *by_state.entry(s).or_default() += 1;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox\n# TYPE kubelet_running_pods gauge\nkubelet_running_pods {ready}"
    );
    let _ = writeln!(
        out,
        "# HELP kubelet_running_containers [ALPHA] Number of containers currently running\n# TYPE kubelet_running_containers gauge"
    );
    for (s, n) in by_state {
        let _ = writeln!(out, "kubelet_running_containers{{container_state=\"{s}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP kubelet_node_name [ALPHA] The node's name. The count is always 1.\n# TYPE kubelet_node_name gauge\nkubelet_node_name{{node=\"{}\"}} 1",
        esc(&k.node_name)
    );
    out
}
