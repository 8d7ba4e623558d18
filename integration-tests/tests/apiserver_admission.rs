//! Admission plugins of real kube-apiserver processes: the flags, and each
//! plugin's effect (or refusal, with upstream's status and message) on
//! requests that would pass without it.

use std::process::Command;

use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::http::{Reply, get, post_json, request};
use integration_tests::store_cluster::workspace_bin;
use serde_json::{Value, json};

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn simple_spec() -> Value {
    json!({"containers": [{"name": "c", "image": "busybox"}]})
}

fn message(r: &Reply) -> &str {
    r.body["message"].as_str().unwrap_or("")
}

async fn put_json(client: &kube::Client, path: &str, v: &Value) -> anyhow::Result<Reply> {
    request(client, "PUT", path, Some("application/json"), serde_json::to_vec(v)?).await
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let r = post_json(
        client,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .await?;
    anyhow::ensure!(r.code == 201, "namespace {name}: {}", r.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_plugin_names_are_refused_at_startup() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(workspace_bin("kube-apiserver")?)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--secure-port",
            "0",
            "--enable-admission-plugins=NamespaceLifecycle,Bogus",
        ])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("enable-admission-plugins plugin \"Bogus\" is unknown"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_and_unimplemented_plugins() -> anyhow::Result<()> {
    let c = ApiServers::start_with(
        1,
        &[
            "--enable-admission-plugins=ValidatingAdmissionWebhook,EventRateLimit",
            "--disable-admission-plugins=ServiceAccount,DefaultTolerationSeconds,Priority",
        ],
    )
    .await?;
    let client = c.client().await?;
    let r = post_json(&client, "/api/v1/namespaces/default/pods", &pod("p", simple_spec())).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert!(r.body["spec"].get("tolerations").is_none(), "{}", r.body);
    assert!(r.body["spec"].get("priority").is_none(), "{}", r.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_lifecycle() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    for ns in ["default", "kube-system", "kube-public"] {
        let r = request(&client, "DELETE", &format!("/api/v1/namespaces/{ns}"), None, vec![]).await?;
        assert_eq!(r.code, 403, "{ns}: {}", r.body);
        assert_eq!(
            message(&r),
            format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
        );
    }
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let r = post_json(&client, "/api/v1/namespaces/nowhere/configmaps", &cm).await?;
    assert_eq!(r.code, 404, "{}", r.body);
    assert_eq!(message(&r), "namespaces \"nowhere\" not found");
    create_namespace(&client, "doomed").await?;
    let r = request(&client, "DELETE", "/api/v1/namespaces/doomed", None, vec![]).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = post_json(&client, "/api/v1/namespaces/doomed/configmaps", &cm).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "configmaps \"x\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_defaults_and_token_volume() -> anyhow::Result<()> {
    let c = ApiServers::start_with(1, &["--enable-admission-plugins=ServiceAccount"]).await?;
    let client = c.client().await?;
    let pods = "/api/v1/namespaces/default/pods";
    let r = post_json(&client, pods, &pod("early", simple_spec())).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "pods \"early\" is forbidden: error looking up service account default/default: serviceaccount \"default\" not found"
    );
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"},
                    "imagePullSecrets": [{"name": "registry"}]});
    let r = post_json(&client, "/api/v1/namespaces/default/serviceaccounts", &sa).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let spec = json!({"initContainers": [{"name": "i", "image": "busybox"}], "containers": [{"name": "c", "image": "busybox"}]});
    let r = post_json(&client, pods, &pod("p", spec)).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let spec = &r.body["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "registry"}]));
    let vol = spec["volumes"][0].clone();
    let name = vol["name"].as_str().unwrap_or("").to_string();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{name}"
    );
    assert_eq!(
        vol["projected"]["sources"][0]["serviceAccountToken"],
        json!({"expirationSeconds": 3607, "path": "token"})
    );
    assert_eq!(vol["projected"]["sources"][1]["configMap"]["name"], "kube-root-ca.crt");
    for list in ["initContainers", "containers"] {
        assert_eq!(
            spec[list][0]["volumeMounts"],
            json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
            "{list}"
        );
    }
    let mut spec = simple_spec();
    spec["automountServiceAccountToken"] = json!(false);
    let r = post_json(&client, pods, &pod("quiet", spec)).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert!(r.body["spec"].get("volumes").is_none(), "{}", r.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn priority_classes() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let pcs = "/apis/scheduling.k8s.io/v1/priorityclasses";
    let r = get(&client, &format!("{pcs}/system-node-critical")).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["value"], 2_000_001_000);
    let r = get(&client, &format!("{pcs}/system-cluster-critical")).await?;
    assert_eq!(r.body["value"], 2_000_000_000);

    let pods = "/api/v1/namespaces/default/pods";
    let r = post_json(&client, pods, &pod("plain", simple_spec())).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["spec"]["priority"], 0);
    assert_eq!(r.body["spec"]["preemptionPolicy"], "PreemptLowerPriority");

    let mut spec = simple_spec();
    spec["priorityClassName"] = json!("system-cluster-critical");
    let r = post_json(&client, pods, &pod("critical", spec)).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["spec"]["priority"], 2_000_000_000);

    let mut spec = simple_spec();
    spec["priorityClassName"] = json!("nope");
    let r = post_json(&client, pods, &pod("lost", spec)).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "pods \"lost\" is forbidden: no PriorityClass with name nope was found"
    );

    let pc = |name: &str, value: i64, global: bool| {
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
               "value": value, "globalDefault": global})
    };
    let r = post_json(&client, pcs, &pc("system-mine", 10, false)).await?;
    assert_eq!(r.code, 422, "{}", r.body);
    let r = post_json(&client, pcs, &pc("low", 10, true)).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = post_json(&client, pcs, &pc("other", 20, true)).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass low is already marked as default. Only one default can exist"
    );
    let r = post_json(&client, pods, &pod("defaulted", simple_spec())).await?;
    assert_eq!(r.body["spec"]["priority"], 10, "{}", r.body);
    assert_eq!(r.body["spec"]["priorityClassName"], "low");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn default_tolerations_and_new_node_taint() -> anyhow::Result<()> {
    let c = ApiServers::start_with(1, &["--default-not-ready-toleration-seconds", "120"]).await?;
    let client = c.client().await?;
    let r = post_json(&client, "/api/v1/namespaces/default/pods", &pod("p", simple_spec())).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        r.body["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ])
    );
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    let r = post_json(&client, "/api/v1/nodes", &node).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        r.body["spec"]["taints"],
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_ranges_default_and_bound() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
    "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"}},
        {"type": "PersistentVolumeClaim", "max": {"storage": "5Gi"}},
    ]}});
    let r = post_json(&client, "/api/v1/namespaces/default/limitranges", &lr).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let pods = "/api/v1/namespaces/default/pods";
    let r = post_json(&client, pods, &pod("small", simple_spec())).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        r.body["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "100m"}})
    );
    assert_eq!(
        r.body["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container c; cpu limit for container c"
    );
    let big = json!({"containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "2"}}}]});
    let r = post_json(&client, pods, &pod("big", big)).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    );
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}});
    let r = post_json(&client, "/api/v1/namespaces/default/persistentvolumeclaims", &pvc).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi"
    );
    Ok(())
}

