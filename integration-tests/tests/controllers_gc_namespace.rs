//! The garbage collector (background, foreground and orphan cascading
//! deletion, dangling references, custom resources, owners across
//! namespaces) and the namespace controller (a deleted namespace empties
//! itself and goes), against real apiserver, scheduler and
//! controller-manager processes.

use std::time::Duration;

use anyhow::Context;
use integration_tests::apiserver_cluster::{run_kubectl, upstream_kubectl};
use integration_tests::components::{ControlPlane, create_node, reap_terminating_pods};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

async fn configmap(api: &Api<ConfigMap>, name: &str, owners: Value) -> anyhow::Result<ConfigMap> {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners},
        "data": {"k": "v"},
    }))?;
    Ok(api.create(&PostParams::default(), &cm).await?)
}

fn owner_ref(o: &ConfigMap, block: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid,
           "controller": true, "blockOwnerDeletion": block})
}

async fn gone(api: &Api<ConfigMap>, name: &str) -> bool {
    matches!(api.get_opt(name).await, Ok(None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_deletion_in_all_three_modes() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    namespace(&client, "gc").await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "gc");

    // Background: the owner goes at once, then its dependents.
    let owner = configmap(&cms, "bg-owner", json!([])).await?;
    configmap(&cms, "bg-dep", json!([owner_ref(&owner, true)])).await?;
    cms.delete("bg-owner", &DeleteParams::background()).await?;
    eventually("background dependent collected", Duration::from_secs(30), || {
        gone(&cms, "bg-dep")
    })
    .await
    .with_context(|| cp.logs())?;

    // Foreground: the owner stays (deletionTimestamp, foregroundDeletion
    // finalizer) until its blocking dependents are gone.
    let owner = configmap(&cms, "fg-owner", json!([])).await?;
    let mid = configmap(&cms, "fg-mid", json!([owner_ref(&owner, true)])).await?;
    configmap(&cms, "fg-leaf", json!([owner_ref(&mid, true)])).await?;
    cms.delete("fg-owner", &DeleteParams::foreground()).await?;
    let o = cms.get_opt("fg-owner").await?;
    if let Some(o) = o {
        assert!(o.metadata.deletion_timestamp.is_some());
    }
    eventually("foreground chain collected", Duration::from_secs(30), || async {
        gone(&cms, "fg-leaf").await && gone(&cms, "fg-mid").await && gone(&cms, "fg-owner").await
    })
    .await
    .with_context(|| cp.logs())?;

    // Orphan: dependents stay and lose their reference; the owner goes.
    let owner = configmap(&cms, "or-owner", json!([])).await?;
    configmap(&cms, "or-dep", json!([owner_ref(&owner, true)])).await?;
    cms.delete("or-owner", &DeleteParams::orphan()).await?;
    eventually("orphaned owner gone", Duration::from_secs(30), || {
        gone(&cms, "or-owner")
    })
    .await
    .with_context(|| cp.logs())?;
    let dep = cms.get("or-dep").await?;
    assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());

    // A dangling reference beside a live owner is removed; the object stays.
    let live = configmap(&cms, "live-owner", json!([])).await?;
    let dangling = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "never-was",
                          "uid": "00000000-0000-0000-0000-000000000001"});
    configmap(&cms, "two-owners", json!([owner_ref(&live, false), dangling])).await?;
    eventually("dangling reference removed", Duration::from_secs(30), || async {
        cms.get("two-owners")
            .await
            .is_ok_and(|c| c.metadata.owner_references.unwrap_or_default().len() == 1)
    })
    .await
    .with_context(|| cp.logs())?;
    assert!(cms.get_opt("two-owners").await?.is_some());

    // An owner in another namespace does not count: the dependent is
    // collected (as upstream, a namespaced owner must share the namespace).
    namespace(&client, "gc-other").await?;
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "gc-other");
    let far = configmap(&other, "far-owner", json!([])).await?;
    configmap(&cms, "cross-ns-dep", json!([owner_ref(&far, false)])).await?;
    eventually("cross-namespace dependent collected", Duration::from_secs(30), || {
        gone(&cms, "cross-ns-dep")
    })
    .await
    .with_context(|| cp.logs())?;
    assert!(other.get_opt("far-owner").await?.is_some());
    let events: Api<Event> = Api::namespaced(client.clone(), "gc");
    eventually("OwnerRefInvalidNamespace event", Duration::from_secs(20), || async {
        events.list(&Default::default()).await.is_ok_and(|l| {
            l.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("OwnerRefInvalidNamespace"))
        })
    })
    .await?;
    Ok(())
}

