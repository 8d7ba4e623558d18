//! The scheduler process: informers feed the cache and the queue; one
//! thread runs scheduling cycles (pop, snapshot, filter/score, assume);
//! binding cycles run on the blocking pool and talk to the apiserver;
//! failures become `FailedScheduling` events and the `PodScheduled`
//! condition, as upstream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde_json::json;
use tokio::sync::mpsc;

use crate::cache::Cache;
use crate::config::Config;
use crate::framework::runtime::{Framework, ScheduleError};
use crate::framework::snapshot::{ClusterObjects, WorkloadSelector};
use crate::framework::{ApiCalls, ClusterEvent, CycleState, PodInfo, Snapshot, Status};
use crate::metrics::{AttemptsLabel, IncomingLabels, Metrics};
use crate::profile;
use crate::queue::{Queue, QueuedPodInfo, SchedulingQueue};

/// What `run` needs beyond the configuration file.
#[derive(Clone, Debug)]
pub struct Options {
    pub kubeconfig: PathBuf,
    pub config: Config,
    pub leader_elect: bool,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub lease_name: String,
    pub lease_namespace: String,
    pub bind_address: String,
    /// 0 turns the secure port off.
    pub secure_port: u16,
    pub tls: component_base::serving::Tls,
}

impl Options {
    pub fn new(kubeconfig: PathBuf, config: Config) -> Self {
        Options {
            kubeconfig,
            config,
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            lease_name: "kube-scheduler".into(),
            lease_namespace: "kube-system".into(),
            bind_address: "0.0.0.0".into(),
            secure_port: 10259,
            tls: Default::default(),
        }
    }
}

