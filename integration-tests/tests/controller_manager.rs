//! `kube-controller-manager` as a process beside a real apiserver: flags,
//! health and metrics, leader election, and the per-namespace controllers
//! (default ServiceAccount, `kube-root-ca.crt`).

use std::time::Duration;

use anyhow::Context;
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::components::{Component, ControlPlane};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_and_the_root_ca() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    create_namespace(&client, "team-a").await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    eventually("default ServiceAccount in team-a", Duration::from_secs(20), || async {
        sas.get_opt("default").await.ok().flatten().is_some()
    })
    .await
    .with_context(|| cp.logs())?;
    eventually("kube-root-ca.crt in team-a", Duration::from_secs(20), || async {
        cms.get_opt("kube-root-ca.crt").await.ok().flatten().is_some()
    })
    .await
    .with_context(|| cp.logs())?;
    let ca = cms.get("kube-root-ca.crt").await?;
    let pem = ca.data.unwrap_or_default().remove("ca.crt").unwrap_or_default();
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
    assert_eq!(pem.trim(), cp.api.ca_pem()?.trim());

    // Deleted ones come back; a tampered CA is restored.
    sas.delete("default", &DeleteParams::default()).await?;
    cms.delete("kube-root-ca.crt", &DeleteParams::default()).await?;
    eventually("default ServiceAccount re-made", Duration::from_secs(20), || async {
        sas.get_opt("default").await.ok().flatten().is_some()
    })
    .await?;
    eventually("kube-root-ca.crt re-made", Duration::from_secs(20), || async {
        cms.get_opt("kube-root-ca.crt").await.ok().flatten().is_some()
    })
    .await?;
    // Existing namespaces were covered at start-up too.
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), "kube-system")
            .get_opt("default")
            .await?
            .is_some()
    );

    // Health and upstream's work-queue metrics on the secure port.
    let (code, body) = cp.controller_manager.get("/healthz").await?;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, metrics) = cp.controller_manager.get("/metrics").await?;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("workqueue_adds_total{name=\"serviceaccount\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("workqueue_depth{name=\"root_ca_cert_publisher\"}"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_token_secrets_are_filled_in_and_authenticate() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    create_namespace(&client, "ci").await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "ci");
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "builder"}}))?;
    let sa = sas.create(&PostParams::default(), &sa).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ci");
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "builder-token", "annotations": {"kubernetes.io/service-account.name": "builder"}},
        "type": "kubernetes.io/service-account-token",
    }))?;
    secrets.create(&PostParams::default(), &s).await?;
    eventually("the token filled in", Duration::from_secs(20), || async {
        secrets
            .get("builder-token")
            .await
            .is_ok_and(|s| s.data.unwrap_or_default().contains_key("token"))
    })
    .await
    .with_context(|| cp.logs())?;
    let s = secrets.get("builder-token").await?;
    let data = s.data.clone().unwrap_or_default();
    assert_eq!(data["namespace"].0, b"ci");
    assert!(String::from_utf8_lossy(&data["ca.crt"].0).contains("BEGIN CERTIFICATE"));
    assert_eq!(
        s.metadata.annotations.unwrap_or_default()["kubernetes.io/service-account.uid"],
        sa.metadata.uid.clone().unwrap()
    );
    // The apiserver takes it: who am I?
    let token = String::from_utf8(data["token"].0.clone())?;
    let as_sa = cp.api.token_client(&token).await?;
    let review: Value = as_sa
        .request(
            http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(
                    &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
                )?)?,
        )
        .await?;
    assert_eq!(
        review.pointer("/status/userInfo/username").and_then(Value::as_str),
        Some("system:serviceaccount:ci:builder"),
        "{review}"
    );
    // Deleting the service account deletes its token secret; the token stops working.
    sas.delete("builder", &DeleteParams::default()).await?;
    eventually("the token secret deleted", Duration::from_secs(20), || async {
        matches!(secrets.get_opt("builder-token").await, Ok(None))
    })
    .await
    .with_context(|| cp.logs())?;
    let refused = as_sa
        .request::<Value>(
            http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(
                    &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
                )?)?,
        )
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 401),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_refused_with_what_to_fix() -> anyhow::Result<()> {
    let api = ApiServers::start(1).await?;
    for (args, want) in [
        (vec!["--controllers=*,replicaset-controler"], "replicaset-controler"),
        (vec!["--allocate-node-cidrs"], "--cluster-cidr"),
        (
            vec!["--node-monitor-grace-period=fifty"],
            "invalid value \"fifty\" for duration",
        ),
    ] {
        let mut c = Component::controller_manager(&api, "kcm-bad", &args)?;
        eventually("the controller-manager to exit", Duration::from_secs(20), || {
            let exited = c.exited().is_some();
            async move { exited }
        })
        .await?;
        let status = c.exited().unwrap();
        assert!(!status.success());
        let log = std::fs::read_to_string(&c.log)?;
        assert!(log.contains(want), "{args:?}: {log}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_leader_dies() -> anyhow::Result<()> {
    let api = ApiServers::start(1).await?;
    let client = api.client().await?;
    let args = [
        "--leader-elect-lease-duration=4s",
        "--leader-elect-renew-deadline=3s",
        "--leader-elect-retry-period=1s",
    ];
    let mut a = Component::controller_manager(&api, "kcm-a", &args)?;
    a.wait_ready().await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = || async {
        leases
            .get_opt("kube-controller-manager")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec.and_then(|s| s.holder_identity))
    };
    eventually("a lease holder", Duration::from_secs(20), || async {
        holder().await.is_some()
    })
    .await?;
    let first = holder().await.unwrap();
    let b = Component::controller_manager(&api, "kcm-b", &args)?;
    // The standby does not lead while the leader renews.
    let (code, _) = b.get("/readyz").await.unwrap_or((0, String::new()));
    assert_ne!(code, 200, "the standby reports ready only once it leads");
    a.kill();
    eventually("the standby to take the lease", Duration::from_secs(30), || async {
        holder().await.is_some_and(|h| h != first)
    })
    .await
    .with_context(|| b.logs())?;
    b.wait_ready().await?;
    // And it works: a new namespace gets its default ServiceAccount.
    create_namespace(&client, "after-failover").await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "after-failover");
    eventually(
        "default ServiceAccount after failover",
        Duration::from_secs(20),
        || async { sas.get_opt("default").await.ok().flatten().is_some() },
    )
    .await
    .with_context(|| b.logs())?;
    Ok(())
}
