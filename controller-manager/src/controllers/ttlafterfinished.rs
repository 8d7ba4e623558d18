//! `ttl-after-finished-controller` (upstream's `pkg/controller/ttlafterfinished`):
//! deletes a Job `ttlSecondsAfterFinished` after its Complete or Failed
//! condition turned True, with foreground propagation (its pods go first,
//! through the garbage collector). The TTL is checked again on a fresh
//! read just before deleting, so a TTL raised meanwhile is honoured.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};

use super::StartFn;
use crate::context::Ctx;
use crate::informer::{Change, Informer, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

/// When a Job should be deleted: `None` if it has no TTL, has not
/// finished, or is already being deleted.
pub fn expire_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = job
        .status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = finished.last_transition_time.as_ref()?.0;
    Some(at + SignedDuration::from_secs(ttl as i64))
}

/// What to do with a Job at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Look again after this long.
    RequeueAfter(Duration),
    Delete,
}

pub fn decide(job: &Job, now: Timestamp) -> Decision {
    match expire_at(job) {
        None => Decision::Nothing,
        Some(at) if at <= now => Decision::Delete,
        Some(at) => Decision::RequeueAfter(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)),
    }
}

struct Controller {
    client: kube::Client,
    jobs: Arc<Informer<Job>>,
    queue: Arc<Queue>,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        jobs: ctx.informers.get::<Job>(),
        queue: ctx.queue("ttl_jobs_to_delete"),
    });
    let q = c.queue.clone();
    c.jobs.add_handler(move |change| match change {
        Change::Add(j) | Change::Update(_, j) => {
            if expire_at(j).is_some() {
                q.add(key_of(j.as_ref()));
            }
        }
        Change::Delete(_) => {}
    });
    let workers = ctx.opts.concurrency.ttl_after_finished;
    tokio::spawn(async move {
        c.jobs.wait_synced().await;
        let s = c.clone();
        run_workers(c.queue.clone(), workers, move |key| {
            let s = s.clone();
            async move { s.process(&key).await }
        });
    });
    Ok(())
}

impl Controller {
    fn check(&self, key: &str, job: &Job) -> bool {
        match decide(job, Timestamp::now()) {
            Decision::Nothing => false,
            Decision::RequeueAfter(d) => {
                self.queue.add_after(key.to_string(), d);
                false
            }
            Decision::Delete => true,
        }
    }

    async fn process(&self, key: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(key);
        let Some(job) = self.jobs.get(ns, name) else {
            return Ok(());
        };
        if !self.check(key, &job) {
            return Ok(());
        }
        // The cached TTL may be stale: decide again on a fresh read.
        let api = Api::<Job>::namespaced(self.client.clone(), ns);
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(());
        };
        if !self.check(key, &fresh) {
            return Ok(());
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::debug!(job = %key, "cleaning up finished Job");
        match api.delete(name, &dp).await {
            Err(e) if !util::is_not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, finished: Option<(&str, &str)>, deleting: bool) -> Job {
        let mut v = json!({"metadata": {"name": "j"}, "spec": {"template": {}}});
        if let Some(t) = ttl {
            v["spec"]["ttlSecondsAfterFinished"] = json!(t);
        }
        if let Some((kind, at)) = finished {
            v["status"] = json!({"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": kind, "status": "True", "lastTransitionTime": at}]});
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn finished_jobs_are_deleted_after_their_ttl() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        // (job, decision, why)
        let cases = [
            (
                job(None, Some(("Complete", "2026-01-01T00:00:00Z")), false),
                Decision::Nothing,
                "no TTL",
            ),
            (job(Some(0), None, false), Decision::Nothing, "not finished"),
            (
                job(Some(0), Some(("Complete", "2026-01-01T00:01:00Z")), false),
                Decision::Delete,
                "TTL 0: at once",
            ),
            (
                job(Some(100), Some(("Failed", "2026-01-01T00:00:30Z")), false),
                Decision::RequeueAfter(Duration::from_secs(70)),
                "failed jobs too, counted from the Failed condition",
            ),
            (
                job(Some(30), Some(("Complete", "2026-01-01T00:00:00Z")), false),
                Decision::Delete,
                "expired",
            ),
            (
                job(Some(0), Some(("Complete", "2026-01-01T00:00:00Z")), true),
                Decision::Nothing,
                "already being deleted",
            ),
        ];
        for (j, want, why) in cases {
            assert_eq!(decide(&j, now), want, "{why}");
        }
    }
}
