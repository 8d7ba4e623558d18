//! Events as upstream's controllers record them: core/v1 Events with
//! `source.component` set to the controller's name, written in the
//! background (a sync never waits for its events), and repeats of the same
//! event on the same object folded into one Event whose `count` and
//! `lastTimestamp` grow (upstream's `EventCorrelator`).

use std::collections::HashMap;
use std::sync::Arc;

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
        let (tx, rx) = mpsc::unbounded_channel();
        let component: Arc<str> = component.into();
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(write_events(client, component.clone(), rx));
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

async fn write_events(client: kube::Client, component: Arc<str>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    // (namespace, uid, type, reason, message) -> (event name, count).
    type Id = (String, String, String, String, String);
    let seen: Mutex<HashMap<Id, (String, i32)>> = Mutex::new(HashMap::new());
    while let Some(p) = rx.recv().await {
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
            p.message.clone(),
        );
        let prior = seen.lock().get(&id).cloned();
        if let Some((name, count)) = prior {
            let patch = json!({"count": count + 1, "lastTimestamp": time});
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
                host: None,
            }),
            reporting_component: Some(component.to_string()),
            reporting_instance: Some(component.to_string()),
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
