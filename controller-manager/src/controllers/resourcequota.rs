//! `resourcequota-controller`: keeps every ResourceQuota's `status.hard`
//! (a copy of `spec.hard`) and `status.used` (what the namespace's objects
//! use of each hard resource) up to date, on changes of the quota, of the
//! objects it counts, and every `--resource-quota-sync-period`.
//!
//! Upstream's `pkg/controller/resourcequota` with the evaluators of
//! `pkg/quota/v1/evaluator/core`: pods (compute resources of non-terminal
//! pods, `pods`, `count/pods`), services (`services`, node ports, load
//! balancers), persistent volume claims (`requests.storage`, per storage
//! class), and object counts (`configmaps`, `secrets`, …, and
//! `count/<resource>.<group>` for any listable resource, watched on first
//! use). Scopes (`Terminating`, `NotTerminating`, `BestEffort`,
//! `NotBestEffort`, `PriorityClass`, `CrossNamespacePodAffinity`) and
//! `scopeSelector` narrow pod usage; other evaluators count nothing under a
//! scope, as upstream. The admission-side charging is the apiserver's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apimachinery::quantity::Quantity;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, ResourceQuotaStatus,
    ResourceRequirements, ScopedResourceSelectorRequirement, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use parking_lot::Mutex;

use super::StartFn;
use crate::context::Ctx;
use crate::informer::{Change, Informer, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

/// Resource name -> amount.
pub type Usage = BTreeMap<String, Quantity>;

fn quantity(n: i64) -> Quantity {
    Quantity::parse(&n.to_string()).unwrap_or_default()
}

/// Parses an API resource list, dropping unparsable entries.
fn usage_of(list: Option<&BTreeMap<String, ApiQuantity>>) -> Usage {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::parse(&v.0).ok().map(|q| (k.clone(), q)))
        .collect()
}

fn cmp(a: &Quantity, b: &Quantity) -> std::cmp::Ordering {
    a.milli_value().cmp(&b.milli_value()).then(a.value().cmp(&b.value()))
}

/// `quota.Add` in place: sums keys present in both, copies the rest.
fn add_into(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        let sum = match a.get(k) {
            Some(x) => x.add(v),
            None => *v,
        };
        a.insert(k.clone(), sum);
    }
}

/// `maxResourceList`: the larger of each resource.
fn max_into(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        if a.get(k).is_none_or(|x| cmp(v, x).is_gt()) {
            a.insert(k.clone(), *v);
        }
    }
}

/// Upstream's `resourcehelper.PodRequests`/`PodLimits`: the containers'
/// sum, at least each init container's need (with the restartable init
/// containers started before it), plus the pod overhead.
fn pod_resources(pod: &Pod, limits: bool) -> Usage {
    let Some(spec) = pod.spec.as_ref() else {
        return Usage::new();
    };
    let of = |r: &Option<ResourceRequirements>| {
        usage_of(
            r.as_ref()
                .and_then(|r| if limits { r.limits.as_ref() } else { r.requests.as_ref() }),
        )
    };
    let mut total = Usage::new();
    for c in &spec.containers {
        add_into(&mut total, &of(&c.resources));
    }
    let mut restartable = Usage::new();
    let mut init = Usage::new();
    for c in spec.init_containers.iter().flatten() {
        let r = of(&c.resources);
        let need = if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut total, &r);
            add_into(&mut restartable, &r);
            restartable.clone()
        } else {
            let mut need = r;
            add_into(&mut need, &restartable);
            need
        };
        max_into(&mut init, &need);
    }
    max_into(&mut total, &init);
    let overhead = usage_of(spec.overhead.as_ref());
    if limits {
        // Overhead only raises limits that are set.
        for (k, v) in overhead {
            if let Some(x) = total.get(&k) {
                total.insert(k, x.add(&v));
            }
        }
    } else {
        add_into(&mut total, &overhead);
    }
    total
}

