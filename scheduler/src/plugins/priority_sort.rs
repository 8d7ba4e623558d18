//! PrioritySort: the active queue serves higher priority first, then the
//! pod that has waited longest.

use std::time::Instant;

use crate::framework::{Plugin, PodInfo, QueueSortPlugin};

pub const NAME: &str = "PrioritySort";

pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        Some(self)
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &PodInfo, a_added: Instant, b: &PodInfo, b_added: Instant) -> bool {
        a.priority > b.priority || (a.priority == b.priority && a_added < b_added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn less() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let lo = pod(json!({"metadata": {"name": "lo"}, "spec": {"containers": [], "priority": 1}}));
        let hi = pod(json!({"metadata": {"name": "hi"}, "spec": {"containers": [], "priority": 100}}));
        assert!(
            PrioritySort.less(&hi, t1, &lo, t0),
            "higher priority first, even if newer"
        );
        assert!(!PrioritySort.less(&lo, t0, &hi, t1));
        assert!(PrioritySort.less(&lo, t0, &lo, t1), "same priority: older first");
        assert!(!PrioritySort.less(&lo, t1, &lo, t0));
    }
}
