//! `job-controller` (upstream's `pkg/controller/job`): runs a Job's pods to
//! `completions` successes, at most `parallelism` at a time, re-creating
//! failed ones after an exponential back-off until `backoffLimit`, and
//! accounts for every finished pod exactly once with the
//! `batch.kubernetes.io/job-tracking` finalizer: a finished pod is first
//! written into `status.uncountedTerminatedPods`, then its finalizer is
//! removed, then it moves into `succeeded`/`failed`. A Job that meets its
//! success criteria or its failure gets the interim `SuccessCriteriaMet` /
//! `FailureTarget` condition first and `Complete` / `Failed` once no pod is
//! left uncounted or terminating.
//!
//! The decisions without IO are in [`policy`] (failure and success
//! policies, back-off, removal order), [`indexes`] (Indexed Jobs) and the
//! plain functions at the end of this file; `sync_job` reads the caches,
//! decides, and writes through the API.

mod indexes;
mod policy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;

use self::indexes::{
    COMPLETION_INDEX_ANNOTATION, INDEX_FAILURE_COUNT_ANNOTATION, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION, Intervals,
    completion_index, count_annotation, first_pending_indexes,
};
use self::policy::{Action, BackoffRecord, active_pods_order, finished_time, match_pod_failure_policy};
use super::StartFn;
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";
/// Pod events are folded into one sync per second (upstream's
/// `syncJobBatchPeriod`).
const SYNC_BATCH_PERIOD: Duration = Duration::from_secs(1);
const MAX_UNCOUNTED_PODS: usize = 500;
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// Upstream's `names.MaxGeneratedNameLength`.
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// Pod UIDs whose finalizer removal was sent but not yet seen, per Job
/// (upstream's `uidTrackingExpectations`).
#[derive(Default)]
struct FinalizerExpectations {
    uids: Mutex<HashMap<String, HashSet<String>>>,
}

impl FinalizerExpectations {
    fn expect(&self, job: &str, uids: impl IntoIterator<Item = String>) {
        self.uids.lock().entry(job.to_string()).or_default().extend(uids);
    }
    fn observed(&self, job: &str, uid: &str) {
        let mut m = self.uids.lock();
        if let Some(s) = m.get_mut(job) {
            s.remove(uid);
            if s.is_empty() {
                m.remove(job);
            }
        }
    }
    fn expected(&self, job: &str) -> HashSet<String> {
        self.uids.lock().get(job).cloned().unwrap_or_default()
    }
    fn delete(&self, job: &str) {
        self.uids.lock().remove(job);
    }
}

struct Controller {
    client: kube::Client,
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<Queue>,
    orphans: Arc<Queue>,
    recorder: Recorder,
    expectations: Expectations,
    finalizers: FinalizerExpectations,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        jobs: ctx.informers.get::<Job>(),
        pods: ctx.informers.get::<Pod>(),
        queue: ctx.queue("job"),
        orphans: ctx.queue("job_orphan_pod"),
        recorder: ctx.recorder("job-controller"),
        expectations: Expectations::new(),
        finalizers: FinalizerExpectations::default(),
        backoff: Mutex::new(HashMap::new()),
    });
    let h = c.clone();
    c.jobs.add_handler(move |change| h.on_job(change));
    let h = c.clone();
    c.pods.add_handler(move |change| h.on_pod(change));
    let workers = ctx.opts.concurrency.job;
    tokio::spawn(async move {
        c.jobs.wait_synced().await;
        c.pods.wait_synced().await;
        let s = c.clone();
        run_workers(c.queue.clone(), workers, move |key| {
            let s = s.clone();
            async move { s.sync_job(&key).await }
        });
        let s = c.clone();
        run_workers(c.orphans.clone(), 1, move |key| {
            let s = s.clone();
            async move { s.sync_orphan_pod(&key).await }
        });
    });
    Ok(())
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|f| f == TRACKING_FINALIZER)
}

fn spec_of(job: &Job) -> k8s_openapi::api::batch::v1::JobSpec {
    job.spec.clone().unwrap_or_default()
}

/// A Job with a Complete or Failed condition that is True.
pub fn is_finished(job: &Job) -> bool {
    finished_condition_type(job).is_some()
}

