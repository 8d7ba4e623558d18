//! Admission: the plugins every create, update and delete passes through
//! after defaulting and before it is stored, as upstream's
//! `k8s.io/apiserver/pkg/admission`. All mutating plugins run first (they
//! may change the object), in upstream's order (`AllOrderedPlugins`), then
//! the object is validated by its strategy, then all validating plugins run
//! in the same order. Each plugin says which requests it handles; an error
//! stops the request (a `metav1.Status`, mostly 403 Forbidden, as upstream).
//!
//! `--enable-admission-plugins` / `--disable-admission-plugins` pick the
//! set from upstream's names, starting from upstream's default-on set.
//! Names we know but do not implement (webhooks, policies, certificates…)
//! are accepted and logged.
//!
//! Each plugin is a module whose decisions are plain functions over JSON
//! objects (tested with tables of cases); the `Plugin` impl reads what
//! they need from the watch cache (or the store) and applies them.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::registry::ResourceType;
use crate::server::Server;
use crate::status::{ApiError, ApiResult, Target};
use crate::storage::ReadAt;

pub mod lifecycle;
pub mod limitranger;
pub mod nodetaint;
pub mod podsecurity;
pub mod priority;
pub mod resourcequota;
pub mod serviceaccount;
pub mod storage;
pub mod tolerations;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// What a plugin sees of a request (upstream's `admission.Attributes`).
#[derive(Clone, Debug)]
pub struct Attributes {
    pub operation: Operation,
    pub group: String,
    pub kind: String,
    /// The resource's plural (`pods`).
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The object written (Null for a delete). Mutating plugins change it.
    pub object: Value,
    /// The stored object an update replaces.
    pub old: Option<Value>,
    pub dry_run: bool,
    /// `Warning:` headers for the response.
    pub warnings: Vec<String>,
}

impl Attributes {
    pub fn new(rt: &ResourceType, operation: Operation, subresource: &str, object: Value, old: Option<Value>) -> Self {
        let meta = |o: &Value, f: &str| {
            o.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let src = if object.is_null() {
            old.as_ref().unwrap_or(&object)
        } else {
            &object
        };
        Attributes {
            operation,
            group: rt.group.clone(),
            kind: rt.kind.clone(),
            resource: rt.plural.clone(),
            subresource: subresource.to_string(),
            namespace: meta(src, "namespace"),
            name: meta(src, "name"),
            object,
            old,
            dry_run: false,
            warnings: Vec::new(),
        }
    }

    /// The request is about the main resource `group`/`resource` (not a
    /// subresource).
    pub fn is(&self, group: &str, resource: &str) -> bool {
        self.group == group && self.resource == resource && self.subresource.is_empty()
    }

    pub fn target(&self) -> Target {
        Target {
            group: self.group.clone(),
            resource: self.resource.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
        }
    }

    /// Upstream's `admission.NewForbidden`: 403,
    /// `<resource> "<name>" is forbidden: <why>`.
    pub fn forbidden(&self, why: impl Into<String>) -> ApiError {
        ApiError::ForbiddenObject {
            target: self.target(),
            why: why.into(),
        }
    }
}

/// One admission plugin (upstream's `admission.Interface` with its
/// `MutationInterface` and `ValidationInterface`).
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether the plugin looks at this request at all.
    fn handles(&self, a: &Attributes) -> bool;
    fn mutating(&self) -> bool {
        false
    }
    fn validating(&self) -> bool {
        false
    }
    fn admit<'a>(&'a self, _server: &'a Server, _a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn validate<'a>(&'a self, _server: &'a Server, _a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Upstream's `AllOrderedPlugins` (1.33): every plugin name, in the order
/// the plugins run.
pub const ALL_ORDERED: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// Upstream's default-on plugins (the complement of
/// `DefaultOffAdmissionPlugins`).
pub const DEFAULT_ON: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "PersistentVolumeClaimResize",
    "DefaultTolerationSeconds",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "StorageObjectInUseProtection",
    "Priority",
    "TaintNodesByCondition",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodSecurity",
    "PodTopologyLabels",
    "ValidatingAdmissionPolicy",
    "MutatingAdmissionPolicy",
];

/// Settings of plugins that take flags.
#[derive(Clone, Debug)]
pub struct Config {
    pub default_not_ready_toleration_seconds: i64,
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
        }
    }
}

