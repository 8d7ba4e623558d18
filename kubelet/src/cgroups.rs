//! Pod cgroups on cgroup v1 (cgroupfs driver), as upstream's QoS cgroup
//! manager lays them out:
//!
//! ```text
//! <cgroup-root>/kubepods/pod<uid>              Guaranteed
//! <cgroup-root>/kubepods/burstable/pod<uid>    Burstable
//! <cgroup-root>/kubepods/besteffort/pod<uid>   BestEffort
//! ```
//!
//! The kubelet creates the pod cgroup and sets its limits; the runtime puts
//! the sandbox and containers under it (`cgroup_parent`) and sets each
//! container's own limits from [`container_resources`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use apimachinery::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::cri;

const MOUNT: &str = "/sys/fs/cgroup";
/// Subsystems the kubelet writes pod limits into.
const SUBSYSTEMS: &[&str] = &["cpu", "cpuacct", "memory", "pids"];
const MIN_SHARES: i64 = 2;
const SHARES_PER_CPU: i64 = 1024;
const PERIOD: i64 = 100_000;
const MIN_QUOTA: i64 = 1000;

fn join(root: &str, rel: &str) -> String {
    let root = root.trim_end_matches('/');
    format!("{root}/{}", rel.trim_start_matches('/'))
}

fn subsystem_dir(subsystem: &str, cgroup: &str) -> PathBuf {
    Path::new(MOUNT).join(subsystem).join(cgroup.trim_start_matches('/'))
}

/// Creates `kubepods`, `kubepods/burstable` and `kubepods/besteffort`;
/// BestEffort gets the minimum CPU shares.
pub fn ensure_hierarchy(root: &str) -> anyhow::Result<()> {
    for qos in ["", "burstable", "besteffort"] {
        let cg = join(root, &format!("kubepods/{qos}"));
        for s in SUBSYSTEMS {
            let d = subsystem_dir(s, &cg);
            if Path::new(MOUNT).join(s).exists() {
                std::fs::create_dir_all(&d).with_context(|| format!("creating cgroup {}", d.display()))?;
            }
        }
    }
    let _ = std::fs::write(
        subsystem_dir("cpu", &join(root, "kubepods/besteffort")).join("cpu.shares"),
        MIN_SHARES.to_string(),
    );
    Ok(())
}

