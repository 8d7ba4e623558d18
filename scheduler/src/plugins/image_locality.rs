//! ImageLocality: prefers nodes that already have the pod's images, by
//! their size, scaled by how many nodes have them (so that one node with
//! a popular image does not draw every pod).

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::{
    CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, PreScorePlugin, ScorePlugin, Snapshot, Status,
};

pub const NAME: &str = "ImageLocality";
const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

pub struct ImageLocality;

/// Per image the pod uses (normalized): how many nodes have it.
#[derive(Clone, Default)]
struct ImageSpread {
    images: Vec<String>,
    nodes_with: HashMap<String, usize>,
    total_nodes: usize,
}

/// Adds `:latest` to a name without a tag (upstream's `normalizedImageName`).
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    if colon.map(|c| c as i64).unwrap_or(-1) <= slash.map(|s| s as i64).unwrap_or(-1) {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _: &[Arc<NodeInfo>], snap: &Snapshot) -> Status {
        let images: Vec<String> = pod.images().map(normalized_image_name).collect();
        let mut nodes_with = HashMap::new();
        for img in &images {
            let n = snap.nodes.iter().filter(|n| n.images.contains_key(img)).count();
            nodes_with.insert(img.clone(), n);
        }
        state.write(ImageSpread {
            images,
            nodes_with,
            total_nodes: snap.len(),
        });
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<i64, Status> {
        let Some(spread) = state.read::<ImageSpread>() else {
            return Err(Status::error("ImageLocality: no PreScore state"));
        };
        let mut sum: i64 = 0;
        for img in &spread.images {
            if let Some(size) = node.images.get(img) {
                let n = spread.nodes_with.get(img).copied().unwrap_or(0) as f64;
                sum += (*size as f64 * (n / spread.total_nodes.max(1) as f64)) as i64;
            }
        }
        let max = MAX_CONTAINER_THRESHOLD * spread.images.len().max(1) as i64;
        let sum = sum.clamp(MIN_THRESHOLD, max);
        Ok(MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod, score_nodes};
    use serde_json::json;

    #[test]
    fn normalizes_names() {
        assert_eq!(normalized_image_name("busybox"), "busybox:latest");
        assert_eq!(normalized_image_name("busybox:1.36"), "busybox:1.36");
        assert_eq!(normalized_image_name("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalized_image_name("gcr.io/a/b:v1"), "gcr.io/a/b:v1");
    }

    #[test]
    fn score() {
        // Upstream's image_locality_test: 40 MB and 300 MB images on node1,
        // 250 MB and 10 MB on node2; each node holds its images alone.
        let node1 = node(json!({"metadata": {"name": "node1"}, "status": {"images": [
            {"names": ["gcr.io/40:latest", "gcr.io/40:v1"], "sizeBytes": 40 * MB},
            {"names": ["gcr.io/300:latest", "gcr.io/300:v1"], "sizeBytes": 300 * MB},
            {"names": ["gcr.io/2000:latest"], "sizeBytes": 2000 * MB}
        ]}}));
        let node2 = node(json!({"metadata": {"name": "node2"}, "status": {"images": [
            {"names": ["gcr.io/250:latest"], "sizeBytes": 250 * MB},
            {"names": ["gcr.io/10:latest", "gcr.io/10:v1"], "sizeBytes": 10 * MB}
        ]}}));
        let p = |images: &[&str]| {
            let containers: Vec<_> = images.iter().map(|i| json!({"name": "c", "image": i})).collect();
            pod(json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}))
        };
        // 40 MB * 1/2 = 20 MB, under the threshold: 0; 250 MB * 1/2 = 125 MB: 100*(125-23)/(2000-23) = 5.
        assert_eq!(
            score_nodes(
                &ImageLocality,
                &p(&["gcr.io/40", "gcr.io/250"]),
                vec![node1.clone(), node2.clone()]
            ),
            vec![0, 5]
        );
        // 300 MB/2 = 150 MB on node1 (of 2000 MB max for two containers); 10 MB on node2.
        assert_eq!(
            score_nodes(
                &ImageLocality,
                &p(&["gcr.io/300:v1", "gcr.io/10:v1"]),
                vec![node1.clone(), node2.clone()]
            ),
            vec![6, 0]
        );
        // 2000 MB * 1/2 reaches the one-container maximum.
        assert_eq!(
            score_nodes(&ImageLocality, &p(&["gcr.io/2000"]), vec![node1, node2]),
            vec![100, 0]
        );
    }
}