/// The implementation of plugin `name`; None for a name we accept but do
/// not implement.
fn build(name: &str, cfg: &Config) -> Option<Box<dyn Plugin>> {
    Some(match name {
        "AlwaysAdmit" => Box::new(AlwaysAdmit),
        "AlwaysDeny" => Box::new(AlwaysDeny),
        "NamespaceLifecycle" => Box::new(lifecycle::NamespaceLifecycle),
        "LimitRanger" => Box::new(limitranger::LimitRanger),
        "ServiceAccount" => Box::new(serviceaccount::ServiceAccount),
        "TaintNodesByCondition" => Box::new(nodetaint::TaintNodesByCondition),
        "PodSecurity" => Box::new(podsecurity::PodSecurity),
        "Priority" => Box::new(priority::Priority),
        "DefaultTolerationSeconds" => Box::new(tolerations::DefaultTolerationSeconds {
            not_ready: cfg.default_not_ready_toleration_seconds,
            unreachable: cfg.default_unreachable_toleration_seconds,
        }),
        "DefaultStorageClass" => Box::new(storage::DefaultStorageClass),
        "StorageObjectInUseProtection" => Box::new(storage::StorageObjectInUseProtection),
        "PersistentVolumeClaimResize" => Box::new(storage::PersistentVolumeClaimResize),
        "ResourceQuota" => Box::new(resourcequota::ResourceQuota),
        _ => return None,
    })
}

/// The plugins this apiserver runs, in order.
pub struct Chain {
    plugins: Vec<Box<dyn Plugin>>,
}

impl Chain {
    /// The chain for the flags: upstream's default-on set, plus `enable`,
    /// minus `disable`. Unknown names are refused as upstream refuses them.
    pub fn new(enable: &[String], disable: &[String], cfg: &Config) -> anyhow::Result<Chain> {
        let names = Self::enabled(enable, disable)?;
        let mut plugins = Vec::new();
        for name in ALL_ORDERED.iter().filter(|n| names.contains(**n)) {
            match build(name, cfg) {
                Some(p) => plugins.push(p),
                None => {
                    tracing::info!(plugin = %name, "admission plugin enabled but not implemented; it admits everything")
                }
            }
        }
        let chain = Chain { plugins };
        tracing::info!(
            "Loaded {} mutating admission controller(s) successfully in the following order: {}.",
            chain.names(true).len(),
            chain.names(true).join(",")
        );
        tracing::info!(
            "Loaded {} validating admission controller(s) successfully in the following order: {}.",
            chain.names(false).len(),
            chain.names(false).join(",")
        );
        Ok(chain)
    }

    /// The enabled plugin names, checked.
    pub fn enabled(enable: &[String], disable: &[String]) -> anyhow::Result<BTreeSet<String>> {
        let clean = |l: &[String]| -> Vec<String> {
            l.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let (enable, disable) = (clean(enable), clean(disable));
        let mut errs = Vec::new();
        for (flag, list) in [("enable", &enable), ("disable", &disable)] {
            for n in list {
                if !ALL_ORDERED.contains(&n.as_str()) {
                    errs.push(format!("{flag}-admission-plugins plugin \"{n}\" is unknown"));
                }
            }
        }
        let both: Vec<&String> = enable.iter().filter(|n| disable.contains(n)).collect();
        if !both.is_empty() {
            errs.push(format!(
                "[{}] in enable-admission-plugins and disable-admission-plugins overlapped",
                both.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            ));
        }
        if !errs.is_empty() {
            anyhow::bail!("{}", errs.join(", "));
        }
        let mut on: BTreeSet<String> = DEFAULT_ON.iter().map(|s| s.to_string()).collect();
        on.extend(enable);
        for d in &disable {
            on.remove(d);
        }
        Ok(on)
    }

    /// Names of the mutating (or validating) plugins, in order.
    pub fn names(&self, mutating: bool) -> Vec<&'static str> {
        self.plugins
            .iter()
            .filter(|p| if mutating { p.mutating() } else { p.validating() })
            .map(|p| p.name())
            .collect()
    }

