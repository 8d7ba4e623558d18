//! API discovery and kubectl's resource-type resolution (its RESTMapper,
//! shortcut and category expanders): `pods`, `pod`, `po`, `Pod`,
//! `deployments.apps`, `deployments.v1.apps`, `Deployment.apps`, `all`.

use anyhow::bail;
use serde_json::Value;

use crate::client::Client;

/// One resource of one group version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResource {
    pub group: String,
    pub version: String,
    /// The plural resource name (`deployments`).
    pub resource: String,
    pub kind: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
    /// Whether `version` is the group's preferred version.
    pub preferred: bool,
    /// Subresources served (`status`, `scale`).
    pub subresources: Vec<String>,
}

impl ApiResource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `pods`, as in error messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `deployment.apps` or `service`: the lowercased kind prefix of
    /// `kind.group/name` output.
    pub fn kind_group(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_lowercase()
        } else {
            format!("{}.{}", self.kind.to_lowercase(), self.group)
        }
    }

    /// `Deployment.apps` (upstream's GroupKind string).
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The collection or object path.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if self.namespaced
            && let Some(ns) = namespace
        {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(&self.resource);
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// Every resource the server serves, in discovery order (core first, then
/// groups as listed, preferred version first).
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub resources: Vec<ApiResource>,
    /// `group/version` strings (`v1`, `apps/v1`) in discovery order.
    pub group_versions: Vec<String>,
}

const AGGREGATED_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

impl Discovery {
    /// Fetches discovery, aggregated if the server supports it.
    pub async fn fetch(client: &Client) -> anyhow::Result<Discovery> {
        let core = client.get_as("/api", AGGREGATED_ACCEPT).await?;
        let apis = client.get_as("/apis", AGGREGATED_ACCEPT).await?;
        if core.get("kind").and_then(Value::as_str) == Some("APIGroupDiscoveryList")
            && apis.get("kind").and_then(Value::as_str) == Some("APIGroupDiscoveryList")
        {
            return Ok(Discovery::from_aggregated(&[core, apis]));
        }
        // Legacy discovery: one request per group version.
        let mut lists = Vec::new();
        for v in core.get("versions").and_then(Value::as_array).into_iter().flatten() {
            let Some(v) = v.as_str() else { continue };
            let list = client.get(&format!("/api/{v}")).await?;
            lists.push((String::new(), v.to_string(), true, list));
        }
        for g in apis.get("groups").and_then(Value::as_array).into_iter().flatten() {
            let name = g.get("name").and_then(Value::as_str).unwrap_or("");
            let preferred = g
                .pointer("/preferredVersion/version")
                .and_then(Value::as_str)
                .unwrap_or("");
            for v in g.get("versions").and_then(Value::as_array).into_iter().flatten() {
                let Some(version) = v.get("version").and_then(Value::as_str) else {
                    continue;
                };
                let list = client.get(&format!("/apis/{name}/{version}")).await?;
                lists.push((name.to_string(), version.to_string(), version == preferred, list));
            }
        }
        Ok(Discovery::from_legacy(&lists))
    }

