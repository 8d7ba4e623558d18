//! The table of served resources: built-in kinds from `k8s-openapi`, plus
//! custom resources added at run time from CustomResourceDefinitions.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authentication, authorization::v1 as authorization,
    autoscaling::v2 as autoscaling, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, networking::v1 as networking, policy::v1 as policy,
    rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Round-trips a JSON object through its typed form: drops unknown fields,
/// rejects wrong types.
pub type Normalize = fn(Value) -> Result<Value, serde_json::Error>;
/// Adds the kind's schema (and what it refers to) to a generator.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator);

/// Everything the server needs to know to serve one resource.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    /// The resource name in URLs (plural, lowercase).
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresources served under `<plural>/<name>/<sub>`.
    pub subresources: Vec<String>,
    /// Verbs on the main resource.
    pub verbs: Vec<&'static str>,
    /// False for the review kinds (TokenReview, SubjectAccessReview, ...):
    /// a create is answered from its body and nothing is stored.
    pub stored: bool,
    /// Prefix of keys in the store, ending in `/`.
    pub key_prefix: String,
    pub normalize: Option<Normalize>,
    pub schema: Option<SchemaFn>,
    /// The kind's definition name in OpenAPI (`io.k8s.api.core.v1.Pod`;
    /// for custom resources `com.example.v1.Widget`).
    pub schema_name: String,
    /// For custom resources: the CRD version's schema (openAPIV3Schema).
    pub crd_schema: Option<Value>,
    /// For custom resources: additionalPrinterColumns.
    pub printer_columns: Option<Value>,
    /// For custom resources: the scale subresource's paths.
    pub scale_paths: Option<Value>,
    /// Whether a DELETE that removes the object answers with the object
    /// (upstream's `ReturnDeletedObject`) rather than a `Status`.
    pub return_deleted_object: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }

    pub fn is_custom(&self) -> bool {
        self.normalize.is_none()
    }

    /// The key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}{namespace}/{name}", self.key_prefix)
        } else {
            format!("{}{name}", self.key_prefix)
        }
    }

    /// The prefix of all objects in a namespace (or of all objects when
    /// `namespace` is empty).
    pub fn prefix(&self, namespace: &str) -> String {
        if self.namespaced && !namespace.is_empty() {
            format!("{}{namespace}/", self.key_prefix)
        } else {
            self.key_prefix.clone()
        }
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A built-in object through its typed form: unknown fields dropped, types
/// checked, and the fields upstream always writes put back.
fn normalize_as<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(v)?;
    let mut v = serde_json::to_value(typed)?;
    crate::always_fields::fill(&mut v);
    Ok(v)
}

fn schema_of<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) {
    g.subschema_for::<T>();
}

struct Extra {
    short: &'static [&'static str],
    cats: &'static [&'static str],
    subs: &'static [&'static str],
}

const NONE: Extra = Extra {
    short: &[],
    cats: &[],
    subs: &[],
};

fn builtin<T>(extra: Extra) -> ResourceType
where
    T: k8s_openapi::Resource + DeserializeOwned + Serialize + schemars::JsonSchema + 'static,
    T::Scope: 'static,
{
    let namespaced = TypeId::of::<T::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>();
    let plural = T::URL_PATH_SEGMENT.to_string();
    // Upstream's etcd layout: `/registry/<resource>/`; CRDs and APIServices
    // are qualified.
    // events.k8s.io's prefix is served from core events' keys (see
    // `storage::VIEWS`).
    let key_prefix = if matches!(
        T::GROUP,
        "events.k8s.io" | "apiextensions.k8s.io" | "apiregistration.k8s.io"
    ) {
        format!("/registry/{}/{plural}/", T::GROUP)
    } else {
        format!("/registry/{plural}/")
    };
    ResourceType {
        group: T::GROUP.into(),
        version: T::VERSION.into(),
        kind: T::KIND.into(),
        list_kind: format!("{}List", T::KIND),
        singular: T::KIND.to_lowercase(),
        plural,
        namespaced,
        short_names: extra.short.iter().map(|s| s.to_string()).collect(),
        categories: extra.cats.iter().map(|s| s.to_string()).collect(),
        subresources: extra.subs.iter().map(|s| s.to_string()).collect(),
        verbs: ALL_VERBS.to_vec(),
        stored: true,
        key_prefix,
        normalize: Some(normalize_as::<T>),
        schema: Some(schema_of::<T>),
        schema_name: T::schema_name().into_owned(),
        crd_schema: None,
        printer_columns: None,
        scale_paths: None,
        return_deleted_object: false,
    }
}