/// "Complete" or "Failed", if the Job finished.
pub fn finished_condition_type(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn managed_externally(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_some_and(|m| m != JOB_CONTROLLER_NAME)
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn has_backoff_limit_per_index(job: &Job) -> bool {
    job.spec.as_ref().is_some_and(|s| s.backoff_limit_per_index.is_some())
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

/// Only Failed pods are replaced (terminating ones are waited for).
fn only_replace_failed_pods(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// A failed pod, or (unless only Failed pods are replaced) one being
/// deleted before it succeeded.
fn is_pod_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    match util::phase(pod) {
        "Failed" => true,
        "Succeeded" => false,
        _ => !only_replace_failed && pod.metadata.deletion_timestamp.is_some(),
    }
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(util::phase(pod), "Succeeded" | "Failed")
}

fn now() -> Timestamp {
    // Status times travel with second precision; keep ours the same.
    let t = Timestamp::now();
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

impl Controller {
    fn enqueue_now(&self, key: String) {
        self.queue.add(key);
    }

    fn enqueue_batched(&self, key: String) {
        self.queue.add_after(key, SYNC_BATCH_PERIOD);
    }

    fn resolve(&self, ns: &str, r: &OwnerReference) -> Option<Arc<Job>> {
        if r.kind != "Job" || !r.api_version.starts_with("batch/") {
            return None;
        }
        self.jobs.get(ns, &r.name).filter(|j| util::uid(&j.metadata) == r.uid)
    }

    fn jobs_selecting(&self, pod: &Pod) -> Vec<Arc<Job>> {
        self.jobs
            .list_namespace(util::namespace(&pod.metadata))
            .into_iter()
            .filter(|j| {
                let sel = util::selector(j.spec.as_ref().and_then(|s| s.selector.as_ref()))
                    .ok()
                    .flatten();
                util::matches(&sel, pod.metadata.labels.as_ref())
            })
            .collect()
    }

    fn on_job(&self, change: &Change<Job>) {
        match change {
            Change::Add(j) => self.enqueue_now(key_of(j.as_ref())),
            Change::Update(old, new) => {
                let k = key_of(new.as_ref());
                if old.metadata.generation == new.metadata.generation {
                    self.enqueue_batched(k.clone());
                } else {
                    self.enqueue_now(k.clone());
                }
                if is_finished(new) {
                    self.cleanup_pod_finalizers(new);
                }
                let start = new.status.as_ref().and_then(|s| s.start_time.as_ref());
                let ads = new.spec.as_ref().and_then(|s| s.active_deadline_seconds);
                let old_ads = old.spec.as_ref().and_then(|s| s.active_deadline_seconds);
                if let (Some(start), Some(ads)) = (start, ads)
                    && old_ads != Some(ads)
                {
                    let due = start.0 + jiff::SignedDuration::from_secs(ads);
                    self.queue.add_after(k, until(due));
                }
            }
            Change::Delete(j) => {
                self.enqueue_now(key_of(j.as_ref()));
                self.cleanup_pod_finalizers(j);
            }
        }
    }

    /// Pods of a finished or deleted Job lose their finalizer through the
    /// orphan queue.
    fn cleanup_pod_finalizers(&self, job: &Job) {
        let uid = util::uid(&job.metadata);
        for p in self.pods.list_namespace(util::namespace(&job.metadata)) {
            if has_finalizer(&p) && util::is_controlled_by(&p.metadata, uid) {
                self.orphans.add(key_of(p.as_ref()));
            }
        }
    }

    fn on_pod(&self, change: &Change<Pod>) {
        match change {
            Change::Add(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    self.on_pod_deleted(pod, false);
                    return;
                }
                if let Some(r) = util::controller_ref(&pod.metadata) {
                    if let Some(job) = self.resolve(util::namespace(&pod.metadata), r) {
                        let k = key_of(job.as_ref());
                        self.expectations.creation_observed(&k);
                        self.enqueue_batched(k);
                    }
                    return;
                }
                if has_finalizer(pod) {
                    self.orphans.add(key_of(pod.as_ref()));
                }
                for j in self.jobs_selecting(pod) {
                    self.enqueue_batched(key_of(j.as_ref()));
                }
            }
            Change::Update(old, cur) => {
                if old.metadata.resource_version == cur.metadata.resource_version {
                    return;
                }
                if cur.metadata.deletion_timestamp.is_some() {
                    self.on_pod_deleted(cur, false);
                    return;
                }
                let ns = util::namespace(&cur.metadata);
                let uid = util::uid(&cur.metadata);
                let finalizer_removed = !has_finalizer(cur);
                let cur_ref = util::controller_ref(&cur.metadata);
                let old_ref = util::controller_ref(&old.metadata);
                let ref_changed = cur_ref != old_ref;
                if ref_changed
                    && let Some(r) = old_ref
                    && let Some(job) = self.resolve(ns, r)
                {
                    let k = key_of(job.as_ref());
                    if finalizer_removed {
                        self.finalizers.observed(&k, uid);
                    }
                    self.enqueue_batched(k);
                }
                if let Some(r) = cur_ref {
                    if let Some(job) = self.resolve(ns, r) {
                        let k = key_of(job.as_ref());
                        if finalizer_removed {
                            self.finalizers.observed(&k, uid);
                        }
                        self.enqueue_batched(k);
                    }
                    return;
                }
                if has_finalizer(cur) {
                    self.orphans.add(key_of(cur.as_ref()));
                }
                if ref_changed || old.metadata.labels != cur.metadata.labels {
                    for j in self.jobs_selecting(cur) {
                        self.enqueue_batched(key_of(j.as_ref()));
                    }
                }
            }
            Change::Delete(pod) => self.on_pod_deleted(pod, true),
        }
    }

    fn on_pod_deleted(&self, pod: &Pod, fin: bool) {
        let with_finalizer = has_finalizer(pod);
        let Some(r) = util::controller_ref(&pod.metadata) else {
            if with_finalizer && !fin {
                self.orphans.add(key_of(pod));
            }
            return;
        };
        let job = self.resolve(util::namespace(&pod.metadata), r);
        let Some(job) = job.filter(|j| !is_finished(j)) else {
            if with_finalizer && !fin {
                self.orphans.add(key_of(pod));
            }
            return;
        };
        let k = key_of(job.as_ref());
        self.expectations.deletion_observed(&k, &key_of(pod));
        if fin || !with_finalizer {
            self.finalizers.observed(&k, util::uid(&pod.metadata));
        }
        self.enqueue_batched(k);
    }

    /// Removes the tracking finalizer from a pod no unfinished Job owns.
    async fn sync_orphan_pod(&self, pod_key: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(pod_key);
        let Some(pod) = self.pods.get(ns, name) else {
            return Ok(());
        };
        if let Some(r) = util::controller_ref(&pod.metadata) {
            if r.kind != "Job" || r.api_version != "batch/v1" {
                return Ok(());
            }
            if let Some(job) = self.resolve(ns, r)
                && (managed_externally(&job) || !is_finished(&job))
            {
                return Ok(());
            }
        }
        if !has_finalizer(&pod) {
            return Ok(());
        }
        match self.remove_finalizer(ns, name).await {
            Err(e) if !util::is_not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn remove_finalizer(&self, ns: &str, name: &str) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
        Api::<Pod>::namespaced(self.client.clone(), ns)
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map(|_| ())
    }

    /// The Job's pods from the cache: those it controls and still selects,
    /// plus orphans it selects, which it adopts (upstream's `ClaimPods`);
    /// controlled pods it no longer selects are released.
    async fn pods_for_job(&self, job: &Job) -> anyhow::Result<Vec<Arc<Pod>>> {
        let ns = util::namespace(&job.metadata);
        let uid = util::uid(&job.metadata);
        let sel = util::selector(job.spec.as_ref().and_then(|s| s.selector.as_ref()))
            .map_err(|e| anyhow::anyhow!("couldn't convert Job selector: {e}"))?;
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        let mut out = Vec::new();
        let mut fresh_checked = false;
        for p in self.pods.list_namespace(ns) {
            let selected = util::matches(&sel, p.metadata.labels.as_ref());
            match util::controller_ref(&p.metadata) {
                Some(r) if r.uid == uid => {
                    if selected {
                        out.push(p);
                    } else if job.metadata.deletion_timestamp.is_none() {
                        let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}],
                                                         "uid": util::uid(&p.metadata)}});
                        match api
                            .patch(
                                util::name(&p.metadata),
                                &PatchParams::default(),
                                &Patch::Strategic(patch),
                            )
                            .await
                        {
                            Err(e) if !util::is_not_found(&e) => return Err(e.into()),
                            _ => {}
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if !selected || job.metadata.deletion_timestamp.is_some() || p.metadata.deletion_timestamp.is_some()
                    {
                        continue;
                    }
                    if !fresh_checked {
                        // Recheck with a quorum read before adopting.
                        let fresh = Api::<Job>::namespaced(self.client.clone(), ns)
                            .get(util::name(&job.metadata))
                            .await?;
                        if util::uid(&fresh.metadata) != uid || fresh.metadata.deletion_timestamp.is_some() {
                            return Ok(out);
                        }
                        fresh_checked = true;
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [util::new_controller_ref(job)],
                        "uid": util::uid(&p.metadata),
                        "finalizers": [TRACKING_FINALIZER],
                    }});
                    match api
                        .patch(
                            util::name(&p.metadata),
                            &PatchParams::default(),
                            &Patch::Strategic(patch),
                        )
                        .await
                    {
                        Ok(_) => {
                            let mut adopted = (*p).clone();
                            adopted
                                .metadata
                                .owner_references
                                .get_or_insert_with(Vec::new)
                                .push(util::new_controller_ref(job));
                            if !has_finalizer(&adopted) {
                                adopted
                                    .metadata
                                    .finalizers
                                    .get_or_insert_with(Vec::new)
                                    .push(TRACKING_FINALIZER.into());
                            }
                            out.push(Arc::new(adopted));
                        }
                        Err(e) if util::is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(out)
    }

    async fn sync_job(&self, key: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(key);
        let Some(shared) = self.jobs.get(ns, name) else {
            self.expectations.delete(key);
            self.finalizers.delete(key);
            self.backoff.lock().remove(key);
            return Ok(());
        };
        if managed_externally(&shared) {
            return Ok(());
        }
        if is_finished(&shared) {
            self.backoff.lock().remove(key);
            return Ok(());
        }
        let mut job = (*shared).clone();
        let spec = spec_of(&job);
        if let Some(m) = spec.completion_mode.as_deref()
            && m != "NonIndexed"
            && m != "Indexed"
        {
            self.recorder.event(
                &job,
                WARNING,
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown",
            );
            return Ok(());
        }
        let status = job.status.get_or_insert_with(JobStatus::default);
        let uncounted = status
            .uncounted_terminated_pods
            .get_or_insert_with(UncountedTerminatedPods::default)
            .clone();

        // Expectations first: a pod that appears after this check waits
        // for the next sync.
        let satisfied = self.expectations.satisfied(key);
        let pods = self.pods_for_job(&job).await?;
        let mut active_pods: Vec<Arc<Pod>> = pods.iter().filter(|p| util::is_pod_active(p)).cloned().collect();
        let now = now();
        let mut s = SyncState {
            ready: active_pods.iter().filter(|p| util::is_pod_ready(p)).count() as i32,
            terminating: pods.iter().filter(|p| is_terminating(p)).count() as i32,
            uncounted_succeeded: uncounted.succeeded.clone().unwrap_or_default().into_iter().collect(),
            uncounted_failed: uncounted.failed.clone().unwrap_or_default().into_iter().collect(),
            expected_rm: self.finalizers.expected(key),
            finished: None,
            prev_succeeded_indexes: Intervals::default(),
            succeeded_indexes: Intervals::default(),
            failed_indexes: None,
            delayed_deletion: HashMap::new(),
            new_backoff: BackoffRecord::default(),
        };
        let mut active = active_pods.len() as i32;
        let completions = spec.completions;
        let (new_succeeded, new_failed) = new_finished_pods(&job, &pods, &s);
        let status = job.status.get_or_insert_with(JobStatus::default);
        let mut succeeded =
            status.succeeded.unwrap_or(0) + new_succeeded.len() as i32 + s.uncounted_succeeded.len() as i32;
        let counted_new_failed = new_failed
            .iter()
            .filter(|p| match_pod_failure_policy(spec.pod_failure_policy.as_ref(), p).count_failed)
            .count() as i32;
        let failed = status.failed.unwrap_or(0) + counted_new_failed + s.uncounted_failed.len() as i32;

        if status.start_time.is_none() && !spec.suspend.unwrap_or(false) {
            status.start_time = Some(Time(now));
        }
        s.new_backoff = self.backoff.lock().get(key).cloned().unwrap_or_default().next(
            new_succeeded.iter().map(|p| finished_time(p)).collect(),
            new_failed.iter().map(|p| finished_time(p)).collect(),
        );

        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let conditions = status.conditions.clone().unwrap_or_default();
        s.finished = find_condition(&conditions, "SuccessCriteriaMet")
            .filter(|c| c.status == "True")
            .cloned();
        if s.finished.is_none() {
            if let Some(ft) = find_condition(&conditions, "FailureTarget").filter(|c| c.status == "True") {
                s.finished = Some(new_condition("Failed", "True", reason(ft), message(ft), now));
            } else if let Some(msg) = fail_job_message(&job, &pods) {
                s.finished = Some(new_condition("FailureTarget", "True", "PodFailurePolicy", &msg, now));
            }
        }
        if s.finished.is_none() {
            if failed > backoff_limit || past_backoff_limit_on_failure(&job, &pods) {
                s.finished = Some(new_condition(
                    "FailureTarget",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else if past_active_deadline(&job, now) {
                s.finished = Some(new_condition(
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else if let (Some(ads), false) = (spec.active_deadline_seconds, suspended(&job))
                && let Some(start) = job.status.as_ref().and_then(|s| s.start_time.as_ref())
            {
                let due = start.0 + jiff::SignedDuration::from_secs(ads);
                self.queue.add_after(key.to_string(), until(due));
            }
        }

        if is_indexed(&job) {
            let completions = completions.unwrap_or(0);
            let prev = Intervals::parse(
                job.status
                    .as_ref()
                    .and_then(|s| s.completed_indexes.as_deref())
                    .unwrap_or(""),
                completions,
            );
            let mut new_ix: Vec<i32> = pods
                .iter()
                .filter(|p| util::phase(p) == "Succeeded" && has_finalizer(p))
                .filter_map(|p| completion_index(p.metadata.annotations.as_ref()))
                .filter(|ix| *ix < completions)
                .collect();
            new_ix.sort_unstable();
            new_ix.dedup();
            s.succeeded_indexes = prev.with_ordered_indexes(&new_ix);
            s.prev_succeeded_indexes = prev;
            succeeded = s.succeeded_indexes.total();
            if let Some(per_index) = spec.backoff_limit_per_index {
                let failed_ix = failed_indexes(&job, &pods, per_index, completions);
                if s.finished.is_none() {
                    if spec.max_failed_indexes.is_some_and(|m| failed_ix.total() > m) {
                        s.finished = Some(new_condition(
                            "FailureTarget",
                            "True",
                            "MaxFailedIndexesExceeded",
                            "Job has exceeded the specified maximal number of failed indexes",
                            now,
                        ));
                    } else if failed_ix.total() > 0 && failed_ix.total() + s.succeeded_indexes.total() >= completions {
                        s.finished = Some(new_condition(
                            "FailureTarget",
                            "True",
                            "FailedIndexes",
                            "Job has failed indexes",
                            now,
                        ));
                    }
                }
                s.failed_indexes = Some(failed_ix);
                s.delayed_deletion = pods_with_delayed_deletion(&job, &pods, &active_pods, &s, completions);
            }
            if s.finished.is_none()
                && let Some(msg) =
                    policy::match_success_policy(spec.success_policy.as_ref(), completions, &s.succeeded_indexes)
            {
                s.finished = Some(new_condition("SuccessCriteriaMet", "True", "SuccessPolicy", &msg, now));
            }
        }

        let mut manage_err: Option<anyhow::Error> = None;
        let mut suspend_changed = false;
        if s.finished.is_some() {
            // Delete the active pods, keeping their finalizers: they are
            // counted below once they are gone.
            let (deleted_ready, deleted, err) = self.delete_active_pods(&job, &active_pods).await;
            if deleted != active || !satisfied {
                s.finished = None;
            }
            active -= deleted;
            s.terminating += deleted;
            s.ready -= deleted_ready;
            manage_err = err;
        } else {
            let mut manage_called = false;
            if satisfied && job.metadata.deletion_timestamp.is_none() {
                match self
                    .manage_job(key, &job, &mut active_pods, &mut s, succeeded, &pods)
                    .await
                {
                    Ok(a) => active = a,
                    Err((a, e)) => {
                        active = a;
                        manage_err = Some(e);
                    }
                }
                manage_called = true;
            }
            let complete = match completions {
                None => succeeded > 0 && active == 0,
                Some(c) => succeeded >= c && active == 0,
            };
            if complete {
                s.finished = Some(new_condition("SuccessCriteriaMet", "True", "", "", now));
            } else if manage_called {
                let is_suspended = suspended(&job);
                let status = job.status.get_or_insert_with(JobStatus::default);
                let conds = status.conditions.get_or_insert_with(Vec::new);
                if is_suspended {
                    if ensure_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now) {
                        suspend_changed = true;
                        self.recorder.event(&job, NORMAL, "Suspended", "Job suspended");
                    }
                } else if ensure_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now) {
                    suspend_changed = true;
                    self.recorder.event(&job, NORMAL, "Resumed", "Job resumed");
                    // activeDeadlineSeconds counts continuous activity.
                    job.status.get_or_insert_with(JobStatus::default).start_time = Some(Time(now));
                }
            }
        }

        let status = job.status.get_or_insert_with(JobStatus::default);
        let needs_update = suspend_changed
            || active != status.active.unwrap_or(0)
            || Some(s.ready) != status.ready
            || Some(s.terminating) != status.terminating;
        status.active = nonzero(active);
        status.ready = Some(s.ready);
        status.terminating = Some(s.terminating);
        self.track_status_and_remove_finalizers(key, job, &pods, s, needs_update, now)
            .await
            .map_err(|e| e.context("tracking status"))?;
        match manage_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Issues DELETE for the active pods (finalizers kept). Returns the
    /// deleted ready pods, all deleted pods, and an error if any failed.
    async fn delete_active_pods(&self, job: &Job, pods: &[Arc<Pod>]) -> (i32, i32, Option<anyhow::Error>) {
        let api = Api::<Pod>::namespaced(self.client.clone(), util::namespace(&job.metadata));
        let results = futures::future::join_all(pods.iter().map(|p| {
            let api = api.clone();
            async move {
                let r = api.delete(util::name(&p.metadata), &DeleteParams::default()).await;
                (p, r)
            }
        }))
        .await;
        let (mut ready, mut deleted, mut err) = (0, 0, None);
        for (p, r) in results {
            match r {
                Ok(_) => {
                    self.recorder.event(
                        job,
                        NORMAL,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", util::name(&p.metadata)),
                    );
                    deleted += 1;
                }
                Err(e) if util::is_not_found(&e) => deleted += 1,
                Err(e) => {
                    self.recorder
                        .event(job, WARNING, "FailedDelete", format!("Error deleting: {e}"));
                    err = Some(e.into());
                }
            }
            if util::is_pod_ready(p) {
                ready += 1;
            }
        }
        (ready, deleted, err)
    }

    /// Removes the finalizer then deletes each pod (pods no longer needed:
    /// their end is not counted). Returns (ready deleted, deleted, error).
    async fn delete_job_pods(&self, key: &str, job: &Job, pods: &[Arc<Pod>]) -> (i32, i32, Option<anyhow::Error>) {
        let ns = util::namespace(&job.metadata);
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        let results = futures::future::join_all(pods.iter().map(|p| {
            let api = api.clone();
            async move {
                let name = util::name(&p.metadata);
                if has_finalizer(p)
                    && let Err(e) = self.remove_finalizer(ns, name).await
                {
                    return (p, Err(e));
                }
                (p, api.delete(name, &DeleteParams::default()).await.map(|_| ()))
            }
        }))
        .await;
        let (mut ready, mut deleted, mut err) = (0, 0, None);
        for (p, r) in results {
            match r {
                Ok(()) => {
                    self.recorder.event(
                        job,
                        NORMAL,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", util::name(&p.metadata)),
                    );
                    deleted += 1;
                }
                Err(e) => {
                    self.expectations.deletion_observed(key, &key_of(p.as_ref()));
                    if util::is_not_found(&e) {
                        deleted += 1;
                    } else {
                        self.recorder
                            .event(job, WARNING, "FailedDelete", format!("Error deleting: {e}"));
                        err = Some(e.into());
                    }
                }
            }
            if util::is_pod_ready(p) {
                ready += 1;
            }
        }
        (ready, deleted, err)
    }

    /// Upstream's `manageJob`: deletes pods of a suspended Job or pods over
    /// the wanted count, else creates missing ones once the back-off allows.
    /// Returns the new active count (with the error, if any).
    async fn manage_job(
        &self,
        key: &str,
        job: &Job,
        active_pods: &mut [Arc<Pod>],
        s: &mut SyncState,
        succeeded: i32,
        pods: &[Arc<Pod>],
    ) -> Result<i32, (i32, anyhow::Error)> {
        let spec = spec_of(job);
        let mut active = active_pods.len() as i32;
        let completions = spec.completions;
        if suspended(job) {
            let rm = pods_for_removal(job, active_pods, active_pods.len());
            self.expectations
                .expect_deletions(key, rm.iter().map(|p| key_of(p.as_ref())).collect());
            let (ready, removed, err) = self.delete_job_pods(key, job, &rm).await;
            active -= removed;
            s.terminating += removed;
            s.ready -= ready;
            return err.map_or(Ok(active), |e| Err((active, e)));
        }
        let want = want_active(completions, spec.parallelism.unwrap_or(1), succeeded, active);
        let terminating = if only_replace_failed_pods(job) {
            s.terminating
        } else {
            0
        };
        let rm_at_least = (active - want).max(0) as usize;
        let mut rm = pods_for_removal(job, active_pods, rm_at_least);
        rm.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !rm.is_empty() {
            self.expectations
                .expect_deletions(key, rm.iter().map(|p| key_of(p.as_ref())).collect());
            let (ready, removed, err) = self.delete_job_pods(key, job, &rm).await;
            active -= removed;
            s.terminating += removed;
            s.ready -= ready;
            return err.map_or(Ok(active), |e| Err((active, e)));
        }
        let diff = want - terminating - active;
        if diff <= 0 {
            return Ok(active);
        }
        let now = now();
        if !has_backoff_limit_per_index(job) {
            let remaining = s.new_backoff.remaining(now);
            if !remaining.is_zero() {
                self.queue.add_after(key.to_string(), remaining.max(SYNC_BATCH_PERIOD));
                // Upstream reports 0 active here; the pods still run.
                return Ok(active);
            }
        }
        let mut diff = (diff as usize).min(MAX_POD_CREATE_DELETE_PER_SYNC);
        let mut indexes: Vec<i32> = Vec::new();
        if is_indexed(job) {
            let completions = completions.unwrap_or(0);
            let mut taken: Vec<i32> = active_pods
                .iter()
                .filter_map(|p| completion_index(p.metadata.annotations.as_ref()))
                .collect();
            if only_replace_failed_pods(job) {
                taken.extend(
                    pods.iter()
                        .filter(|p| is_terminating(p))
                        .filter_map(|p| completion_index(p.metadata.annotations.as_ref())),
                );
            }
            taken.sort_unstable();
            taken.dedup();
            let mut non_pending = s.succeeded_indexes.with_ordered_indexes(&taken);
            if let Some(f) = &s.failed_indexes {
                non_pending = non_pending.merge(f);
            }
            indexes = first_pending_indexes(&non_pending, diff, completions);
            if has_backoff_limit_per_index(job) {
                let mut now_ix = Vec::new();
                let mut min_wait: Option<Duration> = None;
                for ix in indexes {
                    let wait = match s.delayed_deletion.get(&ix) {
                        None => Duration::ZERO,
                        Some(last) => policy::remaining_for_failures(
                            index_absolute_failures(last) + 1,
                            Some(finished_time(last)),
                            now,
                        ),
                    };
                    if wait.is_zero() {
                        now_ix.push(ix);
                    } else {
                        min_wait = Some(min_wait.map_or(wait, |m| m.min(wait)));
                    }
                }
                if now_ix.is_empty()
                    && let Some(w) = min_wait
                {
                    self.queue.add_after(key.to_string(), w.max(SYNC_BATCH_PERIOD));
                    return Ok(active);
                }
                indexes = now_ix;
            }
            diff = indexes.len();
        }
        if diff == 0 {
            return Ok(active);
        }
        self.expectations.expect_creations(key, diff);
        active += diff as i32;
        let api = Api::<Pod>::namespaced(self.client.clone(), util::namespace(&job.metadata));
        let mut remaining: Vec<Option<i32>> = if indexes.is_empty() {
            vec![None; diff]
        } else {
            indexes.into_iter().map(Some).collect()
        };
        // Slow start: batches of 1, 2, 4… stop at the first failing batch.
        let mut batch = 1usize;
        let mut first_err: Option<anyhow::Error> = None;
        while !remaining.is_empty() {
            let this: Vec<Option<i32>> = remaining.drain(..batch.min(remaining.len())).collect();
            let pods_to_create: Vec<Pod> = this
                .iter()
                .map(|ix| {
                    let replaced = ix.and_then(|i| s.delayed_deletion.get(&i)).map(|p| p.as_ref());
                    pod_from_template(job, *ix, replaced)
                })
                .collect();
            let results = futures::future::join_all(pods_to_create.iter().map(|p| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), p).await }
            }))
            .await;
            let mut batch_failed = false;
            for r in results {
                match r {
                    Ok(p) => self.recorder.event(
                        job,
                        NORMAL,
                        "SuccessfulCreate",
                        format!("Created pod: {}", util::name(&p.metadata)),
                    ),
                    // A namespace being deleted refuses new pods: nothing to do.
                    Err(kube::Error::Api(st)) if st.code == 403 && st.message.contains("terminat") => {}
                    Err(e) => {
                        self.recorder
                            .event(job, WARNING, "FailedCreate", format!("Error creating: {e}"));
                        self.expectations.creation_observed(key);
                        active -= 1;
                        batch_failed = true;
                        first_err.get_or_insert(e.into());
                    }
                }
            }
            if batch_failed {
                for _ in 0..remaining.len() {
                    self.expectations.creation_observed(key);
                }
                active -= remaining.len() as i32;
                break;
            }
            batch *= 2;
        }
        first_err.map_or(Ok(active), |e| Err((active, e)))
    }

    /// Upstream's `trackJobStatusAndRemoveFinalizers`: finished pods go
    /// into `uncountedTerminatedPods` (flushed), lose their finalizer, then
    /// move into the counters (flushed again, with the terminal condition
    /// once nothing is uncounted or terminating).
    async fn track_status_and_remove_finalizers(
        &self,
        key: &str,
        mut job: Job,
        pods: &[Arc<Pod>],
        mut s: SyncState,
        mut needs_flush: bool,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let indexed = is_indexed(&job);
        let spec = spec_of(&job);
        let completions = spec.completions.unwrap_or(0);
        let only_failed = only_replace_failed_pods(&job);
        let mut pods: Vec<Arc<Pod>> = pods.to_vec();
        if indexed {
            pods.sort_by_key(|p| completion_index(p.metadata.annotations.as_ref()).unwrap_or(-1));
        }
        let mut with_finalizer: HashSet<String> = pods
            .iter()
            .filter(|p| has_finalizer(p) && !s.expected_rm.contains(util::uid(&p.metadata)))
            .map(|p| util::uid(&p.metadata).to_string())
            .collect();
        let status = job.status.get_or_insert_with(JobStatus::default);
        if clean_uncounted(status, &with_finalizer) {
            needs_flush = true;
        }
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut new_succeeded_ix: Vec<i32> = Vec::new();
        let mut to_remove: Vec<Arc<Pod>> = Vec::new();
        let mut reached_max = false;
        let finished_is_failure = s
            .finished
            .as_ref()
            .is_some_and(|c| !(c.type_ == "SuccessCriteriaMet" && c.status == "True"));
        for pod in &pods {
            let uid = util::uid(&pod.metadata).to_string();
            if !has_finalizer(pod) || s.expected_rm.contains(&uid) {
                continue;
            }
            let failed = is_pod_failed(pod, only_failed);
            if !can_remove_finalizer(&job, &s, pod, failed) {
                continue;
            }
            to_remove.push(pod.clone());
            if util::phase(pod) == "Succeeded" && !s.uncounted_failed.contains(&uid) {
                if indexed {
                    if let Some(ix) = completion_index(pod.metadata.annotations.as_ref())
                        && ix < completions
                        && !s.prev_succeeded_indexes.has(ix)
                    {
                        new_succeeded_ix.push(ix);
                        needs_flush = true;
                    }
                } else if !s.uncounted_succeeded.contains(&uid) {
                    needs_flush = true;
                    uncounted.succeeded.get_or_insert_with(Vec::new).push(uid.clone());
                }
            } else if failed || finished_is_failure {
                // When the Job failed, every unfinished pod counts as failed.
                let ix = completion_index(pod.metadata.annotations.as_ref());
                if !s.uncounted_failed.contains(&uid) && (!indexed || ix.is_some_and(|i| i < completions)) {
                    let counted = match_pod_failure_policy(spec.pod_failure_policy.as_ref(), pod).count_failed;
                    if counted {
                        needs_flush = true;
                        uncounted.failed.get_or_insert_with(Vec::new).push(uid.clone());
                    }
                }
            }
            let n = new_succeeded_ix.len()
                + uncounted.succeeded.as_ref().map_or(0, Vec::len)
                + uncounted.failed.as_ref().map_or(0, Vec::len);
            if n >= MAX_UNCOUNTED_PODS {
                reached_max = true;
                break;
            }
        }
        let status = job.status.get_or_insert_with(JobStatus::default);
        status.uncounted_terminated_pods = Some(uncounted);
        if indexed {
            new_succeeded_ix.sort_unstable();
            new_succeeded_ix.dedup();
            s.succeeded_indexes = s.succeeded_indexes.with_ordered_indexes(&new_succeeded_ix);
            let text = s.succeeded_indexes.to_string();
            if status.completed_indexes.as_deref().unwrap_or("") != text {
                needs_flush = true;
            }
            status.succeeded = nonzero(s.succeeded_indexes.total());
            status.completed_indexes = Some(text);
            let failed_text = s.failed_indexes.as_ref().map(|f| f.to_string());
            if status.failed_indexes != failed_text {
                status.failed_indexes = failed_text;
                needs_flush = true;
            }
        }
        if let Some(c) = s.finished.clone()
            && c.type_ == "FailureTarget"
        {
            // The interim condition is written before finalizers go.
            status.conditions.get_or_insert_with(Vec::new).push(c.clone());
            needs_flush = true;
            s.finished = Some(new_condition("Failed", "True", reason(&c), message(&c), now));
        }
        if let Some(c) = s.finished.clone()
            && c.type_ == "SuccessCriteriaMet"
        {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            if find_condition(conds, "SuccessCriteriaMet").is_none_or(|x| x.status != "True") {
                conds.push(c.clone());
                needs_flush = true;
            }
            s.finished = Some(new_condition("Complete", "True", reason(&c), message(&c), now));
        }

        // Flush, then remove finalizers, then count what lost its finalizer.
        let api = Api::<Job>::namespaced(self.client.clone(), util::namespace(&job.metadata));
        if needs_flush {
            job = self
                .update_status(&api, &job)
                .await
                .map_err(|e| anyhow::Error::from(e).context("adding uncounted pods to status"))?;
            self.backoff.lock().insert(key.to_string(), s.new_backoff.clone());
            needs_flush = false;
        }
        let mut rm_err: Option<anyhow::Error> = None;
        if !to_remove.is_empty() {
            self.finalizers
                .expect(key, to_remove.iter().map(|p| util::uid(&p.metadata).to_string()));
            let results = futures::future::join_all(to_remove.iter().map(|p| async move {
                (
                    p,
                    self.remove_finalizer(util::namespace(&p.metadata), util::name(&p.metadata))
                        .await,
                )
            }))
            .await;
            for (p, r) in results {
                let uid = util::uid(&p.metadata);
                match r {
                    Ok(()) => {
                        with_finalizer.remove(uid);
                    }
                    Err(e) => {
                        self.finalizers.observed(key, uid);
                        if util::is_not_found(&e) {
                            with_finalizer.remove(uid);
                        } else {
                            rm_err.get_or_insert(anyhow::Error::from(e).context("removing tracking finalizer"));
                        }
                    }
                }
            }
        }
        let status = job.status.get_or_insert_with(JobStatus::default);
        if clean_uncounted(status, &with_finalizer) {
            needs_flush = true;
        }
        if let Some(e) = rm_err {
            if needs_flush {
                self.update_status(&api, &job)
                    .await
                    .map_err(|e| anyhow::Error::from(e).context("removing uncounted pods from status"))?;
            }
            return Err(e);
        }
        let finished = !reached_max && enact_finished(&mut job, s.finished.as_ref(), s.terminating, now);
        if finished {
            needs_flush = true;
        }
        if needs_flush {
            let updated = self
                .update_status(&api, &job)
                .await
                .map_err(|e| anyhow::Error::from(e).context("removing uncounted pods from status"))?;
            if finished && let Some(c) = &s.finished {
                self.record_finished(&updated, c);
            }
        }
        Ok(())
    }

    async fn update_status(&self, api: &Api<Job>, job: &Job) -> Result<Job, kube::Error> {
        api.replace_status(util::name(&job.metadata), &PostParams::default(), job)
            .await
    }

    fn record_finished(&self, job: &Job, c: &JobCondition) {
        if c.type_ == "Complete" {
            let spec = spec_of(job);
            let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
            if spec.completions.is_some_and(|n| succeeded > n) {
                self.recorder.event(
                    job,
                    WARNING,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                );
            }
            self.recorder.event(job, NORMAL, "Completed", "Job completed");
        } else {
            self.recorder.event(job, WARNING, reason(c), message(c));
        }
    }
}

/// What one sync knows besides the Job and its pods.
struct SyncState {
    ready: i32,
    terminating: i32,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    /// Pods whose finalizer removal is in flight.
    expected_rm: HashSet<String>,
    /// The condition the Job will finish with (interim or final).
    finished: Option<JobCondition>,
    prev_succeeded_indexes: Intervals,
    succeeded_indexes: Intervals,
    failed_indexes: Option<Intervals>,
    /// Per index, the failed pod kept until its replacement exists (it
    /// carries the index's failure count).
    delayed_deletion: HashMap<i32, Arc<Pod>>,
    new_backoff: BackoffRecord,
}

fn until(t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn reason(c: &JobCondition) -> &str {
    c.reason.as_deref().unwrap_or("")
}

fn message(c: &JobCondition) -> &str {
    c.message.as_deref().unwrap_or("")
}

pub fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn find_condition<'a>(list: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    list.iter().find(|c| c.type_ == type_)
}

/// Upstream's `ensureJobConditionStatus`: sets the condition, never adding
/// a False one that was absent. Returns whether the list changed.
fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason_: &str,
    message_: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status || reason(c) != reason_ || message(c) != message_ {
            *c = new_condition(type_, status, reason_, message_, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        list.push(new_condition(type_, status, reason_, message_, now));
        return true;
    }
    false
}

/// How many pods should be active (upstream's `wantActive`).
pub fn want_active(completions: Option<i32>, parallelism: i32, succeeded: i32, active: i32) -> i32 {
    match completions {
        // Without completions, once one pod succeeded the rest just finish.
        None if succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism.max(0)),
    }
}

/// Succeeded and failed pods not yet accounted for in the status.
fn new_finished_pods(job: &Job, pods: &[Arc<Pod>], s: &SyncState) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let only_failed = only_replace_failed_pods(job);
    let completions = spec_of(job).completions.unwrap_or(0);
    let valid = |p: &Pod, uncounted: &HashSet<String>| {
        let uid = util::uid(&p.metadata);
        if !has_finalizer(p) || uncounted.contains(uid) || s.expected_rm.contains(uid) {
            return false;
        }
        !is_indexed(job) || completion_index(p.metadata.annotations.as_ref()).is_some_and(|i| i < completions)
    };
    let succeeded = pods
        .iter()
        .filter(|p| valid(p, &s.uncounted_succeeded) && util::phase(p) == "Succeeded")
        .cloned()
        .collect();
    let failed = pods
        .iter()
        .filter(|p| valid(p, &s.uncounted_failed) && is_pod_failed(p, only_failed))
        .cloned()
        .collect();
    (succeeded, failed)
}

/// The FailJob message of the first failed pod a FailJob rule matches.
fn fail_job_message(job: &Job, pods: &[Arc<Pod>]) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    let only_failed = only_replace_failed_pods(job);
    pods.iter()
        .filter(|p| is_pod_failed(p, only_failed))
        .find_map(|p| match_pod_failure_policy(Some(policy), p).fail_job_message)
}

/// For `restartPolicy: OnFailure`, container restarts of running pods
/// count against backoffLimit.
fn past_backoff_limit_on_failure(job: &Job, pods: &[Arc<Pod>]) -> bool {
    let spec = spec_of(job);
    if spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(util::phase(p), "Running" | "Pending"))
        .map(|p| {
            let st = p.status.as_ref();
            let init: i32 = st
                .and_then(|s| s.init_container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            init + util::restarts(p)
        })
        .sum();
    let limit = spec.backoff_limit.unwrap_or(6);
    if limit == 0 { restarts > 0 } else { restarts >= limit }
}

fn past_active_deadline(job: &Job, now: Timestamp) -> bool {
    let (Some(ads), Some(start)) = (
        job.spec.as_ref().and_then(|s| s.active_deadline_seconds),
        job.status.as_ref().and_then(|s| s.start_time.as_ref()),
    ) else {
        return false;
    };
    !suspended(job) && now.duration_since(start.0) >= jiff::SignedDuration::from_secs(ads)
}

fn index_absolute_failures(pod: &Pod) -> i32 {
    let a = pod.metadata.annotations.as_ref();
    count_annotation(a, INDEX_FAILURE_COUNT_ANNOTATION)
        .saturating_add(count_annotation(a, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION))
}

/// Indexes that failed for good: `status.failedIndexes` plus indexes whose
/// new failed pod used up backoffLimitPerIndex or matched FailIndex.
fn failed_indexes(job: &Job, pods: &[Arc<Pod>], per_index: i32, completions: i32) -> Intervals {
    let prev = Intervals::parse(
        job.status
            .as_ref()
            .and_then(|s| s.failed_indexes.as_deref())
            .unwrap_or(""),
        completions,
    );
    let policy = job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref());
    let only_failed = only_replace_failed_pods(job);
    let mut new: Vec<i32> = pods
        .iter()
        .filter(|p| has_finalizer(p))
        .filter_map(|p| {
            let ix = completion_index(p.metadata.annotations.as_ref()).filter(|i| *i < completions)?;
            if !is_pod_failed(p, only_failed) {
                return None;
            }
            let m = match_pod_failure_policy(policy, p);
            if m.action == Some(Action::FailIndex) {
                return Some(ix);
            }
            let count = count_annotation(p.metadata.annotations.as_ref(), INDEX_FAILURE_COUNT_ANNOTATION);
            (m.count_failed && count >= per_index).then_some(ix)
        })
        .collect();
    new.sort_unstable();
    new.dedup();
    prev.with_ordered_indexes(&new)
}

