//! The `default/kubernetes` Service's Endpoints and EndpointSlice, kept
//! by every apiserver from its master lease (upstream's lease endpoint
//! reconciler): one apiserver, three with members killed, stopped and
//! restarted, a loopback advertise address (not listed), and the
//! controller-manager's endpoint controllers leaving them alone. Reconcile
//! interval and lease TTL are shortened by the hidden flags.

use std::time::{Duration, Instant};

use anyhow::Context;
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::components::Component;
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const INTERVAL: &str = "--endpoint-reconciler-interval=1s";

/// The addresses and ports of `default/kubernetes` (None: absent).
async fn endpoints(client: &kube::Client) -> Option<(Vec<String>, Vec<(String, i32, String)>)> {
    let ep = Api::<Endpoints>::namespaced(client.clone(), "default")
        .get_opt("kubernetes")
        .await
        .ok()??;
    let subsets = ep.subsets.unwrap_or_default();
    let ips = subsets
        .iter()
        .flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone()))
        .collect();
    let ports = subsets
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port,
                p.protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    Some((ips, ports))
}

/// The ready addresses of the EndpointSlice `default/kubernetes`.
async fn slice_ips(client: &kube::Client) -> Option<Vec<String>> {
    let s = Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .get_opt("kubernetes")
        .await
        .ok()??;
    Some(
        s.endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .flat_map(|e| e.addresses.clone())
            .collect(),
    )
}

/// Waits until both the Endpoints and the EndpointSlice list exactly `want`.
async fn wait_listed(api: &ApiServers, client: &kube::Client, want: &[&str], timeout: Duration) -> anyhow::Result<()> {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let res = eventually(
        &format!("the kubernetes service's endpoints to be {want:?}"),
        timeout,
        || {
            let want = want.clone();
            async move {
                endpoints(client).await.is_some_and(|(ips, _)| ips == want) && slice_ips(client).await == Some(want)
            }
        },
    )
    .await;
    match res {
        Ok(()) => Ok(()),
        Err(e) => Err(e.context(format!(
            "endpoints now {:?}, slice {:?}\n{}",
            endpoints(client).await,
            slice_ips(client).await,
            api.logs()
        ))),
    }
}

/// The store's revision now: a list with a limit reads the store.
async fn store_revision(client: &kube::Client) -> anyhow::Result<i64> {
    let list = Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await?;
    Ok(list
        .metadata
        .resource_version
        .context("list has no resourceVersion")?
        .parse()?)
}

