//! `endpointslice-mirroring-controller` (upstream's
//! `pkg/controller/endpointslicemirroring`): a Service without a selector
//! whose Endpoints someone wrote by hand gets those endpoints mirrored
//! into EndpointSlices (one per subset and address type, owned by the
//! Endpoints), unless the Endpoints opts out with
//! `endpointslice.kubernetes.io/skip-mirror: "true"` or is the
//! apiserver's own `default/kubernetes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::StartFn;
use super::endpoints::{LAST_CHANGE_TRIGGER_TIME, is_external_name, repack_subsets, service_selector};
use super::endpointslice::{
    LABEL_MANAGED_BY, LABEL_SERVICE_NAME, Plan, SliceTracker, apply_plan, endpoint_key, managed_slices, port_map_key,
    recycle_deleted_names, slice_prefix, slice_service_key, sort_ports,
};
use crate::context::Ctx;
use crate::events::{Recorder, WARNING};
use crate::informer::{Informer, key_of, split_key};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start);

pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// `--mirroring-max-endpoints-per-subset`'s default.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;

/// Upstream's `shouldMirror`.
pub fn should_mirror(ep: &Endpoints) -> bool {
    let skip = ep
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SKIP_MIRROR))
        .is_some_and(|v| v == "true");
    let leader = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    let apiserver = util::namespace(&ep.metadata) == "default" && util::name(&ep.metadata) == "kubernetes";
    !skip && !leader && !apiserver
}

fn address_type(ip: &str) -> Option<&'static str> {
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(_) => Some("IPv4"),
        std::net::IpAddr::V6(_) => Some("IPv6"),
    }
}

fn address_to_endpoint(a: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![a.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        target_ref: a.target_ref.clone(),
        node_name: a.node_name.clone(),
        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
        ..Default::default()
    }
}

/// Desired endpoints keyed by (address type, port map key).
type Desired = BTreeMap<(String, String), (Vec<EndpointPort>, BTreeMap<String, Endpoint>)>;

/// What the Endpoints' subsets ask for, and how many addresses were
/// invalid and how many skipped in all (over the per-subset maximum
/// included).
pub fn desired_from_endpoints(ep: &Endpoints, max: usize) -> (Desired, usize, usize) {
    let mut d = Desired::new();
    let (mut invalid, mut skipped) = (0, 0);
    for s in repack_subsets(ep.subsets.as_deref().unwrap_or_default()) {
        let mut ports: Vec<EndpointPort> = s
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        sort_ports(&mut ports);
        let pm = port_map_key(&ports);
        let all = s
            .addresses
            .iter()
            .flatten()
            .map(|a| (a, true))
            .chain(s.not_ready_addresses.iter().flatten().map(|a| (a, false)));
        let total = s.addresses.as_ref().map_or(0, Vec::len) + s.not_ready_addresses.as_ref().map_or(0, Vec::len);
        let mut added = 0;
        for (a, ready) in all {
            if added >= max {
                break;
            }
            let Some(t) = address_type(&a.ip) else {
                invalid += 1;
                continue;
            };
            let e = address_to_endpoint(a, ready);
            d.entry((t.to_string(), pm.clone()))
                .or_insert_with(|| (ports.clone(), BTreeMap::new()))
                .1
                .insert(endpoint_key(&e), e);
            added += 1;
        }
        skipped += total - added;
    }
    (d, invalid, skipped)
}

fn mirrored_annotations(ep: &Endpoints) -> BTreeMap<String, String> {
    ep.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LAST_CHANGE_TRIGGER_TIME && k.as_str() != LAST_APPLIED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn mirrored_labels(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut l = ep.metadata.labels.clone().unwrap_or_default();
    l.insert(LABEL_SERVICE_NAME.into(), util::name(&ep.metadata).into());
    l.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    l
}

fn new_slice(ep: &Endpoints, ports: &[EndpointPort], address_type: &str, name: Option<String>) -> EndpointSlice {
    let annotations = mirrored_annotations(ep);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| slice_prefix(util::name(&ep.metadata))),
            name,
            namespace: ep.metadata.namespace.clone(),
            labels: Some(mirrored_labels(ep)),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![util::new_controller_ref(ep)]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: vec![],
        ports: Some(ports.to_vec()),
    }
}