/// Whether a pod is charged for compute resources (upstream's
/// `QuotaV1Pod`): not terminal, and not past its deletion grace period.
pub fn pod_is_charged(pod: &Pod, now: jiff::Timestamp) -> bool {
    if matches!(util::phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    if let (Some(ts), Some(grace)) = (
        pod.metadata.deletion_timestamp.as_ref(),
        pod.metadata.deletion_grace_period_seconds,
    ) && now > ts.0 + jiff::SignedDuration::from_secs(grace)
    {
        return false;
    }
    true
}

fn is_extended_resource(name: &str) -> bool {
    // Fully qualified, outside the kubernetes.io namespace, not requests.*.
    name.contains('/')
        && !name.starts_with("kubernetes.io/")
        && !name.contains(".kubernetes.io/")
        && !name.starts_with("requests.")
}

/// What a pod uses (upstream's `PodUsageFunc`): `count/pods` always; the
/// rest only while it is charged.
pub fn pod_usage(pod: &Pod, now: jiff::Timestamp) -> Usage {
    let mut u: Usage = [("count/pods".to_string(), quantity(1))].into();
    if !pod_is_charged(pod, now) {
        return u;
    }
    let requests = pod_resources(pod, false);
    let limits = pod_resources(pod, true);
    u.insert("pods".into(), quantity(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            u.insert(r.into(), *q);
            u.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            u.insert(format!("limits.{r}"), *q);
        }
    }
    for (r, q) in &requests {
        if r.starts_with("hugepages-") {
            u.insert(r.clone(), *q);
            u.insert(format!("requests.{r}"), *q);
        }
        if is_extended_resource(r) {
            u.insert(format!("requests.{r}"), *q);
        }
    }
    u
}

/// What a service uses (upstream's service evaluator).
pub fn service_usage(svc: &Service) -> Usage {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.as_deref().unwrap_or_default().len() as i64;
    let mut u: Usage = [
        ("count/services".to_string(), quantity(1)),
        ("services".to_string(), quantity(1)),
        ("services.loadbalancers".to_string(), Quantity::zero()),
        ("services.nodeports".to_string(), Quantity::zero()),
    ]
    .into();
    match spec.type_.as_deref() {
        Some("NodePort") => {
            u.insert("services.nodeports".into(), quantity(ports));
        }
        Some("LoadBalancer") => {
            u.insert("services.loadbalancers".into(), quantity(1));
            if spec.allocate_load_balancer_node_ports != Some(false) {
                u.insert("services.nodeports".into(), quantity(ports));
            } else {
                let with = spec
                    .ports
                    .iter()
                    .flatten()
                    .filter(|p| p.node_port.is_some_and(|n| n != 0))
                    .count() as i64;
                u.insert("services.nodeports".into(), quantity(with));
            }
        }
        _ => {}
    }
    u
}

/// The claim's class: the beta annotation, else `storageClassName`.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .map(String::as_str)
        .or(pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()))
        .unwrap_or("")
}

const BY_CLASS: &str = ".storageclass.storage.k8s.io/";

/// What a claim uses (upstream's PVC evaluator): its count, and its
/// requested storage (the larger of the request and what was allocated).
pub fn pvc_usage(pvc: &PersistentVolumeClaim) -> Usage {
    let class = claim_class(pvc);
    let mut u: Usage = [
        ("count/persistentvolumeclaims".to_string(), quantity(1)),
        ("persistentvolumeclaims".to_string(), quantity(1)),
    ]
    .into();
    if !class.is_empty() {
        u.insert(format!("{class}{BY_CLASS}persistentvolumeclaims"), quantity(1));
    }
    let request = usage_of(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
    .remove("storage");
    let allocated = usage_of(pvc.status.as_ref().and_then(|s| s.allocated_resources.as_ref())).remove("storage");
    let storage = match (request, allocated) {
        (Some(r), Some(a)) if cmp(&a, &r).is_gt() => Some(a),
        (Some(r), _) => Some(r),
        (None, a) => a,
    };
    if let Some(q) = storage {
        u.insert("requests.storage".into(), q);
        if !class.is_empty() {
            u.insert(format!("{class}{BY_CLASS}requests.storage"), q);
        }
    }
    u
}

/// Which evaluator computes a quota resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Evaluator {
    Pods,
    Services,
    Claims,
    /// Counts objects of `resource` in `group` ("" for core).
    Count {
        group: String,
        resource: String,
    },
}

