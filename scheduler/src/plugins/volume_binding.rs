//! VolumeBinding: a pod's PersistentVolumeClaims (and generic ephemeral
//! volumes' claims) must exist; bound claims' volumes must allow the node
//! (their `nodeAffinity`); unbound `WaitForFirstConsumer` claims need, on
//! each node, an available volume that fits or a class that provisions
//! dynamically. Reserve remembers the choice for the chosen node (and keeps
//! other pods off the chosen volumes until the snapshot shows the binding);
//! PreBind sets the volumes' `claimRef` and the provisioned claims'
//! `volume.kubernetes.io/selected-node`.
//!
//! Upstream's `volumebinding` plugin (k8s v1.33), without the storage
//! capacity check (CSIStorageCapacity), CSI migration of in-tree volumes,
//! the capacity scoring behind its feature gate, and PreBind's wait for the
//! PV controller to complete the binding.
//!
//! The claim and volume helpers here are shared with the other volume
//! plugins (VolumeZone, NodeVolumeLimits).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use apimachinery::labels::Selector;
use apimachinery::quantity::Quantity;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, TopologySelectorTerm};
use k8s_openapi::api::storage::v1::StorageClass;
use parking_lot::Mutex;
use serde::Deserialize;

use crate::framework::types::node_selector_term_matches;
use crate::framework::{
    ApiCalls, ClusterEvent, Code, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreBindPlugin, PreFilterPlugin,
    PreFilterResult, ReservePlugin, Snapshot, Status,
};

pub const NAME: &str = "VolumeBinding";

/// Upstream's `ConflictReason`s, in the order Filter reports them.
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const ERR_REASON_NOT_ENOUGH_SPACE: &str = "node(s) did not have enough free storage";
pub const ERR_REASON_PV_NOT_EXIST: &str = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub const ERR_REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// The annotation the scheduler sets on a claim to provision on a node.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The PV controller's mark of a claim whose binding is complete.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// The legacy storage class annotation, preferred over `storageClassName`.
pub const ANN_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The provisioner of classes that cannot provision (local volumes).
pub const NOT_SUPPORTED_PROVISIONER: &str = "kubernetes.io/no-provisioner";
pub const MODE_WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";

// Shared claim and volume helpers (upstream's component-helpers/storage).

/// The listers' NotFound messages.
pub fn pvc_not_found(name: &str) -> String {
    format!("persistentvolumeclaim \"{name}\" not found")
}
pub fn pv_not_found(name: &str) -> String {
    format!("persistentvolume \"{name}\" not found")
}
pub fn storage_class_not_found(name: &str) -> String {
    format!("storageclass.storage.k8s.io \"{name}\" not found")
}

/// A pod volume backed by a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodClaim {
    pub name: String,
    /// A generic ephemeral volume: the claim is `<pod>-<volume>` and must be
    /// owned by the pod.
    pub ephemeral: bool,
}

/// The claims of a pod's volumes, in volume order (upstream's
/// `ephemeral.VolumeClaimName` for generic ephemeral volumes).
pub fn pod_claims(pod: &PodInfo) -> Vec<PodClaim> {
    pod.spec()
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            if let Some(pvc) = v.persistent_volume_claim.as_ref() {
                Some(PodClaim {
                    name: pvc.claim_name.clone(),
                    ephemeral: false,
                })
            } else if v.ephemeral.is_some() {
                Some(PodClaim {
                    name: format!("{}-{}", pod.name, v.name),
                    ephemeral: true,
                })
            } else {
                None
            }
        })
        .collect()
}

pub fn get_pvc<'a>(snapshot: &'a Snapshot, namespace: &str, name: &str) -> Option<&'a Arc<PersistentVolumeClaim>> {
    snapshot.objects.pvcs.get(&format!("{namespace}/{name}"))
}

fn meta_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

fn annotation<'a>(m: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<&'a str> {
    m.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

/// `namespace/name` of a claim.
pub fn claim_key(pvc: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        pvc.metadata.namespace.as_deref().unwrap_or(""),
        meta_name(&pvc.metadata)
    )
}

/// The claim's class: the beta annotation, else `storageClassName`, else ""
/// (upstream's `GetPersistentVolumeClaimClass`).
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    annotation(&pvc.metadata, ANN_STORAGE_CLASS)
        .or(pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()))
        .unwrap_or("")
}

/// The volume's class (upstream's `GetPersistentVolumeClass`).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    annotation(&pv.metadata, ANN_STORAGE_CLASS)
        .or(pv.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()))
        .unwrap_or("")
}

fn claim_volume_name(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("")
}

/// A generic ephemeral volume's claim must be controlled by the pod
/// (upstream's `ephemeral.VolumeIsForPod`).
pub fn volume_is_for_pod(pod: &PodInfo, pvc: &PersistentVolumeClaim) -> Result<(), String> {
    let ns = pvc.metadata.namespace.as_deref().unwrap_or("");
    let owned = ns == pod.namespace
        && pvc
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true) && r.uid == pod.uid);
    if owned {
        Ok(())
    } else {
        Err(format!(
            "PVC {ns}/{} was not created for pod {}/{} (pod is not owner)",
            meta_name(&pvc.metadata),
            pod.namespace,
            pod.name
        ))
    }
}

/// Whether the volume's required node affinity allows the node (upstream's
/// `CheckNodeAffinity`; no affinity allows every node).
pub fn volume_node_affinity_matches(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    match pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(t, node)),
    }
}

