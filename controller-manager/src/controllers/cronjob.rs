//! `cronjob-controller` (upstream's `cronjob_controllerv2.go`): creates a
//! Job named `<cronjob>-<minutes since the epoch>` at each scheduled time of
//! `spec.schedule` (5 fields or a macro, in `spec.timeZone` or the
//! controller's zone), honouring `concurrencyPolicy`, `suspend` and
//! `startingDeadlineSeconds`, keeps `status.active`, `lastScheduleTime`
//! and `lastSuccessfulTime`, trims finished Jobs to the history limits, and
//! wakes up again exactly at the next scheduled time.
//!
//! Schedules are parsed by the `croner` crate; the schedule arithmetic of
//! upstream's `utils.go` (the most recent missed time, how many were
//! missed) is in plain functions below, over a [`Schedule`].

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};

use super::StartFn;
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING, object_ref};
use crate::informer::{Change, Informer, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Requeue a little after the scheduled time (upstream's `nextScheduleDelta`).
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed times than this means a clock problem, not work to catch up.
const MANY_MISSED: i64 = 100;

/// A parsed schedule: cron fields evaluated in a zone, or `@every <d>`.
#[derive(Clone, Debug)]
pub enum Schedule {
    Cron { cron: Box<croner::Cron>, tz: TimeZone },
    Every(Duration),
}

impl Schedule {
    /// The first activation strictly after `t` (whole seconds), if any.
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let base = Timestamp::from_second(t.as_second()).ok()?;
                base.checked_add(SignedDuration::try_from(*d).ok()?).ok()
            }
            Schedule::Cron { cron, tz } => {
                let mut from = t.to_zoned(tz.clone());
                // Wall-clock times a spring-forward gap swallows are
                // skipped, as upstream's cron library does; a bounded
                // number of them can follow each other.
                for _ in 0..8 {
                    let next = cron.find_next_occurrence(&from, false).ok()?;
                    if cron.is_time_matching(&next).unwrap_or(true) {
                        return Some(next.timestamp());
                    }
                    from = next;
                }
                None
            }
        }
    }
}

/// The zone of a name as Go's `time.LoadLocation` reads it.
fn load_zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        "Local" => Ok(TimeZone::system()),
        _ => TimeZone::get(name).map_err(|e| format!("unknown time zone {name}: {e}")),
    }
}

