use super::*;
use serde_json::{Value, json};

const CUR: &str = "web-1111";
const UPD: &str = "web-2222";

fn set(extra: Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
        "spec": {
            "replicas": 3,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
        }
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// A pod by state: "ready", "running" (not ready), "pending", "failed",
/// "terminating"; at revision `rev`.
fn pod(name: &str, state: &str, rev: &str) -> Arc<Pod> {
    let phase = match state {
        "ready" | "running" | "terminating" => "Running",
        "pending" => "Pending",
        "failed" => "Failed",
        s => panic!("{s}"),
    };
    let ready = if matches!(state, "ready" | "terminating") {
        "True"
    } else {
        "False"
    };
    let mut v = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("{name}-uid"),
                     "labels": {"app": "web", POD_NAME_LABEL: name, REVISION_LABEL: rev}},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready,
                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    });
    if state == "terminating" {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn claims(names: &[&str]) -> BTreeMap<String, Arc<PersistentVolumeClaim>> {
    names
        .iter()
        .map(|n| {
            let c: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
            (n.to_string(), Arc::new(c))
        })
        .collect()
}

fn run(set: &StatefulSet, pods: &[Arc<Pod>], claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>) -> Plan {
    plan(&Input {
        set,
        pods,
        current_revision: CUR,
        update_revision: UPD,
        claims,
        now: "2026-01-01T01:00:00Z".parse().unwrap(),
    })
}

fn create(ordinal: i32, which: Which) -> Action {
    Action::Create { ordinal, which }
}

fn del(kind: &str, pod: &str) -> Action {
    let pod = pod.to_string();
    match kind {
        "finished" => Action::DeleteFinished { pod },
        "condemned" => Action::DeleteCondemned { pod },
        "update" => Action::DeleteForUpdate { pod },
        k => panic!("{k}"),
    }
}

/// (set, pods, expected actions, why)
type Case<'a> = (&'a StatefulSet, Vec<Arc<Pod>>, Vec<Action>, &'a str);

#[test]
fn ordinals_parse_as_upstream() {
    for (name, want) in [
        ("web-0", Some(("web", 0))),
        ("my-web-12", Some(("my-web", 12))),
        ("web-", None),
        ("web-a1", None),
        ("web", None),
    ] {
        assert_eq!(parent_and_ordinal(name), want, "{name}");
    }
}

#[test]
fn ordinal_actions_per_policy() {
    let all_claims = claims(&["data-web-0", "data-web-1", "data-web-2", "data-web-3", "data-web-4"]);
    let ordered = set(json!({}));
    let parallel = set(json!({"spec": {"podManagementPolicy": "Parallel"}}));
    let start5 = set(json!({"spec": {"ordinals": {"start": 5}, "replicas": 2}}));
    let p = |n: &str, s: &str| pod(n, s, UPD);
    // (set, pods, expected actions, why)
    let cases: Vec<Case> = vec![
        (
            &ordered,
            vec![],
            vec![create(0, Which::Update)],
            "OrderedReady creates web-0 alone",
        ),
        (
            &ordered,
            vec![p("web-0", "running")],
            vec![],
            "OrderedReady waits for web-0 to be ready before web-1",
        ),
        (
            &ordered,
            vec![p("web-0", "ready")],
            vec![create(1, Which::Update)],
            "web-0 ready: web-1 next",
        ),
        (
            &ordered,
            vec![p("web-0", "ready"), p("web-2", "ready")],
            vec![create(1, Which::Update)],
            "a gap is filled in order",
        ),
        (
            &parallel,
            vec![],
            vec![
                create(0, Which::Update),
                create(1, Which::Update),
                create(2, Which::Update),
            ],
            "Parallel creates every missing ordinal",
        ),
        (
            &parallel,
            vec![p("web-0", "running"), p("web-1", "pending")],
            vec![create(2, Which::Update)],
            "Parallel does not wait for readiness",
        ),
        (
            &ordered,
            vec![p("web-0", "failed"), p("web-1", "ready")],
            vec![del("finished", "web-0")],
            "a failed replica is deleted to be re-made, and blocks",
        ),
        (
            &ordered,
            vec![
                p("web-0", "ready"),
                p("web-1", "ready"),
                p("web-2", "ready"),
                p("web-3", "ready"),
                p("web-4", "ready"),
            ],
            vec![del("condemned", "web-4")],
            "scale down from the highest ordinal, one at a time",
        ),
        (
            &ordered,
            vec![
                p("web-0", "ready"),
                p("web-1", "ready"),
                p("web-2", "ready"),
                p("web-3", "ready"),
                p("web-4", "terminating"),
            ],
            vec![],
            "OrderedReady waits for the terminating one",
        ),
        (
            &ordered,
            vec![
                p("web-0", "ready"),
                p("web-1", "ready"),
                p("web-2", "ready"),
                p("web-3", "running"),
                p("web-4", "running"),
            ],
            vec![],
            "OrderedReady does not delete an unhealthy pod that is not the first unhealthy one",
        ),
        (
            &ordered,
            vec![
                p("web-0", "ready"),
                p("web-1", "ready"),
                p("web-2", "ready"),
                p("web-3", "ready"),
                p("web-4", "running"),
            ],
            vec![del("condemned", "web-4")],
            "the first unhealthy condemned pod may go",
        ),
        (
            &ordered,
            vec![
                p("web-0", "ready"),
                p("web-1", "ready"),
                p("web-2", "ready"),
                p("web-3", "running"),
                p("web-4", "ready"),
            ],
            vec![del("condemned", "web-4")],
            "a ready condemned pod goes (upstream checks the target only)",
        ),
        (
            &parallel,
            vec![
                p("web-0", "ready"),
                p("web-1", "ready"),
                p("web-2", "ready"),
                p("web-3", "running"),
                p("web-4", "ready"),
            ],
            vec![del("condemned", "web-4"), del("condemned", "web-3")],
            "Parallel deletes every condemned pod at once",
        ),
        (
            &start5,
            vec![],
            vec![create(5, Which::Update)],
            "ordinals.start shifts the first ordinal",
        ),
        (
            &start5,
            vec![p("web-0", "ready"), p("web-5", "ready"), p("web-6", "ready")],
            vec![del("condemned", "web-0")],
            "pods below ordinals.start are condemned",
        ),
    ];
    for (s, pods, want, why) in cases {
        assert_eq!(run(s, &pods, &all_claims).actions, want, "{why}");
    }
}

#[test]
fn partitioned_rolling_update() {
    let c = claims(&["data-web-0", "data-web-1", "data-web-2"]);
    let part = |n: i32| set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": n}}}}));
    let on_delete = set(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
    let (p0, p2) = (part(0), part(2));
    let r = |n: &str, s: &str, rev: &str| pod(n, s, rev);
    let cases: Vec<Case> = vec![
        (
            &p0,
            vec![
                r("web-0", "ready", CUR),
                r("web-1", "ready", CUR),
                r("web-2", "ready", CUR),
            ],
            vec![del("update", "web-2")],
            "the highest ordinal is updated first",
        ),
        (
            &p0,
            vec![
                r("web-0", "ready", CUR),
                r("web-1", "ready", CUR),
                r("web-2", "running", UPD),
            ],
            vec![],
            "the next waits for the updated pod to be ready",
        ),
        (
            &p0,
            vec![
                r("web-0", "ready", CUR),
                r("web-1", "ready", CUR),
                r("web-2", "ready", UPD),
            ],
            vec![del("update", "web-1")],
            "then the next lower ordinal",
        ),
        (
            &p2,
            vec![
                r("web-0", "ready", CUR),
                r("web-1", "ready", CUR),
                r("web-2", "ready", UPD),
            ],
            vec![],
            "ordinals below the partition stay at the current revision",
        ),
        (
            &on_delete,
            vec![
                r("web-0", "ready", CUR),
                r("web-1", "ready", CUR),
                r("web-2", "ready", CUR),
            ],
            vec![],
            "OnDelete never deletes for an update",
        ),
    ];
    for (s, pods, want, why) in cases {
        assert_eq!(run(s, &pods, &c).actions, want, "{why}");
    }
    // A missing pod below the partition is re-made at the current revision.
    assert_eq!(which_revision(&p2, 1), Which::Current);
    assert_eq!(which_revision(&p2, 2), Which::Update);
    assert_eq!(which_revision(&p0, 0), Which::Update);
}

#[test]
fn status_counts_and_completion() {
    let c = claims(&[]);
    let s = set(json!({}));
    let pods = vec![
        pod("web-0", "ready", CUR),
        pod("web-1", "ready", UPD),
        pod("web-2", "running", UPD),
    ];
    let p = run(&s, &pods, &c);
    assert_eq!(p.status.replicas, 3);
    assert_eq!(p.status.ready_replicas, Some(2));
    assert_eq!(p.status.available_replicas, Some(2));
    assert_eq!(p.status.current_replicas, Some(1));
    assert_eq!(p.status.updated_replicas, Some(2));

    let mut st = StatefulSetStatus {
        replicas: 3,
        ready_replicas: Some(3),
        updated_replicas: Some(3),
        current_replicas: Some(0),
        current_revision: Some(CUR.into()),
        update_revision: Some(UPD.into()),
        ..Default::default()
    };
    complete_rolling_update(&s, &mut st);
    assert_eq!(
        st.current_revision.as_deref(),
        Some(UPD),
        "all updated and ready: the update is current"
    );
    assert_eq!(st.current_replicas, Some(3));
}

#[test]
fn new_pods_carry_identity_and_claims() {
    let s = set(json!({}));
    let t = s.spec.as_ref().unwrap().template.clone();
    let p = new_pod(&s, &t, 2, UPD);
    assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
    let labels = p.metadata.labels.clone().unwrap();
    assert_eq!(labels[POD_NAME_LABEL], "web-2");
    assert_eq!(labels[POD_INDEX_LABEL], "2");
    assert_eq!(labels[REVISION_LABEL], UPD);
    let spec = p.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let v = &spec.volumes.unwrap()[0];
    assert_eq!(v.persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-2");
    let (tname, claim) = &claims_for(&s, 2)[0];
    assert_eq!(tname, "data");
    assert_eq!(claim.metadata.name.as_deref(), Some("data-web-2"));
    assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "web");
}

#[test]
fn claim_owner_refs_follow_the_retention_policy() {
    let r = |deleted: &str, scaled: &str| {
        set(json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": deleted, "whenScaled": scaled}}}))
    };
    let claim = |refs: Value| -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data-web-1", "ownerReferences": refs}})).unwrap()
    };
    let set_ref =
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "set-uid", "controller": true});
    let pod_ref = json!({"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "web-1-uid", "controller": true});
    let in_range = pod("web-1", "ready", CUR);
    let scaled_down = r("Delete", "Delete");
    let mut scaled_down = scaled_down;
    scaled_down.spec.as_mut().unwrap().replicas = Some(1);
    let (rr, rd, dr, dd) = (
        r("Retain", "Retain"),
        r("Delete", "Retain"),
        r("Retain", "Delete"),
        r("Delete", "Delete"),
    );
    // (set, claim refs, up to date?, desired owner uids, why)
    let cases: Vec<(&StatefulSet, Value, bool, Vec<&str>, &str)> = vec![
        (&rr, json!([]), true, vec![], "Retain/Retain: no refs"),
        (&rr, json!([set_ref]), false, vec![], "Retain/Retain removes our refs"),
        (
            &rd,
            json!([]),
            false,
            vec!["set-uid"],
            "whenDeleted=Delete: owned by the set",
        ),
        (&rd, json!([set_ref]), true, vec!["set-uid"], "already owned by the set"),
        (&dr, json!([]), true, vec![], "whenScaled=Delete, pod in range: no refs"),
        (
            &dd,
            json!([]),
            false,
            vec!["set-uid"],
            "Delete/Delete in range: the set owns it",
        ),
        (
            &scaled_down,
            json!([set_ref]),
            false,
            vec!["web-1-uid"],
            "Delete/Delete scaled down: the pod owns it",
        ),
        (
            &scaled_down,
            json!([pod_ref]),
            true,
            vec!["web-1-uid"],
            "already moved to the pod",
        ),
    ];
    for (s, refs, up_to_date, want, why) in cases {
        let c = claim(refs);
        let o = owners(s, &in_range);
        assert_eq!(o.up_to_date(&c), up_to_date, "{why}");
        let got: Vec<String> = o.desired_refs(&c).into_iter().map(|r| r.uid).collect();
        assert_eq!(got, want, "{why}");
    }
    // Another controller: the claim is left alone.
    let other = claim(json!([{"apiVersion": "v1", "kind": "Foo", "name": "x", "uid": "u", "controller": true}]));
    let o = owners(&dd, &in_range);
    assert!(o.unexpected_controller(&other));
    assert!(o.up_to_date(&other));
}

#[test]
fn stale_claims_hold_back_the_new_pod() {
    let s = set(
        json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}}),
    );
    let mut c = claims(&["data-web-1", "data-web-2"]);
    let stale: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "data-web-0",
        "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "old", "controller": true}]}}))
    .unwrap();
    c.insert("data-web-0".into(), Arc::new(stale));
    assert_eq!(
        run(&s, &[], &c).actions,
        vec![],
        "web-0's old claim is still being deleted"
    );
}
