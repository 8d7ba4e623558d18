//! `persistentvolume-binder-controller`: binds PersistentVolumeClaims to
//! PersistentVolumes, keeps both sides' phases right, and reclaims volumes
//! whose claims are gone.
//!
//! Upstream's `pkg/controller/volume/persistentvolume` (the "space shuttle"
//! `syncClaim`/`syncVolume`), with these limits:
//! - no dynamic provisioning and no volume plugins: for a class with a
//!   provisioner the claim is annotated with it and the
//!   `ExternalProvisioning` event recorded, as upstream does for external
//!   provisioners; in-tree `kubernetes.io/*` provisioners fail with
//!   `ProvisioningFailed` as upstream (no plugin matches);
//! - reclaiming: `Retain` keeps the volume `Released`; `Delete` deletes the
//!   PersistentVolume object (there is no deleter to destroy the storage);
//!   `Recycle` fails with `VolumeFailedRecycle` (no recycler).
//!
//! `WaitForFirstConsumer` claims wait for the scheduler: it either
//! pre-binds a volume (`spec.claimRef`), which this controller then binds,
//! or sets `volume.kubernetes.io/selected-node` for provisioning.

use std::collections::BTreeMap;
use std::sync::Arc;

use apimachinery::quantity::Quantity;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use super::StartFn;
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING};
use crate::informer::{Change, Informer, key, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

fn annotation<'a>(m: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(String::as_str)
}

/// The claim's class (upstream's `GetPersistentVolumeClaimClass`).
pub fn claim_class(c: &PersistentVolumeClaim) -> &str {
    annotation(&c.metadata, ANN_BETA_STORAGE_CLASS)
        .or(c.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()))
        .unwrap_or("")
}

/// The volume's class (upstream's `GetPersistentVolumeClass`).
pub fn volume_class(v: &PersistentVolume) -> &str {
    annotation(&v.metadata, ANN_BETA_STORAGE_CLASS)
        .or(v.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()))
        .unwrap_or("")
}

