//! emptyDir volumes: a directory under the pod (mode 0777), or a tmpfs for
//! `medium: Memory` sized as upstream's `calculateEmptyDirMemorySize`
//! (`pkg/volume/emptydir/empty_dir.go`): the node's allocatable memory,
//! lowered to the pod's memory limit and then to `sizeLimit` when those are
//! smaller.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use apimachinery::quantity::Quantity as Q;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::mounts;

/// Where an emptyDir lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    Disk,
    Memory,
}

impl Medium {
    pub fn parse(medium: Option<&str>) -> Result<Self, String> {
        match medium.unwrap_or_default() {
            "" => Ok(Self::Disk),
            "Memory" => Ok(Self::Memory),
            other => Err(format!("emptyDir medium {other:?} is not supported by this kubelet")),
        }
    }
}

fn bytes(q: &Quantity) -> Option<u64> {
    Q::parse(&q.0)
        .ok()
        .map(|q| q.value())
        .and_then(|v| u64::try_from(v).ok())
}

/// The size of a memory-backed emptyDir: `None` leaves the kernel default.
pub fn memory_size(
    size_limit: Option<&Quantity>,
    node_allocatable_memory: Option<&Quantity>,
    pod: &Pod,
) -> Option<u64> {
    let mut size = node_allocatable_memory.and_then(bytes);
    if let Some(pod_limit) = pod_memory_limit(pod).filter(|l| *l > 0)
        && size.is_none_or(|s| pod_limit <= s)
    {
        size = Some(pod_limit);
    }
    if let Some(limit) = size_limit.and_then(bytes).filter(|l| *l > 0)
        && size.is_none_or(|s| limit <= s)
    {
        size = Some(limit);
    }
    size
}

/// The pod's memory limit when every container has one (as the pod cgroup):
/// the larger of the app containers plus sidecars and the largest init
/// container, plus the pod overhead.
pub fn pod_memory_limit(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| -> Option<u64> {
        c.resources
            .as_ref()?
            .limits
            .as_ref()?
            .get("memory")
            .and_then(bytes)
            .filter(|v| *v > 0)
    };
    let mut sum = 0u64;
    for c in &spec.containers {
        sum = sum.saturating_add(limit(c)?);
    }
    let mut init_max = 0u64;
    for c in spec.init_containers.iter().flatten() {
        let l = limit(c)?;
        if c.restart_policy.as_deref() == Some("Always") {
            sum = sum.saturating_add(l);
        } else {
            init_max = init_max.max(l);
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get("memory"))
        .and_then(bytes)
        .unwrap_or(0);
    Some(sum.max(init_max).saturating_add(overhead))
}

/// Creates the directory (0777 whatever the umask) and, for memory, mounts
/// the tmpfs unless already mounted. Idempotent.
pub fn set_up(dir: &Path, medium: Medium, size: Option<u64>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if medium == Medium::Disk && mode != 0o777 || medium == Medium::Memory && mounts::mounted_at(dir)?.is_none() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    if medium == Medium::Memory {
        mounts::mount_tmpfs(dir, size)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value, init: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": containers, "initContainers": init}}))
        .expect("pod")
    }

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn media() {
        assert_eq!(Medium::parse(None), Ok(Medium::Disk));
        assert_eq!(Medium::parse(Some("")), Ok(Medium::Disk));
        assert_eq!(Medium::parse(Some("Memory")), Ok(Medium::Memory));
        assert!(Medium::parse(Some("HugePages")).is_err());
    }

    #[test]
    fn memory_sizes() {
        let limited = pod(
            json!([{"name": "a", "resources": {"limits": {"memory": "1Gi"}}},
                   {"name": "b", "resources": {"limits": {"memory": "512Mi"}}}]),
            json!([{"name": "i", "resources": {"limits": {"memory": "2Gi"}}}]),
        );
        let unlimited = pod(
            json!([{"name": "a"}, {"name": "b", "resources": {"limits": {"memory": "1Gi"}}}]),
            json!([]),
        );
        let sidecar = pod(
            json!([{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]),
            json!([{"name": "s", "restartPolicy": "Always", "resources": {"limits": {"memory": "1Gi"}}}]),
        );
        let gi = 1u64 << 30;
        let cases = [
            (
                "no limits: node allocatable",
                None,
                Some("8Gi"),
                &unlimited,
                Some(8 * gi),
            ),
            (
                "sizeLimit below allocatable",
                Some("64Mi"),
                Some("8Gi"),
                &unlimited,
                Some(64 << 20),
            ),
            (
                "sizeLimit above allocatable: allocatable",
                Some("16Gi"),
                Some("8Gi"),
                &unlimited,
                Some(8 * gi),
            ),
            (
                "pod limit: max(init 2Gi, 1.5Gi)",
                None,
                Some("8Gi"),
                &limited,
                Some(2 * gi),
            ),
            (
                "sizeLimit below pod limit",
                Some("1Gi"),
                Some("8Gi"),
                &limited,
                Some(gi),
            ),
            ("sidecars add up", None, Some("8Gi"), &sidecar, Some(2 * gi)),
            ("nothing known: kernel default", None, None, &unlimited, None),
            (
                "zero sizeLimit ignored",
                Some("0"),
                Some("8Gi"),
                &unlimited,
                Some(8 * gi),
            ),
        ];
        for (why, limit, alloc, p, want) in cases {
            let got = memory_size(limit.map(q).as_ref(), alloc.map(q).as_ref(), p);
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn disk_dir_is_world_writable() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("v");
        set_up(&dir, Medium::Disk, None).expect("set up");
        assert_eq!(
            std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
            0o777
        );
        std::fs::write(dir.join("f"), "x").expect("write");
        set_up(&dir, Medium::Disk, None).expect("again");
        assert!(dir.join("f").exists(), "a second set-up keeps the content");
    }
}