/// Runs the scheduler until SIGTERM, or until it loses its lease (an
/// error: upstream exits then too, and a supervisor restarts it).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let client = component_base::client::from_kubeconfig(&opts.kubeconfig).await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let state = component_base::serving::State::new(registry);
    if opts.secure_port != 0 {
        let addr = format!("{}:{}", opts.bind_address, opts.secure_port)
            .parse()
            .with_context(|| {
                format!(
                    "--bind-address {} with --secure-port {}",
                    opts.bind_address, opts.secure_port
                )
            })?;
        let bound = component_base::serving::serve(addr, &opts.tls, state.clone()).await?;
        tracing::info!(address = %bound, "serving securely");
    }
    let work = {
        let client = client.clone();
        let cfg = opts.config.clone();
        let ready = state.ready.clone();
        move || schedule(client, cfg, metrics, ready)
    };
    let main = async {
        if opts.leader_elect {
            let lease = component_base::leader::Config::from_flags(
                &opts.lease_namespace,
                &opts.lease_name,
                opts.lease_duration,
                opts.renew_deadline,
            );
            component_base::leader::run(client.clone(), lease, work).await
        } else {
            work().await
        }
    };
    tokio::select! {
        r = main => r,
        _ = component_base::signals::shutdown() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// The scheduler's shared state.
pub struct Sched {
    client: Client,
    cache: Mutex<Cache>,
    queue: Arc<Queue>,
    profiles: HashMap<String, Arc<Framework>>,
    metrics: Arc<Metrics>,
    events: mpsc::UnboundedSender<Event>,
    priority_classes: RwLock<PriorityClasses>,
    handle: tokio::runtime::Handle,
    instance: String,
}

#[derive(Default)]
struct PriorityClasses {
    values: HashMap<String, i32>,
    global_default: Option<i32>,
}

/// Closes the queue when the scheduling work ends (lease lost, shutdown),
/// so the scheduling thread stops.
struct CloseOnDrop(Arc<Queue>);
impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

async fn schedule(client: Client, cfg: Config, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let observer: crate::framework::runtime::Observer = metrics.clone();
    let frameworks = profile::build_all(&cfg, Some(observer)).map_err(|e| anyhow::anyhow!(e))?;
    let queue = Arc::new(Queue::new(SchedulingQueue::new(
        frameworks.clone(),
        cfg.pod_initial_backoff,
        cfg.pod_max_backoff,
    )));
    let _close = CloseOnDrop(queue.clone());
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let sched = Arc::new(Sched {
        client: client.clone(),
        cache: Mutex::new(Cache::new()),
        queue: queue.clone(),
        profiles: frameworks
            .iter()
            .map(|f| (f.scheduler_name.clone(), f.clone()))
            .collect(),
        metrics,
        events: events_tx,
        priority_classes: RwLock::default(),
        handle: tokio::runtime::Handle::current(),
        instance: component_base::leader::identity(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(send_events(client.clone(), events_rx));

    // Informers: priority classes first (pods' priorities), then nodes and
    // pods; the rest in the background.
    let (pc_tx, pc_rx) = tokio::sync::oneshot::channel();
    tasks.spawn(inform_priority_classes(sched.clone(), pc_tx));
    let _ = pc_rx.await;
    let (nodes_tx, nodes_rx) = tokio::sync::oneshot::channel();
    tasks.spawn(inform_nodes(sched.clone(), nodes_tx));
    let (pods_tx, pods_rx) = tokio::sync::oneshot::channel();
    tasks.spawn(inform_pods(sched.clone(), pods_tx));
    spawn_object_informers(&mut tasks, &sched);
    let _ = nodes_rx.await;
    let _ = pods_rx.await;
    ready.store(true, Ordering::Relaxed);
    let (nodes, pods) = {
        let cache = sched.cache.lock();
        (cache.node_count(), cache.pod_count())
    };
    tracing::info!(nodes, pods, "caches synced; scheduling");

    tasks.spawn(flush_loop(sched.clone()));
    let looper = sched.clone();
    let thread = std::thread::Builder::new()
        .name("scheduling-loop".into())
        .spawn(move || looper.scheduling_loop())
        .context("starting the scheduling thread")?;
    let result = match tasks.join_next().await {
        Some(Ok(())) => Err(anyhow::anyhow!("an informer stopped")),
        Some(Err(e)) => Err(anyhow::anyhow!("an informer failed: {e}")),
        None => Ok(()),
    };
    queue.close();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    result
}

async fn flush_loop(sched: Arc<Sched>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let now = Instant::now();
        let counts = sched.queue.with(|q| {
            q.flush_backoff_completed(now);
            if n.is_multiple_of(30) {
                q.flush_unschedulable_left_over(now);
            }
            q.counts()
        });
        sched.metrics.set_pending(counts);
    }
}

// --- informers ---------------------------------------------------------

/// Feeds a watcher's events to `apply`/`delete`; on a relist, objects not
/// seen again are deleted. Signals `synced` after the first full list.
async fn inform<K, A, D>(
    api: Api<K>,
    wc: watcher::Config,
    synced: tokio::sync::oneshot::Sender<()>,
    mut apply: A,
    mut delete: D,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    A: FnMut(Arc<K>) + Send,
    D: FnMut(Arc<K>) + Send,
{
    let mut synced = Some(synced);
    let mut known: HashMap<String, Arc<K>> = HashMap::new();
    let mut relist: Option<HashSet<String>> = None;
    let key = |o: &K| {
        format!(
            "{}/{}",
            o.meta().namespace.as_deref().unwrap_or(""),
            o.meta().name.as_deref().unwrap_or("")
        )
    };
    let stream = watcher(api, wc).default_backoff();
    futures::pin_mut!(stream);
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "watch failed; retrying");
                continue;
            }
        };
        match ev {
            watcher::Event::Init => relist = Some(HashSet::new()),
            watcher::Event::InitApply(mut o) | watcher::Event::Apply(mut o) => {
                // Nothing here reads them; upstream's informers drop them too.
                o.meta_mut().managed_fields = None;
                let o = Arc::new(o);
                let k = key(&o);
                if let Some(seen) = relist.as_mut() {
                    seen.insert(k.clone());
                }
                known.insert(k, o.clone());
                apply(o);
            }
            watcher::Event::Delete(o) => {
                known.remove(&key(&o));
                delete(Arc::new(o));
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relist.take() {
                    let gone: Vec<String> = known.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                    for k in gone {
                        if let Some(o) = known.remove(&k) {
                            delete(o);
                        }
                    }
                }
                if let Some(s) = synced.take() {
                    let _ = s.send(());
                }
            }
        }
    }
}

