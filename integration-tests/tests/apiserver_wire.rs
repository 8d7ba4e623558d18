//! What clients see on the wire, field for field and event for event, where
//! client libraries trip over differences from upstream: the fields
//! upstream always serializes, and the watch protocol's details
//! (sendInitialEvents, resourceVersion "0", selectors, bookmarks).

use std::time::Duration;

use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::http::{self, get, post_json, request};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn svc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": "wire"}},
           "spec": {"ports": [{"port": 80}]}})
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}})
}

/// Every way an object leaves the apiserver carries the fields upstream's
/// serialization always writes: create, get, list, watch, patch and update
/// responses, and tables' embedded objects.
#[tokio::test(flavor = "multi_thread")]
async fn objects_carry_the_fields_upstream_always_writes() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let svcs = "/api/v1/namespaces/default/services";

    let created = post_json(&client, svcs, &svc("web")).await?;
    assert_eq!(created.code, 201, "{}", created.body);
    let check_svc = |what: &str, o: &Value| {
        assert_eq!(o["status"], json!({"loadBalancer": {}}), "{what}: {o}");
        assert_eq!(o["spec"]["ports"][0]["targetPort"], 80, "{what}: defaulted to the port");
    };
    check_svc("create", &created.body);
    check_svc("get", &get(&client, &format!("{svcs}/web")).await?.body);
    let list = get(&client, &format!("{svcs}?labelSelector=app%3Dwire")).await?.body;
    check_svc("list", &list["items"][0]);
    let list_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let patched = request(
        &client,
        "PATCH",
        &format!("{svcs}/web"),
        Some("application/merge-patch+json"),
        br#"{"metadata":{"annotations":{"a":"b"}}}"#.to_vec(),
    )
    .await?;
    check_svc("patch", &patched.body);
    let mut replaced = patched.body.clone();
    replaced["metadata"]["annotations"]["a"] = json!("c");
    replaced.as_object_mut().map(|o| o.remove("status"));
    let put = request(
        &client,
        "PUT",
        &format!("{svcs}/web"),
        Some("application/json"),
        serde_json::to_vec(&replaced)?,
    )
    .await?;
    assert_eq!(put.code, 200, "{}", put.body);
    check_svc("update", &put.body);
    // A watch's events, initial and live.
    let mut w = http::watch(
        &client,
        &format!("{svcs}?watch=1&resourceVersion={list_rv}&timeoutSeconds=10"),
    )
    .await?;
    let ev = w.next(WAIT).await?.expect("an event");
    assert_eq!(ev["type"], "MODIFIED");
    check_svc("watch", &ev["object"]);
    // A table with the objects embedded.
    let table = request_with_accept(
        &client,
        &format!("{svcs}?labelSelector=app%3Dwire&includeObject=Object"),
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .await?;
    check_svc("table", &table["rows"][0]["object"]);

    // A Node: its spec (here with the not-ready taint admission adds) and
    // its status's structs.
    let node = post_json(
        &client,
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "wire-node"}}),
    )
    .await?;
    assert_eq!(node.code, 201, "{}", node.body);
    let node = get(&client, "/api/v1/nodes/wire-node").await?.body;
    assert!(node["spec"].is_object(), "{node}");
    assert_eq!(
        node["status"]["daemonEndpoints"],
        json!({"kubeletEndpoint": {"Port": 0}})
    );
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "");

    // A Pod: every container's resources, the status.
    let pod = post_json(
        &client,
        "/api/v1/namespaces/default/pods",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "wire-pod"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await?;
    assert_eq!(pod.code, 201, "{}", pod.body);
    assert_eq!(pod.body["spec"]["containers"][0]["resources"], json!({}));
    assert_eq!(pod.body["status"]["phase"], "Pending");

    // A RoleBinding's roleRef and an Event's source are structs too.
    let event = post_json(
        &client,
        "/api/v1/namespaces/default/events",
        &json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "wire-ev"},
                "involvedObject": {"kind": "Pod", "name": "wire-pod", "namespace": "default"},
                "reason": "Test", "message": "m", "type": "Normal"}),
    )
    .await?;
    assert_eq!(event.code, 201, "{}", event.body);
    assert_eq!(event.body["source"], json!({}));
    assert_eq!(event.body["reportingComponent"], "");
    Ok(())
}

async fn request_with_accept(client: &kube::Client, path: &str, accept: &str) -> anyhow::Result<Value> {
    let req = ::http::Request::builder()
        .method("GET")
        .uri(path)
        .header("Accept", accept)
        .body(Vec::new())?;
    let r = http::send(client, req).await?;
    anyhow::ensure!(r.code == 200, "{}: {}", r.code, r.body);
    Ok(r.body)
}

