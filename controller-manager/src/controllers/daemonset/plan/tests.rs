use super::*;
use serde_json::{Value, json};

const HASH: &str = "newhash";

fn node(name: &str, labels: Value, taints: Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
            .unwrap(),
    )
}

fn ds(spec: Value, strategy: Value) -> DaemonSet {
    let mut pod_spec = json!({"containers": [{"name": "c", "image": "x"}]});
    if let (Value::Object(a), Value::Object(b)) = (&mut pod_spec, spec) {
        a.extend(b);
    }
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec},
            "updateStrategy": strategy,
        }
    }))
    .unwrap()
}

fn default_ds() -> DaemonSet {
    ds(
        json!({}),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    )
}

/// A daemon pod on `node`: state "ready", "unready", "failed",
/// "succeeded"; at the new hash when `new`.
fn pod(name: &str, node: &str, state: &str, new: bool, created: &str) -> Arc<Pod> {
    let (phase, ready) = match state {
        "ready" => ("Running", "True"),
        "unready" => ("Running", "False"),
        "failed" => ("Failed", "False"),
        "succeeded" => ("Succeeded", "False"),
        s => panic!("{s}"),
    };
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                         "labels": {"app": "agent", REVISION_LABEL: if new { HASH } else { "old" }}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready,
                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .unwrap(),
    )
}

fn now() -> jiff::Timestamp {
    "2026-01-01T01:00:00Z".parse().unwrap()
}

fn by_node(pods: Vec<Arc<Pod>>) -> NodePods {
    let mut m = NodePods::new();
    for p in pods {
        m.entry(target_node(&p).unwrap()).or_default().push(p);
    }
    m
}

#[test]
fn which_nodes_run_a_daemon_pod_and_why_not() {
    let plain = default_ds();
    let selector = ds(json!({"nodeSelector": {"disk": "ssd"}}), json!({}));
    let affinity = ds(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}}),
        json!({}),
    );
    let tolerating = ds(
        json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
        json!({}),
    );
    let host_network = ds(json!({"hostNetwork": true}), json!({}));
    let pinned = ds(json!({"nodeName": "other"}), json!({}));
    let ok = Eligibility {
        should_run: true,
        should_continue_running: true,
        reason: None,
    };
    let no = |reason: NotRun, cont: bool| Eligibility {
        should_run: false,
        should_continue_running: cont,
        reason: Some(reason),
    };
    let taint = |k: &str, e: &str| json!([{"key": k, "value": "v", "effect": e}]);
    // (daemonset, node, expected, why)
    let cases: Vec<(&DaemonSet, Arc<Node>, Eligibility, &str)> = vec![
        (
            &plain,
            node("n", json!({}), json!([])),
            ok.clone(),
            "a plain node runs it",
        ),
        (
            &plain,
            node("n", json!({}), taint("dedicated", "NoSchedule")),
            no(NotRun::UntoleratedNoSchedule("dedicated".into()), true),
            "NoSchedule taint: no new pod, a running one stays",
        ),
        (
            &plain,
            node("n", json!({}), taint("dedicated", "NoExecute")),
            no(NotRun::UntoleratedNoExecute("dedicated".into()), false),
            "NoExecute taint: no pod at all",
        ),
        (
            &plain,
            node("n", json!({}), taint("dedicated", "PreferNoSchedule")),
            ok.clone(),
            "PreferNoSchedule does not keep it off",
        ),
        (
            &tolerating,
            node("n", json!({}), taint("dedicated", "NoExecute")),
            ok.clone(),
            "a tolerated taint",
        ),
        (
            &plain,
            node("n", json!({}), taint("node.kubernetes.io/unschedulable", "NoSchedule")),
            ok.clone(),
            "cordoned nodes are tolerated automatically",
        ),
        (
            &plain,
            node("n", json!({}), taint("node.kubernetes.io/not-ready", "NoExecute")),
            ok.clone(),
            "not-ready NoExecute is tolerated automatically",
        ),
        (
            &plain,
            node(
                "n",
                json!({}),
                taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
            ),
            no(
                NotRun::UntoleratedNoSchedule("node.kubernetes.io/network-unavailable".into()),
                true,
            ),
            "network-unavailable only for hostNetwork pods",
        ),
        (
            &host_network,
            node(
                "n",
                json!({}),
                taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
            ),
            ok.clone(),
            "hostNetwork pods tolerate network-unavailable",
        ),
        (
            &selector,
            node("n", json!({"disk": "ssd"}), json!([])),
            ok.clone(),
            "nodeSelector matches",
        ),
        (
            &selector,
            node("n", json!({"disk": "hdd"}), json!([])),
            no(NotRun::NodeAffinity, false),
            "nodeSelector does not match",
        ),
        (
            &affinity,
            node("n", json!({"zone": "b"}), json!([])),
            ok.clone(),
            "required affinity matches",
        ),
        (
            &affinity,
            node("n", json!({}), json!([])),
            no(NotRun::NodeAffinity, false),
            "required affinity: label missing",
        ),
        (
            &pinned,
            node("n", json!({}), json!([])),
            no(NotRun::NodeName, false),
            "nodeName names another node",
        ),
    ];
    for (d, n, want, why) in cases {
        assert_eq!(eligibility(&n, &daemon_pod_spec(d)), want, "{why}");
    }
}

