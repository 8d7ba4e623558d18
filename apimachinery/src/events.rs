//! The two Event APIs over one stored form, as upstream: `events.k8s.io/v1`
//! Events are kept as `core/v1` Events, so that either API (and `kubectl
//! describe`, which reads core events) sees every event.

use serde_json::{Map, Value};

/// Field renames between `core/v1` and `events.k8s.io/v1` (core, events).
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Fields with the same name and shape in both.
const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "reportingInstance",
    "action",
    "reason",
    "related",
    "type",
];

fn convert(obj: Value, api_version: &str, to_events: bool) -> Value {
    let Value::Object(mut from) = obj else {
        return obj;
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    for f in SHARED {
        if let Some(v) = from.remove(*f) {
            out.insert((*f).into(), v);
        }
    }
    for (core, events) in RENAMES {
        let (src, dst) = if to_events { (core, events) } else { (events, core) };
        if let Some(v) = from.remove(*src) {
            out.insert((*dst).into(), v);
        }
    }
    Value::Object(out)
}

/// A stored `core/v1` Event as an `events.k8s.io/v1` Event. A core event
/// without `eventTime` shows it as null, as upstream (Go's zero MicroTime).
pub fn core_to_events(obj: Value) -> Value {
    let mut ev = convert(obj, "events.k8s.io/v1", true);
    if let Some(o) = ev.as_object_mut() {
        o.entry("eventTime").or_insert(Value::Null);
    }
    ev
}

/// An `events.k8s.io/v1` Event in its stored `core/v1` form.
pub fn events_to_core(obj: Value) -> Value {
    convert(obj, "v1", false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_round_trip_through_the_core_form() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "p.1", "namespace": "default"},
            "eventTime": "2026-01-02T03:04:05.000000Z",
            "reportingController": "default-scheduler", "reportingInstance": "s-1",
            "action": "Binding", "reason": "Scheduled", "type": "Normal",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
            "note": "Successfully assigned default/p to n1",
            "series": {"count": 2, "lastObservedTime": "2026-01-02T03:04:06.000000Z"},
            "deprecatedCount": 3,
        });
        let core = events_to_core(ev.clone());
        assert_eq!(
            core,
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "p.1", "namespace": "default"},
                "eventTime": "2026-01-02T03:04:05.000000Z",
                "reportingComponent": "default-scheduler", "reportingInstance": "s-1",
                "action": "Binding", "reason": "Scheduled", "type": "Normal",
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
                "message": "Successfully assigned default/p to n1",
                "series": {"count": 2, "lastObservedTime": "2026-01-02T03:04:06.000000Z"},
                "count": 3,
            })
        );
        assert_eq!(core_to_events(core), ev);
    }
}