fn storage(list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>) -> i64 {
    list.and_then(|l| l.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map(|q| q.value())
        .unwrap_or(0)
}

fn requested(c: &PersistentVolumeClaim) -> i64 {
    storage(
        c.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

fn capacity(v: &PersistentVolume) -> i64 {
    storage(v.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

fn claim_volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("")
}

fn claim_ref(v: &PersistentVolume) -> Option<&ObjectReference> {
    v.spec.as_ref()?.claim_ref.as_ref()
}

fn phase(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn access_modes_of(modes: Option<&Vec<String>>) -> Vec<String> {
    let mut m: Vec<String> = modes.cloned().unwrap_or_default();
    m.sort();
    m.dedup();
    m
}

/// Upstream's `IsVolumeBoundToClaim`: the claimRef names the claim, and
/// its uid, when set, is the claim's.
pub fn is_volume_bound_to_claim(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = claim_ref(v) else { return false };
    r.name.as_deref() == c.metadata.name.as_deref()
        && r.namespace.as_deref() == c.metadata.namespace.as_deref()
        && (r.uid.as_deref().unwrap_or("").is_empty() || r.uid == c.metadata.uid)
}

fn volume_mode_mismatch(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let cm = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    let vm = v
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    cm != vm
}

fn access_modes_ok(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let have = access_modes_of(v.spec.as_ref().and_then(|s| s.access_modes.as_ref()));
    let want = access_modes_of(c.spec.as_ref().and_then(|s| s.access_modes.as_ref()));
    want.iter().all(|m| have.contains(m))
}

/// Upstream's `FindMatchingVolume` without a node (the controller's path):
/// a volume pre-bound to the claim wins; otherwise the smallest Available
/// volume of the claim's class, large enough, of its volume mode, matching
/// its selector. With `delay_binding`, only pre-bound volumes count.
fn find_matching_volume(
    c: &PersistentVolumeClaim,
    volumes: &[&Arc<PersistentVolume>],
    delay_binding: bool,
) -> Result<Option<Arc<PersistentVolume>>, String> {
    let want = requested(c);
    let class = claim_class(c);
    let selector = util::selector(c.spec.as_ref().and_then(|s| s.selector.as_ref())).map_err(|e| {
        format!(
            "error creating internal label selector for claim: {}: {e}",
            key(util::namespace(&c.metadata), util::name(&c.metadata))
        )
    })?;
    let mut smallest: Option<(&Arc<PersistentVolume>, i64)> = None;
    for v in volumes {
        if claim_ref(v).is_some() && !is_volume_bound_to_claim(v, c) {
            continue;
        }
        let size = capacity(v);
        if size < want || volume_mode_mismatch(v, c) || v.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if is_volume_bound_to_claim(v, c) {
            return Ok(Some((*v).clone()));
        }
        if delay_binding {
            continue;
        }
        if phase(v) != "Available" {
            continue;
        }
        // A claim without a selector takes any volume (unlike util::matches,
        // whose null selector matches nothing).
        if c.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some()
            && !util::matches(&selector, v.metadata.labels.as_ref())
        {
            continue;
        }
        if volume_class(v) != class {
            continue;
        }
        if smallest.is_none_or(|(_, s)| s > size) {
            smallest = Some((v, size));
        }
    }
    Ok(smallest.map(|(v, _)| v.clone()))
}

/// Upstream's `findBestMatchForClaim`: the volumes are grouped by their
/// access modes; groups that include every mode the claim asks for are
/// tried from the fewest modes up, and the first match wins.
pub fn find_best_match(
    c: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    delay_binding: bool,
) -> Result<Option<Arc<PersistentVolume>>, String> {
    let want = access_modes_of(c.spec.as_ref().and_then(|s| s.access_modes.as_ref()));
    let mut groups: BTreeMap<Vec<String>, Vec<&Arc<PersistentVolume>>> = BTreeMap::new();
    for v in volumes {
        groups
            .entry(access_modes_of(v.spec.as_ref().and_then(|s| s.access_modes.as_ref())))
            .or_default()
            .push(v);
    }
    let mut candidates: Vec<(&Vec<String>, &Vec<&Arc<PersistentVolume>>)> = groups
        .iter()
        .filter(|(modes, _)| want.iter().all(|m| modes.contains(m)))
        .collect();
    candidates.sort_by_key(|(modes, _)| modes.len());
    for (_, vols) in candidates {
        if let Some(v) = find_matching_volume(c, vols, delay_binding)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Upstream's `checkVolumeSatisfyClaim` (a claim naming its volume).
pub fn check_volume_satisfies_claim(v: &PersistentVolume, c: &PersistentVolumeClaim) -> Result<(), String> {
    if v.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion \"{}\"",
            util::name(&v.metadata)
        ));
    }
    if capacity(v) < requested(c) {
        return Err("requested PV is too small".into());
    }
    if volume_class(v) != claim_class(c) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode_mismatch(v, c) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_ok(v, c) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// The default class: of those annotated default, the newest (then by
/// name), as upstream's `GetDefaultClass`.
pub fn default_class(classes: &[Arc<StorageClass>]) -> Option<&Arc<StorageClass>> {
    classes
        .iter()
        .filter(|c| {
            annotation(&c.metadata, ANN_DEFAULT_CLASS)
                .or(annotation(&c.metadata, ANN_BETA_DEFAULT_CLASS))
                .is_some_and(|v| v == "true")
        })
        .max_by(|a, b| {
            let t = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b)).then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
}

/// An event to record on the object a step concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ev {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

fn normal(reason: &'static str, message: impl Into<String>) -> Ev {
    Ev {
        warning: false,
        reason,
        message: message.into(),
    }
}

fn warning(reason: &'static str, message: impl Into<String>) -> Ev {
    Ev {
        warning: true,
        reason,
        message: message.into(),
    }
}

/// What to do about a claim.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimStep {
    /// Set `spec.storageClassName` to the default class (the retroactive
    /// default storage class assignment).
    AssignClass(String),
    /// Bind the claim and the volume (both sides, then both statuses).
    Bind(Arc<PersistentVolume>),
    /// Phase Pending (capacity and access modes cleared), after the event.
    Pending(Option<Ev>),
    /// Annotate with the external provisioner, record the event, Pending.
    Provision(String),
    /// Phase Lost, with the event.
    Lost(Ev),
    /// A failed sync (retried), with a warning event if any.
    Fail(String, Option<Ev>),
}

/// What the claim's world holds.
pub struct ClaimWorld<'a> {
    pub volumes: &'a [Arc<PersistentVolume>],
    pub classes: &'a [Arc<StorageClass>],
    /// Names of pods using the claim that are not scheduled yet.
    pub unscheduled_pods: Vec<String>,
}

/// Upstream's `syncClaim`: unbound claims (no `bind-completed`) get a
/// volume; bound ones are checked.
pub fn decide_claim(c: &PersistentVolumeClaim, w: &ClaimWorld) -> ClaimStep {
    if annotation(&c.metadata, ANN_BIND_COMPLETED).is_none() {
        decide_unbound_claim(c, w)
    } else {
        decide_bound_claim(c, w)
    }
}

fn find_volume<'a>(w: &'a ClaimWorld, name: &str) -> Option<&'a Arc<PersistentVolume>> {
    w.volumes.iter().find(|v| util::name(&v.metadata) == name)
}

fn find_class<'a>(w: &'a ClaimWorld, name: &str) -> Option<&'a Arc<StorageClass>> {
    w.classes.iter().find(|c| util::name(&c.metadata) == name)
}

