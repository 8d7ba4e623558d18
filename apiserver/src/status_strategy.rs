//! Upstream's status strategies' `ValidateUpdate`: what a write to
//! `<resource>/status` may hold. The rest of the object is the stored one
//! ([`crate::strategy::prepare_update`]); its metadata is validated as on
//! every write, then the kind's status: counts that may not be negative
//! or exceed `status.replicas`, a pod's IPs and container state
//! transitions, a node's resources and addresses, a service's load
//! balancer, a namespace's phase. Custom resources are validated against
//! their schema (and scale paths) by the caller, as on the main resource.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use apimachinery::quantity::Quantity;
use apimachinery::validation::{self as v, FieldError};

use crate::registry::ResourceType;

const NEGATIVE: &str = "must be greater than or equal to 0";
const ABOVE_REPLICAS: &str = "cannot be greater than status.replicas";

/// Validates a status update: `new` is the object to be stored (the stored
/// object with the request's status), `old` the stored one.
pub fn validate_update(rt: &ResourceType, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = crate::strategy::validate_meta(rt, new, Some(old));
    let empty = json!({});
    let status = new.get("status").filter(|s| s.is_object()).unwrap_or(&empty);
    let old_status = old.get("status").filter(|s| s.is_object()).unwrap_or(&empty);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") => {
            non_negative(
                status,
                &[
                    "observedGeneration",
                    "replicas",
                    "updatedReplicas",
                    "readyReplicas",
                    "availableReplicas",
                    "unavailableReplicas",
                    "terminatingReplicas",
                    "collisionCount",
                ],
                &mut errs,
            );
            at_most_replicas(
                status,
                &["updatedReplicas", "readyReplicas", "availableReplicas"],
                &mut errs,
            );
            available_at_most_ready(status, "cannot be greater than readyReplicas", &mut errs);
            collision_count_kept(status, old_status, &mut errs);
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            non_negative(
                status,
                &[
                    "replicas",
                    "fullyLabeledReplicas",
                    "readyReplicas",
                    "availableReplicas",
                    "observedGeneration",
                    "terminatingReplicas",
                ],
                &mut errs,
            );
            at_most_replicas(
                status,
                &["fullyLabeledReplicas", "readyReplicas", "availableReplicas"],
                &mut errs,
            );
            available_at_most_ready(status, "cannot be greater than readyReplicas", &mut errs);
        }
        ("apps", "StatefulSet") => {
            non_negative(
                status,
                &[
                    "replicas",
                    "readyReplicas",
                    "currentReplicas",
                    "updatedReplicas",
                    "availableReplicas",
                    "observedGeneration",
                    "collisionCount",
                ],
                &mut errs,
            );
            at_most_replicas(
                status,
                &[
                    "readyReplicas",
                    "currentReplicas",
                    "updatedReplicas",
                    "availableReplicas",
                ],
                &mut errs,
            );
            available_at_most_ready(status, "cannot be greater than status.readyReplicas", &mut errs);
            collision_count_kept(status, old_status, &mut errs);
        }
        ("apps", "DaemonSet") => {
            non_negative(
                status,
                &[
                    "currentNumberScheduled",
                    "numberMisscheduled",
                    "desiredNumberScheduled",
                    "numberReady",
                    "observedGeneration",
                    "updatedNumberScheduled",
                    "numberAvailable",
                    "numberUnavailable",
                    "collisionCount",
                ],
                &mut errs,
            );
            collision_count_kept(status, old_status, &mut errs);
        }
        ("batch", "Job") => {
            non_negative(
                status,
                &["active", "succeeded", "failed", "ready", "terminating"],
                &mut errs,
            );
        }
        ("", "Pod") => validate_pod_status(new, old, &mut errs),
        ("", "Node") => validate_node_status(status, &mut errs),
        ("", "Service") => validate_load_balancer_status(new, &mut errs),
        ("", "Namespace") => validate_namespace_status(new, &mut errs),
        _ => {}
    }
    errs
}

/// Upstream's `ValidateNonnegativeField` for each present integer field.
fn non_negative(status: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    for field in fields {
        if let Some(n) = status.get(*field).and_then(Value::as_i64)
            && n < 0
        {
            errs.push(FieldError::invalid(format!("status.{field}"), json!(n), NEGATIVE));
        }
    }
}

fn count(status: &Value, field: &str) -> i64 {
    status.get(field).and_then(Value::as_i64).unwrap_or(0)
}

fn at_most_replicas(status: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    let replicas = count(status, "replicas");
    for field in fields {
        let n = count(status, field);
        if n > replicas {
            errs.push(FieldError::invalid(format!("status.{field}"), json!(n), ABOVE_REPLICAS));
        }
    }
}

