//! `statefulset-controller` (upstream's `pkg/controller/statefulset`):
//! pods with stable ordinal names, hostnames and claims, created and
//! removed in order (`OrderedReady`) or all at once (`Parallel`), rolled
//! to new revisions from the highest ordinal down to the partition, with
//! the set's ControllerRevision history.
//!
//! The decisions are [`plan::plan`]'s; this module reads the caches, keeps
//! the revisions, carries the plan out through the API and writes the
//! status.

mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::StartFn;
use super::history::{self, UpdateRevision};
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING};
use crate::informer::{Change, Informer, key, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};
use plan::{Action, Which};

pub const START: Option<StartFn> = Some(start);

struct Controller {
    client: kube::Client,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    revisions: Arc<Informer<ControllerRevision>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

/// The set controlling `pod`, by its controller reference.
fn owner_key(pod: &Pod) -> Option<String> {
    let r = util::controller_ref(&pod.metadata)?;
    (r.kind == "StatefulSet" && r.api_version.starts_with("apps/"))
        .then(|| key(util::namespace(&pod.metadata), &r.name))
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        sets: ctx.informers.get::<StatefulSet>(),
        pods: ctx.informers.get::<Pod>(),
        revisions: ctx.informers.get::<ControllerRevision>(),
        claims: ctx.informers.get::<PersistentVolumeClaim>(),
        queue: ctx.queue("statefulset"),
        recorder: ctx.recorder("statefulset-controller"),
    });
    let q = c.queue.clone();
    c.sets.add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let q = c.queue.clone();
    let sets = c.sets.clone();
    c.pods.add_handler(move |ch| {
        let pod = ch.object();
        let Some(k) = owner_key(pod) else { return };
        q.add(k.clone());
        // A pod that just became ready is available minReadySeconds later.
        if let Change::Update(old, new) = ch
            && !util::is_pod_ready(old)
            && util::is_pod_ready(new)
            && let Some(set) = sets.get_key(&k)
        {
            let mrs = plan::min_ready_seconds(&set);
            if mrs > 0 {
                q.add_after(k, Duration::from_secs(mrs as u64));
            }
        }
    });
    let q = c.queue.clone();
    c.revisions.add_handler(move |ch| {
        if let Change::Delete(r) = ch
            && let Some(o) = util::controller_ref(&r.metadata)
            && o.kind == "StatefulSet"
        {
            q.add(key(util::namespace(&r.metadata), &o.name));
        }
    });
    let workers = ctx.opts.concurrency.statefulset;
    tokio::spawn(async move {
        c.sets.wait_synced().await;
        c.pods.wait_synced().await;
        c.revisions.wait_synced().await;
        c.claims.wait_synced().await;
        let queue = c.queue.clone();
        run_workers(queue, workers, move |k| {
            let c = c.clone();
            async move { c.sync(&k).await }
        });
    });
    Ok(())
}

/// The set with its template replaced by a revision's (upstream's
/// `ApplyRevision`).
fn at_revision(set: &StatefulSet, rev: &ControllerRevision) -> (StatefulSet, PodTemplateSpec) {
    let mut s = set.clone();
    let t =
        history::template_of(rev).unwrap_or_else(|| set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default());
    if let Some(spec) = s.spec.as_mut() {
        spec.template = t.clone();
    }
    (s, t)
}

