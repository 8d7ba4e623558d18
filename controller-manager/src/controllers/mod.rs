//! Every controller, registered in one table under upstream's canonical
//! name (`cmd/kube-controller-manager/names`) with its legacy alias, and
//! `--controllers` selection over it.

use std::sync::Arc;

use crate::context::Ctx;

pub mod clusterroleaggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod ephemeral;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod protection;
pub mod pvbinder;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttlafterfinished;

/// Starts a controller: registers its informer handlers and spawns its
/// workers, then returns.
pub type StartFn = fn(&Arc<Ctx>) -> anyhow::Result<()>;

pub struct Descriptor {
    /// Upstream's canonical name (`replicaset-controller`).
    pub name: &'static str,
    /// The legacy alias `--controllers` also accepts (`replicaset`).
    pub alias: Option<&'static str>,
    /// Whether `*` includes it (upstream's disabled-by-default ones do not).
    pub default_enabled: bool,
    /// `None`: not built here (upstream has it; we say so at start-up).
    pub start: Option<StartFn>,
}

const fn d(name: &'static str, alias: &'static str, start: Option<StartFn>) -> Descriptor {
    Descriptor {
        name,
        alias: Some(alias),
        default_enabled: true,
        start,
    }
}

/// The controllers, in upstream's start order.
pub fn all() -> Vec<Descriptor> {
    let mut v = vec![
        d(
            "serviceaccount-token-controller",
            "serviceaccount-token",
            serviceaccount::START_TOKEN,
        ),
        d("endpoints-controller", "endpoint", endpoints::START),
        d("endpointslice-controller", "endpointslice", endpointslice::START),
        d(
            "endpointslice-mirroring-controller",
            "endpointslicemirroring",
            endpointslicemirroring::START,
        ),
        d(
            "replicationcontroller-controller",
            "replicationcontroller",
            replicaset::START_RC,
        ),
        d("pod-garbage-collector-controller", "podgc", podgc::START),
        d("resourcequota-controller", "resourcequota", resourcequota::START),
        d("namespace-controller", "namespace", namespace::START),
        d("serviceaccount-controller", "serviceaccount", serviceaccount::START),
        d(
            "garbage-collector-controller",
            "garbagecollector",
            garbagecollector::START,
        ),
        d("daemonset-controller", "daemonset", daemonset::START),
        d("job-controller", "job", job::START),
        d("deployment-controller", "deployment", deployment::START),
        d("replicaset-controller", "replicaset", replicaset::START),
        d("horizontal-pod-autoscaler-controller", "horizontalpodautoscaling", None),
        d("disruption-controller", "disruption", disruption::START),
        d("statefulset-controller", "statefulset", statefulset::START),
        d("cronjob-controller", "cronjob", cronjob::START),
        d("certificatesigningrequest-signing-controller", "csrsigning", None),
        d("certificatesigningrequest-approving-controller", "csrapproving", None),
        d("certificatesigningrequest-cleaner-controller", "csrcleaner", None),
        d("ttl-controller", "ttl", None),
        d("bootstrap-signer-controller", "bootstrapsigner", None),
        d("token-cleaner-controller", "tokencleaner", None),
        d("node-ipam-controller", "nodeipam", nodeipam::START),
        d("node-lifecycle-controller", "nodelifecycle", nodelifecycle::START),
        Descriptor {
            name: "taint-eviction-controller",
            alias: None,
            default_enabled: true,
            start: nodelifecycle::START_TAINT_EVICTION,
        },
        d(
            "persistentvolume-binder-controller",
            "persistentvolume-binder",
            pvbinder::START,
        ),
        d("persistentvolume-attach-detach-controller", "attachdetach", None),
        d(
            "persistentvolume-expander-controller",
            "persistentvolume-expander",
            None,
        ),
        d(
            "clusterrole-aggregation-controller",
            "clusterrole-aggregation",
            clusterroleaggregation::START,
        ),
        d(
            "persistentvolumeclaim-protection-controller",
            "pvc-protection",
            protection::START,
        ),
        d(
            "persistentvolume-protection-controller",
            "pv-protection",
            protection::START_PV,
        ),
        d(
            "ttl-after-finished-controller",
            "ttl-after-finished",
            ttlafterfinished::START,
        ),
        d(
            "root-ca-certificate-publisher-controller",
            "root-ca-cert-publisher",
            serviceaccount::START_ROOT_CA,
        ),
        d("ephemeral-volume-controller", "ephemeral-volume", ephemeral::START),
        d(
            "legacy-serviceaccount-token-cleaner-controller",
            "legacy-service-account-token-cleaner",
            None,
        ),
    ];
    // Upstream's disabled-by-default controllers.
    for c in v.iter_mut() {
        if matches!(c.name, "bootstrap-signer-controller" | "token-cleaner-controller") {
            c.default_enabled = false;
        }
    }
    v
}

/// The canonical name for `name` (itself or an alias), if known.
pub fn canonical(name: &str) -> Option<&'static str> {
    all()
        .into_iter()
        .find(|c| c.name == name || c.alias == Some(name))
        .map(|c| c.name)
}

/// Which controllers `--controllers` enables (upstream's syntax: `*` is
/// every default-enabled one, `name` enables, `-name` disables; names may
/// be canonical or aliases). Unknown names are an error naming them.
pub fn enabled(flag: &[String]) -> Result<Vec<&'static str>, String> {
    let mut on: Vec<&'static str> = Vec::new();
    let mut off: Vec<&'static str> = Vec::new();
    let mut star = false;
    for raw in flag {
        let item = raw.trim();
        if item == "*" {
            star = true;
            continue;
        }
        let (neg, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item),
        };
        let Some(c) = canonical(name) else {
            return Err(format!(
                "--controllers: {item:?} is not a known controller (e.g. \"*\", \"replicaset-controller\", \"-garbage-collector-controller\")"
            ));
        };
        if neg { off.push(c) } else { on.push(c) }
    }
    Ok(all()
        .into_iter()
        .filter(|c| !off.contains(&c.name) && (on.contains(&c.name) || (star && c.default_enabled)))
        .map(|c| c.name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn star_is_every_default_controller() {
        let on = enabled(&flag("*")).unwrap();
        assert!(on.contains(&"replicaset-controller"));
        assert!(on.contains(&"garbage-collector-controller"));
        assert!(!on.contains(&"bootstrap-signer-controller"));
    }

    #[test]
    fn names_aliases_and_negations() {
        let on = enabled(&flag("*,-garbagecollector,bootstrapsigner")).unwrap();
        assert!(!on.contains(&"garbage-collector-controller"));
        assert!(on.contains(&"bootstrap-signer-controller"));
        let on = enabled(&flag("replicaset,deployment-controller")).unwrap();
        assert_eq!(on, vec!["deployment-controller", "replicaset-controller"]);
        let on = enabled(&flag("-replicaset")).unwrap();
        assert!(on.is_empty());
    }

    #[test]
    fn unknown_names_are_refused() {
        let e = enabled(&flag("*,replicaset-controler")).unwrap_err();
        assert!(e.contains("replicaset-controler"), "{e}");
    }

    #[test]
    fn names_are_unique() {
        let all = all();
        let mut names: Vec<&str> = all
            .iter()
            .map(|c| c.name)
            .chain(all.iter().filter_map(|c| c.alias))
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