fn milli(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i64> {
    q.and_then(|q| Quantity::parse(&q.0).ok()).map(|q| q.milli_value())
}

fn value(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i64> {
    q.and_then(|q| Quantity::parse(&q.0).ok()).map(|q| q.value())
}

pub fn milli_to_shares(m: i64) -> i64 {
    if m == 0 {
        return MIN_SHARES;
    }
    (m * SHARES_PER_CPU / 1000).max(MIN_SHARES)
}

pub fn milli_to_quota(m: i64) -> i64 {
    if m == 0 {
        return 0;
    }
    (m * PERIOD / 1000).max(MIN_QUOTA)
}

/// A container's CRI resources: shares from its CPU request (or limit),
/// CFS quota from its CPU limit, its memory limit.
pub fn container_resources(c: &Container) -> cri::LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let req = r.requests.unwrap_or_default();
    let lim = r.limits.unwrap_or_default();
    let cpu_req = milli(req.get("cpu")).or(milli(lim.get("cpu")));
    let cpu_lim = milli(lim.get("cpu"));
    cri::LinuxContainerResources {
        cpu_period: if cpu_lim.is_some() { PERIOD } else { 0 },
        cpu_quota: cpu_lim.map(milli_to_quota).unwrap_or(0),
        cpu_shares: milli_to_shares(cpu_req.unwrap_or(0)),
        memory_limit_in_bytes: value(lim.get("memory")).unwrap_or(0),
        ..Default::default()
    }
}

/// The pod's cgroup (relative to the cgroup mounts), by QoS class.
pub fn pod_cgroup(root: &str, pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let qos = crate::pod::status::qos_class(pod);
    match qos {
        "Guaranteed" => join(root, &format!("kubepods/pod{uid}")),
        "Burstable" => join(root, &format!("kubepods/burstable/pod{uid}")),
        _ => join(root, &format!("kubepods/besteffort/pod{uid}")),
    }
}

/// Creates the pod cgroup with the pod's limits: CPU shares from the sum
/// of requests, and, when every container has one, the sum of CPU and
/// memory limits.
pub fn ensure_pod(root: &str, pod: &Pod) -> anyhow::Result<String> {
    let cg = pod_cgroup(root, pod);
    for s in SUBSYSTEMS {
        if Path::new(MOUNT).join(s).exists() {
            let d = subsystem_dir(s, &cg);
            std::fs::create_dir_all(&d).with_context(|| format!("creating cgroup {}", d.display()))?;
        }
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let (mut cpu_req, mut cpu_lim, mut mem_lim) = (0i64, Some(0i64), Some(0i64));
    for c in &spec.containers {
        let r = c.resources.clone().unwrap_or_default();
        let req = r.requests.unwrap_or_default();
        let lim = r.limits.unwrap_or_default();
        cpu_req += milli(req.get("cpu")).or(milli(lim.get("cpu"))).unwrap_or(0);
        cpu_lim = cpu_lim.zip(milli(lim.get("cpu"))).map(|(a, b)| a + b);
        mem_lim = mem_lim.zip(value(lim.get("memory"))).map(|(a, b)| a + b);
    }
    let write = |s: &str, file: &str, v: i64| {
        let p = subsystem_dir(s, &cg).join(file);
        if let Err(e) = std::fs::write(&p, v.to_string()) {
            tracing::warn!(path = %p.display(), error = %e, "setting a pod cgroup limit");
        }
    };
    if crate::pod::status::qos_class(pod) != "BestEffort" {
        write("cpu", "cpu.shares", milli_to_shares(cpu_req));
    }
    if let Some(l) = cpu_lim.filter(|l| *l > 0) {
        write("cpu", "cpu.cfs_period_us", PERIOD);
        write("cpu", "cpu.cfs_quota_us", milli_to_quota(l));
    }
    if let Some(m) = mem_lim.filter(|m| *m > 0) {
        write("memory", "memory.limit_in_bytes", m);
    }
    Ok(cg)
}

/// Removes the pod's cgroup in every hierarchy (after its containers are
/// gone; the runtime removes theirs). Leftover child cgroups of exited
/// containers are removed first.
pub fn remove_pod(root: &str, uid: &str) {
    for qos in ["kubepods", "kubepods/burstable", "kubepods/besteffort"] {
        let cg = join(root, &format!("{qos}/pod{uid}"));
        let Ok(subs) = std::fs::read_dir(MOUNT) else { return };
        for s in subs.flatten() {
            let d = s.path().join(cg.trim_start_matches('/'));
            if d.exists() {
                remove_tree(&d);
            }
        }
    }
}

fn remove_tree(d: &Path) {
    if let Ok(children) = std::fs::read_dir(d) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&c.path());
            }
        }
    }
    let _ = std::fs::remove_dir(d);
}

/// Reads a cgroup file of the pod's container (tests and stats).
pub fn read(subsystem: &str, cgroup: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(subsystem_dir(subsystem, cgroup).join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_quota_as_upstream() {
        assert_eq!(milli_to_shares(0), 2);
        assert_eq!(milli_to_shares(1), 2);
        assert_eq!(milli_to_shares(100), 102);
        assert_eq!(milli_to_shares(1000), 1024);
        assert_eq!(milli_to_quota(250), 25_000);
        assert_eq!(milli_to_quota(5), 1000);
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "a", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}
        }))
        .unwrap();
        let r = container_resources(&c);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (512, 50_000, 100_000));
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
    }
}
