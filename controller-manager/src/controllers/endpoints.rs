//! `endpoints-controller` (upstream's `pkg/controller/endpoint`): an
//! Endpoints object named after every Service with a selector, listing
//! the IPs of the selected pods (ready ones under `addresses`, the others
//! under `notReadyAddresses`) with the Service's ports resolved per pod.
//!
//! The helpers both endpoint controllers share (which pods count, port
//! resolution, hostnames, the last-change trigger time) live here too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use parking_lot::Mutex;

use super::StartFn;
use crate::context::Ctx;
use crate::events::{Recorder, WARNING};
use crate::informer::{Change, Informer, key, key_of, split_key};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start);

pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const HEADLESS: &str = "service.kubernetes.io/headless";
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Upstream's `maxCapacity`: addresses an Endpoints object holds at most.
pub const MAX_CAPACITY: usize = 1000;

// ---------------------------------------------------------------------
// Shared decisions (both endpoint controllers).
// ---------------------------------------------------------------------

/// Upstream's `ShouldPodBeInEndpoints`: not terminal, has an IP, and not
/// terminating unless `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(util::phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    let status = pod.status.as_ref();
    let has_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty())
        || status
            .and_then(|s| s.pod_ips.as_ref())
            .is_some_and(|ips| !ips.is_empty());
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The pod's IPv4 address (services here are single-stack IPv4).
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let ips = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .chain(status.pod_ip.as_deref());
    ips.filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(String::from)
        .next()
}

/// Upstream's `podutil.FindPort`: a numbered targetPort as is (the
/// service port when unset), a named one from the pod's container ports
/// with the same name and protocol.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == proto)
                .map(|p| p.container_port)
        }
    }
}

/// Upstream's `ShouldSetHostname`: the pod names a hostname and its
/// subdomain is this service.
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.as_deref() == Some(util::name(&svc.metadata))
        && util::namespace(&pod.metadata) == util::namespace(&svc.metadata)
}

/// Upstream's `IsServiceIPSet`: not headless.
pub fn is_service_ip_set(svc: &Service) -> bool {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    !ip.is_empty() && ip != "None"
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The Service's selector; `None` for a selector-less Service (its
/// endpoints are someone else's business).
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref()
}

