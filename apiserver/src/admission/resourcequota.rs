//! ResourceQuota: a create (or an update that grows usage) is charged
//! against every ResourceQuota of its namespace that matches it, all
//! quotas' `status.used` written in one compare-and-swap transaction
//! (retried on conflict), so concurrent requests on any apiserver never
//! overspend. A request that would exceed a quota's `status.hard` is a 403
//! with upstream's `exceeded quota:` message; a pod that leaves out a
//! request or limit a quota constrains is refused (`must specify`).
//! The resourcequota controller recalculates `status.used` from what
//! exists (and so returns what was charged for writes that then failed).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use apimachinery::quantity::Quantity;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin};
use crate::server::Server;
use crate::status::{ApiError, ApiResult};
use crate::storage::ReadAt;

/// How many times a charge is retried when a quota changed meanwhile.
const RETRIES: usize = 16;

pub struct ResourceQuota;

pub type Usage = BTreeMap<String, Quantity>;

fn q(n: i64) -> Quantity {
    Quantity::parse(&n.to_string()).unwrap_or_default()
}

fn list_of(v: Option<&Value>) -> Usage {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn add(u: &mut Usage, k: &str, v: Quantity) {
    let e = u.entry(k.to_string()).or_insert_with(Quantity::zero);
    *e = e.add(&v);
}

const STANDARD: &[&str] = &["cpu", "memory", "ephemeral-storage", "storage", "pods"];

fn is_extended(name: &str) -> bool {
    !STANDARD.contains(&name)
        && !name.starts_with("hugepages-")
        && !name.starts_with("requests.")
        && name.contains('/')
        && !name.starts_with("kubernetes.io/")
}

/// Upstream's `podComputeUsageHelper` over requests and limits.
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut u = Usage::new();
    u.insert("count/pods".into(), q(1));
    u.insert("pods".into(), q(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(v) = requests.get(r) {
            u.insert(r.into(), *v);
            u.insert(format!("requests.{r}"), *v);
        }
        if let Some(v) = limits.get(r) {
            u.insert(format!("limits.{r}"), *v);
        }
    }
    for (r, v) in requests {
        if r.starts_with("hugepages-") {
            u.insert(r.clone(), *v);
            u.insert(format!("requests.{r}"), *v);
        }
        if is_extended(r) {
            u.insert(format!("requests.{r}"), *v);
        }
    }
    u
}

fn container_resources(c: &Value, field: &str) -> Usage {
    list_of(c.pointer(&format!("/resources/{field}")))
}

/// A pod's requests or limits: the containers' sum, or the largest init
/// container's when larger, plus the overhead.
fn pod_resources(pod: &Value, field: &str) -> Usage {
    let list = |l: &str| {
        pod.pointer(&format!("/spec/{l}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut sum = Usage::new();
    for c in list("containers") {
        for (k, v) in container_resources(&c, field) {
            add(&mut sum, &k, v);
        }
    }
    for c in list("initContainers") {
        for (k, v) in container_resources(&c, field) {
            let e = sum.entry(k).or_insert_with(Quantity::zero);
            if v.cmp_value(e) == Ordering::Greater {
                *e = v;
            }
        }
    }
    for (k, v) in list_of(pod.pointer("/spec/overhead")) {
        if sum.contains_key(&k) || field == "requests" {
            add(&mut sum, &k, v);
        }
    }
    sum
}

/// What an object uses, by resource name, as upstream's evaluators count.
pub fn usage(group: &str, resource: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    match (group, resource) {
        ("", "pods") => {
            if matches!(
                obj.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            ) {
                return u;
            }
            return compute_usage(&pod_resources(obj, "requests"), &pod_resources(obj, "limits"));
        }
        ("", "services") => {
            u.insert("services".into(), q(1));
            let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len) as i64;
            match ty {
                "NodePort" => {
                    u.insert("services.nodeports".into(), q(ports));
                }
                "LoadBalancer" => {
                    u.insert("services.loadbalancers".into(), q(1));
                    if obj
                        .pointer("/spec/allocateLoadBalancerNodePorts")
                        .and_then(Value::as_bool)
                        != Some(false)
                    {
                        u.insert("services.nodeports".into(), q(ports));
                    }
                }
                _ => {}
            }
        }
        ("", "persistentvolumeclaims") => {
            u.insert("persistentvolumeclaims".into(), q(1));
            let storage = list_of(obj.pointer("/spec/resources/requests")).get("storage").copied();
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !class.is_empty() {
                u.insert(
                    format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
                    q(1),
                );
            }
            if let Some(s) = storage {
                u.insert("requests.storage".into(), s);
                if !class.is_empty() {
                    u.insert(format!("{class}.storageclass.storage.k8s.io/requests.storage"), s);
                }
            }
        }
        ("", "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas") => {
            u.insert(resource.to_string(), q(1));
        }
        _ => {}
    }
    let count = if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    };
    u.insert(count, q(1));
    u
}

fn pod_qos_best_effort(pod: &Value) -> bool {
    ["containers", "initContainers"].iter().all(|l| {
        pod.pointer(&format!("/spec/{l}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|c| container_resources(c, "requests").is_empty() && container_resources(c, "limits").is_empty())
    })
}

fn scope_matches(scope: &str, operator: &str, values: &[String], pod: &Value) -> bool {
    match scope {
        "Terminating" => pod
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64)
            .is_some(),
        "NotTerminating" => pod
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64)
            .is_none(),
        "BestEffort" => pod_qos_best_effort(pod),
        "NotBestEffort" => !pod_qos_best_effort(pod),
        "PriorityClass" => {
            let pc = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            match operator {
                "In" => values.iter().any(|v| v == pc),
                "NotIn" => !values.iter().any(|v| v == pc),
                "Exists" => !pc.is_empty(),
                "DoesNotExist" => pc.is_empty(),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a quota applies to the object: unscoped quotas to everything,
/// scoped ones only to pods in every scope.
pub fn matches(quota: &Value, group: &str, resource: &str, obj: &Value) -> bool {
    let mut scopes: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s.as_str()?.to_string(), "Exists".to_string(), vec![])))
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        scopes.push((
            e.get("scopeName").and_then(Value::as_str).unwrap_or("").to_string(),
            e.get("operator").and_then(Value::as_str).unwrap_or("").to_string(),
            values,
        ));
    }
    if scopes.is_empty() {
        return true;
    }
    (group, resource) == ("", "pods") && scopes.iter().all(|(s, op, vals)| scope_matches(s, op, vals, obj))
}

/// Upstream's `validationSet`: quota on these needs every container to say.
const CONSTRAINED: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Upstream's pod constraints: `Err` is the `must specify …` text.
pub fn pod_constraints(pod: &Value, hard: &BTreeSet<String>) -> Result<(), String> {
    let required: BTreeSet<&str> = CONSTRAINED.iter().copied().filter(|r| hard.contains(*r)).collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for l in ["containers", "initContainers"] {
        for c in pod
            .pointer(&format!("/spec/{l}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let u = compute_usage(&container_resources(c, "requests"), &container_resources(c, "limits"));
            for r in &required {
                if !u.contains_key(*r) {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                    missing.entry(r).or_default().insert(name);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

fn pretty(u: &Usage) -> String {
    u.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn to_json(u: &Usage) -> Value {
    Value::Object(u.iter().map(|(k, v)| (k.clone(), json!(v.to_string()))).collect())
}

/// Charges `delta` to the matching quotas. Returns the quotas' new
/// `status.used` (by index) or the reason to refuse.
pub fn charge(
    quotas: &[Value],
    group: &str,
    resource: &str,
    obj: &Value,
    delta: &Usage,
) -> Result<Vec<(usize, Usage)>, String> {
    let mut interesting = Vec::new();
    for (i, quota) in quotas.iter().enumerate() {
        if !matches(quota, group, resource, obj) {
            continue;
        }
        let hard = list_of(quota.pointer("/status/hard"));
        let used = list_of(quota.pointer("/status/used"));
        let name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let hard_names: BTreeSet<String> = hard.keys().cloned().collect();
        if (group, resource) == ("", "pods") {
            pod_constraints(obj, &hard_names).map_err(|e| format!("failed quota: {name}: {e}"))?;
        }
        let restricted: Vec<&String> = hard_names.iter().filter(|k| delta.contains_key(*k)).collect();
        let unknown: Vec<&str> = restricted
            .iter()
            .filter(|k| !used.contains_key(**k))
            .map(|k| k.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "status unknown for quota: {name}, resources: {}",
                unknown.join(",")
            ));
        }
        if !restricted.is_empty() {
            interesting.push((i, hard, used));
        }
    }
    let mut out = Vec::new();
    for (i, hard, used) in interesting {
        let requested: Usage = delta
            .iter()
            .filter(|(k, v)| hard.contains_key(*k) && !v.is_zero())
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if requested.is_empty() {
            continue;
        }
        let mut new_used = used.clone();
        for (k, v) in &requested {
            add(&mut new_used, k, *v);
        }
        let exceeded: BTreeSet<&String> = requested
            .keys()
            .filter(|k| new_used[*k].cmp_value(&hard[*k]) == Ordering::Greater)
            .collect();
        if !exceeded.is_empty() {
            let mask = |u: &Usage| -> Usage {
                u.iter()
                    .filter(|(k, _)| exceeded.contains(k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            };
            let name = quotas[i]
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(format!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                pretty(&mask(&requested)),
                pretty(&mask(&used)),
                pretty(&mask(&hard))
            ));
        }
        out.push((i, new_used));
    }
    Ok(out)
}

/// What a request adds: the new object's usage, less the old one's for an
/// update (never negative).
pub fn delta(a: &Attributes) -> Usage {
    let mut d = usage(&a.group, &a.resource, &a.object);
    if a.operation == Operation::Update
        && let Some(old) = &a.old
    {
        let prev = usage(&a.group, &a.resource, old);
        for (k, v) in d.iter_mut() {
            if let Some(p) = prev.get(k) {
                let r = v.sub(p);
                *v = if r.is_negative() { Quantity::zero() } else { r };
            }
        }
    }
    d.retain(|_, v| !v.is_zero());
    d
}

impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn handles(&self, a: &Attributes) -> bool {
        if !a.subresource.is_empty() || a.namespace.is_empty() {
            return false;
        }
        match a.operation {
            Operation::Create => true,
            // Updates count where usage can grow.
            Operation::Update => a.is("", "services") || a.is("", "persistentvolumeclaims"),
            Operation::Delete => false,
        }
    }

    fn validating(&self) -> bool {
        true
    }

    fn validate<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let d = delta(a);
            if d.is_empty() {
                return Ok(());
            }
            let Some(rt) = server.registry.lookup("", "v1", "resourcequotas") else {
                return Ok(());
            };
            for _ in 0..RETRIES {
                let page = server
                    .storage
                    .list(&rt.prefix(&a.namespace), "", 0, ReadAt::Latest)
                    .await?;
                if page.items.is_empty() {
                    return Ok(());
                }
                let quotas: Vec<Value> = page.items.iter().map(|s| s.object.clone()).collect();
                let charged = charge(&quotas, &a.group, &a.resource, &a.object, &d).map_err(|why| a.forbidden(why))?;
                if charged.is_empty() || a.dry_run {
                    return Ok(());
                }
                let writes: Vec<(String, i64, Value)> = charged
                    .into_iter()
                    .map(|(i, used)| {
                        let s = &page.items[i];
                        let mut obj = s.object.clone();
                        obj["status"]["used"] = to_json(&used);
                        (s.key.clone(), s.revision, obj)
                    })
                    .collect();
                if server.storage.cas_all(&writes).await? {
                    return Ok(());
                }
            }
            Err(ApiError::Conflict {
                target: a.target(),
                message: "Internal error occurred: resource quota evaluation timed out".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(name: &str, hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}})
    }

    fn pod(cpu_req: Option<&str>, cpu_lim: Option<&str>) -> Value {
        let mut r = json!({});
        if let Some(c) = cpu_req {
            r["requests"] = json!({"cpu": c});
        }
        if let Some(c) = cpu_lim {
            r["limits"] = json!({"cpu": c});
        }
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": r}]}})
    }

    #[test]
    fn usage_is_counted() {
        let u = usage("", "pods", &pod(Some("500m"), Some("1")));
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=500m,limits.cpu=1,pods=1,requests.cpu=500m"
        );
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}});
        assert_eq!(
            pretty(&usage("", "services", &svc)),
            "count/services=1,services=1,services.nodeports=2"
        );
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            pretty(&usage("", "persistentvolumeclaims", &pvc)),
            "count/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/requests.storage=1Gi,persistentvolumeclaims=1,requests.storage=1Gi"
        );
        assert_eq!(
            pretty(&usage("apps", "deployments", &json!({}))),
            "count/deployments.apps=1"
        );
        assert_eq!(
            pretty(&usage("", "configmaps", &json!({}))),
            "configmaps=1,count/configmaps=1"
        );
    }

    #[test]
    fn charges_and_refusals() {
        let p = pod(Some("500m"), Some("1"));
        let d = usage("", "pods", &p);
        type Want = Result<Vec<(usize, &'static str)>, &'static str>;
        let cases: Vec<(Vec<Value>, Want)> = vec![
            (vec![], Ok(vec![])),
            (
                vec![quota("q", json!({"pods": "2"}), json!({"pods": "1"}))],
                Ok(vec![(0, "pods=2")]),
            ),
            (
                vec![quota("q", json!({"pods": "2"}), json!({"pods": "2"}))],
                Err("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
            ),
            (
                vec![quota(
                    "q",
                    json!({"requests.cpu": "1", "pods": "5"}),
                    json!({"requests.cpu": "800m", "pods": "0"}),
                )],
                Err(
                    "exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=800m, limited: requests.cpu=1",
                ),
            ),
            (
                vec![quota("q", json!({"configmaps": "1"}), json!({"configmaps": "1"}))],
                Ok(vec![]),
            ),
            (
                vec![quota("q", json!({"pods": "2"}), json!({}))],
                Err("status unknown for quota: q, resources: pods"),
            ),
            (
                vec![
                    quota("a", json!({"pods": "3"}), json!({"pods": "0"})),
                    quota("b", json!({"limits.cpu": "4"}), json!({"limits.cpu": "1"})),
                ],
                Ok(vec![(0, "pods=1"), (1, "limits.cpu=2")]),
            ),
        ];
        for (quotas, want) in cases {
            let got = charge(&quotas, "", "pods", &p, &d);
            match want {
                Ok(w) => {
                    let got = got.expect("charged");
                    let got: Vec<(usize, String)> = got.iter().map(|(i, u)| (*i, pretty(u))).collect();
                    let w: Vec<(usize, String)> = w.iter().map(|(i, s)| (*i, s.to_string())).collect();
                    assert_eq!(got, w);
                }
                Err(m) => assert_eq!(got.expect_err("refused"), m),
            }
        }
    }

    #[test]
    fn constrained_resources_must_be_set() {
        let hard: BTreeSet<String> = ["limits.memory", "requests.cpu"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            pod_constraints(&pod(None, None), &hard),
            Err("must specify limits.memory for: c; requests.cpu for: c".into())
        );
        let quotas = vec![quota("q", json!({"requests.cpu": "1"}), json!({"requests.cpu": "0"}))];
        let p = pod(None, None);
        assert_eq!(
            charge(&quotas, "", "pods", &p, &usage("", "pods", &p)).expect_err("refused"),
            "failed quota: q: must specify requests.cpu for: c"
        );
    }

    #[test]
    fn scopes_pick_pods() {
        let be = quota("be", json!({"pods": "1"}), json!({"pods": "0"}));
        let mut be = be;
        be["spec"]["scopes"] = json!(["BestEffort"]);
        assert!(matches(&be, "", "pods", &pod(None, None)));
        assert!(!matches(&be, "", "pods", &pod(Some("1"), None)));
        assert!(!matches(&be, "", "configmaps", &json!({})));
    }
}