async fn inform_priority_classes(sched: Arc<Sched>, synced: tokio::sync::oneshot::Sender<()>) {
    let api: Api<PriorityClass> = Api::all(sched.client.clone());
    let s1 = sched.clone();
    let s2 = sched.clone();
    inform(
        api,
        watcher::Config::default(),
        synced,
        move |pc: Arc<PriorityClass>| {
            let mut p = s1.priority_classes.write();
            let name = pc.name_any();
            p.values.insert(name, pc.value);
            if pc.global_default == Some(true) {
                p.global_default = Some(pc.value);
            }
        },
        move |pc: Arc<PriorityClass>| {
            let mut p = s2.priority_classes.write();
            p.values.remove(&pc.name_any());
            if pc.global_default == Some(true) {
                p.global_default = None;
            }
        },
    )
    .await
}

/// Whether a node change can make a pod fit that did not (upstream's
/// `nodeSchedulingPropertiesChange`).
fn node_scheduling_properties_changed(old: &Node, new: &Node) -> bool {
    let spec = |n: &Node| {
        let s = n.spec.clone().unwrap_or_default();
        (s.unschedulable, s.taints)
    };
    let status = |n: &Node| {
        let s = n.status.as_ref();
        (
            s.and_then(|s| s.allocatable.clone()),
            s.and_then(|s| s.images.as_ref().map(|i| i.len())),
        )
    };
    old.metadata.labels != new.metadata.labels || spec(old) != spec(new) || status(old) != status(new)
}

async fn inform_nodes(sched: Arc<Sched>, synced: tokio::sync::oneshot::Sender<()>) {
    let api: Api<Node> = Api::all(sched.client.clone());
    let s1 = sched.clone();
    let s2 = sched.clone();
    inform(
        api,
        watcher::Config::default(),
        synced,
        move |node: Arc<Node>| {
            let name = node.name_any();
            let event = {
                let mut cache = s1.cache.lock();
                let event = match cache.node(&name) {
                    None => Some(ClusterEvent::NodeAdd),
                    Some(old) if node_scheduling_properties_changed(&old.node, &node) => Some(ClusterEvent::NodeUpdate),
                    Some(_) => None,
                };
                cache.set_node(node);
                event
            };
            if let Some(e) = event {
                s1.move_pods(e);
            }
        },
        move |node: Arc<Node>| {
            s2.cache.lock().remove_node(&node.name_any());
            s2.move_pods(ClusterEvent::NodeDelete);
        },
    )
    .await
}

fn is_assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

async fn inform_pods(sched: Arc<Sched>, synced: tokio::sync::oneshot::Sender<()>) {
    let api: Api<Pod> = Api::all(sched.client.clone());
    // Finished pods hold no resources: as upstream, the informer leaves them out.
    let wc = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let s1 = sched.clone();
    let s2 = sched.clone();
    inform(
        api,
        wc,
        synced,
        move |pod: Arc<Pod>| s1.on_pod(pod),
        move |pod: Arc<Pod>| s2.on_pod_delete(&pod),
    )
    .await
}