/// Creates a quota and sets its status as the resourcequota controller
/// would (hard from spec, nothing used).
async fn create_quota(client: &kube::Client, ns: &str, name: &str, hard: Value) -> anyhow::Result<()> {
    let base = format!("/api/v1/namespaces/{ns}/resourcequotas");
    let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard}});
    let r = post_json(client, &base, &q).await?;
    anyhow::ensure!(r.code == 201, "quota: {}", r.body);
    let used: serde_json::Map<String, Value> = hard
        .as_object()
        .map(|m| m.keys().map(|k| (k.clone(), json!("0"))).collect())
        .unwrap_or_default();
    let mut q = r.body;
    q["status"] = json!({"hard": hard, "used": used});
    let r = put_json(client, &format!("{base}/{name}/status"), &q).await?;
    anyhow::ensure!(r.code == 200, "quota status: {}", r.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_quota_charges_and_refuses() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    create_namespace(&client, "team").await?;
    create_quota(&client, "team", "compute", json!({"pods": "2", "requests.cpu": "1"})).await?;
    let pods = "/api/v1/namespaces/team/pods";
    let r = post_json(&client, pods, &pod("bare", simple_spec())).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "pods \"bare\" is forbidden: failed quota: compute: must specify requests.cpu for: c"
    );
    let spec =
        |cpu: &str| json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]});
    let r = post_json(&client, pods, &pod("a", spec("600m"))).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = post_json(&client, pods, &pod("b", spec("600m"))).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
    );
    let r = post_json(&client, pods, &pod("b", spec("400m"))).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = get(&client, "/api/v1/namespaces/team/resourcequotas/compute").await?;
    assert_eq!(r.body["status"]["used"], json!({"pods": "2", "requests.cpu": "1"}));
    let r = post_json(&client, pods, &pod("c", spec("0"))).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert!(message(&r).contains("exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"));

    // Concurrent creates never overspend: exactly the quota's worth pass.
    create_namespace(&client, "busy").await?;
    create_quota(&client, "busy", "objects", json!({"count/configmaps": "5"})).await?;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}")}});
            post_json(&client, "/api/v1/namespaces/busy/configmaps", &cm)
                .await
                .map(|r| r.code)
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await?? {
            201 => created += 1,
            403 => {}
            other => anyhow::bail!("unexpected {other}"),
        }
    }
    assert_eq!(created, 5);
    let r = get(&client, "/api/v1/namespaces/busy/resourcequotas/objects").await?;
    assert_eq!(r.body["status"]["used"], json!({"count/configmaps": "5"}));
    Ok(())
}