pub fn selector_matches(sel: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pods of `namespace` a Service's selector picks.
pub fn selected_pods(pods: &Informer<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let Some(sel) = service_selector(svc) else {
        return vec![];
    };
    pods.list_namespace(util::namespace(&svc.metadata))
        .into_iter()
        .filter(|p| selector_matches(sel, p.metadata.labels.as_ref()))
        .collect()
}

/// Keys of the Services (with a selector) in the pod's namespace that
/// select it.
pub fn services_for_pod(services: &Informer<Service>, pod: &Pod) -> Vec<String> {
    services
        .list_namespace(util::namespace(&pod.metadata))
        .iter()
        .filter(|s| service_selector(s).is_some_and(|sel| selector_matches(sel, pod.metadata.labels.as_ref())))
        .map(|s| key_of(s.as_ref()))
        .collect()
}

/// What about a pod the endpoint controllers publish; a change to any of
/// it resyncs the pod's Services.
pub fn pod_endpoint_fingerprint(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    format!(
        "{:?}|{:?}|{}|{}|{:?}|{:?}|{:?}|{:?}|{}",
        pod.status.as_ref().map(|s| (&s.pod_ip, &s.pod_ips)),
        pod.metadata.deletion_timestamp,
        util::is_pod_ready(pod),
        util::phase(pod),
        spec.and_then(|s| s.node_name.as_ref()),
        spec.and_then(|s| s.hostname.as_ref()),
        spec.and_then(|s| s.subdomain.as_ref()),
        spec.map(|s| s.containers.iter().map(|c| &c.ports).collect::<Vec<_>>()),
        pod.metadata.uid.as_deref().unwrap_or(""),
    )
}

/// Registers pod and service handlers that queue the affected Services'
/// keys (shared by both endpoint controllers).
pub fn queue_services_on_changes(
    pods: &Informer<Pod>,
    services: &Arc<Informer<Service>>,
    queue: &Arc<crate::workqueue::Queue>,
) {
    let q = queue.clone();
    services.add_handler(move |c| q.add(key_of(c.object().as_ref())));
    let (q, svcs) = (queue.clone(), services.clone());
    pods.add_handler(move |c| {
        let mut keys = services_for_pod(&svcs, c.object());
        if let Change::Update(old, new) = c {
            if old.metadata.labels != new.metadata.labels {
                keys.extend(services_for_pod(&svcs, old));
            } else if pod_endpoint_fingerprint(old) == pod_endpoint_fingerprint(new) {
                return;
            }
        }
        for k in keys {
            q.add(k);
        }
    });
}

/// Upstream's `TriggerTimeTracker`: the last-change trigger time of an
/// endpoints object is the earliest change (a pod's Ready transition, the
/// Service's creation) not yet published; for a Service seen the first
/// time, its creation.
#[derive(Default)]
pub struct TriggerTimeTracker {
    states: Mutex<HashMap<String, TriggerState>>,
}

#[derive(Clone, Default)]
struct TriggerState {
    pods: HashMap<String, jiff::Timestamp>,
    service: Option<jiff::Timestamp>,
}

impl TriggerTimeTracker {
    pub fn compute(&self, svc: &Service, pods: &[Arc<Pod>]) -> Option<jiff::Timestamp> {
        let skey = key_of(svc);
        let mut states = self.states.lock();
        let known = states.get(&skey).cloned();
        let state = known.clone().unwrap_or_default();
        let mut min: Option<jiff::Timestamp> = None;
        let mut keep = |t: jiff::Timestamp| min = Some(min.map_or(t, |m| m.min(t)));
        let mut pod_times = HashMap::new();
        for p in pods {
            if let Some((_, Some(t))) = util::ready_condition(p) {
                let name = util::name(&p.metadata).to_string();
                if state.pods.get(&name).is_none_or(|last| t > *last) {
                    keep(t);
                }
                pod_times.insert(name, t);
            }
        }
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(t) = created
            && state.service.is_none_or(|last| t > last)
        {
            keep(t);
        }
        states.insert(
            skey,
            TriggerState {
                pods: pod_times,
                service: created,
            },
        );
        if known.is_none() { created } else { min }
    }

    pub fn delete_service(&self, namespace: &str, name: &str) {
        self.states.lock().remove(&key(namespace, name));
    }
}

/// Go's RFC3339Nano rendering of a trigger time.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.to_string()
}

// ---------------------------------------------------------------------
// Endpoints decisions.
// ---------------------------------------------------------------------

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The subsets the Service's pods give (upstream's per-pod loop of
/// `syncService`, then `RepackSubsets`).
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let tolerate_unready = publish_not_ready(svc);
    let svc_ports = svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let mut subsets = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let mut addr = EndpointAddress {
            ip,
            node_name: Some(pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()),
            target_ref: Some(target_ref(pod)),
            hostname: None,
        };
        if should_set_hostname(pod, svc) {
            addr.hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone());
        }
        let ready = tolerate_unready || util::is_pod_ready(pod);
        let subset = |ports: Vec<EndpointPort>| {
            if ready {
                EndpointSubset {
                    addresses: Some(vec![addr.clone()]),
                    ports: Some(ports),
                    ..Default::default()
                }
            } else {
                EndpointSubset {
                    not_ready_addresses: Some(vec![addr.clone()]),
                    ports: Some(ports),
                    ..Default::default()
                }
            }
        };
        if svc_ports.is_empty() {
            if is_headless(svc) {
                subsets.push(subset(vec![]));
            }
            continue;
        }
        for sp in &svc_ports {
            let Some(port) = find_port(pod, sp) else {
                tracing::debug!(pod = %key_of(pod.as_ref()), port = ?sp.name, "no such port on the pod");
                continue;
            };
            subsets.push(subset(vec![EndpointPort {
                name: sp.name.clone(),
                port,
                protocol: sp.protocol.clone(),
                app_protocol: sp.app_protocol.clone(),
            }]));
        }
    }
    repack_subsets(&subsets)
}

type AddrKey = (String, String);
type PortKey = (Option<String>, i32, Option<String>, Option<String>);
/// A port (None: the sentinel for subsets without ports) and its
/// addresses with their readiness.
type PortAddrs = (Option<EndpointPort>, BTreeMap<AddrKey, bool>);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (
        a.ip.clone(),
        a.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default(),
    )
}

fn port_key(p: &EndpointPort) -> PortKey {
    (p.name.clone(), p.port, p.protocol.clone(), p.app_protocol.clone())
}

