//! The eviction manager: hard thresholds on memory.available,
//! nodefs.available, imagefs.available and pid.available. Over a
//! threshold, the node reports the pressure condition and evicts one pod
//! at a time, ranked as upstream: pods using more than they request
//! first, then lower priority, then larger usage. An evicted pod fails
//! with reason `Evicted`; its containers are killed without grace.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;

use crate::{Kubelet, Options};

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bytes(i64),
    Percent(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub signal: String,
    pub value: Value,
}

impl Threshold {
    /// The threshold in absolute terms for a resource of `total`.
    pub fn bytes(&self, total: i64) -> i64 {
        match self.value {
            Value::Bytes(b) => b,
            Value::Percent(p) => (total as f64 * p / 100.0) as i64,
        }
    }
}

const SIGNALS: &[&str] = &[
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
];

/// Parses `--eviction-hard` (`memory.available<100Mi`, `nodefs.available<10%`).
pub fn thresholds(opts: &Options) -> anyhow::Result<Vec<Threshold>> {
    let mut out = Vec::new();
    for t in opts.eviction_hard.iter().filter(|t| !t.is_empty()) {
        let (signal, v) = t.split_once('<').ok_or_else(|| {
            anyhow::anyhow!("--eviction-hard {t:?}: want signal<quantity, e.g. memory.available<100Mi")
        })?;
        if !SIGNALS.contains(&signal) {
            anyhow::bail!(
                "--eviction-hard {t:?}: unknown signal {signal:?}; known: {}",
                SIGNALS.join(", ")
            );
        }
        let value = if let Some(p) = v.strip_suffix('%') {
            Value::Percent(
                p.parse()
                    .map_err(|_| anyhow::anyhow!("--eviction-hard {t:?}: bad percentage"))?,
            )
        } else {
            Value::Bytes(
                apimachinery::quantity::Quantity::parse(v)
                    .map_err(|e| anyhow::anyhow!("--eviction-hard {t:?}: {e}"))?
                    .value(),
            )
        };
        out.push(Threshold {
            signal: signal.to_string(),
            value,
        });
    }
    Ok(out)
}

/// The node's pressure conditions, set by the eviction manager.
#[derive(Default)]
pub struct Pressure {
    memory: AtomicBool,
    disk: AtomicBool,
    pid: AtomicBool,
    /// Pods evicted, by uid: the status message.
    pub evicted: Mutex<HashMap<String, String>>,
}

impl Pressure {
    pub fn memory(&self) -> bool {
        self.memory.load(Ordering::Relaxed)
    }
    pub fn disk(&self) -> bool {
        self.disk.load(Ordering::Relaxed)
    }
    pub fn pid(&self) -> bool {
        self.pid.load(Ordering::Relaxed)
    }
    pub fn evicted(&self, uid: &str) -> Option<String> {
        self.evicted.lock().get(uid).cloned()
    }
}

fn read_cgroup_i64(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// memory.available as upstream computes it: capacity minus the root
/// cgroup's working set (usage minus inactive file pages).
fn memory_available() -> (i64, i64) {
    let total = crate::node::capacity_memory();
    let usage = read_cgroup_i64("/sys/fs/cgroup/memory/memory.usage_in_bytes").unwrap_or(0);
    let inactive = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.stat")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("total_inactive_file ")
                    .and_then(|v| v.trim().parse::<i64>().ok())
            })
        })
        .unwrap_or(0);
    let working = (usage - inactive).max(0);
    (total, (total - working).max(0))
}

fn pids_available() -> (i64, i64) {
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(32768);
    let used = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
                .count()
        })
        .unwrap_or(0) as i64;
    (max, max - used)
}

/// A pod's memory working set (its pod cgroup).
fn pod_memory(k: &Kubelet, pod: &Pod) -> i64 {
    let cg = crate::cgroups::pod_cgroup(&k.opts.cgroup_root, pod);
    crate::cgroups::read("memory", &cg, "memory.usage_in_bytes")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn memory_request(pod: &Pod) -> i64 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("memory").cloned())
        .filter_map(|q| apimachinery::quantity::Quantity::parse(&q.0).ok())
        .map(|q| q.value())
        .sum()
}

