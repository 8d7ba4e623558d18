//! OpenAPI v2 and v3 documents, generated from `k8s-openapi`'s schemas
//! (via `schemars`) plus upstream's patch metadata and CRD schemas.
//!
//! v3 is served per group-version (`/openapi/v3/apis/<g>/<v>`), v2 as one
//! document (JSON or gnostic protobuf); both carry every operation
//! ([`paths`]): kubectl reads the PATCH operations' `fieldValidation`
//! parameter to decide to validate on the server, client generators and
//! validators read the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value, json};

use proto::openapi_v2 as pb;

use crate::registry::{Registry, ResourceType};

pub mod paths;

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
    out.vendor_extension = vendor_extensions(v);
    out
}

fn vendor_extensions(v: &Value) -> Vec<pb::NamedAny> {
    v.as_object()
        .into_iter()
        .flat_map(|o| o.iter())
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, x)| pb::NamedAny {
            name: k.clone(),
            value: Some(yaml_any(x)),
        })
        .collect()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

fn parameter_pb(p: &Value) -> pb::ParametersItem {
    use pb::non_body_parameter::Oneof as NonBody;
    use pb::parameter::Oneof as Param;
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
    let unique_items = p.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false);
    let param = match s("in").as_str() {
        "body" => Param::BodyParameter(pb::BodyParameter {
            description: s("description"),
            name: s("name"),
            r#in: s("in"),
            required,
            schema: p.get("schema").map(schema_pb),
            vendor_extension: vendor_extensions(p),
        }),
        "path" => Param::NonBodyParameter(pb::NonBodyParameter {
            oneof: Some(NonBody::PathParameterSubSchema(pb::PathParameterSubSchema {
                required,
                r#in: s("in"),
                description: s("description"),
                name: s("name"),
                r#type: s("type"),
                format: s("format"),
                unique_items,
                vendor_extension: vendor_extensions(p),
            })),
        }),
        _ => Param::NonBodyParameter(pb::NonBodyParameter {
            oneof: Some(NonBody::QueryParameterSubSchema(pb::QueryParameterSubSchema {
                required,
                r#in: s("in"),
                description: s("description"),
                name: s("name"),
                r#type: s("type"),
                format: s("format"),
                unique_items,
                vendor_extension: vendor_extensions(p),
                ..Default::default()
            })),
        }),
    };
    pb::ParametersItem {
        oneof: Some(pb::parameters_item::Oneof::Parameter(pb::Parameter {
            oneof: Some(param),
        })),
    }
}

fn parameters_pb(v: &Value) -> Vec<pb::ParametersItem> {
    v.get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(parameter_pb).collect())
        .unwrap_or_default()
}

