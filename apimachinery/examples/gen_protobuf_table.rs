//! Generates `apimachinery/src/protobuf/k8s-wire.txt`, the table that
//! `apimachinery::protobuf` decodes Kubernetes protobuf bodies with.
//!
//! ```text
//! cargo run -p apimachinery --example gen_protobuf_table -- \
//!     ~/.cargo/registry/src/<index>/k8s-pb-0.9.0/src > apimachinery/src/protobuf/k8s-wire.txt
//! ```
//!
//! Field numbers and wire kinds come from k8s-pb's prost-generated source
//! (parsed with `syn`); JSON names and group/version/kinds come from
//! k8s-openapi's OpenAPI schemas, so that the table speaks the same JSON
//! dialect as the rest of the apiserver. A Rust field whose JSON name cannot
//! be found is an error, never a guess.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::Value;
use syn::ext::IdentExt as _;
use syn::punctuated::Punctuated;

/// Packages whose every message goes into the table; messages they refer to
/// in other packages are added too. `api/*/v1` is expanded from the source.
const EXTRA_PACKAGES: &[&str] = &[
    "api/autoscaling/v2",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/runtime",
];

/// Messages whose JSON form is not an object, by schema name.
const SHAPES: &[(&str, &str)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "time"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime", "microtime"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Duration", "duration"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "raw-json"),
    ("io.k8s.apimachinery.pkg.runtime.RawExtension", "raw-json"),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "quantity"),
    ("io.k8s.apimachinery.pkg.api.resource.QuantityValue", "quantity"),
    ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", "int-or-string"),
];

/// Kinds the apiserver accepts under any group version, like upstream's
/// "unversioned" meta types.
const ANY_VERSION_KINDS: &[(&str, &str)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "DeleteOptions"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "Status"),
];

/// Fields of k8s-pb (a newer Kubernetes) that the OpenAPI schema of the
/// version we serve does not have; upstream of that version skips them as
/// unknown fields, and so do we. Anything else without a JSON name is an error.
const NEWER_FIELDS: &[(&str, &str)] = &[
    ("io.k8s.api.core.v1.Container", "restart_policy_rules"),
    ("io.k8s.api.core.v1.EphemeralContainerCommon", "restart_policy_rules"),
    ("io.k8s.api.core.v1.EnvVarSource", "file_key_ref"),
    ("io.k8s.api.core.v1.NodeStatus", "declared_features"),
    ("io.k8s.api.core.v1.PodSpec", "hostname_override"),
    ("io.k8s.api.core.v1.PodSpec", "workload_ref"),
    ("io.k8s.api.core.v1.PodStatus", "extended_resource_claim_status"),
    ("io.k8s.api.core.v1.PodStatus", "allocated_resources"),
    ("io.k8s.api.core.v1.PodStatus", "resources"),
    ("io.k8s.api.core.v1.VolumeProjection", "pod_certificate"),
    (
        "io.k8s.api.storage.v1.CSIDriverSpec",
        "service_account_token_in_secrets",
    ),
];

/// OpenAPI definitions plus the group/version/kinds of the top-level types.
#[derive(Default)]
struct OpenApi {
    definitions: serde_json::Map<String, Value>,
    gvks: BTreeMap<String, Vec<(String, String)>>,
}

