//! The endpoint controllers (Endpoints, EndpointSlices, mirroring), node
//! lifecycle with taint-based eviction, and node IPAM, against a real
//! apiserver, scheduler and controller-manager. The tests play the
//! kubelet: they make Nodes, renew the nodes' Leases and mark pods ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::components::{Component, ControlPlane, create_node, set_pod_ready};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Polls `f` until it yields a value (bounded).
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

fn resources() -> Value {
    json!({"cpu": "4", "memory": "8Gi", "pods": "110"})
}

/// A pod bound to `node` (no scheduling) with a named container port.
async fn create_pod(client: &kube::Client, ns: &str, name: &str, node: &str, extra: Value) -> anyhow::Result<()> {
    let mut spec = json!({
        "nodeName": node,
        "containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}],
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
        "spec": spec,
    }))?;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await?;
    Ok(())
}

/// Plays the kubelet: Running, Ready or not, with its own IP.
async fn run_pod(client: &kube::Client, ns: &str, name: &str, ready: bool, ip: &str) -> anyhow::Result<()> {
    set_pod_ready(client, ns, name, ready).await?;
    let patch = json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}]}});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// (ready IPs, not-ready IPs, ports) of an Endpoints object, sorted.
fn endpoints_view(ep: &Endpoints) -> (Vec<String>, Vec<String>, Vec<(String, i32)>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut ports = Vec::new();
    for s in ep.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        ports.extend(
            s.ports
                .iter()
                .flatten()
                .map(|p| (p.name.clone().unwrap_or_default(), p.port)),
        );
    }
    ready.sort();
    not_ready.sort();
    ports.sort();
    ports.dedup();
    (ready, not_ready, ports)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn slices_of(client: &kube::Client, ns: &str, service: &str) -> Vec<EndpointSlice> {
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// (ip, ready, serving, terminating) of every endpoint of the slices.
fn slice_view(slices: &[EndpointSlice]) -> Vec<(String, bool, bool, bool)> {
    let mut v: Vec<_> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            (
                e.addresses.join(","),
                c.ready.unwrap_or(false),
                c.serving.unwrap_or(false),
                c.terminating.unwrap_or(false),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoints_and_slices_that_follow_their_pods() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    create_node(
        &client,
        "n1",
        json!({"topology.kubernetes.io/zone": "zone-a"}),
        json!([]),
        resources(),
    )
    .await?;
    create_namespace(&client, "ep").await?;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ep", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
            {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9091}]},
    }))?;
    let services: Api<Service> = Api::namespaced(client.clone(), "ep");
    services.create(&PostParams::default(), &svc).await?;
    create_pod(&client, "ep", "p1", "n1", json!({})).await?;
    create_pod(&client, "ep", "p2", "n1", json!({})).await?;
    run_pod(&client, "ep", "p1", true, "10.244.1.1").await?;
    run_pod(&client, "ep", "p2", false, "10.244.1.2").await?;

    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "ep");
    let want = (
        strings(&["10.244.1.1"]),
        strings(&["10.244.1.2"]),
        vec![("http".to_string(), 8080), ("metrics".to_string(), 9091)],
    );
    eventually(
        "Endpoints with p1 ready and p2 not ready",
        Duration::from_secs(20),
        || async { eps.get_opt("web").await.ok().flatten().map(|e| endpoints_view(&e)) == Some(want.clone()) },
    )
    .await
    .with_context(|| cp.logs())?;
    let ep = eps.get("web").await?;
    let labels = ep.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("a"),
        "service labels copied"
    );
    assert!(!labels.contains_key("service.kubernetes.io/headless"));
    let addr = &ep.subsets.as_ref().unwrap()[0].addresses.as_ref().unwrap()[0];
    assert_eq!(addr.node_name.as_deref(), Some("n1"));
    let target = addr.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("p1"))
    );

    // A new Service's first Endpoints carries its creation as the trigger
    // time; a headless one is labelled so.
    let lonely: Service = serde_json::from_value(json!({
        "metadata": {"name": "lonely", "namespace": "ep"},
        "spec": {"clusterIP": "None", "selector": {"app": "nothing"}, "ports": [{"port": 80}]},
    }))?;
    let lonely = services.create(&PostParams::default(), &lonely).await?;
    let created = lonely.metadata.creation_timestamp.clone().unwrap().0;
    let lonely_ep = poll("Endpoints for lonely", Duration::from_secs(20), || async {
        eps.get_opt("lonely").await.ok().flatten()
    })
    .await?;
    let annotations = lonely_ep.metadata.annotations.clone().unwrap_or_default();
    let trigger: jiff::Timestamp = annotations
        .get("endpoints.kubernetes.io/last-change-trigger-time")
        .with_context(|| format!("{annotations:?}"))?
        .parse()?;
    assert_eq!(trigger, created);
    assert_eq!(
        lonely_ep
            .metadata
            .labels
            .unwrap_or_default()
            .get("service.kubernetes.io/headless")
            .map(String::as_str),
        Some("")
    );
    assert!(lonely_ep.subsets.unwrap_or_default().is_empty());

    // The EndpointSlice: one, with conditions, resolved ports and the zone.
    eventually("an EndpointSlice with both pods", Duration::from_secs(20), || async {
        slice_view(&slices_of(&client, "ep", "web").await)
            == vec![
                ("10.244.1.1".to_string(), true, true, false),
                ("10.244.1.2".to_string(), false, false, false),
            ]
    })
    .await
    .with_context(|| cp.logs())?;
    let slices = slices_of(&client, "ep", "web").await;
    assert_eq!(slices.len(), 1);
    let s = &slices[0];
    assert_eq!(s.address_type, "IPv4");
    assert!(s.metadata.name.as_deref().unwrap_or("").starts_with("web-"));
    let l = s.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        l.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Service", "web"));
    let mut ports: Vec<(String, i32)> = s
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0)))
        .collect();
    ports.sort();
    assert_eq!(ports, vec![("http".to_string(), 8080), ("metrics".to_string(), 9091)]);
    assert!(
        s.endpoints
            .iter()
            .all(|e| e.zone.as_deref() == Some("zone-a") && e.node_name.as_deref() == Some("n1"))
    );

    // p1 turns unready: both listed as not ready.
    run_pod(&client, "ep", "p1", false, "10.244.1.1").await?;
    let want = (vec![], strings(&["10.244.1.1", "10.244.1.2"]), want.2.clone());
    eventually(
        "Endpoints with both pods not ready",
        Duration::from_secs(20),
        || async { eps.get_opt("web").await.ok().flatten().map(|e| endpoints_view(&e)) == Some(want.clone()) },
    )
    .await
    .with_context(|| cp.logs())?;
    eventually("the slice shows p1 not ready", Duration::from_secs(20), || async {
        slice_view(&slices_of(&client, "ep", "web").await).iter().all(|e| !e.1)
    })
    .await?;

    // p2 is deleted (it stays terminating: no kubelet confirms), p1 ready again.
    Api::<Pod>::namespaced(client.clone(), "ep")
        .delete("p2", &DeleteParams::default())
        .await?;
    run_pod(&client, "ep", "p1", true, "10.244.1.1").await?;
    let want = (strings(&["10.244.1.1"]), vec![], want.2.clone());
    eventually(
        "Endpoints without the terminating p2",
        Duration::from_secs(20),
        || async { eps.get_opt("web").await.ok().flatten().map(|e| endpoints_view(&e)) == Some(want.clone()) },
    )
    .await
    .with_context(|| cp.logs())?;
    eventually("the slice keeps p2 as terminating", Duration::from_secs(20), || async {
        slice_view(&slices_of(&client, "ep", "web").await)
            == vec![
                ("10.244.1.1".to_string(), true, true, false),
                ("10.244.1.2".to_string(), false, false, true),
            ]
    })
    .await
    .with_context(|| cp.logs())?;

    // A selector-less Service with hand-made Endpoints is mirrored.
    let ext: Service = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "ep"},
        "spec": {"ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
    }))?;
    services.create(&PostParams::default(), &ext).await?;
    let custom: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "ep", "labels": {"origin": "manual"}},
        "subsets": [{"addresses": [{"ip": "192.168.7.7"}], "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}],
    }))?;
    eps.create(&PostParams::default(), &custom).await?;
    eventually("a mirrored EndpointSlice for db", Duration::from_secs(20), || async {
        let s = slices_of(&client, "ep", "db").await;
        s.len() == 1
            && s[0]
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
                .map(String::as_str)
                == Some("endpointslicemirroring-controller.k8s.io")
            && slice_view(&s) == vec![("192.168.7.7".to_string(), true, false, false)]
    })
    .await
    .with_context(|| cp.logs())?;
    let mirrored = &slices_of(&client, "ep", "db").await[0];
    assert_eq!(mirrored.metadata.labels.as_ref().unwrap()["origin"], "manual");
    assert_eq!(
        mirrored.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Endpoints"
    );
    // The controller left the hand-made Endpoints alone.
    assert_eq!(
        endpoints_view(&eps.get("db").await?).0,
        strings(&["192.168.7.7"]),
        "selector-less Endpoints untouched"
    );
    // Opting out removes the mirror.
    let patch = json!({"metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}});
    eps.patch("db", &PatchParams::default(), &Patch::Merge(patch)).await?;
    eventually("the mirror removed on skip-mirror", Duration::from_secs(20), || async {
        slices_of(&client, "ep", "db").await.is_empty()
    })
    .await?;

    // The Service goes: so does its Endpoints object.
    services.delete("web", &DeleteParams::default()).await?;
    eventually(
        "Endpoints deleted with the Service",
        Duration::from_secs(20),
        || async { matches!(eps.get_opt("web").await, Ok(None)) },
    )
    .await
    .with_context(|| cp.logs())?;
    Ok(())
}

/// Renews `node`'s Lease in kube-node-lease (creating it), as a kubelet.
async fn renew_lease(client: &kube::Client, node: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(jiff::Timestamp::now());
    match leases.get_opt(node).await? {
        None => {
            let l: Lease = serde_json::from_value(json!({
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now},
            }))?;
            leases.create(&PostParams::default(), &l).await?;
        }
        Some(_) => {
            let patch = json!({"spec": {"renewTime": now}});
            leases
                .patch(node, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    Ok(())
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

/// Gone, or deleted and waiting for a kubelet.
async fn evicted(pods: &Api<Pod>, name: &str) -> bool {
    match pods.get_opt(name).await {
        Ok(None) => true,
        Ok(Some(p)) => p.metadata.deletion_timestamp.is_some(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_and_its_pods_evicted_by_their_tolerations() -> anyhow::Result<()> {
    // Without DefaultTolerationSeconds, so that a pod without tolerations
    // really has none (the plugin would give it 300 s), and without
    // ServiceAccount as every test apiserver (pods made right after their
    // namespace would race the serviceaccount controller).
    let api = ApiServers::start_with(
        1,
        &["--disable-admission-plugins=DefaultTolerationSeconds,ServiceAccount"],
    )
    .await?;
    let scheduler = Component::scheduler(&api, "kube-scheduler", &["--leader-elect=false"])?;
    let controller_manager = Component::controller_manager(
        &api,
        "kube-controller-manager",
        &[
            "--leader-elect=false",
            "--node-monitor-grace-period=4s",
            "--node-monitor-period=1s",
        ],
    )?;
    scheduler.wait_ready().await?;
    controller_manager.wait_ready().await?;
    let client = api.client().await?;
    let cp = ControlPlane {
        api,
        scheduler,
        controller_manager,
        client: client.clone(),
    };
    for n in ["alive", "silent"] {
        create_node(&client, n, json!({}), json!([]), resources()).await?;
        renew_lease(&client, n).await?;
    }
    // The kubelets: "alive" renews all along, "silent" until told to stop.
    let silent_renews = Arc::new(AtomicBool::new(true));
    let kubelets = {
        let (client, silent_renews) = (client.clone(), silent_renews.clone());
        tokio::spawn(async move {
            loop {
                let _ = renew_lease(&client, "alive").await;
                if silent_renews.load(Ordering::SeqCst) {
                    let _ = renew_lease(&client, "silent").await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    create_namespace(&client, "evict").await?;
    let unreachable = |secs: Option<i64>| {
        let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
        if let Some(s) = secs {
            t["tolerationSeconds"] = json!(s);
        }
        json!({"tolerations": [t]})
    };
    create_pod(&client, "evict", "intolerant", "silent", json!({})).await?;
    create_pod(&client, "evict", "five-seconds", "silent", unreachable(Some(5))).await?;
    create_pod(&client, "evict", "forever", "silent", unreachable(None)).await?;
    create_pod(&client, "evict", "elsewhere", "alive", json!({})).await?;
    for (i, p) in ["intolerant", "five-seconds", "forever", "elsewhere"]
        .iter()
        .enumerate()
    {
        run_pod(&client, "evict", p, true, &format!("10.244.2.{}", i + 1)).await?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "evict");

    // Healthy while the lease is renewed (past the grace period).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let n = nodes.get("silent").await?;
    assert!(
        !has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute"),
        "renewing node tainted"
    );
    assert!(!evicted(&pods, "intolerant").await);

    // The kubelet stops: Ready Unknown, then the unreachable taints.
    silent_renews.store(false, Ordering::SeqCst);
    eventually("silent node Ready=Unknown", Duration::from_secs(20), || async {
        nodes.get("silent").await.ok().is_some_and(|n| {
            n.status.and_then(|s| s.conditions).unwrap_or_default().iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == "Unknown"
                    && c.reason.as_deref() == Some("NodeStatusUnknown")
                    && c.message.as_deref() == Some("Kubelet stopped posting node status.")
            })
        })
    })
    .await
    .with_context(|| cp.logs())?;
    let tainted_at = poll(
        "unreachable NoExecute and NoSchedule taints",
        Duration::from_secs(20),
        || async {
            let n = nodes.get("silent").await.ok()?;
            (has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
                && has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule"))
            .then(Instant::now)
        },
    )
    .await
    .with_context(|| cp.logs())?;
    let alive = nodes.get("alive").await?;
    assert!(!has_taint(&alive, "node.kubernetes.io/unreachable", "NoExecute"));
    assert!(!evicted(&pods, "elsewhere").await, "pods on the healthy node stay");

    // The pods on it are marked not ready.
    eventually("pods on the silent node not ready", Duration::from_secs(10), || async {
        pods.get("forever").await.ok().is_some_and(|p| {
            p.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
        })
    })
    .await?;

    // Evictions by toleration: at once, after 5 s, never.
    eventually("the intolerant pod evicted", Duration::from_secs(10), || async {
        evicted(&pods, "intolerant").await
    })
    .await
    .with_context(|| cp.logs())?;
    if tainted_at.elapsed() < Duration::from_secs(3) {
        assert!(
            !evicted(&pods, "five-seconds").await,
            "tolerationSeconds 5 evicted too early"
        );
    }
    eventually("the five-seconds pod evicted", Duration::from_secs(15), || async {
        evicted(&pods, "five-seconds").await
    })
    .await
    .with_context(|| cp.logs())?;
    assert!(
        tainted_at.elapsed() >= Duration::from_secs(4),
        "evicted {:?} after the taint",
        tainted_at.elapsed()
    );
    let p = pods.get_opt("five-seconds").await?;
    if let Some(p) = p {
        let conds = p.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.reason.as_deref() == Some("DeletionByTaintManager")),
            "{conds:?}"
        );
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "evict");
    eventually("TaintManagerEviction events", Duration::from_secs(10), || async {
        events.list(&ListParams::default()).await.ok().is_some_and(|l| {
            l.items.iter().any(|e| {
                e.reason.as_deref() == Some("TaintManagerEviction")
                    && e.message.as_deref() == Some("Marking for deletion Pod evict/intolerant")
            })
        })
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!evicted(&pods, "forever").await, "a pod tolerating forever stays");
    assert!(!evicted(&pods, "elsewhere").await);

    // The kubelet comes back: taints go.
    silent_renews.store(true, Ordering::SeqCst);
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status("silent", &PatchParams::default(), &Patch::Merge(status))
        .await?;
    eventually("taints removed on recovery", Duration::from_secs(20), || async {
        nodes.get("silent").await.ok().is_some_and(|n| {
            !has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
                && !has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule")
        })
    })
    .await
    .with_context(|| cp.logs())?;
    // Node events as upstream's node-controller records them.
    let default_events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons: Vec<(String, String)> = default_events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("silent"))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    assert!(
        reasons.contains(&(
            "RegisteredNode".to_string(),
            "Node silent event: Registered Node silent in Controller".to_string()
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            "NodeNotReady".to_string(),
            "Node silent status is now: NodeNotReady".to_string()
        )),
        "{reasons:?}"
    );
    kubelets.abort();
    Ok(())
}

fn pod_cidr(node: &Node) -> Option<(String, Vec<String>)> {
    let s = node.spec.as_ref()?;
    Some((s.pod_cidr.clone()?, s.pod_cidrs.clone()?))
}

async fn wait_cidr(nodes: &Api<Node>, name: &str, cp_logs: impl Fn() -> String) -> anyhow::Result<String> {
    let (cidr, cidrs) = poll(&format!("a podCIDR on {name}"), Duration::from_secs(20), || async {
        nodes.get(name).await.ok().as_ref().and_then(pod_cidr)
    })
    .await
    .with_context(cp_logs)?;
    assert_eq!(cidrs, vec![cidr.clone()], "podCIDRs matches podCIDR");
    Ok(cidr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_cidrs_and_freed_ones_are_reused() -> anyhow::Result<()> {
    let flags = [
        "--allocate-node-cidrs",
        "--cluster-cidr=10.244.0.0/22",
        "--node-cidr-mask-size=24",
    ];
    let mut cp = ControlPlane::start(&flags).await?;
    let client = cp.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let mut got = BTreeMap::new();
    for n in ["a", "b"] {
        create_node(&client, n, json!({}), json!([]), resources()).await?;
        got.insert(n, wait_cidr(&nodes, n, || cp.logs()).await?);
    }
    assert_eq!(got["a"], "10.244.0.0/24");
    assert_eq!(got["b"], "10.244.1.0/24");

    // A restarted controller-manager marks the blocks in use first.
    cp.controller_manager.kill();
    let mut args = vec!["--leader-elect=false"];
    args.extend_from_slice(&flags);
    cp.controller_manager = Component::controller_manager(&cp.api, "kube-controller-manager-2", &args)?;
    cp.controller_manager.wait_ready().await?;
    for n in ["c", "d"] {
        create_node(&client, n, json!({}), json!([]), resources()).await?;
        got.insert(n, wait_cidr(&nodes, n, || cp.logs()).await?);
    }
    assert_eq!(
        got["c"], "10.244.2.0/24",
        "blocks held by a and b are skipped after a restart"
    );
    assert_eq!(got["d"], "10.244.3.0/24");
    assert_eq!(
        nodes.get("a").await?.spec.unwrap().pod_cidr.as_deref(),
        Some("10.244.0.0/24"),
        "kept"
    );

    // Exhausted: an event says so; a deleted node's block is reused.
    create_node(&client, "e", json!({}), json!([]), resources()).await?;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually("CIDRNotAvailable on e", Duration::from_secs(20), || async {
        events.list(&ListParams::default()).await.ok().is_some_and(|l| {
            l.items.iter().any(|e| {
                e.reason.as_deref() == Some("CIDRNotAvailable") && e.involved_object.name.as_deref() == Some("e")
            })
        })
    })
    .await
    .with_context(|| cp.logs())?;
    assert!(pod_cidr(&nodes.get("e").await?).is_none());
    nodes.delete("b", &DeleteParams::default()).await?;
    let e = wait_cidr(&nodes, "e", || cp.logs()).await?;
    assert_eq!(e, "10.244.1.0/24", "b's block handed to e");
    Ok(())
}