/// Upstream's `RepackSubsets`: one subset per distinct set of addresses,
/// carrying every port those addresses offer; an address ready for a port
/// in any input subset is ready. Sorted (addresses by IP and UID).
pub fn repack_subsets(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut all: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    // Port (None: the sentinel for subsets without ports) -> address -> ready.
    let mut by_port: BTreeMap<Option<PortKey>, PortAddrs> = BTreeMap::new();
    for s in subsets {
        let ports: Vec<Option<&EndpointPort>> = match s.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ps) => ps.iter().map(Some).collect(),
        };
        for port in ports {
            let entry = by_port
                .entry(port.map(port_key))
                .or_insert_with(|| (port.cloned(), BTreeMap::new()));
            let addrs = s
                .addresses
                .iter()
                .flatten()
                .map(|a| (a, true))
                .chain(s.not_ready_addresses.iter().flatten().map(|a| (a, false)));
            for (a, ready) in addrs {
                let k = addr_key(a);
                all.entry(k.clone()).or_insert_with(|| a.clone());
                let r = entry.1.entry(k).or_insert(ready);
                if !*r {
                    *r = ready;
                }
            }
        }
    }
    // Group ports by identical address sets.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (_, (port, addrs)) in by_port {
        let set: Vec<(AddrKey, bool)> = addrs.into_iter().collect();
        let ports = groups.entry(set).or_default();
        if let Some(p) = port {
            ports.push(p);
        }
    }
    let mut out: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(set, mut ports)| {
            ports.sort_by_key(port_key);
            let pick = |want: bool| -> Option<Vec<EndpointAddress>> {
                let v: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, r)| *r == want)
                    .map(|(k, _)| all[k].clone())
                    .collect();
                (!v.is_empty()).then_some(v)
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    out.sort_by_key(|s| {
        (
            s.ports.iter().flatten().map(port_key).collect::<Vec<_>>(),
            s.addresses.iter().flatten().map(addr_key).collect::<Vec<_>>(),
        )
    });
    out
}

fn count_addresses(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(r, n), s| {
        (
            r + s.addresses.as_ref().map_or(0, Vec::len),
            n + s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    })
}

/// Upstream's `truncateEndpoints`: keeps at most [`MAX_CAPACITY`]
/// addresses, ready ones first, each subset keeping its share (rounded
/// up). Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let (ready, not_ready) = count_addresses(subsets);
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut can_be_added = max;
    for s in subsets.iter_mut() {
        let n = if truncate_ready {
            s.addresses.as_ref().map_or(0, Vec::len)
        } else {
            s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        };
        let share = ((n as f64 / total as f64) * max as f64).ceil() as usize;
        let keep = share.min(can_be_added);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(keep);
                can_be_added -= a.len();
            }
            s.not_ready_addresses = None;
        } else if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(keep);
            can_be_added -= a.len();
        }
    }
    true
}

/// Subsets equal, pod resourceVersions aside.
fn subsets_equal(a: &[EndpointSubset], b: &[EndpointSubset]) -> bool {
    let strip = |s: &[EndpointSubset]| -> Vec<EndpointSubset> {
        let mut s = s.to_vec();
        for sub in &mut s {
            for a in sub
                .addresses
                .iter_mut()
                .flatten()
                .chain(sub.not_ready_addresses.iter_mut().flatten())
            {
                if let Some(r) = a.target_ref.as_mut() {
                    r.resource_version = None;
                }
            }
            if sub.addresses.as_ref().is_some_and(Vec::is_empty) {
                sub.addresses = None;
            }
            if sub.not_ready_addresses.as_ref().is_some_and(Vec::is_empty) {
                sub.not_ready_addresses = None;
            }
            if sub.ports.as_ref().is_some_and(Vec::is_empty) {
                sub.ports = None;
            }
        }
        s
    };
    strip(a) == strip(b)
}

