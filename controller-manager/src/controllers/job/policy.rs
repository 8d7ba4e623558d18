//! The Job's rules over its pods, without IO: the pod failure policy, the
//! success policy, the back-off before re-creating failed pods, and the
//! order in which active pods are removed.

use std::cmp::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{PodFailurePolicy, SuccessPolicy};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::indexes::Intervals;
use crate::util;

/// Upstream's `DefaultJobPodFailureBackOff` and `MaxJobPodFailureBackOff`.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    FailJob,
    FailIndex,
    Ignore,
    Count,
}

/// What the pod failure policy says of a failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMatch {
    /// Set when a FailJob rule matched: the Job's failure message.
    pub fail_job_message: Option<String>,
    /// Whether the failure counts towards backoffLimit (false for Ignore).
    pub count_failed: bool,
    pub action: Option<Action>,
}

const NO_MATCH: PolicyMatch = PolicyMatch {
    fail_job_message: None,
    count_failed: true,
    action: None,
};

/// Upstream's `matchPodFailurePolicy`: the first rule that matches decides.
pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> PolicyMatch {
    let Some(policy) = policy else { return NO_MATCH };
    let ns = util::namespace(&pod.metadata);
    let name = util::name(&pod.metadata);
    let status = pod.status.as_ref();
    for (index, rule) in policy.rules.iter().enumerate() {
        let message = if let Some(req) = &rule.on_exit_codes {
            let matched = status.and_then(|s| {
                matching_container(s.container_statuses.as_deref(), req)
                    .or_else(|| matching_container(s.init_container_statuses.as_deref(), req))
            });
            let Some(c) = matched else { continue };
            let code = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map_or(0, |t| t.exit_code);
            format!(
                "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                c.name, rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
            let matched = conditions
                .iter()
                .find(|c| patterns.iter().any(|p| p.type_ == c.type_ && p.status == c.status));
            let Some(c) = matched else { continue };
            format!(
                "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                c.type_, rule.action
            )
        } else {
            continue;
        };
        match rule.action.as_str() {
            "Ignore" => {
                return PolicyMatch {
                    fail_job_message: None,
                    count_failed: false,
                    action: Some(Action::Ignore),
                };
            }
            "FailIndex" => {
                return PolicyMatch {
                    fail_job_message: None,
                    count_failed: true,
                    action: Some(Action::FailIndex),
                };
            }
            "Count" => {
                return PolicyMatch {
                    fail_job_message: None,
                    count_failed: true,
                    action: Some(Action::Count),
                };
            }
            "FailJob" => {
                return PolicyMatch {
                    fail_job_message: Some(message),
                    count_failed: true,
                    action: Some(Action::FailJob),
                };
            }
            // An unknown action matches nothing (upstream's switch falls through).
            _ => {}
        }
    }
    NO_MATCH
}

fn matching_container<'a>(
    statuses: Option<&'a [ContainerStatus]>,
    req: &k8s_openapi::api::batch::v1::PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    statuses.unwrap_or_default().iter().find(|c| {
        let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return false;
        };
        if req.container_name.as_ref().is_some_and(|n| *n != c.name) || t.exit_code == 0 {
            return false;
        }
        match req.operator.as_str() {
            "In" => req.values.contains(&t.exit_code),
            "NotIn" => !req.values.contains(&t.exit_code),
            _ => false,
        }
    })
}

