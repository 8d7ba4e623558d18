//! Subresources other than status: scale, pods/binding, pods/eviction,
//! serviceaccounts/token.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::authn::{SaClaimsK8s, SaRef};
use crate::object;
use crate::rest::{self, Ctx};
use crate::status::{ApiError, ApiResult, Target};
use crate::storage::{Cas, ReadAt};

/// JSON pointers of a scalable kind: (spec replicas, status replicas,
/// label selector or its string form).
fn scale_paths(ctx: &Ctx) -> (String, String, Option<String>) {
    if let Some(p) = &ctx.rt.scale_paths {
        let conv = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .map(|s| s.trim_start_matches('.').replace('.', "/"))
                .map(|s| format!("/{s}"))
        };
        return (
            conv("specReplicasPath").unwrap_or_else(|| "/spec/replicas".into()),
            conv("statusReplicasPath").unwrap_or_else(|| "/status/replicas".into()),
            conv("labelSelectorPath"),
        );
    }
    ("/spec/replicas".into(), "/status/replicas".into(), None)
}

fn to_scale(ctx: &Ctx, obj: &Value) -> Value {
    let (spec, status, sel_path) = scale_paths(ctx);
    let selector = match sel_path {
        Some(p) => obj.pointer(&p).and_then(Value::as_str).unwrap_or("").to_string(),
        None => obj
            .pointer("/spec/selector")
            .map(|s| {
                if s.get("matchLabels").is_some() || s.get("matchExpressions").is_some() {
                    apimachinery::labels::Selector::from_label_selector(s)
                        .map(|x| x.to_string())
                        .unwrap_or_default()
                } else if let Some(m) = s.as_object() {
                    // ReplicationController: a plain map.
                    let mut parts: Vec<String> = m
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect();
                    parts.sort();
                    parts.join(",")
                } else {
                    String::new()
                }
            })
            .unwrap_or_default(),
    };
    let meta = object::meta(obj).cloned().unwrap_or_default();
    let mut m = serde_json::Map::new();
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": {"replicas": obj.pointer(&spec).and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer(&status).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

pub async fn get_scale(ctx: &Ctx) -> ApiResult<Response> {
    let cur = rest::current(ctx).await?;
    rest::respond(ctx, StatusCode::OK, &to_scale(ctx, &cur.object))
}

async fn write_scale(ctx: &Ctx, replicas: i64, rv: Option<i64>) -> ApiResult<Response> {
    if replicas < 0 {
        return Err(ApiError::Invalid {
            target: ctx.target(&ctx.info.name),
            errors: vec![apimachinery::validation::FieldError::invalid(
                "spec.replicas",
                json!(replicas),
                "must be greater than or equal to 0",
            )],
        });
    }
    let (spec, _, _) = scale_paths(ctx);
    for _ in 0..8 {
        let cur = rest::current(ctx).await?;
        if let Some(rv) = rv
            && rv != cur.revision
        {
            return Err(ApiError::modified(ctx.target(&ctx.info.name)));
        }
        let mut obj = cur.object.clone();
        let (parent, leaf) = spec.rsplit_once('/').unwrap_or(("", "replicas"));
        if obj.pointer(parent).is_none() {
            obj["spec"] = json!({});
        }
        if let Some(p) = obj.pointer_mut(parent).and_then(Value::as_object_mut) {
            p.insert(leaf.into(), json!(replicas));
        }
        if obj == cur.object {
            // Already at that size: nothing to write.
            return rest::respond(ctx, StatusCode::OK, &to_scale(ctx, &obj));
        }
        {
            let g = object::meta(&obj)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            object::meta_mut(&mut obj).insert("generation".into(), json!(g + 1));
        }
        crate::managed::record_update_for(ctx, Some(&cur.object), &mut obj, "scale");
        if ctx.query.get("dryRun") == Some("All") {
            return rest::respond(ctx, StatusCode::OK, &to_scale(ctx, &obj));
        }
        match ctx.server.storage.cas(&cur.key, cur.revision, Some(&obj)).await? {
            Cas::Done { revision } => {
                crate::storage::set_resource_version(&mut obj, revision);
                return rest::respond(ctx, StatusCode::OK, &to_scale(ctx, &obj));
            }
            Cas::Mismatch(_) if rv.is_none() => continue,
            Cas::Mismatch(_) => break,
        }
    }
    Err(ApiError::modified(ctx.target(&ctx.info.name)))
}

pub async fn put_scale(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    let v = rest::decode_body(ctx, body)?;
    let replicas = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
    let rv = object::resource_version(&v);
    let rv = if rv.is_empty() { None } else { Some(rest::parse_rv(rv)?) };
    write_scale(ctx, replicas, rv).await
}

pub async fn patch_scale(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    let cur = rest::current(ctx).await?;
    let scale = to_scale(ctx, &cur.object);
    let ct = ctx
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let kind = crate::patch::PatchKind::from_content_type(&ct, false)?;
    let doc = crate::patch::parse(kind, body)?;
    let patched = match kind {
        crate::patch::PatchKind::Json => {
            let ops: json_patch::Patch =
                serde_json::from_value(doc).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let mut s = scale.clone();
            json_patch::patch(&mut s, &ops.0).map_err(|e| ApiError::bad_request(e.to_string()))?;
            s
        }
        _ => {
            let mut s = scale.clone();
            json_patch::merge(&mut s, &doc);
            s
        }
    };
    let replicas = patched.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
    write_scale(ctx, replicas, None).await
}

pub async fn post(ctx: &mut Ctx, sub: &str, body: &[u8]) -> ApiResult<Response> {
    match (ctx.rt.kind.as_str(), sub) {
        ("Pod", "binding") => binding(ctx, body).await,
        ("Pod", "eviction") => eviction(ctx, body).await,
        ("ServiceAccount", "token") => token(ctx, body).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

async fn binding(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    let b = rest::decode_body(ctx, body)?;
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::Invalid {
            target: ctx.target(&ctx.info.name),
            errors: vec![apimachinery::validation::FieldError::required("target.name", "")],
        });
    }
    for _ in 0..8 {
        let cur = rest::current(ctx).await?;
        let mut pod = cur.object.clone();
        if object::is_deleting(&pod) {
            return Err(ApiError::Conflict {
                target: ctx.target(&ctx.info.name),
                message: "pod is being deleted, cannot be assigned to a host".into(),
            });
        }
        let existing = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        if !existing.is_empty() {
            return Err(ApiError::Conflict {
                target: ctx.target(&ctx.info.name),
                message: format!("pod {} is already assigned to node \"{existing}\"", ctx.info.name),
            });
        }
        pod["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now()});
        let conds = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conds.push(cond);
        pod["status"]["conditions"] = json!(conds);
        match ctx.server.storage.cas(&cur.key, cur.revision, Some(&pod)).await? {
            Cas::Done { .. } => {
                return Ok(rest::encode(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                    crate::request::Output::Json,
                ));
            }
            Cas::Mismatch(_) => continue,
        }
    }
    Err(ApiError::Conflict {
        target: ctx.target(&ctx.info.name),
        message: "the object has been modified".into(),
    })
}

async fn eviction(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    let b = rest::decode_body(ctx, body)?;
    if let Some(n) = b.pointer("/metadata/name").and_then(Value::as_str)
        && n != ctx.info.name
    {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {}, {n}",
            ctx.info.name
        )));
    }
    let d = b.get("deleteOptions").cloned().unwrap_or(Value::Null);
    let opts = rest::DeleteOptions {
        grace_period: d.get("gracePeriodSeconds").and_then(Value::as_i64),
        precondition_uid: d
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_rv: d
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run: d
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All")),
        ..rest::DeleteOptions::default()
    };
    let pod = rest::current(ctx).await?;
    // A pod already going, finished or never started needs no budget.
    let ignore_budget = object::meta(&pod.object).is_some_and(|m| m.get("deletionTimestamp").is_some())
        || matches!(
            pod.object.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed" | "Pending") | None
        );
    if !ignore_budget {
        take_disruption(ctx, &pod.object, opts.dry_run).await?;
    }
    if !opts.dry_run {
        let key = ctx.rt.key(&ctx.info.namespace, &ctx.info.name);
        rest::delete_one(ctx, &key, &opts).await?;
    }
    Ok(rest::encode(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        crate::request::Output::Json,
    ))
}

