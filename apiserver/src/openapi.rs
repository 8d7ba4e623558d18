//! OpenAPI v2 and v3 documents, generated from `k8s-openapi`'s schemas
//! (via `schemars`) plus upstream's patch metadata and CRD schemas.
//!
//! v3 is served per group-version (`/openapi/v3/apis/<g>/<v>`), with a PATCH
//! operation per kind that lists the `fieldValidation` and `dryRun`
//! parameters: kubectl reads those to decide to validate on the server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value, json};

use proto::openapi_v2 as pb;

use crate::registry::{Registry, ResourceType};

/// The list markers `Container` and `EphemeralContainer` share:
/// (property, list type, map keys).
const CONTAINER_LIST_META: &[(&str, &str, &[&str])] = &[
    ("ports", "map", &["containerPort", "protocol"]),
    ("env", "map", &["name"]),
    ("volumeMounts", "map", &["mountPath"]),
    ("volumeDevices", "map", &["devicePath"]),
    ("command", "atomic", &[]),
    ("args", "atomic", &[]),
];

/// Upstream's `+listType`/`+listMapKey` markers (`x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys`): (definition, property, list type, map
/// keys). Server-side apply keys list entries by them; lists without one
/// are atomic, as upstream.
const LIST_META: &[(&str, &str, &str, &[&str])] = &[
    ("io.k8s.api.core.v1.PodSpec", "containers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "map", &["name"]),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "map",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", "atomic", &[]),
    ("io.k8s.api.core.v1.PodSpec", "readinessGates", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "envFrom", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "resizePolicy", "atomic", &[]),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodStatus", "containerStatuses", "atomic", &[]),
    ("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", "atomic", &[]),
    (
        "io.k8s.api.core.v1.PodStatus",
        "ephemeralContainerStatuses",
        "atomic",
        &[],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "map",
        &["name"],
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "set", &[]),
    ("io.k8s.api.core.v1.NodeSpec", "taints", "atomic", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "map", &["type"]),
    ("io.k8s.api.core.v1.NodeStatus", "images", "atomic", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "volumesInUse", "atomic", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "volumesAttached", "atomic", &[]),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "map", &["type"]),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "map",
        &["type"],
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "map",
        &["type"],
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "map", &["port", "protocol"]),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "externalIPs", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "atomic", &[]),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "loadBalancerSourceRanges",
        "atomic",
        &[],
    ),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "map", &["name"]),
    ("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", "atomic", &[]),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "set",
        &[],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "map",
        &["uid"],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "managedFields",
        "atomic",
        &[],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "matchExpressions",
        "atomic",
        &[],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
        "values",
        "atomic",
        &[],
    ),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "map", &["type"]),
    (
        "io.k8s.api.apps.v1.StatefulSetSpec",
        "volumeClaimTemplates",
        "atomic",
        &[],
    ),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "atomic", &[]),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", "atomic", &[]),
];

/// Upstream's `patchStrategy`/`patchMergeKey` struct tags: (definition,
/// property, strategy, merge key).
const PATCH_META: &[(&str, &str, &str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", "name"),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", "name"),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        "name",
    ),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", "name"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        "topologyKey",
    ),
    ("io.k8s.api.core.v1.Container", "ports", "merge", "containerPort"),
    ("io.k8s.api.core.v1.Container", "env", "merge", "name"),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", "mountPath"),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", "devicePath"),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", "name"),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip"),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip"),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        "name",
    ),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", "type"),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", "type"),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "merge",
        "type",
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port"),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", "type"),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", "name"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        "",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        "uid",
    ),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", ""),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", "type"),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", "type"),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", "type"),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", "type"),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", "type"),
];

struct Cache {
    /// components.schemas for every kind we serve.
    schemas: Arc<Value>,
    /// v3 documents by "api/v1" / "apis/<g>/<v>".
    v3: BTreeMap<String, Arc<Value>>,
    v2: Arc<Value>,
    v2_pb: Arc<Vec<u8>>,
}

/// Generated documents, rebuilt when the set of resources changes.
pub struct OpenApi {
    registry: Arc<Registry>,
    cache: RwLock<Built>,
    /// Held by the one build under way.
    building: Mutex<()>,
}

#[derive(Default)]
struct Built {
    cache: Option<Arc<Cache>>,
    /// Bumped by every invalidation: a build that began before one is
    /// returned to its caller but not kept.
    generation: u64,
}

