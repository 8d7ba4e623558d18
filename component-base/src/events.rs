//! Events as upstream's components record them: core/v1 Events with
//! `source.component` set to the component's name (and `source.host` to
//! the node, for the kubelet), written in the
//! background (a sync never waits for its events), through upstream's
//! `EventCorrelator`:
//!
//! - a spam filter: per involved object, a token bucket of 25 events
//!   refilled one per 5 minutes; events beyond it are dropped;
//! - aggregation: once 10 events of one type and reason with different
//!   messages hit an object within 10 minutes, later ones fold into one
//!   Event whose message is `(combined from similar events): <latest>`;
//! - repeats of the same event fold into one Event whose `count` and
//!   `lastTimestamp` grow.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// A reference to `o` for `involvedObject` and `ownerReferences`' kin.
pub fn object_ref<K: Resource<DynamicType = ()>>(o: &K) -> ObjectReference {
    let m = o.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: None,
    }
}

struct Pending {
    reference: ObjectReference,
    type_: String,
    reason: String,
    message: String,
}

/// Records events for one controller (cheap to clone).
#[derive(Clone)]
pub struct Recorder {
    component: Arc<str>,
    tx: mpsc::UnboundedSender<Pending>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Self::with_host(client, component, None)
    }

    /// A recorder whose events name `host` as their source (the kubelet's
    /// node).
    pub fn with_host(client: kube::Client, component: &str, host: Option<&str>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let component: Arc<str> = component.into();
        let host: Option<Arc<str>> = host.map(Into::into);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(write_events(client, component.clone(), host, rx));
        }
        Recorder { component, tx }
    }

    pub fn component(&self) -> &str {
        &self.component
    }

    /// Records an event on `o`.
    pub fn event<K: Resource<DynamicType = ()>>(&self, o: &K, type_: &str, reason: &str, message: impl Into<String>) {
        self.event_on(object_ref(o), type_, reason, message);
    }

    /// Records an event on the object `reference` names.
    pub fn event_on(&self, reference: ObjectReference, type_: &str, reason: &str, message: impl Into<String>) {
        let _ = self.tx.send(Pending {
            reference,
            type_: type_.to_string(),
            reason: reason.to_string(),
            message: message.into(),
        });
    }
}

const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_PER_SEC: f64 = 1.0 / 300.0;
const AGGREGATE_AFTER: usize = 10;
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
const CACHE_LIMIT: usize = 4096;

/// What the correlator makes of an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Over the object's budget: not written.
    Drop,
    /// Written with this message; `aggregate` events of one object, type
    /// and reason share one Event.
    Emit { message: String, aggregate: bool },
}

/// Upstream's spam filter and aggregator, over an injected clock.
#[derive(Default)]
pub struct Correlator {
    /// involved uid -> (tokens, last refill)
    buckets: HashMap<String, (f64, Instant)>,
    /// (uid, type, reason) -> (distinct messages, window start)
    similar: HashMap<(String, String, String), (HashSet<String>, Instant)>,
}

