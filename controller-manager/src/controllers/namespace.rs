//! `namespace-controller`: empties a namespace being deleted, then clears
//! its `kubernetes` finalizer so the apiserver removes it. Every
//! namespaced resource the apiserver serves (custom ones included, found
//! by discovery) is deleted — by `deletecollection` where the resource
//! offers it — and what remains is reported in upstream's
//! `NamespaceDeletion*`, `NamespaceContentRemaining` and
//! `NamespaceFinalizersRemaining` conditions until it is gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::verbs;
use serde_json::json;

use super::StartFn;
use crate::context::Ctx;
use crate::discovery::{self, Resources};
use crate::informer::{Change, Informer};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

const FINALIZER: &str = "kubernetes";

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let namespaces = ctx.informers.get::<Namespace>();
    let queue = ctx.queue("namespace");
    let q = queue.clone();
    namespaces.add_handler(move |c| {
        if let Change::Add(ns) | Change::Update(_, ns) = c
            && ns.metadata.deletion_timestamp.is_some()
        {
            q.add(util::name(&ns.metadata));
        }
    });
    let client = ctx.client.clone();
    let period = ctx.opts.namespace_sync_period;
    let workers = ctx.opts.concurrency.namespace;
    tokio::spawn(async move {
        namespaces.wait_synced().await;
        let c = Arc::new(Controller {
            client,
            namespaces: namespaces.clone(),
            resources: Resources::default(),
            queue: queue.clone(),
        });
        run_workers(queue.clone(), workers, move |name| {
            let c = c.clone();
            async move { c.sync(&name).await }
        });
        // Upstream's --namespace-sync-period: look again at every
        // terminating namespace now and then.
        loop {
            tokio::time::sleep(period).await;
            for ns in namespaces.list() {
                if ns.metadata.deletion_timestamp.is_some() {
                    queue.add(util::name(&ns.metadata));
                }
            }
        }
    });
    Ok(())
}

struct Controller {
    client: kube::Client,
    namespaces: Arc<Informer<Namespace>>,
    resources: Resources,
    queue: Arc<Queue>,
}

/// What deleting a namespace's content found, per resource.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Discovery errors (groups that failed).
    pub discovery_errors: Vec<String>,
    /// Errors deleting or listing content.
    pub content_errors: Vec<String>,
    /// `pods.` / `deployments.apps` -> remaining instances.
    pub remaining: BTreeMap<String, usize>,
    /// finalizer -> instances still holding it.
    pub finalizers: BTreeMap<String, usize>,
    /// Longest grace period of pods still terminating (seconds).
    pub estimate: i64,
}

impl Outcome {
    pub fn done(&self) -> bool {
        self.remaining.is_empty() && self.content_errors.is_empty() && self.discovery_errors.is_empty()
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(jiff::Timestamp::now())),
    }
}

/// Upstream's deletion conditions for an outcome, in upstream's order.
pub fn conditions(o: &Outcome) -> Vec<NamespaceCondition> {
    let mut v = Vec::new();
    v.push(if o.discovery_errors.is_empty() {
        condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        )
    } else {
        condition(
            "NamespaceDeletionDiscoveryFailure",
            true,
            "DiscoveryFailed",
            format!(
                "Discovery failed for some groups, {} failing: {}",
                o.discovery_errors.len(),
                o.discovery_errors.join(", ")
            ),
        )
    });
    v.push(condition(
        "NamespaceDeletionGroupVersionParsingFailure",
        false,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed".into(),
    ));
    v.push(if o.content_errors.is_empty() {
        condition(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        )
    } else {
        condition(
            "NamespaceDeletionContentFailure",
            true,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                o.content_errors.len(),
                o.content_errors.join(", ")
            ),
        )
    });
    v.push(if o.remaining.is_empty() {
        condition(
            "NamespaceContentRemaining",
            false,
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let parts: Vec<String> = o
            .remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        condition(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        )
    });
    v.push(if o.finalizers.is_empty() {
        condition(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let parts: Vec<String> = o
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        condition(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            ),
        )
    });
    v
}

impl Controller {
    async fn sync(&self, name: &str) -> anyhow::Result<()> {
        let Some(ns) = self.namespaces.get("", name) else {
            return Ok(());
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(());
        }
        let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let outcome = self.delete_content(name).await;
        self.report(&ns, &outcome).await?;
        if !outcome.done() {
            // Wait for graceful pod termination and finalizers, then look
            // again (upstream requeues after its estimate).
            let wait = Duration::from_secs(outcome.estimate.clamp(1, 5) as u64);
            self.queue.add_after(name, wait);
            return Ok(());
        }
        self.finalize(&ns).await
    }

