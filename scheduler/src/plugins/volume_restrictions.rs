//! VolumeRestrictions: a node cannot take a pod whose inline GCE PD, AWS
//! EBS, Ceph RBD or iSCSI volume is already mounted there in a conflicting
//! way; and a claim with the `ReadWriteOncePod` access mode can be used by
//! one pod only (preemption may free it).
//!
//! Upstream's `volumerestrictions` plugin (k8s v1.33).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Volume;

use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, PreFilterResult, Snapshot,
    Status,
};
use crate::plugins::volume_binding::{get_pvc, pvc_not_found};

pub const NAME: &str = "VolumeRestrictions";
pub const ERR_REASON_DISK_CONFLICT: &str = "node(s) had no available disk";
pub const ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";

#[derive(Default)]
pub struct VolumeRestrictions;

/// The pod's `ReadWriteOncePod` claims and how many references to them the
/// pods in the cluster hold.
#[derive(Clone, Debug, Default)]
struct PreFilterState {
    namespace: String,
    read_write_once_pod_claims: HashSet<String>,
    conflicting_refs: i64,
}

impl PreFilterState {
    fn refs_of(&self, pod: &PodInfo) -> i64 {
        if pod.namespace != self.namespace {
            return 0;
        }
        pod.spec()
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .filter(|c| self.read_write_once_pod_claims.contains(&c.claim_name))
            .count() as i64
    }
}

impl Plugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::PvcAdd,
            ClusterEvent::PvcUpdate,
        ]
    }
}

/// Whether the volume is of a kind whose mounts can conflict.
fn needs_restrictions_check(v: &Volume) -> bool {
    v.gce_persistent_disk.is_some() || v.aws_elastic_block_store.is_some() || v.rbd.is_some() || v.iscsi.is_some()
}

/// Whether `volume` conflicts with a volume of `existing` (upstream's
/// `isVolumeConflict`): the same GCE PD unless both read-only, the same EBS
/// volume, the same iSCSI IQN unless both read-only, the same RBD image
/// (a shared monitor, pool and image) unless both read-only.
fn is_volume_conflict(volume: &Volume, existing: &PodInfo) -> bool {
    for ev in existing.spec().volumes.iter().flatten() {
        if let (Some(d), Some(e)) = (&volume.gce_persistent_disk, &ev.gce_persistent_disk)
            && d.pd_name == e.pd_name
            && !(d.read_only.unwrap_or(false) && e.read_only.unwrap_or(false))
        {
            return true;
        }
        if let (Some(d), Some(e)) = (&volume.aws_elastic_block_store, &ev.aws_elastic_block_store)
            && d.volume_id == e.volume_id
        {
            return true;
        }
        if let (Some(d), Some(e)) = (&volume.iscsi, &ev.iscsi)
            && d.iqn == e.iqn
            && !(d.read_only.unwrap_or(false) && e.read_only.unwrap_or(false))
        {
            return true;
        }
        if let (Some(d), Some(e)) = (&volume.rbd, &ev.rbd) {
            let pool = |p: &Option<String>| p.clone().unwrap_or_else(|| "rbd".into());
            if d.monitors.iter().any(|m| e.monitors.contains(m))
                && pool(&d.pool) == pool(&e.pool)
                && d.image == e.image
                && !(d.read_only.unwrap_or(false) && e.read_only.unwrap_or(false))
            {
                return true;
            }
        }
    }
    false
}

fn satisfies_volume_conflicts(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.spec()
        .volumes
        .iter()
        .flatten()
        .filter(|v| needs_restrictions_check(v))
        .all(|v| !node.pods.iter().any(|ev| is_volume_conflict(v, ev)))
}