/// Per index without an active pod and not finished, the latest failed pod
/// (kept until its replacement carries its failure count).
fn pods_with_delayed_deletion(
    job: &Job,
    pods: &[Arc<Pod>],
    active: &[Arc<Pod>],
    s: &SyncState,
    completions: i32,
) -> HashMap<i32, Arc<Pod>> {
    let only_failed = only_replace_failed_pods(job);
    let active_ix: HashSet<i32> = active
        .iter()
        .filter_map(|p| completion_index(p.metadata.annotations.as_ref()))
        .collect();
    let mut out: HashMap<i32, Arc<Pod>> = HashMap::new();
    for p in pods {
        let uid = util::uid(&p.metadata);
        if !has_finalizer(p) || s.expected_rm.contains(uid) || !is_pod_failed(p, only_failed) {
            continue;
        }
        let Some(ix) = completion_index(p.metadata.annotations.as_ref()).filter(|i| *i < completions) else {
            continue;
        };
        if s.succeeded_indexes.has(ix)
            || s.failed_indexes.as_ref().is_some_and(|f| f.has(ix))
            || active_ix.contains(&ix)
        {
            continue;
        }
        match out.get(&ix) {
            Some(last)
                if !(index_absolute_failures(last) <= index_absolute_failures(p)
                    && finished_time(p) >= finished_time(last)) => {}
            _ => {
                out.insert(ix, p.clone());
            }
        }
    }
    out
}

