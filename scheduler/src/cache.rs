//! The scheduler's cache (upstream's `internal/cache`): every node's info
//! with the pods on it, including pods *assumed* there — counted as soon
//! as the scheduler decides, before the binding returns, so that the next
//! pod sees them. The informers confirm an assumed pod when its binding
//! shows up; a failed binding forgets it. Snapshots are refreshed from the
//! nodes changed since the last one only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::framework::snapshot::ClusterObjects;
use crate::framework::{NodeInfo, PodInfo, Snapshot};

struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

#[derive(Default)]
pub struct Cache {
    nodes: HashMap<String, NodeEntry>,
    pods: HashMap<String, PodState>,
    dirty: HashSet<String>,
    objects: Arc<ClusterObjects>,
    objects_dirty: bool,
}

struct NodeEntry {
    info: Arc<NodeInfo>,
    /// False while only pods name this node (the Node object unseen or gone).
    has_node: bool,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.values().filter(|n| n.has_node).count()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    fn entry(&mut self, name: &str) -> &mut NodeEntry {
        self.dirty.insert(name.to_string());
        self.nodes.entry(name.to_string()).or_insert_with(|| NodeEntry {
            info: Arc::new(NodeInfo::placeholder(name)),
            has_node: false,
        })
    }

    /// Adds or updates a Node.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let e = self.entry(&name);
        Arc::make_mut(&mut e.info).set_node(node);
        e.has_node = true;
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(e) = self.nodes.get_mut(name) else { return };
        e.has_node = false;
        if e.info.pods.is_empty() {
            self.nodes.remove(name);
        }
        self.dirty.insert(name.to_string());
    }

    pub fn node(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(name).filter(|e| e.has_node).map(|e| &e.info)
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str) {
        let e = self.entry(node);
        Arc::make_mut(&mut e.info).add_pod(pod);
    }

    fn unplace(&mut self, uid: &str, node: &str) {
        let Some(e) = self.nodes.get_mut(node) else { return };
        Arc::make_mut(&mut e.info).remove_pod(uid);
        if !e.has_node && e.info.pods.is_empty() {
            self.nodes.remove(node);
        }
        self.dirty.insert(node.to_string());
    }

    /// Counts `pod` on `node` before its binding is known.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        if self.pods.contains_key(&pod.uid) {
            return;
        }
        self.place(pod.clone(), node);
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                info: pod,
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// The binding failed: the assumed pod leaves its node.
    pub fn forget(&mut self, uid: &str) {
        if let Some(s) = self.pods.get(uid)
            && s.assumed
        {
            let node = s.node.clone();
            self.pods.remove(uid);
            self.unplace(uid, &node);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|s| s.assumed)
    }

    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// An assigned pod from the informer: added, updated, or an assumed one
    /// confirmed (moved if it landed elsewhere).
    pub fn add_or_update_pod(&mut self, pod: Arc<PodInfo>) {
        let node = pod.node_name.clone();
        if let Some(old) = self.pods.get(&pod.uid) {
            let old_node = old.node.clone();
            self.unplace(&pod.uid, &old_node);
        }
        self.place(pod.clone(), &node);
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                info: pod,
                node,
                assumed: false,
            },
        );
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let s = self.pods.remove(uid)?;
        self.unplace(uid, &s.node);
        Some(s.info)
    }

    /// The uids of every pod the cache holds, assumed ones aside (to drop
    /// those a relist no longer shows).
    pub fn confirmed_pod_uids(&self) -> Vec<String> {
        self.pods
            .iter()
            .filter(|(_, s)| !s.assumed)
            .map(|(u, _)| u.clone())
            .collect()
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, e)| e.has_node)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Changes storage, namespace or workload objects (copy on write).
    pub fn objects_mut(&mut self) -> &mut ClusterObjects {
        self.objects_dirty = true;
        Arc::make_mut(&mut self.objects)
    }

    /// Brings `snap` up to date with the nodes changed since its last update.
    pub fn update_snapshot(&mut self, snap: &mut Snapshot) {
        for name in self.dirty.drain() {
            match self.nodes.get(&name) {
                Some(e) if e.has_node => snap.set(e.info.clone()),
                _ => snap.remove(&name),
            }
        }
        if self.objects_dirty {
            snap.objects = self.objects.clone();
            self.objects_dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;
    use serde_json::json;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
                .unwrap(),
        )
    }

    fn p(uid: &str, node: &str) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": uid, "uid": uid}, "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        ))
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut c = Cache::new();
        c.set_node(node("n1"));
        let mut snap = Snapshot::default();
        c.assume(p("a", ""), "n1");
        c.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 1000);
        assert!(c.is_assumed("a"));
        // The informer sees the binding.
        c.add_or_update_pod(p("a", "n1"));
        assert!(!c.is_assumed("a"));
        c.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().pods.len(), 1);
        // Another assumed pod whose binding fails.
        c.assume(p("b", ""), "n1");
        c.forget("b");
        c.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 1000);
        // Forgetting a confirmed pod does nothing.
        c.forget("a");
        assert!(c.contains_pod("a"));
    }

    #[test]
    fn snapshot_updates_only_changed_nodes_and_drops_removed_ones() {
        let mut c = Cache::new();
        c.set_node(node("n1"));
        c.set_node(node("n2"));
        let mut snap = Snapshot::default();
        c.update_snapshot(&mut snap);
        assert_eq!(snap.len(), 2);
        let n2_before = snap.get("n2").unwrap().clone();
        c.add_or_update_pod(p("a", "n1"));
        c.update_snapshot(&mut snap);
        assert!(
            Arc::ptr_eq(&n2_before, snap.get("n2").unwrap()),
            "n2 was not copied again"
        );
        assert_eq!(snap.get("n1").unwrap().pods.len(), 1);
        c.remove_node("n1");
        c.update_snapshot(&mut snap);
        assert_eq!(snap.len(), 1);
        assert!(snap.get("n1").is_none());
        // The pod on the removed node is still known; once gone, so is the node.
        assert!(c.remove_pod("a").is_some());
        assert_eq!(c.node_count(), 1);
    }

    #[test]
    fn a_pod_seen_before_its_node_waits_on_a_placeholder() {
        let mut c = Cache::new();
        c.add_or_update_pod(p("a", "later"));
        let mut snap = Snapshot::default();
        c.update_snapshot(&mut snap);
        assert!(snap.get("later").is_none());
        c.set_node(node("later"));
        c.update_snapshot(&mut snap);
        assert_eq!(snap.get("later").unwrap().pods.len(), 1);
    }
}