impl PreFilterPlugin for VolumeRestrictions {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> (PreFilterResult, Status) {
        let volumes = pod.spec().volumes.as_deref().unwrap_or(&[]);
        let needs_check = volumes.iter().any(needs_restrictions_check);
        let mut claims = HashSet::new();
        for source in volumes.iter().filter_map(|v| v.persistent_volume_claim.as_ref()) {
            let Some(pvc) = get_pvc(snapshot, &pod.namespace, &source.claim_name) else {
                return (
                    PreFilterResult::all(),
                    Status::unresolvable(pvc_not_found(&source.claim_name)),
                );
            };
            let rwop = pvc
                .spec
                .as_ref()
                .and_then(|s| s.access_modes.as_ref())
                .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"));
            if rwop {
                claims.insert(source.claim_name.clone());
            }
        }
        let mut s = PreFilterState {
            namespace: pod.namespace.clone(),
            read_write_once_pod_claims: claims,
            conflicting_refs: 0,
        };
        if !needs_check && s.read_write_once_pod_claims.is_empty() {
            // Nothing to check: no scan of the cluster's pods.
            return (PreFilterResult::all(), Status::skip());
        }
        // A claim is in use when any pod in the cluster mounts it; at most
        // one can, so each counts once.
        let used: HashSet<&str> = snapshot
            .pods()
            .filter(|(_, p)| p.namespace == pod.namespace)
            .flat_map(|(_, p)| {
                p.spec()
                    .volumes
                    .iter()
                    .flatten()
                    .filter_map(|v| v.persistent_volume_claim.as_ref())
                    .map(|c| c.claim_name.as_str())
            })
            .collect();
        s.conflicting_refs = s
            .read_write_once_pod_claims
            .iter()
            .filter(|c| used.contains(c.as_str()))
            .count() as i64;
        if !needs_check && s.conflicting_refs == 0 {
            return (PreFilterResult::all(), Status::skip());
        }
        state.write(s);
        (PreFilterResult::all(), Status::success())
    }

    fn add_pod(&self, state: &mut CycleState, _: &PodInfo, added: &PodInfo, _: &NodeInfo, _: &Snapshot) {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.conflicting_refs += s.refs_of(added);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, _: &PodInfo, removed: &PodInfo, _: &NodeInfo, _: &Snapshot) {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.conflicting_refs -= s.refs_of(removed);
        }
    }
}

impl FilterPlugin for VolumeRestrictions {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        if !satisfies_volume_conflicts(pod, node) {
            return Status::unschedulable(ERR_REASON_DISK_CONFLICT);
        }
        let Some(s) = state.read::<PreFilterState>() else {
            return Status::error("cannot read \"PreFilterVolumeRestrictions\" from cycleState");
        };
        if s.conflicting_refs > 0 {
            return Status::unschedulable(ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT);
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_with_pods, pod, storage_objects};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn pod_with_volume(v: Option<Value>) -> Value {
        let vols: Vec<Value> = v.into_iter().collect();
        json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": vols}})
    }

    /// PreFilter, then Filter when PreFilter succeeded.
    fn run(p: &PodInfo, n: &NodeInfo, snap: &Snapshot) -> (Status, Option<Status>) {
        let mut state = CycleState::default();
        let (_, pre) = VolumeRestrictions.pre_filter(&mut state, p, snap);
        let filter = pre.is_success().then(|| VolumeRestrictions.filter(&state, p, n, snap));
        (pre, filter)
    }

