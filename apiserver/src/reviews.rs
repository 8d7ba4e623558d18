//! The review APIs: kinds that are created, answered and never stored.
//!
//! * authentication.k8s.io/v1 `tokenreviews` (is this token good, and
//!   whose is it) and `selfsubjectreviews` (who am I: `kubectl auth whoami`);
//! * authorization.k8s.io/v1 `subjectaccessreviews`,
//!   `localsubjectaccessreviews` and `selfsubjectaccessreviews` (may this
//!   user do this: `kubectl auth can-i`), and `selfsubjectrulesreviews`
//!   (what may I do: `kubectl auth can-i --list`).
//!
//! Each follows upstream's REST storage of the same name: the body is
//! decoded and checked like any create, validated as upstream's validation
//! does (422 with a cause per field), and answered with `201 Created` and
//! the object with its status filled in.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::authn::User;
use crate::authz::{self, Action, Decision};
use crate::rest::{self, Ctx};
use crate::status::{ApiError, ApiResult};
use apimachinery::validation::FieldError;

pub async fn create(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    ctx.dry_run()?;
    let mut obj = rest::decode_body(ctx, body)?;
    // The spec is optional to Go's decoder; a missing one reaches the
    // kind's own checks (e.g. "token is required"). SelfSubjectReview has
    // none.
    if ctx.rt.kind != "SelfSubjectReview" && obj.get("spec").is_none_or(Value::is_null) {
        obj["spec"] = json!({});
    }
    let sent_ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if ctx.rt.namespaced && !sent_ns.is_empty() && sent_ns != ctx.info.namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let mut obj = rest::admit_body(ctx, obj, None)?;
    let answered = match ctx.rt.kind.as_str() {
        "TokenReview" => token_review(ctx, obj).await?,
        "SelfSubjectReview" => self_subject_review(&ctx.user),
        "SelfSubjectRulesReview" => rules_review(ctx, &obj)?,
        _ => {
            if ctx.rt.namespaced {
                obj["metadata"]["namespace"] = json!(ctx.info.namespace);
            }
            access_review(ctx, obj)?
        }
    };
    rest::respond(ctx, StatusCode::CREATED, &answered)
}

/// Upstream's TokenReview storage: the token authenticated as a request
/// would be, for the review's audiences (the API's if none).
async fn token_review(ctx: &Ctx, mut obj: Value) -> ApiResult<Value> {
    let spec = &obj["spec"];
    let token = spec.get("token").and_then(Value::as_str).unwrap_or("").to_string();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let audiences = string_list(spec.get("audiences"));
    let wanted = (!audiences.is_empty()).then_some(audiences.as_slice());
    let status = match ctx.server.authenticate_bearer(&token, wanted).await {
        Ok(t) => json!({
            "authenticated": true,
            "user": user_info(&t.user),
            "audiences": t.audiences,
        }),
        Err(e) => json!({"user": {}, "error": e}),
    };
    obj["status"] = status;
    set_meta(&mut obj, None);
    Ok(obj)
}

fn self_subject_review(user: &User) -> Value {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": now},
        "status": {"userInfo": user_info(user)},
    })
}

/// `UserInfo` as upstream serializes it: empty fields left out.
fn user_info(user: &User) -> Value {
    let mut info = Map::new();
    if !user.name.is_empty() {
        info.insert("username".into(), json!(user.name));
    }
    if !user.uid.is_empty() {
        info.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        info.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        info.insert("extra".into(), json!(user.extra));
    }
    Value::Object(info)
}

/// Subject, self-subject and local-subject access reviews.
fn access_review(ctx: &Ctx, mut obj: Value) -> ApiResult<Value> {
    let kind = ctx.rt.kind.as_str();
    let spec = obj["spec"].clone();
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let mut errors = Vec::new();
    match (resource, non_resource) {
        (Some(_), Some(n)) => errors.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            n.clone(),
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => errors.push(FieldError::invalid(
            "spec.resourceAttributes",
            Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    let subject = if kind == "SelfSubjectAccessReview" {
        ctx.user.clone()
    } else {
        let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
        let groups = string_list(spec.get("groups"));
        if user.is_empty() && groups.is_empty() {
            errors.push(FieldError::invalid(
                "spec.user",
                user,
                "at least one of user or group must be specified",
            ));
        }
        User {
            name: user.into(),
            uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").into(),
            groups,
            extra: spec
                .get("extra")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), string_list(Some(v)))).collect())
                .unwrap_or_default(),
        }
    };
    // Metadata must be empty (for a local review: but for its namespace).
    let mut meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("managedFields");
        m.remove("creationTimestamp");
        if kind == "LocalSubjectAccessReview" {
            m.remove("namespace");
        }
        if !m.is_empty() {
            errors.push(FieldError::invalid(
                "metadata",
                meta.clone(),
                if kind == "LocalSubjectAccessReview" {
                    "must be empty except for namespace"
                } else {
                    "must be empty"
                },
            ));
        }
    }
    if kind == "LocalSubjectAccessReview" {
        if let Some(r) = resource {
            let ns = r.get("namespace").and_then(Value::as_str).unwrap_or("");
            if ns != ctx.info.namespace {
                errors.push(FieldError::invalid(
                    "spec.resourceAttributes.namespace",
                    ns,
                    "must match metadata.namespace",
                ));
            }
        }
        if let Some(n) = non_resource {
            errors.push(FieldError::invalid(
                "spec.nonResourceAttributes",
                n.clone(),
                "disallowed on this kind of request",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            target: ctx.target(""),
            errors,
        });
    }
    let field = |v: Option<&Value>, k: &str| -> String {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (verb, namespace, group, res, sub, name, path) = (
        field(resource.or(non_resource), "verb"),
        field(resource, "namespace"),
        field(resource, "group"),
        field(resource, "resource"),
        field(resource, "subresource"),
        field(resource, "name"),
        field(non_resource, "path"),
    );
    let action = if resource.is_some() {
        Action::Resource {
            verb: &verb,
            namespace: &namespace,
            group: &group,
            resource: &res,
            subresource: &sub,
            name: &name,
        }
    } else {
        Action::NonResource {
            verb: &verb,
            path: &path,
        }
    };
    let (decision, reason) = authz::authorize(&subject, &action);
    let mut status = json!({"allowed": decision == Decision::Allow});
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    obj["status"] = status;
    let ns = (kind == "LocalSubjectAccessReview").then(|| ctx.info.namespace.clone());
    set_meta(&mut obj, ns);
    Ok(obj)
}

/// Upstream's SelfSubjectRulesReview storage: the requester's rules in the
/// namespace asked for; the answer carries no spec.
fn rules_review(ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
    let namespace = obj.pointer("/spec/namespace").and_then(Value::as_str).unwrap_or("");
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let (resource_rules, non_resource_rules, incomplete) = authz::rules_for(&ctx.user);
    Ok(json!({
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": {},
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": incomplete,
        },
    }))
}

/// A review's metadata as upstream returns it: nothing but a zero
/// creationTimestamp (and the namespace of a namespaced review).
fn set_meta(obj: &mut Value, namespace: Option<String>) {
    let mut meta = json!({"creationTimestamp": null});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    obj["metadata"] = meta;
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}
