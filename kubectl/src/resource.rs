//! What a command acts on, in the spirit of cli-runtime's resource builder:
//! `TYPE[,TYPE...] [NAME...]`, `TYPE/NAME...`, or objects read from `-f`
//! files, directories and stdin (multi-document YAML or JSON, `List`s
//! flattened).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::discovery::{ApiResource, Discovery};

/// The positional arguments of `get`, `delete`, `label`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgSpec {
    /// `TYPE[,TYPE...] [NAME...]`.
    TypeNames {
        types: String,
        names: Vec<String>,
    },
    /// `TYPE/NAME ...`.
    Pairs(Vec<(String, String)>),
    None,
}

/// Parses positional resource arguments as upstream's
/// `ResourceTypeOrNameArgs` does.
pub fn parse_args(args: &[String]) -> anyhow::Result<ArgSpec> {
    if args.is_empty() {
        return Ok(ArgSpec::None);
    }
    let slashes = args.iter().filter(|a| a.contains('/')).count();
    if slashes > 0 && slashes != args.len() {
        bail!(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of 'kubectl get resource resource/<resource_name>'"
        );
    }
    if slashes > 0 {
        let mut pairs = Vec::new();
        for a in args {
            let seg: Vec<&str> = a.split('/').collect();
            if seg.len() != 2 {
                bail!("arguments in resource/name form may not have more than one slash");
            }
            if seg[0].is_empty() || seg[1].is_empty() || seg[0].contains(',') {
                bail!("arguments in resource/name form must have a single resource and name");
            }
            pairs.push((seg[0].to_string(), seg[1].to_string()));
        }
        return Ok(ArgSpec::Pairs(pairs));
    }
    Ok(ArgSpec::TypeNames {
        types: args[0].clone(),
        names: args[1..].to_vec(),
    })
}

/// One thing to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// One object by name.
    Named {
        resource: ApiResource,
        namespace: Option<String>,
        name: String,
    },
    /// A collection, optionally filtered (`namespace` None: all namespaces
    /// or cluster-scoped).
    Collection {
        resource: ApiResource,
        namespace: Option<String>,
    },
}

impl Target {
    pub fn resource(&self) -> &ApiResource {
        match self {
            Target::Named { resource, .. } | Target::Collection { resource, .. } => resource,
        }
    }
}

/// Where the namespace comes from.
#[derive(Debug, Clone)]
pub struct NamespaceScope {
    pub namespace: String,
    pub explicit: bool,
    pub all_namespaces: bool,
}

impl NamespaceScope {
    pub fn for_resource(&self, r: &ApiResource) -> Option<String> {
        if !r.namespaced || self.all_namespaces {
            None
        } else {
            Some(self.namespace.clone())
        }
    }
}

/// Turns arguments into targets. `allow_collection`: a bare type lists
/// (get, delete -l/--all); otherwise names are required.
pub fn targets_from_args(
    discovery: &Discovery,
    spec: &ArgSpec,
    scope: &NamespaceScope,
    has_selector: bool,
) -> anyhow::Result<(Vec<Target>, bool)> {
    match spec {
        ArgSpec::None => Ok((Vec::new(), false)),
        ArgSpec::Pairs(pairs) => {
            if scope.all_namespaces {
                bail!("a resource cannot be retrieved by name across all namespaces");
            }
            let mut out = Vec::new();
            for (t, name) in pairs {
                let resource = discovery.resolve(t)?;
                let namespace = scope.for_resource(&resource).or_else(|| {
                    // A named object in "all namespaces" mode is looked up in
                    // the current namespace (upstream ignores -A for names).
                    resource.namespaced.then(|| scope.namespace.clone())
                });
                out.push(Target::Named {
                    resource,
                    namespace,
                    name: name.clone(),
                });
            }
            let single = out.len() == 1;
            Ok((out, single))
        }
        ArgSpec::TypeNames { types, names } => {
            let resources = discovery.resolve_types(types)?;
            if names.is_empty() {
                return Ok((
                    resources
                        .into_iter()
                        .map(|resource| {
                            let namespace = scope.for_resource(&resource);
                            Target::Collection { resource, namespace }
                        })
                        .collect(),
                    false,
                ));
            }
            if has_selector {
                bail!("name cannot be provided when a selector is specified");
            }
            if scope.all_namespaces {
                bail!("a resource cannot be retrieved by name across all namespaces");
            }
            if resources.len() > 1 {
                bail!("you must specify only one resource");
            }
            let mut out = Vec::new();
            for resource in resources {
                for name in names {
                    let namespace = resource.namespaced.then(|| scope.namespace.clone());
                    out.push(Target::Named {
                        resource: resource.clone(),
                        namespace,
                        name: name.clone(),
                    });
                }
            }
            Ok((out, names.len() == 1))
        }
    }
}

