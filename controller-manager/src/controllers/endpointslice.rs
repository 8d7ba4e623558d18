//! `endpointslice-controller` (upstream's `pkg/controller/endpointslice`
//! with the reconciler of `staging/src/k8s.io/endpointslice`): the pods a
//! Service selects, as `discovery.k8s.io/v1` EndpointSlices of at most
//! [`MAX_ENDPOINTS_PER_SLICE`] endpoints, one group of slices per distinct
//! set of resolved ports.
//!
//! The packing is upstream's: endpoints that changed are updated in the
//! slice that holds them, slices left empty are deleted, new endpoints go
//! first into slices being updated anyway (fullest first), then into the
//! unchanged slice they fit best, and only then into new slices; a slice
//! to create reuses the name of one to delete.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use parking_lot::Mutex;

use super::StartFn;
use super::endpoints::{
    LAST_CHANGE_TRIGGER_TIME, TriggerTimeTracker, find_port, format_time, is_external_name, is_headless,
    is_service_ip_set, pod_ipv4, publish_not_ready, queue_services_on_changes, selected_pods, service_selector,
    should_pod_be_in_endpoints, should_set_hostname,
};
use crate::context::Ctx;
use crate::events::{Recorder, WARNING};
use crate::informer::{Informer, key, split_key};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start);

pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// `--max-endpoints-per-slice`'s default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

// ---------------------------------------------------------------------
// Desired endpoints.
// ---------------------------------------------------------------------

/// Upstream's `getEndpointPorts`: the Service's ports resolved for `pod`
/// (ports the pod lacks are left out), in a canonical order.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let mut out: Vec<EndpointPort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            Some(EndpointPort {
                port: Some(find_port(pod, sp)?),
                name: Some(sp.name.clone().unwrap_or_default()),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    sort_ports(&mut out);
    out
}

pub fn sort_ports(ports: &mut [EndpointPort]) {
    ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
}

/// The key of a set of ports (upstream's `PortMapKey`).
pub fn port_map_key(ports: &[EndpointPort]) -> String {
    let mut ports = ports.to_vec();
    sort_ports(&mut ports);
    serde_json::to_string(&ports).unwrap_or_default()
}

/// An endpoint's identity (upstream's `hashEndpoint`): addresses,
/// hostname and the object it stands for.
pub fn endpoint_key(ep: &Endpoint) -> String {
    let mut addrs = ep.addresses.clone();
    addrs.sort();
    let r = ep.target_ref.as_ref();
    format!(
        "{}|{}|{}/{}",
        addrs.join(","),
        ep.hostname.as_deref().unwrap_or(""),
        r.and_then(|r| r.namespace.as_deref()).unwrap_or(""),
        r.and_then(|r| r.name.as_deref()).unwrap_or("")
    )
}

/// Upstream's `podToEndpoint`.
pub fn pod_to_endpoint(pod: &Pod, node: Option<&Node>, svc: &Service) -> Endpoint {
    let serving = util::is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(svc) || (serving && !terminating);
    let spec = pod.spec.as_ref();
    Endpoint {
        addresses: pod_ipv4(pod).into_iter().collect(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        zone: node
            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
            .filter(|z| !z.is_empty()),
        hostname: should_set_hostname(pod, svc)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        ..Default::default()
    }
}

/// The endpoints a Service should have, grouped by port map key: (ports,
/// endpoints by [`endpoint_key`]).
pub type Desired = BTreeMap<String, (Vec<EndpointPort>, BTreeMap<String, Endpoint>)>;

/// The desired endpoints of `svc`'s pods, and the pods left out because
/// their node is unknown (the sync retries for them).
pub fn desired_endpoints(
    svc: &Service,
    pods: &[Arc<Pod>],
    node: impl Fn(&str) -> Option<Arc<Node>>,
) -> (Desired, Vec<String>) {
    let mut desired = Desired::new();
    let mut missing = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = if svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_none_or(Vec::is_empty)
            && is_headless(svc)
        {
            vec![]
        } else {
            endpoint_ports(svc, pod)
        };
        let group = desired
            .entry(port_map_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()));
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let n = node(&node_name);
        if n.is_none() && !publish_not_ready(svc) {
            missing.push(util::name(&pod.metadata).to_string());
            continue;
        }
        let ep = pod_to_endpoint(pod, n.as_deref(), svc);
        if !ep.addresses.is_empty() {
            group.1.insert(endpoint_key(&ep), ep);
        }
    }
    (desired, missing)
}

