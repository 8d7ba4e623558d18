//! `garbage-collector-controller`: upstream's garbage collector. An
//! ownerReferences graph over every resource the apiserver serves (found
//! by discovery, custom resources included, re-discovered every 30 s and
//! when CustomResourceDefinitions change) drives two queues:
//!
//! - attempt-to-delete: an object whose owners may all be gone or waiting
//!   for their dependents is deleted (background, or in the propagation
//!   its own finalizers ask for); an object being deleted in the
//!   foreground loses its `foregroundDeletion` finalizer once no dependent
//!   blocks it; dangling references beside live owners are removed.
//! - attempt-to-orphan: an object deleted with `propagationPolicy=Orphan`
//!   has its dependents' references to it removed, then its `orphan`
//!   finalizer.
//!
//! The graph ([`Graph`]) is plain data; what to do with one object given
//! its owners' states is [`decide`]. IO (live reads of owners, deletes,
//! patches) wraps them, as upstream reads owners live so a lagging cache
//! never deletes an object whose owner exists.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use parking_lot::Mutex;
use serde_json::json;

use super::StartFn;
use crate::context::Ctx;
use crate::discovery::{self, Resources};
use crate::events::{Recorder, WARNING};
use crate::informer::Change;
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// Who an object is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug)]
struct Node {
    id: Identity,
    owners: Vec<OwnerReference>,
    dependents: HashSet<String>,
    /// Known only from a dependent's reference, not yet observed.
    virtual_: bool,
    being_deleted: bool,
    deleting_dependents: bool,
}

/// Work the graph asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Work {
    AttemptToDelete(String),
    AttemptToOrphan(String),
}

/// The ownership graph, by uid.
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    /// An object was added or changed.
    pub fn observe(
        &mut self,
        id: Identity,
        owners: Vec<OwnerReference>,
        deleting: bool,
        finalizers: &[String],
    ) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = id.uid.clone();
        let old_owners = match self.nodes.get_mut(&uid) {
            Some(n) => {
                let was_virtual = n.virtual_;
                n.virtual_ = false;
                n.id = id.clone();
                if was_virtual {
                    // The owner a dependent named exists after all.
                    work.push(Work::AttemptToDelete(uid.clone()));
                }
                std::mem::replace(&mut n.owners, owners.clone())
            }
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        id: id.clone(),
                        owners: owners.clone(),
                        dependents: HashSet::new(),
                        virtual_: false,
                        being_deleted: false,
                        deleting_dependents: false,
                    },
                );
                Vec::new()
            }
        };
        // Re-link owners that changed.
        let old_uids: HashSet<&str> = old_owners.iter().map(|o| o.uid.as_str()).collect();
        let new_uids: HashSet<&str> = owners.iter().map(|o| o.uid.as_str()).collect();
        for gone in old_owners.iter().filter(|o| !new_uids.contains(o.uid.as_str())) {
            if let Some(owner) = self.nodes.get_mut(&gone.uid) {
                owner.dependents.remove(&uid);
                if owner.deleting_dependents {
                    // It may have been waiting for this one.
                    work.push(Work::AttemptToDelete(gone.uid.clone()));
                }
            }
        }
        for added in owners.iter().filter(|o| !old_uids.contains(o.uid.as_str())) {
            match self.nodes.get_mut(&added.uid) {
                Some(owner) => {
                    owner.dependents.insert(uid.clone());
                    // A namespaced owner in another namespace is not this
                    // object's owner: check it (a live read in the
                    // dependent's namespace finds it absent).
                    if !owner.virtual_ && !owner.id.namespace.is_empty() && owner.id.namespace != id.namespace {
                        work.push(Work::AttemptToDelete(uid.clone()));
                    }
                }
                None => {
                    let mut deps = HashSet::new();
                    deps.insert(uid.clone());
                    self.nodes.insert(
                        added.uid.clone(),
                        Node {
                            id: Identity {
                                api_version: added.api_version.clone(),
                                kind: added.kind.clone(),
                                namespace: id.namespace.clone(),
                                name: added.name.clone(),
                                uid: added.uid.clone(),
                            },
                            owners: Vec::new(),
                            dependents: deps,
                            virtual_: true,
                            being_deleted: false,
                            deleting_dependents: false,
                        },
                    );
                    // Verify the owner exists (a live read).
                    work.push(Work::AttemptToDelete(added.uid.clone()));
                }
            }
        }
        // State transitions.
        let node = self.nodes.get_mut(&uid).expect("inserted above");
        node.being_deleted = deleting;
        if deleting && finalizers.iter().any(|f| f == ORPHAN) {
            work.push(Work::AttemptToOrphan(uid.clone()));
        }
        if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
            if !node.deleting_dependents {
                node.deleting_dependents = true;
                for d in &node.dependents {
                    work.push(Work::AttemptToDelete(d.clone()));
                }
            }
            work.push(Work::AttemptToDelete(uid.clone()));
        } else {
            node.deleting_dependents = false;
        }
        work
    }

    /// An object is gone (deleted, or found absent by a live read).
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work = Vec::new();
        for d in &node.dependents {
            work.push(Work::AttemptToDelete(d.clone()));
        }
        for o in &node.owners {
            if let Some(owner) = self.nodes.get_mut(&o.uid) {
                owner.dependents.remove(uid);
                if owner.deleting_dependents {
                    work.push(Work::AttemptToDelete(o.uid.clone()));
                }
                if owner.virtual_ && owner.dependents.is_empty() {
                    self.nodes.remove(&o.uid);
                }
            }
        }
        // Dependents keep their (now dangling) references; a virtual
        // stand-in lets a recreated owner be told apart by uid.
        if !node.dependents.is_empty() {
            self.nodes.insert(
                uid.to_string(),
                Node {
                    virtual_: true,
                    owners: Vec::new(),
                    being_deleted: false,
                    deleting_dependents: false,
                    ..node
                },
            );
        }
        work
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// An owner's state, from a live read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not being deleted in the foreground.
    Solid,
    /// Gone, or replaced by an object with another uid.
    Dangling,
    /// Being deleted with the `foregroundDeletion` finalizer.
    WaitingForDependents,
}