/// Upstream's `formatSchedule` + `cron.ParseStandard`: a `TZ=`/`CRON_TZ=`
/// prefix names the zone (the apiserver refuses it together with
/// `spec.timeZone`), else `spec.timeZone`, else the controller's zone.
pub fn parse_schedule(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
    let mut spec = schedule.trim();
    let mut tz = match time_zone {
        Some(z) if !schedule.contains("TZ") => load_zone(z).unwrap_or_else(|_| TimeZone::system()),
        _ => TimeZone::system(),
    };
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (zone, rest) = spec
            .split_once(' ')
            .ok_or_else(|| "missing fields after the time zone".to_string())?;
        let name = zone.split_once('=').map_or("", |(_, n)| n);
        tz = load_zone(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
        spec = rest.trim();
    }
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if let Some(rest) = spec.strip_prefix("@every ") {
        // Go's time.ParseDuration; at least one second, whole seconds
        // (robfig's `Every`).
        let nanos = apimachinery::duration::parse_nanos(rest.trim())
            .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
        let d = Duration::from_secs((nanos / 1_000_000_000).max(1).unsigned_abs());
        return Ok(Schedule::Every(d));
    }
    let spec = if spec.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        spec
    };
    if spec.starts_with('@')
        && !matches!(
            spec.to_ascii_lowercase().as_str(),
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@hourly"
        )
    {
        return Err(format!("unrecognized descriptor: {spec}"));
    }
    if !spec.starts_with('@') && spec.split_whitespace().count() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {spec}",
            spec.split_whitespace().count()
        ));
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    let cron = parser.parse(spec).map_err(|e| e.to_string())?;
    Ok(Schedule::Cron {
        cron: Box::new(cron),
        tz,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// What upstream's `mostRecentScheduleTime` finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recent {
    /// lastScheduleTime, else creation (or the starting deadline, if later).
    pub earliest: Timestamp,
    /// The latest scheduled time at or before now not yet started.
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

/// Upstream's `mostRecentScheduleTime`: the latest unmet scheduled time
/// since the last one (or creation), estimating how many were missed from
/// the interval between two activations.
pub fn most_recent_schedule_time(
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    starting_deadline_seconds: Option<i64>,
    now: Timestamp,
    sched: &Schedule,
) -> Result<Recent, String> {
    let mut earliest = last_schedule.unwrap_or(created);
    if let Some(d) = starting_deadline_seconds {
        let deadline = now - SignedDuration::from_secs(d);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let none = |missed| Recent {
        earliest,
        most_recent: None,
        missed,
    };
    let (Some(t1), Some(t2)) = (sched.next(earliest), sched.next(earliest).and_then(|t| sched.next(t))) else {
        return match sched.next(earliest) {
            Some(t1) if now < t1 => Ok(none(Missed::None)),
            Some(t1) => Ok(Recent {
                earliest,
                most_recent: Some(t1),
                missed: Missed::None,
            }),
            None => Err("time difference between two schedules is less than 1 second".into()),
        };
    };
    if now < t1 {
        return Ok(none(Missed::None));
    }
    if now < t2 {
        return Ok(Recent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::None,
        });
    }
    let between = t2
        .duration_since(t1)
        .round(jiff::Unit::Second)
        .map_or(0, |d| d.as_secs());
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed_count = elapsed / between + 1;
    // Step back one interval more than the estimate and let the schedule
    // find the exact times (irregular schedules like `30 6-16/4 * * 1-5`).
    let back = (missed_count - 2).saturating_mul(between);
    let potential = t1.checked_add(SignedDuration::from_secs(back)).unwrap_or(t1);
    let mut most_recent = None;
    let mut t = sched.next(potential);
    while let Some(x) = t {
        if x > now {
            break;
        }
        most_recent = Some(x);
        t = sched.next(x);
    }
    let missed = if missed_count > MANY_MISSED {
        Missed::Many
    } else if missed_count > 0 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok(Recent {
        earliest,
        most_recent,
        missed,
    })
}

/// How long until the sync after the next scheduled time (upstream's
/// `nextScheduleTimeDuration`).
pub fn next_schedule_delay(
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    now: Timestamp,
    sched: &Schedule,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(created, last_schedule, None, now, sched) {
        Err(_) => now,
        Ok(Recent {
            most_recent: Some(t), ..
        }) => t,
        Ok(Recent {
            most_recent: None,
            missed: Missed::None,
            earliest,
        }) => earliest,
        Ok(_) => now,
    };
    let next = sched.next(from)?;
    let d = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(d + NEXT_SCHEDULE_DELTA)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The finished Jobs over the history limits, oldest (by start time) first.
pub fn jobs_over_history_limits<'a>(
    jobs: &[&'a Job],
    successful_limit: Option<i32>,
    failed_limit: Option<i32>,
) -> Vec<&'a Job> {
    let mut out = Vec::new();
    for (kind, limit) in [("Complete", successful_limit), ("Failed", failed_limit)] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Job> = jobs
            .iter()
            .copied()
            .filter(|j| super::job::finished_condition_type(j) == Some(kind))
            .collect();
        let n = finished.len() as i64 - limit as i64;
        if n <= 0 {
            continue;
        }
        finished.sort_by(|a, b| {
            let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => util::name(&a.metadata).cmp(util::name(&b.metadata)),
            }
        });
        out.extend(finished.into_iter().take(n as usize));
    }
    out
}

/// The Job for `scheduled`: the template's labels, annotations (plus the
/// scheduled timestamp in the CronJob's zone) and spec, controlled by the
/// CronJob.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Result<Job, String> {
    let spec = cj.spec.clone().unwrap_or_default();
    let tmeta = spec.job_template.metadata.unwrap_or_default();
    let zone = load_zone(spec.time_zone.as_deref().unwrap_or(""))?;
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let stamp = scheduled.to_zoned(zone).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    let stamp = stamp.strip_suffix("+00:00").map_or(stamp.clone(), |s| format!("{s}Z"));
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), stamp);
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(util::name(&cj.metadata), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![util::new_controller_ref(cj)]),
            ..Default::default()
        },
        spec: spec.job_template.spec,
        status: None,
    })
}