fn spawn_object_informers(tasks: &mut tokio::task::JoinSet<()>, sched: &Arc<Sched>) {
    fn objects<K>(
        tasks: &mut tokio::task::JoinSet<()>,
        sched: &Arc<Sched>,
        event: ClusterEvent,
        set: impl Fn(&mut ClusterObjects, Arc<K>) + Send + 'static,
        remove: impl Fn(&mut ClusterObjects, &K) + Send + 'static,
    ) where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let api: Api<K> = Api::all(sched.client.clone());
        let s1 = sched.clone();
        let s2 = sched.clone();
        let (tx, _rx) = tokio::sync::oneshot::channel();
        tasks.spawn(inform(
            api,
            watcher::Config::default(),
            tx,
            move |o: Arc<K>| {
                set(s1.cache.lock().objects_mut(), o);
                s1.move_pods(event);
            },
            move |o: Arc<K>| {
                remove(s2.cache.lock().objects_mut(), &o);
            },
        ));
    }
    fn key<K: kube::Resource>(o: &K) -> String {
        format!(
            "{}/{}",
            o.meta().namespace.as_deref().unwrap_or(""),
            o.meta().name.as_deref().unwrap_or("")
        )
    }
    fn workload(o: &ClusterObjects, ns: &str) -> Vec<WorkloadSelector> {
        o.workload_selectors.get(ns).cloned().unwrap_or_default()
    }
    fn set_workload(
        objs: &mut ClusterObjects,
        ns: String,
        owner: String,
        selector: Option<apimachinery::labels::Selector>,
    ) {
        let mut list = workload(objs, &ns);
        list.retain(|w| w.owner != owner);
        if let Some(selector) = selector.filter(|s| !s.is_empty()) {
            list.push(WorkloadSelector { owner, selector });
        }
        objs.workload_selectors.insert(ns, list);
    }
    fn from_map(m: Option<&BTreeMap<String, String>>) -> Option<apimachinery::labels::Selector> {
        m.map(apimachinery::labels::Selector::from_set)
    }
    fn from_label_selector(
        s: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    ) -> Option<apimachinery::labels::Selector> {
        let v = serde_json::to_value(s?).ok()?;
        apimachinery::labels::Selector::from_label_selector(&v).ok()
    }

    objects::<Namespace>(
        tasks,
        sched,
        ClusterEvent::NamespaceChange,
        |o, ns| {
            o.namespaces.insert(ns.name_any(), ns.labels().clone());
        },
        |o, ns| {
            o.namespaces.remove(&ns.name_any());
        },
    );
    objects::<PersistentVolumeClaim>(
        tasks,
        sched,
        ClusterEvent::PvcAdd,
        |o, pvc| {
            o.pvcs.insert(key(&*pvc), pvc);
        },
        |o, pvc| {
            o.pvcs.remove(&key(pvc));
        },
    );
    objects::<PersistentVolume>(
        tasks,
        sched,
        ClusterEvent::PvAdd,
        |o, pv| {
            o.pvs.insert(pv.name_any(), pv);
        },
        |o, pv| {
            o.pvs.remove(&pv.name_any());
        },
    );
    objects::<StorageClass>(
        tasks,
        sched,
        ClusterEvent::StorageClassAdd,
        |o, sc| {
            o.storage_classes.insert(sc.name_any(), sc);
        },
        |o, sc| {
            o.storage_classes.remove(&sc.name_any());
        },
    );
    objects::<CSINode>(
        tasks,
        sched,
        ClusterEvent::CsiNodeChange,
        |o, n| {
            o.csi_nodes.insert(n.name_any(), n);
        },
        |o, n| {
            o.csi_nodes.remove(&n.name_any());
        },
    );
    objects::<PodDisruptionBudget>(
        tasks,
        sched,
        ClusterEvent::Any,
        |o, pdb| {
            o.pdbs.insert(key(&*pdb), pdb);
        },
        |o, pdb| {
            o.pdbs.remove(&key(pdb));
        },
    );
    /// Spreading's default selectors: each workload's, under `Kind/name`.
    fn workloads<K>(
        tasks: &mut tokio::task::JoinSet<()>,
        sched: &Arc<Sched>,
        selector: fn(&K) -> Option<apimachinery::labels::Selector>,
    ) where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        fn owner<K: kube::Resource<DynamicType = ()>>(w: &K) -> String {
            format!("{}/{}", K::kind(&()), w.name_any())
        }
        objects::<K>(
            tasks,
            sched,
            ClusterEvent::Any,
            move |o, w| set_workload(o, w.namespace().unwrap_or_default(), owner(&*w), selector(&w)),
            |o, w| set_workload(o, w.namespace().unwrap_or_default(), owner(w), None),
        );
    }
    workloads::<Service>(tasks, sched, |s| {
        from_map(s.spec.as_ref().and_then(|s| s.selector.as_ref()))
    });
    workloads::<ReplicationController>(tasks, sched, |s| {
        from_map(s.spec.as_ref().and_then(|s| s.selector.as_ref()))
    });
    workloads::<ReplicaSet>(tasks, sched, |s| {
        from_label_selector(s.spec.as_ref().map(|s| &s.selector))
    });
    workloads::<StatefulSet>(tasks, sched, |s| {
        from_label_selector(s.spec.as_ref().map(|s| &s.selector))
    });
}