    /// The mutating phase.
    pub async fn admit(&self, server: &Server, a: &mut Attributes) -> ApiResult<()> {
        for p in self.plugins.iter().filter(|p| p.mutating()) {
            if p.handles(a) {
                p.admit(server, a).await?;
            }
        }
        Ok(())
    }

    /// The validating phase.
    pub async fn validate(&self, server: &Server, a: &mut Attributes) -> ApiResult<()> {
        for p in self.plugins.iter().filter(|p| p.validating()) {
            if p.handles(a) {
                p.validate(server, a).await?;
            }
        }
        Ok(())
    }
}

struct AlwaysAdmit;

impl Plugin for AlwaysAdmit {
    fn name(&self) -> &'static str {
        "AlwaysAdmit"
    }
    fn handles(&self, _a: &Attributes) -> bool {
        false
    }
}

/// Upstream's AlwaysDeny: refuses every write.
struct AlwaysDeny;

impl Plugin for AlwaysDeny {
    fn name(&self) -> &'static str {
        "AlwaysDeny"
    }
    fn handles(&self, _a: &Attributes) -> bool {
        true
    }
    fn mutating(&self) -> bool {
        true
    }
    fn validating(&self) -> bool {
        true
    }
    fn admit<'a>(&'a self, _server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move { Err(a.forbidden("admission control is denying all modifications")) })
    }
}

/// One object from the watch cache, or from the store when the cache does
/// not have it (not loaded, or not caught up with a recent create: as
/// upstream's plugins fall back to a live lookup).
pub async fn get_object(
    server: &Server,
    (group, version, plural): (&str, &str, &str),
    namespace: &str,
    name: &str,
) -> ApiResult<Option<Value>> {
    let Some(rt) = server.registry.lookup(group, version, plural) else {
        return Ok(None);
    };
    let key = rt.key(namespace, name);
    if let Some(c) = server.cache.get(&rt.prefix(""))
        && let (Some(e), _) = c.get(&key)
    {
        return Ok(Some(e.object().clone()));
    }
    Ok(server.storage.get(&key, ReadAt::Latest).await?.map(|s| s.object))
}

/// The objects of a resource in a namespace ("" for all or cluster-scoped)
/// from the watch cache, or from the store when the cache has none.
pub async fn list_objects(
    server: &Server,
    (group, version, plural): (&str, &str, &str),
    namespace: &str,
) -> ApiResult<Vec<Value>> {
    let Some(rt) = server.registry.lookup(group, version, plural) else {
        return Ok(Vec::new());
    };
    let prefix = rt.prefix(namespace);
    if let Some(c) = server.cache.get(&rt.prefix("")) {
        let (items, _) = c.list(&prefix);
        if !items.is_empty() {
            return Ok(items.iter().map(|e| e.object().clone()).collect());
        }
    }
    let page = server.storage.list(&prefix, "", 0, ReadAt::Latest).await?;
    Ok(page.items.into_iter().map(|s| s.object).collect())
}

