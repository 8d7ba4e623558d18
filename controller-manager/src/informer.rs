//! Shared informers (client-go's `SharedInformerFactory`): one watch and
//! one cache per resource, shared by every controller that reads it.
//! Controllers register handlers that turn changes into work-queue keys,
//! and read objects from the cache, never from the apiserver, in their
//! sync functions.
//!
//! The watch is kube-runtime's `watcher` (list, then watch from the list's
//! resourceVersion, re-list on `410 Gone`); this module adds the cache
//! with the previous object of each change (handlers see `Update(old,
//! new)`, as upstream's `UpdateFunc`), deletions found by a re-list, and
//! fan-out to handlers.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;

/// A change seen by an informer.
pub enum Change<K> {
    Add(Arc<K>),
    Update(Arc<K>, Arc<K>),
    /// The last state the informer knew.
    Delete(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (for a deletion, as it was last seen).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Add(o) | Change::Update(_, o) | Change::Delete(o) => o,
        }
    }
}

type Handler<K> = Arc<dyn Fn(&Change<K>) + Send + Sync>;

/// The cache key of an object: `namespace/name`, or `name` when
/// cluster-scoped (client-go's `MetaNamespaceKeyFunc`).
pub fn key_of<K: Resource>(o: &K) -> String {
    let m = o.meta();
    key(m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""))
}

pub fn key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// Splits a cache key into namespace (empty when cluster-scoped) and name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// One resource's cache and handlers.
pub struct Informer<K> {
    resource: String,
    items: RwLock<BTreeMap<String, Arc<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K: Resource + Send + Sync + 'static> Informer<K> {
    fn new(resource: String) -> Self {
        Informer {
            resource,
            items: RwLock::new(BTreeMap::new()),
            handlers: RwLock::new(Vec::new()),
            synced: tokio::sync::watch::channel(false).0,
        }
    }

    /// The resource this informer watches (`apps/v1/deployments`).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.items.read().get(&key(namespace, name)).cloned()
    }

    pub fn get_key(&self, key: &str) -> Option<Arc<K>> {
        self.items.read().get(key).cloned()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.items.read().values().cloned().collect()
    }

    /// The cached objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let from = format!("{namespace}/");
        let to = format!("{namespace}0"); // '0' sorts right after '/'.
        self.items.read().range(from..to).map(|(_, v)| v.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.items.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.read().is_empty()
    }

    /// Registers `f` for every later change; objects already cached are
    /// replayed to it as additions (as client-go does for late handlers).
    pub fn add_handler(&self, f: impl Fn(&Change<K>) + Send + Sync + 'static) {
        let f: Handler<K> = Arc::new(f);
        // Holding the handler list while replaying orders the replay
        // before any change the watch task dispatches next.
        let mut handlers = self.handlers.write();
        for o in self.items.read().values() {
            f(&Change::Add(o.clone()));
        }
        handlers.push(f);
    }

    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the first complete list.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn dispatch(&self, change: Change<K>) {
        for h in self.handlers.read().iter() {
            h(&change);
        }
    }

    /// Applies one object from the watch, dispatching Add or Update.
    fn apply(&self, o: Arc<K>) {
        let k = key_of(o.as_ref());
        let old = self.items.write().insert(k, o.clone());
        match old {
            None => self.dispatch(Change::Add(o)),
            Some(old) => self.dispatch(Change::Update(old, o)),
        }
    }

    fn delete(&self, k: &str) {
        let old = self.items.write().remove(k);
        if let Some(old) = old {
            self.dispatch(Change::Delete(old));
        }
    }

    async fn run(self: Arc<Self>, api: Api<K>, cfg: watcher::Config)
    where
        K: Clone + std::fmt::Debug + DeserializeOwned,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        let mut relist: Option<HashSet<String>> = None;
        let stream = watcher(api, cfg).default_backoff();
        futures::pin_mut!(stream);
        loop {
            let ev = match stream.try_next().await {
                Ok(Some(ev)) => ev,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(resource = %self.resource, error = %e, "watch failed; retrying");
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => relist = Some(HashSet::new()),
                watcher::Event::InitApply(mut o) | watcher::Event::Apply(mut o) => {
                    // No controller reads them; upstream's informers drop them too.
                    o.meta_mut().managed_fields = None;
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(key_of(&o));
                    }
                    self.apply(Arc::new(o));
                }
                watcher::Event::Delete(o) => self.delete(&key_of(&o)),
                watcher::Event::InitDone => {
                    if let Some(seen) = relist.take() {
                        let gone: Vec<String> = self
                            .items
                            .read()
                            .keys()
                            .filter(|k| !seen.contains(*k))
                            .cloned()
                            .collect();
                        for k in gone {
                            self.delete(&k);
                        }
                    }
                    self.synced.send_replace(true);
                }
            }
        }
    }
}