impl Sched {
    fn move_pods(&self, event: ClusterEvent) {
        // Workload selectors only change default spreading scores: no move.
        if event == ClusterEvent::Any {
            return;
        }
        self.queue
            .with(|q| q.move_all_to_active_or_backoff(event, Instant::now()));
    }

    /// The pod as the scheduler sees it: its priority resolved from its
    /// PriorityClass when the apiserver did not set it.
    fn pod_info(&self, pod: Arc<Pod>) -> PodInfo {
        let spec = pod.spec.as_ref();
        if spec.is_some_and(|s| s.priority.is_none()) {
            let classes = self.priority_classes.read();
            let value = match spec.and_then(|s| s.priority_class_name.as_deref()) {
                Some(name) => classes.values.get(name).copied(),
                None => classes.global_default,
            };
            if let Some(v) = value {
                let mut p = (*pod).clone();
                if let Some(s) = p.spec.as_mut() {
                    s.priority = Some(v);
                }
                return PodInfo::new(Arc::new(p));
            }
        }
        PodInfo::new(pod)
    }

    fn on_pod(&self, pod: Arc<Pod>) {
        let uid = pod.uid().unwrap_or_default();
        if is_assigned(&pod) {
            let info = Arc::new(self.pod_info(pod));
            let was_queued = self.queue.inner.lock().contains(&uid);
            let existed = {
                let mut cache = self.cache.lock();
                let existed = cache.contains_pod(&uid) && !cache.is_assumed(&uid);
                cache.add_or_update_pod(info);
                existed
            };
            self.queue.with(|q| {
                if was_queued {
                    // Bound by someone else while queued (or by us, and in flight).
                    q.delete(&uid);
                } else {
                    q.delete_nominated(&uid);
                }
                let event = if existed {
                    ClusterEvent::AssignedPodUpdate
                } else {
                    ClusterEvent::AssignedPodAdd
                };
                q.move_all_to_active_or_backoff(event, Instant::now());
            });
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.queue.with(|q| q.delete(&uid));
            return;
        }
        let info = Arc::new(self.pod_info(pod));
        // An assumed pod's binding has not shown up yet: nothing to do.
        if self.cache.lock().is_assumed(&uid) {
            return;
        }
        self.queue.with(|q| {
            if !q.responsible_for(&info) {
                return;
            }
            let event = if q.contains(&uid) { "PodUpdate" } else { "PodAdd" };
            self.metrics
                .queue_incoming_pods
                .get_or_create(&IncomingLabels { queue: "active", event })
                .inc();
            q.add(info, Instant::now());
        });
    }

    fn on_pod_delete(&self, pod: &Pod) {
        let uid = pod.uid().unwrap_or_default();
        let removed = self.cache.lock().remove_pod(&uid).is_some();
        self.queue.with(|q| {
            q.delete(&uid);
            if removed {
                q.move_all_to_active_or_backoff(ClusterEvent::AssignedPodDelete, Instant::now());
            }
        });
    }

    // --- the scheduling cycle --------------------------------------------

    fn scheduling_loop(self: Arc<Self>) {
        let mut snapshot = Snapshot::default();
        let mut next_start = 0usize;
        let mut rng = rand::rng();
        while let Some(qpi) = self.queue.pop() {
            self.schedule_one(qpi, &mut snapshot, &mut next_start, &mut rng);
        }
        tracing::info!("scheduling loop stopped");
    }