/// Upstream's `matchSuccessPolicy`: the message of the first rule the
/// succeeded indexes meet.
pub fn match_success_policy(policy: Option<&SuccessPolicy>, completions: i32, succeeded: &Intervals) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = if let Some(ixs) = &rule.succeeded_indexes {
            let required = Intervals::parse(ixs, completions);
            if required.is_empty() {
                continue;
            }
            let contained = overlap(&required, succeeded);
            contained == required.total() || rule.succeeded_count.is_some_and(|c| contained >= c)
        } else {
            rule.succeeded_count.is_some_and(|c| succeeded.total() >= c)
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// How many indexes of `a` are also in `b`.
fn overlap(a: &Intervals, b: &Intervals) -> i32 {
    let mut n = 0;
    for x in &a.0 {
        for y in &b.0 {
            let o = x.last.min(y.last) - x.first.max(y.first) + 1;
            if o > 0 {
                n += o;
            }
        }
    }
    n
}

/// Consecutive failures since the last success and when the last one was
/// (upstream's `backoffRecord`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: i32,
    pub last_failure_time: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after newly finished pods (their finish times).
    pub fn next(&self, mut succeeded: Vec<Timestamp>, mut failed: Vec<Timestamp>) -> BackoffRecord {
        succeeded.sort();
        failed.sort();
        match (succeeded.last(), failed.last()) {
            (None, None) => self.clone(),
            (None, Some(&last)) => BackoffRecord {
                failures_after_last_success: self.failures_after_last_success + failed.len() as i32,
                last_failure_time: Some(last),
            },
            (Some(_), None) => BackoffRecord::default(),
            (Some(&last_success), Some(_)) => {
                let after: Vec<&Timestamp> = failed.iter().filter(|t| **t > last_success).collect();
                BackoffRecord {
                    failures_after_last_success: after.len() as i32,
                    last_failure_time: after.last().map(|t| **t),
                }
            }
        }
    }

    /// How long pod creation must still wait at `now`.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        remaining_for_failures(self.failures_after_last_success, self.last_failure_time, now)
    }
}

/// 10 s after one failure, doubling per further failure, at most 6 min,
/// counted from the last failure (upstream's
/// `getRemainingTimeForFailuresCount`).
pub fn remaining_for_failures(failures: i32, last_failure: Option<Timestamp>, now: Timestamp) -> Duration {
    let (true, Some(last)) = (failures > 0, last_failure) else {
        return Duration::ZERO;
    };
    let mut backoff = DEFAULT_BACKOFF;
    for _ in 1..failures {
        backoff *= 2;
        if backoff >= MAX_BACKOFF {
            backoff = MAX_BACKOFF;
            break;
        }
    }
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}

