//! `daemonset-controller` (upstream's `pkg/controller/daemon`): one pod per
//! eligible node, placed through the scheduler by required node affinity
//! on the node's name, replaced when it fails (with back-off), removed
//! from nodes no longer eligible, rolled to new revisions (maxUnavailable
//! or maxSurge, or OnDelete), with the DaemonSet's ControllerRevision
//! history.
//!
//! The decisions are [`plan`]'s; this module reads the caches, keeps the
//! revisions and expectations, and writes through the API.

mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;

use super::StartFn;
use super::history::{self, REVISION_LABEL};
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer, key, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};
use plan::NodePods;

pub const START: Option<StartFn> = Some(start);

/// Upstream's `BurstReplicas`: creations or deletions per sync.
const BURST_REPLICAS: usize = 250;
/// Failed-pod back-off per node (upstream's `failedPodsBackoff`).
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Upstream's `flowcontrol.Backoff` for failed daemon pods, keyed by
/// DaemonSet uid and node.
#[derive(Default)]
struct Backoff {
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl Backoff {
    /// The remaining back-off of `key` at `now`, if in back-off.
    fn in_backoff(&self, key: &str, now: Instant) -> Option<Duration> {
        let e = self.entries.lock();
        let (d, at) = e.get(key)?;
        let since = now.saturating_duration_since(*at);
        (since < *d).then(|| *d - since)
    }

    /// Records a new attempt: the back-off doubles (up to the maximum)
    /// unless the last was long ago.
    fn next(&self, key: &str, now: Instant) {
        let mut e = self.entries.lock();
        let d = match e.get(key) {
            Some((d, at)) if now.saturating_duration_since(*at) <= 2 * BACKOFF_MAX => (*d * 2).min(BACKOFF_MAX),
            _ => BACKOFF_INITIAL,
        };
        e.insert(key.to_string(), (d, now));
    }
}

struct Controller {
    client: kube::Client,
    sets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    queue: Arc<Queue>,
    recorder: Recorder,
    creates: Expectations,
    deletes: Expectations,
    backoff: Backoff,
}

fn owner_key(pod: &Pod) -> Option<String> {
    let r = util::controller_ref(&pod.metadata)?;
    (r.kind == "DaemonSet" && r.api_version.starts_with("apps/")).then(|| key(util::namespace(&pod.metadata), &r.name))
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        sets: ctx.informers.get::<DaemonSet>(),
        pods: ctx.informers.get::<Pod>(),
        nodes: ctx.informers.get::<Node>(),
        revisions: ctx.informers.get::<ControllerRevision>(),
        queue: ctx.queue("daemonset"),
        recorder: ctx.recorder("daemonset-controller"),
        creates: Expectations::new(),
        deletes: Expectations::new(),
        backoff: Backoff::default(),
    });
    let q = c.queue.clone();
    let cc = c.clone();
    c.sets.add_handler(move |ch| {
        let k = key_of(ch.object().as_ref());
        if let Change::Delete(_) = ch {
            cc.creates.delete(&k);
            cc.deletes.delete(&k);
        }
        q.add(k);
    });
    let cc = Arc::downgrade(&c);
    c.pods.add_handler(move |ch| {
        let Some(c) = cc.upgrade() else { return };
        c.pod_changed(ch);
    });
    let cc = Arc::downgrade(&c);
    c.nodes.add_handler(move |ch| {
        let Some(c) = cc.upgrade() else { return };
        if let Change::Update(old, new) = ch {
            // Only what eligibility reads matters.
            if old.metadata.labels == new.metadata.labels && old.spec == new.spec {
                return;
            }
        }
        for ds in c.sets.list() {
            c.queue.add(key_of(ds.as_ref()));
        }
    });
    let q = c.queue.clone();
    c.revisions.add_handler(move |ch| {
        let r = ch.object();
        if let Some(o) = util::controller_ref(&r.metadata)
            && o.kind == "DaemonSet"
        {
            q.add(key(util::namespace(&r.metadata), &o.name));
        }
    });
    let workers = ctx.opts.concurrency.daemonset;
    tokio::spawn(async move {
        c.sets.wait_synced().await;
        c.pods.wait_synced().await;
        c.nodes.wait_synced().await;
        c.revisions.wait_synced().await;
        let queue = c.queue.clone();
        run_workers(queue, workers, move |k| {
            let c = c.clone();
            async move { c.sync(&k).await }
        });
    });
    Ok(())
}

