//! The API's operations, one model for both OpenAPI versions: per served
//! resource the paths upstream's installer registers (collection, item,
//! all-namespaces list, the deprecated watch paths, each subresource), with
//! upstream's operation IDs (`readCoreV1NamespacedPod`), tags (`core_v1`),
//! parameters, responses, `x-kubernetes-action` and
//! `x-kubernetes-group-version-kind`. [`v2`] and [`v3`] render them.

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

/// One parameter (path or query; bodies are [`Op::body`]).
#[derive(Clone, Debug)]
pub struct Param {
    pub name: &'static str,
    pub location: &'static str,
    pub ty: &'static str,
    pub description: String,
    pub required: bool,
}

/// What a response carries.
#[derive(Clone, Debug)]
pub enum Schema {
    /// A definition, by name.
    Def(String),
    /// Text (logs, streams).
    Text,
}

/// One operation of a path.
#[derive(Clone, Debug)]
pub struct Op {
    /// `get`, `put`, `post`, `patch`, `delete`, `head` or `options`.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    pub action: &'static str,
    pub gvk: (String, String, String),
    pub tag: String,
    pub params: Vec<Param>,
    /// The body's definition and whether it is required.
    pub body: Option<(String, bool)>,
    pub consumes: Vec<&'static str>,
    pub produces: Vec<&'static str>,
    /// (code, schema); 401 is added to every operation.
    pub responses: Vec<(u16, Option<Schema>)>,
}

/// A path with its shared parameters and operations.
#[derive(Clone, Debug)]
pub struct PathItem {
    pub path: String,
    pub params: Vec<Param>,
    pub ops: Vec<Op>,
}

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";

const JSON_YAML: &[&str] = &["application/json", "application/yaml"];
const STREAMS: &[&str] = &["application/json", "application/yaml", "application/json;stream=watch"];

fn q(name: &'static str, ty: &'static str, description: &str) -> Param {
    Param {
        name,
        location: "query",
        ty,
        description: description.to_string(),
        required: false,
    }
}

fn path_param(name: &'static str, description: &str) -> Param {
    Param {
        name,
        location: "path",
        ty: "string",
        description: description.to_string(),
        required: true,
    }
}

fn pretty() -> Param {
    q(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
    )
}

fn namespace() -> Param {
    path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    )
}

fn dry_run() -> Param {
    q(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are:\n- All: all dry run stages will be processed",
    )
}

fn field_manager(patch: bool) -> Param {
    let d = if patch {
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch)."
    } else {
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."
    };
    q("fieldManager", "string", d)
}

fn field_validation() -> Param {
    q(
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
    )
}

fn write_params(patch: bool) -> Vec<Param> {
    let mut v = vec![dry_run(), field_manager(patch), field_validation()];
    if patch {
        v.push(q(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
        ));
    }
    v
}

fn list_params() -> Vec<Param> {
    vec![
        q(
            "allowWatchBookmarks",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.",
        ),
        q(
            "continue",
            "string",
            "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize.",
        ),
        q(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        q(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        q(
            "limit",
            "integer",
            "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.",
        ),
        q(
            "resourceVersion",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
        ),
        q(
            "resourceVersionMatch",
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
        ),
        q(
            "sendInitialEvents",
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event will be sent.",
        ),
        q(
            "timeoutSeconds",
            "integer",
            "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
        ),
        q(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
        ),
    ]
}

fn delete_params() -> Vec<Param> {
    vec![
        dry_run(),
        q(
            "gracePeriodSeconds",
            "integer",
            "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.",
        ),
        q(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error. A resource is considered corrupt if it can not be retrieved from the underlying storage successfully because of a) its data can not be transformed e.g. decryption failure, or b) it fails to decode into an object. NOTE: unsafe deletion ignores finalizer constraints, skips precondition checks, and removes the object from the storage. WARNING: This may potentially break the cluster if the workload associated with the resource being unsafe-deleted relies on normal deletion flow. Use only if you REALLY know what you are doing. The default value is false, and the user must opt in to enable it",
        ),
        q(
            "orphanDependents",
            "boolean",
            "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.",
        ),
        q(
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.",
        ),
    ]
}