impl OpenApi {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            cache: RwLock::default(),
            building: Mutex::new(()),
        }
    }

    /// Forgets the documents (after a CRD changed).
    pub fn invalidate(&self) {
        let mut built = self.cache.write();
        built.cache = None;
        built.generation += 1;
    }

    /// Builds the documents unless they are built: at start and after a
    /// CRD changed, so that no request waits for a build (creates need the
    /// schemas for managedFields).
    pub fn prebuild(&self) {
        self.cache();
    }

    /// The documents, built once by the first caller that needs them. The
    /// callers that arrive meanwhile wait for that build: each building its
    /// own, 64 concurrent creates after a start took 60 ms.
    fn cache(&self) -> Arc<Cache> {
        if let Some(c) = &self.cache.read().cache {
            return c.clone();
        }
        let _building = self.building.lock();
        let generation = {
            let built = self.cache.read();
            if let Some(c) = &built.cache {
                return c.clone();
            }
            built.generation
        };
        let c = Arc::new(build(&self.registry));
        let mut built = self.cache.write();
        if built.generation == generation {
            built.cache = Some(c.clone());
        }
        c
    }

    pub fn schemas(&self) -> Arc<Value> {
        self.cache().schemas.clone()
    }

    /// `/openapi/v3`: the index of group-version documents.
    pub fn v3_index(&self) -> Value {
        let c = self.cache();
        let mut paths = Map::new();
        for (k, doc) in &c.v3 {
            paths.insert(
                k.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{k}?hash={}", hash(doc))}),
            );
        }
        json!({ "paths": paths })
    }

    pub fn v3(&self, gv: &str) -> Option<Arc<Value>> {
        self.cache().v3.get(gv).cloned()
    }

    pub fn v2(&self) -> Arc<Value> {
        self.cache().v2.clone()
    }

    /// `/openapi/v2` in gnostic's protobuf form.
    pub fn v2_protobuf(&self) -> Arc<Vec<u8>> {
        self.cache().v2_pb.clone()
    }
}

fn yaml_any(v: &Value) -> pb::Any {
    pb::Any {
        yaml: serde_yaml::to_string(v).unwrap_or_default(),
    }
}

fn schema_pb(v: &Value) -> pb::Schema {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let i = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    let mut out = pb::Schema {
        r#ref: s("$ref"),
        format: s("format"),
        title: s("title"),
        description: s("description"),
        default: v.get("default").map(yaml_any),
        maximum: v.get("maximum").and_then(Value::as_f64).unwrap_or(0.0),
        minimum: v.get("minimum").and_then(Value::as_f64).unwrap_or(0.0),
        max_length: i("maxLength"),
        min_length: i("minLength"),
        pattern: s("pattern"),
        max_items: i("maxItems"),
        min_items: i("minItems"),
        read_only: v.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
        ..Default::default()
    };
    if let Some(r) = v.get("required").and_then(Value::as_array) {
        out.required = r.iter().filter_map(Value::as_str).map(String::from).collect();
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        out.r#enum = e.iter().map(yaml_any).collect();
    }
    match v.get("type") {
        Some(Value::String(t)) => out.r#type = Some(pb::TypeItem { value: vec![t.clone()] }),
        Some(Value::Array(ts)) => {
            out.r#type = Some(pb::TypeItem {
                value: ts
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .map(String::from)
                    .collect(),
            })
        }
        _ => {}
    }
    if let Some(items) = v.get("items") {
        out.items = Some(pb::ItemsItem {
            schema: vec![schema_pb(items)],
        });
    }
    match v.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            out.additional_properties = Some(Box::new(pb::AdditionalPropertiesItem {
                oneof: Some(pb::additional_properties_item::Oneof::Boolean(*b)),
            }))
        }
        Some(a @ Value::Object(_)) => {
            out.additional_properties = Some(Box::new(pb::AdditionalPropertiesItem {
                oneof: Some(pb::additional_properties_item::Oneof::Schema(Box::new(schema_pb(a)))),
            }))
        }
        _ => {}
    }
    if let Some(all) = v.get("allOf").and_then(Value::as_array) {
        out.all_of = all.iter().map(schema_pb).collect();
    }
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        out.properties = Some(pb::Properties {
            additional_properties: props
                .iter()
                .map(|(k, p)| pb::NamedSchema {
                    name: k.clone(),
                    value: Some(schema_pb(p)),
                })
                .collect(),
        });
    }
    if let Some(o) = v.as_object() {
        for (k, x) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
            out.vendor_extension.push(pb::NamedAny {
                name: k.clone(),
                value: Some(yaml_any(x)),
            });
        }
    }
    out
}

