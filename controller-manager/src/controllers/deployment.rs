//! `deployment-controller` (upstream's `pkg/controller/deployment`): rolls
//! a Deployment's pod template out through ReplicaSets named
//! `<deployment>-<pod-template-hash>` (RollingUpdate within maxSurge and
//! maxUnavailable, or Recreate), scales proportionally when the replica
//! count changes mid-rollout or while paused, keeps revisionHistoryLimit
//! old ReplicaSets, and reports status with the Available and Progressing
//! conditions `kubectl rollout status` reads.
//!
//! The arithmetic lives in [`rollout`] (plain functions, table-tested);
//! this file reads the informers and writes through the API in upstream's
//! order: sync revisions, scale up the new ReplicaSet, scale down old
//! ones, clean up history, write status.

mod rollout;

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use self::rollout::*;
use super::StartFn;
use super::replicaset::{Claim, adopt, can_adopt, claim_action, error_message, is_namespace_terminating, release};
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING};
use crate::informer::{Change, Informer, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

struct Controller {
    client: kube::Client,
    deployments: Arc<Informer<Deployment>>,
    rss: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        deployments: ctx.informers.get::<Deployment>(),
        rss: ctx.informers.get::<ReplicaSet>(),
        pods: ctx.informers.get::<Pod>(),
        queue: ctx.queue("deployment"),
        recorder: ctx.recorder("deployment-controller"),
    });
    let h = c.clone();
    c.deployments
        .add_handler(move |ch| h.queue.add(key_of(ch.object().as_ref())));
    let h = c.clone();
    c.rss.add_handler(move |ch| match ch {
        Change::Add(rs) => h.add_replica_set(rs),
        Change::Update(old, cur) => h.update_replica_set(old, cur),
        Change::Delete(rs) => h.enqueue_controller_of(rs),
    });
    let h = c.clone();
    c.pods.add_handler(move |ch| {
        if let Change::Delete(p) = ch {
            h.delete_pod(p);
        }
    });
    let workers = ctx.opts.concurrency.deployment;
    tokio::spawn(async move {
        c.deployments.wait_synced().await;
        c.rss.wait_synced().await;
        c.pods.wait_synced().await;
        let queue = c.queue.clone();
        run_workers(queue, workers, move |k| {
            let c = c.clone();
            async move { c.sync(&k).await }
        });
    });
    Ok(())
}

fn selects_everything(s: &LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

/// Indices of the new ReplicaSet and of the old ones in a deployment's
/// list.
fn split(rss: &[ReplicaSet], new: Option<usize>) -> (Option<&ReplicaSet>, Vec<&ReplicaSet>) {
    let old = rss
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new)
        .map(|(_, r)| r)
        .collect();
    (new.map(|i| &rss[i]), old)
}

fn old_indices(rss: &[ReplicaSet], new: Option<usize>) -> Vec<usize> {
    (0..rss.len()).filter(|i| Some(*i) != new).collect()
}

impl Controller {
    // --- event handlers -------------------------------------------------

    fn resolve(
        &self,
        ns: &str,
        r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Option<Arc<Deployment>> {
        if r.kind != "Deployment" {
            return None;
        }
        self.deployments
            .get(ns, &r.name)
            .filter(|d| d.metadata.uid.as_deref() == Some(r.uid.as_str()))
    }

    fn deployments_matching(&self, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
        if rs.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            return Vec::new();
        }
        self.deployments
            .list_namespace(util::namespace(&rs.metadata))
            .into_iter()
            .filter(|d| {
                let Some(spec) = d.spec.as_ref() else { return false };
                !selects_everything(&spec.selector)
                    && util::selector(Some(&spec.selector))
                        .is_ok_and(|s| util::matches(&s, rs.metadata.labels.as_ref()))
            })
            .collect()
    }

    fn enqueue_controller_of(&self, rs: &ReplicaSet) {
        if let Some(r) = util::controller_ref(&rs.metadata)
            && let Some(d) = self.resolve(util::namespace(&rs.metadata), r)
        {
            self.queue.add(key_of(d.as_ref()));
        }
    }

    fn add_replica_set(&self, rs: &Arc<ReplicaSet>) {
        if rs.metadata.deletion_timestamp.is_some() || util::controller_ref(&rs.metadata).is_some() {
            self.enqueue_controller_of(rs);
            return;
        }
        for d in self.deployments_matching(rs) {
            self.queue.add(key_of(d.as_ref()));
        }
    }