async fn create_crd(client: &kube::Client) -> anyhow::Result<ApiResource> {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await?;
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    // Served once the apiserver has registered it.
    let probe: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    eventually("widgets served", Duration::from_secs(20), || async {
        probe.list(&Default::default()).await.is_ok()
    })
    .await?;
    Ok(ar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_own_and_are_collected() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    let ar = create_crd(&client).await?;
    namespace(&client, "crs").await?;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "crs", &ar);
    let mut w = DynamicObject::new("owner-widget", &ar);
    w.data = json!({"spec": {"size": 1}});
    let w = widgets.create(&PostParams::default(), &w).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "crs");
    let owner = json!([{"apiVersion": "example.com/v1", "kind": "Widget", "name": "owner-widget",
                         "uid": w.metadata.uid, "blockOwnerDeletion": true}]);
    configmap(&cms, "widget-dep", owner).await?;
    widgets.delete("owner-widget", &DeleteParams::foreground()).await?;
    eventually("widget and its dependent gone", Duration::from_secs(40), || async {
        gone(&cms, "widget-dep").await && matches!(widgets.get_opt("owner-widget").await, Ok(None))
    })
    .await
    .with_context(|| cp.logs())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_empties_it_and_it_goes() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    let _reaper = reap_terminating_pods(&client);
    create_node(
        &client,
        "node-1",
        json!({}),
        json!([]),
        json!({"cpu": "4", "memory": "8Gi", "pods": "110"}),
    )
    .await?;
    let ar = create_crd(&client).await?;
    namespace(&client, "doomed").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    for i in 0..3 {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p{i}")},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))?;
        pods.create(&PostParams::default(), &p).await?;
    }
    let deploys: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "doomed",
        &ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    );
    let d: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }))?;
    deploys.create(&PostParams::default(), &d).await?;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "doomed", &ar);
    let mut held = DynamicObject::new("held", &ar);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    widgets.create(&PostParams::default(), &held).await?;
    widgets
        .create(&PostParams::default(), &DynamicObject::new("free", &ar))
        .await?;

    // Upstream kubectl, without --wait: the namespace goes Terminating.
    let kubectl = upstream_kubectl("1.33")?;
    let kc = cp.api.kubeconfig();
    let out = run_kubectl(
        &kubectl,
        &kc,
        cp.api.dir(),
        &["delete", "namespace", "doomed", "--wait=false"],
        None,
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("namespace \"doomed\" deleted"), "{out:?}");

    // The held widget keeps it; the conditions say so.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually("conditions naming the remaining finalizer", Duration::from_secs(40), || async {
        namespaces.get_opt("doomed").await.ok().flatten().is_some_and(|ns| {
            ns.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| {
                    c.type_ == "NamespaceFinalizersRemaining"
                        && c.status == "True"
                        && c.message.as_deref()
                            == Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
                })
        })
    })
    .await
    .with_context(|| cp.logs())?;
    let left = widgets.list(&Default::default()).await?;
    let names: Vec<String> = left.items.iter().filter_map(|w| w.metadata.name.clone()).collect();
    assert_eq!(names, vec!["held"], "everything else is deleted already");
    assert!(pods.list(&Default::default()).await?.items.is_empty());

    // Its owner lets go: the namespace finishes by itself.
    widgets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    eventually("namespace gone", Duration::from_secs(40), || async {
        matches!(namespaces.get_opt("doomed").await, Ok(None))
    })
    .await
    .with_context(|| cp.logs())?;
    // System namespaces are untouched.
    assert!(namespaces.get_opt("kube-system").await?.is_some());
    Ok(())
}