/// An object read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileObject {
    pub source: String,
    pub object: Value,
}

/// Reads every object of the given `-f` arguments (`-` is stdin).
pub fn read_files(filenames: &[String], recursive: bool) -> anyhow::Result<Vec<FileObject>> {
    let mut out = Vec::new();
    for f in filenames {
        if f == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading stdin")?;
            out.extend(decode_documents(&text, "STDIN")?);
            continue;
        }
        let path = Path::new(f);
        let meta = std::fs::metadata(path).map_err(|_| anyhow::anyhow!("the path \"{f}\" does not exist"))?;
        if meta.is_dir() {
            for file in walk_dir(path, recursive)? {
                let text = std::fs::read_to_string(&file)?;
                out.extend(decode_documents(&text, &file.display().to_string())?);
            }
        } else {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {f}"))?;
            out.extend(decode_documents(&text, f)?);
        }
    }
    Ok(out)
}

fn walk_dir(dir: &Path, recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for p in entries {
        if p.is_dir() {
            if recursive {
                out.extend(walk_dir(&p, recursive)?);
            }
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"))
        {
            out.push(p);
        }
    }
    Ok(out)
}

/// Splits YAML (or JSON) text into objects; `List` kinds are flattened.
pub fn decode_documents(text: &str, source: &str) -> anyhow::Result<Vec<FileObject>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value: Value = match serde::Deserialize::deserialize(doc) {
            Ok(v) => v,
            Err(e) => bail!("error parsing {source}: {e}"),
        };
        if value.is_null() {
            continue;
        }
        if !value.is_object() {
            bail!("error validating \"{source}\": error validating data: invalid object");
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if kind.is_empty() || api_version.is_empty() {
            let mut missing = Vec::new();
            if api_version.is_empty() {
                missing.push("apiVersion not set");
            }
            if kind.is_empty() {
                missing.push("kind not set");
            }
            bail!(
                "error validating \"{source}\": error validating data: [{}]; if you choose to ignore these errors, turn validation off with --validate=false",
                missing.join(", ")
            );
        }
        if kind.ends_with("List") && value.get("items").is_some_and(Value::is_array) {
            for item in value["items"].as_array().into_iter().flatten() {
                out.push(FileObject {
                    source: source.to_string(),
                    object: item.clone(),
                });
            }
            continue;
        }
        out.push(FileObject {
            source: source.to_string(),
            object: value,
        });
    }
    Ok(out)
}

/// The namespace an object from a file goes to; fails when it names a
/// namespace other than an explicit `-n`.
pub fn object_namespace(obj: &Value, resource: &ApiResource, scope: &NamespaceScope) -> anyhow::Result<Option<String>> {
    if !resource.namespaced {
        return Ok(None);
    }
    let own = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    if own.is_empty() {
        return Ok(Some(scope.namespace.clone()));
    }
    if scope.explicit && own != scope.namespace {
        bail!(
            "the namespace from the provided object \"{own}\" does not match the namespace \"{}\". You must pass '--namespace={own}' to perform this operation.",
            scope.namespace
        );
    }
    Ok(Some(own.to_string()))
}