fn v2_protobuf(doc: &Value) -> Vec<u8> {
    use prost::Message;
    let defs = doc
        .get("definitions")
        .and_then(Value::as_object)
        .map(|d| {
            d.iter()
                .map(|(k, v)| pb::NamedSchema {
                    name: k.clone(),
                    value: Some(schema_pb(v)),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::Document {
        swagger: "2.0".into(),
        info: Some(pb::Info {
            title: "Kubernetes".into(),
            version: "v1.33.0".into(),
        }),
        definitions: Some(pb::Definitions {
            additional_properties: defs,
        }),
    }
    .encode_to_vec()
}

pub fn hash(doc: &Value) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(serde_json::to_vec(doc).unwrap_or_default());
    h.iter().take(32).map(|b| format!("{b:02X}")).collect()
}

fn build(registry: &Registry) -> Cache {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let resources = registry.all();
    for r in &resources {
        if let Some(f) = r.schema {
            f(&mut generator);
        }
    }
    let mut defs = generator.take_definitions(true);
    for (def, prop, strategy, key) in PATCH_META {
        if let Some(p) = defs
            .get_mut(*def)
            .and_then(|d| d.pointer_mut(&format!("/properties/{prop}")))
        {
            p["x-kubernetes-patch-strategy"] = json!(strategy);
            if !key.is_empty() {
                p["x-kubernetes-patch-merge-key"] = json!(key);
            }
        }
    }
    let containers = ["io.k8s.api.core.v1.Container", "io.k8s.api.core.v1.EphemeralContainer"]
        .into_iter()
        .flat_map(|def| {
            CONTAINER_LIST_META
                .iter()
                .map(move |(prop, t, keys)| (def, *prop, *t, *keys))
        });
    let list_meta = LIST_META.iter().copied().chain(containers);
    for (def, prop, list_type, keys) in list_meta {
        if let Some(p) = defs
            .get_mut(def)
            .and_then(|d| d.pointer_mut(&format!("/properties/{prop}")))
        {
            p["x-kubernetes-list-type"] = json!(list_type);
            if !keys.is_empty() {
                p["x-kubernetes-list-map-keys"] = json!(keys);
            }
        }
    }
    // Custom resources: their CRD schemas, with metadata as ObjectMeta.
    for r in &resources {
        if let Some(schema) = &r.crd_schema {
            let mut s = schema.clone();
            if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert(
                    "metadata".into(),
                    json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}),
                );
                props.entry("apiVersion").or_insert_with(|| json!({"type": "string"}));
                props.entry("kind").or_insert_with(|| json!({"type": "string"}));
            }
            defs.insert(r.schema_name.clone(), s);
        }
    }
    for r in &resources {
        let name = r.schema_name.clone();
        let gvk = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        if let Some(d) = defs.get_mut(&name).and_then(Value::as_object_mut) {
            d.insert("x-kubernetes-group-version-kind".into(), gvk);
            // k8s-openapi's types always carry metadata, so their schemas
            // require it; upstream's never do (a review has none, a
            // generateName create has no name).
            if let Some(req) = d.get_mut("required").and_then(Value::as_array_mut) {
                req.retain(|f| f != "metadata");
                if req.is_empty() {
                    d.remove("required");
                }
            }
        }
    }
    let schemas = Value::Object(defs);
    let mut v3 = BTreeMap::new();
    let mut by_gv: BTreeMap<String, Vec<&ResourceType>> = BTreeMap::new();
    for r in &resources {
        let gv = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        by_gv.entry(gv).or_default().push(r);
    }
    for (gv, rs) in &by_gv {
        v3.insert(gv.clone(), Arc::new(gv_document(gv, rs, &schemas)));
    }
    let v2 = Arc::new(v2_document(&resources, &schemas));
    let v2_pb = Arc::new(v2_protobuf(&v2));
    Cache {
        schemas: Arc::new(schemas),
        v3,
        v2,
        v2_pb,
    }
}

/// Names of definitions reachable from `roots`.
fn reachable(schemas: &Value, roots: &[String]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = roots.to_vec();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(d) = schemas.get(&n) {
            collect_refs(d, &mut stack);
        }
    }
    seen
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(r) = o.get("$ref").and_then(Value::as_str)
                && let Some(n) = r.rsplit('/').next()
            {
                out.push(n.to_string());
            }
            for x in o.values() {
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn param(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "schema": {"type": "string"}, "uniqueItems": true})
}

