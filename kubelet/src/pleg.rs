//! The pod lifecycle event generator: relists the runtime every
//! `--pleg-relist-period` (containerd 1.6 has no container events) and
//! wakes the worker of every pod whose sandboxes or containers changed
//! state, including pods the kubelet does not know (left over, or running
//! since before a restart).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Kubelet;
use crate::cri::keys;

/// What the relist compares: per pod uid, each sandbox's and container's
/// id and state.
pub type Snapshot = BTreeMap<String, Vec<(String, i32)>>;

pub async fn snapshot(k: &Kubelet) -> anyhow::Result<Snapshot> {
    let mut snap: Snapshot = BTreeMap::new();
    for s in k.runtime.list_pod_sandboxes().await? {
        if let Some(uid) = s.labels.get(keys::POD_UID) {
            snap.entry(uid.clone()).or_default().push((s.id, s.state));
        }
    }
    for c in k.runtime.list_containers().await? {
        if let Some(uid) = c.labels.get(keys::POD_UID) {
            snap.entry(uid.clone()).or_default().push((c.id, c.state + 10));
        }
    }
    for v in snap.values_mut() {
        v.sort();
    }
    Ok(snap)
}

/// Uids whose entries differ between two snapshots.
pub fn changed(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = new
        .iter()
        .filter(|(u, v)| old.get(*u) != Some(*v))
        .map(|(u, _)| u.clone())
        .collect();
    out.extend(old.keys().filter(|u| !new.contains_key(*u)).cloned());
    out
}

pub async fn run(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let mut last = Snapshot::new();
    let mut tick = tokio::time::interval(k.opts.pleg_relist_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        match snapshot(&k).await {
            Ok(snap) => {
                for uid in changed(&last, &snap) {
                    k.wake(&uid);
                }
                last = snap;
                k.metrics.observe_relist(started.elapsed());
            }
            Err(e) => tracing::warn!(error = %e, "PLEG relist failed"),
        }
    }
}

/// At start: a worker for every pod the runtime already has, so running
/// pods are adopted (their containers untouched) and unwanted ones go.
pub async fn adopt(k: &Arc<Kubelet>) {
    match snapshot(k).await {
        Ok(snap) => {
            for uid in snap.keys() {
                k.wake(uid);
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing the runtime's pods at start"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_per_pod() {
        let mut a = Snapshot::new();
        a.insert("p1".into(), vec![("c1".into(), 11)]);
        a.insert("p2".into(), vec![("c2".into(), 11)]);
        let mut b = a.clone();
        b.get_mut("p1").unwrap()[0].1 = 12;
        b.remove("p2");
        b.insert("p3".into(), vec![]);
        let mut c = changed(&a, &b);
        c.sort();
        assert_eq!(c, ["p1", "p2", "p3"]);
    }
}