/// The Python client, which found these: `svc.status.load_balancer` and
/// `node.spec.taints` on objects nobody filled.
#[tokio::test(flavor = "multi_thread")]
async fn python_client_reads_structs_upstream_always_writes() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let code = r#"
import sys
from kubernetes import client, config
config.load_kube_config()
core = client.CoreV1Api()
svc = core.create_namespaced_service("default", client.V1Service(
    metadata=client.V1ObjectMeta(name="py-svc"),
    spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)])))
assert svc.status is not None and svc.status.load_balancer is not None, svc.status
assert core.read_namespaced_service("py-svc", "default").status.load_balancer is not None
core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="py-node")))
node = core.read_node("py-node")
assert node.spec is not None and node.status.daemon_endpoints.kubelet_endpoint.port == 0, node
assert [n for n in core.list_node().items if n.metadata.name == "py-node"][0].spec is not None
print("ok")
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", code])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir())
        .output()
        .await?;
    assert!(
        out.status.success(),
        "python client:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// sendInitialEvents and resourceVersionMatch as upstream validates them
/// with the WatchList feature on: 422 Invalid ListOptions, never 400.
#[tokio::test(flavor = "multi_thread")]
async fn watch_options_are_validated_as_upstream() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cases = [
        // (query, field of the cause)
        (
            "watch=1&sendInitialEvents=true&allowWatchBookmarks=true",
            "resourceVersionMatch",
        ),
        ("watch=1&sendInitialEvents=true", "resourceVersionMatch"),
        (
            "watch=1&resourceVersion=0&resourceVersionMatch=NotOlderThan",
            "resourceVersionMatch",
        ),
        (
            "watch=1&sendInitialEvents=true&resourceVersionMatch=Exact&resourceVersion=1",
            "resourceVersionMatch",
        ),
        ("sendInitialEvents=true", "sendInitialEvents"),
        ("resourceVersionMatch=Exact", "resourceVersionMatch"),
    ];
    for (query, field) in cases {
        let r = get(&client, &format!("{cms}?{query}")).await?;
        assert_eq!(r.code, 422, "{query}: {}", r.body);
        assert_eq!(r.body["reason"], "Invalid", "{query}");
        assert_eq!(r.body["details"]["kind"], "ListOptions", "{query}");
        assert_eq!(r.body["details"]["group"], "meta.k8s.io", "{query}");
        assert_eq!(r.body["details"]["causes"][0]["field"], field, "{query}: {}", r.body);
    }
    // The valid forms are served.
    for query in [
        "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
        "watch=1&sendInitialEvents=false&resourceVersionMatch=NotOlderThan&resourceVersion=0&timeoutSeconds=1",
        "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
    ] {
        let r = get(&client, &format!("{cms}?{query}")).await?;
        assert_eq!(r.code, 200, "{query}: {}", r.body);
    }
    Ok(())
}

