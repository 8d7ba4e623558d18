//! The scheduler's Prometheus metrics, with upstream's names and labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::queue::PendingCounts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptsLabel {
    pub attempts: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtensionPointLabels {
    pub extension_point: &'static str,
    pub status: &'static str,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: &'static str,
    pub extension_point: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IncomingLabels {
    pub queue: &'static str,
    pub event: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s, as upstream's attempt-duration buckets.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn sli_histogram() -> Histogram {
    // 10 ms … ~5 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

fn plugin_histogram() -> Histogram {
    // 10 µs × 1.5^i, as upstream's.
    Histogram::new(exponential_buckets(0.00001, 1.5, 20))
}

fn ext_histogram() -> Histogram {
    // 0.1 ms … ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    pub pending_pods: Family<QueueLabel, Gauge>,
    pub schedule_attempts: Family<ResultLabels, Counter>,
    pub attempt_duration: Family<ResultLabels, Histogram, fn() -> Histogram>,
    pub sli_duration: Family<AttemptsLabel, Histogram, fn() -> Histogram>,
    pub extension_point_duration: Family<ExtensionPointLabels, Histogram, fn() -> Histogram>,
    pub plugin_duration: Family<PluginLabels, Histogram, fn() -> Histogram>,
    pub queue_incoming_pods: Family<IncomingLabels, Counter>,
    pub preemption_attempts: Counter,
    pub preemption_victims: Histogram,
}

impl Metrics {
    /// Registers every metric under `scheduler_` in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            pending_pods: Family::default(),
            schedule_attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(latency_histogram),
            sli_duration: Family::new_with_constructor(sli_histogram),
            extension_point_duration: Family::new_with_constructor(ext_histogram),
            plugin_duration: Family::new_with_constructor(plugin_histogram),
            queue_incoming_pods: Family::default(),
            preemption_attempts: Counter::default(),
            preemption_victims: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
        };
        let r = registry.sub_registry_with_prefix("scheduler");
        r.register(
            "pending_pods",
            "Number of pending pods, by the queue type.",
            m.pending_pods.clone(),
        );
        r.register(
            "schedule_attempts",
            "Number of attempts to schedule pods, by the result.",
            m.schedule_attempts.clone(),
        );
        r.register(
            "scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            m.attempt_duration.clone(),
        );
        r.register(
            "pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
            m.sli_duration.clone(),
        );
        r.register(
            "framework_extension_point_duration_seconds",
            "Latency for running all plugins of a specific extension point.",
            m.extension_point_duration.clone(),
        );
        r.register(
            "plugin_execution_duration_seconds",
            "Duration for running a plugin at a specific extension point.",
            m.plugin_duration.clone(),
        );
        r.register(
            "queue_incoming_pods",
            "Number of pods added to scheduling queues by event and queue type.",
            m.queue_incoming_pods.clone(),
        );
        r.register(
            "preemption_attempts",
            "Total preemption attempts in the cluster till now",
            m.preemption_attempts.clone(),
        );
        r.register(
            "preemption_victims",
            "Number of selected preemption victims",
            m.preemption_victims.clone(),
        );
        m
    }

    pub fn set_pending(&self, c: PendingCounts) {
        for (queue, n) in [
            ("active", c.active),
            ("backoff", c.backoff),
            ("unschedulable", c.unschedulable),
            ("gated", c.gated),
        ] {
            self.pending_pods.get_or_create(&QueueLabel { queue }).set(n as i64);
        }
    }

    pub fn attempt(&self, result: &'static str, profile: &str, seconds: f64) {
        let l = ResultLabels {
            result,
            profile: profile.to_string(),
        };
        self.schedule_attempts.get_or_create(&l).inc();
        self.attempt_duration.get_or_create(&l).observe(seconds);
    }

    pub fn extension_point(&self, point: &'static str, status: &'static str, profile: &str, seconds: f64) {
        self.extension_point_duration
            .get_or_create(&ExtensionPointLabels {
                extension_point: point,
                status,
                profile: profile.to_string(),
            })
            .observe(seconds);
    }
}

impl crate::framework::runtime::Recorder for Metrics {
    fn extension_point(&self, point: &'static str, status: &'static str, seconds: f64) {
        // Every profile reports here; the profile is not known at that depth.
        Metrics::extension_point(self, point, status, "all", seconds);
    }

    fn plugin(&self, plugin: &'static str, point: &'static str, status: &'static str, seconds: f64) {
        self.plugin_duration
            .get_or_create(&PluginLabels {
                plugin,
                extension_point: point,
                status,
            })
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_upstreams_names() {
        let mut reg = Registry::default();
        let m = Metrics::new(&mut reg);
        m.attempt("scheduled", "default-scheduler", 0.002);
        m.set_pending(PendingCounts {
            active: 1,
            ..Default::default()
        });
        m.sli_duration
            .get_or_create(&AttemptsLabel { attempts: "1".into() })
            .observe(0.5);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1"),
            "{out}"
        );
        assert!(out.contains("scheduler_pending_pods{queue=\"active\"} 1"), "{out}");
        assert!(
            out.contains("scheduler_scheduling_attempt_duration_seconds_bucket"),
            "{out}"
        );
        assert!(
            out.contains("scheduler_pod_scheduling_sli_duration_seconds_count{attempts=\"1\"} 1"),
            "{out}"
        );
    }
}