/// Like [`list_objects`], but always from the store at its latest
/// revision (for checks that must see a write made just before, such as
/// "only one default PriorityClass").
pub async fn list_objects_latest(
    server: &Server,
    (group, version, plural): (&str, &str, &str),
    namespace: &str,
) -> ApiResult<Vec<Value>> {
    let Some(rt) = server.registry.lookup(group, version, plural) else {
        return Ok(Vec::new());
    };
    let page = server
        .storage
        .list(&rt.prefix(namespace), "", 0, ReadAt::Latest)
        .await?;
    Ok(page.items.into_iter().map(|s| s.object).collect())
}

/// Attributes for a request on `resource` with `object` (name and
/// namespace from its metadata), for plugin tests.
#[cfg(test)]
pub fn test_attrs(operation: Operation, resource: &str, object: Value, old: Option<Value>) -> Attributes {
    let (group, kind) = match resource {
        "pods" => ("", "Pod"),
        "nodes" => ("", "Node"),
        "namespaces" => ("", "Namespace"),
        "persistentvolumeclaims" => ("", "PersistentVolumeClaim"),
        "persistentvolumes" => ("", "PersistentVolume"),
        "services" => ("", "Service"),
        "configmaps" => ("", "ConfigMap"),
        "events" => ("", "Event"),
        "priorityclasses" => ("scheduling.k8s.io", "PriorityClass"),
        "deployments" => ("apps", "Deployment"),
        other => ("", other),
    };
    let meta = |o: &Value, f: &str| {
        o.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let src = if object.is_null() {
        old.clone().unwrap_or_default()
    } else {
        object.clone()
    };
    Attributes {
        operation,
        group: group.into(),
        kind: kind.into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: meta(&src, "namespace"),
        name: meta(&src, "name"),
        object,
        old,
        dry_run: false,
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_pick_plugins() {
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            Result<(&'a [&'a str], &'a [&'a str]), &'a str>,
        );
        let cases: &[Case] = &[
            (
                &[],
                &[],
                Ok((
                    &["NamespaceLifecycle", "ServiceAccount", "PodSecurity"],
                    &["AlwaysDeny"],
                )),
            ),
            (
                &["AlwaysDeny"],
                &["ServiceAccount"],
                Ok((&["AlwaysDeny", "Priority"], &["ServiceAccount"])),
            ),
            (
                &["Bogus"],
                &[],
                Err("enable-admission-plugins plugin \"Bogus\" is unknown"),
            ),
            (
                &[],
                &["Nope"],
                Err("disable-admission-plugins plugin \"Nope\" is unknown"),
            ),
            (
                &["Priority"],
                &["Priority"],
                Err("[Priority] in enable-admission-plugins and disable-admission-plugins overlapped"),
            ),
        ];
        for (enable, disable, want) in cases {
            let got = Chain::enabled(&s(enable), &s(disable));
            match want {
                Ok((on, off)) => {
                    let got = got.expect("valid flags");
                    for n in *on {
                        assert!(got.contains(*n), "{n} on for {enable:?} {disable:?}");
                    }
                    for n in *off {
                        assert!(!got.contains(*n), "{n} off for {enable:?} {disable:?}");
                    }
                }
                Err(msg) => assert_eq!(got.expect_err("invalid flags").to_string(), *msg),
            }
        }
    }

    #[test]
    fn chain_runs_in_upstream_order() {
        let c = Chain::new(&s(&["AlwaysDeny"]), &[], &Config::default()).expect("chain");
        let m = c.names(true);
        assert_eq!(m.first(), Some(&"NamespaceLifecycle"));
        assert_eq!(m.last(), Some(&"AlwaysDeny"));
        let v = c.names(false);
        let pos = |n| v.iter().position(|x| *x == n).expect(n);
        assert!(pos("LimitRanger") < pos("PodSecurity"));
        assert!(pos("PodSecurity") < pos("Priority"));
        assert!(pos("Priority") < pos("ResourceQuota"));
        for n in DEFAULT_ON.iter().chain(ALL_ORDERED) {
            assert!(ALL_ORDERED.contains(n));
        }
    }
}