    fn framework_for(&self, pod: &PodInfo) -> Option<&Arc<Framework>> {
        self.profiles.get(pod.scheduler_name())
    }

    fn schedule_one(
        self: &Arc<Self>,
        qpi: QueuedPodInfo,
        snapshot: &mut Snapshot,
        next_start: &mut usize,
        rng: &mut impl Rng,
    ) {
        let pod = qpi.pod.clone();
        let Some(fwk) = self.framework_for(&pod).cloned() else {
            self.queue.with(|q| q.done(&pod.uid));
            return;
        };
        if pod.terminating || self.cache.lock().contains_pod(&pod.uid) {
            self.queue.with(|q| q.done(&pod.uid));
            return;
        }
        let start = Instant::now();
        self.cache.lock().update_snapshot(snapshot);
        snapshot.nominated = self.queue.inner.lock().nominated_by_node();
        let mut state = CycleState::default();
        // Upstream samples plugin durations in 10% of cycles.
        state.record_plugin_metrics = rng.random_range(0..100) < 10;
        let result = fwk.schedule_pod(&mut state, &pod, snapshot, next_start, &mut |n| rng.random_range(0..n));
        match result {
            Ok(r) => {
                let host = r.suggested_host;
                let mut assumed = (*pod).clone();
                assumed.node_name = host.clone();
                self.cache.lock().assume(Arc::new(assumed), &host);
                for p in &fwk.reserve {
                    let st = p
                        .as_reserve()
                        .map(|r| r.reserve(&mut state, &pod, &host))
                        .unwrap_or_else(Status::success);
                    if !st.is_success() {
                        self.unreserve(&fwk, &mut state, &pod, &host);
                        self.cache.lock().forget(&pod.uid);
                        self.metrics
                            .attempt("error", &fwk.scheduler_name, start.elapsed().as_secs_f64());
                        self.failed(qpi, &fwk, st.message(), "SchedulerError", HashSet::new(), None);
                        return;
                    }
                }
                for p in &fwk.permit {
                    let st = p
                        .as_permit()
                        .map(|x| x.permit(&mut state, &pod, &host))
                        .unwrap_or_else(Status::success);
                    if !st.is_success() {
                        self.unreserve(&fwk, &mut state, &pod, &host);
                        self.cache.lock().forget(&pod.uid);
                        let plugins = [p.name()].into_iter().collect();
                        self.failed(qpi, &fwk, st.message(), "Unschedulable", plugins, None);
                        return;
                    }
                }
                self.queue.with(|q| q.delete_nominated(&pod.uid));
                let sched = self.clone();
                self.handle
                    .spawn_blocking(move || sched.binding_cycle(qpi, fwk, state, host, start));
            }
            Err(ScheduleError::Fit(mut fit)) => {
                let mut nominated = None;
                if !fwk.post_filter.is_empty() {
                    let t = Instant::now();
                    let (res, st) = fwk.run_post_filter(&state, &pod, snapshot, &fit.diagnosis.node_to_status);
                    fwk.observe("PostFilter", st.code, t);
                    if let Some(res) = res.filter(|_| st.is_success()) {
                        self.metrics.preemption_attempts.inc();
                        self.metrics.preemption_victims.observe(res.victims.len() as f64);
                        self.evict_victims(&pod, &res.victims);
                        nominated = Some(res.nominated_node);
                    } else {
                        fit.diagnosis.post_filter_msg = st.message();
                    }
                }
                self.metrics
                    .attempt("unschedulable", &fwk.scheduler_name, start.elapsed().as_secs_f64());
                let plugins = std::mem::take(&mut fit.diagnosis.unschedulable_plugins);
                self.failed(qpi, &fwk, fit.to_string(), "Unschedulable", plugins, nominated);
            }
            Err(ScheduleError::Plugin(st)) => {
                self.metrics
                    .attempt("error", &fwk.scheduler_name, start.elapsed().as_secs_f64());
                tracing::warn!(pod = %pod.key(), plugin = st.plugin, error = %st.message(), "scheduling failed");
                self.failed(qpi, &fwk, st.message(), "SchedulerError", HashSet::new(), None);
            }
        }
    }