fn gv_document(gv: &str, rs: &[&ResourceType], schemas: &Value) -> Value {
    let mut paths = Map::new();
    let mut roots = vec![
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".to_string(),
    ];
    for r in rs {
        let def = r.schema_name.clone();
        roots.push(def.clone());
        let base = format!("/{gv}");
        let (coll, item) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (format!("{base}/{}", r.plural), format!("{base}/{}/{{name}}", r.plural))
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let obj_ref = json!({"$ref": format!("#/components/schemas/{def}")});
        let ok =
            |schema: &Value| json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}});
        let op = |action: &str, id: String, params: Vec<Value>, schema: &Value| {
            json!({
                "operationId": id,
                "parameters": params,
                "responses": ok(schema),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let write_params = || {
            vec![
                param(
                    "dryRun",
                    "When present, indicates that modifications should not be persisted.",
                ),
                param(
                    "fieldManager",
                    "fieldManager is a name associated with the actor or entity that is making these changes.",
                ),
                param(
                    "fieldValidation",
                    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
                ),
            ]
        };
        let mut patch_params = write_params();
        patch_params.push(param("force", "Force is going to \"force\" Apply requests."));
        let id = |verb: &str| format!("{verb}{}", r.kind);
        let mut item_ops = Map::new();
        item_ops.insert("get".into(), op("get", id("read"), vec![], &obj_ref));
        item_ops.insert("put".into(), op("put", id("replace"), write_params(), &obj_ref));
        let mut patch_op = op("patch", id("patch"), patch_params, &obj_ref);
        // Custom resources take no strategic merge patch; kubectl reads
        // this list to pick the patch type.
        let patch_ref = json!({"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}});
        let mut content = serde_json::Map::new();
        for ct in [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            if !(r.is_custom() && ct == "application/strategic-merge-patch+json") {
                content.insert(ct.into(), patch_ref.clone());
            }
        }
        patch_op["requestBody"] = json!({"content": content, "required": true});
        item_ops.insert("patch".into(), patch_op);
        item_ops.insert(
            "delete".into(),
            op("delete", id("delete"), vec![param("dryRun", "")], &obj_ref),
        );
        item_ops.insert(
            "parameters".into(),
            json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]),
        );
        let mut coll_ops = Map::new();
        coll_ops.insert("get".into(), op("list", id("list"), vec![], &obj_ref));
        coll_ops.insert("post".into(), op("post", id("create"), write_params(), &obj_ref));
        if !r.stored {
            // A review kind: POST to the collection is all there is.
            coll_ops.remove("get");
        } else {
            paths.insert(item, Value::Object(item_ops));
        }
        paths.insert(coll, Value::Object(coll_ops));
    }
    let keep = reachable(schemas, &roots);
    let mut comps = Map::new();
    for n in keep {
        if let Some(d) = schemas.get(&n) {
            comps.insert(n, d.clone());
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": comps},
    })
}

/// v2 puts `$ref` next to its siblings where v3 wraps it in `allOf`.
fn unwrap_all_of(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let single_ref = o
                .get("allOf")
                .and_then(Value::as_array)
                .filter(|a| a.len() == 1)
                .and_then(|a| a[0].get("$ref"))
                .cloned();
            if let Some(r) = single_ref {
                o.remove("allOf");
                o.insert("$ref".into(), r);
            }
            o.values_mut().for_each(unwrap_all_of);
        }
        Value::Array(a) => a.iter_mut().for_each(unwrap_all_of),
        _ => {}
    }
}

fn v2_document(resources: &[Arc<ResourceType>], schemas: &Value) -> Value {
    let text = serde_json::to_string(schemas)
        .unwrap_or_default()
        .replace("#/components/schemas/", "#/definitions/");
    let mut defs: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    unwrap_all_of(&mut defs);
    let _ = resources;
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": {},
        "definitions": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_documents_carry_gvk_patch_meta_and_field_validation() {
        let reg = Arc::new(Registry::new());
        let api = OpenApi::new(reg);
        let idx = api.v3_index();
        assert!(idx["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().is_some());
        let doc = api.v3("api/v1").expect("core doc");
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(pod.get("required").is_none(), "metadata is not required, as upstream");
        let spec = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"];
        assert_eq!(spec["properties"]["containers"]["x-kubernetes-patch-merge-key"], "name");
        let ports = &doc["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-list-type"], "map");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(
            patch["parameters"]
                .as_array()
                .expect("params")
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let schemas = api.schemas();
        let s = apimachinery::strategic::Schema::new(&schemas, "io.k8s.api.apps.v1.Deployment");
        assert!(s.is_some());
    }
}