/// A DaemonSet selecting every pod (an empty selector) is refused.
fn selects_all(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

impl Controller {
    fn pod_changed(&self, ch: &Change<Pod>) {
        match ch {
            Change::Add(p) => {
                if let Some(k) = owner_key(p) {
                    self.creates.creation_observed(&k);
                    self.queue.add(k);
                }
            }
            Change::Update(old, new) => {
                let (ko, kn) = (owner_key(old), owner_key(new));
                if let Some(k) = &kn {
                    self.queue.add(k.clone());
                    if !util::is_pod_ready(old)
                        && util::is_pod_ready(new)
                        && let Some(ds) = self.sets.get_key(k)
                    {
                        let mrs = plan::min_ready_seconds(&ds);
                        if mrs > 0 {
                            self.queue.add_after(k.clone(), Duration::from_secs(mrs as u64 + 1));
                        }
                    }
                }
                if let Some(k) = ko
                    && Some(&k) != kn.as_ref()
                {
                    self.queue.add(k);
                }
            }
            Change::Delete(p) => {
                if let Some(k) = owner_key(p) {
                    self.deletes.deletion_observed(&k, &key_of(p.as_ref()));
                    self.queue.add(k);
                }
            }
        }
    }

    fn satisfied(&self, k: &str) -> bool {
        self.creates.satisfied(k) && self.deletes.satisfied(k)
    }

    /// The DaemonSet's pods by target node; terminal pods already being
    /// deleted are left out unless `include_deleted_terminal`.
    fn node_pods(&self, ds: &DaemonSet, include_deleted_terminal: bool) -> NodePods {
        let uid = util::uid(&ds.metadata);
        let sel = ds
            .spec
            .as_ref()
            .and_then(|s| util::selector(Some(&s.selector)).ok())
            .flatten();
        let mut out = NodePods::new();
        for p in self.pods.list_namespace(util::namespace(&ds.metadata)) {
            if !util::is_controlled_by(&p.metadata, uid) {
                continue;
            }
            if !sel
                .as_ref()
                .is_some_and(|s| s.matches(p.metadata.labels.as_ref().unwrap_or(&Default::default())))
            {
                continue;
            }
            let terminal = matches!(util::phase(&p), "Succeeded" | "Failed");
            if !include_deleted_terminal && terminal && p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(n) = plan::target_node(&p) {
                out.entry(n).or_default().push(p);
            }
        }
        out
    }

    async fn sync(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(k);
        let Some(ds) = self.sets.get(ns, name) else {
            self.creates.delete(k);
            self.deletes.delete(k);
            return Ok(());
        };
        let Some(spec) = ds.spec.as_ref() else { return Ok(()) };
        if selects_all(&spec.selector) {
            self.recorder.event(
                ds.as_ref(),
                WARNING,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(());
        }
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let nodes = self.nodes.list();
        let (cur, old) = self.construct_history(&ds).await?;
        let hash = cur
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_LABEL))
            .cloned()
            .unwrap_or_default();
        if !self.satisfied(k) {
            return self.update_status(&ds, &nodes, &hash, false).await;
        }
        let res = self.update(&ds, k, &nodes, &hash, &old).await;
        let status = self.update_status(&ds, &nodes, &hash, true).await;
        res.and(status)
    }

    async fn update(
        &self,
        ds: &DaemonSet,
        k: &str,
        nodes: &[Arc<Node>],
        hash: &str,
        old: &[Arc<ControllerRevision>],
    ) -> anyhow::Result<()> {
        let now = jiff::Timestamp::now();
        let node_pods = self.node_pods(ds, false);
        let m = plan::manage(nodes, &node_pods, ds, hash, now);
        let mut delete = m.delete;
        let ds_name = util::name(&ds.metadata);
        for (node, pod) in &m.succeeded {
            self.recorder.event(
                ds,
                NORMAL,
                "SucceededDaemonPod",
                format!(
                    "Found succeeded daemon pod {}/{pod} on node {node}, will try to delete it",
                    util::namespace(&ds.metadata)
                ),
            );
        }
        let instant = Instant::now();
        for (node, pod) in &m.failed {
            let bk = format!("{}/{node}", util::uid(&ds.metadata));
            if let Some(wait) = self.backoff.in_backoff(&bk, instant) {
                tracing::debug!(
                    daemonset = ds_name,
                    node,
                    ?wait,
                    "deleting failed pod limited by back-off"
                );
                self.queue.add_after(k.to_string(), wait);
                continue;
            }
            self.backoff.next(&bk, instant);
            self.recorder.event(
                ds,
                WARNING,
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {}/{pod} on node {node}, will try to kill it",
                    util::namespace(&ds.metadata)
                ),
            );
            delete.push(pod.clone());
        }
        let mut res = self.sync_nodes(ds, k, &delete, &m.create_on, hash).await;
        if res.is_ok() && self.satisfied(k) && plan::is_rolling_update(ds) {
            let node_pods = self.node_pods(ds, false);
            res = match plan::rolling_update(nodes, &node_pods, ds, hash, now) {
                Ok(r) => self.sync_nodes(ds, k, &r.delete, &r.create_on, hash).await,
                Err(e) => Err(anyhow::anyhow!("couldn't get unavailable numbers: {e}")),
            };
        }
        res?;
        self.cleanup_history(ds, old).await
    }

    /// Creates pods on `create_on` in slow-start batches and deletes
    /// `delete`, under expectations (upstream's `syncNodes`).
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        k: &str,
        delete: &[String],
        create_on: &[String],
        hash: &str,
    ) -> anyhow::Result<()> {
        let create_on = &create_on[..create_on.len().min(BURST_REPLICAS)];
        let delete = &delete[..delete.len().min(BURST_REPLICAS)];
        if create_on.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let ns = util::namespace(&ds.metadata);
        self.creates.expect_creations(k, create_on.len());
        self.deletes
            .expect_deletions(k, delete.iter().map(|p| key(ns, p)).collect());
        let template = self.pod_template(ds, hash);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut errors: Vec<String> = Vec::new();

        let mut pos = 0;
        let mut batch = 1usize;
        while pos < create_on.len() {
            let end = (pos + batch).min(create_on.len());
            let results = futures::future::join_all(create_on[pos..end].iter().map(|node| {
                let mut pod = template.clone();
                if let Some(s) = pod.spec.as_mut() {
                    s.affinity = Some(plan::pin_to_node(s.affinity.take(), node));
                }
                let pods = pods.clone();
                async move { pods.create(&PostParams::default(), &pod).await }
            }))
            .await;
            let before = errors.len();
            for r in results {
                match r {
                    Ok(p) => self.recorder.event(
                        ds,
                        NORMAL,
                        "SuccessfulCreate",
                        format!("Created pod: {}", util::name(&p.metadata)),
                    ),
                    Err(e) => {
                        self.creates.creation_observed(k);
                        if matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("terminat")) {
                            continue;
                        }
                        self.recorder
                            .event(ds, WARNING, "FailedCreate", format!("Error creating: {e}"));
                        errors.push(e.to_string());
                    }
                }
            }
            pos = end;
            if errors.len() > before {
                // Skipped creations are not expected any more.
                for _ in pos..create_on.len() {
                    self.creates.creation_observed(k);
                }
                break;
            }
            batch *= 2;
        }

        let results = futures::future::join_all(delete.iter().map(|name| {
            let pods = pods.clone();
            async move { (name, pods.delete(name, &DeleteParams::default()).await) }
        }))
        .await;
        for (name, r) in results {
            match r {
                Ok(_) => self
                    .recorder
                    .event(ds, NORMAL, "SuccessfulDelete", format!("Deleted pod: {name}")),
                Err(e) => {
                    self.deletes.deletion_observed(k, &key(ns, name));
                    if !util::is_not_found(&e) {
                        self.recorder
                            .event(ds, WARNING, "FailedDelete", format!("Error deleting: {e}"));
                        errors.push(e.to_string());
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", errors.join("; "))
        }
    }

    /// The pod every node gets (upstream's `CreatePodTemplate` +
    /// `GetPodFromTemplate`), before pinning to a node.
    fn pod_template(&self, ds: &DaemonSet, hash: &str) -> Pod {
        let t = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let meta = t.metadata.unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        if let Some(g) = plan::template_generation(ds) {
            labels.insert(plan::TEMPLATE_GENERATION_LABEL.into(), g.to_string());
        }
        if !hash.is_empty() {
            labels.insert(REVISION_LABEL.into(), hash.into());
        }
        let mut spec = t.spec.unwrap_or_default();
        plan::add_daemon_tolerations(&mut spec);
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", util::name(&ds.metadata))),
                namespace: ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: meta.annotations,
                finalizers: meta.finalizers,
                owner_references: Some(vec![util::new_controller_ref(ds)]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// The current revision (created, deduplicated or renumbered as
    /// needed) and the old ones (upstream's `constructHistory`).
    async fn construct_history(
        &self,
        ds: &DaemonSet,
    ) -> anyhow::Result<(Arc<ControllerRevision>, Vec<Arc<ControllerRevision>>)> {
        let ns = util::namespace(&ds.metadata);
        let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let patch = history::template_patch(&template);
        let bytes = history::go_json(&patch);
        let (mut current, old): (Vec<_>, Vec<_>) =
            history::owned_revisions(&self.revisions, ns, util::uid(&ds.metadata))
                .into_iter()
                .partition(|r| history::data_bytes(r) == bytes);
        let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let cur = if current.is_empty() {
            Arc::new(self.snapshot(ds, patch, next).await?)
        } else {
            // Keep the newest of equal revisions; move pods off the others.
            current.sort_by(|a, b| history::compare(a, b));
            let keep = current.pop().expect("not empty");
            let keep_hash = keep
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .cloned()
                .unwrap_or_default();
            for dup in current {
                let dup_hash = dup
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(REVISION_LABEL))
                    .cloned();
                if let Some(h) = dup_hash {
                    self.relabel_pods(ds, &h, &keep_hash).await?;
                }
                match api.delete(util::name(&dup.metadata), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if util::is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if keep.revision < next {
                Arc::new(history::set_revision_number(&self.client, &keep, next).await?)
            } else {
                keep
            }
        };
        Ok((cur, old))
    }

    async fn relabel_pods(&self, ds: &DaemonSet, from: &str, to: &str) -> anyhow::Result<()> {
        let ns = util::namespace(&ds.metadata);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        for p in self.node_pods(ds, true).values().flatten() {
            if p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .map(String::as_str)
                == Some(from)
            {
                let patch = json!({"metadata": {"labels": {REVISION_LABEL: to}}});
                match api
                    .patch(util::name(&p.metadata), &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if util::is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Creates the revision of the current template (upstream's
    /// `snapshot`); a name taken by other data bumps the collision count.
    async fn snapshot(
        &self,
        ds: &DaemonSet,
        patch: serde_json::Value,
        revision: i64,
    ) -> anyhow::Result<ControllerRevision> {
        let ns = util::namespace(&ds.metadata);
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let bytes = history::go_json(&patch);
        let hash = history::hash_revision(&bytes, collision);
        let name = history::revision_name(util::name(&ds.metadata), &hash);
        let template_labels = ds
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let mut labels = template_labels;
        labels.insert(REVISION_LABEL.into(), hash);
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.into()),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone().filter(|a| !a.is_empty()),
                owner_references: Some(vec![util::new_controller_ref(ds)]),
                ..Default::default()
            },
            data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(patch)),
            revision,
        };
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        match api.create(&PostParams::default(), &rev).await {
            Ok(r) => Ok(r),
            Err(e) if util::is_already_exists(&e) => {
                let existing = api.get(&name).await?;
                if history::data_bytes(&existing) == bytes {
                    return Ok(existing);
                }
                let dsapi: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
                let fresh = dsapi.get(util::name(&ds.metadata)).await?;
                let fresh_count = fresh.status.as_ref().and_then(|s| s.collision_count);
                if fresh_count != collision {
                    anyhow::bail!(
                        "found a stale collision count ({collision:?}, expected {fresh_count:?}) of DaemonSet {:?} while processing; will retry until it is updated",
                        util::name(&ds.metadata)
                    );
                }
                let bumped = fresh_count.unwrap_or(0) + 1;
                dsapi
                    .patch_status(
                        util::name(&ds.metadata),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"resourceVersion": fresh.metadata.resource_version},
                                             "status": {"collisionCount": bumped}})),
                    )
                    .await?;
                anyhow::bail!(
                    "found a hash collision for DaemonSet {:?} - bumping collisionCount to {bumped} to resolve it",
                    util::name(&ds.metadata)
                )
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the oldest revisions no pod uses beyond
    /// `revisionHistoryLimit` (upstream's `cleanupHistory`).
    async fn cleanup_history(&self, ds: &DaemonSet, old: &[Arc<ControllerRevision>]) -> anyhow::Result<()> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        if old.len() <= limit {
            return Ok(());
        }
        let mut to_kill = old.len() - limit;
        let live: Vec<String> = self
            .node_pods(ds, true)
            .values()
            .flatten()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_LABEL).cloned())
            .collect();
        let mut old = old.to_vec();
        history::sort(&mut old);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), util::namespace(&ds.metadata));
        for r in old {
            if to_kill == 0 {
                break;
            }
            let h = r.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL));
            if h.is_some_and(|h| live.contains(h)) {
                continue;
            }
            match api.delete(util::name(&r.metadata), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
            to_kill -= 1;
        }
        Ok(())
    }

    /// Writes the counts (and observedGeneration when this sync acted on
    /// the generation) unless unchanged (upstream's `storeDaemonSetStatus`).
    async fn update_status(
        &self,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        hash: &str,
        observe: bool,
    ) -> anyhow::Result<()> {
        let now = jiff::Timestamp::now();
        let c = plan::counts(nodes, &self.node_pods(ds, false), ds, hash, now);
        let mrs = plan::min_ready_seconds(ds);
        if mrs > 0 && c.ready != c.available {
            self.queue.add_after(key_of(ds), Duration::from_secs(mrs as u64 + 1));
        }
        let old = ds.status.clone().unwrap_or_default();
        let generation = ds.metadata.generation.unwrap_or(0);
        let observed_ok = !observe || old.observed_generation.unwrap_or(0) >= generation;
        let z = |v: Option<i32>| v.unwrap_or(0);
        if observed_ok
            && old.desired_number_scheduled == c.desired
            && old.current_number_scheduled == c.current
            && old.number_misscheduled == c.misscheduled
            && old.number_ready == c.ready
            && z(old.updated_number_scheduled) == c.updated
            && z(old.number_available) == c.available
            && z(old.number_unavailable) == c.unavailable
        {
            return Ok(());
        }
        let mut status = json!({
            "desiredNumberScheduled": c.desired,
            "currentNumberScheduled": c.current,
            "numberMisscheduled": c.misscheduled,
            "numberReady": c.ready,
            "updatedNumberScheduled": c.updated,
            "numberAvailable": c.available,
            "numberUnavailable": c.unavailable,
        });
        if observe {
            status["observedGeneration"] = json!(generation);
        }
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), util::namespace(&ds.metadata));
        match api
            .patch_status(
                util::name(&ds.metadata),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_pod_backoff_doubles_per_node() {
        let b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.in_backoff("ds/n1", t0), None);
        b.next("ds/n1", t0);
        assert_eq!(b.in_backoff("ds/n1", t0), Some(BACKOFF_INITIAL));
        assert_eq!(b.in_backoff("ds/n1", t0 + Duration::from_secs(1)), None);
        b.next("ds/n1", t0 + Duration::from_secs(1));
        assert_eq!(
            b.in_backoff("ds/n1", t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(1)),
            "the second failure waits two seconds"
        );
        assert_eq!(b.in_backoff("ds/n2", t0), None, "per node");
    }
}