impl OpenApi {
    fn load() -> Self {
        let mut generator = SchemaGenerator::default();
        let mut gvks: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        fn resource<T: JsonSchema + k8s_openapi::Resource>(
            generator: &mut SchemaGenerator,
            gvks: &mut BTreeMap<String, Vec<(String, String)>>,
        ) {
            generator.subschema_for::<T>();
            gvks.entry(T::schema_name().into_owned())
                .or_default()
                .push((T::API_VERSION.to_owned(), T::KIND.to_owned()));
        }
        macro_rules! resources {
            ($($ty:ty),* $(,)?) => { $( resource::<$ty>(&mut generator, &mut gvks); )* };
        }
        macro_rules! types {
            ($($ty:ty),* $(,)?) => { $( generator.subschema_for::<$ty>(); )* };
        }
        use k8s_openapi::api::{
            admissionregistration, apps, authentication, authorization, autoscaling, batch, certificates, coordination,
            core, discovery, events, flowcontrol, networking, node, policy, rbac, scheduling, storage,
        };
        use k8s_openapi::apimachinery::pkg::apis::meta;
        resources!(
            admissionregistration::v1::MutatingWebhookConfiguration,
            admissionregistration::v1::ValidatingAdmissionPolicy,
            admissionregistration::v1::ValidatingAdmissionPolicyBinding,
            admissionregistration::v1::ValidatingWebhookConfiguration,
            apps::v1::ControllerRevision,
            apps::v1::DaemonSet,
            apps::v1::Deployment,
            apps::v1::ReplicaSet,
            apps::v1::StatefulSet,
            authentication::v1::SelfSubjectReview,
            authentication::v1::TokenRequest,
            authentication::v1::TokenReview,
            authorization::v1::LocalSubjectAccessReview,
            authorization::v1::SelfSubjectAccessReview,
            authorization::v1::SelfSubjectRulesReview,
            authorization::v1::SubjectAccessReview,
            autoscaling::v1::HorizontalPodAutoscaler,
            autoscaling::v1::Scale,
            autoscaling::v2::HorizontalPodAutoscaler,
            batch::v1::CronJob,
            batch::v1::Job,
            certificates::v1::CertificateSigningRequest,
            coordination::v1::Lease,
            core::v1::Binding,
            core::v1::ComponentStatus,
            core::v1::ConfigMap,
            core::v1::Endpoints,
            core::v1::Event,
            core::v1::LimitRange,
            core::v1::Namespace,
            core::v1::Node,
            core::v1::PersistentVolume,
            core::v1::PersistentVolumeClaim,
            core::v1::Pod,
            core::v1::PodTemplate,
            core::v1::ReplicationController,
            core::v1::ResourceQuota,
            core::v1::Secret,
            core::v1::Service,
            core::v1::ServiceAccount,
            discovery::v1::EndpointSlice,
            events::v1::Event,
            flowcontrol::v1::FlowSchema,
            flowcontrol::v1::PriorityLevelConfiguration,
            networking::v1::Ingress,
            networking::v1::IngressClass,
            networking::v1::IPAddress,
            networking::v1::NetworkPolicy,
            networking::v1::ServiceCIDR,
            node::v1::RuntimeClass,
            policy::v1::Eviction,
            policy::v1::PodDisruptionBudget,
            rbac::v1::ClusterRole,
            rbac::v1::ClusterRoleBinding,
            rbac::v1::Role,
            rbac::v1::RoleBinding,
            scheduling::v1::PriorityClass,
            storage::v1::CSIDriver,
            storage::v1::CSINode,
            storage::v1::CSIStorageCapacity,
            storage::v1::StorageClass,
            storage::v1::VolumeAttachment,
            meta::v1::APIGroup,
            meta::v1::APIGroupList,
            meta::v1::APIResourceList,
            meta::v1::APIVersions,
            meta::v1::Status,
        );
        types!(
            meta::v1::APIResource,
            meta::v1::Condition,
            meta::v1::DeleteOptions,
            meta::v1::FieldSelectorRequirement,
            meta::v1::FieldsV1,
            meta::v1::GroupVersionForDiscovery,
            meta::v1::LabelSelector,
            meta::v1::LabelSelectorRequirement,
            meta::v1::ListMeta,
            meta::v1::ManagedFieldsEntry,
            meta::v1::MicroTime,
            meta::v1::ObjectMeta,
            meta::v1::OwnerReference,
            meta::v1::Preconditions,
            meta::v1::ServerAddressByClientCIDR,
            meta::v1::StatusCause,
            meta::v1::StatusDetails,
            meta::v1::Time,
            k8s_openapi::apimachinery::pkg::runtime::RawExtension,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
        );
        let definitions = generator.take_definitions(false);
        Self { definitions, gvks }
    }

    /// The definition whose name equals `name` ignoring case.
    fn find(&self, name: &str) -> Option<(&str, &Value)> {
        let lower = name.to_lowercase();
        self.definitions
            .iter()
            .find(|(candidate, _)| candidate.to_lowercase() == lower)
            .map(|(candidate, schema)| (candidate.as_str(), schema))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Optional,
    Repeated,
    Map,
}

impl Label {
    fn as_str(self) -> &'static str {
        match self {
            Label::Optional => "opt",
            Label::Repeated => "rep",
            Label::Map => "map",
        }
    }
}

struct Field {
    rust_name: String,
    docs: String,
    tag: u32,
    label: Label,
    /// `string`, `int32`, ..., or `message`; for maps, the value kind.
    kind: String,
    /// For message fields: the module path and name of the message type.
    message: Option<MessageKey>,
}