/// Checks the pod's PodDisruptionBudget (as upstream: at most one) and
/// records the disruption in its status, so that concurrent evictions
/// cannot together exceed it.
async fn take_disruption(ctx: &Ctx, pod: &Value, dry_run: bool) -> ApiResult<()> {
    let prefix = format!("/registry/poddisruptionbudgets/{}/", ctx.info.namespace);
    let labels = pod.pointer("/metadata/labels");
    for _ in 0..8 {
        let page = ctx
            .server
            .storage
            .list(&prefix, "", 0, crate::storage::ReadAt::Latest)
            .await?;
        let matching: Vec<_> = page
            .items
            .into_iter()
            .filter(|p| {
                p.object
                    .pointer("/spec/selector")
                    .filter(|s| !s.is_null())
                    .and_then(|s| apimachinery::labels::Selector::from_label_selector(s).ok())
                    .is_some_and(|sel| sel.matches_value(labels))
            })
            .collect();
        let Some(pdb) = matching.first() else {
            return Ok(());
        };
        if matching.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let name = object::name(&pdb.object).to_string();
        let int = |ptr: &str| pdb.object.pointer(ptr).and_then(Value::as_i64).unwrap_or(0);
        if int("/status/observedGeneration") < int("/metadata/generation") {
            return Err(ApiError::DisruptionBudget {
                cause: format!("The disruption budget {name} is still being processed by the server."),
            });
        }
        let allowed = int("/status/disruptionsAllowed");
        if allowed <= 0 {
            let (desired, current) = (int("/status/desiredHealthy"), int("/status/currentHealthy"));
            return Err(ApiError::DisruptionBudget {
                cause: format!("The disruption budget {name} needs {desired} healthy pods and has {current} currently"),
            });
        }
        if dry_run {
            return Ok(());
        }
        let mut updated = pdb.object.clone();
        updated["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if !updated["status"]["disruptedPods"].is_object() {
            updated["status"]["disruptedPods"] = json!({});
        }
        updated["status"]["disruptedPods"][object::name(pod)] = json!(crate::object::now());
        match ctx.server.storage.cas(&pdb.key, pdb.revision, Some(&updated)).await? {
            Cas::Done { .. } => return Ok(()),
            Cas::Mismatch(_) => continue,
        }
    }
    Err(ApiError::TooManyRequests {
        message: "the disruption budget changed too often; try again".into(),
        retry_after: 1,
    })
}