    /// Upstream's Test{GCE,AWS,RBD,ISCSI}DiskConflicts, for two volumes of
    /// one kind: the same one (`a`) and a different one (`b`).
    fn disk_conflict_cases(kind: &str, a: Value, b: Value) {
        let vol = |source: &Value| {
            let mut v = json!({"name": "vol"});
            v[kind] = source.clone();
            v
        };
        let disk = Status::unschedulable(ERR_REASON_DISK_CONFLICT);
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Option<Value>, Vec<Value>, Status, Option<Status>)> = vec![
            ("nothing", None, vec![], Status::skip(), None),
            (
                "one state",
                None,
                vec![pod_with_volume(Some(vol(&a)))],
                Status::skip(),
                None,
            ),
            (
                "same state",
                Some(vol(&a)),
                vec![pod_with_volume(Some(vol(&a)))],
                Status::success(),
                Some(disk),
            ),
            (
                "different state",
                Some(vol(&b)),
                vec![pod_with_volume(Some(vol(&a)))],
                Status::success(),
                Some(Status::success()),
            ),
            (
                "pod with a volume that doesn't have restrictions",
                Some(json!({"name": "volume with no restriction", "emptyDir": {}})),
                vec![],
                Status::skip(),
                None,
            ),
        ];
        for (name, v, existing, want_pre, want_filter) in cases {
            let n = node_with_pods(json!({"metadata": {"name": "node-1"}}), existing);
            let (pre, filter) = run(&pod(pod_with_volume(v)), &n, &Snapshot::default());
            assert_eq!(pre, want_pre, "{kind} {name}: PreFilter");
            assert_eq!(filter, want_filter, "{kind} {name}: Filter");
        }
    }

    #[test]
    fn volume_restrictions_gce_disk_conflicts() {
        disk_conflict_cases("gcePersistentDisk", json!({"pdName": "foo"}), json!({"pdName": "bar"}));
    }

    #[test]
    fn volume_restrictions_aws_disk_conflicts() {
        disk_conflict_cases(
            "awsElasticBlockStore",
            json!({"volumeID": "foo"}),
            json!({"volumeID": "bar"}),
        );
    }

    #[test]
    fn volume_restrictions_rbd_disk_conflicts() {
        disk_conflict_cases(
            "rbd",
            json!({"monitors": ["a", "b"], "pool": "foo", "image": "bar", "fsType": "ext4"}),
            json!({"monitors": ["c", "d"], "pool": "foo", "image": "bar", "fsType": "ext4"}),
        );
    }

    #[test]
    fn volume_restrictions_iscsi_disk_conflicts() {
        disk_conflict_cases(
            "iscsi",
            json!({"targetPortal": "127.0.0.1:3260", "iqn": "iqn.2016-12.server:storage.target01", "fsType": "ext4", "lun": 0}),
            json!({"targetPortal": "127.0.0.1:3260", "iqn": "iqn.2017-12.server:storage.target01", "fsType": "ext4", "lun": 0}),
        );
    }

    #[test]
    fn volume_restrictions_read_only_mounts_share() {
        let ro = json!({"name": "v", "gcePersistentDisk": {"pdName": "foo", "readOnly": true}});
        let rw = json!({"name": "v", "gcePersistentDisk": {"pdName": "foo"}});
        let n = node_with_pods(
            json!({"metadata": {"name": "node-1"}}),
            vec![pod_with_volume(Some(ro.clone()))],
        );
        let (_, filter) = run(&pod(pod_with_volume(Some(ro))), &n, &Snapshot::default());
        assert_eq!(filter, Some(Status::success()));
        let (_, filter) = run(&pod(pod_with_volume(Some(rw))), &n, &Snapshot::default());
        assert_eq!(filter, Some(Status::unschedulable(ERR_REASON_DISK_CONFLICT)));
        // EBS conflicts even read-only.
        let ebs = json!({"name": "v", "awsElasticBlockStore": {"volumeID": "foo", "readOnly": true}});
        let n = node_with_pods(
            json!({"metadata": {"name": "node-1"}}),
            vec![pod_with_volume(Some(ebs.clone()))],
        );
        let (_, filter) = run(&pod(pod_with_volume(Some(ebs))), &n, &Snapshot::default());
        assert_eq!(filter, Some(Status::unschedulable(ERR_REASON_DISK_CONFLICT)));
    }

    #[test]
    fn volume_restrictions_access_mode_conflicts() {
        // Upstream's TestAccessModeConflicts.
        let claim_pod = |name: &str, claims: &[&str]| {
            let vols: Vec<Value> = claims
                .iter()
                .enumerate()
                .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
                .collect();
            json!({"metadata": {"name": name, "uid": name}, "spec": {"nodeName": "node-1", "containers": [], "volumes": vols}})
        };
        let with_one = claim_pod("pod-with-one-pvc", &["claim-with-rwop-1"]);
        let with_two = claim_pod("pod-with-two-pvcs", &["claim-with-rwop-1", "claim-with-rwop-2"]);
        let one_conflict = claim_pod("pod-with-one-conflict", &["claim-with-rwop-1"]);
        let two_conflicts = claim_pod("pod-with-two-conflicts", &["claim-with-rwop-1", "claim-with-rwop-2"]);
        let rwx = claim_pod("pod-with-rwx", &["claim-with-rwx"]);
        let claim = |name: &str, mode: &str| json!({"metadata": {"name": name}, "spec": {"accessModes": [mode]}});
        let rwop1 = claim("claim-with-rwop-1", "ReadWriteOncePod");
        let rwop2 = claim("claim-with-rwop-2", "ReadWriteOncePod");
        let rwx_claim = claim("claim-with-rwx", "ReadWriteMany");
        let conflict = Status::unschedulable(ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT);

        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Value, Vec<Value>, Vec<Value>, Status, Option<Status>)> = vec![
            (
                "nothing",
                json!({"metadata": {"name": "p"}, "spec": {"containers": []}}),
                vec![],
                vec![],
                Status::skip(),
                None,
            ),
            (
                "failed to get PVC",
                with_one.clone(),
                vec![],
                vec![],
                Status::unresolvable(r#"persistentvolumeclaim "claim-with-rwop-1" not found"#),
                None,
            ),
            (
                "no access mode conflict",
                with_one.clone(),
                vec![rwx.clone()],
                vec![rwop1.clone(), rwx_claim.clone()],
                Status::skip(),
                None,
            ),
            (
                "access mode conflict, unschedulable",
                one_conflict,
                vec![with_one.clone(), rwx.clone()],
                vec![rwop1.clone(), rwx_claim.clone()],
                Status::success(),
                Some(conflict.clone()),
            ),
            (
                "two conflicts, unschedulable",
                two_conflicts,
                vec![with_two, rwx.clone()],
                vec![rwop1, rwop2, rwx_claim],
                Status::success(),
                Some(conflict),
            ),
        ];
        for (name, p, existing, pvcs, want_pre, want_filter) in cases {
            let n = node_with_pods(json!({"metadata": {"name": "node-1"}}), existing);
            let mut s = Snapshot::new(vec![n.clone()]);
            s.objects = Arc::new(storage_objects(pvcs, vec![], vec![], vec![]));
            let (pre, filter) = run(&pod(p), &n, &s);
            assert_eq!(pre, want_pre, "{name}: PreFilter");
            assert_eq!(filter, want_filter, "{name}: Filter");
        }
    }

    #[test]
    fn volume_restrictions_preemption_frees_the_claim() {
        let user = json!({"metadata": {"name": "user", "uid": "u"}, "spec": {"nodeName": "node-1", "containers": [],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "rwop"}}]}});
        let n = node_with_pods(json!({"metadata": {"name": "node-1"}}), vec![user.clone()]);
        let mut s = Snapshot::new(vec![n.clone()]);
        s.objects = Arc::new(storage_objects(
            vec![json!({"metadata": {"name": "rwop"}, "spec": {"accessModes": ["ReadWriteOncePod"]}})],
            vec![],
            vec![],
            vec![],
        ));
        let p = pod(json!({"metadata": {"name": "new"}, "spec": {"containers": [],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "rwop"}}]}}));
        let mut state = CycleState::default();
        let (_, pre) = VolumeRestrictions.pre_filter(&mut state, &p, &s);
        assert!(pre.is_success());
        assert!(VolumeRestrictions.filter(&state, &p, &n, &s).is_rejected());
        let victim = pod(user);
        VolumeRestrictions.remove_pod(&mut state, &p, &victim, &n, &s);
        assert!(VolumeRestrictions.filter(&state, &p, &n, &s).is_success());
        VolumeRestrictions.add_pod(&mut state, &p, &victim, &n, &s);
        assert!(VolumeRestrictions.filter(&state, &p, &n, &s).is_rejected());
    }
}
