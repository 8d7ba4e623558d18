//! Pod spec helpers shared by the apiserver and kubectl.

use serde_json::Value;

/// The names of a pod's containers of one kind (`list`: `containers`,
/// `initContainers` or `ephemeralContainers`), in spec order.
pub fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_names_in_spec_order() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(container_names(&pod, "containers"), ["a", "b"]);
        assert_eq!(container_names(&pod, "initContainers"), ["i"]);
        assert!(container_names(&pod, "ephemeralContainers").is_empty());
    }
}