pub fn object_name(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// Resolves an object's resource, refreshing discovery once on a miss
/// (a CRD created moments ago).
pub fn mapping_error(obj: &Value, source: &str) -> anyhow::Error {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    anyhow::anyhow!(
        "resource mapping not found for name: \"{}\" namespace: \"{ns}\" from \"{source}\": no matches for kind \"{kind}\" in version \"{api_version}\"\nensure CRDs are installed first",
        object_name(obj)
    )
}

/// An object from a file with its resource and target namespace (upstream's
/// `resource.Info`). For namespaced resources the object's
/// `metadata.namespace` is set, as upstream's builder does.
#[derive(Debug, Clone)]
pub struct Info {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
    pub source: String,
}

impl Info {
    pub fn path(&self) -> String {
        self.resource.path(self.namespace.as_deref(), Some(&self.name))
    }

    /// Upstream's `Info.String()`, used in some error messages.
    pub fn describe(&self) -> String {
        let r = &self.resource;
        format!(
            "Resource: \"{}/{}, Resource={}\", GroupVersionKind: \"{}/{}, Kind={}\"\nName: \"{}\", Namespace: \"{}\"",
            r.group,
            r.version,
            r.resource,
            r.group,
            r.version,
            r.kind,
            self.name,
            self.namespace.as_deref().unwrap_or("")
        )
    }
}

/// Reads `-f` arguments into infos.
pub async fn infos_from_files(
    f: &crate::Factory,
    filenames: &[String],
    recursive: bool,
    scope: &NamespaceScope,
) -> anyhow::Result<Vec<Info>> {
    let objects = read_files(filenames, recursive)?;
    let mut infos = Vec::new();
    for fo in objects {
        let resource = f.resource_for_object(&fo.object, &fo.source).await?;
        let namespace = object_namespace(&fo.object, &resource, scope)?;
        let mut object = fo.object;
        if let (Some(ns), Some(meta)) = (&namespace, object.get_mut("metadata").and_then(Value::as_object_mut)) {
            meta.insert("namespace".to_string(), Value::String(ns.clone()));
        }
        infos.push(Info {
            name: object_name(&object).to_string(),
            resource,
            namespace,
            object,
            source: fo.source,
        });
    }
    Ok(infos)
}

/// Prefixes an error with its source file, as upstream's `AddSourceToErr`.
pub fn add_source_to_err(verb: &str, source: &str, err: anyhow::Error) -> anyhow::Error {
    if source.is_empty() {
        return err;
    }
    match err.downcast::<crate::errors::ApiError>() {
        Ok(mut api) => {
            api.message = format!("error when {verb} \"{source}\": {}", api.message);
            api.into()
        }
        Err(other) => anyhow::anyhow!("error when {verb} \"{source}\": {other:#}"),
    }
}

/// One object to act on by name.
#[derive(Debug, Clone)]
pub struct ObjectRef {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
    /// The file it came from (for messages), empty for arguments.
    pub source: String,
}

impl ObjectRef {
    pub fn path(&self) -> String {
        self.resource.path(self.namespace.as_deref(), Some(&self.name))
    }

    /// GETs the object (a missing namespace is reported as such).
    pub async fn fetch(&self, client: &crate::client::Client) -> anyhow::Result<Value> {
        client.get_object(&self.path(), None, self.namespace.as_deref()).await
    }
}

/// How a command selects objects.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub args: Vec<String>,
    pub filenames: Vec<String>,
    pub recursive: bool,
    pub selector: Option<String>,
    pub field_selector: Option<String>,
    pub all: bool,
    pub all_namespaces: bool,
}