/// Whether a counted pod may lose its finalizer now.
fn can_remove_finalizer(job: &Job, s: &SyncState, pod: &Pod, considered_failed: bool) -> bool {
    if job.metadata.deletion_timestamp.is_some() || s.finished.is_some() || util::phase(pod) == "Succeeded" {
        return true;
    }
    if !considered_failed {
        return false;
    }
    if has_backoff_limit_per_index(job)
        && let Some(ix) = completion_index(pod.metadata.annotations.as_ref())
        && s.delayed_deletion
            .get(&ix)
            .is_some_and(|p| p.metadata.uid == pod.metadata.uid)
    {
        return false;
    }
    true
}

/// Moves uncounted UIDs whose pods lost their finalizer into the counters.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let u = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let mut changed = false;
    let succeeded = u.succeeded.take().unwrap_or_default();
    let (keep, counted): (Vec<String>, Vec<String>) = succeeded.into_iter().partition(|x| with_finalizer.contains(x));
    if !counted.is_empty() {
        changed = true;
    }
    u.succeeded = (!keep.is_empty()).then_some(keep);
    let n_succeeded = counted.len() as i32;
    let failed = u.failed.take().unwrap_or_default();
    let (keep, counted): (Vec<String>, Vec<String>) = failed.into_iter().partition(|x| with_finalizer.contains(x));
    if !counted.is_empty() {
        changed = true;
    }
    u.failed = (!keep.is_empty()).then_some(keep);
    let n_failed = counted.len() as i32;
    if n_succeeded > 0 {
        status.succeeded = nonzero(status.succeeded.unwrap_or(0) + n_succeeded);
    }
    if n_failed > 0 {
        status.failed = nonzero(status.failed.unwrap_or(0) + n_failed);
    }
    changed
}