/// The TokenRequest API (`serviceaccounts/<name>/token`), as upstream's
/// token REST: a token for the service account, for the requested
/// audiences (the API's by default), valid for `expirationSeconds` (at most
/// `--service-account-max-token-expiration`), optionally bound to a pod,
/// secret or node whose deletion invalidates it.
async fn token(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    let req = rest::decode_body(ctx, body)?;
    let sa = rest::current(ctx).await?;
    let ttl = req
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    let too = |why: &str| ApiError::Invalid {
        target: Target {
            group: "authentication.k8s.io".into(),
            resource: "tokenrequests".into(),
            kind: "TokenRequest".into(),
            name: ctx.info.name.clone(),
        },
        errors: vec![apimachinery::validation::FieldError::invalid(
            "spec.expirationSeconds",
            json!(ttl),
            why,
        )],
    };
    if ttl < 600 {
        return Err(too("may not specify a duration less than 10 minutes"));
    }
    if ttl > 1 << 32 {
        return Err(too("may not specify a duration larger than 2^32 seconds"));
    }
    let ttl = ttl.min(ctx.server.config.max_token_expiration);
    let mut auds: Vec<String> = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default();
    if auds.is_empty() {
        auds = ctx.server.authn.api_audiences().to_vec();
    }
    let namespace = ctx.info.namespace.clone();
    let mut refs = SaClaimsK8s {
        namespace: namespace.clone(),
        serviceaccount: SaRef {
            name: ctx.info.name.clone(),
            uid: object::uid(&sa.object).into(),
        },
        ..Default::default()
    };
    let mut bound = req.pointer("/spec/boundObjectRef").cloned().filter(|b| !b.is_null());
    if let Some(b) = bound.as_mut() {
        bind(ctx, &mut refs, b).await?;
    }
    let (tok, exp) = ctx
        .server
        .authn
        .issue_sa_token(refs, auds.clone(), ttl)
        .map_err(ApiError::internal)?;
    let exp_ts = jiff::Timestamp::from_second(exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let resp = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": ctx.info.name, "namespace": namespace, "creationTimestamp": null},
        "spec": {"audiences": auds, "expirationSeconds": ttl, "boundObjectRef": bound},
        "status": {"token": tok, "expirationTimestamp": exp_ts},
    });
    Ok(rest::encode(StatusCode::CREATED, &resp, crate::request::Output::Json))
}

