//! TaintNodesByCondition: a new Node starts tainted
//! `node.kubernetes.io/not-ready:NoSchedule`; the node lifecycle controller
//! removes the taint once the node reports Ready.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin};
use crate::server::Server;
use crate::status::ApiResult;

pub struct TaintNodesByCondition;

pub fn add_not_ready_taint(node: &mut Value) {
    let key = super::tolerations::NOT_READY;
    if !node.get("spec").is_some_and(Value::is_object) {
        node["spec"] = json!({});
    }
    let Some(spec) = node.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("taints").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let Some(taints) = list.as_array_mut() else { return };
    let present = taints.iter().any(|t| {
        t.get("key").and_then(Value::as_str) == Some(key)
            && t.get("effect").and_then(Value::as_str) == Some("NoSchedule")
    });
    if !present {
        taints.push(json!({"key": key, "effect": "NoSchedule"}));
    }
}

impl Plugin for TaintNodesByCondition {
    fn name(&self) -> &'static str {
        "TaintNodesByCondition"
    }

    fn handles(&self, a: &Attributes) -> bool {
        a.is("", "nodes") && a.operation == Operation::Create
    }

    fn mutating(&self) -> bool {
        true
    }

    fn admit<'a>(&'a self, _server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            add_not_ready_taint(&mut a.object);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_nodes_are_tainted_once() {
        let t = json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"});
        let other = json!({"key": "dedicated", "value": "x", "effect": "NoSchedule"});
        let cases = [
            (json!({}), json!([t.clone()])),
            (
                json!({"spec": {"taints": [other.clone()]}}),
                json!([other.clone(), t.clone()]),
            ),
            (json!({"spec": {"taints": [t.clone()]}}), json!([t.clone()])),
        ];
        for (mut node, want) in cases {
            add_not_ready_taint(&mut node);
            assert_eq!(node["spec"]["taints"], want);
        }
    }
}