/// Orders eviction candidates for memory pressure (first = evicted first):
/// usage above requests, then lower priority, then more usage above
/// requests.
pub fn rank(mut pods: Vec<(Arc<Pod>, i64)>) -> Vec<Arc<Pod>> {
    let key = |(p, usage): &(Arc<Pod>, i64)| {
        let req = memory_request(p);
        let exceeds = *usage > req;
        let prio = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        (std::cmp::Reverse(exceeds), prio, std::cmp::Reverse(usage - req))
    };
    pods.sort_by_key(key);
    pods.into_iter().map(|(p, _)| p).collect()
}

pub async fn run(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let thresholds = thresholds(&k.opts)?;
    let mut tick = tokio::time::interval(k.opts.eviction_monitoring_interval);
    loop {
        tick.tick().await;
        let (mem_total, mem_avail) = memory_available();
        let (disk_total, disk_avail) = crate::node::fs_bytes(&k.opts.root_dir);
        let (pid_total, pid_avail) = pids_available();
        let mut hit: Option<(&str, i64, i64)> = None;
        let (mut mem_p, mut disk_p, mut pid_p) = (false, false, false);
        for t in &thresholds {
            let (total, avail) = match t.signal.as_str() {
                "memory.available" => (mem_total, mem_avail),
                "nodefs.available" | "imagefs.available" => (disk_total, disk_avail),
                "pid.available" => (pid_total, pid_avail),
                _ => continue,
            };
            let limit = t.bytes(total);
            if avail < limit {
                match t.signal.as_str() {
                    "memory.available" => mem_p = true,
                    "pid.available" => pid_p = true,
                    _ => disk_p = true,
                }
                hit.get_or_insert((t.signal.as_str(), limit, avail));
            }
        }
        // Local storage limits: an emptyDir over its sizeLimit evicts its
        // pod (upstream's localStorageEviction).
        for p in k.pods.all() {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if k.pressure.evicted(&uid).is_some() || p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let usage = k.volumes.usage(&uid);
            for v in p.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) else {
                    continue;
                };
                let Ok(bytes) = apimachinery::quantity::Quantity::parse(&limit.0) else {
                    continue;
                };
                let used = usage.get(&v.name).map(|u| u.0).unwrap_or(0);
                if used as i64 > bytes.value() {
                    let message = format!(
                        "Usage of EmptyDir volume \"{}\" exceeds the limit \"{}\". ",
                        v.name, limit.0
                    );
                    k.recorder
                        .pod(&p, None, crate::events::WARNING, "Evicted", message.clone());
                    k.pressure.evicted.lock().insert(uid.clone(), message);
                    k.wake(&uid);
                    break;
                }
            }
        }
        k.pressure.memory.store(mem_p, Ordering::Relaxed);
        k.pressure.disk.store(disk_p, Ordering::Relaxed);
        k.pressure.pid.store(pid_p, Ordering::Relaxed);
        let Some((signal, limit, avail)) = hit else { continue };
        let resource = match signal {
            "memory.available" => "memory",
            "pid.available" => "pids",
            _ => "ephemeral-storage",
        };
        // Candidates: running pods not already evicted, static pods last
        // (upstream never evicts critical pods).
        let candidates: Vec<(Arc<Pod>, i64)> = k
            .pods
            .all()
            .into_iter()
            .filter(|p| {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                k.pressure.evicted(&uid).is_none()
                    && !k.pods.is_static(&uid)
                    && p.metadata.deletion_timestamp.is_none()
                    && !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded") | Some("Failed")
                    )
            })
            .map(|p| {
                let usage = pod_memory(&k, &p);
                (p, usage)
            })
            .collect();
        let Some(victim) = rank(candidates).into_iter().next() else {
            continue;
        };
        let uid = victim.metadata.uid.clone().unwrap_or_default();
        let fmt = |b: i64| format!("{}Ki", b / 1024);
        let message = format!(
            "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. ",
            fmt(limit),
            fmt(avail)
        );
        tracing::info!(pod = %crate::pod::manager::describe(&victim), %signal, "evicting a pod");
        k.recorder
            .pod(&victim, None, crate::events::WARNING, "Evicted", message.clone());
        k.pressure.evicted.lock().insert(uid.clone(), message);
        k.wake(&uid);
    }
}