fn resource_version<K: kube::Resource>(o: &K) -> String {
    o.meta().resource_version.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apiserver_lists_its_advertise_address() -> anyhow::Result<()> {
    let api = ApiServers::start_advertising(&["10.255.0.1"], &[INTERVAL, "--endpoint-reconciler-lease-ttl=3s"]).await?;
    let client = api.client().await?;
    let port = api.members[0].port;
    wait_listed(&api, &client, &["10.255.0.1"], Duration::from_secs(30)).await?;

    let (_, ports) = endpoints(&client).await.context("endpoints")?;
    assert_eq!(ports, vec![("https".to_string(), port as i32, "TCP".to_string())]);
    let eps = Api::<Endpoints>::namespaced(client.clone(), "default");
    let ep = eps.get("kubernetes").await?;
    assert_eq!(
        ep.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("endpointslice.kubernetes.io/skip-mirror")),
        Some(&"true".to_string()),
        "the mirroring controller is told to skip it"
    );
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let slice = slices.get("kubernetes").await?;
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name")),
        Some(&"kubernetes".to_string())
    );
    let sp = slice.ports.as_ref().context("slice ports")?;
    assert_eq!(sp.len(), 1);
    assert_eq!(sp[0].name.as_deref(), Some("https"));
    assert_eq!(sp[0].port, Some(port as i32));
    assert_eq!(sp[0].protocol.as_deref(), Some("TCP"));
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await?;
    let sport = &svc.spec.as_ref().context("spec")?.ports.as_ref().context("ports")?[0];
    assert_eq!(sport.port, 443);
    assert_eq!(
        sport.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
            port as i32
        ))
    );

    // Renewals go on (each writes the master lease: a store revision) but
    // the objects are written only when they differ.
    let (ep_rv, slice_rv) = (resource_version(&ep), resource_version(&slice));
    let start = store_revision(&client).await?;
    eventually("three lease renewals", Duration::from_secs(20), || async {
        store_revision(&client).await.is_ok_and(|r| r >= start + 3)
    })
    .await?;
    assert_eq!(
        resource_version(&eps.get("kubernetes").await?),
        ep_rv,
        "Endpoints not rewritten"
    );
    assert_eq!(
        resource_version(&slices.get("kubernetes").await?),
        slice_rv,
        "EndpointSlice not rewritten"
    );

    // Deleted or changed by hand, they are put back.
    eps.delete("kubernetes", &DeleteParams::default()).await?;
    slices.delete("kubernetes", &DeleteParams::default()).await?;
    wait_listed(&api, &client, &["10.255.0.1"], Duration::from_secs(20)).await?;
    let mut ep = eps.get("kubernetes").await?;
    ep.subsets = Some(vec![k8s_openapi::api::core::v1::EndpointSubset {
        addresses: Some(vec![k8s_openapi::api::core::v1::EndpointAddress {
            ip: "10.9.9.9".into(),
            ..Default::default()
        }]),
        ..Default::default()
    }]);
    eps.replace("kubernetes", &PostParams::default(), &ep).await?;
    wait_listed(&api, &client, &["10.255.0.1"], Duration::from_secs(20)).await?;
    assert_eq!(
        endpoints(&client).await.context("endpoints")?.1[0].1,
        port as i32,
        "ports reset too"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_apiservers_list_the_live_ones() -> anyhow::Result<()> {
    const TTL_SECS: u64 = 8;
    let ttl = format!("--endpoint-reconciler-lease-ttl={TTL_SECS}s");
    let mut api = ApiServers::start_advertising(&["10.255.0.1", "10.255.0.2", "10.255.0.3"], &[INTERVAL, &ttl]).await?;
    // Member 0 stays up throughout; ask it.
    let client = api.client_for(0).await?;
    let all = ["10.255.0.1", "10.255.0.2", "10.255.0.3"];
    wait_listed(&api, &client, &all, Duration::from_secs(60)).await?;

    // A killed member is dropped once its lease expires.
    api.kill9(2);
    wait_listed(
        &api,
        &client,
        &["10.255.0.1", "10.255.0.2"],
        Duration::from_secs(TTL_SECS + 30),
    )
    .await?;

    // Back, it is listed again.
    api.restart(2).await?;
    wait_listed(&api, &client, &all, Duration::from_secs(30)).await?;

    // A graceful stop removes it at once, well before its lease would
    // expire (at least TTL minus one interval after the SIGTERM).
    let sigterm = Instant::now();
    api.terminate(1).await?;
    wait_listed(&api, &client, &["10.255.0.1", "10.255.0.3"], Duration::from_secs(30)).await?;
    let took = sigterm.elapsed();
    assert!(
        took < Duration::from_secs(TTL_SECS - 2),
        "removed after {took:?}, as if by lease expiry\n{}",
        api.logs()
    );
    assert!(
        api.log(1)
            .contains("removed this apiserver from the kubernetes service's endpoints"),
        "{}",
        api.log(1)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_advertise_address_is_not_listed() -> anyhow::Result<()> {
    let api = ApiServers::start_advertising(&["127.0.0.1"], &[INTERVAL]).await?;
    let client = api.client().await?;
    let warning = "the advertise address may not be in the loopback range";
    eventually("the loopback warning", Duration::from_secs(20), || async {
        api.log(0).contains(warning)
    })
    .await
    .with_context(|| api.logs())?;
    // The warning comes instead of a reconciler: nothing writes them, and
    // the apiserver is ready without them.
    eventually("the apiserver to be ready", Duration::from_secs(20), || async {
        let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
            return false;
        };
        client.request_text(req).await.is_ok_and(|t| t == "ok")
    })
    .await?;
    assert!(
        Api::<Endpoints>::namespaced(client.clone(), "default")
            .get_opt("kubernetes")
            .await?
            .is_none(),
        "no invalid Endpoints written"
    );
    assert!(
        Api::<EndpointSlice>::namespaced(client.clone(), "default")
            .get_opt("kubernetes")
            .await?
            .is_none()
    );
    assert_eq!(api.log(0).matches(warning).count(), 1, "warned once:\n{}", api.log(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_controllers_leave_them_alone() -> anyhow::Result<()> {
    let api = ApiServers::start_advertising(&["10.255.0.1"], &[INTERVAL]).await?;
    let cm = Component::controller_manager(&api, "kube-controller-manager", &["--leader-elect=false"])?;
    cm.wait_ready().await?;
    let client = api.client().await?;
    wait_listed(&api, &client, &["10.255.0.1"], Duration::from_secs(30)).await?;
    let eps = Api::<Endpoints>::namespaced(client.clone(), "default");
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let ep_rv = resource_version(&eps.get("kubernetes").await?);
    let slice_rv = resource_version(&slices.get("kubernetes").await?);

    // A selector-less Service with hand-written Endpoints: once its mirror
    // exists, the mirroring controller has been through the Services.
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"ports": [{"port": 5432}]},
    }))?;
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await?;
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 5432}]}],
    }))?;
    eps.create(&PostParams::default(), &ep).await?;
    eventually("the db Endpoints mirrored", Duration::from_secs(30), || async {
        slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=db"))
            .await
            .is_ok_and(|l| !l.items.is_empty())
    })
    .await
    .with_context(|| cm.logs())?;

    let ours = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await?;
    let names: Vec<_> = ours
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, vec!["kubernetes".to_string()], "no mirrored copy");
    assert_eq!(
        resource_version(&eps.get("kubernetes").await?),
        ep_rv,
        "Endpoints untouched"
    );
    assert_eq!(
        resource_version(&slices.get("kubernetes").await?),
        slice_rv,
        "EndpointSlice untouched"
    );
    Ok(())
}