#[test]
fn daemon_tolerations_are_added_once() {
    let mut spec = PodSpec {
        tolerations: Some(vec![Toleration {
            key: Some("node.kubernetes.io/not-ready".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            ..Default::default()
        }]),
        ..Default::default()
    };
    add_daemon_tolerations(&mut spec);
    add_daemon_tolerations(&mut spec);
    let t = spec.tolerations.unwrap();
    assert_eq!(t.len(), 6);
    assert_eq!(t[0].toleration_seconds, None, "not-ready is tolerated forever");
}

#[test]
fn pods_are_pinned_by_affinity_and_found_by_it() {
    let a = pin_to_node(None, "n1");
    let p: Pod = serde_json::from_value(json!({"spec": {"containers": [], "affinity": a}})).unwrap();
    assert_eq!(target_node(&p).as_deref(), Some("n1"));
    // An existing required affinity is replaced, preferred terms kept.
    let existing: Affinity = serde_json::from_value(json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}}))
    .unwrap();
    let a = pin_to_node(Some(existing), "n2");
    let na = a.node_affinity.unwrap();
    let terms = na
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 1);
    assert_eq!(
        terms[0].match_fields.as_ref().unwrap()[0].values.as_ref().unwrap()[0],
        "n2"
    );
    assert!(na.preferred_during_scheduling_ignored_during_execution.is_some());
}

#[test]
fn manage_creates_deletes_and_replaces_failed() {
    let d = default_ds();
    let nodes = vec![
        node("n1", json!({}), json!([])),
        node("n2", json!({}), json!([])),
        node("tainted", json!({}), json!([{"key": "k", "effect": "NoExecute"}])),
    ];
    let t0 = "2026-01-01T00:00:00Z";
    let t1 = "2026-01-01T00:00:01Z";
    // (pods, expected, why)
    let cases: Vec<(Vec<Arc<Pod>>, Manage, &str)> = vec![
        (
            vec![],
            Manage {
                create_on: vec!["n1".into(), "n2".into()],
                ..Default::default()
            },
            "one pod per eligible node",
        ),
        (
            vec![
                pod("a", "n1", "ready", true, t0),
                pod("b", "n2", "ready", true, t0),
                pod("c", "tainted", "ready", true, t0),
            ],
            Manage {
                delete: vec!["c".into()],
                ..Default::default()
            },
            "a pod on a node it may no longer run on is deleted",
        ),
        (
            vec![
                pod("a", "n1", "ready", true, t0),
                pod("a2", "n1", "ready", true, t1),
                pod("b", "n2", "ready", true, t0),
            ],
            Manage {
                delete: vec!["a2".into()],
                ..Default::default()
            },
            "excess pods: all but the oldest go",
        ),
        (
            vec![
                pod("a", "n1", "failed", true, t0),
                pod("b", "n2", "succeeded", true, t0),
            ],
            Manage {
                delete: vec!["b".into()],
                failed: vec![("n1".into(), "a".into())],
                succeeded: vec![("n2".into(), "b".into())],
                ..Default::default()
            },
            "failed pods go through back-off, succeeded ones are deleted",
        ),
        (
            vec![pod("a", "gone", "ready", true, t0)],
            Manage {
                create_on: vec!["n1".into(), "n2".into()],
                ..Default::default()
            },
            "a scheduled pod on a deleted node is left to pod GC",
        ),
    ];
    for (pods, want, why) in cases {
        assert_eq!(manage(&nodes, &by_node(pods), &d, HASH, now()), want, "{why}");
    }
}

/// (daemonset, pods, expected, why)
type RollingCase<'a> = (&'a DaemonSet, Vec<Arc<Pod>>, Rolling, &'a str);