/// Sets the final condition once no pod is uncounted or terminating.
fn enact_finished(job: &mut Job, finished: Option<&JobCondition>, terminating: i32, now: Timestamp) -> bool {
    let Some(c) = finished else { return false };
    let status = job.status.get_or_insert_with(JobStatus::default);
    if let Some(u) = &status.uncounted_terminated_pods
        && (u.succeeded.as_ref().is_some_and(|v| !v.is_empty()) || u.failed.as_ref().is_some_and(|v| !v.is_empty()))
    {
        return false;
    }
    if terminating > 0 {
        return false;
    }
    let conds = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(conds, &c.type_, &c.status, reason(c), message(c), now);
    if c.type_ == "Complete" {
        status.completion_time = c.last_transition_time.clone().or(Some(Time(now)));
    }
    true
}

/// The active pods to delete: for Indexed Jobs, duplicates and pods without
/// a valid index first; then by `active_pods_order` until `rm_at_least`.
fn pods_for_removal(job: &Job, pods: &[Arc<Pod>], rm_at_least: usize) -> Vec<Arc<Pod>> {
    let mut rm: Vec<Arc<Pod>> = Vec::new();
    let mut left: Vec<Arc<Pod>> = Vec::new();
    if is_indexed(job) {
        let completions = spec_of(job).completions.unwrap_or(0);
        let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
        for p in pods {
            match completion_index(p.metadata.annotations.as_ref()) {
                Some(ix) if ix < completions => by_index.entry(ix).or_default().push(p.clone()),
                _ => rm.push(p.clone()),
            }
        }
        for (_, mut same) in by_index {
            same.sort_by(|a, b| active_pods_order(a, b));
            let keep = same.pop();
            rm.extend(same);
            left.extend(keep);
        }
    } else {
        left = pods.to_vec();
    }
    if rm.len() < rm_at_least {
        left.sort_by(|a, b| active_pods_order(a, b));
        let n = (rm_at_least - rm.len()).min(left.len());
        rm.extend(left.into_iter().take(n));
    }
    rm
}