fn storage_of(
    list: Option<&std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> i64 {
    list.and_then(|l| l.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map(|q| q.value())
        .unwrap_or(0)
}

/// The claim's `resources.requests.storage` in bytes (0 when unset).
pub fn claim_request(pvc: &PersistentVolumeClaim) -> i64 {
    storage_of(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

/// The volume's `capacity.storage` in bytes.
pub fn volume_capacity(pv: &PersistentVolume) -> i64 {
    storage_of(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

fn is_volume_bound_to_claim(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref().unwrap_or("") == meta_name(&pvc.metadata)
        && r.namespace.as_deref().unwrap_or("") == pvc.metadata.namespace.as_deref().unwrap_or("")
        && (r.uid.as_deref().unwrap_or("").is_empty() || r.uid == pvc.metadata.uid)
}

/// Whether the claim is bound and the PV controller finished the binding.
fn is_claim_fully_bound(pvc: &PersistentVolumeClaim) -> bool {
    !claim_volume_name(pvc).is_empty() && annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_some()
}

/// Whether a class's allowed topologies admit the node (upstream's
/// `MatchTopologySelectorTerms`: no terms admit all; an empty term none).
fn topology_terms_match(terms: &[TopologySelectorTerm], node: &NodeInfo) -> bool {
    if terms.is_empty() {
        return true;
    }
    terms.iter().any(|t| {
        let reqs = t.match_label_expressions.as_deref().unwrap_or(&[]);
        !reqs.is_empty()
            && reqs
                .iter()
                .all(|r| !r.values.is_empty() && node.label(&r.key).is_some_and(|v| r.values.iter().any(|x| x == v)))
    })
}

/// Upstream's `FindMatchingVolume` on the scheduler's path (a node given,
/// delayed binding): a volume pre-bound to the claim if its node affinity
/// allows the node, else the smallest available volume of the claim's class
/// that is large enough, has the claim's mode and access modes, matches its
/// selector and allows the node.
fn find_matching_volume(
    pvc: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: &NodeInfo,
    excluded: &HashSet<String>,
) -> Result<Option<Arc<PersistentVolume>>, String> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let requested = claim_request(pvc);
    let class = claim_class(pvc);
    let selector = match spec.selector.as_ref() {
        None => None,
        Some(s) => Some(
            serde_json::to_value(s)
                .map_err(|e| e.to_string())
                .and_then(|v| Selector::from_label_selector(&v).map_err(|e| e.to_string()))
                .map_err(|e| {
                    format!(
                        "error creating internal label selector for claim: {}: {e}",
                        claim_key(pvc)
                    )
                })?,
        ),
    };
    let claim_mode = spec.volume_mode.as_deref().unwrap_or("Filesystem");
    let claim_modes = spec.access_modes.as_deref().unwrap_or(&[]);
    let mut smallest: Option<(&Arc<PersistentVolume>, i64)> = None;
    for pv in volumes {
        let name = meta_name(&pv.metadata);
        if excluded.contains(name) {
            continue;
        }
        let pv_spec = pv.spec.clone().unwrap_or_default();
        let bound_to_claim = is_volume_bound_to_claim(pv, pvc);
        if pv_spec.claim_ref.is_some() && !bound_to_claim {
            continue;
        }
        let capacity = volume_capacity(pv);
        if capacity < requested {
            continue;
        }
        if pv_spec.volume_mode.as_deref().unwrap_or("Filesystem") != claim_mode {
            continue;
        }
        // VolumeAttributesClass is off by default in v1.33: volumes that
        // name one are left alone.
        if pv_spec
            .volume_attributes_class_name
            .as_deref()
            .is_some_and(|c| !c.is_empty())
        {
            continue;
        }
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = volume_node_affinity_matches(pv, node);
        if bound_to_claim {
            // A volume pre-bound to the claim is the only candidate.
            return Ok(affinity_ok.then(|| pv.clone()));
        }
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if phase != "Available" {
            continue;
        }
        if let Some(sel) = selector.as_ref()
            && !sel.matches(pv.metadata.labels.as_ref().unwrap_or(&Default::default()))
        {
            continue;
        }
        if volume_class(pv) != class || !affinity_ok {
            continue;
        }
        let pv_modes = pv_spec.access_modes.as_deref().unwrap_or(&[]);
        if !claim_modes.iter().all(|m| pv_modes.contains(m)) {
            continue;
        }
        if smallest.is_none_or(|(_, q)| q > capacity) {
            smallest = Some((pv, capacity));
        }
    }
    Ok(smallest.map(|(pv, _)| pv.clone()))
}

/// `VolumeBindingArgs`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeBindingArgs {
    #[serde(default = "default_bind_timeout")]
    pub bind_timeout_seconds: i64,
    /// The capacity scoring function's shape; only used behind the
    /// StorageCapacityScoring feature gate, accepted and ignored here.
    #[serde(default)]
    pub shape: Option<serde_json::Value>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

fn default_bind_timeout() -> i64 {
    600
}

impl Default for VolumeBindingArgs {
    fn default() -> Self {
        VolumeBindingArgs {
            bind_timeout_seconds: default_bind_timeout(),
            shape: None,
            api_version: None,
            kind: None,
        }
    }
}

impl VolumeBindingArgs {
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if self.bind_timeout_seconds < 0 {
            return Err(format!(
                "{path}.bindTimeoutSeconds: Invalid value: {}: invalid BindTimeoutSeconds, should not be a negative value",
                self.bind_timeout_seconds
            ));
        }
        Ok(())
    }
}

/// What Reserve assumed and PreBind has not yet seen in the snapshot:
/// volumes chosen for a claim and claims given a node to provision on
/// (upstream's assume caches). An entry lives until the object in the
/// snapshot changes (the update landed, or something else happened).
#[derive(Default)]
struct Assumed {
    /// Volume name → (its resourceVersion when assumed, the claim's ref).
    pvs: HashMap<String, (Option<String>, ObjectReference)>,
    /// Claim `namespace/name` → (its resourceVersion when assumed, node).
    pvcs: HashMap<String, (Option<String>, String)>,
}

pub struct VolumeBinding {
    pub bind_timeout_seconds: i64,
    assumed: Mutex<Assumed>,
}

impl Default for VolumeBinding {
    fn default() -> Self {
        VolumeBinding::new(&VolumeBindingArgs::default())
    }
}

impl VolumeBinding {
    pub fn new(args: &VolumeBindingArgs) -> Self {
        VolumeBinding {
            bind_timeout_seconds: args.bind_timeout_seconds,
            assumed: Mutex::new(Assumed::default()),
        }
    }
}

/// The volumes a pod gets on one node: claims bound to existing volumes and
/// claims to provision there.
#[derive(Clone, Debug, Default)]
pub struct PodVolumes {
    pub static_bindings: Vec<(Arc<PersistentVolumeClaim>, Arc<PersistentVolume>)>,
    pub dynamic_provisions: Vec<Arc<PersistentVolumeClaim>>,
}

/// The cycle's state: the pod's claims sorted by PreFilter, the per-node
/// choices Filter made (shared between clones, as upstream's pointer), and
/// what Reserve decided.
#[derive(Clone, Default)]
struct StateData {
    skip: bool,
    bound_claims: Vec<Arc<PersistentVolumeClaim>>,
    claims_to_bind: Vec<Arc<PersistentVolumeClaim>>,
    /// Candidate volumes of each class the claims to bind ask for.
    volumes_by_class: HashMap<String, Vec<Arc<PersistentVolume>>>,
    by_node: Arc<Mutex<HashMap<String, PodVolumes>>>,
    all_bound: bool,
    /// Reserve's choice: the node and the pod's volumes there.
    reserved: Option<(String, PodVolumes)>,
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        Some(self)
    }
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        Some(self)
    }
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::PvAdd,
            ClusterEvent::PvUpdate,
            ClusterEvent::PvcAdd,
            ClusterEvent::PvcUpdate,
            ClusterEvent::StorageClassAdd,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::CsiNodeChange,
        ]
    }
}