/// A message's module path (`["api", "core", "v1"]`) and Rust name.
type MessageKey = (Vec<String>, String);

struct Message {
    docs: String,
    fields: Vec<Field>,
}

/// All messages of the k8s-pb modules read so far.
struct Source {
    root: PathBuf,
    modules: BTreeMap<Vec<String>, BTreeMap<String, Message>>,
}

impl Source {
    fn module(&mut self, path: &[String]) -> Result<&BTreeMap<String, Message>, String> {
        if !self.modules.contains_key(path) {
            let mut file = self.root.clone();
            file.extend(path);
            file.push("mod.rs");
            let text = std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            let parsed = syn::parse_file(&text).map_err(|e| format!("parsing {}: {e}", file.display()))?;
            let mut messages = BTreeMap::new();
            for item in parsed.items {
                if let syn::Item::Struct(item) = item
                    && derives_message(&item.attrs)
                {
                    let name = item.ident.to_string();
                    let message = parse_message(path, &item).map_err(|e| format!("{}: {name}: {e}", file.display()))?;
                    messages.insert(name, message);
                }
            }
            self.modules.insert(path.to_vec(), messages);
        }
        Ok(&self.modules[path])
    }
}

fn derives_message(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("derive")
            && attr
                .parse_args_with(Punctuated::<syn::Path, syn::Token![,]>::parse_terminated)
                .is_ok_and(|paths| {
                    paths
                        .iter()
                        .any(|p| p.segments.last().is_some_and(|s| s.ident == "Message"))
                })
    })
}

fn docs(attrs: &[syn::Attribute]) -> String {
    let mut out = String::new();
    for attr in attrs {
        if let syn::Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s), ..
            }) = &nv.value
        {
            out.push_str(&s.value());
            out.push('\n');
        }
    }
    out
}

fn parse_message(module: &[String], item: &syn::ItemStruct) -> Result<Message, String> {
    let mut fields = Vec::new();
    for field in &item.fields {
        let Some(ident) = &field.ident else {
            return Err("tuple struct".into());
        };
        let rust_name = ident.unraw().to_string();
        let Some(attr) = field.attrs.iter().find(|a| a.path().is_ident("prost")) else {
            return Err(format!("field {rust_name} has no #[prost] attribute"));
        };
        let metas = attr
            .parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
            .map_err(|e| format!("field {rust_name}: {e}"))?;
        let mut tag = None;
        let mut label = Label::Optional;
        let mut kind = None;
        for meta in &metas {
            let name = meta.path().get_ident().map(ToString::to_string).unwrap_or_default();
            let value = match meta {
                syn::Meta::NameValue(syn::MetaNameValue {
                    value:
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s), ..
                        }),
                    ..
                }) => Some(s.value()),
                _ => None,
            };
            match (name.as_str(), value) {
                ("tag", Some(v)) => tag = Some(v.parse::<u32>().map_err(|e| format!("field {rust_name}: {e}"))?),
                ("optional", None) => label = Label::Optional,
                ("repeated", None) => label = Label::Repeated,
                ("packed", Some(_)) => {}
                ("btree_map" | "hash_map", Some(v)) => {
                    label = Label::Map;
                    let (key, value) = v.split_once(',').ok_or(format!("field {rust_name}: map {v:?}"))?;
                    if key.trim() != "string" {
                        return Err(format!("field {rust_name}: map key {key:?} is not a string"));
                    }
                    kind = Some(value.trim().to_owned());
                }
                ("bytes", Some(_)) => kind = Some("bytes".into()),
                (
                    "string" | "bool" | "int32" | "int64" | "uint32" | "uint64" | "double" | "float" | "message",
                    None,
                ) => kind = Some(name.clone()),
                _ => return Err(format!("field {rust_name}: unsupported prost attribute {name:?}")),
            }
        }
        let tag = tag.ok_or(format!("field {rust_name}: no tag"))?;
        let kind = kind.ok_or(format!("field {rust_name}: no kind"))?;
        if !matches!(
            kind.as_str(),
            "string" | "bool" | "int32" | "int64" | "bytes" | "double" | "message"
        ) {
            return Err(format!(
                "field {rust_name}: kind {kind} is not supported by the decoder"
            ));
        }
        let message = if kind == "message" {
            Some(resolve(
                module,
                innermost(&field.ty).ok_or(format!("field {rust_name}: type"))?,
            ))
        } else {
            None
        };
        fields.push(Field {
            rust_name,
            docs: docs(&field.attrs),
            tag,
            label,
            kind,
            message,
        });
    }
    fields.sort_by_key(|f| f.tag);
    Ok(Message {
        docs: docs(&item.attrs),
        fields,
    })
}