/// The Endpoints the Service should have, or `None` when the current one
/// is right (upstream's comparison: subsets, labels, the capacity
/// annotation; the trigger time alone never causes a write).
pub fn desired_endpoints(
    svc: &Service,
    current: Option<&Endpoints>,
    subsets: Vec<EndpointSubset>,
    trigger: Option<jiff::Timestamp>,
) -> Option<Endpoints> {
    let svc_labels = svc.metadata.labels.clone().unwrap_or_default();
    if let Some(cur) = current {
        let mut compare = cur.metadata.labels.clone().unwrap_or_default();
        compare.remove(HEADLESS);
        let cur_subsets = cur.subsets.clone().unwrap_or_default();
        let (r, n) = count_addresses(&cur_subsets);
        let annotations = cur.metadata.annotations.clone().unwrap_or_default();
        let capacity_ok = r + n <= MAX_CAPACITY && !annotations.contains_key(OVER_CAPACITY);
        if subsets_equal(&cur_subsets, &subsets) && compare == svc_labels && capacity_ok {
            return None;
        }
    }
    let mut ep = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..Default::default()
        },
        ..Default::default()
    });
    let mut subsets = subsets;
    let mut annotations = ep.metadata.annotations.take().unwrap_or_default();
    match trigger {
        Some(t) => annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), format_time(t)),
        None => annotations.remove(LAST_CHANGE_TRIGGER_TIME),
    };
    if truncate(&mut subsets) {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    let mut labels = svc_labels;
    if !is_service_ip_set(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    ep.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    ep.metadata.labels = (!labels.is_empty()).then_some(labels);
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    Some(ep)
}

// ---------------------------------------------------------------------
// The controller.
// ---------------------------------------------------------------------

struct Controller {
    client: kube::Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    triggers: TriggerTimeTracker,
    recorder: Recorder,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        endpoints: ctx.informers.get::<Endpoints>(),
        triggers: TriggerTimeTracker::default(),
        recorder: ctx.recorder("endpoint-controller"),
    });
    let queue = ctx.queue("endpoint");
    queue_services_on_changes(&c.pods, &c.services, &queue);
    let q = queue.clone();
    c.endpoints.add_handler(move |ch| {
        if let Change::Delete(ep) = ch {
            q.add(key_of(ep.as_ref()));
        }
    });
    let workers = ctx.opts.concurrency.endpoint;
    tokio::spawn(async move {
        c.services.wait_synced().await;
        c.pods.wait_synced().await;
        c.endpoints.wait_synced().await;
        // Upstream's checkLeftoverEndpoints: Endpoints whose Service is
        // gone are deleted by the sync.
        for ep in c.endpoints.list() {
            let leader = ep
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
            if !leader {
                queue.add(key_of(ep.as_ref()));
            }
        }
        run_workers(queue, workers, move |k| {
            let c = c.clone();
            async move { c.sync(&k).await }
        });
    });
    Ok(())
}