/// Upstream's `ToValidOperationID`: letters and `_` kept (digits too,
/// but not first), anything else dropped and the next letter capitalized.
fn valid_operation_id(s: &str, capitalize_first: bool) -> String {
    let mut out = String::new();
    let mut capitalize = capitalize_first;
    for (i, c) in s.chars().enumerate() {
        if c.is_alphabetic() || c == '_' || (i != 0 && c.is_ascii_digit()) {
            if capitalize {
                out.extend(c.to_uppercase());
                capitalize = false;
            } else {
                out.push(c);
            }
        } else {
            capitalize = true;
        }
    }
    out
}

/// The operation-ID infix and the tag of a group-version: `CoreV1` and
/// `core_v1`, `RbacAuthorizationV1` and `rbacAuthorization_v1`.
pub fn group_names(group: &str, version: &str) -> (String, String) {
    let g = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    (
        format!("{}{}", valid_operation_id(g, true), valid_operation_id(version, true)),
        format!(
            "{}_{}",
            valid_operation_id(g, false),
            valid_operation_id(version, false)
        ),
    )
}

/// `strings.Title` of a subresource name: `Status`, `Ephemeralcontainers`.
fn title(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The definition of a built-in kind's list (`io.k8s.api.core.v1.PodList`)
/// or a custom resource's (`com.example.v1.WidgetList`).
pub fn list_def(r: &ResourceType) -> String {
    format!("{}List", r.schema_name)
}

/// What a subresource takes and answers: (definition, group, version, kind).
fn sub_object(r: &ResourceType, sub: &str) -> (String, (String, String, String)) {
    let (g, v, k) = crate::discovery::sub_kind(r, sub);
    let def = match sub {
        "scale" => "io.k8s.api.autoscaling.v1.Scale".to_string(),
        "binding" => "io.k8s.api.core.v1.Binding".to_string(),
        "eviction" => "io.k8s.api.policy.v1.Eviction".to_string(),
        "token" => "io.k8s.api.authentication.v1.TokenRequest".to_string(),
        _ => r.schema_name.clone(),
    };
    (def, (g, v, k))
}

/// Every path of one resource, as upstream's API installer registers them.
pub fn resource_paths(r: &ResourceType) -> Vec<PathItem> {
    let (infix, tag) = group_names(&r.group, &r.version);
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let scope = if r.namespaced { "namespaces/{namespace}/" } else { "" };
    let ns = if r.namespaced { "Namespaced" } else { "" };
    let gvk = (r.group.clone(), r.version.clone(), r.kind.clone());
    let kind = &r.kind;
    let def = r.schema_name.clone();
    let has = |v: &str| r.verbs.contains(&v);
    let id = |verb: &str, rest: &str| format!("{verb}{infix}{rest}");
    let scope_params = || if r.namespaced { vec![namespace()] } else { vec![] };
    let op = |method, id: String, description: String, action| Op {
        method,
        id,
        description,
        action,
        gvk: gvk.clone(),
        tag: tag.clone(),
        params: Vec::new(),
        body: None,
        consumes: vec!["*/*"],
        produces: JSON_YAML.to_vec(),
        responses: Vec::new(),
    };
    let obj = |d: &str| Some(Schema::Def(d.to_string()));
    let patch_types = || {
        let mut v = vec!["application/json-patch+json", "application/merge-patch+json"];
        if !r.is_custom() {
            v.push("application/strategic-merge-patch+json");
        }
        v.push("application/apply-patch+yaml");
        v
    };
    let mut items = Vec::new();

    // The collection: list, create, deletecollection.
    let mut coll = PathItem {
        path: format!("{base}/{scope}{}", r.plural),
        params: [scope_params(), vec![pretty()]].concat(),
        ops: Vec::new(),
    };
    if has("list") {
        let mut o = op(
            "get",
            id("list", &format!("{ns}{kind}")),
            format!("list or watch objects of kind {kind}"),
            "list",
        );
        o.params = list_params();
        if has("watch") {
            o.produces = STREAMS.to_vec();
        }
        o.responses = vec![(200, obj(&list_def(r)))];
        coll.ops.push(o);
    }
    if has("create") {
        let mut o = op(
            "post",
            id("create", &format!("{ns}{kind}")),
            format!("create a {kind}"),
            "post",
        );
        o.params = write_params(false);
        o.body = Some((def.clone(), true));
        o.responses = vec![(200, obj(&def)), (201, obj(&def)), (202, obj(&def))];
        coll.ops.push(o);
    }
    if has("deletecollection") {
        let mut o = op(
            "delete",
            id("delete", &format!("Collection{ns}{kind}")),
            format!("delete collection of {kind}"),
            "deletecollection",
        );
        o.params = [delete_params(), list_params()].concat();
        o.params
            .retain(|p| p.name != "watch" && p.name != "allowWatchBookmarks");
        o.params.sort_by_key(|p| p.name);
        o.body = Some((DELETE_OPTIONS.into(), false));
        o.responses = vec![(200, obj(STATUS))];
        coll.ops.push(o);
    }
    if !coll.ops.is_empty() {
        items.push(coll);
    }

    // One object: read, replace, patch, delete.
    let name_param = || path_param("name", &format!("name of the {kind}"));
    let mut item = PathItem {
        path: format!("{base}/{scope}{}/{{name}}", r.plural),
        params: [vec![name_param()], scope_params(), vec![pretty()]].concat(),
        ops: Vec::new(),
    };
    if has("get") {
        let mut o = op(
            "get",
            id("read", &format!("{ns}{kind}")),
            format!("read the specified {kind}"),
            "get",
        );
        o.responses = vec![(200, obj(&def))];
        item.ops.push(o);
    }
    if has("update") {
        let mut o = op(
            "put",
            id("replace", &format!("{ns}{kind}")),
            format!("replace the specified {kind}"),
            "put",
        );
        o.params = write_params(false);
        o.body = Some((def.clone(), true));
        o.responses = vec![(200, obj(&def)), (201, obj(&def))];
        item.ops.push(o);
    }
    if has("patch") {
        let mut o = op(
            "patch",
            id("patch", &format!("{ns}{kind}")),
            format!("partially update the specified {kind}"),
            "patch",
        );
        o.params = write_params(true);
        o.body = Some((PATCH.into(), true));
        o.consumes = patch_types();
        o.responses = vec![(200, obj(&def)), (201, obj(&def))];
        item.ops.push(o);
    }
    if has("delete") {
        let mut o = op(
            "delete",
            id("delete", &format!("{ns}{kind}")),
            format!("delete a {kind}"),
            "delete",
        );
        o.params = delete_params();
        o.body = Some((DELETE_OPTIONS.into(), false));
        let answer = if r.return_deleted_object { def.as_str() } else { STATUS };
        o.responses = vec![(200, obj(answer)), (202, obj(answer))];
        item.ops.push(o);
    }
    if !item.ops.is_empty() {
        items.push(item);
    }

    // Every namespace's objects at once.
    if r.namespaced && has("list") {
        let mut o = op(
            "get",
            id("list", &format!("{kind}ForAllNamespaces")),
            format!("list or watch objects of kind {kind}"),
            "list",
        );
        if has("watch") {
            o.produces = STREAMS.to_vec();
        }
        o.responses = vec![(200, obj(&list_def(r)))];
        items.push(PathItem {
            path: format!("{base}/{}", r.plural),
            params: [list_params(), vec![pretty()]].concat(),
            ops: vec![o],
        });
    }

    // The deprecated watch paths.
    if has("watch") {
        let watch_op = |id: String, description: String, action| {
            let mut o = op("get", id, description, action);
            o.produces = STREAMS.to_vec();
            o.responses = vec![(200, obj(WATCH_EVENT))];
            o
        };
        let mut params = list_params();
        params.push(pretty());
        params.sort_by_key(|p| p.name);
        items.push(PathItem {
            path: format!("{base}/watch/{scope}{}", r.plural),
            params: [scope_params(), params.clone()].concat(),
            ops: vec![watch_op(
                id("watch", &format!("{ns}{kind}List")),
                format!(
                    "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."
                ),
                "watchlist",
            )],
        });
        items.push(PathItem {
            path: format!("{base}/watch/{scope}{}/{{name}}", r.plural),
            params: [vec![name_param()], scope_params(), params.clone()].concat(),
            ops: vec![watch_op(
                id("watch", &format!("{ns}{kind}")),
                format!(
                    "watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."
                ),
                "watch",
            )],
        });
        if r.namespaced {
            items.push(PathItem {
                path: format!("{base}/watch/{}", r.plural),
                params,
                ops: vec![watch_op(
                    id("watch", &format!("{kind}ListForAllNamespaces")),
                    format!(
                        "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."
                    ),
                    "watchlist",
                )],
            });
        }
    }

    // Subresources.
    for sub in &r.subresources {
        let (sdef, sgvk) = sub_object(r, sub);
        let sub_op = |method, verb: &str, description: String, action| {
            let mut o = op(
                method,
                id(verb, &format!("{ns}{kind}{}", title(sub))),
                description,
                action,
            );
            o.gvk = sgvk.clone();
            o
        };
        let path = format!("{base}/{scope}{}/{{name}}/{sub}", r.plural);
        let name_param = || path_param("name", &format!("name of the {}", sgvk.2));
        let params = [vec![name_param()], scope_params(), vec![pretty()]].concat();
        let mut ops = Vec::new();
        match sub.as_str() {
            "status" | "scale" | "ephemeralcontainers" | "resize" => {
                let mut get = sub_op("get", "read", format!("read {sub} of the specified {kind}"), "get");
                get.responses = vec![(200, obj(&sdef))];
                let mut put = sub_op(
                    "put",
                    "replace",
                    format!("replace {sub} of the specified {kind}"),
                    "put",
                );
                put.params = write_params(false);
                put.body = Some((sdef.clone(), true));
                put.responses = vec![(200, obj(&sdef)), (201, obj(&sdef))];
                let mut patch = sub_op(
                    "patch",
                    "patch",
                    format!("partially update {sub} of the specified {kind}"),
                    "patch",
                );
                patch.params = write_params(true);
                patch.body = Some((PATCH.into(), true));
                patch.consumes = patch_types();
                patch.responses = vec![(200, obj(&sdef)), (201, obj(&sdef))];
                ops.extend([get, put, patch]);
            }
            "finalize" => {
                let mut put = sub_op(
                    "put",
                    "replace",
                    format!("replace {sub} of the specified {kind}"),
                    "put",
                );
                put.params = write_params(false);
                put.body = Some((sdef.clone(), true));
                put.responses = vec![(200, obj(&sdef)), (201, obj(&sdef))];
                ops.push(put);
            }
            "binding" | "eviction" | "token" => {
                let mut post = sub_op("post", "create", format!("create {sub} of a {kind}"), "post");
                post.params = write_params(false);
                post.body = Some((sdef.clone(), true));
                post.responses = vec![(200, obj(&sdef)), (201, obj(&sdef)), (202, obj(&sdef))];
                ops.push(post);
            }
            "log" => {
                let mut get = sub_op("get", "read", format!("read {sub} of the specified {kind}"), "get");
                get.params = log_params();
                get.produces = vec!["text/plain", "application/json", "application/yaml"];
                get.responses = vec![(200, Some(Schema::Text))];
                ops.push(get);
            }
            "exec" | "attach" | "portforward" => {
                for method in ["get", "post"] {
                    let mut o = sub_op(
                        method,
                        "connect",
                        format!("connect {} requests to {sub} of {kind}", method.to_uppercase()),
                        "connect",
                    );
                    o.id = id("connect", &format!("{}{ns}{kind}{}", title(method), title(sub)));
                    o.params = connect_params(sub);
                    o.produces = vec!["*/*"];
                    o.responses = vec![(200, Some(Schema::Text))];
                    ops.push(o);
                }
            }
            "proxy" => {
                let methods = ["delete", "get", "head", "options", "patch", "post", "put"];
                let proxy_ops = |with_path: bool| {
                    methods
                        .iter()
                        .map(|m| {
                            let mut o = sub_op(
                                m,
                                "connect",
                                format!("connect {} requests to proxy of {kind}", m.to_uppercase()),
                                "connect",
                            );
                            o.id = id(
                                "connect",
                                &format!("{}{ns}{kind}Proxy{}", title(m), if with_path { "WithPath" } else { "" }),
                            );
                            o.produces = vec!["*/*"];
                            o.responses = vec![(200, Some(Schema::Text))];
                            o
                        })
                        .collect::<Vec<_>>()
                };
                let what = if r.kind == "Node" { "node" } else { "pod" };
                let mut base_params = params.clone();
                base_params.retain(|p| p.name != "pretty");
                base_params.push(q(
                    "path",
                    "string",
                    &format!("Path is the URL path to use for the current proxy request to {what}."),
                ));
                items.push(PathItem {
                    path: path.clone(),
                    params: base_params,
                    ops: proxy_ops(false),
                });
                let mut with_path = params.clone();
                with_path.retain(|p| p.name != "pretty");
                with_path.push(path_param("path", "path to the resource"));
                items.push(PathItem {
                    path: format!("{path}/{{path}}"),
                    params: with_path,
                    ops: proxy_ops(true),
                });
                continue;
            }
            _ => {}
        }
        if !ops.is_empty() {
            let mut params = params;
            if ops.iter().all(|o| o.action == "connect") {
                params.retain(|p| p.name != "pretty");
            }
            items.push(PathItem { path, params, ops });
        }
    }
    items
}

fn log_params() -> Vec<Param> {
    vec![
        q(
            "container",
            "string",
            "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
        ),
        q(
            "follow",
            "boolean",
            "Follow the log stream of the pod. Defaults to false.",
        ),
        q(
            "insecureSkipTLSVerifyBackend",
            "boolean",
            "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to. This will make the HTTPS connection between the apiserver and the backend insecure. This means the apiserver cannot verify the log data it is receiving came from the real kubelet. If the kubelet is configured to verify the apiserver's TLS credentials, it does not mean the connection to the real kubelet is vulnerable to a man in the middle attack (e.g. an attacker could not intercept the actual log data coming from the real kubelet).",
        ),
        q(
            "limitBytes",
            "integer",
            "If set, the number of bytes to read from the server before terminating the log output. This may not display a complete final line of logging, and may return slightly more or slightly less than the specified limit.",
        ),
        q(
            "previous",
            "boolean",
            "Return previous terminated container logs. Defaults to false.",
        ),
        q(
            "sinceSeconds",
            "integer",
            "A relative time in seconds before the current time from which to show logs. If this value precedes the time a pod was started, only logs since the pod start will be returned. If this value is in the future, no logs will be returned. Only one of sinceSeconds or sinceTime may be specified.",
        ),
        q(
            "stream",
            "string",
            "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\". If not specified, \"All\" is used, and both stdout and stderr are returned interleaved. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\".",
        ),
        q(
            "tailLines",
            "integer",
            "If set, the number of lines from the end of the logs to show. If not specified, logs are shown from the creation of the container or sinceSeconds or sinceTime. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\".",
        ),
        q(
            "timestamps",
            "boolean",
            "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
        ),
    ]
}

fn connect_params(sub: &str) -> Vec<Param> {
    match sub {
        "portforward" => vec![q(
            "ports",
            "integer",
            "List of ports to forward Required when using WebSockets",
        )],
        _ => {
            let mut v = vec![q(
                "container",
                "string",
                "The container in which to execute the command. Defaults to only container if there is only one container in the pod.",
            )];
            if sub == "exec" {
                v.push(q(
                    "command",
                    "string",
                    "Command is the remote command to execute. argv array. Not executed within a shell.",
                ));
            }
            v.extend([
                q(
                    "stderr",
                    "boolean",
                    "Redirect the standard error stream of the pod for this call.",
                ),
                q(
                    "stdin",
                    "boolean",
                    "Redirect the standard input stream of the pod for this call. Defaults to false.",
                ),
                q(
                    "stdout",
                    "boolean",
                    "Redirect the standard output stream of the pod for this call.",
                ),
                q(
                    "tty",
                    "boolean",
                    "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
                ),
            ]);
            v
        }
    }
}

fn gvk_json(gvk: &(String, String, String)) -> Value {
    json!({"group": gvk.0, "version": gvk.1, "kind": gvk.2})
}

fn response_description(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "Unauthorized",
    }
}

