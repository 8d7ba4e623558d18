//! `kube-controller-manager` as a process beside a real apiserver: flags,
//! health and metrics, leader election, and the per-namespace controllers
//! (default ServiceAccount, `kube-root-ca.crt`).

use std::time::Duration;

use anyhow::Context;
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::components::{Component, ControlPlane};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

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
async fn bad_flags_are_refused_with_what_to_fix() -> anyhow::Result<()> {
    let api = ApiServers::start(1).await?;
    for (args, want) in [
        (vec!["--controllers=*,replicaset-controler"], "replicaset-controler"),
        (vec!["--allocate-node-cidrs"], "--cluster-cidr"),
        (vec!["--node-monitor-grace-period=fifty"], "not a duration"),
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
