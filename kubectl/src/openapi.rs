//! Looking things up in the server's OpenAPI v3 documents: the schema of a
//! group-version-kind (for strategic merge patches and `explain`).

use serde_json::Value;

/// API groups compiled into kubectl upstream: their objects are patched
/// with strategic merge patches; anything else (custom resources) with JSON
/// merge patches.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

pub fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.contains(&group)
}

/// The `components.schemas` key whose `x-kubernetes-group-version-kind`
/// names this group, version and kind.
pub fn schema_name(doc: &Value, group: &str, version: &str, kind: &str) -> Option<String> {
    let schemas = doc.pointer("/components/schemas")?.as_object()?;
    schemas.iter().find_map(|(name, schema)| {
        let gvks = schema.get("x-kubernetes-group-version-kind")?.as_array()?;
        gvks.iter()
            .any(|gvk| {
                gvk.get("group").and_then(Value::as_str).unwrap_or("") == group
                    && gvk.get("version").and_then(Value::as_str) == Some(version)
                    && gvk.get("kind").and_then(Value::as_str) == Some(kind)
            })
            .then(|| name.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_schema_by_gvk() {
        let doc = json!({"components": {"schemas": {
            "io.k8s.api.apps.v1.Deployment": {"x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Deployment"}]},
            "io.k8s.api.core.v1.Pod": {"x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}]}
        }}});
        assert_eq!(
            schema_name(&doc, "apps", "v1", "Deployment").as_deref(),
            Some("io.k8s.api.apps.v1.Deployment")
        );
        assert_eq!(
            schema_name(&doc, "", "v1", "Pod").as_deref(),
            Some("io.k8s.api.core.v1.Pod")
        );
        assert_eq!(schema_name(&doc, "apps", "v2", "Deployment"), None);
        assert!(is_builtin_group("apps"));
        assert!(!is_builtin_group("example.com"));
    }
}