/// The message type inside `Option<T>`, `Vec<T>` or `BTreeMap<String, T>`.
fn innermost(ty: &syn::Type) -> Option<&syn::Path> {
    let syn::Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => match args.args.last()? {
            syn::GenericArgument::Type(inner) => innermost(inner),
            _ => None,
        },
        syn::PathArguments::None => Some(&path.path),
        syn::PathArguments::Parenthesized(_) => None,
    }
}

fn resolve(module: &[String], path: &syn::Path) -> MessageKey {
    let mut absolute = module.to_vec();
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let (name, prefix) = segments.split_last().expect("a path has a segment");
    for segment in prefix {
        match segment.as_str() {
            "super" => {
                absolute.pop();
            }
            "crate" => absolute.clear(),
            "self" => {}
            other => absolute.push(other.to_owned()),
        }
    }
    (absolute, name.clone())
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn served_packages(root: &Path) -> Result<Vec<Vec<String>>, String> {
    let mut packages = Vec::new();
    let api = root.join("api");
    let entries = std::fs::read_dir(&api).map_err(|e| format!("reading {}: {e}", api.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.path().join("v1").join("mod.rs").is_file() {
            let group = entry.file_name().to_string_lossy().into_owned();
            packages.push(vec!["api".to_owned(), group, "v1".to_owned()]);
        }
    }
    for extra in EXTRA_PACKAGES {
        packages.push(extra.split('/').map(str::to_owned).collect());
    }
    packages.sort();
    Ok(packages)
}

/// The messages to describe: every message of the served packages and
/// everything they refer to.
fn collect(source: &mut Source) -> Result<BTreeSet<MessageKey>, String> {
    let mut queue = VecDeque::new();
    for package in served_packages(&source.root)? {
        for name in source.module(&package)?.keys() {
            queue.push_back((package.clone(), name.clone()));
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(key) = queue.pop_front() {
        if seen.contains(&key) {
            continue;
        }
        let module = source.module(&key.0)?;
        let message = module
            .get(&key.1)
            .ok_or(format!("no message {}::{}", key.0.join("::"), key.1))?;
        queue.extend(message.fields.iter().filter_map(|f| f.message.clone()));
        seen.insert(key);
    }
    Ok(seen)
}

fn schema_name(openapi: &OpenApi, key: &MessageKey, message: &Message) -> String {
    let package = message
        .docs
        .lines()
        .find_map(|line| line.trim().strip_prefix("+k8s:openapi-model-package="))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("io.k8s.{}", key.0.join(".")));
    let name = format!("{package}.{}", key.1);
    match openapi.find(&name) {
        Some((found, _)) => found.to_owned(),
        None => name,
    }
}

/// `volume_id` and `volumeID` are the same name to the matcher.
fn normalize(name: &str) -> String {
    name.replace('_', "").to_lowercase()
}

/// How a field appears in JSON.
enum JsonName {
    Named(String),
    /// Go's `json:",inline"`: the message's fields merge into the parent.
    Inline,
    /// In k8s-pb but not in the OpenAPI version we serve.
    Newer,
}

/// The property of `properties` that names `field`, if exactly one does.
fn lookup(properties: &serde_json::Map<String, Value>, field: &str) -> Result<Option<String>, Vec<String>> {
    let wanted = normalize(field);
    let found: Vec<String> = properties.keys().filter(|p| normalize(p) == wanted).cloned().collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        _ => Err(found),
    }
}

/// A JSON name for a message without an OpenAPI definition: the field's doc
/// comment usually starts with it, else lowerCamelCase of the Rust name.
fn guess(field: &Field) -> String {
    let camel = lower_camel(&field.rust_name);
    let Some(word) = field.docs.split_whitespace().next() else {
        return camel;
    };
    let word = word.trim_end_matches([',', '.', ':']);
    if normalize(word) != normalize(&field.rust_name) {
        return camel;
    }
    let mut chars = word.chars();
    match (chars.next(), chars.next()) {
        (Some(first), _) if first.is_ascii_lowercase() => word.to_owned(),
        (Some(first), Some(second)) if second.is_ascii_lowercase() => {
            format!("{}{}", first.to_ascii_lowercase(), &word[1..])
        }
        _ => camel,
    }
}

fn generate(root: PathBuf) -> Result<String, String> {
    let openapi = OpenApi::load();
    let mut source = Source {
        root,
        modules: BTreeMap::new(),
    };
    let keys = collect(&mut source)?;
    let message = |key: &MessageKey| &source.modules[&key.0][&key.1];

    let names: BTreeMap<&MessageKey, String> = keys
        .iter()
        .map(|key| (key, schema_name(&openapi, key, message(key))))
        .collect();
    let shapes: BTreeMap<&MessageKey, &str> = keys
        .iter()
        .filter_map(|key| {
            let shape = SHAPES
                .iter()
                .find(|(n, _)| *n == names[key])
                .map(|(_, shape)| *shape)
                .or_else(|| {
                    message(key)
                        .docs
                        .lines()
                        .any(|l| l.trim() == "+protobuf.nullable=true")
                        .then_some("items")
                });
            Some((key, shape?))
        })
        .collect();
    let newer =
        |key: &MessageKey, field: &Field| NEWER_FIELDS.contains(&(names[key].as_str(), field.rust_name.as_str()));

    // The OpenAPI properties each message's fields are named by: its own
    // definition's, or, for a message only ever inlined, its parents'.
    let mut errors = Vec::new();
    let mut contexts: BTreeMap<&MessageKey, Vec<&serde_json::Map<String, Value>>> = BTreeMap::new();
    for key in &keys {
        let Some(schema) = openapi.definitions.get(&names[key]) else {
            continue;
        };
        if shapes.contains_key(key) {
            continue;
        }
        match schema.get("properties").and_then(Value::as_object) {
            Some(properties) => {
                contexts.insert(key, vec![properties]);
            }
            None if message(key).fields.is_empty() => {}
            None => errors.push(format!("{}: the OpenAPI definition has no properties", names[key])),
        }
    }
    let mut queue: VecDeque<&MessageKey> = contexts.keys().copied().collect();
    while let Some(key) = queue.pop_front() {
        let parent_contexts = contexts[key].clone();
        for field in &message(key).fields {
            let Some(child) = &field.message else { continue };
            if newer(key, field) || field.label != Label::Optional {
                continue;
            }
            let named = parent_contexts
                .iter()
                .any(|props| matches!(lookup(props, &field.rust_name), Ok(Some(_))));
            let child_has_own = openapi.definitions.contains_key(&names[child]);
            if named || child_has_own || shapes.contains_key(child) {
                continue;
            }
            let entry = contexts.entry(child).or_default();
            let before = entry.len();
            for props in &parent_contexts {
                if !entry.iter().any(|p| std::ptr::eq(*p, *props)) {
                    entry.push(props);
                }
            }
            if entry.len() != before {
                queue.push_back(child);
            }
        }
    }

    // Every field's JSON name.
    let mut json_names: BTreeMap<&MessageKey, Vec<JsonName>> = BTreeMap::new();
    for key in &keys {
        let name = &names[key];
        let mut out = Vec::new();
        for field in &message(key).fields {
            let json = if shapes.contains_key(key) {
                JsonName::Named(lower_camel(&field.rust_name))
            } else if newer(key, field) {
                JsonName::Newer
            } else if let Some(props) = contexts.get(key) {
                let found: Result<Vec<Option<String>>, _> = props.iter().map(|p| lookup(p, &field.rust_name)).collect();
                match found {
                    Err(many) => {
                        errors.push(format!("{name}: field {} matches {many:?}", field.rust_name));
                        continue;
                    }
                    Ok(found) if found.iter().all(Option::is_none) && field.message.is_some() => {
                        if field.label != Label::Optional {
                            errors.push(format!("{name}: field {} has no OpenAPI property", field.rust_name));
                            continue;
                        }
                        JsonName::Inline
                    }
                    Ok(found) => {
                        let first = found.first().cloned().flatten();
                        match first {
                            Some(json) if found.iter().all(|f| f.as_ref() == Some(&json)) => JsonName::Named(json),
                            _ => {
                                errors.push(format!(
                                    "{name}: field {} (tag {}) has no OpenAPI property",
                                    field.rust_name, field.tag
                                ));
                                continue;
                            }
                        }
                    }
                }
            } else {
                JsonName::Named(guess(field))
            };
            out.push(json);
        }
        if !shapes.contains_key(key) && !contexts.contains_key(key) && !message(key).fields.is_empty() {
            eprintln!("warning: {name}: no OpenAPI definition, field names guessed from docs and Rust names");
        }
        json_names.insert(key, out);
    }
    if !errors.is_empty() {
        return Err(format!(
            "{} field(s) without a JSON name:\n  {}",
            errors.len(),
            errors.join("\n  ")
        ));
    }

    // An inlined message's fields must all be properties of the parent.
    fn flatten<'a>(
        key: &'a MessageKey,
        message: &dyn Fn(&MessageKey) -> &'a Message,
        json_names: &'a BTreeMap<&MessageKey, Vec<JsonName>>,
        out: &mut Vec<&'a str>,
    ) {
        for (field, json) in message(key).fields.iter().zip(&json_names[key]) {
            match json {
                JsonName::Named(name) => out.push(name),
                JsonName::Inline => flatten(
                    field.message.as_ref().expect("inline fields are messages"),
                    message,
                    json_names,
                    out,
                ),
                JsonName::Newer => {}
            }
        }
    }
    for key in &keys {
        for (field, json) in message(key).fields.iter().zip(&json_names[key]) {
            if let JsonName::Inline = json {
                let child = field.message.as_ref().expect("inline fields are messages");
                let mut inner = Vec::new();
                flatten(child, &message, &json_names, &mut inner);
                for props in contexts.get(key).into_iter().flatten() {
                    for name in &inner {
                        if !props.contains_key(*name) {
                            errors.push(format!(
                                "{}: field {} looks inlined but {} has {name}, which the parent has not",
                                names[key], field.rust_name, names[child]
                            ));
                        }
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(format!(
            "{} inlined field(s) do not fit:\n  {}",
            errors.len(),
            errors.join("\n  ")
        ));
    }

    let mut blocks = BTreeMap::new();
    for key in &keys {
        let name = &names[key];
        let mut block = format!("message {name}\n");
        if let Some(shape) = shapes.get(key) {
            writeln!(block, "json {shape}").expect("writing to a String");
        }
        for (api_version, kind) in openapi.gvks.get(name).into_iter().flatten() {
            writeln!(block, "gvk {api_version} {kind}").expect("writing to a String");
        }
        for (any, kind) in ANY_VERSION_KINDS {
            if any == name {
                writeln!(block, "gvk * {kind}").expect("writing to a String");
            }
        }
        for (field, json) in message(key).fields.iter().zip(&json_names[key]) {
            let (json, label) = match json {
                JsonName::Named(json) => (json.as_str(), field.label.as_str()),
                JsonName::Inline => ("-", "inline"),
                JsonName::Newer => {
                    writeln!(
                        block,
                        "# {} {}: newer than the OpenAPI schema, skipped",
                        field.tag,
                        lower_camel(&field.rust_name)
                    )
                    .expect("writing to a String");
                    continue;
                }
            };
            write!(block, "{} {json} {label} {}", field.tag, field.kind).expect("writing to a String");
            if let Some(target) = &field.message {
                write!(block, " {}", names[target]).expect("writing to a String");
            }
            block.push('\n');
        }
        blocks.insert(name.clone(), block);
    }

    let mut out = String::from(HEADER);
    for block in blocks.values() {
        out.push('\n');
        out.push_str(block);
    }
    Ok(out)
}

const HEADER: &str = "\
# Kubernetes protobuf wire table: which field number of which message carries
# which JSON field. Generated by apimachinery/examples/gen_protobuf_table.rs
# from k8s-pb 0.9.0 (field numbers) and k8s-openapi 0.29 / v1_33 (JSON names,
# group/version/kinds); do not edit by hand.
#
# message <OpenAPI schema name>
# json <shape>                  only for messages whose JSON is not an object:
#                               time, microtime, duration, quantity,
#                               int-or-string, raw-json, items (the array in field 1)
# gvk <apiVersion> <Kind>       top-level kinds; apiVersion * means any
# <tag> <jsonName> <opt|rep|map> <string|int32|int64|bool|bytes|double|message> [<message schema name>]
#                               map keys are strings; the kind is the value's
# <tag> - inline message <name> Go's inline embedding: the fields merge into the parent
";

fn main() -> ExitCode {
    let Some(root) = std::env::args_os().nth(1) else {
        eprintln!("usage: gen_protobuf_table <path to k8s-pb-0.9.0/src>");
        return ExitCode::FAILURE;
    };
    match generate(PathBuf::from(root)) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
