//! What resources the apiserver serves (custom ones included), for the
//! controllers that work on every resource: the garbage collector and the
//! namespace controller. Upstream's RESTMapper role: `(apiVersion, kind)`
//! to resource and scope.

use std::sync::Arc;

use kube::api::ApiResource;
use kube::discovery::{ApiCapabilities, Discovery, Scope, verbs};
use parking_lot::RwLock;

#[derive(Clone, Debug)]
pub struct Resource {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Resource {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    fn new(ar: ApiResource, caps: &ApiCapabilities) -> Self {
        Resource {
            ar,
            namespaced: caps.scope == Scope::Namespaced,
            verbs: caps.operations.clone(),
        }
    }
}

/// A discovery snapshot: every version of every resource (for mapping
/// owner references), and the preferred version of each (for listing).
#[derive(Default)]
pub struct Snapshot {
    pub all: Vec<Resource>,
    pub preferred: Vec<Resource>,
}

impl Snapshot {
    /// The resource of `kind` in `api_version`, else of `kind` in any
    /// version of the group (an owner reference may name an old version).
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.all
            .iter()
            .find(|r| r.ar.api_version == api_version && r.ar.kind == kind)
            .or_else(|| self.preferred.iter().find(|r| r.ar.group == group && r.ar.kind == kind))
    }
}

/// The current snapshot, refreshed by [`Resources::refresh`].
#[derive(Clone, Default)]
pub struct Resources {
    current: Arc<RwLock<Arc<Snapshot>>>,
}

impl Resources {
    pub fn get(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// Re-reads discovery. Groups that fail to answer are skipped by
    /// kube-rs (their resources keep no informer until the next refresh).
    pub async fn refresh(&self, client: &kube::Client) -> anyhow::Result<Arc<Snapshot>> {
        let d = Discovery::new(client.clone()).run().await?;
        let mut snap = Snapshot::default();
        for g in d.groups() {
            let preferred = g.preferred_version_or_latest().to_string();
            for v in g.versions() {
                for (ar, caps) in g.versioned_resources(v) {
                    let r = Resource::new(ar, &caps);
                    if v == preferred {
                        snap.preferred.push(r.clone());
                    }
                    snap.all.push(r);
                }
            }
        }
        let snap = Arc::new(snap);
        *self.current.write() = snap.clone();
        Ok(snap)
    }
}

/// Whether objects of `r` can be listed, watched and deleted (what the
/// garbage collector and namespace controller need).
pub fn deletable(r: &Resource) -> bool {
    r.supports(verbs::LIST) && r.supports(verbs::WATCH) && r.supports(verbs::DELETE)
}
