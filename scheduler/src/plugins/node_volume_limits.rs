//! NodeVolumeLimits: a node's CSI drivers attach at most as many volumes as
//! its CSINode allows (`spec.drivers[].allocatable.count`). The CSI volumes
//! of the pods on the node and of the new pod are counted per driver, each
//! volume (driver and volume handle) once; a claim not yet bound counts
//! under its class's provisioner.
//!
//! Upstream's `nodevolumelimits` CSI plugin (k8s v1.33), without CSI
//! migration of in-tree volumes (in-tree volumes are not counted).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, PreFilterResult, Snapshot,
    Status,
};
use crate::plugins::volume_binding::{claim_class, get_pvc, pod_claims, pvc_not_found, volume_is_for_pod};

pub const NAME: &str = "NodeVolumeLimits";
pub const ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED: &str = "node(s) exceed max volume count";

/// In-tree provisioners that migrate to CSI drivers: without migration they
/// are not counted here.
const MIGRATABLE_IN_TREE: &[&str] = &[
    "kubernetes.io/aws-ebs",
    "kubernetes.io/gce-pd",
    "kubernetes.io/azure-disk",
    "kubernetes.io/azure-file",
    "kubernetes.io/cinder",
    "kubernetes.io/vsphere-volume",
    "kubernetes.io/portworx-volume",
];

/// Volume handles of claims not bound yet get this prefix (upstream uses a
/// random one), so that they never collide with real handles.
const UNBOUND_HANDLE_PREFIX: &str = "\u{0}unbound-claim";

#[derive(Default)]
pub struct NodeVolumeLimits;

impl Plugin for NodeVolumeLimits {
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
            ClusterEvent::CsiNodeChange,
            ClusterEvent::PvcAdd,
            ClusterEvent::PvAdd,
            ClusterEvent::NodeAdd,
        ]
    }
}

/// The CSI driver and volume handle a claim's volume has (upstream's
/// `getCSIDriverInfo`): the bound volume's, else (unbound, or its volume
/// gone) the class's provisioner with a handle made from the claim.
fn csi_driver_info(pvc: &PersistentVolumeClaim, snapshot: &Snapshot) -> Option<(String, String)> {
    let pv_name = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
    if let Some(pv) = (!pv_name.is_empty())
        .then(|| snapshot.objects.pvs.get(pv_name))
        .flatten()
    {
        let csi = pv.spec.as_ref().and_then(|s| s.csi.as_ref())?;
        return Some((csi.driver.clone(), csi.volume_handle.clone()));
    }
    // Unbound: count under the class's provisioner. A claim without a class
    // (or with an unknown one) binds immediately, so it is bound before it
    // gets here.
    let class = claim_class(pvc);
    if class.is_empty() {
        return None;
    }
    let sc = snapshot.objects.storage_classes.get(class)?;
    if MIGRATABLE_IN_TREE.contains(&sc.provisioner.as_str()) {
        return None;
    }
    let handle = format!(
        "{UNBOUND_HANDLE_PREFIX}-{}/{}",
        pvc.metadata.namespace.as_deref().unwrap_or(""),
        pvc.metadata.name.as_deref().unwrap_or("")
    );
    Some((sc.provisioner.clone(), handle))
}

/// Why a pod's volumes cannot be counted.
enum CountError {
    /// The new pod's claim is missing: it waits for it.
    NotFound(String),
    Other(String),
}

/// Adds the pod's CSI volumes (`driver/handle` → driver) to `out`
/// (upstream's `filterAttachableVolumes`). A missing claim is an error for
/// the new pod and ignored for pods already on the node.
fn attachable_volumes(
    pod: &PodInfo,
    snapshot: &Snapshot,
    new_pod: bool,
    out: &mut HashMap<String, String>,
) -> Result<(), CountError> {
    for c in pod_claims(pod) {
        if c.name.is_empty() {
            return Err(CountError::Other("PersistentVolumeClaim had no name".into()));
        }
        let Some(pvc) = get_pvc(snapshot, &pod.namespace, &c.name) else {
            if new_pod {
                return Err(CountError::NotFound(format!(
                    "looking up PVC {}/{}: {}",
                    pod.namespace,
                    c.name,
                    pvc_not_found(&c.name)
                )));
            }
            continue;
        };
        if c.ephemeral {
            volume_is_for_pod(pod, pvc).map_err(CountError::Other)?;
        }
        if let Some((driver, handle)) = csi_driver_info(pvc, snapshot)
            && !driver.is_empty()
            && !handle.is_empty()
        {
            out.insert(format!("{driver}/{handle}"), driver);
        }
    }
    Ok(())
}