    /// From `APIGroupDiscoveryList`s (`/api` then `/apis`).
    pub fn from_aggregated(lists: &[Value]) -> Discovery {
        let mut d = Discovery::default();
        for list in lists {
            for group in list.get("items").and_then(Value::as_array).into_iter().flatten() {
                let group_name = group.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                let versions = group
                    .get("versions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (i, version) in versions.iter().enumerate() {
                    let v = version.get("version").and_then(Value::as_str).unwrap_or("");
                    d.group_versions.push(if group_name.is_empty() {
                        v.to_string()
                    } else {
                        format!("{group_name}/{v}")
                    });
                    for r in version.get("resources").and_then(Value::as_array).into_iter().flatten() {
                        let strings = |key: &str| -> Vec<String> {
                            r.get(key)
                                .and_then(Value::as_array)
                                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                                .unwrap_or_default()
                        };
                        let subresources = r
                            .get("subresources")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|s| s.get("subresource").and_then(Value::as_str))
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default();
                        d.resources.push(ApiResource {
                            group: group_name.to_string(),
                            version: v.to_string(),
                            resource: r.get("resource").and_then(Value::as_str).unwrap_or("").to_string(),
                            kind: r
                                .pointer("/responseKind/kind")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            singular: r
                                .get("singularResource")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            namespaced: r.get("scope").and_then(Value::as_str) == Some("Namespaced"),
                            short_names: strings("shortNames"),
                            verbs: strings("verbs"),
                            categories: strings("categories"),
                            preferred: i == 0,
                            subresources,
                        });
                    }
                }
            }
        }
        d
    }

    /// From legacy `APIResourceList`s: (group, version, preferred, list).
    pub fn from_legacy(lists: &[(String, String, bool, Value)]) -> Discovery {
        let mut d = Discovery::default();
        for (group, version, preferred, list) in lists {
            d.group_versions.push(if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            });
            let all = list
                .get("resources")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for r in &all {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                if name.contains('/') {
                    continue;
                }
                let strings = |key: &str| -> Vec<String> {
                    r.get(key)
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default()
                };
                let subresources = all
                    .iter()
                    .filter_map(|s| s.get("name").and_then(Value::as_str))
                    .filter_map(|s| s.strip_prefix(&format!("{name}/")).map(str::to_string))
                    .collect();
                d.resources.push(ApiResource {
                    group: group.clone(),
                    version: version.clone(),
                    resource: name.to_string(),
                    kind: r.get("kind").and_then(Value::as_str).unwrap_or("").to_string(),
                    singular: r.get("singularName").and_then(Value::as_str).unwrap_or("").to_string(),
                    namespaced: r.get("namespaced").and_then(Value::as_bool).unwrap_or(false),
                    short_names: strings("shortNames"),
                    verbs: strings("verbs"),
                    categories: strings("categories"),
                    preferred: *preferred,
                    subresources,
                });
            }
        }
        d
    }

    /// Resources of preferred versions only (`api-resources`).
    pub fn preferred(&self) -> impl Iterator<Item = &ApiResource> {
        self.resources.iter().filter(|r| r.preferred)
    }

    /// Expands a category (`all`) to its resources, in discovery order.
    pub fn expand_category(&self, name: &str) -> Option<Vec<ApiResource>> {
        let found: Vec<ApiResource> = self
            .preferred()
            .filter(|r| r.categories.iter().any(|c| c == name))
            .cloned()
            .collect();
        if found.is_empty() { None } else { Some(found) }
    }

    /// Splits a comma list of types, expanding categories.
    pub fn resolve_types(&self, arg: &str) -> anyhow::Result<Vec<ApiResource>> {
        let mut out: Vec<ApiResource> = Vec::new();
        for part in arg.split(',').filter(|p| !p.is_empty()) {
            let found = match self.expand_category(part) {
                Some(rs) => rs,
                None => vec![self.resolve(part)?],
            };
            for r in found {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Resolves one resource or kind argument (upstream's `mappingFor`).
    pub fn resolve(&self, arg: &str) -> anyhow::Result<ApiResource> {
        let parts: Vec<&str> = arg.splitn(3, '.').collect();
        let (resource, group_part) = match arg.split_once('.') {
            Some((r, g)) => (r, Some(g.to_string())),
            None => (arg, None),
        };
        // A fully specified `resource.version.group`.
        if parts.len() == 3
            && let Some(r) = self.find_resource(parts[0], Some(parts[2]), Some(parts[1]))
        {
            return Ok(r);
        }
        if let Some(r) = self.find_resource(resource, group_part.as_deref(), None) {
            return Ok(r);
        }
        // Kinds: `Kind`, `Kind.group`, `Kind.version.group`.
        if parts.len() == 3
            && let Some(r) = self.find_kind(parts[0], parts[2], Some(parts[1]))
        {
            return Ok(r);
        }
        if let Some(r) = self.find_kind(resource, group_part.as_deref().unwrap_or(""), None) {
            return Ok(r);
        }
        bail!("the server doesn't have a resource type \"{resource}\"")
    }

    fn find_resource(&self, name: &str, group: Option<&str>, version: Option<&str>) -> Option<ApiResource> {
        let lower = name.to_lowercase();
        let candidates = |exact_version: bool| {
            self.resources.iter().filter(move |r| {
                group.is_none_or(|g| r.group == g)
                    && match version {
                        Some(v) => r.version == v,
                        None => r.preferred || !exact_version,
                    }
            })
        };
        // Short names first (upstream expands shortcuts before mapping),
        // then plural and singular names; preferred versions first.
        for exact in [true, false] {
            if let Some(r) = candidates(exact).find(|r| r.short_names.contains(&lower)) {
                return Some(r.clone());
            }
            if let Some(r) = candidates(exact).find(|r| r.resource == lower || r.singular == lower) {
                return Some(r.clone());
            }
        }
        None
    }

    fn find_kind(&self, kind: &str, group: &str, version: Option<&str>) -> Option<ApiResource> {
        let matches = |r: &&ApiResource| r.kind.eq_ignore_ascii_case(kind) && r.group == group;
        let mut it = self.resources.iter().filter(matches);
        match version {
            Some(v) => it.find(|r| r.version == v).cloned(),
            None => {
                let all: Vec<&ApiResource> = it.collect();
                all.iter().find(|r| r.preferred).or(all.first()).map(|r| (*r).clone())
            }
        }
    }

    /// The resource of an object's `apiVersion` and `kind` (manifests).
    pub fn for_object(&self, api_version: &str, kind: &str) -> Option<ApiResource> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn sample() -> Discovery {
        let core = json!({"kind": "APIGroupDiscoveryList", "items": [{"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
            {"resource": "pods", "singularResource": "pod", "scope": "Namespaced", "shortNames": ["po"], "categories": ["all"],
             "responseKind": {"kind": "Pod"}, "verbs": ["get", "list"]},
            {"resource": "services", "singularResource": "service", "scope": "Namespaced", "shortNames": ["svc"], "categories": ["all"],
             "responseKind": {"kind": "Service"}, "verbs": ["get", "list"]},
            {"resource": "events", "singularResource": "event", "scope": "Namespaced", "shortNames": ["ev"],
             "responseKind": {"kind": "Event"}, "verbs": ["get", "list"]},
            {"resource": "namespaces", "singularResource": "namespace", "scope": "Cluster", "shortNames": ["ns"],
             "responseKind": {"kind": "Namespace"}, "verbs": ["get", "list"]}
        ]}]}]});
        let apis = json!({"kind": "APIGroupDiscoveryList", "items": [
            {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
                {"resource": "deployments", "singularResource": "deployment", "scope": "Namespaced", "shortNames": ["deploy"],
                 "categories": ["all"], "responseKind": {"kind": "Deployment"}, "verbs": ["get"],
                 "subresources": [{"subresource": "scale"}, {"subresource": "status"}]}]}]},
            {"metadata": {"name": "events.k8s.io"}, "versions": [{"version": "v1", "resources": [
                {"resource": "events", "singularResource": "event", "scope": "Namespaced", "shortNames": ["ev"],
                 "responseKind": {"kind": "Event"}, "verbs": ["get"]}]}]},
            {"metadata": {"name": "example.com"}, "versions": [
                {"version": "v2", "resources": [{"resource": "widgets", "singularResource": "widget", "scope": "Namespaced",
                  "shortNames": ["wd"], "responseKind": {"kind": "Widget"}, "verbs": ["get"]}]},
                {"version": "v1", "resources": [{"resource": "widgets", "singularResource": "widget", "scope": "Namespaced",
                  "shortNames": ["wd"], "responseKind": {"kind": "Widget"}, "verbs": ["get"]}]}]}
        ]});
        Discovery::from_aggregated(&[core, apis])
    }

    #[test]
    fn resolves_like_the_rest_mapper() {
        let d = sample();
        let cases = [
            ("pods", "pods", "v1"),
            ("pod", "pods", "v1"),
            ("po", "pods", "v1"),
            ("Pod", "pods", "v1"),
            ("PODS", "pods", "v1"),
            ("deploy", "deployments.apps", "v1"),
            ("Deployment", "deployments.apps", "v1"),
            ("deployments.apps", "deployments.apps", "v1"),
            ("deployments.v1.apps", "deployments.apps", "v1"),
            ("Deployment.apps", "deployments.apps", "v1"),
            ("events", "events", "v1"),
            ("events.events.k8s.io", "events.events.k8s.io", "v1"),
            ("widgets", "widgets.example.com", "v2"),
            ("wd", "widgets.example.com", "v2"),
            ("widgets.example.com", "widgets.example.com", "v2"),
            ("widgets.v1.example.com", "widgets.example.com", "v1"),
            ("widget.example.com", "widgets.example.com", "v2"),
        ];
        for (arg, want, version) in cases {
            let r = d.resolve(arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
            assert_eq!(
                (r.group_resource().as_str(), r.version.as_str()),
                (want, version),
                "{arg}"
            );
        }
        assert_eq!(
            d.resolve("nope").unwrap_err().to_string(),
            "the server doesn't have a resource type \"nope\""
        );
        assert_eq!(
            d.resolve("nope.apps").unwrap_err().to_string(),
            "the server doesn't have a resource type \"nope\""
        );
    }

    #[test]
    fn expands_categories_and_lists() {
        let d = sample();
        let got: Vec<String> = d
            .resolve_types("all")
            .unwrap()
            .iter()
            .map(|r| r.group_resource())
            .collect();
        assert_eq!(got, vec!["pods", "services", "deployments.apps"]);
        let got: Vec<String> = d
            .resolve_types("deploy,svc,po")
            .unwrap()
            .iter()
            .map(|r| r.group_resource())
            .collect();
        assert_eq!(got, vec!["deployments.apps", "services", "pods"]);
    }

    #[test]
    fn paths() {
        let d = sample();
        let deploy = d.resolve("deploy").unwrap();
        assert_eq!(
            deploy.path(Some("ns"), Some("x")),
            "/apis/apps/v1/namespaces/ns/deployments/x"
        );
        assert_eq!(deploy.path(None, None), "/apis/apps/v1/deployments");
        let ns = d.resolve("ns").unwrap();
        assert_eq!(ns.path(Some("ignored"), Some("a")), "/api/v1/namespaces/a");
        assert_eq!(deploy.kind_group(), "deployment.apps");
    }
}