/// The evaluator tracking a quota resource name, if any (upstream's
/// evaluators' `MatchingResources`).
pub fn evaluator_for(name: &str) -> Option<Evaluator> {
    const POD: &[&str] = &[
        "pods",
        "count/pods",
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
    ];
    if POD.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
        || name.strip_prefix("requests.").is_some_and(is_extended_resource)
    {
        return Some(Evaluator::Pods);
    }
    if matches!(
        name,
        "services" | "count/services" | "services.nodeports" | "services.loadbalancers"
    ) {
        return Some(Evaluator::Services);
    }
    if matches!(
        name,
        "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage"
    ) || name.ends_with(&format!("{BY_CLASS}requests.storage"))
        || name.ends_with(&format!("{BY_CLASS}persistentvolumeclaims"))
    {
        return Some(Evaluator::Claims);
    }
    let counted = match name {
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => name,
        _ => name.strip_prefix("count/")?,
    };
    let (resource, group) = counted.split_once('.').unwrap_or((counted, ""));
    if resource.is_empty() {
        return None;
    }
    Some(Evaluator::Count {
        group: group.into(),
        resource: resource.into(),
    })
}

fn best_effort(pod: &Pod) -> bool {
    if let Some(q) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        return q == "BestEffort";
    }
    let spec = pod.spec.clone().unwrap_or_default();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let r = c.resources.clone().unwrap_or_default();
            [r.requests, r.limits].iter().all(|l| {
                usage_of(l.as_ref())
                    .iter()
                    .all(|(k, q)| !matches!(k.as_str(), "cpu" | "memory") || q.is_zero())
            })
        })
}

fn has_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let terms = |v: serde_json::Value| -> bool {
        // Any term with namespaces or a namespaceSelector.
        let mut all = Vec::new();
        for key in ["requiredDuringSchedulingIgnoredDuringExecution"] {
            if let Some(ts) = v.get(key).and_then(|t| t.as_array()) {
                all.extend(ts.iter().cloned());
            }
        }
        if let Some(ts) = v
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(|t| t.as_array())
        {
            all.extend(ts.iter().filter_map(|w| w.get("podAffinityTerm").cloned()));
        }
        all.iter().any(|t| {
            t.get("namespaceSelector").is_some_and(|s| !s.is_null())
                || t.get("namespaces")
                    .and_then(|n| n.as_array())
                    .is_some_and(|n| !n.is_empty())
        })
    };
    let pa = serde_json::to_value(&a.pod_affinity).unwrap_or_default();
    let paa = serde_json::to_value(&a.pod_anti_affinity).unwrap_or_default();
    terms(pa) || terms(paa)
}

