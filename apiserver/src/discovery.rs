//! Discovery documents: `/api`, `/apis`, per group and group-version
//! (`APIResourceList`), and aggregated discovery (`apidiscovery.k8s.io/v2`)
//! when the client asks for it in `Accept`.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

/// Whether `Accept` asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        if part.contains("as=APIGroupDiscoveryList") && part.contains("g=apidiscovery.k8s.io") {
            if part.contains("v=v2beta1") && !part.contains("v=v2;") && !part.ends_with("v=v2") {
                return Some("v2beta1");
            }
            return Some("v2");
        }
    }
    None
}

pub fn versions(advertise: &str, port: u16) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("{advertise}:{port}")}],
    })
}

fn verbs(r: &ResourceType) -> Vec<&'static str> {
    let mut v = r.verbs.clone();
    v.sort_unstable();
    v
}

fn sub_verbs(sub: &str) -> Vec<&'static str> {
    match sub {
        "status" | "scale" => vec!["get", "patch", "update"],
        "binding" | "eviction" | "token" => vec!["create"],
        "log" => vec!["get"],
        "exec" | "attach" | "portforward" => vec!["create", "get"],
        // Every method is proxied (connect verbs: POST create, PUT update,
        // PATCH patch, DELETE delete, GET/HEAD/OPTIONS get).
        "proxy" => vec!["create", "delete", "get", "patch", "update"],
        "ephemeralcontainers" | "resize" => vec!["get", "patch", "update"],
        "finalize" => vec!["update"],
        _ => vec!["get"],
    }
}

/// The group, version and kind a subresource takes and answers.
pub fn sub_kind(r: &ResourceType, sub: &str) -> (String, String, String) {
    match sub {
        "scale" => ("autoscaling".into(), "v1".into(), "Scale".into()),
        "binding" => (String::new(), "v1".into(), "Binding".into()),
        "eviction" => ("policy".into(), "v1".into(), "Eviction".into()),
        "token" => ("authentication.k8s.io".into(), "v1".into(), "TokenRequest".into()),
        "log" | "exec" | "attach" | "portforward" | "proxy" => (
            String::new(),
            "v1".into(),
            format!("{}{}Options", r.kind, capitalize(sub)),
        ),
        _ => (r.group.clone(), r.version.clone(), r.kind.clone()),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// `APIResourceList` for one group-version.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<_> = reg
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &rs {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r),
            "storageVersionHash": storage_hash(r),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        resources.push(e);
        for sub in &r.subresources {
            let (g, v, k) = sub_kind(r, sub);
            let mut s = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": k,
                "verbs": sub_verbs(sub),
            });
            if g != r.group || v != r.version {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

fn storage_hash(r: &ResourceType) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind));
    base64::engine::general_purpose::STANDARD.encode(&h[..8])
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    reg.groups()
        .iter()
        .find(|(g, _)| g == name && !g.is_empty())
        .map(|(g, vs)| {
            let mut v = group_json(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

/// Aggregated discovery: every group (legacy core only for `/api`, the
/// named groups for `/apis`) with all resources in one document.
pub fn aggregated(reg: &Registry, legacy: bool, version: &str) -> Value {
    let mut items = Vec::new();
    for (g, vs) in reg.groups() {
        if g.is_empty() != legacy {
            continue;
        }
        let mut versions = Vec::new();
        for v in &vs {
            let mut resources = Vec::new();
            for r in reg.all().iter().filter(|r| r.group == g && &r.version == v) {
                let mut e = json!({
                    "resource": r.plural,
                    "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": r.singular,
                    "verbs": verbs(r),
                });
                if !r.short_names.is_empty() {
                    e["shortNames"] = json!(r.short_names);
                }
                if !r.categories.is_empty() {
                    e["categories"] = json!(r.categories);
                }
                let subs: Vec<Value> = r
                    .subresources
                    .iter()
                    .map(|s| {
                        let (sg, sv, sk) = sub_kind(r, s);
                        json!({
                            "subresource": s,
                            "responseKind": {"group": sg, "version": sv, "kind": sk},
                            "verbs": sub_verbs(s),
                        })
                    })
                    .collect();
                if !subs.is_empty() {
                    e["subresources"] = json!(subs);
                }
                resources.push(e);
            }
            versions.push(json!({"version": v, "resources": resources, "freshness": "Current"}));
        }
        items.push(json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}