impl Controller {
    async fn sync(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(k);
        let Some(set) = self.sets.get(ns, name) else {
            return Ok(());
        };
        let Some(spec) = set.spec.as_ref() else { return Ok(()) };
        let selector = match util::selector(Some(&spec.selector)) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.event(
                    set.as_ref(),
                    WARNING,
                    "InvalidSelector",
                    format!("invalid selector: {e}"),
                );
                return Ok(());
            }
        };
        let uid = util::uid(&set.metadata).to_string();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| {
                util::is_controlled_by(&p.metadata, &uid)
                    && plan::is_member_of(&set, p)
                    && util::matches(&selector, p.metadata.labels.as_ref())
            })
            .collect();
        let mut revisions = history::owned_revisions(&self.revisions, ns, &uid);
        let (current, update, collision_count) = self.revisions_of(&set, &mut revisions).await?;
        let claims: BTreeMap<String, Arc<PersistentVolumeClaim>> = self
            .claims
            .list_namespace(ns)
            .into_iter()
            .map(|c| (util::name(&c.metadata).to_string(), c))
            .collect();
        let current_name = util::name(&current.metadata).to_string();
        let update_name = util::name(&update.metadata).to_string();
        let p = plan::plan(&plan::Input {
            set: &set,
            pods: &pods,
            current_revision: &current_name,
            update_revision: &update_name,
            claims: &claims,
            now: jiff::Timestamp::now(),
        });
        let result = self.execute(&set, &current, &update, &p.actions, &claims).await;

        let mut status = p.status;
        status.observed_generation = set.metadata.generation;
        status.current_revision = Some(current_name);
        status.update_revision = Some(update_name);
        status.collision_count = Some(collision_count);
        status.conditions = set.status.as_ref().and_then(|s| s.conditions.clone());
        plan::complete_rolling_update(&set, &mut status);
        if plan::status_changed(&set, &status) {
            self.write_status(&set, &status).await?;
        }
        self.truncate_history(&set, &pods, &revisions, &current, &update)
            .await?;
        result?;
        let mrs = plan::min_ready_seconds(&set);
        if mrs > 0 && status.available_replicas.unwrap_or(0) != plan::replicas(&set) {
            self.queue.add_after(k.to_string(), Duration::from_secs(mrs as u64));
        }
        Ok(())
    }

    /// The current and update revisions, creating or renumbering the
    /// update revision as needed (upstream's `getStatefulSetRevisions`).
    async fn revisions_of(
        &self,
        set: &StatefulSet,
        revisions: &mut Vec<Arc<ControllerRevision>>,
    ) -> anyhow::Result<(Arc<ControllerRevision>, Arc<ControllerRevision>, i32)> {
        let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let candidate = history::new_revision(
            util::new_controller_ref(set),
            util::namespace(&set.metadata),
            template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
            set.metadata.annotations.as_ref(),
            history::template_patch(&template),
            history::next_revision(revisions),
            collision_count,
        );
        let update: Arc<ControllerRevision> = match history::choose_update_revision(revisions, &candidate) {
            UpdateRevision::Latest => revisions[revisions.len() - 1].clone(),
            UpdateRevision::Bump { index, revision } => {
                let r = Arc::new(history::set_revision_number(&self.client, &revisions[index], revision).await?);
                revisions[index] = r.clone();
                history::sort(revisions);
                r
            }
            UpdateRevision::Create { .. } => {
                let r = Arc::new(
                    history::create(
                        &self.client,
                        util::name(&set.metadata),
                        &candidate,
                        &mut collision_count,
                    )
                    .await?,
                );
                if !revisions.iter().any(|x| x.metadata.name == r.metadata.name) {
                    revisions.push(r.clone());
                    history::sort(revisions);
                }
                r
            }
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = revisions
            .iter()
            .find(|r| current_name.is_some() && r.metadata.name == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision_count))
    }

    /// Carries out the plan's actions in order; the first failure stops it.
    async fn execute(
        &self,
        set: &StatefulSet,
        current: &ControllerRevision,
        update: &ControllerRevision,
        actions: &[Action],
        claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>,
    ) -> anyhow::Result<()> {
        let ns = util::namespace(&set.metadata);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let (update_set, _) = at_revision(set, update);
        for a in actions {
            match a {
                Action::Create { ordinal, which } => {
                    let rev = if *which == Which::Current { current } else { update };
                    let (tset, template) = at_revision(set, rev);
                    let pod = plan::new_pod(&tset, &template, *ordinal, util::name(&rev.metadata));
                    self.create_pod(set, &update_set, &pod, claims).await?;
                }
                Action::DeleteFinished { pod } | Action::DeleteCondemned { pod } | Action::DeleteForUpdate { pod } => {
                    let res = pods.delete(pod, &DeleteParams::default()).await;
                    match res {
                        Ok(_) => self.pod_event(set, "delete", pod, None),
                        Err(e) if util::is_not_found(&e) && matches!(a, Action::DeleteForUpdate { .. }) => {}
                        Err(e) => {
                            self.pod_event(set, "delete", pod, Some(&e.to_string()));
                            return Err(e.into());
                        }
                    }
                }
                Action::CreateMissingClaims { pod } => {
                    let Some(p) = self.pods.get(ns, pod) else { continue };
                    self.create_claims(set, &p, claims).await?;
                }
                Action::UpdateIdentity { pod } => {
                    let Some(p) = self.pods.get(ns, pod) else { continue };
                    let mut p = (*p).clone();
                    let n = util::name(&p.metadata).to_string();
                    let ord = plan::ordinal(&p);
                    let labels = p.metadata.labels.get_or_insert_with(Default::default);
                    labels.insert(plan::POD_NAME_LABEL.into(), n.clone());
                    labels.insert(plan::POD_INDEX_LABEL.into(), ord.to_string());
                    match pods.replace(&n, &PostParams::default(), &p).await {
                        Ok(_) => self.pod_event(set, "update", &n, None),
                        Err(e) if util::is_conflict_or_not_found(&e) => return Err(e.into()),
                        Err(e) => {
                            self.pod_event(set, "update", &n, Some(&e.to_string()));
                            return Err(e.into());
                        }
                    }
                }
                Action::FixClaims { pod } => {
                    let Some(p) = self.pods.get(ns, pod) else { continue };
                    self.fix_claims(&update_set, &p, claims).await?;
                }
            }
        }
        Ok(())
    }

    fn pod_event(&self, set: &StatefulSet, verb: &str, pod: &str, err: Option<&str>) {
        let title = title(verb);
        let set_name = util::name(&set.metadata);
        match err {
            None => self.recorder.event(
                set,
                NORMAL,
                &format!("Successful{title}"),
                format!("{verb} Pod {pod} in StatefulSet {set_name} successful"),
            ),
            Some(e) => self.recorder.event(
                set,
                WARNING,
                &format!("Failed{title}"),
                format!("{verb} Pod {pod} in StatefulSet {set_name} failed error: {e}"),
            ),
        }
    }

    fn claim_event(&self, set: &StatefulSet, verb: &str, claim: &str, pod: &str, err: Option<&str>) {
        let title = title(verb);
        let set_name = util::name(&set.metadata);
        match err {
            None => self.recorder.event(
                set,
                NORMAL,
                &format!("Successful{title}"),
                format!("{verb} Claim {claim} Pod {pod} in StatefulSet {set_name} success"),
            ),
            Some(e) => self.recorder.event(
                set,
                WARNING,
                &format!("Failed{title}"),
                format!("{verb} Claim {claim} for Pod {pod} in StatefulSet {set_name} failed error: {e}"),
            ),
        }
    }

    /// Upstream's `CreateStatefulPod`: claims first, then the pod, then the
    /// claims' owner references for the retention policy.
    async fn create_pod(
        &self,
        set: &StatefulSet,
        update_set: &StatefulSet,
        pod: &Pod,
        claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>,
    ) -> anyhow::Result<()> {
        let name = util::name(&pod.metadata).to_string();
        if let Err(e) = self.create_claims(set, pod, claims).await {
            self.pod_event(set, "create", &name, Some(&e.to_string()));
            return Err(e);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), util::namespace(&set.metadata));
        match api.create(&PostParams::default(), pod).await {
            Ok(created) => {
                self.pod_event(set, "create", &name, None);
                self.fix_claims(update_set, &created, claims).await
            }
            // The cache has not seen it yet: retry with back-off.
            Err(e) if util::is_already_exists(&e) => Err(e.into()),
            Err(e) => {
                self.pod_event(set, "create", &name, Some(&e.to_string()));
                Err(e.into())
            }
        }
    }

    /// Creates the pod's missing claims (upstream's
    /// `createPersistentVolumeClaims`); a claim being deleted is an error.
    async fn create_claims(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>,
    ) -> anyhow::Result<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), util::namespace(&set.metadata));
        let pod_name = util::name(&pod.metadata);
        let mut errs = Vec::new();
        for (_, claim) in plan::claims_for(set, plan::ordinal(pod)) {
            let cname = util::name(&claim.metadata).to_string();
            if let Some(c) = claims.get(&cname) {
                if c.metadata.deletion_timestamp.is_some() {
                    errs.push(format!("pvc {cname} is being deleted"));
                }
                continue;
            }
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.claim_event(set, "create", &cname, pod_name, None),
                Err(e) if util::is_already_exists(&e) => {}
                Err(e) => {
                    self.claim_event(set, "create", &cname, pod_name, Some(&e.to_string()));
                    errs.push(format!("failed to create PVC {cname}: {e}"));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", errs.join(", "))
        }
    }

    /// Sets the owner references of the pod's claims as the retention
    /// policy wants (upstream's `UpdatePodClaimForRetentionPolicy`).
    async fn fix_claims(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>,
    ) -> anyhow::Result<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), util::namespace(&set.metadata));
        let owners = plan::owners(set, pod);
        for (_, want) in plan::claims_for(set, plan::ordinal(pod)) {
            let cname = util::name(&want.metadata);
            let Some(claim) = claims.get(cname) else { continue };
            if owners.unexpected_controller(claim) {
                self.recorder.event(
                    set,
                    WARNING,
                    "ConflictingController",
                    format!("PersistentVolumeClaim {cname} has a conflicting OwnerReference that acts as a manging controller, the retention policy is ignored for this claim"),
                );
            }
            if owners.up_to_date(claim) {
                continue;
            }
            let refs = owners.desired_refs(claim);
            let patch = json!({"metadata": {
                "ownerReferences": refs,
                "resourceVersion": claim.metadata.resource_version,
            }});
            api.patch(cname, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(|e| anyhow::anyhow!("could not update claim {cname} for delete policy ownerRefs: {e}"))?;
        }
        Ok(())
    }

    async fn write_status(&self, set: &StatefulSet, status: &StatefulSetStatus) -> anyhow::Result<()> {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), util::namespace(&set.metadata));
        match api
            .patch_status(
                util::name(&set.metadata),
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

    /// Deletes the oldest revisions no pod uses beyond
    /// `revisionHistoryLimit` (upstream's `truncateHistory`).
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        revisions: &[Arc<ControllerRevision>],
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> anyhow::Result<()> {
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut live: Vec<&str> = vec![util::name(&current.metadata), util::name(&update.metadata)];
        live.extend(pods.iter().map(|p| plan::revision_of(p)));
        let old: Vec<&Arc<ControllerRevision>> = revisions
            .iter()
            .filter(|r| !live.contains(&util::name(&r.metadata)))
            .collect();
        if old.len() <= limit {
            return Ok(());
        }
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), util::namespace(&set.metadata));
        for r in &old[..old.len() - limit] {
            match api.delete(util::name(&r.metadata), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// `strings.Title` of a verb.
fn title(verb: &str) -> String {
    let mut c = verb.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