impl Controller {
    async fn sync(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(k);
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let Some(svc) = self.services.get(ns, name) else {
            self.triggers.delete_service(ns, name);
            if self.endpoints.get(ns, name).is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if util::is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        };
        if is_external_name(&svc) || service_selector(&svc).is_none() {
            return Ok(());
        }
        let pods = selected_pods(&self.pods, &svc);
        let subsets = desired_subsets(&svc, &pods);
        let trigger = self.triggers.compute(&svc, &pods);
        let current = self.endpoints.get(ns, name);
        let Some(ep) = desired_endpoints(&svc, current.as_deref(), subsets, trigger) else {
            return Ok(());
        };
        let res = if current.is_none() {
            api.create(&PostParams::default(), &ep).await
        } else {
            api.replace(name, &PostParams::default(), &ep).await
        };
        match res {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("terminat") => Ok(()),
            Err(e) => {
                let (reason, verb) = if current.is_none() {
                    ("FailedToCreateEndpoint", "create")
                } else {
                    ("FailedToUpdateEndpoint", "update")
                };
                if !util::is_conflict_or_not_found(&e) {
                    self.recorder.event(
                        svc.as_ref(),
                        WARNING,
                        reason,
                        format!("Failed to {verb} endpoint {ns}/{name}: {e}"),
                    );
                }
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        let mut base = json!({"metadata": {"name": "web", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
                              "spec": {"clusterIP": "10.0.0.1", "selector": {"app": "web"}}});
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    pub(crate) fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    pub(crate) fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
        let mut base = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": "2026-01-01T00:00:10Z"}]}
        });
        merge(&mut base, extra);
        Arc::new(serde_json::from_value(base).unwrap())
    }

    fn ips(v: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        v.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn subsets_from_pods() {
        let ports = json!({"spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                                             {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9091}]}});
        struct Case {
            why: &'static str,
            svc: Service,
            pods: Vec<Arc<Pod>>,
            // (ready ips, not-ready ips, ports) per subset.
            want: Vec<(Vec<&'static str>, Vec<&'static str>, Vec<i32>)>,
        }
        let cases = vec![
            Case {
                why: "ready and unready pods share one subset; named and numbered target ports resolve",
                svc: svc(ports.clone()),
                pods: vec![
                    pod("a", "10.1.0.2", true, json!({})),
                    pod("b", "10.1.0.1", false, json!({})),
                ],
                want: vec![(vec!["10.1.0.2"], vec!["10.1.0.1"], vec![8080, 9091])],
            },
            Case {
                why: "publishNotReadyAddresses puts every pod under addresses",
                svc: svc(
                    json!({"spec": {"publishNotReadyAddresses": true, "ports": [{"port": 80, "protocol": "TCP"}]}}),
                ),
                pods: vec![
                    pod("a", "10.1.0.2", true, json!({})),
                    pod("b", "10.1.0.1", false, json!({})),
                ],
                want: vec![(vec!["10.1.0.1", "10.1.0.2"], vec![], vec![80])],
            },
            Case {
                why: "a pod without the named port is left out of that port's subset",
                svc: svc(ports.clone()),
                pods: vec![
                    pod("a", "10.1.0.2", true, json!({})),
                    pod("b", "10.1.0.3", true, json!({"spec": {"containers": [{"name": "c"}]}})),
                ],
                want: vec![
                    (vec!["10.1.0.2"], vec![], vec![8080]),
                    (vec!["10.1.0.2", "10.1.0.3"], vec![], vec![9091]),
                ],
            },
            Case {
                why: "pods without IP, finished or terminating are left out",
                svc: svc(ports.clone()),
                pods: vec![
                    pod("a", "", true, json!({})),
                    pod("b", "10.1.0.3", true, json!({"status": {"phase": "Succeeded"}})),
                    pod(
                        "c",
                        "10.1.0.4",
                        true,
                        json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
                    ),
                ],
                want: vec![],
            },
            Case {
                why: "a headless service without ports lists addresses without ports",
                svc: svc(json!({"spec": {"clusterIP": "None"}})),
                pods: vec![pod("a", "10.1.0.2", true, json!({}))],
                want: vec![(vec!["10.1.0.2"], vec![], vec![])],
            },
            Case {
                why: "a service with an IP and no ports has no endpoints",
                svc: svc(json!({})),
                pods: vec![pod("a", "10.1.0.2", true, json!({}))],
                want: vec![],
            },
        ];
        for c in cases {
            let subsets = desired_subsets(&c.svc, &c.pods);
            let got: Vec<_> = subsets
                .iter()
                .map(|s| {
                    (
                        ips(&s.addresses),
                        ips(&s.not_ready_addresses),
                        s.ports.iter().flatten().map(|p| p.port).collect::<Vec<_>>(),
                    )
                })
                .collect();
            let want: Vec<_> = c
                .want
                .iter()
                .map(|(r, n, p)| (r.clone(), n.clone(), p.clone()))
                .collect();
            assert_eq!(got, want, "{}", c.why);
        }
    }

    #[test]
    fn hostname_when_the_subdomain_is_the_service() {
        let s = svc(json!({"spec": {"ports": [{"port": 80}]}}));
        let p = pod(
            "a",
            "10.1.0.2",
            true,
            json!({"spec": {"hostname": "a", "subdomain": "web"}}),
        );
        let q = pod(
            "b",
            "10.1.0.3",
            true,
            json!({"spec": {"hostname": "b", "subdomain": "other"}}),
        );
        let subsets = desired_subsets(&s, &[p, q]);
        let addrs = subsets[0].addresses.clone().unwrap();
        assert_eq!(addrs[0].hostname.as_deref(), Some("a"));
        assert_eq!(addrs[1].hostname, None);
        assert_eq!(addrs[0].node_name.as_deref(), Some("n1"));
        assert_eq!(addrs[0].target_ref.as_ref().unwrap().uid.as_deref(), Some("uid-a"));
    }

    #[test]
    fn endpoints_labels_annotations_and_no_op_updates() {
        let s =
            svc(json!({"metadata": {"labels": {"team": "a"}}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let pods = vec![pod("a", "10.1.0.2", true, json!({}))];
        let t: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let ep = desired_endpoints(&s, None, desired_subsets(&s, &pods), Some(t)).unwrap();
        let labels = ep.metadata.labels.clone().unwrap();
        assert_eq!(labels.get(HEADLESS).map(String::as_str), Some(""), "headless label");
        assert_eq!(
            labels.get("team").map(String::as_str),
            Some("a"),
            "service labels copied"
        );
        assert_eq!(
            ep.metadata.annotations.as_ref().unwrap()[LAST_CHANGE_TRIGGER_TIME],
            "2026-01-01T00:00:00Z"
        );
        assert!(
            desired_endpoints(&s, Some(&ep), desired_subsets(&s, &pods), None).is_none(),
            "unchanged subsets and labels: no write"
        );
        let more = vec![pods[0].clone(), pod("b", "10.1.0.3", false, json!({}))];
        assert!(desired_endpoints(&s, Some(&ep), desired_subsets(&s, &more), None).is_some());
    }

    #[test]
    fn over_capacity_truncates_not_ready_first() {
        let addr = |i: usize| EndpointAddress {
            ip: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            ..Default::default()
        };
        struct Case {
            why: &'static str,
            ready: usize,
            not_ready: usize,
            want: (usize, usize),
        }
        for c in [
            Case {
                why: "under capacity: untouched",
                ready: 600,
                not_ready: 400,
                want: (600, 400),
            },
            Case {
                why: "not-ready addresses are cut first",
                ready: 900,
                not_ready: 200,
                want: (900, 100),
            },
            Case {
                why: "too many ready: ready cut to 1000, not-ready dropped",
                ready: 1200,
                not_ready: 5,
                want: (1000, 0),
            },
        ] {
            let mut subsets = vec![EndpointSubset {
                addresses: Some((0..c.ready).map(addr).collect()),
                not_ready_addresses: Some((0..c.not_ready).map(|i| addr(i + 5000)).collect()),
                ports: None,
            }];
            let cut = truncate(&mut subsets);
            assert_eq!(cut, c.ready + c.not_ready > MAX_CAPACITY, "{}", c.why);
            assert_eq!(count_addresses(&subsets), c.want, "{}", c.why);
        }
        let s = svc(json!({"spec": {"ports": [{"port": 80}]}}));
        let subsets = vec![EndpointSubset {
            addresses: Some((0..1001).map(addr).collect()),
            ..Default::default()
        }];
        let ep = desired_endpoints(&s, None, subsets, None).unwrap();
        assert_eq!(ep.metadata.annotations.unwrap()[OVER_CAPACITY], "truncated");
    }

    #[test]
    fn repack_merges_ports_and_prefers_ready() {
        let a = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let p = |n: i32| EndpointPort {
            port: n,
            ..Default::default()
        };
        let input = vec![
            EndpointSubset {
                addresses: Some(vec![a("1.1.1.1")]),
                not_ready_addresses: None,
                ports: Some(vec![p(80)]),
            },
            EndpointSubset {
                addresses: Some(vec![a("1.1.1.1")]),
                not_ready_addresses: None,
                ports: Some(vec![p(443)]),
            },
            EndpointSubset {
                addresses: None,
                not_ready_addresses: Some(vec![a("1.1.1.1")]),
                ports: Some(vec![p(80)]),
            },
        ];
        let out = repack_subsets(&input);
        assert_eq!(out.len(), 1, "same address set: one subset");
        assert_eq!(ips(&out[0].addresses), vec!["1.1.1.1"], "ready wins");
        assert_eq!(out[0].ports.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn trigger_time_is_the_earliest_unpublished_change() {
        let tracker = TriggerTimeTracker::default();
        let s = svc(json!({}));
        let p1 = pod("a", "1.1.1.1", true, json!({}));
        let created: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            tracker.compute(&s, std::slice::from_ref(&p1)),
            Some(created),
            "new service: its creation"
        );
        assert_eq!(tracker.compute(&s, std::slice::from_ref(&p1)), None, "nothing changed");
        let p2 = pod(
            "a",
            "1.1.1.1",
            false,
            json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:01:00Z"}]}}),
        );
        assert_eq!(
            tracker.compute(&s, &[p2]),
            Some("2026-01-01T00:01:00Z".parse().unwrap())
        );
    }
}