#[test]
fn rolling_update_choice_of_pods() {
    let nodes: Vec<Arc<Node>> = (1..=4).map(|i| node(&format!("n{i}"), json!({}), json!([]))).collect();
    let t0 = "2026-01-01T00:00:00Z";
    let unavailable2 = ds(
        json!({}),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}),
    );
    let percent = ds(
        json!({}),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}}),
    );
    let surge = ds(
        json!({}),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
    );
    let old = |n: usize, s: &str| pod(&format!("old{n}"), &format!("n{n}"), s, false, t0);
    let new = |n: usize, s: &str| pod(&format!("new{n}"), &format!("n{n}"), s, true, t0);
    let d = default_ds();
    // (daemonset, pods, expected, why)
    let cases: Vec<RollingCase> = vec![
        (
            &d,
            vec![old(1, "ready"), old(2, "ready"), old(3, "ready"), old(4, "ready")],
            Rolling {
                delete: vec!["old1".into()],
                ..Default::default()
            },
            "maxUnavailable 1: one old pod at a time",
        ),
        (
            &d,
            vec![new(1, "unready"), old(2, "ready"), old(3, "ready"), old(4, "ready")],
            Rolling::default(),
            "an unavailable new pod uses up maxUnavailable",
        ),
        (
            &d,
            vec![new(1, "ready"), old(2, "unready"), old(3, "ready"), old(4, "ready")],
            Rolling {
                delete: vec!["old2".into()],
                ..Default::default()
            },
            "unavailable old pods are replaced regardless",
        ),
        (
            &unavailable2,
            vec![old(1, "ready"), old(2, "ready"), old(3, "ready"), old(4, "ready")],
            Rolling {
                delete: vec!["old1".into(), "old2".into()],
                ..Default::default()
            },
            "maxUnavailable 2",
        ),
        (
            &percent,
            vec![old(1, "ready"), old(2, "ready"), old(3, "ready"), old(4, "ready")],
            Rolling {
                delete: vec!["old1".into()],
                ..Default::default()
            },
            "25% of 4 rounds up to 1",
        ),
        (
            &d,
            vec![old(1, "ready"), old(2, "ready"), old(3, "ready")],
            Rolling {
                delete: vec![],
                ..Default::default()
            },
            "a node still without a pod counts as unavailable",
        ),
        (
            &surge,
            vec![old(1, "ready"), old(2, "ready"), old(3, "ready"), old(4, "ready")],
            Rolling {
                create_on: vec!["n1".into()],
                ..Default::default()
            },
            "maxSurge 1: a new pod beside an old one",
        ),
        (
            &surge,
            vec![
                new(1, "ready"),
                old(1, "ready"),
                old(2, "ready"),
                old(3, "ready"),
                old(4, "ready"),
            ],
            Rolling {
                delete: vec!["old1".into()],
                create_on: vec!["n2".into()],
            },
            "the old pod goes once the new one is available; the next node surges",
        ),
        (
            &surge,
            vec![
                new(1, "unready"),
                old(1, "ready"),
                old(2, "ready"),
                old(3, "ready"),
                old(4, "ready"),
            ],
            Rolling::default(),
            "surge used up while the new pod is unavailable",
        ),
    ];
    for (d, pods, want, why) in cases {
        assert_eq!(
            rolling_update(&nodes, &by_node(pods), d, HASH, now()).unwrap(),
            want,
            "{why}"
        );
    }
}

#[test]
fn status_counts() {
    let nodes = vec![
        node("n1", json!({}), json!([])),
        node("n2", json!({}), json!([])),
        node("n3", json!({}), json!([])),
        node("tainted", json!({}), json!([{"key": "k", "effect": "NoExecute"}])),
    ];
    let t0 = "2026-01-01T00:00:00Z";
    let pods = vec![
        pod("a", "n1", "ready", true, t0),
        pod("b", "n2", "unready", false, t0),
        pod("c", "tainted", "ready", true, t0),
    ];
    let c = counts(&nodes, &by_node(pods), &default_ds(), HASH, now());
    assert_eq!(
        c,
        Counts {
            desired: 3,
            current: 2,
            misscheduled: 1,
            ready: 1,
            updated: 1,
            available: 1,
            unavailable: 2,
        }
    );
}

#[test]
fn surge_and_unavailable_defaults() {
    let none = ds(
        json!({}),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}),
    );
    assert_eq!(
        surge_and_unavailable(&none, 3),
        Ok((0, 1)),
        "both zero: one unavailable"
    );
    let pct = ds(
        json!({}),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 0}}),
    );
    assert_eq!(surge_and_unavailable(&pct, 11), Ok((2, 0)), "percentages round up");
    assert!(allows_surge(&pct));
    assert!(!allows_surge(&default_ds()));
}