fn available_at_most_ready(status: &Value, detail: &str, errs: &mut Vec<FieldError>) {
    let available = count(status, "availableReplicas");
    if available > count(status, "readyReplicas") {
        errs.push(FieldError::invalid(
            "status.availableReplicas",
            json!(available),
            detail,
        ));
    }
}

/// `status.collisionCount` only grows (upstream's `IsDecremented`).
fn collision_count_kept(status: &Value, old_status: &Value, errs: &mut Vec<FieldError>) {
    let (new, old) = (
        status.get("collisionCount").and_then(Value::as_i64),
        old_status.get("collisionCount").and_then(Value::as_i64),
    );
    if let Some(o) = old
        && new.is_none_or(|n| n < o)
    {
        errs.push(FieldError::invalid(
            "status.collisionCount",
            json!(new.unwrap_or(0)),
            "cannot be decremented",
        ));
    }
}

/// The conditions the kubelet owns; others must be qualified names.
const POD_SYSTEM_CONDITIONS: &[&str] = &["PodScheduled", "Ready", "Initialized"];

/// Upstream's `ValidatePodStatusUpdate`.
fn validate_pod_status(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let status = &new["status"];
    let old_status = &old["status"];
    // Upstream reports condition types under `metadata.conditions` (its
    // path variable still names metadata there); kept for clients that
    // match on it.
    for (i, c) in list(status, "conditions").iter().enumerate() {
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
        if POD_SYSTEM_CONDITIONS.contains(&ty) {
            continue;
        }
        for msg in v::is_qualified_name(ty) {
            errs.push(FieldError::invalid(format!("metadata.conditions[{i}].Type"), ty, msg));
        }
    }
    let nominated = str_of(status, "nominatedNodeName");
    if nominated != str_of(old_status, "nominatedNodeName") && !nominated.is_empty() {
        for msg in v::is_dns1123_subdomain(nominated) {
            errs.push(FieldError::invalid("status.nominatedNodeName", nominated, msg));
        }
    }
    let qos = str_of(status, "qosClass");
    if qos != str_of(old_status, "qosClass") {
        errs.push(FieldError::invalid("status.qosClass", qos, "field is immutable"));
    }
    let restart_policy = old
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    let restartable_init: HashSet<&str> = list(&old["spec"], "initContainers")
        .iter()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let no_restartable = HashSet::new();
    for (field, policy, restartable) in [
        ("containerStatuses", restart_policy, &no_restartable),
        ("initContainerStatuses", restart_policy, &restartable_init),
        // The kubelet never restarts ephemeral containers.
        ("ephemeralContainerStatuses", "Never", &no_restartable),
    ] {
        state_transitions(status, old_status, field, policy, restartable, errs);
    }
    validate_ips(status, "podIPs", errs);
    validate_ips(status, "hostIPs", errs);
}

fn list<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn terminated(s: &Value) -> Option<&Value> {
    s.pointer("/state/terminated").filter(|t| !t.is_null())
}

/// Upstream's `ValidateContainerStateTransition`: unless the pod restarts
/// its containers, a terminated container stays terminated.
fn state_transitions(
    status: &Value,
    old_status: &Value,
    field: &str,
    restart_policy: &str,
    restartable: &HashSet<&str>,
    errs: &mut Vec<FieldError>,
) {
    if restart_policy == "Always" {
        return;
    }
    for (i, o) in list(old_status, field).iter().enumerate() {
        let Some(t) = terminated(o) else { continue };
        let exit_code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
        if exit_code != 0 && restart_policy == "OnFailure" {
            continue;
        }
        let name = str_of(o, "name");
        if restartable.contains(name) {
            continue;
        }
        for n in list(status, field) {
            if str_of(n, "name") == name && terminated(n).is_none() {
                errs.push(FieldError::forbidden(
                    format!("status.{field}[{i}].state"),
                    "may not be transitioned to non-terminated state",
                ));
            }
        }
    }
}