struct Controller {
    client: kube::Client,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        cronjobs: ctx.informers.get::<CronJob>(),
        jobs: ctx.informers.get::<Job>(),
        queue: ctx.queue("cronjob"),
        recorder: ctx.recorder("cronjob-controller"),
    });
    let h = c.clone();
    c.jobs.add_handler(move |change| h.on_job(change));
    let h = c.clone();
    c.cronjobs.add_handler(move |change| h.on_cronjob(change));
    let workers = ctx.opts.concurrency.cron_job;
    tokio::spawn(async move {
        c.cronjobs.wait_synced().await;
        c.jobs.wait_synced().await;
        let s = c.clone();
        run_workers(c.queue.clone(), workers, move |key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        });
    });
    Ok(())
}

fn created(cj: &CronJob) -> Timestamp {
    cj.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now)
}

fn last_schedule(cj: &CronJob) -> Option<Timestamp> {
    cj.status.as_ref()?.last_schedule_time.as_ref().map(|t| t.0)
}

fn in_active_list(cj: &CronJob, uid: &str) -> bool {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn delete_from_active_list(cj: &mut CronJob, uid: &str) {
    if let Some(a) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        a.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

impl Controller {
    fn resolve(&self, ns: &str, r: &OwnerReference) -> Option<Arc<CronJob>> {
        if r.kind != "CronJob" {
            return None;
        }
        self.cronjobs
            .get(ns, &r.name)
            .filter(|c| util::uid(&c.metadata) == r.uid)
    }

    fn on_job(&self, change: &Change<Job>) {
        let enqueue_owner = |j: &Job, r: Option<&OwnerReference>| {
            if let Some(r) = r
                && let Some(cj) = self.resolve(util::namespace(&j.metadata), r)
            {
                self.queue.add(key_of(cj.as_ref()));
            }
        };
        match change {
            Change::Add(j) | Change::Delete(j) => enqueue_owner(j, util::controller_ref(&j.metadata)),
            Change::Update(old, cur) => {
                if old.metadata.resource_version == cur.metadata.resource_version {
                    return;
                }
                let (o, c) = (util::controller_ref(&old.metadata), util::controller_ref(&cur.metadata));
                if o != c {
                    enqueue_owner(old, o);
                }
                enqueue_owner(cur, c);
            }
        }
    }

    fn on_cronjob(&self, change: &Change<CronJob>) {
        match change {
            Change::Add(cj) | Change::Delete(cj) => self.queue.add(key_of(cj.as_ref())),
            Change::Update(old, new) => {
                let (os, ns) = (
                    old.spec.clone().unwrap_or_default(),
                    new.spec.clone().unwrap_or_default(),
                );
                if os.schedule != ns.schedule || os.time_zone != ns.time_zone {
                    match parse_schedule(&ns.schedule, ns.time_zone.as_deref()) {
                        Err(_) => self.recorder.event(
                            new.as_ref(),
                            WARNING,
                            "UnParseableCronJobSchedule",
                            format!("unparseable schedule for cronjob: {}", ns.schedule),
                        ),
                        Ok(sched) => {
                            let d = next_schedule_delay(created(new), last_schedule(new), Timestamp::now(), &sched)
                                .unwrap_or(Duration::ZERO);
                            self.queue.add_after(key_of(new.as_ref()), d);
                        }
                    }
                    return;
                }
                self.queue.add(key_of(new.as_ref()));
            }
        }
    }

    async fn sync(&self, key: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(key);
        let Some(cj) = self.cronjobs.get(ns, name) else {
            return Ok(());
        };
        // Jobs this CronJob controls, whatever their labels.
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .list_namespace(ns)
            .into_iter()
            .filter(|j| util::controller_ref(&j.metadata).is_some_and(|r| r.name == name))
            .collect();
        let mut copy = (*cj).clone();
        let cleaned = self.cleanup_finished_jobs(&mut copy, &jobs).await;
        let (requeue, updated, sync_err) = match self.sync_cronjob(&mut copy, &jobs).await {
            Ok((r, u)) => (r, u, None),
            Err((u, e)) => (None, u, Some(e)),
        };
        if cleaned || updated {
            Api::<CronJob>::namespaced(self.client.clone(), ns)
                .replace_status(name, &PostParams::default(), &copy)
                .await?;
        }
        if let Some(d) = requeue {
            self.queue.add_after(key.to_string(), d);
            return Ok(());
        }
        sync_err.map_or(Ok(()), Err)
    }

    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match Api::<Job>::namespaced(self.client.clone(), util::namespace(&job.metadata))
            .delete(util::name(&job.metadata), &dp)
            .await
        {
            Err(e) => {
                self.recorder
                    .event(cj, WARNING, "FailedDelete", format!("Deleted job: {e}"));
                false
            }
            Ok(_) => {
                delete_from_active_list(cj, util::uid(&job.metadata));
                self.recorder.event(
                    cj,
                    NORMAL,
                    "SuccessfulDelete",
                    format!("Deleted job {}", util::name(&job.metadata)),
                );
                true
            }
        }
    }

    async fn cleanup_finished_jobs(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let spec = cj.spec.clone().unwrap_or_default();
        let refs: Vec<&Job> = jobs.iter().map(|j| j.as_ref()).collect();
        let mut updated = false;
        for j in jobs_over_history_limits(
            &refs,
            spec.successful_jobs_history_limit,
            spec.failed_jobs_history_limit,
        ) {
            if self.delete_job(cj, j).await {
                updated = true;
            }
        }
        updated
    }

    /// Upstream's `syncCronJob`: returns when to look again and whether the
    /// status changed (or the error, with whether the status changed).
    async fn sync_cronjob(
        &self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
    ) -> Result<(Option<Duration>, bool), (bool, anyhow::Error)> {
        let now = Timestamp::now();
        let mut update = false;
        let ns = util::namespace(&cj.metadata).to_string();
        let name = util::name(&cj.metadata).to_string();
        let cj_api = Api::<CronJob>::namespaced(self.client.clone(), &ns);
        let job_api = Api::<Job>::namespaced(self.client.clone(), &ns);
        for j in jobs {
            let uid = util::uid(&j.metadata);
            let found = in_active_list(cj, uid);
            let finished = super::job::finished_condition_type(j);
            if !found && finished.is_none() {
                let fresh = cj_api.get(&name).await.map_err(|e| (update, e.into()))?;
                if in_active_list(&fresh, uid) {
                    *cj = fresh;
                    continue;
                }
                self.recorder.event(
                    cj,
                    WARNING,
                    "UnexpectedJob",
                    format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        util::name(&j.metadata)
                    ),
                );
            } else if found && let Some(status) = finished {
                delete_from_active_list(cj, uid);
                self.recorder.event(
                    cj,
                    NORMAL,
                    "SawCompletedJob",
                    format!("Saw completed job: {}, status: {status}", util::name(&j.metadata)),
                );
                update = true;
            } else if finished == Some("Complete") {
                let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let st = cj.status.get_or_insert_with(CronJobStatus::default);
                match (&st.last_successful_time, &done) {
                    (None, _) => {
                        st.last_successful_time = done;
                        update = true;
                    }
                    (Some(last), Some(d)) if d.0 > last.0 => {
                        st.last_successful_time = done;
                        update = true;
                    }
                    _ => {}
                }
            }
        }
        // Active references whose Job is gone (asked of the apiserver, not
        // the cache, which may lag).
        let active: Vec<_> = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
        for r in active {
            let uid = r.uid.clone().unwrap_or_default();
            if jobs.iter().any(|j| util::uid(&j.metadata) == uid) {
                continue;
            }
            let jname = r.name.clone().unwrap_or_default();
            match job_api.get_opt(&jname).await {
                Ok(None) => {
                    self.recorder
                        .event(cj, NORMAL, "MissingJob", format!("Active job went missing: {jname}"));
                    delete_from_active_list(cj, &uid);
                    update = true;
                }
                Ok(Some(_)) => {}
                Err(e) => return Err((update, e.into())),
            }
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok((None, update));
        }
        let spec = cj.spec.clone().unwrap_or_default();
        if let Some(tz) = &spec.time_zone
            && let Err(e) = load_zone(tz)
        {
            self.recorder
                .event(cj, WARNING, "UnknownTimeZone", format!("invalid timeZone: {tz:?}: {e}"));
            return Ok((None, update));
        }
        if spec.suspend == Some(true) {
            return Ok((None, update));
        }
        if spec.schedule.contains("TZ") {
            self.recorder.event(
                cj,
                WARNING,
                "UnsupportedSchedule",
                format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            );
        }
        let sched = match parse_schedule(&spec.schedule, spec.time_zone.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.event(
                    cj,
                    WARNING,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return Ok((None, update));
            }
        };
        let next_delay = |cj: &CronJob| next_schedule_delay(created(cj), last_schedule(cj), now, &sched);
        let recent = match most_recent_schedule_time(
            created(cj),
            last_schedule(cj),
            spec.starting_deadline_seconds,
            now,
            &sched,
        ) {
            Ok(r) => r,
            Err(e) => {
                self.recorder.event(
                    cj,
                    WARNING,
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {e}", spec.schedule),
                );
                return Ok((None, update));
            }
        };
        let Some(scheduled) = recent.most_recent.filter(|t| *t <= now) else {
            return Ok((next_delay(cj), update));
        };
        if recent.missed == Missed::Many {
            self.recorder.event(
                cj,
                WARNING,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            );
        }
        if let Some(d) = spec.starting_deadline_seconds
            && scheduled + SignedDuration::from_secs(d) < now
        {
            let when = scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string();
            self.recorder.event(
                cj,
                WARNING,
                "MissSchedule",
                format!("Missed scheduled time to start a job: {when}"),
            );
            return Ok((next_delay(cj), update));
        }
        let jname = job_name(&name, scheduled);
        let already = cj
            .status
            .as_ref()
            .and_then(|s| s.active.as_ref())
            .is_some_and(|a| a.iter().any(|r| r.name.as_deref() == Some(jname.as_str())))
            || last_schedule(cj) == Some(scheduled);
        if already {
            return Ok((next_delay(cj), update));
        }
        let active_count = cj.status.as_ref().and_then(|s| s.active.as_ref()).map_or(0, Vec::len);
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && active_count > 0 {
            self.recorder.event(
                cj,
                NORMAL,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            );
            return Ok((next_delay(cj), update));
        }
        if policy == "Replace" {
            let active: Vec<_> = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
            for r in active {
                let rname = r.name.clone().unwrap_or_default();
                let job = match job_api.get(&rname).await {
                    Ok(j) => j,
                    Err(e) => {
                        self.recorder.event(cj, WARNING, "FailedGet", format!("Get job: {e}"));
                        return Err((update, e.into()));
                    }
                };
                if !self.delete_job(cj, &job).await {
                    return Err((update, anyhow::anyhow!("could not replace job {ns}/{rname}")));
                }
                update = true;
            }
        }
        let req = job_from_template(cj, scheduled).map_err(|e| (update, anyhow::anyhow!(e)))?;
        let created_job = match job_api.create(&PostParams::default(), &req).await {
            Ok(j) => {
                self.recorder.event(
                    cj,
                    NORMAL,
                    "SuccessfulCreate",
                    format!("Created job {}", util::name(&j.metadata)),
                );
                j
            }
            Err(e) if util::is_already_exists(&e) => {
                let j = job_api.get(&jname).await.map_err(|e| (update, e.into()))?;
                if !util::is_controlled_by(&j.metadata, util::uid(&cj.metadata))
                    || in_active_list(cj, util::uid(&j.metadata))
                {
                    return Ok((None, update));
                }
                tracing::info!(cronjob = %name, job = %jname, "job already exists");
                j
            }
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("terminat") => {
                return Err((update, anyhow::anyhow!("namespace {ns} is terminating")));
            }
            Err(e) => {
                self.recorder
                    .event(cj, WARNING, "FailedCreate", format!("Error creating job: {e}"));
                return Err((update, e.into()));
            }
        };
        let st = cj.status.get_or_insert_with(CronJobStatus::default);
        st.active.get_or_insert_with(Vec::new).push(object_ref(&created_job));
        st.last_schedule_time = Some(Time(scheduled));
        Ok((next_delay(cj), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(schedule: &str) -> Schedule {
        parse_schedule(schedule, Some("UTC")).unwrap()
    }

    #[test]
    fn schedules_parse_as_upstream() {
        // (schedule, timeZone, accepted, why)
        let cases = [
            ("*/1 * * * *", None, true, "five fields"),
            ("0 0 * * * *", None, false, "six fields are refused"),
            ("@hourly", None, true, "macro"),
            ("@midnight", None, true, "robfig's @midnight"),
            ("@every 90s", None, true, "@every"),
            ("@fortnightly", None, false, "unknown macro"),
            ("TZ=Europe/Berlin 0 9 * * *", None, true, "TZ prefix"),
            (
                "CRON_TZ=Nowhere/Land 0 9 * * *",
                None,
                false,
                "unknown zone in the prefix",
            ),
            ("0 9 * * MON-FRI", Some("America/New_York"), true, "timeZone field"),
            ("61 * * * *", None, false, "minute out of range"),
            ("", None, false, "empty"),
        ];
        for (s, tz, ok, why) in cases {
            assert_eq!(parse_schedule(s, tz).is_ok(), ok, "{why}: {s}");
        }
    }

    #[test]
    fn next_times_in_zones_and_macros() {
        // (schedule, zone, after, next, why)
        let cases = [
            (
                "*/1 * * * *",
                "UTC",
                "2026-01-01T00:00:30Z",
                "2026-01-01T00:01:00Z",
                "next minute",
            ),
            (
                "*/1 * * * *",
                "UTC",
                "2026-01-01T00:01:00Z",
                "2026-01-01T00:02:00Z",
                "strictly after",
            ),
            (
                "@hourly",
                "UTC",
                "2026-01-01T10:59:59Z",
                "2026-01-01T11:00:00Z",
                "hourly",
            ),
            (
                "@weekly",
                "UTC",
                "2026-01-01T00:00:00Z",
                "2026-01-04T00:00:00Z",
                "Sunday midnight",
            ),
            (
                "@yearly",
                "UTC",
                "2026-03-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "new year",
            ),
            (
                "0 9 * * *",
                "Europe/Berlin",
                "2026-01-10T12:00:00Z",
                "2026-01-11T08:00:00Z",
                "CET is UTC+1",
            ),
            (
                "0 9 * * *",
                "Europe/Berlin",
                "2026-07-10T12:00:00Z",
                "2026-07-11T07:00:00Z",
                "CEST is UTC+2",
            ),
            (
                "0 9 * * *",
                "America/New_York",
                "2026-03-07T15:00:00Z",
                "2026-03-08T13:00:00Z",
                "the day DST starts: 9:00 EDT",
            ),
            (
                "30 2 * * *",
                "America/New_York",
                "2026-03-07T08:00:00Z",
                "2026-03-09T06:30:00Z",
                "02:30 does not exist on 8 March: skipped, as upstream",
            ),
            (
                "0 */6 * * *",
                "Europe/Berlin",
                "2026-10-24T23:00:00Z",
                "2026-10-25T05:00:00Z",
                "after the autumn change the hours are CET",
            ),
        ];
        for (s, zone, after, want, why) in cases {
            let sched = parse_schedule(s, Some(zone)).unwrap();
            assert_eq!(sched.next(ts(after)), Some(ts(want)), "{why}");
        }
        let every = parse_schedule("@every 1m30s", None).unwrap();
        assert_eq!(every.next(ts("2026-01-01T00:00:00Z")), Some(ts("2026-01-01T00:01:30Z")));
    }

    #[test]
    fn missed_schedules() {
        let created = ts("2026-01-01T00:00:00Z");
        let every_minute = utc("* * * * *");
        // (last, deadline, now, most recent, missed, why)
        let cases = [
            (
                None,
                None,
                "2026-01-01T00:00:30Z",
                None,
                Missed::None,
                "nothing due yet",
            ),
            (
                None,
                None,
                "2026-01-01T00:01:10Z",
                Some("2026-01-01T00:01:00Z"),
                Missed::None,
                "one due",
            ),
            (
                None,
                None,
                "2026-01-01T00:05:10Z",
                Some("2026-01-01T00:05:00Z"),
                Missed::Few,
                "several missed: the latest",
            ),
            (
                Some("2026-01-01T00:05:00Z"),
                None,
                "2026-01-01T00:05:50Z",
                None,
                Missed::None,
                "the latest already started",
            ),
            (
                None,
                None,
                "2026-01-01T03:00:10Z",
                Some("2026-01-01T03:00:00Z"),
                Missed::Many,
                "180 missed: too many",
            ),
            (
                None,
                Some(200),
                "2026-01-01T03:00:10Z",
                Some("2026-01-01T03:00:00Z"),
                Missed::Few,
                "the starting deadline bounds the look-back",
            ),
        ];
        for (last, deadline, now, want, missed, why) in cases {
            let r = most_recent_schedule_time(created, last.map(ts), deadline, ts(now), &every_minute).unwrap();
            assert_eq!(r.most_recent, want.map(ts), "{why}");
            assert_eq!(r.missed, missed, "{why}");
        }
        let never = utc("59 23 31 2 *");
        assert!(most_recent_schedule_time(created, None, None, ts("2026-06-01T00:00:00Z"), &never).is_err());
    }

    #[test]
    fn requeue_lands_just_after_the_next_time() {
        let created = ts("2026-01-01T00:00:00Z");
        let d = next_schedule_delay(
            created,
            Some(ts("2026-01-01T00:01:00Z")),
            ts("2026-01-01T00:01:20Z"),
            &utc("*/1 * * * *"),
        );
        assert_eq!(d, Some(Duration::from_millis(40_100)));
        let d = next_schedule_delay(created, None, ts("2026-01-01T00:00:59Z"), &utc("@hourly"));
        assert_eq!(d, Some(Duration::from_millis(3_541_100)));
    }

    fn finished_job(name: &str, kind: &str, start: &str) -> Job {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"startTime": start,
            "conditions": [{"type": kind, "status": "True"}]}}))
        .unwrap()
    }

    #[test]
    fn history_limits_delete_the_oldest() {
        let jobs = [
            finished_job("s3", "Complete", "2026-01-01T00:03:00Z"),
            finished_job("s1", "Complete", "2026-01-01T00:01:00Z"),
            finished_job("s2", "Complete", "2026-01-01T00:02:00Z"),
            finished_job("f1", "Failed", "2026-01-01T00:01:30Z"),
            finished_job("f2", "Failed", "2026-01-01T00:02:30Z"),
            serde_json::from_value(json!({"metadata": {"name": "running"}})).unwrap(),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let names = |v: Vec<&Job>| {
            v.iter()
                .map(|j| util::name(&j.metadata).to_string())
                .collect::<Vec<_>>()
        };
        // (successful limit, failed limit, deleted, why)
        type Case<'a> = (Option<i32>, Option<i32>, Vec<&'a str>, &'a str);
        let cases: [Case; 4] = [
            (Some(3), Some(1), vec!["f1"], "defaults: one failed too many"),
            (Some(1), Some(1), vec!["s1", "s2", "f1"], "oldest successes first"),
            (
                Some(0),
                None,
                vec!["s1", "s2", "s3"],
                "limit 0 keeps none; no failed limit keeps all",
            ),
            (None, None, vec![], "no limits"),
        ];
        for (s, f, want, why) in cases {
            assert_eq!(names(jobs_over_history_limits(&refs, s, f)), want, "{why}");
        }
    }

    #[test]
    fn jobs_are_named_by_their_minute_and_stamped() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u"},
            "spec": {"schedule": "*/1 * * * *", "timeZone": "Europe/Berlin",
                     "jobTemplate": {"metadata": {"labels": {"app": "x"}}, "spec": {"template": {}}}}}))
        .unwrap();
        let t = ts("2026-01-01T00:05:00Z");
        let job = job_from_template(&cj, t).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("hello-29453765"));
        assert_eq!(
            job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2026-01-01T01:05:00+01:00"
        );
        assert_eq!(job.metadata.labels.unwrap()["app"], "x");
        assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "CronJob");
        let mut utc_cj = cj.clone();
        utc_cj.spec.as_mut().unwrap().time_zone = None;
        let job = job_from_template(&utc_cj, t).unwrap();
        assert_eq!(
            job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2026-01-01T00:05:00Z"
        );
    }
}