fn decide_unbound_claim(c: &PersistentVolumeClaim, w: &ClaimWorld) -> ClaimStep {
    let volume_name = claim_volume_name(c);
    if volume_name.is_empty() {
        // Retroactive default class: a claim without a class gets the
        // default one, once there is a default.
        if c.spec.as_ref().and_then(|s| s.storage_class_name.as_ref()).is_none()
            && annotation(&c.metadata, ANN_BETA_STORAGE_CLASS).is_none()
            && let Some(d) = default_class(w.classes)
        {
            return ClaimStep::AssignClass(util::name(&d.metadata).to_string());
        }
        let class_name = claim_class(c);
        let selected = annotation(&c.metadata, ANN_SELECTED_NODE).is_some();
        let delay = !selected
            && !class_name.is_empty()
            && find_class(w, class_name)
                .is_some_and(|sc| sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        let found = match find_best_match(c, w.volumes, delay) {
            Ok(v) => v,
            Err(e) => return ClaimStep::Fail(e.clone(), Some(warning("FailedBinding", e))),
        };
        if let Some(v) = found {
            return ClaimStep::Bind(v);
        }
        if delay && !selected {
            let ev = match w.unscheduled_pods.as_slice() {
                [] => normal(
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                ),
                [one] => normal("WaitForPodScheduled", format!("waiting for pod {one} to be scheduled")),
                many => normal(
                    "WaitForPodScheduled",
                    format!("waiting for pods {} to be scheduled", many.join(",")),
                ),
            };
            return ClaimStep::Pending(Some(ev));
        }
        if !class_name.is_empty() {
            let Some(sc) = find_class(w, class_name) else {
                let msg = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
                return ClaimStep::Fail(msg.clone(), Some(warning("ProvisioningFailed", msg)));
            };
            if sc.provisioner.starts_with("kubernetes.io/") {
                // No in-tree plugin provisions here.
                let msg = format!("no volume plugin matched name: {}", sc.provisioner);
                return ClaimStep::Fail(msg.clone(), Some(warning("ProvisioningFailed", msg)));
            }
            return ClaimStep::Provision(sc.provisioner.clone());
        }
        return ClaimStep::Pending(Some(normal(
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        )));
    }
    // The user asked for a specific volume.
    let Some(v) = find_volume(w, volume_name) else {
        return ClaimStep::Pending(None);
    };
    match claim_ref(v) {
        None => match check_volume_satisfies_claim(v, c) {
            Ok(()) => ClaimStep::Bind(v.clone()),
            Err(e) => ClaimStep::Pending(Some(warning(
                "VolumeMismatch",
                format!("Cannot bind to requested volume \"{volume_name}\": {e}"),
            ))),
        },
        Some(_) if is_volume_bound_to_claim(v, c) => ClaimStep::Bind(v.clone()),
        Some(r) => {
            if annotation(&c.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
                ClaimStep::Pending(None)
            } else {
                ClaimStep::Fail(
                    format!(
                        "invalid binding of claim \"{}\" to volume \"{volume_name}\": volume already claimed by \"{}\"",
                        key(util::namespace(&c.metadata), util::name(&c.metadata)),
                        key(r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or(""))
                    ),
                    None,
                )
            }
        }
    }
}

fn decide_bound_claim(c: &PersistentVolumeClaim, w: &ClaimWorld) -> ClaimStep {
    let name = claim_volume_name(c);
    if name.is_empty() {
        return ClaimStep::Lost(warning(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        ));
    }
    let Some(v) = find_volume(w, name) else {
        return ClaimStep::Lost(warning(
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        ));
    };
    match claim_ref(v) {
        None => ClaimStep::Bind(v.clone()),
        Some(r) if r.uid == c.metadata.uid => ClaimStep::Bind(v.clone()),
        Some(_) => ClaimStep::Lost(warning(
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )),
    }
}

/// What to do about a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeStep {
    Nothing,
    /// Set the phase (no-op if already set).
    Phase(&'static str),
    /// The claim is gone: Released (unless Released or Failed already),
    /// then the reclaim policy.
    Release,
    /// Sync the claim (the binding is half done).
    SyncClaim(String),
    /// Clear the binding the controller made (or the uid of a user's
    /// pre-binding), then Available.
    Unbind,
}

/// Upstream's `syncVolume`. `claim` is the claim the volume's claimRef
/// names, if it exists (found by namespace/name).
pub fn decide_volume(v: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeStep {
    let Some(r) = claim_ref(v) else {
        return VolumeStep::Phase("Available");
    };
    if r.uid.as_deref().unwrap_or("").is_empty() {
        // Pre-bound by the user; the claim's sync binds it.
        return VolumeStep::Phase("Available");
    }
    let claim = claim.filter(|c| c.metadata.uid == r.uid);
    let Some(c) = claim else {
        return VolumeStep::Release;
    };
    let bound_to = claim_volume_name(c);
    if bound_to.is_empty() {
        return VolumeStep::SyncClaim(key(util::namespace(&c.metadata), util::name(&c.metadata)));
    }
    if bound_to == util::name(&v.metadata) {
        return VolumeStep::Phase("Bound");
    }
    let dynamic = annotation(&v.metadata, "pv.kubernetes.io/provisioned-by").is_some();
    let policy = v
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    if dynamic && policy == "Delete" {
        VolumeStep::Release
    } else {
        VolumeStep::Unbind
    }
}

/// `spec.claimRef` for the claim (upstream's `GetReference`).
fn reference_to(c: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: c.metadata.namespace.clone(),
        name: c.metadata.name.clone(),
        uid: c.metadata.uid.clone(),
        resource_version: c.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The volume bound to the claim, if it changes (upstream's
/// `GetBindVolumeToClaim`): claimRef set; `bound-by-controller` when the
/// controller, not the user, chose the pair.
pub fn volume_bound_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> Option<PersistentVolume> {
    let mut out = v.clone();
    let mut dirty = false;
    let needs_ref = claim_ref(v).is_none_or(|r| !(is_volume_bound_to_claim(v, c) && r.uid == c.metadata.uid));
    if needs_ref {
        out.spec.get_or_insert_with(Default::default).claim_ref = Some(reference_to(c));
        dirty = true;
    }
    if !is_volume_bound_to_claim(v, c) && annotation(&v.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
        out.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        dirty = true;
    }
    dirty.then_some(out)
}

/// The claim bound to the volume, if it changes (upstream's
/// `bindClaimToVolume`).
pub fn claim_bound_to(c: &PersistentVolumeClaim, v: &PersistentVolume) -> Option<PersistentVolumeClaim> {
    let mut out = c.clone();
    let mut dirty = false;
    let name = util::name(&v.metadata);
    if claim_volume_name(c) != name {
        out.spec.get_or_insert_with(Default::default).volume_name = Some(name.into());
        out.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        dirty = true;
    }
    if annotation(&c.metadata, ANN_BIND_COMPLETED).is_none() {
        out.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANN_BIND_COMPLETED.into(), "yes".into());
        dirty = true;
    }
    dirty.then_some(out)
}

/// The claim with status `phase` (capacity and access modes from the
/// volume when bound), if it changes (upstream's `updateClaimStatus`).
pub fn claim_with_status(
    c: &PersistentVolumeClaim,
    phase: &str,
    v: Option<&PersistentVolume>,
) -> Option<PersistentVolumeClaim> {
    let mut out = c.clone();
    let status = out.status.get_or_insert_with(Default::default);
    let mut dirty = false;
    if status.phase.as_deref() != Some(phase) {
        status.phase = Some(phase.into());
        dirty = true;
    }
    match v {
        None => {
            if status.access_modes.is_some() {
                status.access_modes = None;
                dirty = true;
            }
            if status.capacity.is_some() {
                status.capacity = None;
                dirty = true;
            }
        }
        Some(v) => {
            let spec = v.spec.clone().unwrap_or_default();
            if status.access_modes != spec.access_modes {
                status.access_modes = spec.access_modes.clone();
                dirty = true;
            }
            if storage(status.capacity.as_ref()) != capacity(v) || status.capacity.is_none() {
                status.capacity = spec.capacity.clone();
                dirty = true;
            }
        }
    }
    dirty.then_some(out)
}

fn volume_with_phase(v: &PersistentVolume, phase: &str, message: &str) -> Option<PersistentVolume> {
    let cur = v.status.clone().unwrap_or_default();
    if cur.phase.as_deref() == Some(phase) && cur.message.as_deref().unwrap_or("") == message {
        return None;
    }
    let mut out = v.clone();
    let status = out.status.get_or_insert_with(Default::default);
    if status.phase.as_deref() != Some(phase) {
        status.last_phase_transition_time = Some(Time(jiff::Timestamp::now()));
    }
    status.phase = Some(phase.into());
    status.message = (!message.is_empty()).then(|| message.to_string());
    Some(out)
}

/// Names of the pods that use the claim and are not scheduled (upstream's
/// `findNonScheduledPodsByPVC`); generic ephemeral volumes count too.
pub fn unscheduled_pods_using(pods: &[Arc<Pod>], claim: &str) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.node_name.as_deref().unwrap_or("").is_empty()
                    && s.volumes.iter().flatten().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == claim)
                            || (v.ephemeral.is_some() && format!("{}-{}", util::name(&p.metadata), v.name) == claim)
                    })
            })
        })
        .map(|p| util::name(&p.metadata).to_string())
        .collect();
    names.sort();
    names
}