/// Upstream's `validatePodIPs` / `validateHostIPs`: valid addresses, at
/// most one per family, no duplicates.
fn validate_ips(status: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let entries = list(status, field);
    let ips: Vec<&str> = entries
        .iter()
        .map(|e| e.get("ip").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let mut all_valid = true;
    for (i, ip) in ips.iter().enumerate() {
        for msg in v::is_valid_ip(ip) {
            all_valid = false;
            errs.push(FieldError::invalid(format!("status.{field}[{i}]"), *ip, msg));
        }
    }
    if ips.len() < 2 || !all_valid {
        return;
    }
    let v4 = ips
        .iter()
        .filter(|ip| parse_ip(ip).is_some_and(|a| a.is_ipv4()))
        .count();
    if ips.len() > 2 || v4 != 1 {
        errs.push(FieldError::invalid(
            format!("status.{field}"),
            Value::Array(entries.to_vec()),
            "may specify no more than one IP for each IP family",
        ));
    }
    let mut seen = HashSet::new();
    for (i, (ip, entry)) in ips.iter().zip(entries).enumerate() {
        if !seen.insert(*ip) {
            errs.push(FieldError::duplicate(format!("status.{field}[{i}]"), entry.clone()));
        }
    }
}

/// An address as upstream's sloppy parser reads it (IPv4 octets may have
/// leading zeros).
fn parse_ip(ip: &str) -> Option<IpAddr> {
    if let Ok(a) = ip.parse() {
        return Some(a);
    }
    let octets: Vec<u8> = ip.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    <[u8; 4]>::try_from(octets).ok().map(IpAddr::from)
}

/// Keeps `status.podIP`/`podIPs` (and `hostIP`/`hostIPs`) in step as
/// upstream's v1 conversion does: the single field wins when both are set
/// and differ, and is filled from the list's first entry when unset.
pub fn sync_pod_ips(pod: &mut Value) {
    let Some(status) = pod.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    for (single, plural) in [("podIP", "podIPs"), ("hostIP", "hostIPs")] {
        let one = status.get(single).and_then(Value::as_str).unwrap_or("").to_string();
        let first = status
            .get(plural)
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(|e| e.get("ip"))
            .and_then(Value::as_str)
            .map(str::to_string);
        match first {
            Some(first) if one.is_empty() => {
                status.insert(single.into(), Value::String(first));
            }
            Some(first) if first == one => {}
            _ if !one.is_empty() => {
                status.insert(plural.into(), json!([{"ip": one}]));
            }
            _ => {}
        }
    }
}

/// Upstream's `ValidateNodeUpdate`, its status part: resource quantities
/// non-negative (whole numbers for pods and extended resources), addresses
/// not repeated.
fn validate_node_status(status: &Value, errs: &mut Vec<FieldError>) {
    for list_name in ["capacity", "allocatable"] {
        let Some(resources) = status.get(list_name).and_then(Value::as_object) else {
            continue;
        };
        for (name, value) in resources {
            let path = format!("status.{list_name}.{name}");
            let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            let Ok(q) = Quantity::parse(&text) else { continue };
            if q.is_negative() {
                errs.push(FieldError::invalid(&path, text.as_str(), NEGATIVE));
            }
            if is_integer_resource(name) && q.milli_value() % 1000 != 0 {
                errs.push(FieldError::invalid(&path, text.as_str(), "must be an integer"));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, a) in list(status, "addresses").iter().enumerate() {
        let key = (str_of(a, "type").to_string(), str_of(a, "address").to_string());
        if !seen.insert(key) {
            errs.push(FieldError::duplicate(format!("status.addresses[{i}]"), a.clone()));
        }
    }
}

/// Resources counted in whole units: pods, and extended resources (a
/// domain outside `kubernetes.io`, not a quota's `requests.` name).
fn is_integer_resource(name: &str) -> bool {
    if name == "pods" {
        return true;
    }
    match name.split_once('/') {
        Some((domain, _)) => {
            let native = domain == "kubernetes.io" || domain.ends_with(".kubernetes.io");
            !native && !name.starts_with("requests.")
        }
        None => false,
    }
}

/// Upstream's `ValidateLoadBalancerStatus`.
fn validate_load_balancer_status(svc: &Value, errs: &mut Vec<FieldError>) {
    let ingress = svc
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let path = "status.loadBalancer.ingress";
    if ingress.is_empty() {
        return;
    }
    if svc.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer") {
        errs.push(FieldError::forbidden(
            path,
            "may only be used when `spec.type` is 'LoadBalancer'",
        ));
        return;
    }
    for (i, ing) in ingress.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let ip = str_of(ing, "ip");
        if !ip.is_empty() {
            for msg in v::is_valid_ip(ip) {
                errs.push(FieldError::invalid(format!("{p}.ip"), ip, msg));
            }
        }
        match ing.get("ipMode").and_then(Value::as_str) {
            None if !ip.is_empty() => {
                errs.push(FieldError::required(
                    format!("{p}.ipMode"),
                    "must be specified when `ip` is set",
                ));
            }
            Some(_) if ip.is_empty() => errs.push(FieldError::forbidden(
                format!("{p}.ipMode"),
                "may not be specified when `ip` is not set",
            )),
            Some(mode) if !matches!(mode, "VIP" | "Proxy") => {
                errs.push(FieldError::not_supported(
                    format!("{p}.ipMode"),
                    mode,
                    &["Proxy", "VIP"],
                ));
            }
            _ => {}
        }
        let hostname = str_of(ing, "hostname");
        if !hostname.is_empty() {
            for msg in v::is_dns1123_subdomain(hostname) {
                errs.push(FieldError::invalid(format!("{p}.hostname"), hostname, msg));
            }
            if parse_ip(hostname).is_some() {
                errs.push(FieldError::invalid(
                    format!("{p}.hostname"),
                    hostname,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
}

/// Upstream's `ValidateNamespaceStatusUpdate`: `Active` until deletion,
/// `Terminating` after.
fn validate_namespace_status(ns: &Value, errs: &mut Vec<FieldError>) {
    let phase = ns.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    let deleting = ns.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    match (deleting, phase) {
        (false, "Active") | (true, "Terminating") => {}
        (false, _) => errs.push(FieldError::invalid(
            "status.Phase",
            phase,
            "may only be 'Active' if `deletionTimestamp` is empty",
        )),
        (true, _) => errs.push(FieldError::invalid(
            "status.Phase",
            phase,
            "may only be 'Terminating' if `deletionTimestamp` is not empty",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(group: &str, version: &str, plural: &str) -> std::sync::Arc<ResourceType> {
        crate::registry::Registry::new()
            .lookup(group, version, plural)
            .expect(plural)
    }

    /// The causes of a status update from `old` to `old` with `status`, as
    /// "field: message" lines.
    fn causes(group: &str, version: &str, plural: &str, old: &Value, status: Value) -> Vec<String> {
        let mut new = old.clone();
        new["status"] = status;
        validate_update(&rt(group, version, plural), &new, old)
            .iter()
            .map(|e| e.message())
            .collect()
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "uid": "u1"})
    }

    #[test]
    fn workload_counts_are_non_negative_and_within_replicas() {
        let d = json!({"metadata": meta("d"), "spec": {}, "status": {"replicas": 2, "collisionCount": 3}});
        let cases: &[(&str, &str, Value, &[&str])] = &[
            (
                "apps",
                "deployments",
                json!({"replicas": 2, "readyReplicas": 2, "availableReplicas": 1, "collisionCount": 3}),
                &[],
            ),
            (
                "apps",
                "deployments",
                json!({"replicas": -1, "collisionCount": 3}),
                &[
                    "status.replicas: Invalid value: -1: must be greater than or equal to 0",
                    // As upstream: zero counts now exceed the replicas too.
                    "status.updatedReplicas: Invalid value: 0: cannot be greater than status.replicas",
                    "status.readyReplicas: Invalid value: 0: cannot be greater than status.replicas",
                    "status.availableReplicas: Invalid value: 0: cannot be greater than status.replicas",
                ],
            ),
            (
                "apps",
                "deployments",
                json!({"replicas": 1, "readyReplicas": 2, "availableReplicas": 2, "collisionCount": 3}),
                &[
                    "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas",
                    "status.availableReplicas: Invalid value: 2: cannot be greater than status.replicas",
                ],
            ),
            (
                "apps",
                "deployments",
                json!({"replicas": 3, "readyReplicas": 1, "availableReplicas": 2, "collisionCount": 3}),
                &["status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas"],
            ),
            (
                "apps",
                "deployments",
                json!({"replicas": 1, "collisionCount": 2}),
                &["status.collisionCount: Invalid value: 2: cannot be decremented"],
            ),
            (
                "apps",
                "replicasets",
                json!({"replicas": 1, "fullyLabeledReplicas": -2}),
                &["status.fullyLabeledReplicas: Invalid value: -2: must be greater than or equal to 0"],
            ),
            (
                "apps",
                "statefulsets",
                json!({"replicas": 1, "currentReplicas": 2, "collisionCount": 3}),
                &["status.currentReplicas: Invalid value: 2: cannot be greater than status.replicas"],
            ),
            (
                "apps",
                "daemonsets",
                json!({"numberReady": -1, "collisionCount": 3}),
                &["status.numberReady: Invalid value: -1: must be greater than or equal to 0"],
            ),
            (
                "batch",
                "jobs",
                json!({"active": -1, "succeeded": 1}),
                &["status.active: Invalid value: -1: must be greater than or equal to 0"],
            ),
        ];
        for (group, plural, status, want) in cases {
            assert_eq!(
                causes(group, "v1", plural, &d, status.clone()),
                *want,
                "{plural} {status}"
            );
        }
    }

    #[test]
    fn pod_status_keeps_ips_qos_and_terminated_containers() {
        let pod = json!({
            "metadata": meta("p"),
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "qosClass": "BestEffort", "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 0}}}]}
        });
        let ok = json!({"phase": "Succeeded", "qosClass": "BestEffort",
            "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
            "conditions": [{"type": "example.com/gate", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 0}}}]});
        let cases: &[(Value, &[&str], &str)] = &[
            (ok, &[], "a valid status"),
            (
                json!({"qosClass": "BestEffort", "podIPs": [{"ip": "not-an-ip"}]}),
                &[
                    "status.podIPs[0]: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ],
                "a bad pod IP",
            ),
            (
                json!({"qosClass": "BestEffort", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}),
                &[
                    "status.podIPs: Invalid value: [{\"ip\":\"10.0.0.1\"},{\"ip\":\"10.0.0.2\"}]: may specify no more than one IP for each IP family",
                ],
                "two IPv4 addresses",
            ),
            (
                json!({"qosClass": "Guaranteed"}),
                &["status.qosClass: Invalid value: \"Guaranteed\": field is immutable"],
                "the QoS class is the pod's",
            ),
            (
                json!({"qosClass": "BestEffort", "containerStatuses": [{"name": "c", "state": {"running": {}}}]}),
                &["status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"],
                "a finished container of a Never pod stays finished",
            ),
            (
                json!({"qosClass": "BestEffort", "conditions": [{"type": "bad type!", "status": "True"}]}),
                &[
                    "metadata.conditions[0].Type: Invalid value: \"bad type!\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                ],
                "custom condition types are qualified names",
            ),
        ];
        for (status, want, why) in cases {
            assert_eq!(causes("", "v1", "pods", &pod, status.clone()), *want, "{why}");
        }
    }

    #[test]
    fn pod_ip_fields_follow_each_other() {
        let cases = [
            (
                json!({"podIP": "10.0.0.1"}),
                json!({"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}),
            ),
            (
                json!({"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}),
                json!({"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}),
            ),
            (
                json!({"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.1"}]}),
                json!({"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}]}),
            ),
            (
                json!({"hostIP": "192.168.0.1"}),
                json!({"hostIP": "192.168.0.1", "hostIPs": [{"ip": "192.168.0.1"}]}),
            ),
            (json!({"phase": "Pending"}), json!({"phase": "Pending"})),
        ];
        for (status, want) in cases {
            let mut pod = json!({"status": status});
            sync_pod_ips(&mut pod);
            assert_eq!(pod["status"], want);
        }
    }

    #[test]
    fn node_service_and_namespace_statuses() {
        let node = json!({"metadata": {"name": "n1", "uid": "u"}, "spec": {}});
        assert_eq!(
            causes(
                "",
                "v1",
                "nodes",
                &node,
                json!({
                "capacity": {"cpu": "-1", "pods": "1500m", "memory": "1Gi"},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "InternalIP", "address": "10.0.0.1"}]})
            ),
            [
                "status.capacity.cpu: Invalid value: \"-1\": must be greater than or equal to 0",
                "status.capacity.pods: Invalid value: \"1500m\": must be an integer",
                "status.addresses[1]: Duplicate value: {\"address\":\"10.0.0.1\",\"type\":\"InternalIP\"}",
            ]
        );
        let lb = json!({"metadata": meta("s"), "spec": {"type": "LoadBalancer"}});
        assert_eq!(
            causes(
                "",
                "v1",
                "services",
                &lb,
                json!({"loadBalancer": {"ingress": [
                {"ip": "10.0.0.300", "ipMode": "VIP"}, {"hostname": "1.2.3.4"}, {"ip": "10.0.0.1"}]}})
            ),
            [
                "status.loadBalancer.ingress[0].ip: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "status.loadBalancer.ingress[1].hostname: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address",
                "status.loadBalancer.ingress[2].ipMode: Required value: must be specified when `ip` is set",
            ]
        );
        let cluster_ip = json!({"metadata": meta("s"), "spec": {"type": "ClusterIP"}});
        assert_eq!(
            causes(
                "",
                "v1",
                "services",
                &cluster_ip,
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1", "ipMode": "VIP"}]}})
            ),
            ["status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"]
        );
        let ns = json!({"metadata": {"name": "ns1", "uid": "u"}, "spec": {}});
        assert!(causes("", "v1", "namespaces", &ns, json!({"phase": "Active"})).is_empty());
        assert_eq!(
            causes("", "v1", "namespaces", &ns, json!({"phase": "Terminating"})),
            ["status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"]
        );
    }
}