fn operation_pb(op: &Value) -> pb::Operation {
    let responses = op
        .get("responses")
        .and_then(Value::as_object)
        .map(|rs| {
            rs.iter()
                .map(|(code, r)| pb::NamedResponseValue {
                    name: code.clone(),
                    value: Some(pb::ResponseValue {
                        oneof: Some(pb::response_value::Oneof::Response(pb::Response {
                            description: r.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
                            schema: r.get("schema").map(|s| pb::SchemaItem {
                                oneof: Some(pb::schema_item::Oneof::Schema(schema_pb(s))),
                            }),
                            vendor_extension: Vec::new(),
                        })),
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::Operation {
        tags: strings(op, "tags"),
        description: op.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
        operation_id: op.get("operationId").and_then(Value::as_str).unwrap_or("").to_string(),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: parameters_pb(op),
        responses: Some(pb::Responses {
            response_code: responses,
            vendor_extension: Vec::new(),
        }),
        schemes: strings(op, "schemes"),
        vendor_extension: vendor_extensions(op),
        ..Default::default()
    }
}

fn paths_pb(paths: &Value) -> pb::Paths {
    let path = paths
        .as_object()
        .into_iter()
        .flat_map(|o| o.iter())
        .map(|(name, item)| {
            let op = |m: &str| item.get(m).map(operation_pb);
            pb::NamedPathItem {
                name: name.clone(),
                value: Some(pb::PathItem {
                    get: op("get"),
                    put: op("put"),
                    post: op("post"),
                    delete: op("delete"),
                    options: op("options"),
                    head: op("head"),
                    patch: op("patch"),
                    parameters: parameters_pb(item),
                    ..Default::default()
                }),
            }
        })
        .collect();
    pb::Paths {
        vendor_extension: Vec::new(),
        path,
    }
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
        paths: doc.get("paths").map(paths_pb),
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
    extra_schemas(&mut generator);
    let mut defs = generator.take_definitions(true);
    for r in &resources {
        if r.verbs.contains(&"list") {
            defs.entry(paths::list_def(r)).or_insert_with(|| list_schema(r));
        }
    }
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
        v3.insert(gv.clone(), Arc::new(gv_document(rs, &schemas)));
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

/// The definitions the operations name besides the kinds': request and
/// response envelopes, and the subresources' kinds.
fn extra_schemas(g: &mut schemars::SchemaGenerator) {
    use k8s_openapi::api::{
        authentication::v1 as authn, autoscaling::v1 as autoscaling, core::v1 as core, policy::v1 as policy,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    g.subschema_for::<meta::Status>();
    g.subschema_for::<meta::DeleteOptions>();
    g.subschema_for::<meta::Patch>();
    g.subschema_for::<meta::ListMeta>();
    g.subschema_for::<meta::WatchEvent<core::Pod>>();
    g.subschema_for::<autoscaling::Scale>();
    g.subschema_for::<core::Binding>();
    g.subschema_for::<policy::Eviction>();
    g.subschema_for::<authn::TokenRequest>();
}

/// A kind's list (`PodList`), as upstream defines each: items of the kind
/// and the list's metadata.
fn list_schema(r: &ResourceType) -> Value {
    json!({
        "description": format!("{} is a list of {}", r.list_kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", r.schema_name)}},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"}]},
        },
        "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.list_kind}],
    })
}

/// One group-version's v3 document: its operations and the definitions
/// they reach.
fn gv_document(rs: &[&ResourceType], schemas: &Value) -> Value {
    let items: Vec<paths::PathItem> = rs.iter().flat_map(|r| paths::resource_paths(r)).collect();
    let paths = paths::v3(&items);
    let mut roots = Vec::new();
    collect_refs(&paths, &mut roots);
    roots.extend(rs.iter().map(|r| r.schema_name.clone()));
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
    let items: Vec<paths::PathItem> = resources.iter().flat_map(|r| paths::resource_paths(r)).collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths::v2(&items),
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

    #[test]
    fn v2_lists_every_operation_with_upstreams_ids_and_shapes() {
        let api = OpenApi::new(Arc::new(Registry::new()));
        let doc = api.v2();
        let paths = &doc["paths"];
        let cases = [
            (
                "/api/v1/namespaces/{namespace}/pods/{name}",
                "get",
                "readCoreV1NamespacedPod",
                "get",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods",
                "post",
                "createCoreV1NamespacedPod",
                "post",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods",
                "delete",
                "deleteCoreV1CollectionNamespacedPod",
                "deletecollection",
            ),
            (
                "/api/v1/watch/namespaces/{namespace}/pods/{name}",
                "get",
                "watchCoreV1NamespacedPod",
                "watch",
            ),
            (
                "/api/v1/watch/pods",
                "get",
                "watchCoreV1PodListForAllNamespaces",
                "watchlist",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "get",
                "readCoreV1NamespacedPodLog",
                "get",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/eviction",
                "post",
                "createCoreV1NamespacedPodEviction",
                "post",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers",
                "patch",
                "patchCoreV1NamespacedPodEphemeralcontainers",
                "patch",
            ),
            (
                "/api/v1/namespaces/{name}/finalize",
                "put",
                "replaceCoreV1NamespaceFinalize",
                "put",
            ),
            (
                "/api/v1/nodes/{name}/proxy",
                "delete",
                "connectCoreV1DeleteNodeProxy",
                "connect",
            ),
            ("/api/v1/componentstatuses", "get", "listCoreV1ComponentStatus", "list"),
            (
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
                "put",
                "replaceRbacAuthorizationV1ClusterRole",
                "put",
            ),
            (
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                "post",
                "createAuthorizationV1SelfSubjectAccessReview",
                "post",
            ),
        ];
        for (path, method, id, action) in cases {
            let op = &paths[path][method];
            assert_eq!(op["operationId"], id, "{method} {path}");
            assert_eq!(op["x-kubernetes-action"], action, "{method} {path}");
        }
        // What is not served is not listed.
        assert!(paths["/api/v1/componentstatuses/{name}"]["delete"].is_null());
        assert!(paths["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/{name}"].is_null());
        assert!(paths["/api/v1/namespaces/{namespace}/services/{name}/proxy"].is_null());
        // Every reference resolves.
        let mut refs = Vec::new();
        collect_refs(paths, &mut refs);
        for r in refs {
            assert!(doc["definitions"][&r].is_object(), "{r} is not defined");
        }
        // Parameters: body first, query ones typed.
        let patch = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["parameters"][0],
            json!({"in": "body", "name": "body", "required": true,
            "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}})
        );
        let force = patch["parameters"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "force"));
        assert_eq!(
            force.map(|p| (p["in"].clone(), p["type"].clone())),
            Some((json!("query"), json!("boolean")))
        );
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );

        // The protobuf form holds the same paths.
        use prost::Message;
        let pb = pb::Document::decode(api.v2_protobuf().as_slice()).expect("protobuf");
        let n = pb.paths.as_ref().map_or(0, |p| p.path.len());
        assert_eq!(n, paths.as_object().map_or(0, |p| p.len()));
    }
}
