//! DefaultTolerationSeconds: pods tolerate the `not-ready` and
//! `unreachable` NoExecute taints for a while (300 s by default,
//! `--default-not-ready-toleration-seconds` and
//! `--default-unreachable-toleration-seconds`) unless they say otherwise.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin};
use crate::server::Server;
use crate::status::ApiResult;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub struct DefaultTolerationSeconds {
    pub not_ready: i64,
    pub unreachable: i64,
}

/// Whether a toleration covers `key`'s NoExecute taint (an empty key or
/// effect matches everything).
fn tolerates(t: &Value, key: &str) -> bool {
    let k = t.get("key").and_then(Value::as_str).unwrap_or("");
    let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
    (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
}

/// Adds the tolerations a pod lacks.
pub fn add_tolerations(pod: &mut Value, not_ready: i64, unreachable: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let Some(ts) = list.as_array_mut() else { return };
    for (key, secs) in [(NOT_READY, not_ready), (UNREACHABLE, unreachable)] {
        if !ts.iter().any(|t| tolerates(t, key)) {
            ts.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs}));
        }
    }
}

impl Plugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    fn handles(&self, a: &Attributes) -> bool {
        a.is("", "pods") && a.operation == Operation::Create
    }

    fn mutating(&self) -> bool {
        true
    }

    fn admit<'a>(&'a self, _server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            add_tolerations(&mut a.object, self.not_ready, self.unreachable);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_added_when_absent() {
        let nr = json!({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let un = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60});
        let cases = [
            (json!([]), vec![nr.clone(), un.clone()], "none"),
            (
                json!([{"operator": "Exists"}]),
                vec![json!({"operator": "Exists"})],
                "tolerates everything",
            ),
            (
                json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]),
                vec![
                    json!({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}),
                    un.clone(),
                ],
                "own not-ready kept",
            ),
            (
                json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}]),
                vec![
                    json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}),
                    nr.clone(),
                    un.clone(),
                ],
                "NoSchedule does not count",
            ),
        ];
        for (have, want, why) in cases {
            let mut pod = json!({"spec": {"tolerations": have}});
            add_tolerations(&mut pod, 300, 60);
            assert_eq!(pod["spec"]["tolerations"], json!(want), "{why}");
        }
    }
}