    fn unreserve(&self, fwk: &Framework, state: &mut CycleState, pod: &PodInfo, host: &str) {
        for p in fwk.reserve.iter().rev() {
            if let Some(r) = p.as_reserve() {
                r.unreserve(state, pod, host);
            }
        }
    }

    /// Binding: PreBind, Bind, then the `Scheduled` event. On failure the
    /// assumed pod is forgotten and the pod retried after its back-off.
    fn binding_cycle(
        self: Arc<Self>,
        qpi: QueuedPodInfo,
        fwk: Arc<Framework>,
        mut state: CycleState,
        host: String,
        start: Instant,
    ) {
        let pod = qpi.pod.clone();
        let api = KubeApi { sched: self.clone() };
        let mut st = Status::success();
        for p in &fwk.pre_bind {
            if let Some(pb) = p.as_pre_bind() {
                st = pb.pre_bind(&api, &state, &pod, &host);
                if !st.is_success() && !st.is_skip() {
                    break;
                }
                st = Status::success();
            }
        }
        if st.is_success() {
            st = Status::skip();
            let t = Instant::now();
            for p in &fwk.bind {
                if let Some(b) = p.as_bind() {
                    st = b.bind(&api, &pod, &host).with_plugin(p.name());
                    if !st.is_skip() {
                        break;
                    }
                }
            }
            fwk.observe("Bind", st.code, t);
        }
        if st.is_success() {
            self.queue.with(|q| q.done(&pod.uid));
            self.metrics
                .attempt("scheduled", &fwk.scheduler_name, start.elapsed().as_secs_f64());
            if let Some(first) = qpi.initial_attempt.map(|_| qpi.first_added) {
                self.metrics
                    .sli_duration
                    .get_or_create(&AttemptsLabel {
                        attempts: qpi.attempts.to_string(),
                    })
                    .observe(first.elapsed().as_secs_f64());
            }
            self.event(
                &fwk,
                &pod,
                "Normal",
                "Scheduled",
                "Binding",
                format!("Successfully assigned {}/{} to {}", pod.namespace, pod.name, host),
            );
            return;
        }
        self.unreserve(&fwk, &mut state, &pod, &host);
        self.cache.lock().forget(&pod.uid);
        self.metrics
            .attempt("error", &fwk.scheduler_name, start.elapsed().as_secs_f64());
        let msg = st.message();
        if msg.contains("NotFound") || msg.contains("already assigned") || msg.contains("already bound") {
            // Deleted or bound meanwhile: nothing left to do.
            self.queue.with(|q| q.done(&pod.uid));
            return;
        }
        tracing::warn!(pod = %pod.key(), node = %host, error = %msg, "binding failed");
        self.failed(
            qpi,
            &fwk,
            format!("Binding rejected: {msg}"),
            "SchedulerError",
            HashSet::new(),
            None,
        );
    }

    /// A failed attempt: back to the queue, a `FailedScheduling` event, and
    /// the `PodScheduled=False` condition (and `nominatedNodeName`).
    fn failed(
        &self,
        mut qpi: QueuedPodInfo,
        fwk: &Framework,
        message: String,
        reason: &str,
        plugins: HashSet<&'static str>,
        nominated: Option<String>,
    ) {
        let pod = qpi.pod.clone();
        qpi.unschedulable_plugins = plugins;
        self.queue.with(|q| {
            if let Some(node) = &nominated {
                q.add_nominated(pod.clone(), node);
            }
            q.add_unschedulable(qpi, Instant::now());
        });
        self.event(fwk, &pod, "Warning", "FailedScheduling", "Scheduling", message.clone());
        self.update_condition(&pod, reason, message, nominated);
    }

