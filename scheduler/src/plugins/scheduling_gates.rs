//! SchedulingGates: a pod with `spec.schedulingGates` waits outside the
//! active queue until its gates are removed.

use crate::framework::{ClusterEvent, Plugin, PodInfo, PreEnqueuePlugin, Status};

pub const NAME: &str = "SchedulingGates";

pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::UnscheduledPodUpdate]
    }
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        let gates: Vec<&str> = pod
            .spec()
            .scheduling_gates
            .iter()
            .flatten()
            .map(|g| g.name.as_str())
            .collect();
        if gates.is_empty() {
            Status::success()
        } else {
            Status::unresolvable(format!("waiting for scheduling gates: [{}]", gates.join(" ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;
    use serde_json::json;

    #[test]
    fn pre_enqueue() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        assert!(SchedulingGates.pre_enqueue(&p).is_success());
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "schedulingGates": [{"name": "foo"}, {"name": "bar"}]}}),
        );
        assert_eq!(
            SchedulingGates.pre_enqueue(&p),
            Status::unresolvable("waiting for scheduling gates: [foo bar]")
        );
    }
}