/// A review kind: create only, answered and never stored.
fn review<T>() -> ResourceType
where
    T: k8s_openapi::Resource + DeserializeOwned + Serialize + schemars::JsonSchema + 'static,
    T::Scope: 'static,
{
    ResourceType {
        verbs: vec!["create"],
        stored: false,
        ..builtin::<T>(NONE)
    }
}

macro_rules! x {
    ([$($s:literal),*], [$($c:literal),*], [$($u:literal),*]) => {
        Extra { short: &[$($s),*], cats: &[$($c),*], subs: &[$($u),*] }
    };
}

/// The built-in resources, in discovery order.
pub fn builtins() -> Vec<ResourceType> {
    let mut v = vec![
        builtin::<core::Namespace>(x!(["ns"], [], ["status", "finalize"])),
        builtin::<core::Pod>(x!(
            ["po"],
            ["all"],
            [
                "status",
                "binding",
                "eviction",
                "log",
                "exec",
                "attach",
                "portforward",
                "ephemeralcontainers",
                "resize"
            ]
        )),
        builtin::<core::Node>(x!(["no"], [], ["status", "proxy"])),
        // `services/proxy` is not served (the apiserver does not reach pod
        // networks), so it is not advertised either.
        builtin::<core::Service>(x!(["svc"], ["all"], ["status"])),
        builtin::<core::Endpoints>(x!(["ep"], [], [])),
        ResourceType {
            verbs: vec!["get", "list"],
            stored: false,
            ..builtin::<core::ComponentStatus>(x!(["cs"], [], []))
        },
        builtin::<core::ConfigMap>(x!(["cm"], [], [])),
        builtin::<core::Secret>(NONE),
        builtin::<core::ServiceAccount>(x!(["sa"], [], ["token"])),
        builtin::<core::Event>(x!(["ev"], [], [])),
        builtin::<core::PersistentVolume>(x!(["pv"], [], ["status"])),
        builtin::<core::PersistentVolumeClaim>(x!(["pvc"], [], ["status"])),
        builtin::<core::ResourceQuota>(x!(["quota"], [], ["status"])),
        builtin::<core::LimitRange>(x!(["limits"], [], [])),
        builtin::<core::PodTemplate>(NONE),
        builtin::<core::ReplicationController>(x!(["rc"], ["all"], ["status", "scale"])),
        builtin::<apps::Deployment>(x!(["deploy"], ["all"], ["status", "scale"])),
        builtin::<apps::ReplicaSet>(x!(["rs"], ["all"], ["status", "scale"])),
        builtin::<apps::DaemonSet>(x!(["ds"], ["all"], ["status"])),
        builtin::<apps::StatefulSet>(x!(["sts"], ["all"], ["status", "scale"])),
        builtin::<apps::ControllerRevision>(NONE),
        review::<authentication::TokenReview>(),
        review::<authentication::SelfSubjectReview>(),
        review::<authorization::LocalSubjectAccessReview>(),
        review::<authorization::SelfSubjectAccessReview>(),
        review::<authorization::SelfSubjectRulesReview>(),
        review::<authorization::SubjectAccessReview>(),
        builtin::<batch::Job>(x!([], ["all"], ["status"])),
        builtin::<batch::CronJob>(x!(["cj"], ["all"], ["status"])),
        builtin::<autoscaling::HorizontalPodAutoscaler>(x!(["hpa"], ["all"], ["status"])),
        builtin::<coordination::Lease>(NONE),
        builtin::<discovery::EndpointSlice>(NONE),
        builtin::<events::Event>(x!(["ev"], [], [])),
        builtin::<networking::Ingress>(x!(["ing"], [], ["status"])),
        builtin::<networking::IngressClass>(NONE),
        builtin::<networking::NetworkPolicy>(x!(["netpol"], [], [])),
        builtin::<policy::PodDisruptionBudget>(x!(["pdb"], [], ["status"])),
        builtin::<scheduling::PriorityClass>(x!(["pc"], [], [])),
        builtin::<storage::StorageClass>(x!(["sc"], [], [])),
        builtin::<storage::CSIDriver>(NONE),
        builtin::<storage::CSINode>(NONE),
        builtin::<storage::VolumeAttachment>(x!([], [], ["status"])),
        builtin::<rbac::Role>(NONE),
        builtin::<rbac::RoleBinding>(NONE),
        builtin::<rbac::ClusterRole>(NONE),
        builtin::<rbac::ClusterRoleBinding>(NONE),
        builtin::<apiextensions::CustomResourceDefinition>(x!(["crd", "crds"], ["api-extensions"], ["status"])),
        // Stored and listed as upstream; requests for an APIService's group
        // are not proxied (no aggregation layer).
        builtin::<apiregistration::APIService>(x!([], ["api-extensions"], ["status"])),
    ];
    for r in &mut v {
        if r.kind == "Event" && r.group.is_empty() {
            // Core events have no short name clash in discovery upstream:
            // `ev` belongs to core/v1 events.
        } else if r.kind == "Event" {
            r.short_names.clear();
        }
        if r.group.is_empty() && r.kind == "Namespace" {
            r.verbs = vec!["create", "delete", "get", "list", "patch", "update", "watch"];
        }
        r.return_deleted_object = RETURN_DELETED_OBJECT.contains(&(r.group.as_str(), r.kind.as_str()));
    }
    v
}

