//! VolumeZone: the zone and region labels of the volumes a pod's bound
//! claims use must match the node's (a volume's zone label may name several
//! zones, `a__b`); a node without topology labels fits any volume. Unbound
//! `WaitForFirstConsumer` claims are VolumeBinding's concern.
//!
//! Upstream's `volumezone` plugin (k8s v1.33).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::PersistentVolume;

use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, PreFilterResult, Snapshot,
    Status,
};
use crate::plugins::volume_binding::{
    MODE_WAIT_FOR_FIRST_CONSUMER, claim_class, get_pvc, pv_not_found, pvc_not_found, storage_class_not_found,
};

pub const NAME: &str = "VolumeZone";
pub const ERR_REASON_CONFLICT: &str = "node(s) had no available volume zone";

pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
pub const LABEL_BETA_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
pub const LABEL_BETA_REGION: &str = "failure-domain.beta.kubernetes.io/region";

/// The labels looked at, in upstream's order.
const TOPOLOGY_LABELS: [&str; 4] = [LABEL_BETA_ZONE, LABEL_BETA_REGION, LABEL_ZONE, LABEL_REGION];

/// The GA label a beta one stands for.
fn to_ga_label(label: &str) -> &str {
    match label {
        LABEL_BETA_REGION => LABEL_REGION,
        LABEL_BETA_ZONE => LABEL_ZONE,
        other => other,
    }
}

#[derive(Default)]
pub struct VolumeZone;

/// One topology label of a pod's volume: its key and the values allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PvTopology {
    key: &'static str,
    values: BTreeSet<String>,
}

#[derive(Clone, Debug, Default)]
struct StateData {
    topologies: Vec<PvTopology>,
}

impl Plugin for VolumeZone {
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
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::PvAdd,
            ClusterEvent::PvUpdate,
            ClusterEvent::PvcAdd,
            ClusterEvent::PvcUpdate,
            ClusterEvent::StorageClassAdd,
        ]
    }
}

/// A multi-zone label value (`a__b`) as a set; None when an element is
/// empty (upstream's `LabelZonesToSet`; such labels are ignored).
fn label_zones(value: &str) -> Option<BTreeSet<String>> {
    value
        .split("__")
        .map(|z| {
            let z = z.trim();
            (!z.is_empty()).then(|| z.to_string())
        })
        .collect()
}

fn pv_topologies(pv: &PersistentVolume) -> Vec<PvTopology> {
    let Some(labels) = pv.metadata.labels.as_ref() else {
        return Vec::new();
    };
    TOPOLOGY_LABELS
        .iter()
        .filter_map(|key| {
            let values = label_zones(labels.get(*key)?)?;
            Some(PvTopology { key, values })
        })
        .collect()
}

/// The topologies of the volumes the pod's bound claims use (upstream's
/// `getPVbyPod`).
fn pod_topologies(pod: &PodInfo, snapshot: &Snapshot) -> Result<Vec<PvTopology>, Status> {
    let mut out = Vec::new();
    for v in pod.spec().volumes.iter().flatten() {
        let Some(source) = v.persistent_volume_claim.as_ref() else {
            continue;
        };
        let name = source.claim_name.as_str();
        if name.is_empty() {
            return Err(Status::unresolvable("PersistentVolumeClaim had no name"));
        }
        let Some(pvc) = get_pvc(snapshot, &pod.namespace, name) else {
            return Err(Status::unresolvable(pvc_not_found(name)));
        };
        let pv_name = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
        if pv_name.is_empty() {
            let class = claim_class(pvc);
            if class.is_empty() {
                return Err(Status::unresolvable(
                    "PersistentVolumeClaim had no pv name and storageClass name",
                ));
            }
            let Some(sc) = snapshot.objects.storage_classes.get(class) else {
                return Err(Status::unresolvable(storage_class_not_found(class)));
            };
            match sc.volume_binding_mode.as_deref() {
                None => {
                    return Err(Status::unresolvable(format!(
                        "VolumeBindingMode not set for StorageClass \"{class}\""
                    )));
                }
                // Not bound yet: VolumeBinding decides.
                Some(MODE_WAIT_FOR_FIRST_CONSUMER) => continue,
                Some(_) => return Err(Status::unresolvable("PersistentVolume had no name")),
            }
        }
        let Some(pv) = snapshot.objects.pvs.get(pv_name) else {
            return Err(Status::unresolvable(pv_not_found(pv_name)));
        };
        out.extend(pv_topologies(pv));
    }
    Ok(out)
}