/// `<job>-<index>-`, the job name cut so the prefix fits a generated name.
fn generate_name_with_index(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let prefix = format!("{job}{suffix}");
    if prefix.len() <= MAX_GENERATED_NAME_LENGTH {
        return prefix;
    }
    let keep = MAX_GENERATED_NAME_LENGTH.saturating_sub(suffix.len());
    let cut: String = job.chars().take(keep).collect();
    format!("{cut}{suffix}")
}

/// A pod for the Job from its template: the tracking finalizer, the
/// controller reference and, for an index, its annotation, label,
/// hostname, `JOB_COMPLETION_INDEX` and failure counts.
fn pod_from_template(job: &Job, index: Option<i32>, replaced: Option<&Pod>) -> Pod {
    let spec = spec_of(job);
    let tpl = spec.template;
    let tmeta = tpl.metadata.unwrap_or_default();
    let name = util::name(&job.metadata);
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut pod_spec = tpl.spec.unwrap_or_default();
    let mut generate_name = format!("{name}-");
    if let Some(ix) = index {
        annotations.insert(COMPLETION_INDEX_ANNOTATION.into(), ix.to_string());
        labels.insert(COMPLETION_INDEX_ANNOTATION.into(), ix.to_string());
        pod_spec.hostname = Some(format!("{name}-{ix}"));
        generate_name = generate_name_with_index(name, ix);
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{COMPLETION_INDEX_ANNOTATION}']"),
                }),
                ..Default::default()
            }),
        };
        for c in pod_spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(pod_spec.containers.iter_mut())
        {
            let envs = c.env.get_or_insert_with(Vec::new);
            if !envs.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                envs.push(env.clone());
            }
        }
        if spec.backoff_limit_per_index.is_some() {
            let (failures, ignored) = match replaced {
                None => (0, 0),
                Some(p) => {
                    let a = p.metadata.annotations.as_ref();
                    let (f, i) = (
                        count_annotation(a, INDEX_FAILURE_COUNT_ANNOTATION),
                        count_annotation(a, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION),
                    );
                    if match_pod_failure_policy(spec.pod_failure_policy.as_ref(), p).count_failed {
                        (f + 1, i)
                    } else {
                        (f, i + 1)
                    }
                }
            };
            annotations.insert(INDEX_FAILURE_COUNT_ANNOTATION.into(), failures.to_string());
            if ignored > 0 {
                annotations.insert(INDEX_IGNORED_FAILURE_COUNT_ANNOTATION.into(), ignored.to_string());
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![util::new_controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(v: serde_json::Value) -> Job {
        serde_json::from_value(v).unwrap()
    }

    fn pod(v: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn how_many_pods_should_run() {
        // (completions, parallelism, succeeded, active, want, why)
        let cases = [
            (Some(3), 2, 0, 0, 2, "parallelism bounds a fresh job"),
            (Some(3), 2, 2, 1, 1, "only the remaining completion"),
            (Some(3), 5, 0, 0, 3, "never more than completions"),
            (Some(3), 2, 4, 0, 0, "over-succeeded wants none"),
            (None, 4, 0, 1, 4, "work queue: parallelism until a success"),
            (None, 4, 1, 3, 3, "work queue after a success: let the rest finish"),
            (Some(2), 0, 0, 0, 0, "parallelism 0 pauses"),
        ];
        for (completions, parallelism, succeeded, active, want, why) in cases {
            assert_eq!(want_active(completions, parallelism, succeeded, active), want, "{why}");
        }
    }

    #[test]
    fn failed_means_failed_or_deleted_unless_only_failed_are_replaced() {
        let running_deleted = pod(
            serde_json::json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}}),
        );
        let succeeded_deleted = pod(
            serde_json::json!({"metadata": {"name": "b", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Succeeded"}}),
        );
        let failed = pod(serde_json::json!({"metadata": {"name": "c"}, "status": {"phase": "Failed"}}));
        // (pod, only failed replaced, counted as failed, why)
        let cases = [
            (
                &running_deleted,
                false,
                true,
                "a deleted running pod never finishes: a failure",
            ),
            (
                &running_deleted,
                true,
                false,
                "with podReplacementPolicy Failed it is still terminating",
            ),
            (&succeeded_deleted, false, false, "a success stays a success"),
            (&failed, true, true, "phase Failed always counts"),
        ];
        for (p, only_failed, want, why) in cases {
            assert_eq!(is_pod_failed(p, only_failed), want, "{why}");
        }
        assert!(is_terminating(&running_deleted) && !is_terminating(&succeeded_deleted));
    }

    #[test]
    fn indexed_removal_drops_duplicates_and_bad_indexes_first() {
        let j = job(
            serde_json::json!({"metadata": {"name": "j"}, "spec": {"completionMode": "Indexed", "completions": 3,
            "template": {}}}),
        );
        let mk = |name: &str, ix: Option<&str>, ready: bool| {
            let mut m = serde_json::json!({"name": name});
            if let Some(ix) = ix {
                m["annotations"] = serde_json::json!({COMPLETION_INDEX_ANNOTATION: ix});
            }
            pod(
                serde_json::json!({"metadata": m, "spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}),
            )
        };
        let pods = vec![
            mk("a0", Some("0"), true),
            mk("b0", Some("0"), false),
            mk("c1", Some("1"), true),
            mk("d", None, true),
            mk("e7", Some("7"), true),
        ];
        let names = |v: Vec<Arc<Pod>>| {
            let mut n: Vec<String> = v.iter().map(|p| util::name(&p.metadata).to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(
            names(pods_for_removal(&j, &pods, 0)),
            ["b0", "d", "e7"],
            "the not-ready duplicate of index 0, the pod without index, index 7 >= completions"
        );
        assert_eq!(
            names(pods_for_removal(&j, &pods, 4)).len(),
            4,
            "then more by removal order"
        );
    }

    #[test]
    fn uncounted_pods_move_into_counters_once_their_finalizer_is_gone() {
        let mut status: JobStatus = serde_json::from_value(serde_json::json!({
            "succeeded": 1, "uncountedTerminatedPods": {"succeeded": ["a", "b"], "failed": ["c"]}}))
        .unwrap();
        let still: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &still));
        assert_eq!(status.succeeded, Some(2));
        assert_eq!(status.failed, Some(1));
        let u = status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(u.succeeded, Some(vec!["b".to_string()]));
        assert_eq!(u.failed, None);
        assert!(!clean_uncounted(&mut status, &still), "nothing more to count");
    }

    #[test]
    fn the_terminal_condition_waits_for_uncounted_and_terminating_pods() {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let done = new_condition("Complete", "True", "", "", t);
        let mut j = job(serde_json::json!({"metadata": {"name": "j"},
            "status": {"uncountedTerminatedPods": {"succeeded": ["x"]}}}));
        assert!(!enact_finished(&mut j, Some(&done), 0, t), "a pod is still uncounted");
        j.status.as_mut().unwrap().uncounted_terminated_pods = Some(Default::default());
        assert!(!enact_finished(&mut j, Some(&done), 1, t), "a pod is still terminating");
        assert!(enact_finished(&mut j, Some(&done), 0, t));
        assert!(is_finished(&j));
        assert_eq!(j.status.unwrap().completion_time, Some(Time(t)));
    }

    #[test]
    fn conditions_are_never_added_false() {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut list = Vec::new();
        assert!(!ensure_condition(
            &mut list,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            t
        ));
        assert!(ensure_condition(
            &mut list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            t
        ));
        assert!(!ensure_condition(
            &mut list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            t
        ));
        assert!(ensure_condition(
            &mut list,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            t
        ));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, "False");
    }

    #[test]
    fn indexes_fail_once_their_failures_reach_the_per_index_limit() {
        let j = job(serde_json::json!({"metadata": {"name": "j"},
            "spec": {"completionMode": "Indexed", "completions": 4, "backoffLimitPerIndex": 1,
              "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}},
                                             {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [9]}}]},
              "template": {}},
            "status": {"failedIndexes": "3"}}));
        let failed = |name: &str, ix: i32, failures: i32, code: i32| {
            pod(
                serde_json::json!({"metadata": {"name": name, "uid": name, "finalizers": [TRACKING_FINALIZER],
                "annotations": {COMPLETION_INDEX_ANNOTATION: ix.to_string(),
                                INDEX_FAILURE_COUNT_ANNOTATION: failures.to_string()}},
                "status": {"phase": "Failed", "containerStatuses": [{"name": "c", "image": "x", "imageID": "",
                    "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": code}}}]}}),
            )
        };
        // (pods, failed indexes, why)
        let cases = [
            (
                vec![failed("a", 0, 0, 1)],
                "3",
                "first failure of index 0: it may retry once",
            ),
            (
                vec![failed("a", 0, 1, 1)],
                "0,3",
                "the retry failed too: index 0 failed",
            ),
            (vec![failed("a", 1, 0, 7)], "1,3", "FailIndex fails it at once"),
            (vec![failed("a", 2, 5, 9)], "3", "ignored failures never fail an index"),
        ];
        for (pods, want, why) in cases {
            assert_eq!(failed_indexes(&j, &pods, 1, 4).to_string(), want, "{why}");
        }
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let j = job(
            serde_json::json!({"metadata": {"name": "work", "namespace": "ns", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1,
              "template": {"metadata": {"labels": {"batch.kubernetes.io/job-name": "work"}},
                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        );
        let p = pod_from_template(&j, Some(2), None);
        let m = &p.metadata;
        assert_eq!(m.generate_name.as_deref(), Some("work-2-"));
        assert_eq!(m.annotations.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION], "2");
        assert_eq!(m.labels.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION], "2");
        assert_eq!(m.annotations.as_ref().unwrap()[INDEX_FAILURE_COUNT_ANNOTATION], "0");
        assert_eq!(m.finalizers.as_deref(), Some(&[TRACKING_FINALIZER.to_string()][..]));
        assert_eq!(m.owner_references.as_ref().unwrap()[0].uid, "u1");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-2"));
        assert_eq!(spec.containers[0].env.as_ref().unwrap()[0].name, "JOB_COMPLETION_INDEX");
        let long = "x".repeat(60);
        assert_eq!(generate_name_with_index(&long, 12).len(), MAX_GENERATED_NAME_LENGTH);
    }
}