impl Correlator {
    pub fn observe(&mut self, now: Instant, uid: &str, type_: &str, reason: &str, message: &str) -> Verdict {
        if self.buckets.len() > CACHE_LIMIT {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(uid.to_string()).or_insert((SPAM_BURST, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * SPAM_REFILL_PER_SEC).min(SPAM_BURST);
        *last = now;
        if *tokens < 1.0 {
            return Verdict::Drop;
        }
        *tokens -= 1.0;
        if self.similar.len() > CACHE_LIMIT {
            self.similar.clear();
        }
        let (messages, since) = self
            .similar
            .entry((uid.to_string(), type_.to_string(), reason.to_string()))
            .or_insert_with(|| (HashSet::new(), now));
        if now.duration_since(*since) > AGGREGATE_WINDOW {
            messages.clear();
            *since = now;
        }
        messages.insert(message.to_string());
        if messages.len() >= AGGREGATE_AFTER {
            Verdict::Emit {
                message: format!("(combined from similar events): {message}"),
                aggregate: true,
            }
        } else {
            Verdict::Emit {
                message: message.to_string(),
                aggregate: false,
            }
        }
    }
}

async fn write_events(
    client: kube::Client,
    component: Arc<str>,
    host: Option<Arc<str>>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    // (namespace, uid, type, reason, message or "" when aggregated) ->
    // (event name, count).
    type Id = (String, String, String, String, String);
    let seen: Mutex<HashMap<Id, (String, i32)>> = Mutex::new(HashMap::new());
    let mut correlator = Correlator::default();
    while let Some(mut p) = rx.recv().await {
        let uid = p.reference.uid.clone().unwrap_or_default();
        let aggregate = match correlator.observe(Instant::now(), &uid, &p.type_, &p.reason, &p.message) {
            Verdict::Drop => continue,
            Verdict::Emit { message, aggregate } => {
                p.message = message;
                aggregate
            }
        };
        let ns = p
            .reference
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        let now = jiff::Timestamp::now();
        let time = Time(now);
        let id = (
            ns.clone(),
            p.reference.uid.clone().unwrap_or_default(),
            p.type_.clone(),
            p.reason.clone(),
            if aggregate { String::new() } else { p.message.clone() },
        );
        let prior = seen.lock().get(&id).cloned();
        if let Some((name, count)) = prior {
            let patch = json!({"count": count + 1, "lastTimestamp": time, "message": p.message});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                seen.lock().insert(id, (name, count + 1));
                continue;
            }
        }
        let name = format!(
            "{}.{:x}",
            p.reference.name.clone().unwrap_or_default(),
            now.as_nanosecond()
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: p.reference,
            reason: Some(p.reason),
            message: Some(p.message),
            type_: Some(p.type_),
            count: Some(1),
            first_timestamp: Some(time.clone()),
            last_timestamp: Some(time),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(component.to_string()),
                host: host.as_deref().map(str::to_string),
            }),
            reporting_component: Some(component.to_string()),
            reporting_instance: Some(host.as_deref().unwrap_or(&component).to_string()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                let mut s = seen.lock();
                if s.len() > 4096 {
                    s.clear();
                }
                s.insert(id, (name, 1));
            }
            Err(e) => tracing::debug!(error = %e, "recording an event failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_gets_25_events_then_one_per_5_minutes() {
        let mut c = Correlator::default();
        let t0 = Instant::now();
        let emitted = (0..40)
            .filter(|i| c.observe(t0, "rs", NORMAL, "SuccessfulCreate", &format!("Created pod: p{i}")) != Verdict::Drop)
            .count();
        assert_eq!(emitted, 25);
        assert_eq!(
            c.observe(t0, "other", NORMAL, "X", "m"),
            Verdict::Emit {
                message: "m".into(),
                aggregate: false
            }
        );
        assert_eq!(
            c.observe(t0 + Duration::from_secs(299), "rs", NORMAL, "R", "m"),
            Verdict::Drop
        );
        assert_ne!(
            c.observe(t0 + Duration::from_secs(301), "rs", NORMAL, "R", "m"),
            Verdict::Drop
        );
    }

    #[test]
    fn the_tenth_distinct_message_starts_the_combined_event() {
        let mut c = Correlator::default();
        let t0 = Instant::now();
        let verdicts: Vec<Verdict> = (0..11)
            .map(|i| c.observe(t0, "rs", NORMAL, "SuccessfulCreate", &format!("Created pod: p{i}")))
            .collect();
        assert_eq!(
            verdicts[8],
            Verdict::Emit {
                message: "Created pod: p8".into(),
                aggregate: false
            }
        );
        assert_eq!(
            verdicts[9],
            Verdict::Emit {
                message: "(combined from similar events): Created pod: p9".into(),
                aggregate: true
            }
        );
        // Repeating one message is not "similar": it folds into its count.
        let mut c = Correlator::default();
        for _ in 0..20 {
            assert_eq!(
                c.observe(t0, "rs", WARNING, "FailedCreate", "quota"),
                Verdict::Emit {
                    message: "quota".into(),
                    aggregate: false
                }
            );
        }
        // The window restarts after 10 minutes.
        let mut c = Correlator::default();
        for i in 0..9 {
            c.observe(t0, "x", NORMAL, "R", &format!("m{i}"));
        }
        assert_eq!(
            c.observe(t0 + Duration::from_secs(601), "x", NORMAL, "R", "m9"),
            Verdict::Emit {
                message: "m9".into(),
                aggregate: false
            }
        );
    }
}