/// What to do with one object.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Keep,
    /// Remove these owners' references (others are alive).
    RemoveOwnerRefs(Vec<String>),
    /// Unblock these owners (circular foreground wait), then delete in the
    /// foreground.
    DeleteForeground {
        unblock: Vec<String>,
    },
    Delete(PropagationPolicy),
}

/// Upstream's `attemptToDeleteItem` decision, given each owner reference
/// with its state, whether the object has dependents (and whether one of
/// them is itself deleting dependents: a cycle), and its finalizers.
pub fn decide(
    owners: &[(OwnerReference, OwnerState)],
    has_dependents: bool,
    dependent_deleting_dependents: bool,
    finalizers: &[String],
) -> Decision {
    if owners.is_empty() {
        return Decision::Keep;
    }
    let of = |s: OwnerState| -> Vec<String> {
        owners
            .iter()
            .filter(|(_, st)| *st == s)
            .map(|(r, _)| r.uid.clone())
            .collect()
    };
    let solid = of(OwnerState::Solid);
    let dangling = of(OwnerState::Dangling);
    let waiting = of(OwnerState::WaitingForDependents);
    if !solid.is_empty() {
        if dangling.is_empty() && waiting.is_empty() {
            return Decision::Keep;
        }
        return Decision::RemoveOwnerRefs(dangling.into_iter().chain(waiting).collect());
    }
    if !waiting.is_empty() && has_dependents {
        let unblock = if dependent_deleting_dependents {
            waiting
        } else {
            Vec::new()
        };
        return Decision::DeleteForeground { unblock };
    }
    let policy = if finalizers.iter().any(|f| f == ORPHAN) {
        PropagationPolicy::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    Decision::Delete(policy)
}

struct Gc {
    client: kube::Client,
    ctx: Arc<Ctx>,
    resources: Resources,
    graph: Mutex<Graph>,
    delete_q: Arc<Queue>,
    orphan_q: Arc<Queue>,
    /// Owners found absent (uid), to spare live reads.
    absent: Mutex<HashSet<String>>,
    /// Resources with an informer feeding the graph (`group/version/plural`).
    monitored: Mutex<HashMap<String, ApiResource>>,
    recorder: Recorder,
}

/// Resources the collector never tracks (as upstream: events).
fn ignored(ar: &ApiResource) -> bool {
    ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io")
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    if !ctx.opts.enable_garbage_collector {
        tracing::info!("garbage collector disabled by --enable-garbage-collector=false");
        return Ok(());
    }
    let gc = Arc::new(Gc {
        client: ctx.client.clone(),
        ctx: ctx.clone(),
        resources: Resources::default(),
        graph: Mutex::new(Graph::default()),
        delete_q: ctx.queue("garbage_collector_attempt_to_delete"),
        orphan_q: ctx.queue("garbage_collector_attempt_to_orphan"),
        absent: Mutex::new(HashSet::new()),
        monitored: Mutex::new(HashMap::new()),
        recorder: ctx.recorder("garbage-collector-controller"),
    });
    let crds = ctx.informers.get::<CustomResourceDefinition>();
    let (resync_tx, mut resync_rx) = tokio::sync::mpsc::channel::<()>(1);
    crds.add_handler(move |_| {
        let _ = resync_tx.try_send(());
    });
    let workers = ctx.opts.concurrency.gc;
    tokio::spawn(async move {
        // Discover, start the graph's informers, wait for them, then run.
        loop {
            match gc.clone().resync().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "garbage collector: discovery failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        let g = gc.clone();
        run_workers(gc.delete_q.clone(), workers, move |uid| {
            let g = g.clone();
            async move { g.attempt_to_delete(&uid).await }
        });
        let g = gc.clone();
        run_workers(gc.orphan_q.clone(), workers, move |uid| {
            let g = g.clone();
            async move { g.attempt_to_orphan(&uid).await }
        });
        tracing::info!(nodes = gc.graph.lock().len(), "garbage collector synced");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = resync_rx.recv() => {}
            }
            if let Err(e) = gc.clone().resync().await {
                tracing::warn!(error = %format!("{e:#}"), "garbage collector: re-discovery failed");
            }
        }
    });
    Ok(())
}