// ---------------------------------------------------------------------
// The reconciler.
// ---------------------------------------------------------------------

/// What to write.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

fn owned_by(slice: &EndpointSlice, kind: &str, uid: &str) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == kind && r.uid == uid)
}

fn service_owner_ref(svc: &Service) -> OwnerReference {
    util::new_controller_ref(svc)
}

/// Upstream's `setEndpointSliceLabels`: the Service's labels (reserved
/// ones aside), the headless label, service-name and managed-by.
pub fn slice_labels(svc: &Service, controller: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LABEL_SERVICE_NAME && k.as_str() != LABEL_MANAGED_BY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_service_ip_set(svc) {
        labels.remove(super::endpoints::HEADLESS);
    } else {
        labels.insert(super::endpoints::HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), util::name(&svc.metadata).into());
    labels.insert(LABEL_MANAGED_BY.into(), controller.into());
    labels
}

/// A slice name prefix for `generateName` (upstream's
/// `getEndpointSlicePrefix`).
pub fn slice_prefix(name: &str) -> String {
    let prefix = format!("{name}-");
    if prefix.len() > 253 - 5 {
        name.to_string()
    } else {
        prefix
    }
}

fn new_slice(svc: &Service, ports: &[EndpointPort], controller: &str) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(slice_prefix(util::name(&svc.metadata))),
            namespace: svc.metadata.namespace.clone(),
            owner_references: Some(vec![service_owner_ref(svc)]),
            labels: Some(slice_labels(svc, controller)),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![],
        ports: Some(ports.to_vec()),
    }
}

fn is_placeholder_of(existing: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    existing.endpoints.is_empty()
        && existing.ports.as_ref().is_none_or(Vec::is_empty)
        && existing.address_type == placeholder.address_type
        && existing.metadata.namespace == placeholder.metadata.namespace
        && existing.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
}