fn warnings(r: &Reply) -> Vec<String> {
    r.headers
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_security_enforces_and_warns() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let ns = |name: &str, labels: Value| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    let r = post_json(
        &client,
        "/api/v1/namespaces",
        &ns("strict", json!({"pod-security.kubernetes.io/enforce": "restricted"})),
    )
    .await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = post_json(&client, "/api/v1/namespaces/strict/pods", &pod("x", simple_spec())).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
    );
    let good = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "busybox",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]});
    let r = post_json(&client, "/api/v1/namespaces/strict/pods", &pod("ok", good)).await?;
    assert_eq!(r.code, 201, "{}", r.body);

    // Workloads are warned about, never refused.
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}}}});
    let r = post_json(&client, "/apis/apps/v1/namespaces/strict/deployments", &deploy).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let w = warnings(&r);
    assert!(
        w.iter().any(|w| w
            .contains("would violate PodSecurity \\\"restricted:latest\\\": allowPrivilegeEscalation != false")
            && w.contains("privileged (container \\\"c\\\" must not set securityContext.privileged=true)")),
        "{w:?}"
    );

    let r = post_json(
        &client,
        "/api/v1/namespaces",
        &ns("loose", json!({"pod-security.kubernetes.io/warn": "baseline"})),
    )
    .await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let spec = json!({"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]});
    let r = post_json(&client, "/api/v1/namespaces/loose/pods", &pod("host", spec)).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        warnings(&r),
        vec![
            "299 - \"would violate PodSecurity \\\"baseline:latest\\\": host namespaces (hostNetwork=true)\""
                .to_string()
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_classes_resize_and_protection() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/disk"});
    let r = post_json(&client, "/apis/storage.k8s.io/v1/storageclasses", &sc).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let pvcs = "/api/v1/namespaces/default/persistentvolumeclaims";
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let r = post_json(&client, pvcs, &pvc).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["spec"]["storageClassName"], "standard");
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );

    let mut bound = r.body.clone();
    bound["status"] = json!({"phase": "Bound"});
    let r = put_json(&client, &format!("{pvcs}/data/status"), &bound).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    let mut grown = r.body.clone();
    grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    let r = put_json(&client, &format!("{pvcs}/data"), &grown).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        message(&r),
        "persistentvolumeclaims \"data\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
    );

    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/pv1"}}});
    let r = post_json(&client, "/api/v1/persistentvolumes", &pv).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["metadata"]["finalizers"], json!(["kubernetes.io/pv-protection"]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn events_expire_after_the_event_ttl() -> anyhow::Result<()> {
    let c = ApiServers::start_with(1, &["--event-ttl", "2s"]).await?;
    let client = c.client().await?;
    let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Test", "message": "hello", "type": "Normal"});
    let r = post_json(&client, "/api/v1/namespaces/default/events", &ev).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stays"}});
    let r = post_json(&client, "/api/v1/namespaces/default/configmaps", &cm).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = get(&client, "/api/v1/namespaces/default/events/e1").await?;
    assert_eq!(r.code, 200, "{}", r.body);
    integration_tests::store_cluster::eventually("the event expires", std::time::Duration::from_secs(20), || {
        let client = client.clone();
        async move {
            get(&client, "/api/v1/namespaces/default/events/e1")
                .await
                .is_ok_and(|r| r.code == 404)
        }
    })
    .await?;
    let r = get(&client, "/api/v1/namespaces/default/configmaps/stays").await?;
    assert_eq!(r.code, 200, "{}", r.body);
    Ok(())
}
