//! NamespaceLifecycle: no new objects in a namespace that does not exist
//! or is terminating, and the system namespaces cannot be deleted.
//!
//! The namespace is read from the watch cache, as upstream reads its
//! informer, and from the store when the cache lacks it or this apiserver
//! deleted it lately (upstream's `forceLiveLookupCache`).

use futures::future::BoxFuture;

use super::{Attributes, Operation, Plugin};
use crate::object;
use crate::server::Server;
use crate::status::{ApiError, ApiResult, Target};
use crate::storage::ReadAt;

/// Namespaces that may not be deleted (upstream's immortal namespaces).
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

pub struct NamespaceLifecycle;

/// What the plugin decides, given whether the namespace exists and is
/// terminating (None: it does not exist).
pub fn decide(a: &Attributes, namespace_terminating: Option<bool>) -> ApiResult<()> {
    if a.is("", "namespaces") {
        if a.operation == Operation::Delete && IMMORTAL.contains(&a.name.as_str()) {
            return Err(a.forbidden("this namespace may not be deleted"));
        }
        return Ok(());
    }
    if a.operation != Operation::Create || a.namespace.is_empty() {
        return Ok(());
    }
    match namespace_terminating {
        None => Err(ApiError::NotFound {
            target: Target {
                group: String::new(),
                resource: "namespaces".into(),
                kind: "Namespace".into(),
                name: a.namespace.clone(),
            },
        }),
        Some(true) => Err(a.forbidden(format!(
            "unable to create new content in namespace {} because it is being terminated",
            a.namespace
        ))),
        Some(false) => Ok(()),
    }
}

impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    fn handles(&self, a: &Attributes) -> bool {
        (a.is("", "namespaces") && a.operation == Operation::Delete)
            || (a.operation == Operation::Create && !a.namespace.is_empty() && a.resource != "namespaces")
    }

    fn mutating(&self) -> bool {
        true
    }

    fn admit<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            if a.is("", "namespaces") {
                return decide(a, Some(false));
            }
            let state = namespace_state(server, &a.namespace).await?;
            decide(a, state)
        })
    }
}

/// Whether namespace `ns` is terminating; None when it does not exist.
async fn namespace_state(server: &Server, ns: &str) -> ApiResult<Option<bool>> {
    let Some(nsrt) = server.registry.lookup("", "v1", "namespaces") else {
        return Ok(Some(false));
    };
    let key = nsrt.key("", ns);
    let cached = match server.cache.get(&nsrt.prefix("")) {
        Some(cacher) if !server.namespace_needs_live_lookup(ns) => cacher.get(&key).0,
        _ => None,
    };
    Ok(match cached {
        Some(entry) => Some(object::is_deleting(entry.object())),
        None => server
            .storage
            .get(&key, ReadAt::Any)
            .await?
            .map(|s| object::is_deleting(&s.object)),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs(op: Operation, resource: &str, ns: &str, name: &str) -> Attributes {
        let obj = json!({"metadata": {"name": name, "namespace": ns}});
        super::super::test_attrs(op, resource, obj, None)
    }

    #[test]
    fn decisions() {
        use Operation::*;
        let cases = [
            (
                attrs(Delete, "namespaces", "", "default"),
                Some(false),
                Some(403),
                "system namespace",
            ),
            (
                attrs(Delete, "namespaces", "", "kube-system"),
                Some(false),
                Some(403),
                "system namespace",
            ),
            (
                attrs(Delete, "namespaces", "", "team-a"),
                Some(false),
                None,
                "other namespaces go",
            ),
            (attrs(Create, "pods", "gone", "p"), None, Some(404), "missing namespace"),
            (attrs(Create, "pods", "old", "p"), Some(true), Some(403), "terminating"),
            (attrs(Create, "pods", "ok", "p"), Some(false), None, "active"),
            (attrs(Update, "pods", "old", "p"), Some(true), None, "updates go on"),
            (attrs(Delete, "pods", "gone", "p"), None, None, "deletes go on"),
        ];
        for (a, state, want, why) in cases {
            let got = decide(&a, state).err().map(|e| e.code());
            assert_eq!(got, want, "{why}");
        }
        let e = decide(&attrs(Delete, "namespaces", "", "kube-public"), None).expect_err("refused");
        assert_eq!(
            e.to_status()["message"],
            "namespaces \"kube-public\" is forbidden: this namespace may not be deleted"
        );
    }
}
