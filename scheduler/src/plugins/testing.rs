//! Builders for plugin table tests: pods and nodes from JSON.

use std::sync::Arc;

use serde_json::Value;

use crate::framework::{CycleState, NodeInfo, Plugin, PodInfo, Snapshot};

pub fn pod(v: Value) -> PodInfo {
    let mut v = v;
    if v["metadata"]["namespace"].is_null() {
        v["metadata"]["namespace"] = "default".into();
    }
    PodInfo::new(Arc::new(serde_json::from_value(v).expect("pod JSON")))
}

pub fn node(v: Value) -> NodeInfo {
    NodeInfo::new(Arc::new(serde_json::from_value(v).expect("node JSON")))
}

pub fn node_with_pods(v: Value, pods: Vec<Value>) -> NodeInfo {
    let mut n = node(v);
    for p in pods {
        n.add_pod(Arc::new(pod(p)));
    }
    n
}

/// Runs a plugin's PreScore (if any), Score on each node, and NormalizeScore,
/// over a snapshot of exactly these nodes.
pub fn score_nodes(plugin: &dyn Plugin, pod: &PodInfo, nodes: Vec<NodeInfo>) -> Vec<i64> {
    let snap = Snapshot::new(nodes);
    let nodes: Vec<Arc<NodeInfo>> = snap.nodes.clone();
    let mut state = CycleState::default();
    if let Some(ps) = plugin.as_pre_score() {
        let st = ps.pre_score(&mut state, pod, &nodes, &snap);
        assert!(st.is_success() || st.is_skip(), "PreScore: {st:?}");
    }
    let sp = plugin.as_score().expect("a score plugin");
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| sp.score(&state, pod, n, &snap).expect("score"))
        .collect();
    sp.normalize(&state, pod, &mut scores);
    scores
}

/// Cluster objects holding these storage objects (JSON): claims keyed
/// `namespace/name` (namespace defaulting to `default`), volumes, storage
/// classes and CSINodes by name.
pub fn storage_objects(
    pvcs: Vec<Value>,
    pvs: Vec<Value>,
    classes: Vec<Value>,
    csi_nodes: Vec<Value>,
) -> crate::framework::snapshot::ClusterObjects {
    let mut o = crate::framework::snapshot::ClusterObjects::default();
    for mut v in pvcs {
        if v["metadata"]["namespace"].is_null() {
            v["metadata"]["namespace"] = "default".into();
        }
        let c: k8s_openapi::api::core::v1::PersistentVolumeClaim = serde_json::from_value(v).expect("PVC JSON");
        let key = format!(
            "{}/{}",
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or("")
        );
        o.pvcs.insert(key, Arc::new(c));
    }
    for v in pvs {
        let pv: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(v).expect("PV JSON");
        o.pvs.insert(pv.metadata.name.clone().unwrap_or_default(), Arc::new(pv));
    }
    for v in classes {
        let sc: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(v).expect("StorageClass JSON");
        o.storage_classes
            .insert(sc.metadata.name.clone().unwrap_or_default(), Arc::new(sc));
    }
    for v in csi_nodes {
        let n: k8s_openapi::api::storage::v1::CSINode = serde_json::from_value(v).expect("CSINode JSON");
        o.csi_nodes
            .insert(n.metadata.name.clone().unwrap_or_default(), Arc::new(n));
    }
    o
}