/// The kinds whose registry sets `ReturnDeletedObject: true` upstream
/// (`pkg/registry/.../storage/storage.go`): a DELETE answers with the
/// object; every other kind, custom resources included, with a `Status`.
const RETURN_DELETED_OBJECT: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Pod"),
    ("", "Service"),
    ("", "ServiceAccount"),
    ("storage.k8s.io", "StorageClass"),
];

/// Group-version preference order as upstream's discovery lists them.
pub const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
];

/// The resource table. Built-ins are fixed; custom resources come and go
/// with their CRDs.
pub struct Registry {
    inner: RwLock<Tables>,
}

#[derive(Default)]
struct Tables {
    all: Vec<Arc<ResourceType>>,
    /// (group, version, plural) → resource.
    by_path: HashMap<(String, String, String), Arc<ResourceType>>,
}

impl Tables {
    fn insert(&mut self, r: Arc<ResourceType>) {
        self.by_path
            .insert((r.group.clone(), r.version.clone(), r.plural.clone()), r.clone());
        self.all.push(r);
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let mut t = Tables::default();
        for r in builtins() {
            t.insert(Arc::new(r));
        }
        Self { inner: RwLock::new(t) }
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.inner
            .read()
            .by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<ResourceType>> {
        self.inner.read().all.clone()
    }

    /// Groups with their versions, in discovery order (built-in groups
    /// first, then custom groups alphabetically).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let all = self.all();
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in &all {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, vs)) => {
                    if !vs.contains(&r.version) {
                        vs.push(r.version.clone());
                    }
                }
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        groups.sort_by_key(|(g, _)| {
            (
                GROUP_ORDER.iter().position(|x| x == g).unwrap_or(GROUP_ORDER.len()),
                g.clone(),
            )
        });
        groups
    }

    /// Replaces the custom resources of one CRD (by group and plural).
    pub fn set_custom(&self, group: &str, plural: &str, versions: Vec<ResourceType>) {
        let mut t = self.inner.write();
        let keep: Vec<Arc<ResourceType>> = t
            .all
            .iter()
            .filter(|r| !(r.is_custom() && r.group == group && r.plural == plural))
            .cloned()
            .collect();
        let mut fresh = Tables::default();
        for r in keep {
            fresh.insert(r);
        }
        for r in versions {
            fresh.insert(Arc::new(r));
        }
        *t = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_upstream_names_and_keys() {
        let reg = Registry::new();
        let pods = reg.lookup("", "v1", "pods").expect("pods");
        assert!(pods.namespaced);
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.key("default", "a"), "/registry/pods/default/a");
        let deploy = reg.lookup("apps", "v1", "deployments").expect("deployments");
        assert_eq!(deploy.short_names, vec!["deploy"]);
        assert_eq!(deploy.key_prefix, "/registry/deployments/");
        let nodes = reg.lookup("", "v1", "nodes").expect("nodes");
        assert!(!nodes.namespaced);
        assert_eq!(nodes.key("", "n1"), "/registry/nodes/n1");
        let crb = reg
            .lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
            .expect("crb");
        assert_eq!(crb.key_prefix, "/registry/clusterrolebindings/");
        assert_eq!(reg.groups()[0].0, "");
        // As upstream's /apis: the aggregator's own group first.
        assert_eq!(reg.groups()[1].0, "apiregistration.k8s.io");
        assert_eq!(reg.groups()[2].0, "apps");
        let apiservices = reg
            .lookup("apiregistration.k8s.io", "v1", "apiservices")
            .expect("apiservices");
        assert_eq!(
            apiservices.key("", "v1.apps"),
            "/registry/apiregistration.k8s.io/apiservices/v1.apps"
        );
    }

    /// Every built-in kind, read from the store, carries every field
    /// upstream always writes for it (per the table generated from
    /// upstream's Go types), and the table knows every kind we serve.
    #[test]
    fn every_builtin_kind_carries_the_fields_upstream_always_writes() {
        let reg = Registry::new();
        let mut checked = 0;
        for rt in reg.all() {
            let av = rt.api_version();
            let def = crate::always_fields::kinds()
                .find(|(k, _)| *k == format!("{av} {}", rt.kind))
                .map(|(_, d)| d);
            let always: Vec<_> = crate::always_fields::always(&rt.schema_name).collect();
            if always.is_empty() {
                continue;
            }
            assert_eq!(
                def,
                Some(rt.schema_name.as_str()),
                "{av} {} maps to its definition",
                rt.kind
            );
            // A minimal object as a client might store it.
            let minimal = serde_json::json!({"apiVersion": av, "kind": rt.kind, "metadata": {"name": "x"}});
            let bytes = serde_json::to_vec(&minimal).expect("json");
            let read = crate::storage::decode(rt.key("default", "x").as_bytes(), &bytes, 5, None).expect("decodes");
            for (field, zero) in always {
                let got = read.object.get(field);
                assert!(got.is_some(), "{av} {}: {field} is always written", rt.kind);
                if field != "metadata" {
                    // Nested fields filled in too: an empty struct's own always-fields.
                    let def = &rt.schema_name;
                    let mut want = serde_json::json!({ field: zero });
                    crate::always_fields::fill_as(def, &mut want);
                    assert_eq!(got, want.get(field), "{av} {}: {field}", rt.kind);
                }
            }
            checked += 1;
        }
        assert!(checked > 40, "only {checked} kinds checked");
    }

    #[test]
    fn normalize_drops_unknown_fields_and_rejects_bad_types() {
        let reg = Registry::new();
        let cm = reg.lookup("", "v1", "configmaps").expect("cm");
        let norm = cm.normalize.expect("builtin");
        let out = norm(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}, "bogus": 1
        }))
        .expect("valid");
        assert!(out.get("bogus").is_none());
        assert_eq!(out["data"]["k"], "v");
        assert!(norm(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": 5})).is_err());
    }
}