impl Gc {
    /// Re-discovers resources; starts informers for new ones (waiting
    /// until they have listed), stops those of resources gone.
    async fn resync(self: Arc<Self>) -> anyhow::Result<()> {
        let snap = self.resources.refresh(&self.client).await?;
        let wanted: HashMap<String, ApiResource> = snap
            .preferred
            .iter()
            .filter(|r| discovery::deletable(r) && !ignored(&r.ar))
            .map(|r| (format!("{}/{}/{}", r.ar.group, r.ar.version, r.ar.plural), r.ar.clone()))
            .collect();
        let mut fresh = Vec::new();
        {
            let mut monitored = self.monitored.lock();
            monitored.retain(|id, ar| {
                let keep = wanted.contains_key(id);
                if !keep {
                    self.ctx.informers.stop_dynamic(ar);
                }
                keep
            });
            for (id, ar) in wanted {
                if monitored.contains_key(&id) {
                    continue;
                }
                monitored.insert(id, ar.clone());
                fresh.push(ar);
            }
        }
        for ar in fresh {
            let inf = self.ctx.informers.dynamic(&ar);
            let g = Arc::downgrade(&self);
            let ar2 = ar.clone();
            inf.add_handler(move |c| {
                if let Some(g) = g.upgrade() {
                    g.on_change(&ar2, c);
                }
            });
            // Bounded: a resource whose list fails must not stall the rest.
            let _ = tokio::time::timeout(Duration::from_secs(30), inf.wait_synced()).await;
        }
        Ok(())
    }