/// The node's per-driver limits from its CSINode.
fn volume_limits(node: &NodeInfo, snapshot: &Snapshot) -> BTreeMap<String, i64> {
    snapshot
        .objects
        .csi_nodes
        .get(&node.name)
        .map(|n| {
            n.spec
                .drivers
                .iter()
                .filter_map(|d| Some((d.name.clone(), d.allocatable.as_ref()?.count? as i64)))
                .collect()
        })
        .unwrap_or_default()
}

impl PreFilterPlugin for NodeVolumeLimits {
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot) -> (PreFilterResult, Status) {
        if pod_claims(pod).is_empty() {
            (PreFilterResult::all(), Status::skip())
        } else {
            (PreFilterResult::all(), Status::success())
        }
    }
}

impl FilterPlugin for NodeVolumeLimits {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &Snapshot) -> Status {
        if pod.spec().volumes.as_ref().is_none_or(|v| v.is_empty()) {
            return Status::success();
        }
        let mut new_volumes = HashMap::new();
        match attachable_volumes(pod, snapshot, true, &mut new_volumes) {
            Ok(()) => {}
            Err(CountError::NotFound(m)) => return Status::unresolvable(m),
            Err(CountError::Other(m)) => return Status::error(m),
        }
        if new_volumes.is_empty() {
            return Status::success();
        }
        let limits = volume_limits(node, snapshot);
        if limits.is_empty() {
            return Status::success();
        }
        let mut attached = HashMap::new();
        for existing in &node.pods {
            match attachable_volumes(existing, snapshot, false, &mut attached) {
                Ok(()) => {}
                Err(CountError::NotFound(m) | CountError::Other(m)) => return Status::error(m),
            }
        }
        let mut attached_count: HashMap<&str, i64> = HashMap::new();
        for (name, driver) in &attached {
            // A volume the node already has is not new.
            new_volumes.remove(name);
            *attached_count.entry(driver).or_default() += 1;
        }
        let mut new_count: HashMap<&str, i64> = HashMap::new();
        for driver in new_volumes.values() {
            *new_count.entry(driver).or_default() += 1;
        }
        for (driver, count) in new_count {
            if let Some(limit) = limits.get(driver)
                && attached_count.get(driver).copied().unwrap_or(0) + count > *limit
            {
                return Status::unschedulable(ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED);
            }
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

    const EBS: &str = "ebs.csi.aws.com";
    const GCE: &str = "pd.csi.storage.gke.io";
    const NODE: &str = "node-for-max-pd-test-1";

    fn claims_pod(claims: &[&str]) -> Value {
        let vols: Vec<Value> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        json!({"metadata": {"name": format!("pod-{}", claims.join("-"))}, "spec": {"containers": [], "volumes": vols}})
    }

    /// Upstream's fixtures: for each driver, claims `csi-<driver>-<0..4>`
    /// bound to CSI volumes of the same name; `csi-4` unbound with the class
    /// `csi-sc` (provisioned by the first driver); `csi-5` without a class;
    /// `csi-6` bound to a volume that does not exist.
    fn objects(drivers: &[&str], extra_claims: Vec<Value>) -> crate::framework::snapshot::ClusterObjects {
        let mut pvcs = Vec::new();
        let mut pvs = Vec::new();
        for d in drivers {
            for j in 0..4 {
                let n = format!("csi-{d}-{j}");
                pvcs.push(json!({"metadata": {"name": n}, "spec": {"volumeName": n}}));
                pvs.push(json!({"metadata": {"name": n}, "spec": {"csi": {"driver": d, "volumeHandle": n}}}));
            }
        }
        pvcs.push(json!({"metadata": {"name": "csi-4"}, "spec": {"storageClassName": "csi-sc"}}));
        pvcs.push(json!({"metadata": {"name": "csi-5"}, "spec": {}}));
        pvcs.push(json!({"metadata": {"name": "csi-6"}, "spec": {"storageClassName": "csi-sc", "volumeName": "missing-in-action"}}));
        pvcs.extend(extra_claims);
        let classes = vec![json!({"metadata": {"name": "csi-sc"}, "provisioner": drivers[0]})];
        storage_objects(pvcs, pvs, classes, vec![])
    }

    /// The node's CSINode: "csinode" (with limits), "csinode-with-no-limit"
    /// or none.
    fn csi_node(source: &str, limit: i32, drivers: &[&str]) -> Option<Value> {
        let with_limit = match source {
            "csinode" => true,
            "csinode-with-no-limit" => false,
            _ => return None,
        };
        let ds: Vec<Value> = drivers
            .iter()
            .map(|d| {
                let mut v = json!({"name": d, "nodeID": NODE});
                if with_limit {
                    v["allocatable"] = json!({"count": limit});
                }
                v
            })
            .collect();
        Some(json!({"metadata": {"name": NODE}, "spec": {"drivers": ds}}))
    }

    struct Case {
        name: &'static str,
        new_pod: Value,
        existing: Vec<Value>,
        extra_claims: Vec<Value>,
        max: i32,
        drivers: Vec<&'static str>,
        source: &'static str,
        want_pre: Status,
        want: Status,
    }

    fn case(name: &'static str, new_pod: Value, existing: Vec<Value>, max: i32, want: Status) -> Case {
        Case {
            name,
            new_pod,
            existing,
            extra_claims: vec![],
            max,
            drivers: vec![EBS],
            source: "csinode",
            want_pre: Status::success(),
            want,
        }
    }

    fn check(c: Case) {
        let n = node_with_pods(json!({"metadata": {"name": NODE}}), c.existing);
        let mut s = Snapshot::new(vec![n.clone()]);
        let mut o = objects(&c.drivers, c.extra_claims);
        if let Some(cn) = csi_node(c.source, c.max, &c.drivers) {
            let cn: k8s_openapi::api::storage::v1::CSINode = serde_json::from_value(cn).unwrap();
            o.csi_nodes.insert(NODE.into(), Arc::new(cn));
        }
        s.objects = Arc::new(o);
        let p = pod(c.new_pod);
        let mut state = CycleState::default();
        let (_, pre) = NodeVolumeLimits.pre_filter(&mut state, &p, &s);
        assert_eq!(pre, c.want_pre, "{}: PreFilter", c.name);
        if !pre.is_skip() {
            assert_eq!(
                NodeVolumeLimits.filter(&state, &p, &n, &s),
                c.want,
                "{}: Filter",
                c.name
            );
        }
    }

    #[test]
    fn node_volume_limits_csi_limits() {
        // Upstream's TestCSILimits (the CSI cases; in-tree migration and
        // VolumeAttachment counting are not implemented).
        let exceeded = || Status::unschedulable(ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED);
        let ok = Status::success;
        let ebs = |j: u32| format!("csi-{EBS}-{j}");
        let running = claims_pod(&[&ebs(3)]);
        let one = claims_pod(&[&ebs(0)]);
        let two = claims_pod(&[&ebs(1), &ebs(2)]);
        let pending = claims_pod(&["csi-4"]);
        let pending2 = {
            let mut v = claims_pod(&["csi-4"]);
            v["metadata"]["name"] = "other-pending".into();
            v
        };
        let missing_pv = claims_pod(&["csi-6"]);
        let no_sc = claims_pod(&["csi-5"]);
        let gce_two = claims_pod(&[&format!("csi-{GCE}-1"), &format!("csi-{GCE}-2")]);

        let cases = vec![
            case(
                "fits when node volume limit >= new pods CSI volume",
                one.clone(),
                vec![running.clone(), two.clone()],
                4,
                ok(),
            ),
            case(
                "doesn't when node volume limit <= pods CSI volume",
                one.clone(),
                vec![running.clone(), two.clone()],
                2,
                exceeded(),
            ),
            Case {
                source: "csinode-with-no-limit",
                ..case(
                    "should when driver does not support volume limits",
                    one.clone(),
                    vec![running.clone(), two.clone()],
                    2,
                    ok(),
                )
            },
            case(
                "count pending PVCs towards volume limit <= pods CSI volume",
                one.clone(),
                vec![pending.clone(), two.clone()],
                2,
                exceeded(),
            ),
            case(
                "count multiple pending pvcs towards volume limit >= pods CSI volume",
                one.clone(),
                vec![pending.clone(), pending2, two.clone()],
                4,
                ok(),
            ),
            case(
                "should count PVCs with invalid PV name but valid SC",
                one.clone(),
                vec![missing_pv, two.clone()],
                2,
                exceeded(),
            ),
            case(
                "don't count pvcs with missing SC towards volume limit",
                one.clone(),
                vec![running.clone(), no_sc],
                2,
                ok(),
            ),
            Case {
                drivers: vec![EBS, GCE],
                ..case(
                    "count pvcs with the same type towards volume limit",
                    one.clone(),
                    vec![gce_two.clone(), two.clone()],
                    2,
                    exceeded(),
                )
            },
            Case {
                drivers: vec![EBS, GCE],
                ..case(
                    "don't count pvcs with different type towards volume limit",
                    gce_two,
                    vec![two.clone(), running.clone()],
                    2,
                    ok(),
                )
            },
            Case {
                source: "none",
                ..case("no CSINode", one.clone(), vec![running.clone(), two.clone()], 0, ok())
            },
            case(
                "the same volume counts once",
                claims_pod(&[&ebs(1)]),
                vec![two.clone()],
                2,
                ok(),
            ),
            Case {
                want_pre: Status::skip(),
                ..case(
                    "skip Filter when the pod only uses secrets and configmaps",
                    json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": [
                        {"name": "c", "configMap": {"name": "c"}}, {"name": "s", "secret": {"secretName": "s"}}]}}),
                    vec![],
                    2,
                    ok(),
                )
            },
            case(
                "don't skip Filter when the pod has pvcs",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": [
                    {"name": "c", "configMap": {"name": "c"}}, {"name": "s", "secret": {"secretName": "s"}},
                    {"name": "v", "persistentVolumeClaim": {"claimName": ebs(0)}}]}}),
                vec![],
                2,
                ok(),
            ),
            case(
                "missing claim",
                claims_pod(&["nope"]),
                vec![],
                2,
                Status::unresolvable(r#"looking up PVC default/nope: persistentvolumeclaim "nope" not found"#),
            ),
        ];
        for c in cases {
            check(c);
        }
    }

    #[test]
    fn node_volume_limits_ephemeral() {
        // Upstream's ephemeral cases of TestCSILimits.
        let eph_pod = |uid: &str, vols: &[&str]| {
            let vols: Vec<Value> = vols.iter().map(|v| json!({"name": v, "ephemeral": {}})).collect();
            json!({"metadata": {"name": "abc", "namespace": "test", "uid": uid}, "spec": {"containers": [], "volumes": vols}})
        };
        let eph_claim = |name: &str, owner: Option<&str>| {
            let mut v =
                json!({"metadata": {"name": name, "namespace": "test"}, "spec": {"storageClassName": "csi-sc"}});
            if let Some(uid) = owner {
                v["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Pod", "name": "abc", "uid": uid, "controller": true}]);
            }
            v
        };
        let ebs = |j: u32| format!("csi-{EBS}-{j}");
        let running = claims_pod(&[&ebs(3)]);
        let two = claims_pod(&[&ebs(1), &ebs(2)]);
        let exceeded = || Status::unschedulable(ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED);
        let cases = vec![
            Case {
                source: "csinode-with-no-limit",
                ..case(
                    "ephemeral volume missing",
                    eph_pod("12345", &["xyz"]),
                    vec![],
                    0,
                    Status::unresolvable(r#"looking up PVC test/abc-xyz: persistentvolumeclaim "abc-xyz" not found"#),
                )
            },
            Case {
                source: "csinode-with-no-limit",
                extra_claims: vec![eph_claim("abc-xyz", None)],
                ..case(
                    "ephemeral volume not owned",
                    eph_pod("12345", &["xyz"]),
                    vec![],
                    0,
                    Status::error("PVC test/abc-xyz was not created for pod test/abc (pod is not owner)"),
                )
            },
            Case {
                source: "csinode-with-no-limit",
                extra_claims: vec![eph_claim("abc-xyz", Some("12345"))],
                ..case(
                    "ephemeral volume unbound",
                    eph_pod("12345", &["xyz"]),
                    vec![],
                    0,
                    Status::success(),
                )
            },
            Case {
                extra_claims: vec![eph_claim("abc-xyz", Some("12345"))],
                ..case(
                    "ephemeral doesn't when node volume limit <= pods CSI volume",
                    eph_pod("12345", &["xyz"]),
                    vec![running.clone(), two.clone()],
                    2,
                    exceeded(),
                )
            },
            Case {
                extra_claims: vec![eph_claim("abc-x", Some("12345II")), eph_claim("abc-y", Some("12345II"))],
                ..case(
                    "ephemeral doesn't when node volume limit <= pods ephemeral CSI volume",
                    claims_pod(&[&ebs(0)]),
                    vec![running.clone(), eph_pod("12345II", &["x", "y"])],
                    2,
                    exceeded(),
                )
            },
            Case {
                extra_claims: vec![eph_claim("abc-xyz", Some("12345"))],
                ..case(
                    "persistent doesn't when node volume limit <= pods ephemeral CSI volume + persistent volume",
                    claims_pod(&[&ebs(0)]),
                    vec![running.clone(), eph_pod("12345", &["xyz"]), two.clone()],
                    3,
                    exceeded(),
                )
            },
            Case {
                extra_claims: vec![eph_claim("abc-xyz", Some("12345"))],
                ..case(
                    "persistent okay when node volume limit > pods ephemeral CSI volume + persistent volume",
                    claims_pod(&[&ebs(0)]),
                    vec![running, eph_pod("12345", &["xyz"]), two],
                    5,
                    Status::success(),
                )
            },
        ];
        for c in cases {
            check(c);
        }
    }
}