/// Resolves a selection into named objects, listing collections selected
/// by `-l`, `--field-selector` or `--all` (a bare type without any of them
/// is an error, as upstream's "resource(s) were provided, but no name was
/// specified").
pub async fn object_refs(f: &crate::Factory, sel: &Selection) -> anyhow::Result<Vec<ObjectRef>> {
    let scope = f.scope(sel.all_namespaces)?;
    if !sel.filenames.is_empty() {
        if !sel.args.is_empty() {
            bail!(
                "when paths, URLs, or stdin is provided as input, you may not specify a resource by arguments as well"
            );
        }
        let infos = infos_from_files(f, &sel.filenames, sel.recursive, &scope).await?;
        return Ok(infos
            .into_iter()
            .map(|i| ObjectRef {
                resource: i.resource,
                namespace: i.namespace,
                name: i.name,
                source: i.source,
            })
            .collect());
    }
    let spec = parse_args(&sel.args)?;
    if spec == ArgSpec::None {
        bail!(
            "You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'"
        );
    }
    let has_selector = sel.selector.is_some() || sel.field_selector.is_some();
    if let ArgSpec::TypeNames { names, .. } = &spec {
        if names.is_empty() && !has_selector && !sel.all {
            bail!("resource(s) were provided, but no name was specified");
        }
        if !names.is_empty() && sel.all {
            bail!("name cannot be provided when a selector is specified");
        }
    }
    let (targets, _) = f.targets(&spec, &scope, has_selector).await?;
    let client = f.client().await?;
    let mut refs = Vec::new();
    for t in targets {
        match t {
            Target::Named {
                resource,
                namespace,
                name,
            } => refs.push(ObjectRef {
                resource,
                namespace,
                name,
                source: String::new(),
            }),
            Target::Collection { resource, namespace } => {
                let path = crate::client::with_query(
                    &resource.path(namespace.as_deref(), None),
                    &[
                        ("labelSelector", sel.selector.clone().unwrap_or_default()),
                        ("fieldSelector", sel.field_selector.clone().unwrap_or_default()),
                    ],
                );
                let list = client.get(&path).await?;
                for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
                    refs.push(ObjectRef {
                        resource: resource.clone(),
                        namespace: item
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .filter(|_| resource.namespaced),
                        name: object_name(item).to_string(),
                        source: String::new(),
                    });
                }
            }
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_args_like_upstream() {
        assert_eq!(parse_args(&[]).unwrap(), ArgSpec::None);
        assert_eq!(
            parse_args(&s(&["deploy,svc"])).unwrap(),
            ArgSpec::TypeNames {
                types: "deploy,svc".into(),
                names: vec![]
            }
        );
        assert_eq!(
            parse_args(&s(&["pods", "a", "b"])).unwrap(),
            ArgSpec::TypeNames {
                types: "pods".into(),
                names: s(&["a", "b"])
            }
        );
        assert_eq!(
            parse_args(&s(&["pod/a", "svc/b"])).unwrap(),
            ArgSpec::Pairs(vec![("pod".into(), "a".into()), ("svc".into(), "b".into())])
        );
        let errors = [
            (vec!["pods", "pod/a"], "there is no need to specify a resource type"),
            (vec!["a/b/c"], "may not have more than one slash"),
            (vec!["/b"], "must have a single resource and name"),
            (vec!["a,b/c"], "must have a single resource and name"),
        ];
        for (args, want) in errors {
            let err = parse_args(&s(&args)).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn decodes_documents() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: b\n";
        let objs = decode_documents(text, "f.yaml").unwrap();
        let names: Vec<&str> = objs.iter().map(|o| object_name(&o.object)).collect();
        assert_eq!(names, vec!["a", "b"]);
        let err = decode_documents("metadata:\n  name: x\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "error validating \"f.yaml\": error validating data: [apiVersion not set, kind not set]; if you choose to ignore these errors, turn validation off with --validate=false"
        );
        let json = decode_documents(
            "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"n\"}}",
            "f.json",
        )
        .unwrap();
        assert_eq!(json.len(), 1);
    }

    #[test]
    fn targets() {
        let d = crate::discovery::tests::sample();
        let scope = NamespaceScope {
            namespace: "dev".into(),
            explicit: false,
            all_namespaces: false,
        };
        let (t, single) = targets_from_args(&d, &parse_args(&s(&["deploy", "a"])).unwrap(), &scope, false).unwrap();
        assert!(single);
        assert_eq!(
            t,
            vec![Target::Named {
                resource: d.resolve("deploy").unwrap(),
                namespace: Some("dev".into()),
                name: "a".into()
            }]
        );
        let err = targets_from_args(&d, &parse_args(&s(&["deploy,svc", "a"])).unwrap(), &scope, false).unwrap_err();
        assert_eq!(err.to_string(), "you must specify only one resource");
        let err = targets_from_args(&d, &parse_args(&s(&["deploy", "a"])).unwrap(), &scope, true).unwrap_err();
        assert_eq!(err.to_string(), "name cannot be provided when a selector is specified");
        let (t, _) = targets_from_args(&d, &parse_args(&s(&["ns"])).unwrap(), &scope, false).unwrap();
        assert_eq!(
            t,
            vec![Target::Collection {
                resource: d.resolve("ns").unwrap(),
                namespace: None
            }]
        );
    }
}