    async fn delete_content(&self, ns: &str) -> Outcome {
        let mut o = Outcome::default();
        let snap = match self.resources.refresh(&self.client).await {
            Ok(s) => s,
            Err(e) => {
                o.discovery_errors.push(e.to_string());
                return o;
            }
        };
        for r in snap
            .preferred
            .iter()
            .filter(|r| r.namespaced && discovery::deletable(r))
        {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &r.ar);
            let label = format!("{}.{}", r.ar.plural, r.ar.group);
            let dp = DeleteParams::background();
            if r.supports(verbs::DELETE_COLLECTION)
                && let Err(e) = api.delete_collection(&dp, &ListParams::default()).await
                && !util::is_not_found(&e)
            {
                o.content_errors.push(format!("{label}: {e}"));
                continue;
            }
            let list = match api.list(&ListParams::default()).await {
                Ok(l) => l,
                Err(e) if util::is_not_found(&e) => continue,
                Err(e) => {
                    o.content_errors.push(format!("{label}: {e}"));
                    continue;
                }
            };
            if list.items.is_empty() {
                continue;
            }
            for item in &list.items {
                if !r.supports(verbs::DELETE_COLLECTION)
                    && item.metadata.deletion_timestamp.is_none()
                    && let Err(e) = api.delete(util::name(&item.metadata), &dp).await
                    && !util::is_not_found(&e)
                {
                    o.content_errors.push(format!("{label}: {e}"));
                }
                for f in item.metadata.finalizers.as_deref().unwrap_or_default() {
                    *o.finalizers.entry(f.clone()).or_default() += 1;
                }
                if r.ar.plural == "pods" && r.ar.group.is_empty() {
                    let g = item
                        .metadata
                        .deletion_grace_period_seconds
                        .or_else(|| {
                            item.data
                                .pointer("/spec/terminationGracePeriodSeconds")
                                .and_then(|v| v.as_i64())
                        })
                        .unwrap_or(0);
                    o.estimate = o.estimate.max(g);
                }
            }
            *o.remaining.entry(label).or_default() += list.items.len();
        }
        o
    }

    /// Writes the conditions when they changed (by type, status, reason,
    /// message).
    async fn report(&self, ns: &Namespace, o: &Outcome) -> anyhow::Result<()> {
        let want = conditions(o);
        let have = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let same = |a: &NamespaceCondition, b: &NamespaceCondition| {
            a.type_ == b.type_ && a.status == b.status && a.reason == b.reason && a.message == b.message
        };
        let merged: Vec<NamespaceCondition> = want
            .into_iter()
            .map(|w| match have.iter().find(|h| same(h, &w)) {
                Some(h) => h.clone(),
                None => w,
            })
            .collect();
        if merged.len() == have.len() && merged.iter().zip(&have).all(|(a, b)| same(a, b)) {
            return Ok(());
        }
        let patch = json!({"status": {"conditions": merged}});
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api
            .patch_status(util::name(&ns.metadata), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the `kubernetes` finalizer through `namespaces/<n>/finalize`.
    async fn finalize(&self, ns: &Namespace) -> anyhow::Result<()> {
        let mut ns = ns.clone();
        if let Some(spec) = ns.spec.as_mut() {
            spec.finalizers = Some(
                spec.finalizers
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != FINALIZER)
                    .collect(),
            );
        }
        let name = util::name(&ns.metadata).to_string();
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &ns)
            .await
        {
            Ok(_) => {
                tracing::info!(namespace = %name, "namespace emptied and finalized");
                Ok(())
            }
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_content_and_finalizers_are_reported_as_upstream() {
        let o = Outcome {
            remaining: [("pods.".to_string(), 2), ("widgets.example.com".to_string(), 1)].into(),
            finalizers: [("example.com/hold".to_string(), 1)].into(),
            ..Default::default()
        };
        assert!(!o.done());
        let c = conditions(&o);
        let get = |t: &str| c.iter().find(|c| c.type_ == t).unwrap();
        let remaining = get("NamespaceContentRemaining");
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        let fins = get("NamespaceFinalizersRemaining");
        assert_eq!(
            fins.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
        assert_eq!(get("NamespaceDeletionDiscoveryFailure").status, "False");
    }

    #[test]
    fn an_empty_namespace_is_done() {
        let o = Outcome::default();
        assert!(o.done());
        assert!(conditions(&o).iter().all(|c| c.status == "False"));
    }
}