/// When a pod finished: the last container's end, else when Ready turned
/// False, else its deletion time less its grace period, else its creation.
pub fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let statuses = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    if !statuses.is_empty() {
        let ends: Option<Vec<Timestamp>> = statuses
            .iter()
            .map(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.finished_at.as_ref())
                    .map(|t| t.0)
            })
            .collect();
        if let Some(t) = ends.and_then(|e| e.into_iter().max()) {
            return t;
        }
    }
    if let Some((false, Some(t))) = util::ready_condition(pod) {
        return t;
    }
    if let Some(d) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return d.0 - jiff::SignedDuration::from_secs(grace);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn phase_rank(pod: &Pod) -> u8 {
    match util::phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Upstream's `controller.ActivePods` order: the pods to remove first come
/// first (unscheduled, pending, not ready, ready for less time, more
/// restarts, newer).
pub fn active_pods_order(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| util::is_pod_ready(a).cmp(&util::is_pod_ready(b)))
        .then_with(|| {
            if util::is_pod_ready(a) && util::is_pod_ready(b) {
                // Ready for less time first: later transition first.
                let t = |p: &Pod| util::ready_condition(p).and_then(|(_, t)| t);
                t(b).cmp(&t(a))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| util::restarts(b).cmp(&util::restarts(a)))
        .then_with(|| {
            let c = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            // Newer (or unknown) creation first.
            match (c(a), c(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn failed_with(code: i32, conditions: serde_json::Value) -> Pod {
        pod(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Failed",
            "conditions": conditions,
            "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code}}}]}}),
        )
    }

    #[test]
    fn failure_policy_first_matching_rule_decides() {
        let policy: PodFailurePolicy = serde_json::from_value(json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1, 42]}},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}},
        ]}))
        .unwrap();
        let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
        // (pod, expected action, counted, fails the job, why)
        let cases = [
            (
                failed_with(42, disrupted.clone()),
                Some(Action::Ignore),
                false,
                false,
                "the condition rule comes first",
            ),
            (
                failed_with(42, json!([])),
                Some(Action::FailJob),
                true,
                true,
                "exit code 42 fails the job",
            ),
            (
                failed_with(3, json!([])),
                Some(Action::Count),
                true,
                false,
                "NotIn matches other codes",
            ),
            (
                failed_with(1, json!([])),
                Some(Action::FailIndex),
                true,
                false,
                "exit code 1 fails the index",
            ),
            (
                failed_with(0, json!([])),
                None,
                true,
                false,
                "exit code 0 never matches",
            ),
        ];
        for (p, action, counted, fails_job, why) in cases {
            let m = match_pod_failure_policy(Some(&policy), &p);
            assert_eq!(m.action, action, "{why}");
            assert_eq!(m.count_failed, counted, "{why}");
            assert_eq!(m.fail_job_message.is_some(), fails_job, "{why}");
        }
        let m = match_pod_failure_policy(Some(&policy), &failed_with(42, json!([])));
        assert_eq!(
            m.fail_job_message.unwrap(),
            "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
        );
        assert_eq!(match_pod_failure_policy(None, &failed_with(42, json!([]))), NO_MATCH);
    }

    #[test]
    fn success_policy_rules() {
        let policy: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0,2-3"},
            {"succeededIndexes": "5-9", "succeededCount": 2},
            {"succeededCount": 7},
        ]}))
        .unwrap();
        // (succeeded, expected, why)
        let cases = [
            ("0,2", None, "index 3 missing"),
            ("0-3", Some("Matched rules at index 0"), "all of 0,2-3 succeeded"),
            ("6,8", Some("Matched rules at index 1"), "two of 5-9 succeeded"),
            (
                "1-4,9-11",
                Some("Matched rules at index 2"),
                "seven succeeded, the other rules unmet",
            ),
            ("", None, "nothing succeeded"),
        ];
        for (succeeded, want, why) in cases {
            let got = match_success_policy(Some(&policy), 12, &Intervals::parse(succeeded, 12));
            assert_eq!(got.as_deref(), want, "{why}");
        }
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_six_minutes() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        // (failures, seconds since the last failure, remaining seconds, why)
        let cases = [
            (0, 0, 0, "no failure, no wait"),
            (1, 0, 10, "first failure: 10 s"),
            (1, 4, 6, "counted from the last failure"),
            (2, 0, 20, "doubling"),
            (3, 0, 40, "doubling again"),
            (6, 0, 320, "10 s * 2^5"),
            (7, 0, 360, "capped at 6 min"),
            (30, 100, 260, "still capped"),
            (1, 11, 0, "waited long enough"),
        ];
        for (failures, since, want, why) in cases {
            let got = remaining_for_failures(failures, Some(t0), at(since));
            assert_eq!(got, Duration::from_secs(want), "{why}");
        }
    }

    #[test]
    fn backoff_record_counts_failures_after_the_last_success() {
        let t = |s: i64| "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_secs(s);
        let r = BackoffRecord::default().next(vec![], vec![t(5), t(1)]);
        assert_eq!(r.failures_after_last_success, 2);
        assert_eq!(r.last_failure_time, Some(t(5)));
        let r2 = r.next(vec![], vec![t(9)]);
        assert_eq!((r2.failures_after_last_success, r2.last_failure_time), (3, Some(t(9))));
        let r3 = r2.next(vec![t(10)], vec![t(8), t(11), t(12)]);
        assert_eq!((r3.failures_after_last_success, r3.last_failure_time), (2, Some(t(12))));
        assert_eq!(r3.next(vec![t(20)], vec![]), BackoffRecord::default());
        assert_eq!(r3.next(vec![], vec![]), r3);
    }

    #[test]
    fn removal_order_prefers_early_stage_pods() {
        let unscheduled = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Pending"}}));
        let pending = pod(
            json!({"metadata": {"name": "b"}, "spec": {"nodeName": "n", "containers": []},
            "status": {"phase": "Pending"}}),
        );
        let running = pod(
            json!({"metadata": {"name": "c"}, "spec": {"nodeName": "n", "containers": []},
            "status": {"phase": "Running"}}),
        );
        let ready = pod(
            json!({"metadata": {"name": "d"}, "spec": {"nodeName": "n", "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        let mut pods = [ready.clone(), running.clone(), unscheduled.clone(), pending.clone()];
        pods.sort_by(active_pods_order);
        let names: Vec<&str> = pods.iter().map(|p| util::name(&p.metadata)).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }

    #[test]
    fn finish_time_prefers_container_ends() {
        let p = pod(
            json!({"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Failed",
              "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:09Z"}],
              "containerStatuses": [
                {"name": "a", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:00:05Z"}}},
                {"name": "b", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:00:07Z"}}}]}}),
        );
        assert_eq!(finished_time(&p).to_string(), "2026-01-01T00:00:07Z");
        let q = pod(
            json!({"metadata": {"name": "q", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Failed",
              "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:09Z"}]}}),
        );
        assert_eq!(finished_time(&q).to_string(), "2026-01-01T00:00:09Z");
    }
}
