//! LimitRanger: the LimitRanges of a pod's namespace give its containers
//! default limits and requests (items of type Container), then bound what
//! each container (type Container) and the pod as a whole (type Pod) may
//! request and use (min, max, maxLimitRequestRatio); PersistentVolumeClaims
//! are bounded by items of type PersistentVolumeClaim. Messages are
//! upstream's.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use apimachinery::quantity::Quantity;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Attributes, Operation, Plugin, list_objects};
use crate::server::Server;
use crate::status::ApiResult;

pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";
const LIMIT_RANGES: (&str, &str, &str) = ("", "v1", "limitranges");

pub struct LimitRanger;

type Resources = BTreeMap<String, Quantity>;

fn resources(v: Option<&Value>) -> Resources {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, q)| Some((k.clone(), Quantity::parse(q.as_str()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A LimitRange item with upstream's API defaults (for Container items:
/// default limit from max, default request from the default limit, else
/// from min).
pub fn defaulted_item(item: &Value) -> Value {
    let mut item = item.clone();
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return item;
    }
    for (to, from) in [
        ("default", "max"),
        ("defaultRequest", "default"),
        ("defaultRequest", "min"),
    ] {
        let src = item.get(from).and_then(Value::as_object).cloned().unwrap_or_default();
        let dst = item.as_object_mut().map(|m| m.entry(to).or_insert_with(|| json!({})));
        if let Some(Value::Object(dst)) = dst {
            for (k, v) in src {
                dst.entry(k).or_insert(v);
            }
        }
    }
    item
}

fn items(lr: &Value) -> Vec<Value> {
    lr.pointer("/spec/limits")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(defaulted_item).collect())
        .unwrap_or_default()
}

/// Applies the Container defaults of one LimitRange to a pod; records what
/// was set in the `kubernetes.io/limit-ranger` annotation.
pub fn apply_defaults(pod: &mut Value, lr: &Value) {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for item in items(lr).iter().filter(|i| i["type"] == "Container") {
        if let Some(m) = item.get("default").and_then(Value::as_object) {
            limits.extend(m.clone());
        }
        if let Some(m) = item.get("defaultRequest").and_then(Value::as_object) {
            requests.extend(m.clone());
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (list, label) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(cs) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            if !c.get("resources").is_some_and(Value::is_object) {
                c["resources"] = json!({});
            }
            let mut set = |field: &str, defaults: &Map<String, Value>| -> Vec<String> {
                let r = &mut c["resources"];
                if !r.get(field).is_some_and(Value::is_object) {
                    r[field] = json!({});
                }
                let mut added = Vec::new();
                if let Some(m) = r[field].as_object_mut() {
                    for (k, v) in defaults {
                        if !m.contains_key(k) {
                            m.insert(k.clone(), v.clone());
                            added.push(k.clone());
                        }
                    }
                }
                added.sort();
                added
            };
            let set_requests = set("requests", &requests);
            let set_limits = set("limits", &limits);
            if !set_requests.is_empty() {
                notes.push(format!("{} request for {label} {name}", set_requests.join(", ")));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {label} {name}", set_limits.join(", ")));
            }
        }
    }
    if !notes.is_empty() {
        let meta = crate::object::meta_mut(pod);
        let ann = meta.entry("annotations").or_insert_with(|| json!({}));
        if !ann.is_object() {
            *ann = json!({});
        }
        ann[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

fn min_constraint(kind: &str, res: &str, enforced: &Quantity, req: &Resources, lim: &Resources) -> Option<String> {
    let Some(r) = req.get(res) else {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if r.cmp_value(enforced) == Ordering::Less {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but request is {r}"
        ));
    }
    if let Some(l) = lim.get(res)
        && l.cmp_value(enforced) == Ordering::Less
    {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    None
}

fn max_constraint(kind: &str, res: &str, enforced: &Quantity, req: &Resources, lim: &Resources) -> Option<String> {
    let Some(l) = lim.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if l.cmp_value(enforced) == Ordering::Greater {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    if let Some(r) = req.get(res)
        && r.cmp_value(enforced) == Ordering::Greater
    {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but request is {r}"
        ));
    }
    None
}

fn max_request_constraint(kind: &str, res: &str, enforced: &Quantity, req: &Resources) -> Option<String> {
    let Some(r) = req.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    (r.cmp_value(enforced) == Ordering::Greater)
        .then(|| format!("maximum {res} usage per {kind} is {enforced}, but request is {r}"))
}

fn ratio_constraint(kind: &str, res: &str, enforced: &Quantity, req: &Resources, lim: &Resources) -> Option<String> {
    let r = req.get(res).map(Quantity::milli_value).unwrap_or(0);
    let l = lim.get(res).map(Quantity::milli_value).unwrap_or(0);
    if r == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if l == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = l as f64 / r as f64;
    (observed * 1000.0 > enforced.milli_value() as f64).then(|| {
        format!("{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}")
    })
}

fn check(kind: &str, item: &Value, req: &Resources, lim: &Resources, errs: &mut Vec<String>) {
    for (k, q) in resources(item.get("min")) {
        errs.extend(min_constraint(kind, &k, &q, req, lim));
    }
    for (k, q) in resources(item.get("max")) {
        errs.extend(max_constraint(kind, &k, &q, req, lim));
    }
    for (k, q) in resources(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(kind, &k, &q, req, lim));
    }
}

/// A pod's requests or limits as upstream's limit ranger sums them: the
/// containers' sum, or the largest init container's when larger.
fn pod_total(pod: &Value, field: &str) -> Resources {
    let of = |c: &Value| resources(c.pointer(&format!("/resources/{field}")));
    let list = |l: &str| {
        pod.pointer(&format!("/spec/{l}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut sum = Resources::new();
    for c in list("containers") {
        for (k, q) in of(&c) {
            let e = sum.entry(k).or_insert_with(Quantity::zero);
            *e = e.add(&q);
        }
    }
    for c in list("initContainers") {
        for (k, q) in of(&c) {
            let e = sum.entry(k).or_insert_with(Quantity::zero);
            if q.cmp_value(e) == Ordering::Greater {
                *e = q;
            }
        }
    }
    sum
}

/// The violations of one LimitRange by a pod, in upstream's order.
pub fn validate_pod(pod: &Value, lr: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items(lr) {
        match item.get("type").and_then(Value::as_str) {
            Some("Container") => {
                for list in ["containers", "initContainers"] {
                    for c in pod
                        .pointer(&format!("/spec/{list}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let req = resources(c.pointer("/resources/requests"));
                        let lim = resources(c.pointer("/resources/limits"));
                        check("Container", &item, &req, &lim, &mut errs);
                    }
                }
            }
            Some("Pod") => check(
                "Pod",
                &item,
                &pod_total(pod, "requests"),
                &pod_total(pod, "limits"),
                &mut errs,
            ),
            _ => {}
        }
    }
    errs
}

/// The violations of one LimitRange by a PersistentVolumeClaim.
pub fn validate_pvc(pvc: &Value, lr: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let req = resources(pvc.pointer("/spec/resources/requests"));
    for item in items(lr).iter().filter(|i| i["type"] == "PersistentVolumeClaim") {
        for (k, q) in resources(item.get("min")) {
            errs.extend(min_constraint("PersistentVolumeClaim", &k, &q, &req, &Resources::new()));
        }
        for (k, q) in resources(item.get("max")) {
            errs.extend(max_request_constraint("PersistentVolumeClaim", &k, &q, &req));
        }
    }
    errs
}

/// Upstream's aggregate error text: one message, or `[a, b]`.
pub fn aggregate(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn handles(&self, a: &Attributes) -> bool {
        (a.is("", "pods") && a.operation == Operation::Create)
            || (a.is("", "persistentvolumeclaims") && matches!(a.operation, Operation::Create | Operation::Update))
    }

    fn mutating(&self) -> bool {
        true
    }

    fn validating(&self) -> bool {
        true
    }

    fn admit<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            if a.resource != "pods" {
                return Ok(());
            }
            for lr in list_objects(server, LIMIT_RANGES, &a.namespace).await? {
                apply_defaults(&mut a.object, &lr);
            }
            Ok(())
        })
    }

    fn validate<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let mut errs = Vec::new();
            for lr in list_objects(server, LIMIT_RANGES, &a.namespace).await? {
                errs.extend(if a.resource == "pods" {
                    validate_pod(&a.object, &lr)
                } else {
                    validate_pvc(&a.object, &lr)
                });
            }
            if errs.is_empty() {
                Ok(())
            } else {
                Err(a.forbidden(aggregate(&errs)))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> Value {
        json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}})
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn defaults_are_applied() {
        let r = lr(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        let mut p = pod(json!([
            {"name": "a"},
            {"name": "b", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}},
        ]));
        apply_defaults(&mut p, &r);
        assert_eq!(
            p["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
        );
        assert_eq!(
            p["spec"]["containers"][1]["resources"],
            json!({"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "1", "memory": "128Mi"}})
        );
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; memory request for container b; memory limit for container b"
        );
        // Max alone defaults the limit and the request.
        let mut p = pod(json!([{"name": "a"}]));
        apply_defaults(&mut p, &lr(json!([{"type": "Container", "max": {"cpu": "2"}}])));
        assert_eq!(
            p["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "2"}, "requests": {"cpu": "2"}})
        );
    }

    #[test]
    fn bounds_are_checked() {
        let res = |req: Value, lim: Value| json!([{"name": "c", "resources": {"requests": req, "limits": lim}}]);
        let cases: Vec<(Value, Value, Vec<&str>)> = vec![
            (
                json!([{"type": "Container", "max": {"cpu": "1"}}]),
                res(json!({"cpu": "500m"}), json!({"cpu": "2"})),
                vec!["maximum cpu usage per Container is 1, but limit is 2"],
            ),
            (
                json!([{"type": "Container", "min": {"memory": "64Mi"}}]),
                res(json!({"memory": "32Mi"}), json!({"memory": "128Mi"})),
                vec!["minimum memory usage per Container is 64Mi, but request is 32Mi"],
            ),
            (
                json!([{"type": "Container", "min": {"cpu": "100m"}}]),
                res(json!({}), json!({})),
                vec!["minimum cpu usage per Container is 100m.  No request is specified"],
            ),
            (
                json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]),
                res(json!({"cpu": "250m"}), json!({"cpu": "1"})),
                vec!["cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"],
            ),
            (
                json!([{"type": "Pod", "max": {"cpu": "1"}}]),
                json!([
                    {"name": "a", "resources": {"limits": {"cpu": "600m"}}},
                    {"name": "b", "resources": {"limits": {"cpu": "600m"}}},
                ]),
                vec!["maximum cpu usage per Pod is 1, but limit is 1200m"],
            ),
            (
                json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"}}]),
                res(json!({"cpu": "200m"}), json!({"cpu": "1"})),
                vec![],
            ),
        ];
        for (limits, containers, want) in cases {
            assert_eq!(validate_pod(&pod(containers), &lr(limits.clone())), want, "{limits}");
        }
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn claims_are_bounded() {
        let r = lr(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "5Gi"}}]));
        let pvc = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(
            validate_pvc(&pvc("10Gi"), &r),
            vec!["maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi"]
        );
        assert_eq!(
            validate_pvc(&pvc("500Mi"), &r),
            vec!["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert!(validate_pvc(&pvc("2Gi"), &r).is_empty());
    }
}