impl VolumeBinding {
    /// Drops assumptions the snapshot has caught up with.
    fn prune_assumed(&self, snapshot: &Snapshot) {
        let mut a = self.assumed.lock();
        a.pvs.retain(|name, (rv, _)| {
            snapshot
                .objects
                .pvs
                .get(name)
                .is_some_and(|pv| pv.metadata.resource_version == *rv)
        });
        a.pvcs.retain(|key, (rv, _)| {
            snapshot
                .objects
                .pvcs
                .get(key)
                .is_some_and(|pvc| pvc.metadata.resource_version == *rv)
        });
    }

    /// The claim as the scheduler assumes it: with the node Reserve selected
    /// for provisioning.
    fn assumed_claim(&self, pvc: &Arc<PersistentVolumeClaim>) -> Arc<PersistentVolumeClaim> {
        let a = self.assumed.lock();
        match a.pvcs.get(&claim_key(pvc)) {
            Some((_, node)) if annotation(&pvc.metadata, ANN_SELECTED_NODE) != Some(node.as_str()) => {
                let mut c = (**pvc).clone();
                c.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(ANN_SELECTED_NODE.to_string(), node.clone());
                Arc::new(c)
            }
            _ => pvc.clone(),
        }
    }

    /// The volumes of a class as the scheduler assumes them: with the claim
    /// Reserve bound them to.
    fn assumed_volumes(&self, snapshot: &Snapshot, class: &str) -> Vec<Arc<PersistentVolume>> {
        let a = self.assumed.lock();
        let mut pvs: Vec<Arc<PersistentVolume>> = snapshot
            .objects
            .pvs
            .values()
            .filter(|pv| volume_class(pv) == class)
            .map(|pv| match a.pvs.get(meta_name(&pv.metadata)) {
                Some((_, claim)) => {
                    let mut pv = (**pv).clone();
                    pv.spec.get_or_insert_with(Default::default).claim_ref = Some(claim.clone());
                    Arc::new(pv)
                }
                None => pv.clone(),
            })
            .collect();
        // A deterministic order for ties between equal volumes.
        pvs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pvs
    }