impl PreFilterPlugin for VolumeZone {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> (PreFilterResult, Status) {
        match pod_topologies(pod, snapshot) {
            Err(st) => (PreFilterResult::all(), st),
            Ok(t) if t.is_empty() => (PreFilterResult::all(), Status::skip()),
            Ok(topologies) => {
                state.write(StateData { topologies });
                (PreFilterResult::all(), Status::success())
            }
        }
    }
}

impl FilterPlugin for VolumeZone {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &Snapshot) -> Status {
        if pod.spec().volumes.as_ref().is_none_or(|v| v.is_empty()) {
            return Status::success();
        }
        let computed;
        let topologies = match state.read::<StateData>() {
            Some(s) => &s.topologies,
            None => match pod_topologies(pod, snapshot) {
                Ok(t) => {
                    computed = t;
                    &computed
                }
                Err(st) => return st,
            },
        };
        // A node without topology labels (a single-zone cluster) fits.
        if !TOPOLOGY_LABELS.iter().any(|l| node.label(l).is_some()) {
            return Status::success();
        }
        for t in topologies {
            let value = node.label(t.key).or_else(|| node.label(to_ga_label(t.key)));
            if !value.is_some_and(|v| t.values.contains(v)) {
                return Status::unresolvable(ERR_REASON_CONFLICT);
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod, storage_objects};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn pv(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}})
    }
    fn pvc(name: &str, volume: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"volumeName": volume}})
    }
    fn pod_with(claim: Option<&str>) -> PodInfo {
        let vols: Vec<Value> = claim
            .into_iter()
            .map(|c| json!({"name": "v", "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        pod(json!({"metadata": {"name": "pod_1"}, "spec": {"containers": [], "volumes": vols}}))
    }
    fn host(labels: Value) -> NodeInfo {
        node(json!({"metadata": {"name": "host1", "labels": labels}}))
    }

    /// PreFilter's status, then Filter's (run even after a rejecting or
    /// skipping PreFilter, as upstream's table does: Filter falls back to
    /// computing the topologies itself).
    fn run(snap: &Snapshot, p: &PodInfo, n: &NodeInfo) -> (Status, Status) {
        let mut state = CycleState::default();
        let (_, pre) = VolumeZone.pre_filter(&mut state, p, snap);
        (pre, VolumeZone.filter(&state, p, n, snap))
    }

    fn snapshot(pvcs: Vec<Value>, pvs: Vec<Value>, classes: Vec<Value>) -> Snapshot {
        let mut s = Snapshot::default();
        s.objects = Arc::new(storage_objects(pvcs, pvs, classes, vec![]));
        s
    }

    fn conflict() -> Status {
        Status::unresolvable(ERR_REASON_CONFLICT)
    }

    #[test]
    fn volume_zone_single_zone() {
        // Upstream's TestSingleZone.
        let s = snapshot(
            vec![
                pvc("PVC_1", "Vol_1"),
                pvc("PVC_2", "Vol_2"),
                pvc("PVC_3", "Vol_3"),
                pvc("PVC_4", "Vol_not_exist"),
                pvc("PVC_Stable_1", "Vol_Stable_1"),
                pvc("PVC_Stable_2", "Vol_Stable_2"),
                pvc("PVC_Stable_3", "Vol_Stable_3"),
            ],
            vec![
                pv("Vol_1", json!({LABEL_BETA_ZONE: "us-west1-a"})),
                pv("Vol_2", json!({LABEL_BETA_REGION: "us-west1", "uselessLabel": "none"})),
                pv("Vol_3", json!({LABEL_BETA_REGION: "us-west1"})),
                pv("Vol_Stable_1", json!({LABEL_ZONE: "us-west1-a"})),
                pv(
                    "Vol_Stable_2",
                    json!({LABEL_REGION: "us-west1", "uselessLabel": "none"}),
                ),
                pv(
                    "Vol_Stable_3",
                    json!({LABEL_ZONE: "us-west1-a", LABEL_REGION: "us-west1-a"}),
                ),
            ],
            vec![],
        );
        let ok = Status::success;
        let cases: Vec<(&str, Option<&str>, Value, Status, Status)> = vec![
            (
                "pod without volume",
                None,
                json!({LABEL_BETA_ZONE: "us-west1-a"}),
                Status::skip(),
                ok(),
            ),
            ("node without labels", Some("PVC_1"), json!({}), ok(), ok()),
            (
                "beta zone label matched",
                Some("PVC_1"),
                json!({LABEL_BETA_ZONE: "us-west1-a", "uselessLabel": "none"}),
                ok(),
                ok(),
            ),
            (
                "beta region label matched",
                Some("PVC_2"),
                json!({LABEL_BETA_REGION: "us-west1", "uselessLabel": "none"}),
                ok(),
                ok(),
            ),
            (
                "beta region label doesn't match",
                Some("PVC_2"),
                json!({LABEL_BETA_REGION: "no_us-west1", "uselessLabel": "none"}),
                ok(),
                conflict(),
            ),
            (
                "beta zone label doesn't match",
                Some("PVC_1"),
                json!({LABEL_BETA_ZONE: "no_us-west1-a", "uselessLabel": "none"}),
                ok(),
                conflict(),
            ),
            (
                "zone label matched",
                Some("PVC_Stable_1"),
                json!({LABEL_ZONE: "us-west1-a", "uselessLabel": "none"}),
                ok(),
                ok(),
            ),
            (
                "region label matched",
                Some("PVC_Stable_2"),
                json!({LABEL_REGION: "us-west1", "uselessLabel": "none"}),
                ok(),
                ok(),
            ),
            (
                "region label doesn't match",
                Some("PVC_Stable_2"),
                json!({LABEL_REGION: "no_us-west1", "uselessLabel": "none"}),
                ok(),
                conflict(),
            ),
            (
                "zone label doesn't match",
                Some("PVC_Stable_1"),
                json!({LABEL_ZONE: "no_us-west1-a", "uselessLabel": "none"}),
                ok(),
                conflict(),
            ),
            (
                "pv with zone and region, node with only zone",
                Some("PVC_Stable_3"),
                json!({LABEL_ZONE: "us-west1-a"}),
                ok(),
                conflict(),
            ),
            (
                "pv with zone,node with beta zone",
                Some("PVC_Stable_1"),
                json!({LABEL_BETA_ZONE: "us-west1-a"}),
                ok(),
                conflict(),
            ),
            (
                "pv with beta label,node with ga label, matched",
                Some("PVC_1"),
                json!({LABEL_ZONE: "us-west1-a"}),
                ok(),
                ok(),
            ),
            (
                "pv with beta label,node with ga label, don't match",
                Some("PVC_1"),
                json!({LABEL_ZONE: "us-west1-b"}),
                ok(),
                conflict(),
            ),
            (
                "volume missing",
                Some("PVC_4"),
                json!({LABEL_ZONE: "us-west1-a"}),
                Status::unresolvable(r#"persistentvolume "Vol_not_exist" not found"#),
                Status::unresolvable(r#"persistentvolume "Vol_not_exist" not found"#),
            ),
        ];
        for (name, claim, labels, want_pre, want_filter) in cases {
            let (pre, filter) = run(&s, &pod_with(claim), &host(labels));
            assert_eq!(pre, want_pre, "{name}: PreFilter");
            assert_eq!(filter, want_filter, "{name}: Filter");
        }
    }

    #[test]
    fn volume_zone_multi_zone() {
        // Upstream's TestMultiZone.
        let s = snapshot(
            vec![
                pvc("PVC_1", "Vol_1"),
                pvc("PVC_2", "Vol_2"),
                pvc("PVC_3", "Vol_3"),
                pvc("PVC_Stable_1", "Vol_Stable_1"),
                pvc("PVC_Stable_2", "Vol_Stable_2"),
            ],
            vec![
                pv("Vol_1", json!({LABEL_BETA_ZONE: "us-west1-a"})),
                pv("Vol_2", json!({LABEL_BETA_ZONE: "us-west1-b", "uselessLabel": "none"})),
                pv("Vol_3", json!({LABEL_BETA_ZONE: "us-west1-c__us-west1-a"})),
                pv("Vol_Stable_1", json!({LABEL_ZONE: "us-west1-a"})),
                pv("Vol_Stable_2", json!({LABEL_ZONE: "us-west1-c__us-west1-a"})),
            ],
            vec![],
        );
        let cases: Vec<(&str, &str, Value, Status)> = vec![
            ("node without labels", "PVC_3", json!({}), Status::success()),
            (
                "beta zone label matched",
                "PVC_3",
                json!({LABEL_BETA_ZONE: "us-west1-a", "uselessLabel": "none"}),
                Status::success(),
            ),
            (
                "beta zone label doesn't match",
                "PVC_1",
                json!({LABEL_BETA_ZONE: "us-west1-b", "uselessLabel": "none"}),
                conflict(),
            ),
            (
                "zone label matched",
                "PVC_Stable_2",
                json!({LABEL_ZONE: "us-west1-a", "uselessLabel": "none"}),
                Status::success(),
            ),
            (
                "zone label doesn't match",
                "PVC_Stable_1",
                json!({LABEL_ZONE: "us-west1-b", "uselessLabel": "none"}),
                conflict(),
            ),
        ];
        for (name, claim, labels, want) in cases {
            let (pre, filter) = run(&s, &pod_with(Some(claim)), &host(labels));
            assert_eq!(pre, Status::success(), "{name}: PreFilter");
            assert_eq!(filter, want, "{name}: Filter");
        }
    }

    #[test]
    fn volume_zone_with_binding() {
        // Upstream's TestWithBinding.
        let s = snapshot(
            vec![
                pvc("PVC_1", "Vol_1"),
                json!({"metadata": {"name": "PVC_NoSC"}, "spec": {"storageClassName": "Class_0"}}),
                json!({"metadata": {"name": "PVC_EmptySC"}}),
                json!({"metadata": {"name": "PVC_WaitSC"}, "spec": {"storageClassName": "Class_Wait"}}),
                json!({"metadata": {"name": "PVC_ImmediateSC"}, "spec": {"storageClassName": "Class_Immediate"}}),
            ],
            vec![pv("Vol_1", json!({LABEL_BETA_ZONE: "us-west1-a"}))],
            vec![
                json!({"metadata": {"name": "Class_Immediate"}, "provisioner": ""}),
                json!({"metadata": {"name": "Class_Wait"}, "provisioner": "", "volumeBindingMode": "WaitForFirstConsumer"}),
            ],
        );
        let n = host(json!({LABEL_BETA_ZONE: "us-west1-a", "uselessLabel": "none"}));
        let both = |st: Status| (st.clone(), st);
        let cases: Vec<(&str, &str, (Status, Status))> = vec![
            (
                "label zone failure domain matched",
                "PVC_1",
                (Status::success(), Status::success()),
            ),
            (
                "unbound volume empty storage class",
                "PVC_EmptySC",
                both(Status::unresolvable(
                    "PersistentVolumeClaim had no pv name and storageClass name",
                )),
            ),
            (
                "unbound volume no storage class",
                "PVC_NoSC",
                both(Status::unresolvable(
                    r#"storageclass.storage.k8s.io "Class_0" not found"#,
                )),
            ),
            (
                "unbound volume immediate binding mode",
                "PVC_ImmediateSC",
                both(Status::unresolvable(
                    r#"VolumeBindingMode not set for StorageClass "Class_Immediate""#,
                )),
            ),
            (
                "unbound volume wait binding mode",
                "PVC_WaitSC",
                (Status::skip(), Status::success()),
            ),
            (
                "claim missing",
                "PVC_gone",
                both(Status::unresolvable(r#"persistentvolumeclaim "PVC_gone" not found"#)),
            ),
        ];
        for (name, claim, want) in cases {
            assert_eq!(run(&s, &pod_with(Some(claim)), &n), want, "{name}");
        }
        // An immediate class with its mode set: the claim should be bound.
        let s = snapshot(
            vec![json!({"metadata": {"name": "PVC_ImmediateSC"}, "spec": {"storageClassName": "Class_Immediate"}})],
            vec![],
            vec![json!({"metadata": {"name": "Class_Immediate"}, "provisioner": "", "volumeBindingMode": "Immediate"})],
        );
        let (pre, _) = run(&s, &pod_with(Some("PVC_ImmediateSC")), &n);
        assert_eq!(pre, Status::unresolvable("PersistentVolume had no name"));
    }

    #[test]
    fn volume_zone_label_sets() {
        assert_eq!(
            label_zones("a__b"),
            Some(["a".to_string(), "b".to_string()].into_iter().collect())
        );
        assert_eq!(label_zones(" a "), Some(["a".to_string()].into_iter().collect()));
        assert_eq!(label_zones("a____b"), None);
        assert_eq!(label_zones(""), None);
    }
}