    fn on_change(&self, ar: &ApiResource, c: &Change<DynamicObject>) {
        let o = c.object();
        let m = &o.metadata;
        let work = match c {
            Change::Delete(_) => self.graph.lock().remove(util::uid(m)),
            _ => {
                let id = Identity {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                    namespace: util::namespace(m).to_string(),
                    name: util::name(m).to_string(),
                    uid: util::uid(m).to_string(),
                };
                let owners = m.owner_references.clone().unwrap_or_default();
                let finalizers = m.finalizers.clone().unwrap_or_default();
                self.graph
                    .lock()
                    .observe(id, owners, m.deletion_timestamp.is_some(), &finalizers)
            }
        };
        self.enqueue(work);
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            match w {
                Work::AttemptToDelete(uid) => self.delete_q.add(uid),
                Work::AttemptToOrphan(uid) => self.orphan_q.add(uid),
            }
        }
    }

    fn api_for(&self, api_version: &str, kind: &str, namespace: &str) -> anyhow::Result<(Api<DynamicObject>, bool)> {
        let snap = self.resources.get();
        let r = snap
            .resolve(api_version, kind)
            .ok_or_else(|| anyhow::anyhow!("no resource for {kind} in {api_version}"))?;
        let api = if r.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &r.ar)
        } else {
            Api::all_with(self.client.clone(), &r.ar)
        };
        Ok((api, r.namespaced))
    }

    /// The object as the apiserver has it now; `None` when gone or
    /// replaced (another uid).
    async fn live(&self, id: &Identity) -> anyhow::Result<Option<DynamicObject>> {
        let (api, _) = self.api_for(&id.api_version, &id.kind, &id.namespace)?;
        let o = api.get_opt(&id.name).await?;
        Ok(o.filter(|o| o.metadata.uid.as_deref() == Some(id.uid.as_str())))
    }

    async fn owner_state(&self, item: &Identity, r: &OwnerReference) -> anyhow::Result<OwnerState> {
        if self.absent.lock().contains(&r.uid) {
            return Ok(OwnerState::Dangling);
        }
        let snap = self.resources.get();
        let Some(res) = snap.resolve(&r.api_version, &r.kind) else {
            anyhow::bail!("cannot map owner {} {} to a resource", r.api_version, r.kind);
        };
        if res.namespaced && item.namespace.is_empty() {
            // A cluster-scoped object cannot have a namespaced owner.
            self.recorder.event_on(
                reference(item),
                WARNING,
                "OwnerRefInvalidNamespace",
                format!(
                    "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
                    r.api_version, r.kind, r.name, r.uid
                ),
            );
            return Ok(OwnerState::Dangling);
        }
        let api: Api<DynamicObject> = if res.namespaced {
            Api::namespaced_with(self.client.clone(), &item.namespace, &res.ar)
        } else {
            Api::all_with(self.client.clone(), &res.ar)
        };
        let owner = api.get_opt(&r.name).await?;
        match owner {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let waiting = o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|f| f == FOREGROUND);
                Ok(if waiting {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                })
            }
            _ => {
                if res.namespaced && !item.namespace.is_empty() {
                    // Upstream warns when a namespaced owner exists only
                    // in another namespace; it is absent either way.
                    self.note_other_namespace(item, r);
                }
                let mut absent = self.absent.lock();
                if absent.len() > 100_000 {
                    absent.clear();
                }
                absent.insert(r.uid.clone());
                Ok(OwnerState::Dangling)
            }
        }
    }

    fn note_other_namespace(&self, item: &Identity, r: &OwnerReference) {
        let exists_elsewhere = self
            .graph
            .lock()
            .nodes
            .get(&r.uid)
            .is_some_and(|n| !n.virtual_ && n.id.namespace != item.namespace);
        if exists_elsewhere {
            self.recorder.event_on(
                reference(item),
                WARNING,
                "OwnerRefInvalidNamespace",
                format!(
                    "ownerRef [{}/{}, namespace: {}, name: {}, uid: {}] does not exist in namespace \"{}\"",
                    r.api_version, r.kind, item.namespace, r.name, r.uid, item.namespace
                ),
            );
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> anyhow::Result<()> {
        let (id, virtual_, being_deleted, deleting_dependents) = {
            let g = self.graph.lock();
            let Some(n) = g.nodes.get(uid) else { return Ok(()) };
            (n.id.clone(), n.virtual_, n.being_deleted, n.deleting_dependents)
        };
        if being_deleted && !deleting_dependents {
            return Ok(());
        }
        let latest = match self.live(&id).await {
            Ok(l) => l,
            Err(e) if virtual_ => {
                // An owner reference to a kind we cannot map: leave it.
                tracing::debug!(error = %format!("{e:#}"), "unresolvable owner");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let Some(latest) = latest else {
            // Gone: its dependents now have a dangling owner.
            let work = self.graph.lock().remove(uid);
            self.enqueue(work);
            return Ok(());
        };
        if virtual_ {
            // The owner exists; its informer will report it.
            return Ok(());
        }
        if deleting_dependents {
            return self.process_deleting_dependents(&id).await;
        }
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(());
        }
        let mut states = Vec::with_capacity(owners.len());
        for r in &owners {
            states.push((r.clone(), self.owner_state(&id, r).await?));
        }
        let (has_dependents, cycle) = {
            let g = self.graph.lock();
            let deps = g.nodes.get(uid).map(|n| n.dependents.clone()).unwrap_or_default();
            let cycle = deps
                .iter()
                .any(|d| g.nodes.get(d).is_some_and(|n| n.deleting_dependents));
            (!deps.is_empty(), cycle)
        };
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        match decide(&states, has_dependents, cycle, &finalizers) {
            Decision::Keep => Ok(()),
            Decision::RemoveOwnerRefs(uids) => self.remove_owner_refs(&id, &latest, &uids).await,
            Decision::DeleteForeground { unblock } => {
                if !unblock.is_empty() {
                    self.unblock_owners(&id, &latest, &unblock).await?;
                }
                self.delete(&id, PropagationPolicy::Foreground).await
            }
            Decision::Delete(policy) => self.delete(&id, policy).await,
        }
    }

    /// A foreground deletion: drop the finalizer once no dependent blocks
    /// it; otherwise make sure the blocking ones are being deleted.
    async fn process_deleting_dependents(&self, id: &Identity) -> anyhow::Result<()> {
        let blocking: Vec<String> = {
            let g = self.graph.lock();
            let Some(n) = g.nodes.get(&id.uid) else { return Ok(()) };
            n.dependents
                .iter()
                .filter(|d| {
                    g.nodes.get(*d).is_some_and(|dn| {
                        dn.owners
                            .iter()
                            .any(|r| r.uid == id.uid && r.block_owner_deletion == Some(true))
                    })
                })
                .cloned()
                .collect()
        };
        if blocking.is_empty() {
            return self.remove_finalizer(id, FOREGROUND).await;
        }
        let g = self.graph.lock();
        for d in blocking {
            if g.nodes.get(&d).is_some_and(|n| !n.deleting_dependents) {
                self.delete_q.add(d);
            }
        }
        Ok(())
    }

    async fn delete(&self, id: &Identity, policy: PropagationPolicy) -> anyhow::Result<()> {
        let (api, _) = self.api_for(&id.api_version, &id.kind, &id.namespace)?;
        tracing::debug!(kind = %id.kind, namespace = %id.namespace, name = %id.name, ?policy, "deleting dependent");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(id.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&id.name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if util::is_conflict_or_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// JSON patch guarded by the uid and resourceVersion read.
    async fn patch_owner_refs(
        &self,
        id: &Identity,
        latest: &DynamicObject,
        refs: Vec<OwnerReference>,
    ) -> anyhow::Result<()> {
        let (api, _) = self.api_for(&id.api_version, &id.kind, &id.namespace)?;
        let mut ops = vec![
            json!({"op": "test", "path": "/metadata/uid", "value": id.uid}),
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": latest.metadata.resource_version}),
        ];
        if refs.is_empty() {
            ops.push(json!({"op": "remove", "path": "/metadata/ownerReferences"}));
        } else {
            ops.push(json!({"op": "replace", "path": "/metadata/ownerReferences", "value": refs}));
        }
        let patch: json_patch::Patch = serde_json::from_value(json!(ops))?;
        match api
            .patch(&id.name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_owner_refs(&self, id: &Identity, latest: &DynamicObject, uids: &[String]) -> anyhow::Result<()> {
        let refs: Vec<OwnerReference> = latest
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !uids.contains(&r.uid))
            .collect();
        self.patch_owner_refs(id, latest, refs).await
    }

    async fn unblock_owners(&self, id: &Identity, latest: &DynamicObject, uids: &[String]) -> anyhow::Result<()> {
        let refs: Vec<OwnerReference> = latest
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|mut r| {
                if uids.contains(&r.uid) {
                    r.block_owner_deletion = Some(false);
                }
                r
            })
            .collect();
        self.patch_owner_refs(id, latest, refs).await
    }

    async fn remove_finalizer(&self, id: &Identity, finalizer: &str) -> anyhow::Result<()> {
        let Some(latest) = self.live(id).await? else {
            return Ok(());
        };
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let (api, _) = self.api_for(&id.api_version, &id.kind, &id.namespace)?;
        let ops = json!([
            {"op": "test", "path": "/metadata/uid", "value": id.uid},
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "replace", "path": "/metadata/finalizers", "value": kept},
        ]);
        let patch: json_patch::Patch = serde_json::from_value(ops)?;
        match api
            .patch(&id.name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Orphan propagation: every dependent loses its reference to the
    /// owner, then the owner loses its `orphan` finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> anyhow::Result<()> {
        let (id, dependents) = {
            let g = self.graph.lock();
            let Some(n) = g.nodes.get(uid) else { return Ok(()) };
            let deps: Vec<Identity> = n
                .dependents
                .iter()
                .filter_map(|d| g.nodes.get(d).map(|dn| dn.id.clone()))
                .collect();
            (n.id.clone(), deps)
        };
        for dep in dependents {
            let Some(latest) = self.live(&dep).await? else { continue };
            if latest
                .metadata
                .owner_references
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|r| r.uid == uid)
            {
                self.remove_owner_refs(&dep, &latest, &[uid.to_string()]).await?;
            }
        }
        self.remove_finalizer(&id, ORPHAN).await
    }
}

fn reference(id: &Identity) -> ObjectReference {
    ObjectReference {
        api_version: Some(id.api_version.clone()),
        kind: Some(id.kind.clone()),
        namespace: (!id.namespace.is_empty()).then(|| id.namespace.clone()),
        name: Some(id.name.clone()),
        uid: Some(id.uid.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uid: &str) -> Identity {
        Identity {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: "ns".into(),
            name: uid.into(),
            uid: uid.into(),
        }
    }

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: uid.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn del(uid: &str) -> Work {
        Work::AttemptToDelete(uid.into())
    }

    #[test]
    fn an_unseen_owner_is_virtual_and_verified() {
        let mut g = Graph::default();
        let w = g.observe(id("pod"), vec![owner("rs", true)], false, &[]);
        assert_eq!(w, vec![del("rs")], "a live read checks the owner exists");
        assert!(g.nodes["rs"].virtual_);
        // The owner shows up: it is real now, with its dependent.
        let w = g.observe(id("rs"), vec![], false, &[]);
        assert_eq!(w, vec![del("rs")]);
        assert!(!g.nodes["rs"].virtual_);
        assert!(g.nodes["rs"].dependents.contains("pod"));
    }

    #[test]
    fn deleting_an_owner_queues_its_dependents() {
        let mut g = Graph::default();
        g.observe(id("rs"), vec![], false, &[]);
        g.observe(id("p1"), vec![owner("rs", true)], false, &[]);
        g.observe(id("p2"), vec![owner("rs", true)], false, &[]);
        let mut w = g.remove("rs");
        w.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(w, vec![del("p1"), del("p2")]);
        // Dependents still point at it: a virtual stand-in remains until
        // they are gone.
        assert!(g.nodes["rs"].virtual_);
        g.remove("p1");
        g.remove("p2");
        assert!(g.is_empty(), "{:?}", g.nodes.keys().collect::<Vec<_>>());
    }

    #[test]
    fn foreground_deletion_queues_dependents_and_rechecks_the_owner_as_they_go() {
        let mut g = Graph::default();
        g.observe(id("rs"), vec![], false, &[]);
        g.observe(id("p1"), vec![owner("rs", true)], false, &[]);
        let mut w = g.observe(id("rs"), vec![], true, &[FOREGROUND.into()]);
        w.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(w, vec![del("p1"), del("rs")]);
        assert!(g.nodes["rs"].deleting_dependents);
        assert_eq!(g.remove("p1"), vec![del("rs")], "the owner may drop its finalizer now");
    }

    #[test]
    fn an_owner_in_another_namespace_gets_the_dependent_checked() {
        let mut g = Graph::default();
        let mut owner_id = id("far");
        owner_id.namespace = "other".into();
        g.observe(owner_id, vec![], false, &[]);
        let w = g.observe(id("dep"), vec![owner("far", false)], false, &[]);
        assert_eq!(w, vec![del("dep")]);
        assert!(g.observe(id("near"), vec![], false, &[]).is_empty());
        assert!(g.observe(id("dep2"), vec![owner("near", false)], false, &[]).is_empty());
    }

    #[test]
    fn orphan_finalizer_asks_for_orphaning() {
        let mut g = Graph::default();
        g.observe(id("rs"), vec![], false, &[]);
        let w = g.observe(id("rs"), vec![], true, &[ORPHAN.into()]);
        assert_eq!(w, vec![Work::AttemptToOrphan("rs".into())]);
    }

    #[test]
    fn a_dropped_owner_reference_unlinks_and_rechecks_a_waiting_owner() {
        let mut g = Graph::default();
        g.observe(id("rs"), vec![], false, &[]);
        g.observe(id("p1"), vec![owner("rs", true)], false, &[]);
        g.observe(id("rs"), vec![], true, &[FOREGROUND.into()]);
        let w = g.observe(id("p1"), vec![], false, &[]);
        assert_eq!(w, vec![del("rs")]);
        assert!(g.nodes["rs"].dependents.is_empty());
    }

    #[test]
    fn decisions() {
        use OwnerState::*;
        let a = owner("a", true);
        let b = owner("b", true);
        // (why, owners with states, has dependents, a dependent deleting
        // its own, finalizers, decision)
        type Case = (
            &'static str,
            Vec<(OwnerReference, OwnerState)>,
            bool,
            bool,
            Vec<String>,
            Decision,
        );
        let cases: Vec<Case> = vec![
            (
                "no owners: never collected",
                vec![],
                false,
                false,
                vec![],
                Decision::Keep,
            ),
            (
                "a live owner keeps it",
                vec![(a.clone(), Solid)],
                false,
                false,
                vec![],
                Decision::Keep,
            ),
            (
                "a live owner and a dangling one: drop the dangling reference",
                vec![(a.clone(), Solid), (b.clone(), Dangling)],
                false,
                false,
                vec![],
                Decision::RemoveOwnerRefs(vec!["b".into()]),
            ),
            (
                "all owners gone: background delete",
                vec![(a.clone(), Dangling)],
                false,
                false,
                vec![],
                Decision::Delete(PropagationPolicy::Background),
            ),
            (
                "all owners gone, object asks to orphan its own dependents",
                vec![(a.clone(), Dangling)],
                true,
                false,
                vec![ORPHAN.into()],
                Decision::Delete(PropagationPolicy::Orphan),
            ),
            (
                "owner waits in the foreground and the object has dependents: foreground too",
                vec![(a.clone(), WaitingForDependents)],
                true,
                false,
                vec![],
                Decision::DeleteForeground { unblock: vec![] },
            ),
            (
                "a cycle of foreground waits is broken by unblocking",
                vec![(a.clone(), WaitingForDependents)],
                true,
                true,
                vec![],
                Decision::DeleteForeground {
                    unblock: vec!["a".into()],
                },
            ),
            (
                "owner waits, no dependents: plain delete",
                vec![(a.clone(), WaitingForDependents)],
                false,
                false,
                vec![],
                Decision::Delete(PropagationPolicy::Background),
            ),
        ];
        for (why, owners, has_deps, cycle, fins, want) in cases {
            assert_eq!(decide(&owners, has_deps, cycle, &fins), want, "{why}");
        }
    }
}