/// Upstream's mirroring `reconcile`: one slice per (address type, ports);
/// extra slices deleted; the first rewritten when its endpoints, labels
/// or annotations differ.
pub fn reconcile(ep: &Endpoints, desired: Desired, existing: &[EndpointSlice], max: usize) -> Plan {
    let mut plan = Plan::default();
    let mut by_key: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        by_key
            .entry((
                s.address_type.clone(),
                port_map_key(s.ports.as_deref().unwrap_or_default()),
            ))
            .or_default()
            .push(s);
    }
    for (k, (ports, mut want)) in desired.clone() {
        let slices = by_key.get(&k).cloned().unwrap_or_default();
        if want.is_empty() {
            plan.delete.extend(slices.iter().map(|s| (*s).clone()));
            continue;
        }
        if let Some(first) = slices.first() {
            plan.delete.extend(slices[1..].iter().map(|s| (*s).clone()));
            let mut have: Vec<(String, &Endpoint)> = first.endpoints.iter().map(|e| (endpoint_key(e), e)).collect();
            have.sort_by(|a, b| a.0.cmp(&b.0));
            let same_endpoints = have.len() == want.len() && have.iter().all(|(k, e)| want.get(k) == Some(*e));
            let mut labels = first.metadata.labels.clone().unwrap_or_default();
            labels.remove(LABEL_MANAGED_BY);
            labels.remove(LABEL_SERVICE_NAME);
            let same_meta = labels == ep.metadata.labels.clone().unwrap_or_default()
                && first.metadata.annotations.clone().unwrap_or_default() == mirrored_annotations(ep);
            if same_endpoints && same_meta {
                continue;
            }
        }
        let mut s = new_slice(ep, &ports, &k.0, slices.first().and_then(|s| s.metadata.name.clone()));
        if let Some(first) = slices.first() {
            s.metadata.resource_version = first.metadata.resource_version.clone();
        }
        while s.endpoints.len() < max {
            let Some((_, e)) = want.pop_first() else { break };
            s.endpoints.push(e);
        }
        if s.metadata.name.is_some() {
            plan.update.push(s);
        } else {
            plan.create.push(s);
        }
    }
    for (k, slices) in &by_key {
        if !desired.contains_key(k) {
            plan.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    recycle_deleted_names(&mut plan, "Endpoints", util::uid(&ep.metadata));
    plan
}

struct Controller {
    client: kube::Client,
    services: Arc<Informer<Service>>,
    endpoints: Arc<Informer<Endpoints>>,
    slices: Arc<Informer<EndpointSlice>>,
    tracker: SliceTracker,
    recorder: Recorder,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        services: ctx.informers.get::<Service>(),
        endpoints: ctx.informers.get::<Endpoints>(),
        slices: ctx.informers.get::<EndpointSlice>(),
        tracker: SliceTracker::default(),
        recorder: ctx.recorder("endpoint-slice-mirroring-controller"),
    });
    let queue = ctx.queue("endpoint_slice_mirroring");
    let q = queue.clone();
    c.services.add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let q = queue.clone();
    c.endpoints.add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let q = queue.clone();
    c.slices.add_handler(move |ch| {
        if let Some(k) = slice_service_key(ch.object(), CONTROLLER_NAME) {
            q.add(k);
        }
    });
    let workers = ctx.opts.concurrency.mirroring_service_endpoint;
    tokio::spawn(async move {
        c.services.wait_synced().await;
        c.endpoints.wait_synced().await;
        c.slices.wait_synced().await;
        run_workers(queue, workers, move |k| {
            let c = c.clone();
            async move { c.sync(&k).await }
        });
    });
    Ok(())
}

impl Controller {
    async fn delete_mirrored(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(k);
        let existing = managed_slices(&self.slices, ns, name, CONTROLLER_NAME);
        if existing.is_empty() {
            return Ok(());
        }
        let plan = Plan {
            delete: existing,
            ..Default::default()
        };
        apply_plan(&self.client, ns, k, plan, None, false, &self.tracker).await
    }