/// Swagger 2.0 `paths` (refs to `#/definitions/`).
pub fn v2(items: &[PathItem]) -> Value {
    let param = |p: &Param| {
        let mut v = json!({
            "description": p.description,
            "in": p.location,
            "name": p.name,
            "type": p.ty,
            "uniqueItems": true,
        });
        if p.required {
            v["required"] = json!(true);
        }
        v
    };
    let mut paths = Map::new();
    for item in items {
        let mut pi = Map::new();
        for o in &item.ops {
            let mut params: Vec<Value> = Vec::new();
            if let Some((def, required)) = &o.body {
                let mut b = json!({"in": "body", "name": "body", "schema": {"$ref": format!("#/definitions/{def}")}});
                if *required {
                    b["required"] = json!(true);
                }
                params.push(b);
            }
            params.extend(o.params.iter().map(param));
            let mut responses = Map::new();
            for (code, schema) in o.responses.iter().chain(std::iter::once(&(401, None))) {
                let mut r = json!({"description": response_description(*code)});
                match schema {
                    Some(Schema::Def(d)) => r["schema"] = json!({"$ref": format!("#/definitions/{d}")}),
                    Some(Schema::Text) => r["schema"] = json!({"type": "string"}),
                    None => {}
                }
                responses.insert(code.to_string(), r);
            }
            let mut op = json!({
                "consumes": o.consumes,
                "description": o.description,
                "operationId": o.id,
                "produces": o.produces,
                "responses": responses,
                "schemes": ["https"],
                "tags": [o.tag],
                "x-kubernetes-action": o.action,
                "x-kubernetes-group-version-kind": gvk_json(&o.gvk),
            });
            if !params.is_empty() {
                op["parameters"] = Value::Array(params);
            }
            pi.insert(o.method.into(), op);
        }
        if !item.params.is_empty() {
            pi.insert("parameters".into(), item.params.iter().map(param).collect());
        }
        paths.insert(item.path.clone(), Value::Object(pi));
    }
    Value::Object(paths)
}