struct Controller {
    client: kube::Client,
    recorder: Recorder,
    claim_queue: Arc<Queue>,
    volume_queue: Arc<Queue>,
    volumes: Arc<Informer<PersistentVolume>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    classes: Arc<Informer<StorageClass>>,
    pods: Arc<Informer<Pod>>,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        recorder: ctx.recorder("persistentvolume-controller"),
        claim_queue: ctx.queue("claims"),
        volume_queue: ctx.queue("volumes"),
        volumes: ctx.informers.get(),
        claims: ctx.informers.get(),
        classes: ctx.informers.get(),
        pods: ctx.informers.get(),
    });
    let vq = c.volume_queue.clone();
    c.volumes.add_handler(move |ch| {
        if !matches!(ch, Change::Delete(_)) {
            vq.add(util::name(&ch.object().metadata));
        }
    });
    let (cq, vq) = (c.claim_queue.clone(), c.volume_queue.clone());
    c.claims.add_handler(move |ch| match ch {
        Change::Delete(claim) => {
            // Its volume is released.
            let v = claim_volume_name(claim);
            if !v.is_empty() {
                vq.add(v);
            }
        }
        _ => cq.add(key(
            util::namespace(&ch.object().metadata),
            util::name(&ch.object().metadata),
        )),
    });
    // A class appearing (or becoming default) may unblock claims.
    let (cq, claims) = (c.claim_queue.clone(), c.claims.clone());
    c.classes.add_handler(move |ch| {
        if matches!(ch, Change::Delete(_)) {
            return;
        }
        for claim in claims.list() {
            if claim_phase(&claim) != "Bound" {
                cq.add(key(util::namespace(&claim.metadata), util::name(&claim.metadata)));
            }
        }
    });
    let period = ctx.opts.pvclaimbinder_sync_period;
    tokio::spawn(async move {
        c.volumes.wait_synced().await;
        c.claims.wait_synced().await;
        c.classes.wait_synced().await;
        c.pods.wait_synced().await;
        let cc = c.clone();
        run_workers(c.claim_queue.clone(), 1, move |k| {
            let c = cc.clone();
            async move { c.sync_claim(&k).await }
        });
        let cc = c.clone();
        run_workers(c.volume_queue.clone(), 1, move |k| {
            let c = cc.clone();
            async move { c.sync_volume(&k).await }
        });
        // Upstream's periodic resync of every claim and volume.
        let mut tick = tokio::time::interval(period.max(std::time::Duration::from_secs(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            for claim in c.claims.list() {
                c.claim_queue
                    .add(key(util::namespace(&claim.metadata), util::name(&claim.metadata)));
            }
            for v in c.volumes.list() {
                c.volume_queue.add(util::name(&v.metadata));
            }
        }
    });
    Ok(())
}

fn tolerate_gone(r: Result<(), kube::Error>) -> anyhow::Result<()> {
    match r {
        Err(e) if util::is_not_found(&e) => Ok(()),
        other => Ok(other?),
    }
}

impl Controller {
    fn event<K: kube::Resource<DynamicType = ()>>(&self, o: &K, ev: &Ev) {
        let t = if ev.warning { WARNING } else { NORMAL };
        self.recorder.event(o, t, ev.reason, ev.message.clone());
    }

    async fn sync_claim(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(k);
        let Some(claim) = self.claims.get(ns, name) else {
            return Ok(());
        };
        let volumes = self.volumes.list();
        let classes = self.classes.list();
        let world = ClaimWorld {
            volumes: &volumes,
            classes: &classes,
            unscheduled_pods: unscheduled_pods_using(&self.pods.list_namespace(ns), name),
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        match decide_claim(&claim, &world) {
            ClaimStep::AssignClass(class) => {
                let mut c = (*claim).clone();
                c.spec.get_or_insert_with(Default::default).storage_class_name = Some(class);
                tolerate_gone(api.replace(name, &PostParams::default(), &c).await.map(|_| ()))
            }
            ClaimStep::Bind(v) => self.bind(&v, &claim).await,
            ClaimStep::Pending(ev) => {
                if let Some(ev) = ev {
                    self.event(claim.as_ref(), &ev);
                }
                self.claim_status(&claim, "Pending", None).await
            }
            ClaimStep::Provision(provisioner) => {
                let mut c = (*claim).clone();
                let ann = c.metadata.annotations.get_or_insert_with(Default::default);
                let changed = ann.get(ANN_STORAGE_PROVISIONER) != Some(&provisioner)
                    || ann.get(ANN_BETA_STORAGE_PROVISIONER) != Some(&provisioner);
                let c = if changed {
                    ann.insert(ANN_STORAGE_PROVISIONER.into(), provisioner.clone());
                    ann.insert(ANN_BETA_STORAGE_PROVISIONER.into(), provisioner.clone());
                    match api.replace(name, &PostParams::default(), &c).await {
                        Ok(c) => c,
                        Err(e) if util::is_not_found(&e) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    c
                };
                self.recorder.event(
                    &c,
                    NORMAL,
                    "ExternalProvisioning",
                    format!(
                        "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                    ),
                );
                self.claim_status(&c, "Pending", None).await
            }
            ClaimStep::Lost(ev) => {
                self.event(claim.as_ref(), &ev);
                self.claim_status(&claim, "Lost", None).await
            }
            ClaimStep::Fail(msg, ev) => {
                if let Some(ev) = ev {
                    self.event(claim.as_ref(), &ev);
                }
                anyhow::bail!("{msg}")
            }
        }
    }

    async fn claim_status(
        &self,
        c: &PersistentVolumeClaim,
        phase: &str,
        v: Option<&PersistentVolume>,
    ) -> anyhow::Result<()> {
        let Some(updated) = claim_with_status(c, phase, v) else {
            return Ok(());
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), util::namespace(&c.metadata));
        tolerate_gone(
            api.replace_status(util::name(&c.metadata), &PostParams::default(), &updated)
                .await
                .map(|_| ()),
        )
    }

    async fn volume_phase(&self, v: &PersistentVolume, phase: &str, message: &str) -> kube::Result<PersistentVolume> {
        let Some(updated) = volume_with_phase(v, phase, message) else {
            return Ok(v.clone());
        };
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.replace_status(util::name(&v.metadata), &PostParams::default(), &updated)
            .await
    }

    /// Upstream's `bind`: the volume's claimRef, its phase, the claim's
    /// volumeName and annotations, its status — each write with the
    /// resourceVersion read, so a stale view fails and is retried.
    async fn bind(&self, v: &PersistentVolume, c: &PersistentVolumeClaim) -> anyhow::Result<()> {
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let mut volume = v.clone();
        if let Some(updated) = volume_bound_to(v, c) {
            volume = pvs
                .replace(util::name(&v.metadata), &PostParams::default(), &updated)
                .await?;
        }
        let volume = self.volume_phase(&volume, "Bound", "").await?;
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), util::namespace(&c.metadata));
        let mut claim = c.clone();
        if let Some(updated) = claim_bound_to(c, &volume) {
            claim = api
                .replace(util::name(&c.metadata), &PostParams::default(), &updated)
                .await?;
        }
        self.claim_status(&claim, "Bound", Some(&volume)).await
    }

    async fn sync_volume(&self, name: &str) -> anyhow::Result<()> {
        let Some(v) = self.volumes.get("", name) else {
            return Ok(());
        };
        let mut claim = None;
        if let Some(r) = claim_ref(&v) {
            let (ns, cn) = (r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or(""));
            claim = self.claims.get(ns, cn).map(|c| (*c).clone());
            // The cache may lag a claim the scheduler or a provisioner just
            // used: ask the apiserver before releasing the volume.
            if claim.is_none()
                && !matches!(phase(&v), "Released" | "Failed")
                && !r.uid.as_deref().unwrap_or("").is_empty()
            {
                claim = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns)
                    .get_opt(cn)
                    .await?;
            }
        }
        match decide_volume(&v, claim.as_ref()) {
            VolumeStep::Nothing => Ok(()),
            VolumeStep::Phase(p) => tolerate_gone(self.volume_phase(&v, p, "").await.map(|_| ())),
            VolumeStep::SyncClaim(k) => {
                self.claim_queue.add(k);
                Ok(())
            }
            VolumeStep::Unbind => {
                let mut u = (*v).clone();
                if annotation(&v.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
                    u.spec.get_or_insert_with(Default::default).claim_ref = None;
                    if let Some(a) = u.metadata.annotations.as_mut() {
                        a.remove(ANN_BOUND_BY_CONTROLLER);
                    }
                } else if let Some(r) = u.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
                    r.uid = None;
                }
                let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
                let u = match pvs.replace(name, &PostParams::default(), &u).await {
                    Ok(u) => u,
                    Err(e) if util::is_not_found(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                tolerate_gone(self.volume_phase(&u, "Available", "").await.map(|_| ()))
            }
            VolumeStep::Release => {
                let mut v = (*v).clone();
                if !matches!(phase(&v), "Released" | "Failed") {
                    v = match self.volume_phase(&v, "Released", "").await {
                        Ok(v) => v,
                        Err(e) if util::is_not_found(&e) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    };
                }
                self.reclaim(&v).await
            }
        }
    }

    /// Upstream's `reclaimVolume`, without volume plugins.
    async fn reclaim(&self, v: &PersistentVolume) -> anyhow::Result<()> {
        let policy = v
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        match policy {
            "Delete" => {
                if v.metadata.deletion_timestamp.is_some() {
                    return Ok(());
                }
                let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: v.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pvs.delete(util::name(&v.metadata), &dp).await {
                    Ok(_) => Ok(()),
                    Err(e) if util::is_conflict_or_not_found(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            "Recycle" => {
                if phase(v) == "Failed" {
                    return Ok(());
                }
                let msg = "No recycler plugin found for the volume!";
                self.recorder.event(v, WARNING, "VolumeFailedRecycle", msg);
                tolerate_gone(self.volume_phase(v, "Failed", msg).await.map(|_| ()))
            }
            // Retain: the volume stays Released for the administrator.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// (why, claim, volumes, delayed binding, the volume chosen)
    type MatchCase = (&'static str, Value, Vec<Value>, bool, Option<&'static str>);

    fn pv(name: &str, size: &str, class: &str, modes: &[&str]) -> Value {
        json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
               "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class,
                        "persistentVolumeReclaimPolicy": "Retain"},
               "status": {"phase": "Available"}})
    }

    fn pvc(size: &str, class: Option<&str>, modes: &[&str]) -> Value {
        let mut v = json!({"metadata": {"name": "c", "namespace": "ns", "uid": "uid-c", "resourceVersion": "7"},
               "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}}});
        if let Some(class) = class {
            v["spec"]["storageClassName"] = json!(class);
        }
        v
    }

    fn vols(vs: Vec<Value>) -> Vec<Arc<PersistentVolume>> {
        vs.into_iter()
            .map(|v| Arc::new(serde_json::from_value(v).unwrap()))
            .collect()
    }

    fn claim(v: Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).unwrap()
    }

    fn with(mut v: Value, path: &[&str], x: Value) -> Value {
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        cur[path[path.len() - 1]] = x;
        v
    }

    #[test]
    fn matching_volume_choice() {
        let rwo = &["ReadWriteOnce"][..];
        let cases: Vec<MatchCase> = vec![
            (
                "the smallest that fits",
                pvc("1Gi", Some(""), rwo),
                vec![
                    pv("big", "10Gi", "", rwo),
                    pv("small", "2Gi", "", rwo),
                    pv("tiny", "500Mi", "", rwo),
                ],
                false,
                Some("small"),
            ),
            (
                "class must match",
                pvc("1Gi", Some("gold"), rwo),
                vec![pv("plain", "1Gi", "", rwo), pv("gold", "5Gi", "gold", rwo)],
                false,
                Some("gold"),
            ),
            (
                "a claim without class takes class-less volumes",
                pvc("1Gi", None, rwo),
                vec![pv("gold", "1Gi", "gold", rwo), pv("plain", "1Gi", "", rwo)],
                false,
                Some("plain"),
            ),
            (
                "access modes must be a superset; fewer modes preferred over smaller size",
                pvc("1Gi", Some(""), rwo),
                vec![
                    pv("rox", "1Gi", "", &["ReadOnlyMany"]),
                    pv("both", "1Gi", "", &["ReadWriteOnce", "ReadOnlyMany"]),
                    pv("rwo", "5Gi", "", rwo),
                ],
                false,
                Some("rwo"),
            ),
            (
                "volume mode must match",
                pvc("1Gi", Some(""), rwo),
                vec![with(
                    pv("block", "1Gi", "", rwo),
                    &["spec", "volumeMode"],
                    json!("Block"),
                )],
                false,
                None,
            ),
            (
                "the selector must match",
                with(
                    pvc("1Gi", Some(""), rwo),
                    &["spec", "selector"],
                    json!({"matchLabels": {"tier": "slow"}}),
                ),
                vec![pv("fast", "1Gi", "", rwo)],
                false,
                None,
            ),
            (
                "only Available volumes",
                pvc("1Gi", Some(""), rwo),
                vec![with(
                    pv("released", "1Gi", "", rwo),
                    &["status", "phase"],
                    json!("Released"),
                )],
                false,
                None,
            ),
            (
                "a volume pre-bound to the claim wins, even if larger",
                pvc("1Gi", Some(""), rwo),
                vec![
                    pv("small", "1Gi", "", rwo),
                    with(
                        pv("mine", "9Gi", "", rwo),
                        &["spec", "claimRef"],
                        json!({"namespace": "ns", "name": "c"}),
                    ),
                ],
                false,
                Some("mine"),
            ),
            (
                "volumes pre-bound to others are skipped",
                pvc("1Gi", Some(""), rwo),
                vec![with(
                    pv("theirs", "1Gi", "", rwo),
                    &["spec", "claimRef"],
                    json!({"namespace": "ns", "name": "other"}),
                )],
                false,
                None,
            ),
            (
                "delayed binding takes only pre-bound volumes",
                pvc("1Gi", Some(""), rwo),
                vec![
                    pv("free", "1Gi", "", rwo),
                    with(
                        pv("chosen", "2Gi", "", rwo),
                        &["spec", "claimRef"],
                        json!({"namespace": "ns", "name": "c", "uid": "uid-c"}),
                    ),
                ],
                true,
                Some("chosen"),
            ),
            (
                "delayed binding without a pre-bound volume waits",
                pvc("1Gi", Some(""), rwo),
                vec![pv("free", "1Gi", "", rwo)],
                true,
                None,
            ),
        ];
        for (why, c, vs, delay, want) in cases {
            let got = find_best_match(&claim(c), &vols(vs), delay).unwrap();
            assert_eq!(got.as_ref().map(|v| util::name(&v.metadata)), want, "{why}");
        }
    }

    fn class(name: &str, mode: &str, provisioner: &str) -> Arc<StorageClass> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn claim_steps() {
        let rwo = &["ReadWriteOnce"][..];
        let classes = vec![
            class("wait", "WaitForFirstConsumer", "kubernetes.io/no-provisioner"),
            class("csi", "Immediate", "csi.example.com"),
            class("intree", "Immediate", "kubernetes.io/no-provisioner"),
        ];
        let step = |c: Value, vs: Vec<Value>, pods: Vec<&str>| {
            let volumes = vols(vs);
            let w = ClaimWorld {
                volumes: &volumes,
                classes: &classes,
                unscheduled_pods: pods.into_iter().map(String::from).collect(),
            };
            decide_claim(&claim(c), &w)
        };
        let kind = |s: ClaimStep| match s {
            ClaimStep::AssignClass(c) => format!("assign {c}"),
            ClaimStep::Bind(v) => format!("bind {}", util::name(&v.metadata)),
            ClaimStep::Pending(None) => "pending".into(),
            ClaimStep::Pending(Some(e)) => format!("pending {}: {}", e.reason, e.message),
            ClaimStep::Provision(p) => format!("provision {p}"),
            ClaimStep::Lost(e) => format!("lost {}", e.reason),
            ClaimStep::Fail(m, _) => format!("fail {m}"),
        };
        let cases: Vec<(&str, ClaimStep, &str)> = vec![
            (
                "no volume and no class",
                step(pvc("1Gi", Some(""), rwo), vec![], vec![]),
                "pending FailedBinding: no persistent volumes available for this claim and no storage class is set",
            ),
            (
                "a WaitForFirstConsumer claim waits",
                step(pvc("1Gi", Some("wait"), rwo), vec![pv("w", "1Gi", "wait", rwo)], vec![]),
                "pending WaitForFirstConsumer: waiting for first consumer to be created before binding",
            ),
            (
                "… naming the unscheduled pod",
                step(pvc("1Gi", Some("wait"), rwo), vec![], vec!["web-0"]),
                "pending WaitForPodScheduled: waiting for pod web-0 to be scheduled",
            ),
            (
                "… and binds once the scheduler picked the volume",
                step(
                    pvc("1Gi", Some("wait"), rwo),
                    vec![with(
                        pv("w", "1Gi", "wait", rwo),
                        &["spec", "claimRef"],
                        json!({"namespace": "ns", "name": "c", "uid": "uid-c"}),
                    )],
                    vec![],
                ),
                "bind w",
            ),
            (
                "an external provisioner is waited for",
                step(pvc("1Gi", Some("csi"), rwo), vec![], vec![]),
                "provision csi.example.com",
            ),
            (
                "no in-tree plugin provisions",
                step(pvc("1Gi", Some("intree"), rwo), vec![], vec![]),
                "fail no volume plugin matched name: kubernetes.io/no-provisioner",
            ),
            (
                "an unknown class",
                step(pvc("1Gi", Some("nope"), rwo), vec![], vec![]),
                "fail storageclass.storage.k8s.io \"nope\" not found",
            ),
            (
                "a claim naming a too small volume",
                step(
                    with(pvc("5Gi", Some(""), rwo), &["spec", "volumeName"], json!("v")),
                    vec![pv("v", "1Gi", "", rwo)],
                    vec![],
                ),
                "pending VolumeMismatch: Cannot bind to requested volume \"v\": requested PV is too small",
            ),
            (
                "a claim naming a free volume",
                step(
                    with(pvc("1Gi", Some(""), rwo), &["spec", "volumeName"], json!("v")),
                    vec![pv("v", "1Gi", "", rwo)],
                    vec![],
                ),
                "bind v",
            ),
            (
                "a bound claim whose volume is gone",
                step(
                    with(
                        with(pvc("1Gi", Some(""), rwo), &["spec", "volumeName"], json!("v")),
                        &["metadata", "annotations"],
                        json!({ANN_BIND_COMPLETED: "yes"}),
                    ),
                    vec![],
                    vec![],
                ),
                "lost ClaimLost",
            ),
        ];
        for (why, got, want) in cases {
            assert_eq!(kind(got), want, "{why}");
        }
        // A default class is assigned to a claim without one.
        let mut with_default = classes.clone();
        with_default.push(Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "std", "annotations": {ANN_DEFAULT_CLASS: "true"}},
                "provisioner": "csi.example.com"}),
            )
            .unwrap(),
        ));
        let w = ClaimWorld {
            volumes: &[],
            classes: &with_default,
            unscheduled_pods: vec![],
        };
        assert_eq!(kind(decide_claim(&claim(pvc("1Gi", None, rwo)), &w)), "assign std");
    }

    #[test]
    fn volume_steps() {
        let rwo = &["ReadWriteOnce"][..];
        let bound = |uid: &str| {
            let v = with(
                pv("v", "1Gi", "", rwo),
                &["spec", "claimRef"],
                json!({"namespace": "ns", "name": "c", "uid": uid}),
            );
            serde_json::from_value::<PersistentVolume>(v).unwrap()
        };
        let c = claim(pvc("1Gi", Some(""), rwo));
        let c_bound = claim(with(pvc("1Gi", Some(""), rwo), &["spec", "volumeName"], json!("v")));
        let c_elsewhere = claim(with(pvc("1Gi", Some(""), rwo), &["spec", "volumeName"], json!("w")));
        let free: PersistentVolume = serde_json::from_value(pv("v", "1Gi", "", rwo)).unwrap();
        let mut by_controller = bound("uid-c");
        by_controller
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        let cases: Vec<(&str, VolumeStep, VolumeStep)> = vec![
            ("unclaimed", decide_volume(&free, None), VolumeStep::Phase("Available")),
            (
                "pre-bound by the user",
                decide_volume(&bound(""), Some(&c)),
                VolumeStep::Phase("Available"),
            ),
            ("claim gone", decide_volume(&bound("uid-c"), None), VolumeStep::Release),
            (
                "a new claim of the same name",
                decide_volume(&bound("uid-old"), Some(&c)),
                VolumeStep::Release,
            ),
            (
                "half bound: the claim finishes",
                decide_volume(&bound("uid-c"), Some(&c)),
                VolumeStep::SyncClaim("ns/c".into()),
            ),
            (
                "fully bound",
                decide_volume(&bound("uid-c"), Some(&c_bound)),
                VolumeStep::Phase("Bound"),
            ),
            (
                "the claim went elsewhere",
                decide_volume(&by_controller, Some(&c_elsewhere)),
                VolumeStep::Unbind,
            ),
        ];
        for (why, got, want) in cases {
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn binding_writes() {
        let rwo = &["ReadWriteOnce"][..];
        let v: PersistentVolume = serde_json::from_value(pv("v", "2Gi", "", rwo)).unwrap();
        let c = claim(pvc("1Gi", Some(""), rwo));
        let bv = volume_bound_to(&v, &c).expect("claimRef set");
        let r = bv.spec.as_ref().unwrap().claim_ref.clone().unwrap();
        assert_eq!(
            (
                r.kind.as_deref(),
                r.name.as_deref(),
                r.uid.as_deref(),
                r.resource_version.as_deref()
            ),
            (Some("PersistentVolumeClaim"), Some("c"), Some("uid-c"), Some("7"))
        );
        assert_eq!(annotation(&bv.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
        assert!(volume_bound_to(&bv, &c).is_none(), "already bound");
        let bc = claim_bound_to(&c, &bv).expect("volumeName set");
        assert_eq!(claim_volume_name(&bc), "v");
        assert_eq!(annotation(&bc.metadata, ANN_BIND_COMPLETED), Some("yes"));
        assert_eq!(annotation(&bc.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
        let sc = claim_with_status(&bc, "Bound", Some(&bv)).expect("status");
        assert_eq!(
            serde_json::to_value(sc.status).unwrap(),
            json!({"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}})
        );
        // A user's pre-binding keeps no bound-by-controller mark.
        let pre: PersistentVolume = serde_json::from_value(with(
            pv("v", "2Gi", "", rwo),
            &["spec", "claimRef"],
            json!({"namespace": "ns", "name": "c"}),
        ))
        .unwrap();
        let bv = volume_bound_to(&pre, &c).expect("uid added");
        assert_eq!(annotation(&bv.metadata, ANN_BOUND_BY_CONTROLLER), None);
    }
}
