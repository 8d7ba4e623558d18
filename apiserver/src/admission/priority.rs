//! Priority: a pod's `priorityClassName` resolves to `spec.priority` and
//! `spec.preemptionPolicy` (the global default class, or 0 and
//! PreemptLowerPriority, when it names none); an unknown class is refused.
//! Only one PriorityClass may be the global default. The built-in classes
//! (`system-node-critical`, `system-cluster-critical`) are created at start
//! ([`crate::bootstrap`]); other `system-` names are refused by validation
//! ([`validate_class`]).

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin, list_objects, list_objects_latest};
use crate::server::Server;
use crate::status::ApiResult;
use apimachinery::validation::FieldError;

pub const SYSTEM_PREFIX: &str = "system-";
/// Upstream's `HighestUserDefinablePriority`.
pub const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;

/// The built-in classes: name, value, description.
pub const SYSTEM_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

const PCS: (&str, &str, &str) = ("scheduling.k8s.io", "v1", "priorityclasses");

pub struct Priority;

/// A built-in class object.
pub fn system_class(name: &str, value: i64, description: &str) -> Value {
    json!({
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        "description": description,
        "preemptionPolicy": "PreemptLowerPriority",
    })
}

/// Upstream's validation of `system-` names and user values.
pub fn validate_class(pc: &Value) -> Vec<FieldError> {
    let name = pc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let value = pc.get("value").and_then(Value::as_i64).unwrap_or(0);
    let global = pc.get("globalDefault").and_then(Value::as_bool).unwrap_or(false);
    let mut errs = Vec::new();
    if name.starts_with(SYSTEM_PREFIX) {
        let rest = name;
        let err = match SYSTEM_CLASSES.iter().find(|(n, _, _)| *n == rest) {
            None => Some(format!("{rest} is not a known system priority class")),
            Some((_, v, _)) if *v != value => Some(format!("value of {rest} PriorityClass must be {v}")),
            Some(_) if global => Some(format!("globalDefault of {rest} PriorityClass must be false")),
            Some(_) => None,
        };
        if let Some(e) = err {
            errs.push(FieldError::forbidden(
                "metadata.name",
                format!(
                    "priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {e}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE {
        errs.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"),
        ));
    }
    errs
}

/// The global default class (the lowest valued when several claim it).
fn default_class(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
}

/// What the plugin does to a pod create, given every PriorityClass. `Err`
/// is the reason to refuse.
pub fn admit_pod(pod: &mut Value, classes: &[Value]) -> Result<(), String> {
    let name = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (class_name, priority, policy) = if name.is_empty() {
        match default_class(classes) {
            Some(c) => (
                c.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                c.get("value").and_then(Value::as_i64).unwrap_or(0),
                c.get("preemptionPolicy").and_then(Value::as_str).map(String::from),
            ),
            None => (String::new(), 0, Some("PreemptLowerPriority".to_string())),
        }
    } else {
        let Some(c) = classes
            .iter()
            .find(|c| c.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str()))
        else {
            return Err(format!("no PriorityClass with name {name} was found"));
        };
        (
            name.clone(),
            c.get("value").and_then(Value::as_i64).unwrap_or(0),
            c.get("preemptionPolicy").and_then(Value::as_str).map(String::from),
        )
    };
    if let Some(p) = pod.pointer("/spec/priority").and_then(Value::as_i64)
        && p != priority
    {
        return Err(format!(
            "the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        ));
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if !class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(class_name));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(policy) = policy {
        if let Some(p) = spec.get("preemptionPolicy").and_then(Value::as_str)
            && p != policy
        {
            return Err(format!(
                "the string value of PreemptionPolicy ({p}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ));
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// An update keeps what the create set (validation refuses changes).
pub fn keep_on_update(pod: &mut Value, old: &Value) {
    for f in ["priority", "preemptionPolicy"] {
        if pod.pointer(&format!("/spec/{f}")).is_none()
            && let Some(v) = old.pointer(&format!("/spec/{f}"))
            && let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert(f.into(), v.clone());
        }
    }
}

/// Only one global default: `Err` names the one that exists.
pub fn check_class(pc: &Value, op: Operation, classes: &[Value]) -> Result<(), String> {
    if pc.get("globalDefault").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let name = pc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if let Some(d) = default_class(classes) {
        let dname = d.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        if op == Operation::Create || dname != name {
            return Err(format!(
                "PriorityClass {dname} is already marked as default. Only one default can exist"
            ));
        }
    }
    Ok(())
}

impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    fn handles(&self, a: &Attributes) -> bool {
        (a.is("", "pods") && matches!(a.operation, Operation::Create | Operation::Update))
            || (a.is("scheduling.k8s.io", "priorityclasses")
                && matches!(a.operation, Operation::Create | Operation::Update))
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
            if a.operation == Operation::Update {
                if let Some(old) = a.old.clone() {
                    keep_on_update(&mut a.object, &old);
                }
                return Ok(());
            }
            let classes = list_objects(server, PCS, "").await?;
            admit_pod(&mut a.object, &classes).map_err(|why| a.forbidden(why))
        })
    }

    fn validate<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            if a.resource != "priorityclasses" {
                return Ok(());
            }
            if a.object.get("globalDefault").and_then(Value::as_bool) != Some(true) {
                return Ok(());
            }
            // From the store, not the cache: a default made just before
            // must count (two defaults would be a lasting inconsistency).
            let classes = list_objects_latest(server, PCS, "").await?;
            check_class(&a.object, a.operation, &classes).map_err(|why| a.forbidden(why))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc(name: &str, value: i64, global: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": global, "preemptionPolicy": "Never"})
    }

    #[test]
    fn pods_get_priorities() {
        let high = pc("high", 1000, false);
        let dflt = pc("dflt", 5, true);
        // (spec, classes, Ok((priority, class, policy)) or Err(message))
        type Want = Result<(i64, &'static str, &'static str), &'static str>;
        let cases: Vec<(Value, Vec<Value>, Want)> = vec![
            (json!({}), vec![], Ok((0, "", "PreemptLowerPriority"))),
            (json!({}), vec![high.clone(), dflt.clone()], Ok((5, "dflt", "Never"))),
            (
                json!({"priorityClassName": "high"}),
                vec![high.clone()],
                Ok((1000, "high", "Never")),
            ),
            (
                json!({"priorityClassName": "nope"}),
                vec![high.clone()],
                Err("no PriorityClass with name nope was found"),
            ),
            (
                json!({"priorityClassName": "high", "priority": 7}),
                vec![high.clone()],
                Err(
                    "the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name",
                ),
            ),
            (
                json!({"priorityClassName": "high", "priority": 1000}),
                vec![high.clone()],
                Ok((1000, "high", "Never")),
            ),
        ];
        for (spec, classes, want) in cases {
            let mut pod = json!({"spec": spec});
            let got = admit_pod(&mut pod, &classes);
            match want {
                Ok((p, c, pol)) => {
                    assert_eq!(got, Ok(()), "{spec}");
                    assert_eq!(pod["spec"]["priority"], p, "{spec}");
                    assert_eq!(
                        pod["spec"]
                            .get("priorityClassName")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        c
                    );
                    assert_eq!(pod["spec"]["preemptionPolicy"], pol);
                }
                Err(m) => assert_eq!(got, Err(m.to_string())),
            }
        }
    }

    #[test]
    fn classes_are_checked() {
        let cases = [
            (pc("system-node-critical", 2_000_001_000, false), 0, "built-in"),
            (pc("system-mine", 10, false), 1, "unknown system name"),
            (pc("system-cluster-critical", 10, false), 1, "wrong built-in value"),
            (pc("user", HIGHEST_USER_DEFINABLE + 1, false), 1, "too high for users"),
            (pc("user", HIGHEST_USER_DEFINABLE, false), 0, "highest user value"),
        ];
        for (c, n, why) in cases {
            assert_eq!(validate_class(&c).len(), n, "{why}");
        }
        let e = validate_class(&pc("system-x", 1, false));
        assert_eq!(
            e[0].message(),
            "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-x is not a known system priority class"
        );
        let existing = vec![pc("a", 1, true)];
        assert!(check_class(&pc("b", 2, true), Operation::Create, &existing).is_err());
        assert!(check_class(&pc("a", 2, true), Operation::Update, &existing).is_ok());
        assert!(check_class(&pc("b", 2, false), Operation::Create, &existing).is_ok());
    }
}