impl Informer<DynamicObject> {
    /// A dynamic informer whose watch is not running (for tests).
    pub fn detached(resource: &str) -> Arc<Self> {
        Arc::new(Informer::new(resource.to_string()))
    }
}

struct Entry {
    informer: Arc<dyn Any + Send + Sync>,
    task: tokio::task::JoinHandle<()>,
}

/// Creates informers on first use and keeps them for the process's life
/// (dynamic ones until [`Informers::stop_dynamic`]).
pub struct Informers {
    client: kube::Client,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Arc<Self> {
        Arc::new(Informers {
            client,
            entries: Mutex::new(HashMap::new()),
        })
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The shared informer of a built-in kind (all namespaces).
    pub fn get<K>(&self) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let id = resource_id(&K::group(&()), &K::version(&()), &K::plural(&()));
        let mut entries = self.entries.lock();
        if let Some(e) = entries.get(&id) {
            return e
                .informer
                .clone()
                .downcast::<Informer<K>>()
                .expect("one type per resource");
        }
        let inf = Arc::new(Informer::<K>::new(id.clone()));
        let api: Api<K> = Api::all(self.client.clone());
        let task = tokio::spawn(inf.clone().run(api, watcher::Config::default()));
        entries.insert(
            id,
            Entry {
                informer: inf.clone(),
                task,
            },
        );
        inf
    }

    /// The shared informer of any resource (custom ones included), as
    /// untyped objects.
    pub fn dynamic(&self, ar: &ApiResource) -> Arc<Informer<DynamicObject>> {
        let id = resource_id(&ar.group, &ar.version, &ar.plural);
        let mut entries = self.entries.lock();
        if let Some(e) = entries.get(&id)
            && let Ok(inf) = e.informer.clone().downcast::<Informer<DynamicObject>>()
        {
            return inf;
        }
        let inf = Arc::new(Informer::<DynamicObject>::new(id.clone()));
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), ar);
        let task = tokio::spawn(inf.clone().run(api, watcher::Config::default()));
        entries.insert(
            id,
            Entry {
                informer: inf.clone(),
                task,
            },
        );
        inf
    }

    /// Stops a dynamic informer whose resource went away (a deleted CRD).
    pub fn stop_dynamic(&self, ar: &ApiResource) {
        let id = resource_id(&ar.group, &ar.version, &ar.plural);
        if let Some(e) = self.entries.lock().remove(&id) {
            e.task.abort();
        }
    }
}

fn resource_id(group: &str, version: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("{version}/{plural}")
    } else {
        format!("{group}/{version}/{plural}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn obj(ns: &str, name: &str, rv: &str) -> Arc<DynamicObject> {
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let mut o = DynamicObject::new(name, &ar);
        o.metadata.namespace = (!ns.is_empty()).then(|| ns.to_string());
        o.metadata.resource_version = Some(rv.into());
        Arc::new(o)
    }

    #[test]
    fn changes_reach_handlers_with_the_old_object() {
        let inf = Informer::<DynamicObject>::detached("v1/configmaps");
        inf.apply(obj("a", "x", "1"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        inf.add_handler(move |c| {
            let d = match c {
                Change::Add(o) => format!("add {}", o.metadata.resource_version.clone().unwrap()),
                Change::Update(old, new) => format!(
                    "update {}->{}",
                    old.metadata.resource_version.clone().unwrap(),
                    new.metadata.resource_version.clone().unwrap()
                ),
                Change::Delete(o) => format!("delete {}", o.metadata.resource_version.clone().unwrap()),
            };
            s.lock().push(d);
        });
        inf.apply(obj("a", "x", "2"));
        inf.delete("a/x");
        inf.delete("a/x");
        assert_eq!(*seen.lock(), vec!["add 1", "update 1->2", "delete 2"]);
    }

    #[test]
    fn namespace_listing_does_not_spill_into_neighbours() {
        let inf = Informer::<DynamicObject>::detached("v1/configmaps");
        for (ns, n) in [("a", "1"), ("a", "2"), ("a-b", "3"), ("ab", "4"), ("", "5")] {
            inf.apply(obj(ns, n, "1"));
        }
        let names: Vec<String> = inf
            .list_namespace("a")
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, vec!["1", "2"]);
        assert_eq!(inf.len(), 5);
        assert!(inf.get("", "5").is_some());
        let count = AtomicUsize::new(0);
        inf.list().iter().for_each(|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.into_inner(), 5);
    }

    #[test]
    fn keys_split_back() {
        assert_eq!(split_key("ns/name"), ("ns", "name"));
        assert_eq!(split_key("node-1"), ("", "node-1"));
        assert_eq!(key("", "n"), "n");
    }
}