/// Whether a pod matches one scope requirement (upstream's
/// `podMatchesScopeFunc`).
pub fn pod_matches_scope(req: &ScopedResourceSelectorRequirement, pod: &Pod) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    match req.scope_name.as_str() {
        "Terminating" => spec.active_deadline_seconds.is_some_and(|s| s >= 0),
        "NotTerminating" => spec.active_deadline_seconds.is_none_or(|s| s < 0),
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        "CrossNamespacePodAffinity" => has_cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = spec.priority_class_name.unwrap_or_default();
            let values = req.values.as_deref().unwrap_or_default();
            match req.operator.as_str() {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => false,
                "In" => values.contains(&class),
                "NotIn" => !values.contains(&class),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The quota's scope requirements: each `spec.scopes` entry as `Exists`,
/// then the scope selector's expressions.
pub fn scope_requirements(rq: &ResourceQuota) -> Vec<ScopedResourceSelectorRequirement> {
    let spec = rq.spec.clone().unwrap_or_default();
    let mut reqs: Vec<ScopedResourceSelectorRequirement> = spec
        .scopes
        .unwrap_or_default()
        .into_iter()
        .map(|s| ScopedResourceSelectorRequirement {
            scope_name: s,
            operator: "Exists".into(),
            values: None,
        })
        .collect();
    reqs.extend(
        spec.scope_selector
            .and_then(|s| s.match_expressions)
            .unwrap_or_default(),
    );
    reqs
}

/// What a namespace holds, for one quota's calculation.
pub struct Objects<'a> {
    pub pods: &'a [Arc<Pod>],
    pub services: &'a [Arc<Service>],
    pub claims: &'a [Arc<PersistentVolumeClaim>],
    /// The number of objects of (group, resource), `None` if unknown.
    pub count: &'a dyn Fn(&str, &str) -> Option<i64>,
}

/// `status.used` for hard resources `hard` under the scope requirements
/// `scopes` (upstream's `CalculateUsage` then `Mask`): every tracked hard
/// resource starts at zero; resources no evaluator tracks are left out.
pub fn calculate_used(
    hard: &[String],
    scopes: &[ScopedResourceSelectorRequirement],
    objs: &Objects,
    now: jiff::Timestamp,
) -> Usage {
    let mut by_eval: HashMap<Evaluator, Vec<&String>> = HashMap::new();
    for name in hard {
        if let Some(e) = evaluator_for(name) {
            by_eval.entry(e).or_default().push(name);
        }
    }
    let mut used = Usage::new();
    for (eval, names) in by_eval {
        let mut sum: Usage = names.iter().map(|n| ((*n).clone(), Quantity::zero())).collect();
        match &eval {
            Evaluator::Pods => {
                for p in objs.pods {
                    if scopes.iter().all(|s| pod_matches_scope(s, p)) {
                        add_into(&mut sum, &pod_usage(p, now));
                    }
                }
            }
            // Only pods match scopes (upstream's `MatchesNoScopeFunc`).
            _ if !scopes.is_empty() => {}
            Evaluator::Services => {
                for s in objs.services {
                    add_into(&mut sum, &service_usage(s));
                }
            }
            Evaluator::Claims => {
                for c in objs.claims {
                    add_into(&mut sum, &pvc_usage(c));
                }
            }
            Evaluator::Count { group, resource } => match (objs.count)(group, resource) {
                Some(n) => {
                    for name in &names {
                        sum.insert((*name).clone(), quantity(n));
                    }
                }
                None => continue,
            },
        }
        for n in names {
            if let Some(q) = sum.get(n) {
                used.insert(n.clone(), *q);
            }
        }
    }
    used
}

fn to_api(u: &Usage) -> BTreeMap<String, ApiQuantity> {
    u.iter().map(|(k, v)| (k.clone(), ApiQuantity(v.to_string()))).collect()
}

fn same_amounts(a: Option<&BTreeMap<String, ApiQuantity>>, b: Option<&BTreeMap<String, ApiQuantity>>) -> bool {
    let (a, b) = (usage_of(a), usage_of(b));
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| cmp(v, w).is_eq()))
}

/// The quota's new status, or `None` if it is up to date (upstream's
/// `syncResourceQuota`): hard is spec.hard, used is the previous used
/// overlaid with the new calculation, masked to the hard resources.
pub fn new_status(rq: &ResourceQuota, calculated: &Usage) -> Option<ResourceQuotaStatus> {
    let spec_hard = rq.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    let status = rq.status.clone().unwrap_or_default();
    let mut used: BTreeMap<String, ApiQuantity> = status.used.clone().unwrap_or_default();
    used.extend(to_api(calculated));
    used.retain(|k, _| spec_hard.contains_key(k));
    let dirty = status.hard.is_none()
        || status.used.is_none()
        || !same_amounts(Some(&spec_hard), status.hard.as_ref())
        || !same_amounts(Some(&used), status.used.as_ref());
    dirty.then_some(ResourceQuotaStatus {
        hard: Some(spec_hard),
        used: Some(used),
    })
}

/// A watched resource's informer, or (not listable) when to ask again.
type Counter = Result<Arc<Informer<DynamicObject>>, Instant>;