    /// Upstream's `podHasPVCs`: whether the pod uses claims, and the first
    /// reason its claims make it unschedulable.
    fn pod_has_pvcs(pod: &PodInfo, snapshot: &Snapshot) -> Result<bool, String> {
        let claims = pod_claims(pod);
        for c in &claims {
            let Some(pvc) = get_pvc(snapshot, &pod.namespace, &c.name) else {
                return Err(if c.ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the persistentvolumeclaim \"{}\"",
                        c.name
                    )
                } else {
                    pvc_not_found(&c.name)
                });
            };
            if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
                return Err(format!(
                    "persistentvolumeclaim \"{}\" bound to non-existent persistentvolume \"{}\"",
                    c.name,
                    claim_volume_name(pvc)
                ));
            }
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim \"{}\" is being deleted", c.name));
            }
            if c.ephemeral {
                volume_is_for_pod(pod, pvc)?;
            }
        }
        Ok(!claims.is_empty())
    }

    /// Upstream's `IsDelayBindingMode`: whether the claim's class waits for
    /// the first consumer (no class, or an unknown one, binds immediately).
    fn is_delay_binding(pvc: &PersistentVolumeClaim, snapshot: &Snapshot) -> Result<bool, String> {
        let class = claim_class(pvc);
        if class.is_empty() {
            return Ok(false);
        }
        let Some(sc) = snapshot.objects.storage_classes.get(class) else {
            return Ok(false);
        };
        match sc.volume_binding_mode.as_deref() {
            None => Err(format!("VolumeBindingMode not set for StorageClass \"{class}\"")),
            Some(m) => Ok(m == MODE_WAIT_FOR_FIRST_CONSUMER),
        }
    }

    /// Upstream's `checkVolumeProvisions`: (whether every claim can be
    /// provisioned on the node, the claims).
    fn check_provisions(
        claims: &[Arc<PersistentVolumeClaim>],
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Result<(bool, Vec<Arc<PersistentVolumeClaim>>), String> {
        let mut out = Vec::new();
        for claim in claims {
            let class = claim_class(claim);
            if class.is_empty() {
                return Err(format!("no class for claim \"{}\"", claim_key(claim)));
            }
            let Some(sc): Option<&Arc<StorageClass>> = snapshot.objects.storage_classes.get(class) else {
                return Err(format!("failed to find storage class \"{class}\""));
            };
            if sc.provisioner.is_empty() || sc.provisioner == NOT_SUPPORTED_PROVISIONER {
                return Ok((false, Vec::new()));
            }
            if !topology_terms_match(sc.allowed_topologies.as_deref().unwrap_or(&[]), node) {
                return Ok((false, Vec::new()));
            }
            out.push(claim.clone());
        }
        Ok((true, out))
    }

    /// Upstream's `FindPodVolumes`: the pod's volumes on the node, or the
    /// reasons the node cannot have them.
    fn find_pod_volumes(
        &self,
        state: &StateData,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Result<(PodVolumes, Vec<&'static str>), String> {
        let mut bound_satisfied = true;
        let mut unbound_satisfied = true;
        let mut bound_pvs_found = true;
        let mut volumes = PodVolumes::default();
        let reasons = |b: bool, u: bool, f: bool| {
            let mut r = Vec::new();
            if !b {
                r.push(ERR_REASON_NODE_CONFLICT);
            }
            if !u {
                r.push(ERR_REASON_BIND_CONFLICT);
            }
            if !f {
                r.push(ERR_REASON_PV_NOT_EXIST);
            }
            r
        };

        for pvc in &state.bound_claims {
            let Some(pv) = snapshot.objects.pvs.get(claim_volume_name(pvc)) else {
                bound_pvs_found = false;
                break;
            };
            if !volume_node_affinity_matches(pv, node) {
                bound_satisfied = false;
                break;
            }
        }

        if !state.claims_to_bind.is_empty() {
            let mut to_provision = Vec::new();
            let mut to_match = Vec::new();
            for claim in &state.claims_to_bind {
                match annotation(&claim.metadata, ANN_SELECTED_NODE) {
                    Some(selected) if selected != node.name => {
                        // Already being provisioned for another node.
                        return Ok((volumes, reasons(bound_satisfied, false, bound_pvs_found)));
                    }
                    Some(_) => to_provision.push(claim.clone()),
                    None => to_match.push(claim.clone()),
                }
            }
            if !to_match.is_empty() {
                // The smallest claims pick first.
                to_match.sort_by_key(|c| claim_request(c));
                let mut chosen: HashSet<String> = HashSet::new();
                for pvc in to_match {
                    let candidates = state
                        .volumes_by_class
                        .get(claim_class(&pvc))
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    match find_matching_volume(&pvc, candidates, node, &chosen)? {
                        Some(pv) => {
                            chosen.insert(meta_name(&pv.metadata).to_string());
                            volumes.static_bindings.push((pvc, pv));
                        }
                        None => {
                            unbound_satisfied = false;
                            to_provision.push(pvc);
                        }
                    }
                }
            }
            if !to_provision.is_empty() {
                let (ok, claims) = Self::check_provisions(&to_provision, node, snapshot)?;
                unbound_satisfied = ok;
                volumes.dynamic_provisions = claims;
            }
        }
        Ok((volumes, reasons(bound_satisfied, unbound_satisfied, bound_pvs_found)))
    }

    fn revert(&self, volumes: &PodVolumes) {
        let mut a = self.assumed.lock();
        for (_, pv) in &volumes.static_bindings {
            a.pvs.remove(meta_name(&pv.metadata));
        }
        for pvc in &volumes.dynamic_provisions {
            a.pvcs.remove(&claim_key(pvc));
        }
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> (PreFilterResult, Status) {
        match Self::pod_has_pvcs(pod, snapshot) {
            Err(e) => return (PreFilterResult::all(), Status::unresolvable(e)),
            Ok(false) => {
                state.write(StateData {
                    skip: true,
                    ..Default::default()
                });
                return (PreFilterResult::all(), Status::skip());
            }
            Ok(true) => {}
        }
        self.prune_assumed(snapshot);
        let mut data = StateData::default();
        let mut immediate = 0;
        for c in pod_claims(pod) {
            let Some(pvc) = get_pvc(snapshot, &pod.namespace, &c.name) else {
                return (PreFilterResult::all(), Status::unresolvable(pvc_not_found(&c.name)));
            };
            let pvc = self.assumed_claim(pvc);
            if is_claim_fully_bound(&pvc) {
                data.bound_claims.push(pvc);
                continue;
            }
            match Self::is_delay_binding(&pvc, snapshot) {
                Err(e) => return (PreFilterResult::all(), Status::error(e)),
                // A claim pre-bound to a volume is the PV controller's to bind.
                Ok(true) if claim_volume_name(&pvc).is_empty() => data.claims_to_bind.push(pvc),
                Ok(_) => immediate += 1,
            }
        }
        if immediate > 0 {
            return (
                PreFilterResult::all(),
                Status::unresolvable(ERR_REASON_UNBOUND_IMMEDIATE),
            );
        }
        for pvc in &data.claims_to_bind {
            if let Entry::Vacant(e) = data.volumes_by_class.entry(claim_class(pvc).to_string()) {
                let pvs = self.assumed_volumes(snapshot, e.key());
                e.insert(pvs);
            }
        }
        state.write(data);
        (PreFilterResult::all(), Status::success())
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo, snapshot: &Snapshot) -> Status {
        let Some(data) = state.read::<StateData>() else {
            return Status::error("not found");
        };
        if data.skip {
            return Status::success();
        }
        match self.find_pod_volumes(data, node, snapshot) {
            Err(e) => Status::error(e),
            Ok((_, reasons)) if !reasons.is_empty() => Status {
                code: Code::UnschedulableAndUnresolvable,
                reasons: reasons.into_iter().map(String::from).collect(),
                plugin: "",
            },
            Ok((volumes, _)) => {
                data.by_node.lock().insert(node.name.clone(), volumes);
                Status::success()
            }
        }
    }
}

impl ReservePlugin for VolumeBinding {
    fn reserve(&self, state: &mut CycleState, _: &PodInfo, node: &str) -> Status {
        let Some(data) = state.read_mut::<StateData>() else {
            return Status::error("not found");
        };
        let volumes = data.by_node.lock().get(node).cloned();
        let Some(volumes) = volumes else {
            // The pod uses no claims.
            data.all_bound = true;
            return Status::success();
        };
        data.all_bound = volumes.static_bindings.is_empty() && volumes.dynamic_provisions.is_empty();
        if data.all_bound {
            return Status::success();
        }
        {
            let mut a = self.assumed.lock();
            for (pvc, pv) in &volumes.static_bindings {
                let pv_name = meta_name(&pv.metadata);
                let claim_ref = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: pvc.metadata.namespace.clone(),
                    name: pvc.metadata.name.clone(),
                    uid: pvc.metadata.uid.clone(),
                    resource_version: pvc.metadata.resource_version.clone(),
                    ..Default::default()
                };
                if let Some((_, other)) = a.pvs.get(pv_name)
                    && (other.namespace != claim_ref.namespace || other.name != claim_ref.name)
                {
                    let msg = format!(
                        "persistentvolume \"{pv_name}\" is assumed bound to claim \"{}/{}\"",
                        other.namespace.as_deref().unwrap_or(""),
                        other.name.as_deref().unwrap_or("")
                    );
                    drop(a);
                    self.revert(&volumes);
                    return Status::error(msg);
                }
                a.pvs
                    .insert(pv_name.to_string(), (pv.metadata.resource_version.clone(), claim_ref));
            }
            for pvc in &volumes.dynamic_provisions {
                a.pvcs.insert(
                    claim_key(pvc),
                    (pvc.metadata.resource_version.clone(), node.to_string()),
                );
            }
        }
        data.reserved = Some((node.to_string(), volumes));
        Status::success()
    }

    fn unreserve(&self, state: &mut CycleState, _: &PodInfo, node: &str) {
        let Some(data) = state.read::<StateData>() else {
            return;
        };
        let volumes = data.by_node.lock().get(node).cloned();
        if let Some(v) = volumes {
            self.revert(&v);
        }
    }
}

impl PreBindPlugin for VolumeBinding {
    fn pre_bind(&self, api: &dyn ApiCalls, state: &CycleState, _: &PodInfo, node: &str) -> Status {
        let Some(data) = state.read::<StateData>() else {
            return Status::error("not found");
        };
        if data.all_bound {
            return Status::success();
        }
        let volumes = match &data.reserved {
            Some((n, v)) if n == node => v.clone(),
            _ => match data.by_node.lock().get(node) {
                Some(v) => v.clone(),
                None => return Status::error(format!("no pod volumes found for node \"{node}\"")),
            },
        };
        for (i, (pvc, pv)) in volumes.static_bindings.iter().enumerate() {
            let ns = pvc.metadata.namespace.as_deref().unwrap_or("");
            let uid = pvc.metadata.uid.as_deref().unwrap_or("");
            if let Err(e) = api.bind_pv(meta_name(&pv.metadata), ns, meta_name(&pvc.metadata), uid) {
                self.revert(&PodVolumes {
                    static_bindings: volumes.static_bindings[i..].to_vec(),
                    dynamic_provisions: volumes.dynamic_provisions.clone(),
                });
                return Status::error(e);
            }
        }
        for (i, pvc) in volumes.dynamic_provisions.iter().enumerate() {
            let ns = pvc.metadata.namespace.as_deref().unwrap_or("");
            if let Err(e) = api.annotate_pvc(ns, meta_name(&pvc.metadata), ANN_SELECTED_NODE, node) {
                self.revert(&PodVolumes {
                    static_bindings: Vec::new(),
                    dynamic_provisions: volumes.dynamic_provisions[i..].to_vec(),
                });
                return Status::error(e);
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod, storage_objects};
    use serde_json::{Value, json};

    fn wait_sc(name: &str) -> Value {
        json!({"metadata": {"name": name}, "provisioner": "", "volumeBindingMode": "WaitForFirstConsumer"})
    }
    fn classes() -> Vec<Value> {
        vec![
            json!({"metadata": {"name": "immediate-sc"}, "provisioner": "", "volumeBindingMode": "Immediate"}),
            wait_sc("wait-sc"),
            wait_sc("wait-hdd-sc"),
            json!({"metadata": {"name": "provision-sc"}, "provisioner": "csi.example.com", "volumeBindingMode": "WaitForFirstConsumer"}),
            json!({"metadata": {"name": "topology-sc"}, "provisioner": "csi.example.com", "volumeBindingMode": "WaitForFirstConsumer",
                   "allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}]}),
            json!({"metadata": {"name": "no-mode-sc"}, "provisioner": "csi.example.com"}),
        ]
    }
    fn pvc(name: &str, class: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": "1"},
               "spec": {"storageClassName": class}})
    }
    fn bound(mut v: Value, pv: &str) -> Value {
        v["spec"]["volumeName"] = pv.into();
        v["metadata"]["annotations"] = json!({ANN_BIND_COMPLETED: "true"});
        v
    }
    fn request(mut v: Value, q: &str) -> Value {
        v["spec"]["resources"] = json!({"requests": {"storage": q}});
        v
    }
    fn pv(name: &str, class: &str) -> Value {
        json!({"metadata": {"name": name, "resourceVersion": "1"}, "spec": {"storageClassName": class}, "status": {"phase": "Available"}})
    }
    fn capacity(mut v: Value, q: &str) -> Value {
        v["spec"]["capacity"] = json!({"storage": q});
        v
    }
    fn affinity(mut v: Value, key: &str, values: &[&str]) -> Value {
        v["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": "In", "values": values}]}]}});
        v
    }
    fn pod_with(claims: &[&str]) -> PodInfo {
        let vols: Vec<Value> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("vol{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        pod(json!({"metadata": {"name": "pod-a", "uid": "pod-uid"}, "spec": {"containers": [], "volumes": vols}}))
    }
    fn host(name: &str) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}))
    }
    fn snap(nodes: Vec<NodeInfo>, pvcs: Vec<Value>, pvs: Vec<Value>) -> Snapshot {
        let mut s = Snapshot::new(nodes);
        s.objects = Arc::new(storage_objects(pvcs, pvs, classes(), vec![]));
        s
    }

    /// Runs PreFilter then (unless it rejected or skipped) Filter on each node.
    fn run(pl: &VolumeBinding, p: &PodInfo, s: &Snapshot) -> (CycleState, Status, Vec<Status>) {
        let mut state = CycleState::default();
        let (_, pre) = pl.pre_filter(&mut state, p, s);
        let filters = if pre.is_success() {
            s.nodes.iter().map(|n| pl.filter(&state, p, n, s)).collect()
        } else {
            Vec::new()
        };
        (state, pre, filters)
    }

    fn unresolvable(reasons: &[&str]) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            plugin: "",
        }
    }

    #[test]
    fn volume_binding_upstream_cases() {
        let ok = Status::success;
        // Upstream's TestVolumeBinding (filter and prefilter statuses).
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            Vec<&str>,
            Vec<NodeInfo>,
            Vec<Value>,
            Vec<Value>,
            Status,
            Vec<Status>,
        )> = vec![
            (
                "pod has not pvcs",
                vec![],
                vec![host("node-a")],
                vec![],
                vec![],
                Status::skip(),
                vec![],
            ),
            (
                "all bound",
                vec!["pvc-a"],
                vec![host("node-a")],
                vec![bound(pvc("pvc-a", "wait-sc"), "pv-a")],
                vec![pv("pv-a", "wait-sc")],
                ok(),
                vec![ok()],
            ),
            (
                "PVC does not exist",
                vec!["pvc-a"],
                vec![host("node-a")],
                vec![],
                vec![],
                Status::unresolvable(r#"persistentvolumeclaim "pvc-a" not found"#),
                vec![],
            ),
            (
                "Part of PVCs do not exist",
                vec!["pvc-a", "pvc-b"],
                vec![host("node-a")],
                vec![bound(pvc("pvc-a", "wait-sc"), "pv-a")],
                vec![],
                Status::unresolvable(r#"persistentvolumeclaim "pvc-b" not found"#),
                vec![],
            ),
            (
                "immediate claims not bound",
                vec!["pvc-a"],
                vec![host("node-a")],
                vec![pvc("pvc-a", "immediate-sc")],
                vec![],
                Status::unresolvable(ERR_REASON_UNBOUND_IMMEDIATE),
                vec![],
            ),
            (
                "unbound claims no matches",
                vec!["pvc-a"],
                vec![host("node-a")],
                vec![pvc("pvc-a", "wait-sc")],
                vec![],
                ok(),
                vec![unresolvable(&[ERR_REASON_BIND_CONFLICT])],
            ),
            (
                "bound and unbound unsatisfied",
                vec!["pvc-a", "pvc-b"],
                vec![node(
                    json!({"metadata": {"name": "node-a", "labels": {"foo": "barbar"}}}),
                )],
                vec![bound(pvc("pvc-a", "wait-sc"), "pv-a"), pvc("pvc-b", "wait-sc")],
                vec![affinity(pv("pv-a", "wait-sc"), "foo", &["bar"])],
                ok(),
                vec![unresolvable(&[ERR_REASON_NODE_CONFLICT, ERR_REASON_BIND_CONFLICT])],
            ),
            (
                "pv not found",
                vec!["pvc-a"],
                vec![host("node-a")],
                vec![bound(pvc("pvc-a", "wait-sc"), "pv-a")],
                vec![],
                ok(),
                vec![unresolvable(&[ERR_REASON_PV_NOT_EXIST])],
            ),
            (
                "pv not found claim lost",
                vec!["pvc-a"],
                vec![host("node-a")],
                vec![{
                    let mut v = bound(pvc("pvc-a", "wait-sc"), "pv-a");
                    v["status"] = json!({"phase": "Lost"});
                    v
                }],
                vec![],
                Status::unresolvable(r#"persistentvolumeclaim "pvc-a" bound to non-existent persistentvolume "pv-a""#),
                vec![],
            ),
            (
                "local volumes with close capacity are preferred",
                vec!["pvc-a"],
                vec![host("node-a"), host("node-b"), host("node-c")],
                vec![request(pvc("pvc-a", "wait-sc"), "50Gi")],
                vec![
                    affinity(
                        capacity(pv("pv-a-0", "wait-sc"), "200Gi"),
                        "kubernetes.io/hostname",
                        &["node-a"],
                    ),
                    affinity(
                        capacity(pv("pv-a-1", "wait-sc"), "200Gi"),
                        "kubernetes.io/hostname",
                        &["node-a"],
                    ),
                    affinity(
                        capacity(pv("pv-b-0", "wait-sc"), "100Gi"),
                        "kubernetes.io/hostname",
                        &["node-b"],
                    ),
                    affinity(
                        capacity(pv("pv-b-1", "wait-sc"), "100Gi"),
                        "kubernetes.io/hostname",
                        &["node-b"],
                    ),
                ],
                ok(),
                vec![ok(), ok(), unresolvable(&[ERR_REASON_BIND_CONFLICT])],
            ),
            (
                "local volumes with close capacity are preferred (multiple pvcs)",
                vec!["pvc-0", "pvc-1"],
                vec![host("node-a"), host("node-b"), host("node-c")],
                vec![
                    request(pvc("pvc-0", "wait-sc"), "50Gi"),
                    request(pvc("pvc-1", "wait-hdd-sc"), "100Gi"),
                ],
                vec![
                    affinity(
                        capacity(pv("pv-a-0", "wait-sc"), "200Gi"),
                        "kubernetes.io/hostname",
                        &["node-a"],
                    ),
                    affinity(
                        capacity(pv("pv-a-2", "wait-hdd-sc"), "200Gi"),
                        "kubernetes.io/hostname",
                        &["node-a"],
                    ),
                    affinity(
                        capacity(pv("pv-b-0", "wait-sc"), "100Gi"),
                        "kubernetes.io/hostname",
                        &["node-b"],
                    ),
                    affinity(
                        capacity(pv("pv-b-2", "wait-hdd-sc"), "100Gi"),
                        "kubernetes.io/hostname",
                        &["node-b"],
                    ),
                ],
                ok(),
                vec![ok(), ok(), unresolvable(&[ERR_REASON_BIND_CONFLICT])],
            ),
        ];
        for (name, claims, nodes, pvcs, pvs, want_pre, want_filter) in cases {
            let s = snap(nodes, pvcs, pvs);
            let (_, pre, filters) = run(&VolumeBinding::default(), &pod_with(&claims), &s);
            assert_eq!(pre, want_pre, "{name}: PreFilter");
            assert_eq!(filters, want_filter, "{name}: Filter");
        }
    }

    #[test]
    fn volume_binding_find_pod_volumes() {
        // Upstream binder_test's FindPodVolumes cases, on one node "node1"
        // labelled zone=a: (name, claims, pvcs, pvs, Filter status).
        let node1 =
            || node(json!({"metadata": {"name": "node1", "labels": {"kubernetes.io/hostname": "node1", "zone": "a"}}}));
        let local =
            |name: &str, n: &str| affinity(capacity(pv(name, "wait-sc"), "10G"), "kubernetes.io/hostname", &[n]);
        let ok = Status::success;
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Vec<&str>, Vec<Value>, Vec<Value>, Status)> = vec![
            (
                "unbound-pvc,pv-same-node",
                vec!["pvc-a"],
                vec![request(pvc("pvc-a", "wait-sc"), "5G")],
                vec![local("pv-node1a", "node1"), local("pv-node2a", "node2")],
                ok(),
            ),
            (
                "unbound-pvc,pv-different-node",
                vec!["pvc-a"],
                vec![request(pvc("pvc-a", "wait-sc"), "5G")],
                vec![local("pv-node2a", "node2")],
                unresolvable(&[ERR_REASON_BIND_CONFLICT]),
            ),
            (
                "two-unbound-pvcs,partial-match",
                vec!["pvc-a", "pvc-b"],
                vec![
                    request(pvc("pvc-a", "wait-sc"), "5G"),
                    request(pvc("pvc-b", "wait-sc"), "5G"),
                ],
                vec![local("pv-node1a", "node1")],
                unresolvable(&[ERR_REASON_BIND_CONFLICT]),
            ),
            (
                "two-unbound-pvcs",
                vec!["pvc-a", "pvc-b"],
                vec![
                    request(pvc("pvc-a", "wait-sc"), "5G"),
                    request(pvc("pvc-b", "wait-sc"), "5G"),
                ],
                vec![local("pv-node1a", "node1"), local("pv-node1b", "node1")],
                ok(),
            ),
            (
                "too-small",
                vec!["pvc-a"],
                vec![request(pvc("pvc-a", "wait-sc"), "50G")],
                vec![local("pv-node1a", "node1")],
                unresolvable(&[ERR_REASON_BIND_CONFLICT]),
            ),
            (
                "immediate-bound-pvc-wrong-node",
                vec!["pvc-a"],
                vec![bound(pvc("pvc-a", "immediate-sc"), "pv-node2a")],
                vec![local("pv-node2a", "node2")],
                unresolvable(&[ERR_REASON_NODE_CONFLICT]),
            ),
            (
                "prebound-pvc",
                vec!["pvc-a"],
                vec![{
                    let mut v = pvc("pvc-a", "wait-sc");
                    v["spec"]["volumeName"] = "pv-node1a".into();
                    v
                }],
                vec![local("pv-node1a", "node1")],
                Status::unresolvable(ERR_REASON_UNBOUND_IMMEDIATE),
            ),
            (
                "one-provisioned",
                vec!["pvc-a"],
                vec![pvc("pvc-a", "provision-sc")],
                vec![],
                ok(),
            ),
            (
                "volume-topology-satisfied",
                vec!["pvc-a"],
                vec![pvc("pvc-a", "topology-sc")],
                vec![],
                ok(),
            ),
            (
                "one-binding,one-selected-node-elsewhere",
                vec!["pvc-a", "pvc-b"],
                vec![request(pvc("pvc-a", "wait-sc"), "5G"), {
                    let mut v = pvc("pvc-b", "provision-sc");
                    v["metadata"]["annotations"] = json!({ANN_SELECTED_NODE: "node2"});
                    v
                }],
                vec![local("pv-node1a", "node1")],
                unresolvable(&[ERR_REASON_BIND_CONFLICT]),
            ),
            (
                "selected-node-here",
                vec!["pvc-b"],
                vec![{
                    let mut v = pvc("pvc-b", "provision-sc");
                    v["metadata"]["annotations"] = json!({ANN_SELECTED_NODE: "node1"});
                    v
                }],
                vec![],
                ok(),
            ),
            (
                "no-volume-binding-mode",
                vec!["pvc-a"],
                vec![pvc("pvc-a", "no-mode-sc")],
                vec![],
                Status::error(r#"VolumeBindingMode not set for StorageClass "no-mode-sc""#),
            ),
            (
                "unknown-class-is-immediate",
                vec!["pvc-a"],
                vec![pvc("pvc-a", "gone-sc")],
                vec![],
                Status::unresolvable(ERR_REASON_UNBOUND_IMMEDIATE),
            ),
            (
                "being-deleted",
                vec!["pvc-a"],
                vec![{
                    let mut v = pvc("pvc-a", "wait-sc");
                    v["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z".into();
                    v
                }],
                vec![],
                Status::unresolvable(r#"persistentvolumeclaim "pvc-a" is being deleted"#),
            ),
        ];
        for (name, claims, pvcs, pvs, want) in cases {
            let s = snap(vec![node1()], pvcs, pvs);
            let (_, pre, filters) = run(&VolumeBinding::default(), &pod_with(&claims), &s);
            let got = if pre.is_success() { filters[0].clone() } else { pre };
            assert_eq!(got, want, "{name}");
        }
        // A class whose allowed topologies exclude the node.
        let other = node(json!({"metadata": {"name": "node2", "labels": {"zone": "b"}}}));
        let s = snap(vec![other], vec![pvc("pvc-a", "topology-sc")], vec![]);
        let (_, _, filters) = run(&VolumeBinding::default(), &pod_with(&["pvc-a"]), &s);
        assert_eq!(filters, vec![unresolvable(&[ERR_REASON_BIND_CONFLICT])]);
    }

    #[test]
    fn volume_binding_matching_rules() {
        let n = host("node1");
        let claim = |spec: Value| {
            let mut v = pvc("pvc-a", "wait-sc");
            for (k, x) in spec.as_object().unwrap() {
                v["spec"][k] = x.clone();
            }
            v
        };
        let vol = |name: &str, extra: Value| {
            let mut v = capacity(pv(name, "wait-sc"), "10G");
            for (k, x) in extra.as_object().unwrap() {
                v["spec"][k] = x.clone();
            }
            v
        };
        // (name, claim, volumes, the chosen volume).
        let cases: Vec<(&str, Value, Vec<Value>, Option<&str>)> = vec![
            (
                "smallest that fits",
                claim(json!({"resources": {"requests": {"storage": "1G"}}})),
                vec![
                    vol("big", json!({"capacity": {"storage": "100G"}})),
                    vol("small", json!({})),
                ],
                Some("small"),
            ),
            (
                "access modes must be a superset",
                claim(json!({"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]})),
                vec![
                    vol("rwo", json!({"accessModes": ["ReadWriteOnce"]})),
                    vol(
                        "both",
                        json!({"accessModes": ["ReadOnlyMany", "ReadWriteOnce"], "capacity": {"storage": "20G"}}),
                    ),
                ],
                Some("both"),
            ),
            (
                "selector on the volume's labels",
                claim(json!({"selector": {"matchLabels": {"tier": "gold"}}})),
                vec![vol("plain", json!({})), {
                    let mut v = vol("gold", json!({"capacity": {"storage": "20G"}}));
                    v["metadata"]["labels"] = json!({"tier": "gold"});
                    v
                }],
                Some("gold"),
            ),
            (
                "claimed by another claim",
                claim(json!({})),
                vec![vol(
                    "taken",
                    json!({"claimRef": {"namespace": "default", "name": "other"}}),
                )],
                None,
            ),
            (
                "pre-bound to this claim wins over a smaller one",
                claim(json!({})),
                vec![
                    vol("small", json!({"capacity": {"storage": "1G"}})),
                    vol(
                        "mine",
                        json!({"claimRef": {"namespace": "default", "name": "pvc-a"}, "capacity": {"storage": "50G"}}),
                    ),
                ],
                Some("mine"),
            ),
            (
                "volume mode must match",
                claim(json!({"volumeMode": "Block"})),
                vec![vol("fs", json!({}))],
                None,
            ),
            (
                "not available",
                claim(json!({})),
                vec![{
                    let mut v = vol("released", json!({}));
                    v["status"]["phase"] = "Released".into();
                    v
                }],
                None,
            ),
            (
                "other class",
                claim(json!({})),
                vec![{
                    let mut v = vol("hdd", json!({}));
                    v["spec"]["storageClassName"] = "wait-hdd-sc".into();
                    v
                }],
                None,
            ),
        ];
        for (name, c, vols, want) in cases {
            let pvc: PersistentVolumeClaim = serde_json::from_value(c).unwrap();
            let vols: Vec<Arc<PersistentVolume>> = vols
                .into_iter()
                .map(|v| Arc::new(serde_json::from_value(v).unwrap()))
                .collect();
            let got = find_matching_volume(&pvc, &vols, &n, &HashSet::new()).unwrap();
            assert_eq!(got.as_ref().and_then(|p| p.metadata.name.as_deref()), want, "{name}");
        }
    }

    #[test]
    fn volume_binding_generic_ephemeral() {
        let p = pod(json!({"metadata": {"name": "pod-a", "uid": "pod-uid"},
            "spec": {"containers": [], "volumes": [{"name": "scratch", "ephemeral": {}}]}}));
        let owned = |uid: &str| {
            let mut v = pvc("pod-a-scratch", "provision-sc");
            v["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "Pod", "name": "pod-a", "uid": uid, "controller": true}]);
            v
        };
        let cases = [
            (
                "no claim yet",
                vec![],
                Status::unresolvable(
                    r#"waiting for ephemeral volume controller to create the persistentvolumeclaim "pod-a-scratch""#,
                ),
            ),
            (
                "claim of another pod",
                vec![owned("someone-else")],
                Status::unresolvable(
                    "PVC default/pod-a-scratch was not created for pod default/pod-a (pod is not owner)",
                ),
            ),
            ("the pod's claim", vec![owned("pod-uid")], Status::success()),
        ];
        for (name, pvcs, want) in cases {
            let s = snap(vec![host("node1")], pvcs, vec![]);
            let (_, pre, _) = run(&VolumeBinding::default(), &p, &s);
            assert_eq!(pre, want, "{name}");
        }
    }

    /// An ApiCalls that records what it was asked.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        fail: bool,
    }

    impl ApiCalls for Recorder {
        fn bind(&self, namespace: &str, name: &str, _: &str, node: &str) -> Result<(), String> {
            self.calls.lock().push(format!("bind {namespace}/{name} {node}"));
            Ok(())
        }
        fn annotate_pvc(&self, namespace: &str, name: &str, key: &str, value: &str) -> Result<(), String> {
            self.calls
                .lock()
                .push(format!("annotate {namespace}/{name} {key}={value}"));
            if self.fail { Err("conflict".into()) } else { Ok(()) }
        }
        fn bind_pv(&self, pv: &str, namespace: &str, name: &str, uid: &str) -> Result<(), String> {
            self.calls.lock().push(format!("bind-pv {pv} {namespace}/{name} {uid}"));
            if self.fail { Err("conflict".into()) } else { Ok(()) }
        }
    }

    #[test]
    fn volume_binding_reserve_and_pre_bind() {
        let pl = VolumeBinding::default();
        let s = snap(
            vec![host("node1"), host("node2")],
            vec![
                request(pvc("pvc-a", "wait-sc"), "5G"),
                request(pvc("pvc-b", "wait-sc"), "5G"),
                pvc("pvc-c", "provision-sc"),
                bound(pvc("pvc-d", "wait-sc"), "pv-bound"),
            ],
            vec![
                affinity(
                    capacity(pv("pv-1", "wait-sc"), "10G"),
                    "kubernetes.io/hostname",
                    &["node1"],
                ),
                affinity(
                    capacity(pv("pv-2", "wait-sc"), "10G"),
                    "kubernetes.io/hostname",
                    &["node1"],
                ),
                pv("pv-bound", "wait-sc"),
            ],
        );
        let p = pod_with(&["pvc-a", "pvc-b", "pvc-c", "pvc-d"]);
        let (mut state, pre, filters) = run(&pl, &p, &s);
        assert!(pre.is_success());
        // node2 has no local volume for the two static claims.
        assert_eq!(
            filters,
            vec![Status::success(), unresolvable(&[ERR_REASON_BIND_CONFLICT])]
        );
        assert!(pl.reserve(&mut state, &p, "node1").is_success());
        let api = Recorder::default();
        assert!(pl.pre_bind(&api, &state, &p, "node1").is_success());
        // Two claims of one pod never get the same volume.
        assert_eq!(
            *api.calls.lock(),
            vec![
                "bind-pv pv-1 default/pvc-a uid-pvc-a",
                "bind-pv pv-2 default/pvc-b uid-pvc-b",
                "annotate default/pvc-c volume.kubernetes.io/selected-node=node1",
            ]
        );

        // Until the snapshot shows the binding, another pod's claim cannot
        // take the reserved volumes, and the provisioned claim stays on node1.
        let other = pod(json!({"metadata": {"name": "pod-b"}, "spec": {"containers": [],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "pvc-e"}}]}}));
        let mut objects = (*s.objects).clone();
        let e: PersistentVolumeClaim = serde_json::from_value(request(pvc("pvc-e", "wait-sc"), "5G")).unwrap();
        objects.pvcs.insert("default/pvc-e".into(), Arc::new(e));
        let mut s2 = s.clone();
        s2.objects = Arc::new(objects);
        let (_, _, filters) = run(&pl, &other, &s2);
        assert_eq!(filters[0], unresolvable(&[ERR_REASON_BIND_CONFLICT]));
        let third = pod_with(&["pvc-c"]);
        let (_, _, filters) = run(&pl, &third, &s2);
        assert_eq!(
            filters,
            vec![Status::success(), unresolvable(&[ERR_REASON_BIND_CONFLICT])]
        );

        // Once the volume changes in the snapshot, the assumption is dropped.
        let mut objects = (*s2.objects).clone();
        let mut pv1 = (*objects.pvs["pv-1"]).clone();
        pv1.metadata.resource_version = Some("2".into());
        objects.pvs.insert("pv-1".into(), Arc::new(pv1));
        s2.objects = Arc::new(objects);
        let (_, _, filters) = run(&pl, &other, &s2);
        assert_eq!(filters[0], Status::success());
    }

    #[test]
    fn volume_binding_unreserve_and_failures() {
        let pl = VolumeBinding::default();
        let s = snap(
            vec![host("node1")],
            vec![request(pvc("pvc-a", "wait-sc"), "5G")],
            vec![affinity(
                capacity(pv("pv-1", "wait-sc"), "10G"),
                "kubernetes.io/hostname",
                &["node1"],
            )],
        );
        let p = pod_with(&["pvc-a"]);
        let (mut state, _, _) = run(&pl, &p, &s);
        assert!(pl.reserve(&mut state, &p, "node1").is_success());
        pl.unreserve(&mut state, &p, "node1");
        assert!(pl.assumed.lock().pvs.is_empty());

        // A failed API call is an error and forgets the assumption.
        let (mut state, _, _) = run(&pl, &p, &s);
        assert!(pl.reserve(&mut state, &p, "node1").is_success());
        let api = Recorder {
            fail: true,
            ..Default::default()
        };
        assert_eq!(pl.pre_bind(&api, &state, &p, "node1"), Status::error("conflict"));
        assert!(pl.assumed.lock().pvs.is_empty());

        // All bound: nothing to do at PreBind.
        let s = snap(
            vec![host("node1")],
            vec![bound(pvc("pvc-a", "wait-sc"), "pv-1")],
            vec![pv("pv-1", "wait-sc")],
        );
        let (mut state, _, _) = run(&pl, &p, &s);
        assert!(pl.reserve(&mut state, &p, "node1").is_success());
        let api = Recorder::default();
        assert!(pl.pre_bind(&api, &state, &p, "node1").is_success());
        assert!(api.calls.lock().is_empty());
    }

    #[test]
    fn volume_binding_args() {
        let parse = |v: Value| -> Result<VolumeBindingArgs, String> {
            let a: VolumeBindingArgs = serde_json::from_value(v).map_err(|e| e.to_string())?;
            a.validate("args")?;
            Ok(a)
        };
        assert_eq!(parse(json!({})).unwrap().bind_timeout_seconds, 600);
        assert_eq!(parse(json!({"bindTimeoutSeconds": 0})).unwrap().bind_timeout_seconds, 0);
        assert!(parse(json!({"shape": [{"utilization": 0, "score": 0}]})).is_ok());
        assert_eq!(
            parse(json!({"bindTimeoutSeconds": -1})).unwrap_err(),
            "args.bindTimeoutSeconds: Invalid value: -1: invalid BindTimeoutSeconds, should not be a negative value"
        );
        assert!(parse(json!({"bogus": 1})).is_err());
    }
}
