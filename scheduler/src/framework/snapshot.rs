//! The snapshot a scheduling cycle reads: every node's info as of the cycle's
//! start, and the cluster objects plugins consult. The cache refreshes it
//! incrementally (only nodes that changed since the last cycle), so a cycle
//! costs nothing per unchanged node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};

use super::types::{NodeInfo, PodInfo};
use apimachinery::labels::Selector;

/// Cluster objects besides nodes and pods that plugins read: namespaces'
/// labels (affinity `namespaceSelector`), storage objects (volume plugins)
/// and the selectors of the workloads that own pods (default topology
/// spreading). Replaced whole when one changes; these change rarely.
#[derive(Clone, Debug, Default)]
pub struct ClusterObjects {
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    /// `namespace/name` → claim.
    pub pvcs: HashMap<String, Arc<PersistentVolumeClaim>>,
    pub pvs: HashMap<String, Arc<PersistentVolume>>,
    pub storage_classes: HashMap<String, Arc<StorageClass>>,
    pub csi_nodes: HashMap<String, Arc<CSINode>>,
    /// `namespace/name` → budget (preemption avoids violating them).
    pub pdbs: HashMap<String, Arc<PodDisruptionBudget>>,
    /// Per namespace, the selectors of Services, ReplicationControllers,
    /// ReplicaSets and StatefulSets (default topology spreading).
    pub workload_selectors: HashMap<String, Vec<WorkloadSelector>>,
}

#[derive(Clone, Debug)]
pub struct WorkloadSelector {
    /// `Service/name`, `ReplicaSet/name`, …
    pub owner: String,
    pub selector: Selector,
}

#[derive(Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    pub objects: Arc<ClusterObjects>,
    /// Pods nominated to a node by preemption and not yet bound, by node:
    /// lower-priority pods must leave room for them.
    pub nominated: Arc<HashMap<String, Vec<Arc<PodInfo>>>>,
    /// How many nodes hold a pod with any (anti-)affinity term, and with a
    /// required anti-affinity term: plugins skip their scans at zero.
    pub nodes_with_affinity: usize,
    pub nodes_with_required_anti_affinity: usize,
}

impl Snapshot {
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        let mut s = Snapshot::default();
        for n in nodes {
            s.set(Arc::new(n));
        }
        s
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn count(&mut self, info: &NodeInfo, delta: isize) {
        if info.pods_with_affinity > 0 {
            self.nodes_with_affinity = self.nodes_with_affinity.saturating_add_signed(delta);
        }
        if info.pods_with_required_anti_affinity > 0 {
            self.nodes_with_required_anti_affinity =
                self.nodes_with_required_anti_affinity.saturating_add_signed(delta);
        }
    }

    /// Adds or replaces a node's info.
    pub fn set(&mut self, info: Arc<NodeInfo>) {
        self.count(&info, 1);
        match self.index.get(&info.name) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.nodes[i], info);
                self.count(&old, -1);
            }
            None => {
                self.index.insert(info.name.clone(), self.nodes.len());
                self.nodes.push(info);
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            let old = self.nodes.swap_remove(i);
            self.count(&old, -1);
            if i < self.nodes.len() {
                self.index.insert(self.nodes[i].name.clone(), i);
            }
        }
    }

    pub fn namespace_labels(&self, ns: &str) -> Option<&BTreeMap<String, String>> {
        self.objects.namespaces.get(ns)
    }

    /// Every pod on every node (for plugins that scan the cluster).
    pub fn pods(&self) -> impl Iterator<Item = (&Arc<NodeInfo>, &Arc<PodInfo>)> {
        self.nodes.iter().flat_map(|n| n.pods.iter().map(move |p| (n, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::node_with_pods;
    use serde_json::json;

    fn node(name: &str, anti_affinity: bool) -> Arc<NodeInfo> {
        let mut spec = json!({"containers": []});
        if anti_affinity {
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        Arc::new(node_with_pods(
            json!({"metadata": {"name": name}}),
            vec![json!({"metadata": {"name": format!("{name}-p"), "uid": format!("{name}-p")}, "spec": spec})],
        ))
    }

    #[test]
    fn counts_nodes_with_affinity_pods_through_replacements() {
        let mut s = Snapshot::default();
        s.set(node("a", true));
        s.set(node("b", false));
        assert_eq!((s.nodes_with_affinity, s.nodes_with_required_anti_affinity), (1, 1));
        s.set(node("a", false));
        assert_eq!((s.nodes_with_affinity, s.nodes_with_required_anti_affinity), (0, 0));
        s.set(node("b", true));
        s.remove("b");
        assert_eq!((s.nodes_with_affinity, s.nodes_with_required_anti_affinity), (0, 0));
        assert_eq!(s.len(), 1);
        assert!(s.get("a").is_some());
    }
}