struct Controller {
    client: kube::Client,
    informers: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    quotas: Arc<Informer<ResourceQuota>>,
    pods: Arc<Informer<Pod>>,
    services: Arc<Informer<Service>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    config_maps: Arc<Informer<ConfigMap>>,
    secrets: Arc<Informer<Secret>>,
    rcs: Arc<Informer<ReplicationController>>,
    /// `group/resource` -> the informer counting it (None: not listable,
    /// remembered until the instant).
    dynamic: Mutex<HashMap<String, Counter>>,
}

/// Queues every quota of `ns` (upstream's `replenishQuota`).
fn enqueue_namespace(queue: &Queue, quotas: &Informer<ResourceQuota>, ns: &str) {
    for rq in quotas.list_namespace(ns) {
        queue.add(key_of(rq.as_ref()));
    }
}

fn watch_for<K>(informer: &Informer<K>, queue: &Arc<Queue>, quotas: &Arc<Informer<ResourceQuota>>)
where
    K: kube::Resource + Send + Sync + 'static,
{
    let (q, rq) = (queue.clone(), quotas.clone());
    informer.add_handler(move |c| {
        let o = c.object();
        if let Some(ns) = o.meta().namespace.as_deref() {
            enqueue_namespace(&q, &rq, ns);
        }
    });
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let queue = ctx.queue("resourcequota_primary");
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        informers: ctx.informers.clone(),
        queue: queue.clone(),
        quotas: ctx.informers.get(),
        pods: ctx.informers.get(),
        services: ctx.informers.get(),
        claims: ctx.informers.get(),
        config_maps: ctx.informers.get(),
        secrets: ctx.informers.get(),
        rcs: ctx.informers.get(),
        dynamic: Mutex::new(HashMap::new()),
    });
    let q = queue.clone();
    c.quotas.add_handler(move |ch| match ch {
        Change::Add(rq) => q.add(key_of(rq.as_ref())),
        Change::Update(old, new) => {
            if old.spec != new.spec || new.status.is_none() {
                q.add(key_of(new.as_ref()));
            }
        }
        Change::Delete(_) => {}
    });
    watch_for(&c.pods, &queue, &c.quotas);
    watch_for(&c.services, &queue, &c.quotas);
    watch_for(&c.claims, &queue, &c.quotas);
    watch_for(&c.config_maps, &queue, &c.quotas);
    watch_for(&c.secrets, &queue, &c.quotas);
    watch_for(&c.rcs, &queue, &c.quotas);
    let period = ctx.opts.resource_quota_sync_period;
    let workers = ctx.opts.concurrency.resource_quota;
    tokio::spawn(async move {
        c.quotas.wait_synced().await;
        c.pods.wait_synced().await;
        c.services.wait_synced().await;
        c.claims.wait_synced().await;
        c.config_maps.wait_synced().await;
        c.secrets.wait_synced().await;
        c.rcs.wait_synced().await;
        let cc = c.clone();
        run_workers(queue.clone(), workers, move |key| {
            let c = cc.clone();
            async move { c.sync(&key).await }
        });
        // The full resync.
        let mut tick = tokio::time::interval(period.max(Duration::from_secs(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            for rq in c.quotas.list() {
                queue.add(key_of(rq.as_ref()));
            }
        }
    });
    Ok(())
}

impl Controller {
    async fn sync(self: &Arc<Self>, key: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(key);
        let Some(rq) = self.quotas.get(ns, name) else {
            return Ok(());
        };
        let hard: Vec<String> = rq
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default();
        // Informers for object counts of other resources, made on first use.
        let mut counters: HashMap<(String, String), Arc<Informer<DynamicObject>>> = HashMap::new();
        for h in &hard {
            if let Some(Evaluator::Count { group, resource }) = evaluator_for(h)
                && !self.typed_count(&group, &resource)
                && let Some(inf) = self.dynamic_counter(&group, &resource).await
            {
                counters.insert((group, resource), inf);
            }
        }
        let used = {
            let pods = self.pods.list_namespace(ns);
            let services = self.services.list_namespace(ns);
            let claims = self.claims.list_namespace(ns);
            let count = |group: &str, resource: &str| -> Option<i64> {
                let n = match (group, resource) {
                    ("", "pods") => pods.len(),
                    ("", "services") => services.len(),
                    ("", "persistentvolumeclaims") => claims.len(),
                    ("", "configmaps") => self.config_maps.list_namespace(ns).len(),
                    ("", "secrets") => self.secrets.list_namespace(ns).len(),
                    ("", "replicationcontrollers") => self.rcs.list_namespace(ns).len(),
                    ("", "resourcequotas") => self.quotas.list_namespace(ns).len(),
                    _ => counters
                        .get(&(group.to_string(), resource.to_string()))?
                        .list_namespace(ns)
                        .len(),
                };
                Some(n as i64)
            };
            let objs = Objects {
                pods: &pods,
                services: &services,
                claims: &claims,
                count: &count,
            };
            calculate_used(&hard, &scope_requirements(&rq), &objs, jiff::Timestamp::now())
        };
        let Some(status) = new_status(&rq, &used) else {
            return Ok(());
        };
        let mut updated = (*rq).clone();
        updated.status = Some(status);
        match Api::<ResourceQuota>::namespaced(self.client.clone(), ns)
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn typed_count(&self, group: &str, resource: &str) -> bool {
        group.is_empty()
            && matches!(
                resource,
                "pods"
                    | "services"
                    | "persistentvolumeclaims"
                    | "configmaps"
                    | "secrets"
                    | "replicationcontrollers"
                    | "resourcequotas"
            )
    }

    /// The synced informer counting `group/resource`, made (and watched
    /// for replenishment) on first use; `None` if the resource is not
    /// served or not listable.
    async fn dynamic_counter(self: &Arc<Self>, group: &str, resource: &str) -> Option<Arc<Informer<DynamicObject>>> {
        let id = format!("{group}/{resource}");
        let known = self.dynamic.lock().get(&id).cloned();
        let inf = match known {
            Some(Ok(inf)) => inf,
            Some(Err(until)) if Instant::now() < until => return None,
            _ => match self.discover(group, resource).await {
                Some(ar) => {
                    let inf = self.informers.dynamic(&ar);
                    watch_for(&inf, &self.queue, &self.quotas);
                    self.dynamic.lock().insert(id, Ok(inf.clone()));
                    inf
                }
                None => {
                    self.dynamic
                        .lock()
                        .insert(id, Err(Instant::now() + Duration::from_secs(60)));
                    return None;
                }
            },
        };
        tokio::time::timeout(Duration::from_secs(10), inf.wait_synced())
            .await
            .ok()
            .map(|_| inf)
    }

    async fn discover(&self, group: &str, resource: &str) -> Option<ApiResource> {
        let g = kube::discovery::group(&self.client, group).await.ok()?;
        g.recommended_resources()
            .into_iter()
            .find(|(ar, caps)| ar.plural == resource && caps.supports_operation(kube::discovery::verbs::LIST))
            .map(|(ar, _)| ar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(v: Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn container(req: Value, lim: Value) -> Value {
        json!({"name": "c", "image": "i", "resources": {"requests": req, "limits": lim}})
    }

    fn show(u: &Usage) -> String {
        u.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn pod_usage_table() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "two containers sum",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [
                    container(json!({"cpu": "100m", "memory": "64Mi"}), json!({"cpu": "200m"})),
                    container(json!({"cpu": "250m", "memory": "64Mi"}), json!({"cpu": "1"}))]}}),
                "count/pods=1 cpu=350m limits.cpu=1200m memory=128Mi pods=1 requests.cpu=350m requests.memory=128Mi",
            ),
            (
                "an init container larger than the containers sets the floor",
                json!({"metadata": {"name": "p"}, "spec": {
                    "initContainers": [container(json!({"cpu": "2"}), json!({}))],
                    "containers": [container(json!({"cpu": "500m"}), json!({}))]}}),
                "count/pods=1 cpu=2 pods=1 requests.cpu=2",
            ),
            (
                "a sidecar adds to the containers and to later init containers",
                json!({"metadata": {"name": "p"}, "spec": {
                    "initContainers": [
                        {"name": "s", "image": "i", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                        container(json!({"cpu": "1"}), json!({}))],
                    "containers": [container(json!({"cpu": "500m"}), json!({}))]}}),
                "count/pods=1 cpu=1100m pods=1 requests.cpu=1100m",
            ),
            (
                "a terminal pod only counts as an object",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [container(json!({"cpu": "1"}), json!({}))]},
                       "status": {"phase": "Succeeded"}}),
                "count/pods=1",
            ),
            (
                "a pod past its deletion grace period is not charged",
                json!({"metadata": {"name": "p", "deletionTimestamp": "2025-12-31T23:59:00Z", "deletionGracePeriodSeconds": 30},
                       "spec": {"containers": [container(json!({"cpu": "1"}), json!({}))]}}),
                "count/pods=1",
            ),
            (
                "overhead adds to requests and to set limits only",
                json!({"metadata": {"name": "p"}, "spec": {"overhead": {"cpu": "10m", "memory": "1Mi"},
                       "containers": [container(json!({"cpu": "100m"}), json!({"cpu": "100m"}))]}}),
                "count/pods=1 cpu=110m limits.cpu=110m memory=1Mi pods=1 requests.cpu=110m requests.memory=1Mi",
            ),
            (
                "hugepages and extended resources",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [
                    container(json!({"hugepages-2Mi": "4Mi", "example.com/gpu": "1"}), json!({}))]}}),
                "count/pods=1 hugepages-2Mi=4Mi pods=1 requests.example.com/gpu=1 requests.hugepages-2Mi=4Mi",
            ),
        ];
        for (why, p, want) in cases {
            assert_eq!(show(&pod_usage(&pod(p), now())), want, "{why}");
        }
    }

    #[test]
    fn service_and_claim_usage() {
        let svc = |v: Value| -> Service { serde_json::from_value(v).unwrap() };
        let cases: Vec<(&str, Service, &str)> = vec![
            (
                "cluster IP",
                svc(json!({"spec": {"ports": [{"port": 80}]}})),
                "count/services=1 services=1 services.loadbalancers=0 services.nodeports=0",
            ),
            (
                "node port counts its ports",
                svc(json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}})),
                "count/services=1 services=1 services.loadbalancers=0 services.nodeports=2",
            ),
            (
                "load balancer",
                svc(json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})),
                "count/services=1 services=1 services.loadbalancers=1 services.nodeports=1",
            ),
            (
                "load balancer without node ports",
                svc(
                    json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}}),
                ),
                "count/services=1 services=1 services.loadbalancers=1 services.nodeports=0",
            ),
        ];
        for (why, s, want) in cases {
            assert_eq!(show(&service_usage(&s)), want, "{why}");
        }
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "c"},
            "spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"allocatedResources": {"storage": "2Gi"}}}))
        .unwrap();
        assert_eq!(
            show(&pvc_usage(&pvc)),
            "count/persistentvolumeclaims=1 gold.storageclass.storage.k8s.io/persistentvolumeclaims=1 \
             gold.storageclass.storage.k8s.io/requests.storage=2Gi persistentvolumeclaims=1 requests.storage=2Gi",
            "the larger of request and allocation, also per class"
        );
    }

    #[test]
    fn calculation_per_quota() {
        let pods = vec![
            pod(
                json!({"metadata": {"name": "a"}, "spec": {"containers": [container(json!({"cpu": "100m"}), json!({}))]}}),
            ),
            pod(
                json!({"metadata": {"name": "b"}, "spec": {"activeDeadlineSeconds": 10, "containers": [container(json!({"cpu": "200m"}), json!({}))]}}),
            ),
            pod(
                json!({"metadata": {"name": "c"}, "spec": {"containers": [container(json!({}), json!({}))]},
                       "status": {"phase": "Failed"}}),
            ),
            pod(
                json!({"metadata": {"name": "d"}, "spec": {"priorityClassName": "high", "containers": [container(json!({}), json!({}))]}}),
            ),
        ];
        let count = |g: &str, r: &str| match (g, r) {
            ("", "configmaps") => Some(3),
            ("apps", "deployments") => Some(1),
            _ => None,
        };
        let objs = Objects {
            pods: &pods,
            services: &[],
            claims: &[],
            count: &count,
        };
        let hard = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let scope = |name: &str, op: &str, values: &[&str]| ScopedResourceSelectorRequirement {
            scope_name: name.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
        };
        let cases: Vec<(&str, Vec<String>, Vec<ScopedResourceSelectorRequirement>, &str)> = vec![
            (
                "unscoped: terminal pods count only in count/pods",
                hard(&[
                    "pods",
                    "count/pods",
                    "requests.cpu",
                    "limits.memory",
                    "configmaps",
                    "count/deployments.apps",
                    "services",
                    "count/widgets.example.com",
                ]),
                vec![],
                "configmaps=3 count/deployments.apps=1 count/pods=4 limits.memory=0 pods=3 requests.cpu=300m services=0",
            ),
            (
                "Terminating scope",
                hard(&["pods", "requests.cpu"]),
                vec![scope("Terminating", "Exists", &[])],
                "pods=1 requests.cpu=200m",
            ),
            (
                "NotTerminating and BestEffort",
                hard(&["pods"]),
                vec![
                    scope("NotTerminating", "Exists", &[]),
                    scope("BestEffort", "Exists", &[]),
                ],
                "pods=1",
            ),
            (
                "PriorityClass In",
                hard(&["pods"]),
                vec![scope("PriorityClass", "In", &["high"])],
                "pods=1",
            ),
            (
                "PriorityClass NotIn",
                hard(&["pods"]),
                vec![scope("PriorityClass", "NotIn", &["high"])],
                "pods=2",
            ),
            (
                "other evaluators count nothing under a scope",
                hard(&["configmaps"]),
                vec![scope("BestEffort", "Exists", &[])],
                "configmaps=0",
            ),
        ];
        for (why, h, scopes, want) in cases {
            assert_eq!(show(&calculate_used(&h, &scopes, &objs, now())), want, "{why}");
        }
    }

    #[test]
    fn status_is_rewritten_only_when_it_differs() {
        let rq = |status: Value| -> ResourceQuota {
            serde_json::from_value(json!({"metadata": {"name": "q", "namespace": "n"},
                "spec": {"hard": {"pods": "10", "cpu": "2"}}, "status": status}))
            .unwrap()
        };
        let used: Usage = [("pods".to_string(), quantity(2))].into();
        let s = new_status(&rq(json!({})), &used).expect("no status yet");
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"hard": {"pods": "10", "cpu": "2"}, "used": {"pods": "2"}})
        );
        assert!(
            new_status(
                &rq(json!({"hard": {"pods": "10", "cpu": "2"}, "used": {"pods": "2"}})),
                &used
            )
            .is_none(),
            "up to date"
        );
        let s = new_status(
            &rq(json!({"hard": {"pods": "10"}, "used": {"pods": "2", "secrets": "1"}})),
            &used,
        )
        .expect("hard changed");
        assert_eq!(
            serde_json::to_value(&s).unwrap()["used"],
            json!({"pods": "2"}),
            "used is masked to hard"
        );
    }

    #[test]
    fn evaluators_by_name() {
        let cases = [
            ("requests.cpu", Some(Evaluator::Pods)),
            ("requests.example.com/gpu", Some(Evaluator::Pods)),
            ("services.nodeports", Some(Evaluator::Services)),
            (
                "gold.storageclass.storage.k8s.io/requests.storage",
                Some(Evaluator::Claims),
            ),
            (
                "count/deployments.apps",
                Some(Evaluator::Count {
                    group: "apps".into(),
                    resource: "deployments".into(),
                }),
            ),
            (
                "secrets",
                Some(Evaluator::Count {
                    group: "".into(),
                    resource: "secrets".into(),
                }),
            ),
            ("unknown", None),
        ];
        for (name, want) in cases {
            assert_eq!(evaluator_for(name), want, "{name}");
        }
    }
}