/// OpenAPI 3.0 `paths` (refs to `#/components/schemas/`).
pub fn v3(items: &[PathItem]) -> Value {
    let param = |p: &Param| {
        let mut v = json!({
            "name": p.name,
            "in": p.location,
            "description": p.description,
            "schema": {"type": p.ty, "uniqueItems": true},
        });
        if p.required {
            v["required"] = json!(true);
        }
        v
    };
    let schema_json = |s: &Schema| match s {
        Schema::Def(d) => json!({"$ref": format!("#/components/schemas/{d}")}),
        Schema::Text => json!({"type": "string"}),
    };
    let mut paths = Map::new();
    for item in items {
        let mut pi = Map::new();
        for o in &item.ops {
            let mut responses = Map::new();
            for (code, schema) in o.responses.iter().chain(std::iter::once(&(401, None))) {
                let mut r = json!({"description": response_description(*code)});
                if let Some(s) = schema {
                    let content: Map<String, Value> = o
                        .produces
                        .iter()
                        .map(|mt| (mt.to_string(), json!({"schema": schema_json(s)})))
                        .collect();
                    r["content"] = Value::Object(content);
                }
                responses.insert(code.to_string(), r);
            }
            let mut op = json!({
                "tags": [o.tag],
                "description": o.description,
                "operationId": o.id,
                "parameters": o.params.iter().map(param).collect::<Vec<_>>(),
                "responses": responses,
                "x-kubernetes-action": o.action,
                "x-kubernetes-group-version-kind": gvk_json(&o.gvk),
            });
            if let Some((def, required)) = &o.body {
                let content: Map<String, Value> = o
                    .consumes
                    .iter()
                    .map(|ct| {
                        (
                            ct.to_string(),
                            json!({"schema": {"$ref": format!("#/components/schemas/{def}")}}),
                        )
                    })
                    .collect();
                op["requestBody"] = json!({"content": content, "required": required});
            }
            pi.insert(o.method.into(), op);
        }
        if !item.params.is_empty() {
            pi.insert("parameters".into(), item.params.iter().map(param).collect());
        }
        paths.insert(item.path.clone(), Value::Object(pi));
    }
    Value::Object(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_and_tags_follow_upstream() {
        let cases = [
            ("", "v1", "CoreV1", "core_v1"),
            ("apps", "v1", "AppsV1", "apps_v1"),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "RbacAuthorizationV1",
                "rbacAuthorization_v1",
            ),
            ("autoscaling", "v2", "AutoscalingV2", "autoscaling_v2"),
            (
                "stable.example.com",
                "v1beta1",
                "StableExampleComV1beta1",
                "stableExampleCom_v1beta1",
            ),
        ];
        for (g, v, infix, tag) in cases {
            assert_eq!(group_names(g, v), (infix.to_string(), tag.to_string()), "{g}/{v}");
        }
    }
}