    fn update_replica_set(&self, old: &Arc<ReplicaSet>, cur: &Arc<ReplicaSet>) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        let (old_ref, cur_ref) = (util::controller_ref(&old.metadata), util::controller_ref(&cur.metadata));
        let ref_changed = old_ref != cur_ref;
        if ref_changed && old_ref.is_some() {
            self.enqueue_controller_of(old);
        }
        if cur_ref.is_some() {
            self.enqueue_controller_of(cur);
            return;
        }
        if ref_changed || old.metadata.labels != cur.metadata.labels {
            for d in self.deployments_matching(cur) {
                self.queue.add(key_of(d.as_ref()));
            }
        }
    }

    /// Recreate waits for old pods to be gone: their deletion wakes it.
    fn delete_pod(&self, pod: &Pod) {
        let ns = util::namespace(&pod.metadata);
        let Some(r) = util::controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let Some(rs) = self
            .rss
            .get(ns, &r.name)
            .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
        else {
            return;
        };
        if let Some(dr) = util::controller_ref(&rs.metadata)
            && let Some(d) = self.resolve(ns, dr)
            && strategy_type(&d) == "Recreate"
        {
            self.queue.add(key_of(d.as_ref()));
        }
    }

    // --- sync -------------------------------------------------------------

    async fn sync(&self, key: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(key);
        let Some(cached) = self.deployments.get(ns, name) else {
            return Ok(());
        };
        let mut d = (*cached).clone();
        let Some(spec) = d.spec.as_ref() else { return Ok(()) };
        if selects_everything(&spec.selector) {
            self.recorder.event(
                &d,
                WARNING,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            let observed = d.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if observed < d.metadata.generation.unwrap_or(0) {
                let mut s = d.status.clone().unwrap_or_default();
                s.observed_generation = d.metadata.generation;
                self.write_status(&mut d, s).await?;
            }
            return Ok(());
        }
        let mut rss = self.claim_replica_sets(&d).await?;

        if d.metadata.deletion_timestamp.is_some() {
            let new = self.get_all_and_sync_revision(&mut d, &mut rss, false).await?;
            return self.sync_deployment_status(&mut d, &rss, new).await;
        }
        self.check_paused_conditions(&mut d).await?;
        if is_paused(&d) {
            return self.sync_scaling(&mut d, &mut rss).await;
        }
        let new = self.get_all_and_sync_revision(&mut d, &mut rss, false).await?;
        let (new_rs, old) = split(&rss, new);
        let all: Vec<&ReplicaSet> = old.iter().copied().chain(new_rs).collect();
        if is_scaling_event(&d, &all) {
            return self.sync_scaling(&mut d, &mut rss).await;
        }
        match strategy_type(&d) {
            "Recreate" => self.rollout_recreate(key, &mut d, &mut rss).await,
            "RollingUpdate" => self.rollout_rolling(key, &mut d, &mut rss).await,
            t => anyhow::bail!("unexpected deployment strategy type: {t}"),
        }
    }

    /// The ReplicaSets this deployment controls, adopting matching orphans
    /// and releasing ones that stopped matching.
    async fn claim_replica_sets(&self, d: &Deployment) -> anyhow::Result<Vec<ReplicaSet>> {
        let ns = util::namespace(&d.metadata);
        let sel = util::selector(d.spec.as_ref().map(|s| &s.selector)).map_err(|e| anyhow::anyhow!(e))?;
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let mut adoptable: Option<Result<(), String>> = None;
        for rs in self.rss.list_namespace(ns) {
            let matches = util::matches(&sel, rs.metadata.labels.as_ref());
            match claim_action(&rs.metadata, &d.metadata, matches) {
                Claim::Owned => out.push((*rs).clone()),
                Claim::Ignore => {}
                Claim::Release => match release(&api, rs.as_ref(), util::uid(&d.metadata)).await {
                    Ok(_) => {}
                    Err(e) if util::is_not_found(&e) => {}
                    Err(e) => errors.push(format!("releasing {}: {}", key_of(rs.as_ref()), error_message(&e))),
                },
                Claim::Adopt => {
                    if adoptable.is_none() {
                        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
                        adoptable = Some(can_adopt(&deployments, d).await.map_err(|e| format!("{e:#}")));
                    }
                    if let Some(Err(e)) = &adoptable {
                        errors.push(format!("can't adopt ReplicaSet {}: {e}", key_of(rs.as_ref())));
                        continue;
                    }
                    match adopt(&api, rs.as_ref(), d).await {
                        Ok(adopted) => out.push(adopted),
                        Err(e) if util::is_not_found(&e) => {}
                        Err(e) => errors.push(format!("adopting {}: {}", key_of(rs.as_ref()), error_message(&e))),
                    }
                }
            }
        }
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("; "));
        }
        Ok(out)
    }

    /// Upstream's `getAllReplicaSetsAndSyncRevision`: finds (or, with
    /// `create`, makes) the new ReplicaSet, raises its revision above the
    /// old ones, and records the revision on the deployment. Returns the
    /// new ReplicaSet's index in `rss`.
    async fn get_all_and_sync_revision(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> anyhow::Result<Option<usize>> {
        let ns = util::namespace(&d.metadata).to_string();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let refs: Vec<&ReplicaSet> = rss.iter().collect();
        let new_uid = find_new_replica_set(d, &refs).and_then(|rs| rs.metadata.uid.clone());
        let new = rss
            .iter()
            .position(|rs| rs.metadata.uid.is_some() && rs.metadata.uid == new_uid);
        let (_, old) = split(rss, new);
        let new_revision = max_revision(&old) + 1;

        if let Some(i) = new {
            let mut copy = rss[i].clone();
            let annotations_changed = set_new_rs_annotations(d, &mut copy, new_revision, true);
            let min_ready = min_ready_seconds(d);
            let spec = copy.spec.get_or_insert_with(Default::default);
            if annotations_changed || spec.min_ready_seconds.unwrap_or(0) != min_ready {
                spec.min_ready_seconds = (min_ready != 0).then_some(min_ready);
                rss[i] = api
                    .replace(util::name(&copy.metadata), &PostParams::default(), &copy)
                    .await?;
                return Ok(Some(i));
            }
            let rev = annotation(&rss[i].metadata, REVISION).unwrap_or("").to_string();
            self.set_revision(d, &rev).await?;
            if progress_deadline(d).is_some() && d.status.as_ref().and_then(|s| condition(s, PROGRESSING)).is_none() {
                let mut s = d.status.clone().unwrap_or_default();
                let msg = format!("Found new replica set \"{}\"", util::name(&rss[i].metadata));
                set_condition(
                    &mut s,
                    new_condition(PROGRESSING, "True", FOUND_NEW_RS, msg, jiff::Timestamp::now()),
                );
                self.write_status(d, s).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }

        // A new ReplicaSet for the current template.
        let Some(spec) = d.spec.clone() else { return Ok(None) };
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let tm = template.metadata.get_or_insert_with(Default::default);
        tm.labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = tm.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let rs_name = format!("{}-{hash}", util::name(&d.metadata));
        let min_ready = min_ready_seconds(d);
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![util::new_controller_ref(d)]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: (min_ready != 0).then_some(min_ready),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all_replicas: i32 = old.iter().map(|rs| rs_replicas(rs)).sum();
        let replicas = new_rs_new_replicas(d, all_replicas, 0).map_err(|e| anyhow::anyhow!(e))?;
        if let Some(s) = new_rs.spec.as_mut() {
            s.replicas = Some(replicas);
        }
        set_new_rs_annotations(d, &mut new_rs, new_revision, false);

        let (created, already_existed) = match api.create(&PostParams::default(), &new_rs).await {
            Ok(rs) => (rs, false),
            Err(e) if util::is_already_exists(&e) => {
                let existing = match self.rss.get(&ns, &rs_name) {
                    Some(rs) => (*rs).clone(),
                    None => api.get(&rs_name).await?,
                };
                let ours = util::is_controlled_by(&existing.metadata, util::uid(&d.metadata))
                    && existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| equal_ignore_hash(&spec.template, t));
                if !ours {
                    // A hash collision: the next attempt hashes with a higher count.
                    let mut s = d.status.clone().unwrap_or_default();
                    s.collision_count = Some(collision_count.unwrap_or(0) + 1);
                    self.write_status(d, s).await?;
                    anyhow::bail!("replica set {ns}/{rs_name} already exists with another template (hash collision)");
                }
                (existing, true)
            }
            Err(e) if is_namespace_terminating(&e) => return Err(e.into()),
            Err(e) => {
                let msg = format!("Failed to create new replica set \"{rs_name}\": {}", error_message(&e));
                if progress_deadline(d).is_some() {
                    let mut s = d.status.clone().unwrap_or_default();
                    set_condition(
                        &mut s,
                        new_condition(
                            PROGRESSING,
                            "False",
                            FAILED_RS_CREATE,
                            msg.clone(),
                            jiff::Timestamp::now(),
                        ),
                    );
                    let _ = self.write_status(d, s).await;
                }
                self.recorder.event(d, WARNING, FAILED_RS_CREATE, msg);
                return Err(e.into());
            }
        };
        if !already_existed && replicas > 0 {
            self.recorder.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
            );
        }
        self.set_revision(d, &new_revision.to_string()).await?;
        if !already_existed && progress_deadline(d).is_some() {
            let mut s = d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{rs_name}\"");
            set_condition(
                &mut s,
                new_condition(PROGRESSING, "True", NEW_REPLICA_SET, msg, jiff::Timestamp::now()),
            );
            self.write_status(d, s).await?;
        }
        rss.push(created);
        Ok(Some(rss.len() - 1))
    }

    /// Records the new ReplicaSet's revision on the deployment. Upstream
    /// writes it with the status; our apiserver keeps metadata out of
    /// status writes, so it is a metadata patch (no new generation).
    async fn set_revision(&self, d: &mut Deployment, revision: &str) -> anyhow::Result<()> {
        if annotation(&d.metadata, REVISION) == Some(revision) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), util::namespace(&d.metadata));
        let patch =
            json!({"metadata": {"annotations": {REVISION: revision}, "resourceVersion": d.metadata.resource_version}});
        *d = api
            .patch(util::name(&d.metadata), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn write_status(&self, d: &mut Deployment, status: DeploymentStatus) -> anyhow::Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), util::namespace(&d.metadata));
        let mut obj = d.clone();
        obj.status = Some(normalize_status(&status));
        *d = api
            .replace_status(util::name(&d.metadata), &PostParams::default(), &obj)
            .await?;
        Ok(())
    }

    /// The Progressing condition says Unknown/DeploymentPaused while
    /// paused, so time paused never counts against the deadline.
    async fn check_paused_conditions(&self, d: &mut Deployment) -> anyhow::Result<()> {
        if progress_deadline(d).is_none() {
            return Ok(());
        }
        let cur = d.status.as_ref().and_then(|s| condition(s, PROGRESSING));
        let reason = cur.and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused_cond = reason.as_deref() == Some(PAUSED);
        let now = jiff::Timestamp::now();
        let c = match (is_paused(d), paused_cond) {
            (true, false) => new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), now),
            (false, true) => new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), now),
            _ => return Ok(()),
        };
        let mut s = d.status.clone().unwrap_or_default();
        set_condition(&mut s, c);
        self.write_status(d, s).await
    }

    /// Scaling events and paused deployments (upstream's `sync`).
    async fn sync_scaling(&self, d: &mut Deployment, rss: &mut Vec<ReplicaSet>) -> anyhow::Result<()> {
        let new = self.get_all_and_sync_revision(d, rss, false).await?;
        self.scale(d, rss, new).await?;
        if is_paused(d) {
            self.cleanup(d, rss, new).await?;
        }
        self.sync_deployment_status(d, rss, new).await
    }

    async fn scale(&self, d: &Deployment, rss: &mut [ReplicaSet], new: Option<usize>) -> anyhow::Result<()> {
        let (new_rs, old) = split(rss, new);
        let target = find_active_or_latest(new_rs, &old).and_then(|t| t.metadata.uid.clone());
        if let Some(uid) = target {
            let Some(i) = rss.iter().position(|rs| rs.metadata.uid.as_ref() == Some(&uid)) else {
                return Ok(());
            };
            if rs_replicas(&rss[i]) != replicas(d) {
                self.scale_and_record(d, rss, i, replicas(d)).await?;
            }
            return Ok(());
        }
        if is_saturated(d, new_rs) {
            for i in old_indices(rss, new) {
                if rs_replicas(&rss[i]) > 0 {
                    self.scale_and_record(d, rss, i, 0).await?;
                }
            }
            return Ok(());
        }
        if is_rolling_update(d) {
            let active: Vec<&ReplicaSet> = rss.iter().filter(|rs| rs_replicas(rs) > 0).collect();
            let (sizes, op) = proportional_scale(d, &active);
            for (name, size) in sizes {
                if let Some(i) = rss
                    .iter()
                    .position(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
                {
                    self.scale_replica_set(d, rss, i, size, op).await?;
                }
            }
        }
        Ok(())
    }

    async fn scale_and_record(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        i: usize,
        size: i32,
    ) -> anyhow::Result<bool> {
        let cur = rs_replicas(&rss[i]);
        if cur == size {
            return Ok(false);
        }
        self.scale_replica_set(d, rss, i, size, if cur < size { "up" } else { "down" })
            .await
    }

    /// Sets a ReplicaSet's size and replica annotations (one write, with
    /// the cached resourceVersion); an event when the size changed.
    async fn scale_replica_set(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        i: usize,
        size: i32,
        op: &str,
    ) -> anyhow::Result<bool> {
        let rs = &rss[i];
        let old_size = rs_replicas(rs);
        let desired = replicas(d);
        let max = desired + max_surge(d);
        let size_changed = old_size != size;
        if !size_changed && !replicas_annotations_need_update(rs, desired, max) {
            return Ok(false);
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(size);
        set_replicas_annotations(&mut copy, desired, max);
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), util::namespace(&rs.metadata));
        rss[i] = api
            .replace(util::name(&copy.metadata), &PostParams::default(), &copy)
            .await?;
        if size_changed {
            self.recorder.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                format!(
                    "Scaled {op} replica set {} from {old_size} to {size}",
                    util::name(&rss[i].metadata)
                ),
            );
        }
        Ok(size_changed)
    }

    async fn rollout_rolling(&self, key: &str, d: &mut Deployment, rss: &mut Vec<ReplicaSet>) -> anyhow::Result<()> {
        let Some(new) = self.get_all_and_sync_revision(d, rss, true).await? else {
            anyhow::bail!("no new replica set");
        };
        if self.reconcile_new_replica_set(d, rss, new).await? {
            return self.sync_rollout_status(key, d, rss, Some(new)).await;
        }
        if self.reconcile_old_replica_sets(d, rss, new).await? {
            return self.sync_rollout_status(key, d, rss, Some(new)).await;
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup(d, rss, Some(new)).await?;
        }
        self.sync_rollout_status(key, d, rss, Some(new)).await
    }

    async fn reconcile_new_replica_set(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        new: usize,
    ) -> anyhow::Result<bool> {
        let (cur, want) = (rs_replicas(&rss[new]), replicas(d));
        if cur == want {
            return Ok(false);
        }
        if cur > want {
            return self.scale_and_record(d, rss, new, want).await;
        }
        let all: i32 = rss.iter().map(rs_replicas).sum();
        let size = new_rs_new_replicas(d, all, cur).map_err(|e| anyhow::anyhow!(e))?;
        self.scale_and_record(d, rss, new, size).await
    }

    /// Scales old ReplicaSets down as far as availability allows:
    /// unhealthy pods first, then by what is available above the minimum.
    async fn reconcile_old_replica_sets(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        new: usize,
    ) -> anyhow::Result<bool> {
        let mut old: Vec<usize> = old_indices(rss, Some(new))
            .into_iter()
            .filter(|i| rs_replicas(&rss[*i]) > 0)
            .collect();
        if old.is_empty() {
            return Ok(false);
        }
        let all: i32 = rss.iter().map(rs_replicas).sum();
        let budget = max_scaled_down(d, all, rs_replicas(&rss[new]), rs_available(&rss[new]));
        if budget <= 0 {
            return Ok(false);
        }
        old.sort_by(|a, b| by_creation(&rss[*a], &rss[*b]));
        let mut total = 0;
        let (plan, refused) = cleanup_unhealthy(
            &old.iter()
                .map(|i| (rs_replicas(&rss[*i]), rs_available(&rss[*i])))
                .collect::<Vec<_>>(),
            budget,
        );
        for (&i, size) in old.iter().zip(plan) {
            let cur = rs_replicas(&rss[i]);
            if size != cur {
                if self.scale_and_record(d, rss, i, size).await.is_err() {
                    return Ok(false);
                }
                total += cur - size;
            }
        }
        if let Some(j) = refused {
            // Upstream's "got invalid request to scale down": its status
            // still counts pods of an earlier, larger size. Its update
            // event syncs the deployment again.
            let rs = &rss[old[j]];
            tracing::debug!(
                deployment = %key_of(d),
                replica_set = %util::name(&rs.metadata),
                replicas = rs_replicas(rs),
                available = rs_available(rs),
                "not cleaning up unhealthy replicas: more available than desired"
            );
            return Ok(false);
        }
        let available: i32 = old.iter().chain([&new]).map(|i| rs_available(&rss[*i])).sum();
        let plan = scale_down_old(
            &old.iter().map(|i| rs_replicas(&rss[*i])).collect::<Vec<_>>(),
            available,
            replicas(d) - max_unavailable(d),
        );
        for (&i, size) in old.iter().zip(plan) {
            let cur = rs_replicas(&rss[i]);
            if size != cur {
                if self.scale_and_record(d, rss, i, size).await.is_err() {
                    return Ok(false);
                }
                total += cur - size;
            }
        }
        Ok(total > 0)
    }

    async fn rollout_recreate(&self, key: &str, d: &mut Deployment, rss: &mut Vec<ReplicaSet>) -> anyhow::Result<()> {
        let mut new = self.get_all_and_sync_revision(d, rss, false).await?;
        let mut scaled_down = false;
        for i in old_indices(rss, new) {
            if rs_replicas(&rss[i]) > 0 && self.scale_and_record(d, rss, i, 0).await? {
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running(rss, new) {
            return self.sync_rollout_status(key, d, rss, new).await;
        }
        if new.is_none() {
            new = self.get_all_and_sync_revision(d, rss, true).await?;
        }
        if let Some(i) = new {
            self.scale_and_record(d, rss, i, replicas(d)).await?;
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup(d, rss, new).await?;
        }
        self.sync_rollout_status(key, d, rss, new).await
    }

    /// Whether pods of old ReplicaSets still exist and are not terminal
    /// (upstream's `oldPodsRunning`).
    fn old_pods_running(&self, rss: &[ReplicaSet], new: Option<usize>) -> bool {
        let (_, old) = split(rss, new);
        if old.iter().map(|rs| rs_status_replicas(rs)).sum::<i32>() > 0 {
            return true;
        }
        let old_uids: HashSet<&str> = old.iter().map(|rs| util::uid(&rs.metadata)).collect();
        let Some(first) = rss.first() else { return false };
        self.pods
            .list_namespace(util::namespace(&first.metadata))
            .iter()
            .filter(|p| util::controller_ref(&p.metadata).is_some_and(|r| old_uids.contains(r.uid.as_str())))
            .any(|p| !matches!(util::phase(p), "Failed" | "Succeeded"))
    }

    /// Deletes old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, d: &Deployment, rss: &[ReplicaSet], new: Option<usize>) -> anyhow::Result<()> {
        let (_, old) = split(rss, new);
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), util::namespace(&d.metadata));
        for name in cleanup_victims(d, &old) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Status without progress estimation (scaling, paused, deleting).
    async fn sync_deployment_status(
        &self,
        d: &mut Deployment,
        rss: &[ReplicaSet],
        new: Option<usize>,
    ) -> anyhow::Result<()> {
        let (new_rs, old) = split(rss, new);
        let all: Vec<&ReplicaSet> = old.iter().copied().chain(new_rs).collect();
        let s = calculate_status(d, &all, new_rs, jiff::Timestamp::now());
        if normalize_status(&d.status.clone().unwrap_or_default()) == normalize_status(&s) {
            return Ok(());
        }
        self.write_status(d, s).await
    }

    /// Status with the Progressing condition; an unchanged, unfinished
    /// rollout is queued again for its deadline.
    async fn sync_rollout_status(
        &self,
        key: &str,
        d: &mut Deployment,
        rss: &[ReplicaSet],
        new: Option<usize>,
    ) -> anyhow::Result<()> {
        let (new_rs, old) = split(rss, new);
        let all: Vec<&ReplicaSet> = old.iter().copied().chain(new_rs).collect();
        let now = jiff::Timestamp::now();
        let s = rollout_status(d, &all, new_rs, now);
        if normalize_status(&d.status.clone().unwrap_or_default()) == normalize_status(&s) {
            match progress_check_after(d, &s, now) {
                Some(after) if after.is_zero() => self.queue.add_rate_limited(key.to_string()),
                Some(after) => self.queue.add_after(key.to_string(), after),
                None => {}
            }
            return Ok(());
        }
        self.write_status(d, s).await
    }
}