/// Upstream's `reconcileByAddressType` for IPv4 (the only address type
/// here): `existing` are the slices carrying the service-name and
/// managed-by labels.
pub fn reconcile(svc: &Service, desired: Desired, existing: &[EndpointSlice], max: usize, controller: &str) -> Plan {
    let svc_uid = util::uid(&svc.metadata);
    let mut plan = Plan::default();
    let mut by_ports: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    let mut of_type = 0;
    for s in existing {
        if s.address_type != "IPv4" {
            plan.delete.push(s.clone());
            continue;
        }
        of_type += 1;
        if owned_by(s, "Service", svc_uid) {
            by_ports
                .entry(port_map_key(s.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(s);
        } else {
            plan.delete.push(s.clone());
        }
    }
    let labels = slice_labels(svc, controller);
    for (pm, (ports, want)) in &desired {
        let slices = by_ports.get(pm).cloned().unwrap_or_default();
        let (c, u, d) = reconcile_port_mapping(svc, &slices, want.clone(), ports, &labels, max, controller);
        plan.create.extend(c);
        plan.update.extend(u);
        plan.delete.extend(d);
    }
    for (pm, slices) in &by_ports {
        if !desired.contains_key(pm) {
            plan.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    // No slice would be left: keep (or make) a placeholder.
    let deleting_of_type = plan.delete.iter().filter(|s| s.address_type == "IPv4").count();
    if of_type == deleting_of_type && plan.create.is_empty() {
        let placeholder = new_slice(svc, &[], controller);
        if plan.delete.len() == 1 && is_placeholder_of(&plan.delete[0], &placeholder) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    recycle_deleted_names(&mut plan, "Service", svc_uid);
    plan
}

fn reconcile_port_mapping(
    svc: &Service,
    existing: &[&EndpointSlice],
    mut want: BTreeMap<String, Endpoint>,
    ports: &[EndpointPort],
    labels: &BTreeMap<String, String>,
    max: usize,
    controller: &str,
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<EndpointSlice>) {
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: Vec<String> = Vec::new();
    let mut to_update: Vec<String> = Vec::new();
    let mut to_delete: Vec<String> = Vec::new();
    // 1. Drop endpoints no longer desired, refresh changed ones.
    for s in existing {
        let name = util::name(&s.metadata).to_string();
        let mut kept = Vec::new();
        let mut changed = false;
        for ep in &s.endpoints {
            if let Some(w) = want.remove(&endpoint_key(ep)) {
                changed |= &w != ep;
                kept.push(w);
            }
        }
        let labels_changed = s.metadata.labels.as_ref() != Some(labels);
        if changed || kept.len() != s.endpoints.len() {
            if kept.is_empty() {
                to_delete.push(name.clone());
                by_name.insert(name, (*s).clone());
            } else {
                let mut n = (*s).clone();
                n.endpoints = kept;
                n.metadata.labels = Some(labels.clone());
                by_name.insert(name.clone(), n);
                to_update.push(name);
            }
        } else if labels_changed {
            let mut n = (*s).clone();
            n.metadata.labels = Some(labels.clone());
            by_name.insert(name.clone(), n);
            to_update.push(name);
        } else {
            by_name.insert(name.clone(), (*s).clone());
            unchanged.push(name);
        }
    }
    let pop = |want: &mut BTreeMap<String, Endpoint>| want.pop_first().map(|(_, e)| e);
    // 2. Fill the slices being updated anyway, fullest first.
    if !want.is_empty() && !to_update.is_empty() {
        let mut names = to_update.clone();
        names.sort_by_key(|n| std::cmp::Reverse(by_name[n].endpoints.len()));
        for n in names {
            let s = by_name.get_mut(&n).expect("named slice");
            while !want.is_empty() && s.endpoints.len() < max {
                s.endpoints.extend(pop(&mut want));
            }
        }
    }
    // 3. Fit what is left into the unchanged slice it fills best, else
    //    into new slices.
    let mut create = Vec::new();
    while !want.is_empty() {
        let mut fill: Option<String> = None;
        if want.len() < max && !unchanged.is_empty() {
            let mut closest = max;
            for n in &unchanged {
                let room = max as i64 - (want.len() + by_name[n].endpoints.len()) as i64;
                if room >= 0 && (room as usize) < closest {
                    closest = room as usize;
                    fill = Some(n.clone());
                    if room == 0 {
                        break;
                    }
                }
            }
        }
        match fill {
            Some(n) => {
                let s = by_name.get_mut(&n).expect("named slice");
                while !want.is_empty() && s.endpoints.len() < max {
                    s.endpoints.extend(pop(&mut want));
                }
                unchanged.retain(|u| *u != n);
                to_update.push(n);
            }
            None => {
                let mut s = new_slice(svc, ports, controller);
                while !want.is_empty() && s.endpoints.len() < max {
                    s.endpoints.extend(pop(&mut want));
                }
                create.push(s);
            }
        }
    }
    let update = to_update.iter().map(|n| by_name[n].clone()).collect();
    let delete = to_delete.iter().map(|n| by_name[n].clone()).collect();
    (create, update, delete)
}

/// Upstream's `finalize` first step: a slice to create takes the name of
/// a slice to delete (same owner and address type), becoming an update.
pub fn recycle_deleted_names(plan: &mut Plan, owner_kind: &str, owner_uid: &str) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let d = &plan.delete[i];
        let c = plan.create.last().expect("non-empty");
        if d.address_type == c.address_type && owned_by(d, owner_kind, owner_uid) {
            let mut c = plan.create.pop().expect("non-empty");
            let d = plan.delete.remove(i);
            c.metadata.name = d.metadata.name;
            c.metadata.generate_name = None;
            c.metadata.resource_version = d.metadata.resource_version;
            plan.update.push(c);
        } else {
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------
// Tracking our own writes (upstream's EndpointSliceTracker).
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Written at this resourceVersion (when numeric).
    Written(Option<u64>),
    Deleted,
}

/// Remembers the slices this controller wrote or deleted so a sync never
/// acts on a cache that has not caught up with its own writes.
#[derive(Default)]
pub struct SliceTracker {
    by_service: Mutex<HashMap<String, HashMap<String, Expect>>>,
}

fn rv_of(s: &EndpointSlice) -> Option<u64> {
    s.metadata.resource_version.as_deref()?.parse().ok()
}

impl SliceTracker {
    pub fn written(&self, service_key: &str, s: &EndpointSlice) {
        self.by_service
            .lock()
            .entry(service_key.to_string())
            .or_default()
            .insert(util::name(&s.metadata).to_string(), Expect::Written(rv_of(s)));
    }

    pub fn deleted(&self, service_key: &str, name: &str) {
        self.by_service
            .lock()
            .entry(service_key.to_string())
            .or_default()
            .insert(name.to_string(), Expect::Deleted);
    }

    /// Whether `cached` (the informer's slices of the service) misses a
    /// write or still shows a deleted slice; caught-up entries are
    /// forgotten.
    pub fn stale(&self, service_key: &str, cached: &[EndpointSlice]) -> bool {
        let mut all = self.by_service.lock();
        let Some(expects) = all.get_mut(service_key) else {
            return false;
        };
        let mut stale = false;
        expects.retain(|name, e| {
            let seen = cached.iter().find(|s| util::name(&s.metadata) == name);
            let ok = match (*e, seen) {
                (Expect::Deleted, None) => true,
                (Expect::Deleted, Some(_)) => false,
                (Expect::Written(_), None) => false,
                (Expect::Written(None), Some(_)) => true,
                (Expect::Written(Some(rv)), Some(s)) => rv_of(s).is_none_or(|c| c >= rv),
            };
            stale |= !ok;
            !ok
        });
        stale
    }

    pub fn delete_service(&self, service_key: &str) {
        self.by_service.lock().remove(service_key);
    }
}

/// Writes a plan (creates skipped while the owner is being deleted),
/// recording each write in the tracker.
pub async fn apply_plan(
    client: &kube::Client,
    namespace: &str,
    service_key: &str,
    mut plan: Plan,
    trigger: Option<jiff::Timestamp>,
    owner_deleting: bool,
    tracker: &SliceTracker,
) -> anyhow::Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let stamp = |s: &mut EndpointSlice| {
        let a = s.metadata.annotations.get_or_insert_with(Default::default);
        match trigger {
            Some(t) => {
                a.insert(LAST_CHANGE_TRIGGER_TIME.into(), format_time(t));
            }
            None => {
                a.remove(LAST_CHANGE_TRIGGER_TIME);
            }
        }
        if a.is_empty() {
            s.metadata.annotations = None;
        }
    };
    if !owner_deleting {
        for s in plan.create.iter_mut() {
            stamp(s);
            match api.create(&PostParams::default(), s).await {
                Ok(created) => tracker.written(service_key, &created),
                Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("terminat") => return Ok(()),
                Err(e) => anyhow::bail!("failed to create EndpointSlice for Service {service_key}: {e}"),
            }
        }
    }
    for s in plan.update.iter_mut() {
        stamp(s);
        let name = util::name(&s.metadata).to_string();
        match api.replace(&name, &PostParams::default(), s).await {
            Ok(updated) => tracker.written(service_key, &updated),
            Err(e) => anyhow::bail!("failed to update {name} EndpointSlice for Service {service_key}: {e}"),
        }
    }
    for s in &plan.delete {
        let name = util::name(&s.metadata);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracker.deleted(service_key, name),
            Err(e) if util::is_not_found(&e) => tracker.deleted(service_key, name),
            Err(e) => anyhow::bail!("failed to delete {name} EndpointSlice for Service {service_key}: {e}"),
        }
    }
    Ok(())
}

/// The cached slices of a service a controller manages, those being
/// deleted aside.
pub fn managed_slices(
    slices: &Informer<EndpointSlice>,
    namespace: &str,
    service: &str,
    controller: &str,
) -> Vec<EndpointSlice> {
    slices
        .list_namespace(namespace)
        .iter()
        .filter(|s| {
            let l = s.metadata.labels.as_ref();
            l.and_then(|l| l.get(LABEL_SERVICE_NAME)).map(String::as_str) == Some(service)
                && l.and_then(|l| l.get(LABEL_MANAGED_BY)).map(String::as_str) == Some(controller)
                && s.metadata.deletion_timestamp.is_none()
        })
        .map(|s| (**s).clone())
        .collect()
}

/// The service key a managed slice belongs to.
pub fn slice_service_key(s: &EndpointSlice, controller: &str) -> Option<String> {
    let l = s.metadata.labels.as_ref()?;
    if l.get(LABEL_MANAGED_BY).map(String::as_str) != Some(controller) {
        return None;
    }
    let svc = l.get(LABEL_SERVICE_NAME)?;
    Some(key(util::namespace(&s.metadata), svc))
}

// ---------------------------------------------------------------------
// The controller.
// ---------------------------------------------------------------------

struct Controller {
    client: kube::Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    slices: Arc<Informer<EndpointSlice>>,
    triggers: TriggerTimeTracker,
    tracker: SliceTracker,
    recorder: Recorder,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        nodes: ctx.informers.get::<Node>(),
        slices: ctx.informers.get::<EndpointSlice>(),
        triggers: TriggerTimeTracker::default(),
        tracker: SliceTracker::default(),
        recorder: ctx.recorder("endpoint-slice-controller"),
    });
    let queue = ctx.queue("endpoint_slice");
    queue_services_on_changes(&c.pods, &c.services, &queue);
    let q = queue.clone();
    c.slices.add_handler(move |ch| {
        if let Some(k) = slice_service_key(ch.object(), CONTROLLER_NAME) {
            q.add(k);
        }
    });
    let workers = ctx.opts.concurrency.service_endpoint;
    tokio::spawn(async move {
        c.services.wait_synced().await;
        c.pods.wait_synced().await;
        c.nodes.wait_synced().await;
        c.slices.wait_synced().await;
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
        let Some(svc) = self.services.get(ns, name) else {
            self.triggers.delete_service(ns, name);
            self.tracker.delete_service(k);
            return Ok(());
        };
        if is_external_name(&svc) || service_selector(&svc).is_none() {
            return Ok(());
        }
        let pods = selected_pods(&self.pods, &svc);
        let existing = managed_slices(&self.slices, ns, name, CONTROLLER_NAME);
        if self.tracker.stale(k, &existing) {
            anyhow::bail!("EndpointSlice informer cache is out of date");
        }
        let trigger = self.triggers.compute(&svc, &pods);
        let (desired, missing) = desired_endpoints(&svc, &pods, |n| self.nodes.get("", n));
        let plan = reconcile(&svc, desired, &existing, MAX_ENDPOINTS_PER_SLICE, CONTROLLER_NAME);
        let deleting = svc.metadata.deletion_timestamp.is_some();
        if let Err(e) = apply_plan(&self.client, ns, k, plan, trigger, deleting, &self.tracker).await {
            self.recorder.event(
                svc.as_ref(),
                WARNING,
                "FailedToUpdateEndpointSlices",
                format!("Error updating Endpoint Slices for Service {k}: {e}"),
            );
            return Err(e);
        }
        if !missing.is_empty() {
            anyhow::bail!("skipping pods {missing:?} for Service {k}: their nodes are not found");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::endpoints::tests::{merge, pod};
    use super::*;
    use serde_json::json;

    fn svc(extra: serde_json::Value) -> Service {
        let mut base = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"clusterIP": "10.0.0.1", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}});
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
    }

    fn node(name: &str, zone: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}}),
            )
            .unwrap(),
        )
    }

    fn pods(n: usize) -> Vec<Arc<Pod>> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.1.{}.{}", i / 250, i % 250 + 1),
                    true,
                    json!({}),
                )
            })
            .collect()
    }

    fn desired(s: &Service, pods: &[Arc<Pod>]) -> Desired {
        desired_endpoints(s, pods, |n| (n == "n1").then(|| node("n1", "z1"))).0
    }

    /// Applies a plan to a fake store of slices (names for creates).
    fn apply(store: &mut Vec<EndpointSlice>, plan: &Plan, next: &mut usize) {
        for d in &plan.delete {
            store.retain(|s| s.metadata.name != d.metadata.name);
        }
        for u in &plan.update {
            store.retain(|s| s.metadata.name != u.metadata.name);
            store.push(u.clone());
        }
        for c in &plan.create {
            let mut c = c.clone();
            *next += 1;
            c.metadata.name = Some(format!("web-{next}"));
            store.push(c);
        }
    }

    fn sizes(store: &[EndpointSlice]) -> Vec<usize> {
        let mut v: Vec<usize> = store.iter().map(|s| s.endpoints.len()).collect();
        v.sort();
        v
    }

    #[test]
    fn endpoints_carry_conditions_ports_zone_and_refs() {
        let s = svc(json!({}));
        let p = vec![
            pod("a", "10.1.0.1", true, json!({})),
            pod("b", "10.1.0.2", false, json!({})),
            pod(
                "c",
                "10.1.0.3",
                true,
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
        ];
        let d = desired(&s, &p);
        assert_eq!(d.len(), 1);
        let (ports, eps) = d.values().next().unwrap();
        assert_eq!(ports[0].port, Some(8080), "named targetPort resolved");
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        let cond = |ip: &str| {
            let e = eps.values().find(|e| e.addresses == vec![ip.to_string()]).unwrap();
            let c = e.conditions.clone().unwrap();
            (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        };
        assert_eq!(cond("10.1.0.1"), (true, true, false), "ready pod");
        assert_eq!(cond("10.1.0.2"), (false, false, false), "unready pod");
        assert_eq!(
            cond("10.1.0.3"),
            (false, true, true),
            "terminating pods are listed, not ready"
        );
        let e = eps.values().next().unwrap();
        assert_eq!(e.zone.as_deref(), Some("z1"));
        assert_eq!(e.node_name.as_deref(), Some("n1"));
        assert_eq!(e.target_ref.as_ref().unwrap().kind.as_deref(), Some("Pod"));
    }

    #[test]
    fn pods_on_unknown_nodes_are_skipped_and_reported() {
        let s = svc(json!({}));
        let p = vec![pod("a", "10.1.0.1", true, json!({"spec": {"nodeName": "gone"}}))];
        let (d, missing) = desired_endpoints(&s, &p, |_| None);
        assert!(d.values().all(|(_, e)| e.is_empty()));
        assert_eq!(missing, vec!["a"]);
    }

    #[test]
    fn packing() {
        struct Case {
            why: &'static str,
            before: usize,
            after: usize,
            want_sizes: Vec<usize>,
        }
        let cases = [
            Case {
                why: "250 endpoints: three slices, two full",
                before: 0,
                after: 250,
                want_sizes: vec![50, 100, 100],
            },
            Case {
                why: "no pods: one placeholder slice",
                before: 0,
                after: 0,
                want_sizes: vec![0],
            },
            Case {
                why: "growing by 30 fills the partial slice in place",
                before: 250,
                after: 280,
                want_sizes: vec![80, 100, 100],
            },
            Case {
                why: "70 new endpoints fit no unchanged slice whole: one new slice (never split)",
                before: 250,
                after: 320,
                want_sizes: vec![50, 70, 100, 100],
            },
            Case {
                why: "350 endpoints from scratch",
                before: 0,
                after: 350,
                want_sizes: vec![50, 100, 100, 100],
            },
            Case {
                why: "shrinking to nothing leaves one placeholder",
                before: 250,
                after: 0,
                want_sizes: vec![0],
            },
        ];
        for c in cases {
            let s = svc(json!({}));
            let mut store = Vec::new();
            let mut next = 0;
            let all = pods(c.before.max(c.after));
            let plan = reconcile(&s, desired(&s, &all[..c.before]), &store, 100, CONTROLLER_NAME);
            apply(&mut store, &plan, &mut next);
            let plan = reconcile(&s, desired(&s, &all[..c.after]), &store, 100, CONTROLLER_NAME);
            apply(&mut store, &plan, &mut next);
            assert_eq!(sizes(&store), c.want_sizes, "{}", c.why);
            let again = reconcile(&s, desired(&s, &all[..c.after]), &store, 100, CONTROLLER_NAME);
            assert_eq!(again, Plan::default(), "{}: a second pass writes nothing", c.why);
        }
    }

    #[test]
    fn changed_endpoints_are_updated_in_place_and_creates_reuse_deleted_names() {
        let s = svc(json!({}));
        let mut store = Vec::new();
        let mut next = 0;
        let p = pods(3);
        let plan = reconcile(&s, desired(&s, &p), &store, 100, CONTROLLER_NAME);
        apply(&mut store, &plan, &mut next);
        // One pod turns unready: the slice is updated, not recreated.
        let mut p2 = p.clone();
        p2[1] = pod("p001", "10.1.0.2", false, json!({}));
        let plan = reconcile(&s, desired(&s, &p2), &store, 100, CONTROLLER_NAME);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
        // A new port set: the old group's slice is deleted and its name reused.
        let s2 = svc(json!({"spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9000}]}}));
        let plan = reconcile(&s2, desired(&s2, &p), &store, 100, CONTROLLER_NAME);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
        assert_eq!(plan.update[0].metadata.name.as_deref(), Some("web-1"));
        assert_eq!(plan.update[0].ports.as_ref().unwrap()[0].port, Some(9000));
    }

    #[test]
    fn slices_of_another_service_uid_are_replaced() {
        let s = svc(json!({}));
        let mut old = new_slice(&svc(json!({"metadata": {"uid": "old"}})), &[], CONTROLLER_NAME);
        old.metadata.name = Some("web-old".into());
        let plan = reconcile(&s, desired(&s, &pods(1)), &[old], 100, CONTROLLER_NAME);
        assert_eq!(plan.delete.len(), 1, "not owned: deleted, not reused");
        assert_eq!(plan.create.len(), 1);
        let c = &plan.create[0];
        assert_eq!(c.metadata.generate_name.as_deref(), Some("web-"));
        let l = c.metadata.labels.as_ref().unwrap();
        assert_eq!(l[LABEL_SERVICE_NAME], "web");
        assert_eq!(l[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(c.metadata.owner_references.as_ref().unwrap()[0].uid, "svc-uid");
    }

    #[test]
    fn the_tracker_spots_a_cache_behind_our_writes() {
        let t = SliceTracker::default();
        let mut s = new_slice(&svc(json!({})), &[], CONTROLLER_NAME);
        s.metadata.name = Some("web-1".into());
        s.metadata.resource_version = Some("10".into());
        t.written("ns/web", &s);
        assert!(t.stale("ns/web", &[]), "created slice not cached yet");
        let mut older = s.clone();
        older.metadata.resource_version = Some("9".into());
        assert!(t.stale("ns/web", std::slice::from_ref(&older)), "older version cached");
        assert!(!t.stale("ns/web", std::slice::from_ref(&s)), "caught up");
        t.deleted("ns/web", "web-1");
        assert!(
            t.stale("ns/web", std::slice::from_ref(&s)),
            "deleted slice still cached"
        );
        assert!(!t.stale("ns/web", &[]));
    }
}