    async fn sync(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(k);
        let Some(svc) = self.services.get(ns, name) else {
            self.tracker.delete_service(k);
            return Ok(());
        };
        if is_external_name(&svc) {
            return Ok(());
        }
        if service_selector(&svc).is_some() {
            return self.delete_mirrored(k).await;
        }
        let Some(ep) = self.endpoints.get(ns, name) else {
            return self.delete_mirrored(k).await;
        };
        if !should_mirror(&ep) {
            return self.delete_mirrored(k).await;
        }
        let existing = managed_slices(&self.slices, ns, name, CONTROLLER_NAME);
        if self.tracker.stale(k, &existing) {
            anyhow::bail!("EndpointSlice informer cache is out of date");
        }
        let (desired, invalid, skipped) = desired_from_endpoints(&ep, MAX_ENDPOINTS_PER_SUBSET);
        if invalid > 0 {
            self.recorder.event(
                ep.as_ref(),
                WARNING,
                "InvalidIPAddress",
                format!("Skipped {invalid} invalid IP addresses when mirroring to EndpointSlices"),
            );
        }
        if skipped > invalid {
            self.recorder.event(
                ep.as_ref(),
                WARNING,
                "TooManyAddressesToMirror",
                format!(
                    "A max of {MAX_ENDPOINTS_PER_SUBSET} addresses can be mirrored to EndpointSlices per Endpoints subset. {skipped} addresses were skipped"
                ),
            );
        }
        let plan = reconcile(&ep, desired, &existing, MAX_ENDPOINTS_PER_SUBSET);
        apply_plan(&self.client, ns, k, plan, None, false, &self.tracker).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoints(v: serde_json::Value) -> Endpoints {
        serde_json::from_value(v).unwrap()
    }

    fn custom() -> Endpoints {
        endpoints(json!({
            "metadata": {"name": "ext", "namespace": "ns", "uid": "ep-uid", "labels": {"team": "a"},
                         "annotations": {"note": "x", LAST_CHANGE_TRIGGER_TIME: "2026-01-01T00:00:00Z"}},
            "subsets": [{"addresses": [{"ip": "192.168.1.1"}, {"ip": "not-an-ip"}],
                         "notReadyAddresses": [{"ip": "192.168.1.2", "hostname": "b"}],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
        }))
    }

    #[test]
    fn mirroring_is_skipped_when_asked_or_for_the_apiserver() {
        assert!(should_mirror(&custom()));
        let mut e = custom();
        e.metadata.labels = Some([(LABEL_SKIP_MIRROR.to_string(), "true".to_string())].into());
        assert!(!should_mirror(&e), "skip-mirror label");
        let k = endpoints(json!({"metadata": {"name": "kubernetes", "namespace": "default"}}));
        assert!(!should_mirror(&k), "the apiserver's own endpoints");
    }

    #[test]
    fn subsets_become_one_slice_with_labels_and_annotations() {
        let e = custom();
        let (d, invalid, skipped) = desired_from_endpoints(&e, MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!((invalid, skipped), (1, 1), "the invalid IP is skipped");
        let plan = reconcile(&e, d.clone(), &[], MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!(plan.create.len(), 1);
        let s = &plan.create[0];
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(s.endpoints.len(), 2);
        let ready: Vec<bool> = s
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().unwrap().ready.unwrap())
            .collect();
        assert_eq!(ready, vec![true, false]);
        let l = s.metadata.labels.as_ref().unwrap();
        assert_eq!(l[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(l[LABEL_SERVICE_NAME], "ext");
        assert_eq!(l["team"], "a");
        let a = s.metadata.annotations.as_ref().unwrap();
        assert!(a.contains_key("note") && !a.contains_key(LAST_CHANGE_TRIGGER_TIME));
        assert_eq!(s.metadata.owner_references.as_ref().unwrap()[0].kind, "Endpoints");
        // Mirrored already: nothing to do; a changed address rewrites the slice.
        let mut existing = s.clone();
        existing.metadata.name = Some("ext-abc".into());
        let plan = reconcile(&e, d, std::slice::from_ref(&existing), MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!(plan, Plan::default());
        let mut e2 = custom();
        e2.subsets.as_mut().unwrap()[0].addresses = Some(vec![EndpointAddress {
            ip: "192.168.1.9".into(),
            ..Default::default()
        }]);
        let (d2, _, _) = desired_from_endpoints(&e2, MAX_ENDPOINTS_PER_SUBSET);
        let plan = reconcile(&e2, d2, &[existing], MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].metadata.name.as_deref(), Some("ext-abc"));
    }

    #[test]
    fn emptied_endpoints_delete_the_slices() {
        let e = custom();
        let (d, _, _) = desired_from_endpoints(&e, MAX_ENDPOINTS_PER_SUBSET);
        let mut existing = reconcile(&e, d, &[], MAX_ENDPOINTS_PER_SUBSET).create.remove(0);
        existing.metadata.name = Some("ext-abc".into());
        let mut empty = custom();
        empty.subsets = None;
        let (d, _, _) = desired_from_endpoints(&empty, MAX_ENDPOINTS_PER_SUBSET);
        let plan = reconcile(&empty, d, &[existing], MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 0, 1));
    }
}