/// The watch protocol's details: initial events and their end bookmark,
/// starting "now" from resourceVersion 0, leaving a selector, and
/// bookmarks before a watch times out.
#[tokio::test(flavor = "multi_thread")]
async fn watch_initial_events_selectors_and_bookmarks() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let cms = "/api/v1/namespaces/default/configmaps";
    for name in ["w1", "w2"] {
        let r = post_json(&client, cms, &cm(name, json!({"team": "a"}))).await?;
        assert_eq!(r.code, 201, "{}", r.body);
    }
    let listed = get(&client, &format!("{cms}?labelSelector=team%3Da")).await?.body;
    let list_rv: i64 = listed["metadata"]["resourceVersion"].as_str().unwrap_or("0").parse()?;

    // sendInitialEvents=true: every object ADDED, then a bookmark marking
    // the end of the initial events, at a revision no older than the list.
    let w = http::watch(
        &client,
        &format!(
            "{cms}?watch=1&labelSelector=team%3Da&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2"
        ),
    )
    .await?;
    let events = w.rest(WAIT).await?;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert_eq!(&types[..3], ["ADDED", "ADDED", "BOOKMARK"], "{events:?}");
    let end = &events[2]["object"]["metadata"];
    assert_eq!(end["annotations"]["k8s.io/initial-events-end"], "true", "{events:?}");
    let end_rv: i64 = end["resourceVersion"].as_str().unwrap_or("0").parse()?;
    assert!(end_rv >= list_rv, "{end_rv} < {list_rv}");
    // Without bookmarks there is no end marker (and no 400).
    let w = http::watch(
        &client,
        &format!(
            "{cms}?watch=1&labelSelector=team%3Da&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
        ),
    )
    .await?;
    let events = w.rest(WAIT).await?;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["type"] == "ADDED"), "{events:?}");

    // sendInitialEvents=false from "0": nothing old, only what happens next.
    let mut w = http::watch(
        &client,
        &format!(
            "{cms}?watch=1&sendInitialEvents=false&resourceVersionMatch=NotOlderThan&resourceVersion=0&timeoutSeconds=10"
        ),
    )
    .await?;
    let r = post_json(&client, cms, &cm("w3", json!({"team": "b"}))).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let ev = w.next(WAIT).await?.expect("an event");
    assert_eq!(
        (ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("w3")),
        "the first event is the new object, not history: {ev}"
    );

    // An object that stops matching the selector: DELETED with the state it
    // was selected in, at the update's resourceVersion.
    let mut w = http::watch(
        &client,
        &format!("{cms}?watch=1&labelSelector=team%3Da&resourceVersion={list_rv}&timeoutSeconds=10"),
    )
    .await?;
    let moved = request(
        &client,
        "PATCH",
        &format!("{cms}/w1"),
        Some("application/merge-patch+json"),
        br#"{"metadata":{"labels":{"team":"b"}}}"#.to_vec(),
    )
    .await?;
    assert_eq!(moved.code, 200, "{}", moved.body);
    let ev = w.next(WAIT).await?.expect("an event");
    assert_eq!(ev["type"], "DELETED", "{ev}");
    assert_eq!(ev["object"]["metadata"]["name"], "w1");
    assert_eq!(
        ev["object"]["metadata"]["labels"]["team"], "a",
        "the previous state: {ev}"
    );
    assert_eq!(
        ev["object"]["metadata"]["resourceVersion"], moved.body["metadata"]["resourceVersion"],
        "the event's resourceVersion"
    );

    // Bookmarks: one comes before the watch times out; none unless asked.
    let w = http::watch(
        &client,
        &format!("{cms}?watch=1&resourceVersion={list_rv}&allowWatchBookmarks=true&timeoutSeconds=3"),
    )
    .await?;
    let events = w.rest(WAIT).await?;
    let bookmark = events
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark before the timeout");
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert!(bookmark["object"]["metadata"]["annotations"].is_null(), "{bookmark}");
    let w = http::watch(
        &client,
        &format!("{cms}?watch=1&resourceVersion={list_rv}&timeoutSeconds=3"),
    )
    .await?;
    let events = w.rest(WAIT).await?;
    assert!(events.iter().all(|e| e["type"] != "BOOKMARK"), "{events:?}");
    Ok(())
}

/// `apiregistration.k8s.io/v1` APIServices: every built-in group version has
/// its `Local` one, available, as upstream's autoregister keeps them; users'
/// APIServices (as metrics-server's manifests create) are stored and
/// printed as upstream's table does.
#[tokio::test(flavor = "multi_thread")]
async fn api_services_are_served_and_the_local_ones_available() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let base = "/apis/apiregistration.k8s.io/v1/apiservices";
    let deadline = tokio::time::Instant::now() + WAIT;
    let apps = loop {
        let r = get(&client, &format!("{base}/v1.apps")).await?;
        let available = r.body["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Available" && c["status"] == "True"));
        if available {
            break r.body;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "v1.apps never became available: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(apps["spec"]["group"], "apps");
    assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800);
    assert_eq!(apps["status"]["conditions"][0]["reason"], "Local");
    assert!(get(&client, &format!("{base}/v1.")).await?.body["spec"]["service"].is_null());

    let mine = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                 "versionPriority": 100, "insecureSkipTLSVerify": true,
                 "service": {"name": "metrics-server", "namespace": "kube-system"}}});
    let r = post_json(&client, base, &mine).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let again = post_json(&client, base, &mine).await?;
    assert_eq!(again.code, 409, "{}", again.body);
    let table = request_with_accept(
        &client,
        &format!("{base}?fieldSelector=metadata.name%3Dv1beta1.metrics.k8s.io"),
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .await?;
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["Name", "Service", "Available", "Age"]);
    assert_eq!(table["rows"][0]["cells"][1], "kube-system/metrics-server");
    assert_eq!(table["rows"][0]["cells"][2], "Unknown");
    Ok(())
}