/// Binds a token to the object `bound` names (a TokenRequest's
/// `boundObjectRef`): it must exist, with the given UID if one is given; a
/// pod must run as this service account, and its node (if it has one and
/// the node exists) is bound too.
async fn bind(ctx: &Ctx, refs: &mut SaClaimsK8s, bound: &mut Value) -> ApiResult<()> {
    let api_version = bound.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = bound.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = match (group, kind) {
        ("", "Pod") => "pods",
        ("", "Secret") => "secrets",
        ("", "Node") => "nodes",
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    let ns = if resource == "nodes" {
        ""
    } else {
        refs.namespace.as_str()
    };
    let get = |resource: &'static str, ns: String, name: String| async move {
        let rt = ctx
            .server
            .registry
            .lookup("", "v1", resource)
            .ok_or_else(|| ApiError::internal(format!("no {resource} resource")))?;
        let stored = ctx.server.storage.get(&rt.key(&ns, &name), ReadAt::Latest).await?;
        Ok::<_, ApiError>(stored.map(|s| s.object))
    };
    let Some(obj) = get(resource, ns.to_string(), name.clone()).await? else {
        return Err(ApiError::NotFound {
            target: Target {
                group: String::new(),
                resource: resource.into(),
                kind: kind.into(),
                name,
            },
        });
    };
    let uid = object::uid(&obj).to_string();
    if let Some(want) = bound.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty())
        && want != uid
    {
        return Err(ApiError::Conflict {
            target: Target {
                group: String::new(),
                resource: kind.into(),
                kind: kind.into(),
                name: name.clone(),
            },
            message: format!(
                "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        });
    }
    let this = SaRef {
        name: name.clone(),
        uid: uid.clone(),
    };
    match resource {
        "pods" => {
            let sa_name = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if sa_name != refs.serviceaccount.name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {:?} to pod running with different serviceaccount name.",
                    refs.serviceaccount.name
                )));
            }
            if let Some(node) = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                && let Some(n) = get("nodes", String::new(), node.to_string()).await?
            {
                refs.node = Some(SaRef {
                    name: node.into(),
                    uid: object::uid(&n).into(),
                });
            }
            refs.pod = Some(this);
        }
        "secrets" => refs.secret = Some(this),
        _ => refs.node = Some(this),
    }
    bound["uid"] = json!(uid);
    Ok(())
}