    fn update_condition(&self, pod: &PodInfo, reason: &str, message: String, nominated: Option<String>) {
        let status = pod.pod.status.as_ref();
        let current = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let unchanged = current.is_some_and(|c| {
            c.status == "False" && c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message.as_str())
        });
        let nominated_unchanged =
            nominated.is_none() || status.and_then(|s| s.nominated_node_name.as_ref()) == nominated.as_ref();
        if unchanged && nominated_unchanged {
            return;
        }
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": now,
        }]}});
        if let Some(n) = nominated {
            patch["status"]["nominatedNodeName"] = json!(n);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let name = pod.name.clone();
        self.handle.spawn(async move {
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "updating the PodScheduled condition");
            }
        });
    }

    /// Preemption's victims: the `DisruptionTarget` condition, then a
    /// graceful delete.
    fn evict_victims(&self, preemptor: &PodInfo, victims: &[Arc<PodInfo>]) {
        for v in victims {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &v.namespace);
            let name = v.name.clone();
            let uid = v.uid.clone();
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let message = format!(
                "{}: preempting to accommodate a higher priority pod",
                preemptor.scheduler_name()
            );
            let patch = json!({"status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": message,
                "lastTransitionTime": now,
            }]}});
            let note = format!("Preempted by pod {} on node {}", preemptor.uid, v.node_name);
            if let Some(fwk) = self.framework_for(preemptor) {
                self.event(fwk, v, "Normal", "Preempted", "Preempting", note);
            }
            self.handle.spawn(async move {
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await;
                let dp = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                if let Err(e) = api.delete(&name, &dp).await {
                    tracing::warn!(pod = %name, error = %e, "deleting a preemption victim");
                }
            });
        }
    }

    fn event(&self, fwk: &Framework, pod: &PodInfo, type_: &str, reason: &str, action: &str, note: String) {
        let now = jiff::Timestamp::now();
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", pod.name, now.as_nanosecond())),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(fwk.scheduler_name.clone()),
            reporting_instance: Some(format!("{}-{}", fwk.scheduler_name, self.instance)),
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note),
            type_: Some(type_.to_string()),
            regarding: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(pod.namespace.clone()),
                name: Some(pod.name.clone()),
                uid: Some(pod.uid.clone()),
                resource_version: pod.pod.metadata.resource_version.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = self.events.send(ev);
    }
}

/// Writes events, several at a time, in the background.
async fn send_events(client: Client, rx: mpsc::UnboundedReceiver<Event>) {
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .for_each_concurrent(32, |ev| {
            let api: Api<Event> =
                Api::namespaced(client.clone(), ev.metadata.namespace.as_deref().unwrap_or("default"));
            async move {
                if let Err(e) = api.create(&PostParams::default(), &ev).await {
                    tracing::debug!(error = %e, "writing an event");
                }
            }
        })
        .await
}

/// [`ApiCalls`] over kube-rs, for the binding cycle's blocking threads.
struct KubeApi {
    sched: Arc<Sched>,
}

impl ApiCalls for KubeApi {
    fn bind(&self, namespace: &str, name: &str, uid: &str, node: &str) -> Result<(), String> {
        let api: Api<Pod> = Api::namespaced(self.sched.client.clone(), namespace);
        let body = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        self.sched
            .handle
            .block_on(api.create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &body))
            .map(|_| ())
            .map_err(|e| match e {
                kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
                other => other.to_string(),
            })
    }

    fn bind_pv(&self, pv_name: &str, claim_namespace: &str, claim_name: &str, claim_uid: &str) -> Result<(), String> {
        let api: Api<PersistentVolume> = Api::all(self.sched.client.clone());
        let patch = json!({
            "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": claim_namespace,
                "name": claim_name,
                "uid": claim_uid,
            }},
        });
        self.sched
            .handle
            .block_on(api.patch(pv_name, &PatchParams::default(), &Patch::Merge(patch)))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn annotate_pvc(&self, namespace: &str, name: &str, key: &str, value: &str) -> Result<(), String> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.sched.client.clone(), namespace);
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.sched
            .handle
            .block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(patch)))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
