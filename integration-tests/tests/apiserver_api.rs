//! kube-apiserver over HTTPS, driven by kube-rs and raw requests: CRUD,
//! errors of every kind, patches, server-side apply, pagination, watch
//! resume and 410, CRDs, deletion, service allocation, authentication.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::http::{get, post_json, request};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 0,
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}),
    )
    .expect("configmap")
}

#[tokio::test(flavor = "multi_thread")]
async fn crud_and_every_error_shape() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Namespaces carry their name as a label, the system ones too.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for ns in ["default", "kube-system"] {
        let labels = namespaces.get(ns).await?.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("kubernetes.io/metadata.name").map(String::as_str), Some(ns));
    }

    // Create, get, update, list.
    let created = cms.create(&PostParams::default(), &cm("a")).await?;
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());
    let mut got = cms.get("a").await?;
    assert_eq!(
        got.data.as_ref().and_then(|d| d.get("k")).map(String::as_str),
        Some("v")
    );
    got.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = cms.replace("a", &PostParams::default(), &got).await?;
    assert_ne!(updated.metadata.resource_version, got.metadata.resource_version);
    assert_eq!(cms.list(&ListParams::default()).await?.items.len(), 1);

    // 409 Conflict on a stale resourceVersion; nothing written.
    let stale = cms
        .replace("a", &PostParams::default(), &got)
        .await
        .expect_err("stale update");
    assert_eq!(api_code(&stale), 409);
    assert_eq!(
        cms.get("a").await?.metadata.resource_version,
        updated.metadata.resource_version
    );
    // 409 AlreadyExists.
    let dup = cms
        .create(&PostParams::default(), &cm("a"))
        .await
        .expect_err("duplicate");
    match &dup {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("{other:?}"),
    }
    // 404.
    let missing = cms.get("nope").await.expect_err("missing");
    assert_eq!(api_code(&missing), 404);
    let r = get(&client, "/apis/nope.example.com/v1/things").await?;
    assert_eq!(r.code, 404);
    // 422 with one cause per bad field.
    let r = post_json(
        &client,
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "labels": {"a/b/c": "x"}}}),
    )
    .await?;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["reason"], "Invalid");
    let causes = r.body["details"]["causes"].as_array().expect("causes");
    let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
    assert!(fields.contains(&"metadata.name"), "{causes:?}");
    assert!(fields.iter().any(|f| f.starts_with("metadata.labels")), "{causes:?}");
    // 400 malformed body.
    let r = request(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/json"),
        b"{not json".to_vec(),
    )
    .await?;
    assert_eq!((r.code, r.body["reason"].as_str()), (400, Some("BadRequest")));
    // A malformed protobuf body is a 400 that says where it broke.
    let r = request(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/vnd.kubernetes.protobuf"),
        b"k8s\0\x0a\x05\x0a\x02v1".to_vec(),
    )
    .await?;
    assert_eq!(
        (r.code, r.body["reason"].as_str()),
        (400, Some("BadRequest")),
        "{}",
        r.body
    );
    assert!(r.body["message"].as_str().unwrap_or("").contains("byte"), "{}", r.body);
    // 415 unsupported media type; 406 not acceptable.
    let r = request(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/cbor"),
        vec![1, 2],
    )
    .await?;
    assert_eq!(r.code, 415);
    let req = http::Request::get("/api/v1/namespaces/default/configmaps/a")
        .header("Accept", "application/vnd.kubernetes.protobuf")
        .body(Vec::new())?;
    assert_eq!(integration_tests::http::send(&client, req).await?.code, 406);
    // 405: PUT on a collection.
    let r = request(
        &client,
        "PUT",
        "/api/v1/namespaces/default/configmaps",
        Some("application/json"),
        b"{}".to_vec(),
    )
    .await?;
    assert_eq!(r.code, 405);
    // 413 for a body over 3 MiB.
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": "x".repeat(3 * 1024 * 1024 + 10)}});
    let r = post_json(&client, "/api/v1/namespaces/default/configmaps", &big).await?;
    assert_eq!(r.code, 413);
    // Strict field validation rejects unknown fields; the default warns.
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strict"}, "bogus": 1});
    let r = post_json(
        &client,
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        &body,
    )
    .await?;
    assert_eq!(r.code, 400);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field \"bogus\""),
        "{}",
        r.body
    );
    let r = post_json(&client, "/api/v1/namespaces/default/configmaps", &body).await?;
    assert_eq!(r.code, 201);
    assert!(r.headers.get("warning").is_some());
    // dryRun writes nothing.
    let r = post_json(
        &client,
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}),
    )
    .await?;
    assert_eq!(r.code, 201);
    assert_eq!(api_code(&cms.get("dry").await.expect_err("dry run wrote")), 404);
    // A namespace that does not exist.
    let r = post_json(
        &client,
        "/api/v1/namespaces/ghost/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    )
    .await?;
    assert_eq!(r.code, 404);
    // generateName.
    let r = post_json(
        &client,
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
    )
    .await?;
    assert_eq!(r.code, 201);
    assert!(r.body["metadata"]["name"].as_str().unwrap_or("").starts_with("gen-"));

    // Anonymous requests: health is public, the API is not.
    let http = reqwest_like(&c).await?;
    assert_eq!(http.get("/healthz").await?, 200);
    // Ready only once the system objects exist, which they do by now.
    assert_eq!(http.get("/readyz").await?, 200);
    assert_eq!(http.get("/version").await?, 200);
    assert_eq!(http.get("/api/v1/namespaces").await?, 401);
    // Discovery and OpenAPI.
    let r = get(&client, "/apis/apps/v1").await?;
    let names: Vec<&str> = r.body["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert!(names.contains(&"deployments") && names.contains(&"deployments/scale"));
    let r = get(&client, "/openapi/v3").await?;
    assert!(r.body["paths"]["api/v1"].is_object());
    let r = get(&client, "/metrics").await?;
    assert!(r.body.as_str().unwrap_or("").contains("apiserver_request_total"));
    Ok(())
}

/// A client with the cluster CA and no credentials.
struct Anonymous {
    client: kube::Client,
}

impl Anonymous {
    async fn get(&self, path: &str) -> anyhow::Result<u16> {
        Ok(get(&self.client, path).await?.code)
    }
}

async fn reqwest_like(c: &ApiServers) -> anyhow::Result<Anonymous> {
    let mut cfg = kube::Config::new(c.url(0).parse()?);
    cfg.root_cert = Some(vec![pem_to_der(&c.ca_pem()?)?]);
    Ok(Anonymous {
        client: kube::Client::try_from(cfg)?,
    })
}

fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn patches_of_every_type_and_server_side_apply() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox:1"}]}}}
    }))?;
    let created = deploys.create(&PostParams::default(), &d).await?;
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec.as_ref().and_then(|s| s.replicas), Some(1), "defaulted");

    // Strategic merge: containers merge by name.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}}});
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await?;
    let cs = p
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    assert_eq!(cs.len(), 2, "strategic merge keeps the other container");
    assert_eq!(cs[0].image.as_deref(), Some("nginx:1.26"));
    assert_eq!(p.metadata.generation, Some(2), "spec change bumps generation");
    // JSON merge patch: lists replace.
    let merge = json!({"metadata": {"labels": {"tier": "front"}}});
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(merge))
        .await?;
    assert_eq!(
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("tier"))
            .map(String::as_str),
        Some("front")
    );
    assert_eq!(p.metadata.generation, Some(2), "metadata change keeps generation");
    // JSON patch, including a failing test op (422, nothing written).
    let jp: json_patch_ops::Ops =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]))?;
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp.0))
        .await?;
    assert_eq!(p.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let bad: json_patch_ops::Ops =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 9}]))?;
    let e = deploys
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(bad.0))
        .await
        .expect_err("test op fails");
    assert_eq!(api_code(&e), 422);

    // Scale subresource.
    let s = deploys.get_scale("web").await?;
    assert_eq!(s.spec.and_then(|s| s.replicas), Some(3));
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    assert_eq!(deploys.get("web").await?.spec.and_then(|s| s.replicas), Some(5));

    // Status is separate from spec.
    let st = json!({"status": {"replicas": 5, "readyReplicas": 2}});
    deploys
        .patch_status("web", &PatchParams::default(), &Patch::Merge(st))
        .await?;
    let mut cur = deploys.get("web").await?;
    assert_eq!(cur.status.as_ref().and_then(|s| s.ready_replicas), Some(2));
    cur.status = None;
    let after = deploys.replace("web", &PostParams::default(), &cur).await?;
    assert_eq!(
        after.status.and_then(|s| s.ready_replicas),
        Some(2),
        "main resource update keeps status"
    );

    // Server-side apply: create, then a conflict with another manager.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}});
    let r = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&applied))
        .await?;
    assert_eq!(r.data.as_ref().and_then(|d| d.get("a")).map(String::as_str), Some("1"));
    let managers: Vec<String> = r
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"alice".to_string()), "{managers:?}");
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "2"}});
    let e = cms
        .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&other))
        .await
        .expect_err("conflict");
    assert_eq!(api_code(&e), 409);
    let r = cms
        .patch("ssa", &PatchParams::apply("bob").force(), &Patch::Apply(&other))
        .await?;
    assert_eq!(r.data.as_ref().and_then(|d| d.get("a")).map(String::as_str), Some("2"));
    // An applier that stops applying a field removes it, unless another
    // manager owns it: alice applies b and c and a label, then only c.
    let alice = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ssa", "labels": {"team": "x"}}, "data": {"b": "1", "c": "1"}});
    cms.patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&alice))
        .await?;
    let alice = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"c": "1"}});
    let r = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&alice))
        .await?;
    let data = r.data.clone().unwrap_or_default();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["a", "c"],
        "bob still owns a; alice released b"
    );
    assert!(r.metadata.labels.unwrap_or_default().is_empty());
    // A field removed by an update has no owner left: applying it again
    // is no conflict.
    cms.patch(
        "ssa",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": null}})),
    )
    .await?;
    let carol = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "3"}});
    let r = cms
        .patch("ssa", &PatchParams::apply("carol"), &Patch::Apply(&carol))
        .await?;
    assert_eq!(r.data.as_ref().and_then(|d| d.get("a")).map(String::as_str), Some("3"));

    // Updates own only what they change (upstream's field manager): after
    // a client-side create, a merge patch by "setter" and a scale, an apply
    // of the same values takes ownership without conflict; changing them
    // conflicts with exactly the fields' updaters, in upstream's words.
    let owners = |d: &Deployment| -> Vec<(String, String, Value)> {
        d.metadata
            .managed_fields
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m.manager.unwrap_or_default(),
                    m.operation.unwrap_or_default(),
                    serde_json::to_value(m.fields_v1).unwrap_or_default(),
                )
            })
            .collect()
    };
    let base = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "owned", "annotations": {"example.com/team": "a"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "o"}}, "template": {"metadata": {"labels": {"app": "o"}},
            "spec": {"containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": 80}]}]}}}
    });
    deploys
        .create(&PostParams::default(), &serde_json::from_value(base.clone())?)
        .await?;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}}});
    let d = deploys
        .patch(
            "owned",
            &PatchParams {
                field_manager: Some("setter".into()),
                ..PatchParams::default()
            },
            &Patch::Strategic(image),
        )
        .await?;
    let o = owners(&d);
    assert_eq!(o.len(), 2, "{o:?}");
    let set_of = |who: &str| {
        o.iter()
            .find(|(m, _, _)| m == who)
            .map(|(_, op, set)| (op.clone(), set.clone()))
    };
    assert_eq!(
        set_of("setter"),
        Some((
            "Update".to_string(),
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {"f:image": {}}}}}}})
        ))
    );
    // The creator (kube-rs sends no user agent: "unknown") lost the image.
    let (_, creator) = set_of("unknown").expect("creator");
    assert!(
        creator["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]
            .get("f:image")
            .is_none(),
        "{o:?}"
    );
    assert_eq!(
        creator["f:metadata"]["f:annotations"],
        json!({"f:example.com/team": {}})
    );
    let scale = json!({"spec": {"replicas": 3}});
    let r = request(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/owned/scale?fieldManager=scaler",
        Some("application/merge-patch+json"),
        serde_json::to_vec(&scale)?,
    )
    .await?;
    assert_eq!(r.code, 200, "{}", r.body);
    let mut same = base.clone();
    same["spec"]["replicas"] = json!(3);
    same["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
    let before = deploys.get("owned").await?;
    let d = deploys
        .patch("owned", &PatchParams::apply("applier"), &Patch::Apply(&same))
        .await?;
    assert_ne!(
        d.metadata.resource_version, before.metadata.resource_version,
        "ownership changed"
    );
    assert_eq!(owners(&d)[0].0, "applier", "Apply entries sort first");
    let again = deploys
        .patch("owned", &PatchParams::apply("applier"), &Patch::Apply(&same))
        .await?;
    assert_eq!(
        again.metadata.resource_version, d.metadata.resource_version,
        "a no-op apply writes nothing"
    );
    let mut changed = same.clone();
    changed["spec"]["replicas"] = json!(4);
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:3");
    let r = request(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/owned?fieldManager=other",
        Some("application/apply-patch+yaml"),
        serde_json::to_vec(&changed)?,
    )
    .await?;
    assert_eq!(r.code, 409, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Apply failed with 4 conflicts: conflicts with \"applier\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"c\"].image\nconflicts with \"scaler\" with subresource \"scale\" using apps/v1:\n- .spec.replicas\nconflicts with \"setter\" using apps/v1:\n- .spec.template.spec.containers[name=\"c\"].image"
    );
    assert_eq!(
        r.body["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"applier\"", "field": ".spec.replicas"})
    );
    Ok(())
}

mod json_patch_ops {
    /// JSON patch operations as kube-rs takes them.
    #[derive(serde::Deserialize)]
    pub struct Ops(pub json_patch::Patch);
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_selectors_and_watch_resume() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let mut m = cm(&format!("cm-{i:02}"));
        m.metadata.labels = Some(
            [(
                "parity".to_string(),
                if i % 2 == 0 { "even" } else { "odd" }.to_string(),
            )]
            .into(),
        );
        cms.create(&PostParams::default(), &m).await?;
    }
    // Pages of 10 from one snapshot, even with a write in between.
    let first = cms.list(&ListParams::default().limit(10)).await?;
    assert_eq!(first.items.len(), 10);
    let token = first.metadata.continue_.clone().expect("continue");
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    cms.create(&PostParams::default(), &cm("cm-99")).await?;
    let second = cms
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await?;
    let third = cms
        .list(
            &ListParams::default()
                .limit(10)
                .continue_token(second.metadata.continue_.as_deref().expect("continue")),
        )
        .await?;
    assert_eq!(
        second.items.len() + third.items.len(),
        15,
        "the snapshot excludes the later write"
    );
    assert!(third.metadata.continue_.as_deref().unwrap_or("").is_empty());
    // Label and field selectors.
    let even = cms.list(&ListParams::default().labels("parity=even")).await?;
    assert_eq!(even.items.len(), 13);
    let set = cms
        .list(&ListParams::default().labels("parity in (odd),parity!=even"))
        .await?;
    assert_eq!(set.items.len(), 12);
    let one = cms.list(&ListParams::default().fields("metadata.name=cm-03")).await?;
    assert_eq!(one.items.len(), 1);
    let r = get(
        &client,
        "/api/v1/namespaces/default/configmaps?fieldSelector=spec.bogus%3Dx",
    )
    .await?;
    assert_eq!(r.code, 400);
    // A bad continue token.
    let r = get(
        &client,
        "/api/v1/namespaces/default/configmaps?limit=1&continue=garbage",
    )
    .await?;
    assert_eq!(r.code, 400);

    // Watch from a resource version: exactly the later events, in order.
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .expect("rv");
    cms.create(&PostParams::default(), &cm("w1")).await?;
    cms.delete("cm-00", &DeleteParams::default()).await?;
    let mut stream = cms.watch(&WatchParams::default().timeout(10), &rv).await?.boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await?? {
            Some(WatchEvent::Added(o)) => seen.push(format!("ADDED {}", o.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Deleted(o)) => seen.push(format!("DELETED {}", o.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Modified(o)) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Bookmark(_)) => {}
            Some(WatchEvent::Error(e)) => panic!("{e:?}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["ADDED w1", "DELETED cm-00"]);
    // Raw watch stream: newline-delimited JSON with bookmarks on request.
    let r = get(&client, &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1&allowWatchBookmarks=true")).await?;
    let text = match &r.body {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let first_line: Value = serde_json::from_str(text.lines().next().unwrap_or("{}"))?;
    assert_eq!(first_line["type"], "ADDED");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn compacted_resource_version_is_410_gone() -> anyhow::Result<()> {
    // A watch cache window of 2 events: the cache (loaded at start) serves
    // a watch from a revision in its window even once the store compacted
    // it, as upstream's does; older ones go to the store, which says 410.
    let c = ApiServers::start_with(
        1,
        &["--etcd-compaction-interval", "1s", "--default-watch-cache-size", "2"],
    )
    .await?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = cms.create(&PostParams::default(), &cm("old")).await?;
    let old_rv = first.metadata.resource_version.clone().expect("rv");
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("n{i}"))).await?;
    }
    // Wait for auto-compaction to pass the old revision.
    let mut gone = false;
    for _ in 0..100 {
        let r = get(
            &client,
            &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old_rv}&timeoutSeconds=1"),
        )
        .await?;
        let text = r.body.as_str().map(String::from).unwrap_or_else(|| r.body.to_string());
        if let Some(line) = text.lines().next()
            && let Ok(ev) = serde_json::from_str::<Value>(line)
            && ev["type"] == "ERROR"
        {
            assert_eq!(ev["object"]["code"], 410);
            assert_eq!(ev["object"]["reason"], "Expired");
            gone = true;
            break;
        }
        cms.create(&PostParams::default(), &cm(&format!("tick-{}", rand::random::<u32>())))
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "watch from a compacted revision never returned 410");
    // Reading a list at an exact compacted revision is 410 too.
    let r = get(
        &client,
        &format!("/api/v1/namespaces/default/configmaps?resourceVersion={old_rv}&resourceVersionMatch=Exact"),
    )
    .await?;
    assert_eq!(r.code, 410);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_resources_are_served_validated_and_removed_with_their_crd() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "replicas": {"type": "integer"},
                        "color": {"type": "string", "default": "red"}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}]}
    });
    let r = post_json(&client, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &crd).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let ar = kube::discovery::ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 2, "replicas": 1, "junk": true}}))?;
    let created = widgets.create(&PostParams::default(), &w).await?;
    assert_eq!(created.data["spec"]["color"], "red", "defaulted");
    assert!(created.data["spec"].get("junk").is_none(), "pruned");
    let bad: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"size": 0}}))?;
    let e = widgets.create(&PostParams::default(), &bad).await.expect_err("invalid");
    assert_eq!(api_code(&e), 422);
    // Status and scale subresources.
    widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1}})),
        )
        .await?;
    widgets
        .patch_scale(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await?;
    let w1 = widgets.get("w1").await?;
    assert_eq!(w1.data["spec"]["replicas"], 4);
    assert_eq!(w1.data["status"]["replicas"], 1);
    // Discovery lists it; the table has its printer column.
    let r = get(&client, "/apis/example.com/v1").await?;
    assert_eq!(r.body["resources"][0]["name"], "widgets");
    let req = http::Request::get("/apis/example.com/v1/namespaces/default/widgets")
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())?;
    let t = integration_tests::http::send(&client, req).await?;
    let cols: Vec<&str> = t.body["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(cols.contains(&"Size"), "{cols:?}");
    // Strategic merge patch is not for custom resources.
    let r = request(
        &client,
        "PATCH",
        "/apis/example.com/v1/namespaces/default/widgets/w1",
        Some("application/strategic-merge-patch+json"),
        b"{}".to_vec(),
    )
    .await?;
    assert_eq!(r.code, 415);
    // Custom resources have no protobuf form.
    let r = request(
        &client,
        "POST",
        "/apis/example.com/v1/namespaces/default/widgets",
        Some("application/vnd.kubernetes.protobuf"),
        b"k8s\0".to_vec(),
    )
    .await?;
    assert_eq!(r.code, 415);
    // Deleting the CRD removes its objects and its endpoints.
    let r = request(
        &client,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        None,
        Vec::new(),
    )
    .await?;
    assert_eq!(r.code, 200);
    let r = get(&client, "/apis/example.com/v1/namespaces/default/widgets").await?;
    assert_eq!(r.code, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_finalizers_grace_and_preconditions() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Finalizers hold an object until removed.
    let mut m = cm("held");
    m.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &m).await?;
    cms.delete("held", &DeleteParams::default()).await?;
    let held = cms.get("held").await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert_eq!(api_code(&cms.get("held").await.expect_err("gone")), 404);
    // Foreground propagation adds its finalizer (the garbage collector
    // finishes it).
    cms.create(&PostParams::default(), &cm("fg")).await?;
    cms.delete("fg", &DeleteParams::foreground()).await?;
    let fg = cms.get("fg").await?;
    assert_eq!(fg.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]));
    // Preconditions.
    cms.create(&PostParams::default(), &cm("pre")).await?;
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_code(&cms.delete("pre", &dp).await.expect_err("precondition")), 409);
    // Pods: bound pods are deleted gracefully, unbound ones at once.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = |name: &str, node: Option<&str>| -> Pod {
        let mut v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        serde_json::from_value(v).expect("pod")
    };
    let created = pods
        .create(&PostParams::default(), &pod("bound", Some("node-1")))
        .await?;
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    let spec = created.spec.expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"));
    pods.delete("bound", &DeleteParams::default()).await?;
    let p = pods.get("bound").await?;
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    pods.create(&PostParams::default(), &pod("free", None)).await?;
    pods.delete("free", &DeleteParams::default()).await?;
    assert_eq!(api_code(&pods.get("free").await.expect_err("deleted at once")), 404);
    // Binding assigns a node exactly once.
    pods.create(&PostParams::default(), &pod("tobind", None)).await?;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "tobind"}, "target": {"kind": "Node", "name": "node-2"}});
    let r = post_json(&client, "/api/v1/namespaces/default/pods/tobind/binding", &binding).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = post_json(&client, "/api/v1/namespaces/default/pods/tobind/binding", &binding).await?;
    assert_eq!(r.code, 409);
    assert_eq!(
        pods.get("tobind").await?.spec.and_then(|s| s.node_name).as_deref(),
        Some("node-2")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn service_ips_and_node_ports_are_allocated_once() -> anyhow::Result<()> {
    let c = ApiServers::start_with(
        1,
        &[
            "--service-cluster-ip-range",
            "10.96.0.0/28",
            "--service-node-port-range",
            "30000-30005",
        ],
    )
    .await?;
    let client = c.client().await?;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let kubernetes = svcs.get("kubernetes").await?;
    assert_eq!(kubernetes.spec.and_then(|s| s.cluster_ip).as_deref(), Some("10.96.0.1"));
    let svc = |name: &str, extra: Value| -> Service {
        let mut v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}});
        if let Value::Object(m) = extra {
            for (k, x) in m {
                v["spec"][k] = x;
            }
        }
        serde_json::from_value(v).expect("service")
    };
    let mut ips = std::collections::HashSet::new();
    for i in 0..5 {
        let s = svcs
            .create(&PostParams::default(), &svc(&format!("s{i}"), json!({})))
            .await?;
        let ip = s.spec.and_then(|s| s.cluster_ip).expect("ip");
        assert!(ip.starts_with("10.96.0."), "{ip}");
        assert!(ips.insert(ip), "an IP was handed out twice");
    }
    let np = svcs
        .create(&PostParams::default(), &svc("np", json!({"type": "NodePort"})))
        .await?;
    let port = np
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p[0].node_port)
        .expect("node port");
    assert!((30000..=30005).contains(&port));
    let taken = svc(
        "np2",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}),
    );
    assert_eq!(
        api_code(&svcs.create(&PostParams::default(), &taken).await.expect_err("taken")),
        422
    );
    // Deleting releases: the exact IP can be requested again.
    let s0 = svcs.get("s0").await?.spec.and_then(|s| s.cluster_ip).expect("ip");
    let dup = svc("dup", json!({"clusterIP": s0}));
    assert_eq!(
        api_code(&svcs.create(&PostParams::default(), &dup).await.expect_err("in use")),
        422
    );
    svcs.delete("s0", &DeleteParams::default()).await?;
    let again = svcs.create(&PostParams::default(), &dup).await?;
    assert_eq!(again.spec.and_then(|s| s.cluster_ip), Some(s0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_crud_watch_patch_and_custom_objects() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_check.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir())
        .output()
        .await?;
    assert!(
        out.status.success(),
        "python client check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// One counter from an apiserver's `/metrics` (0 when absent).
async fn metric(client: &kube::Client, series: &str) -> anyhow::Result<u64> {
    let r = get(client, "/metrics").await?;
    let text = r.body.as_str().unwrap_or_default().to_string();
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0))
}

/// Names and resource versions of watch events, until `n` arrived.
async fn collect_events(
    mut stream: impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
    n: usize,
) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
            .await??
            .ok_or_else(|| anyhow::anyhow!("watch ended after {} events", seen.len()))?;
        let (ty, o) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => anyhow::bail!("watch error: {e:?}"),
        };
        let rv = o.metadata.resource_version.as_deref().unwrap_or("0").parse()?;
        seen.push((ty.to_string(), o.metadata.name.unwrap_or_default(), rv));
    }
    Ok(seen)
}

/// The watch cache: lists and watchers on one apiserver are served from its
/// cache (not the store), stay consistent with writes made through another
/// apiserver, and a watcher resuming from before the cache's event window is
/// served from the store without missing anything.
#[tokio::test(flavor = "multi_thread")]
async fn watch_cache_serves_consistent_lists_and_many_watchers() -> anyhow::Result<()> {
    let c = ApiServers::start_with(3, &["--default-watch-cache-size", "16"]).await?;
    let writer: Api<ConfigMap> = Api::namespaced(c.client_for(0).await?, "default");
    let reader_client = c.client_for(1).await?;
    let reader: Api<ConfigMap> = Api::namespaced(reader_client.clone(), "default");
    let cached = "apiserver_cache_list_total{resource_prefix=\"/registry/configmaps/\"}";
    let stored = "apiserver_storage_list_total{resource=\"configmaps\"}";

    // The first list starts the cache; lists go to the cache once it is primed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(&reader_client, cached).await? == 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the watch cache never served a list"
        );
        reader.list(&ListParams::default()).await?;
    }
    let start_rv = reader
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .expect("rv");
    let from_store_before = metric(&reader_client, stored).await?;

    // Many watchers from the same revision.
    let mut watchers = Vec::new();
    for _ in 0..20 {
        let s = reader
            .watch(&WatchParams::default().timeout(60), &start_rv)
            .await?
            .boxed();
        watchers.push(tokio::spawn(collect_events(s, 40)));
    }
    // Writes through apiserver 0; every list through apiserver 1 right after
    // a write sees it (consistent reads from the cache).
    let mut expected = Vec::new();
    for i in 0..20 {
        let name = format!("wc-{i:02}");
        let created = writer.create(&PostParams::default(), &cm(&name)).await?;
        let rv: i64 = created.metadata.resource_version.as_deref().unwrap_or("0").parse()?;
        expected.push(("ADDED".to_string(), name.clone(), rv));
        let listed = reader.list(&ListParams::default()).await?;
        assert!(
            listed
                .items
                .iter()
                .any(|o| o.metadata.name.as_deref() == Some(name.as_str())),
            "a list through another apiserver right after the write misses {name}"
        );
        let patched = writer
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"i": i.to_string()}})),
            )
            .await?;
        let rv: i64 = patched.metadata.resource_version.as_deref().unwrap_or("0").parse()?;
        expected.push(("MODIFIED".to_string(), name, rv));
    }
    for w in watchers {
        assert_eq!(w.await??, expected, "a cache watcher saw a different history");
    }
    assert_eq!(
        metric(&reader_client, stored).await?,
        from_store_before,
        "lists after the cache was primed must not read the store"
    );
    assert!(metric(&reader_client, cached).await? >= 21);

    // Resuming from the start is beyond the 16-event window: the store
    // serves it, in order and complete.
    let s = reader
        .watch(&WatchParams::default().timeout(30), &start_rv)
        .await?
        .boxed();
    assert_eq!(collect_events(s, 40).await?, expected);
    // Resuming from the middle of the window is served by the cache.
    let mid = &expected[30];
    let s = reader
        .watch(&WatchParams::default().timeout(30), &mid.2.to_string())
        .await?
        .boxed();
    assert_eq!(collect_events(s, 9).await?, expected[31..]);
    Ok(())
}

/// events.k8s.io/v1 Events are core/v1 Events in storage (as upstream), so
/// each API sees the other's events, with its own field names, in gets,
/// lists with field selectors, and watches.
#[tokio::test(flavor = "multi_thread")]
async fn events_are_shared_by_core_and_events_k8s_io() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let new_api: Api<Event> = Api::namespaced(client.clone(), "default");
    let core_api: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let mut watch = new_api.watch(&WatchParams::default().timeout(30), "0").await?.boxed();

    let ev: Event = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1"},
        "eventTime": "2026-01-02T03:04:05.000000Z",
        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
        "action": "Scaled", "reason": "ScalingUp", "type": "Normal",
        "regarding": {"kind": "Deployment", "name": "web", "namespace": "default", "apiVersion": "apps/v1"},
        "note": "scaled up to 3",
    }))?;
    new_api.create(&PostParams::default(), &ev).await?;
    // The core API reads it with core names, and selects it by them.
    let core = core_api.get("web.1").await?;
    assert_eq!(core.message.as_deref(), Some("scaled up to 3"));
    assert_eq!(core.involved_object.name.as_deref(), Some("web"));
    assert_eq!(core.reporting_component.as_deref(), Some("example.com/ctl"));
    let selected = core_api
        .list(&ListParams::default().fields("involvedObject.name=web,involvedObject.kind=Deployment"))
        .await?;
    assert_eq!(selected.items.len(), 1);
    // A core event shows under events.k8s.io with its names.
    let core_ev: CoreEvent = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.2"},
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"},
        "reason": "Old", "message": "from the core API", "type": "Warning", "count": 2,
        "firstTimestamp": "2026-01-02T03:04:05Z", "lastTimestamp": "2026-01-02T03:04:06Z",
        "source": {"component": "tester"},
    }))?;
    core_api.create(&PostParams::default(), &core_ev).await?;
    let raw = get(&client, "/apis/events.k8s.io/v1/namespaces/default/events/web.2").await?;
    assert_eq!(raw.body["note"], "from the core API");
    assert_eq!(raw.body["regarding"]["name"], "web");
    assert_eq!(raw.body["deprecatedCount"], 2);
    assert_eq!(raw.body["deprecatedSource"]["component"], "tester");
    let listed = get(
        &client,
        "/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name%3Dweb",
    )
    .await?;
    let names: Vec<&str> = listed.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["metadata"]["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["web.1", "web.2"]);
    // Both creations reach an events.k8s.io watcher, converted.
    let mut notes = Vec::new();
    while notes.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), watch.try_next()).await?? {
            Some(WatchEvent::Added(e)) => notes.push(e.note.unwrap_or_default()),
            Some(WatchEvent::Error(e)) => anyhow::bail!("watch error: {e:?}"),
            Some(_) => {}
            None => anyhow::bail!("watch ended"),
        }
    }
    assert_eq!(notes, ["scaled up to 3", "from the core API"]);
    Ok(())
}

/// Leader election over a Lease (component-base, kube-lease-manager's
/// server-side apply against our apiserver): a lease held by a dead holder
/// is taken only once it expires; one of two contenders leads; when it
/// stops, the other takes over; a leader that finishes releases the lease.
#[tokio::test(flavor = "multi_thread")]
async fn leader_election_hands_over_on_expiry_and_release() -> anyhow::Result<()> {
    use component_base::leader;
    use k8s_openapi::api::coordination::v1::Lease;
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let ghost: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "test-leader"},
        "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 3, "acquireTime": now, "renewTime": now},
    }))?;
    leases.create(&PostParams::default(), &ghost).await?;
    let held_since = std::time::Instant::now();
    let cfg = |identity: &str| leader::Config {
        namespace: "default".into(),
        name: "test-leader".into(),
        identity: identity.into(),
        lease_duration: 3,
        renew_before: 1,
    };
    let (led_tx, mut led_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut finish = std::collections::HashMap::new();
    let mut tasks = std::collections::HashMap::new();
    for id in ["a", "b"] {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        finish.insert(id, done_tx);
        let led = led_tx.clone();
        let client = client.clone();
        let cfg = cfg(id);
        tasks.insert(
            id,
            tokio::spawn(async move {
                leader::run(client, cfg, || async move {
                    let _ = led.send(id.to_string());
                    let _ = done_rx.await;
                    Ok(())
                })
                .await
            }),
        );
    }
    async fn within(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
        secs: u64,
    ) -> anyhow::Result<Option<String>> {
        Ok(tokio::time::timeout(Duration::from_secs(secs), rx.recv()).await?)
    }
    let first = within(&mut led_rx, 20).await?.expect("a leader");
    assert!(
        held_since.elapsed() >= Duration::from_secs(2),
        "the dead holder's lease was taken before it expired"
    );
    let second = if first == "a" { "b" } else { "a" };
    // Only one leads while the lease is held.
    assert!(within(&mut led_rx, 4).await.is_err(), "both contenders led at once");
    let holder = leases.get("test-leader").await?.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(first.as_str()));
    // The leader stops: the other takes over.
    tasks[first.as_str()].abort();
    assert_eq!(within(&mut led_rx, 20).await?.as_deref(), Some(second));
    let holder = leases.get("test-leader").await?.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(second));
    // A leader whose work ends releases the lease.
    let _ = finish.remove(second).expect("sender").send(());
    let task = tasks.remove(second).expect("task");
    tokio::time::timeout(Duration::from_secs(20), task).await???;
    let holder = leases.get("test-leader").await?.spec.and_then(|s| s.holder_identity);
    assert!(
        holder.as_deref().is_none_or(str::is_empty),
        "released lease still held by {holder:?}"
    );
    Ok(())
}

/// The admin kubeconfig's client certificate and key (PEM).
fn admin_identity(c: &ApiServers) -> anyhow::Result<(String, String)> {
    use base64::Engine;
    let kc: Value = serde_yaml::from_str(&std::fs::read_to_string(c.kubeconfig())?)?;
    let user = &kc["users"][0]["user"];
    let decode = |k: &str| -> anyhow::Result<String> {
        let b64 = user[k]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("kubeconfig has no {k}"))?;
        Ok(String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(b64)?,
        )?)
    };
    Ok((decode("client-certificate-data")?, decode("client-key-data")?))
}

/// Sends `head` (an HTTP/1.1 request head) over a fresh TLS connection to
/// the apiserver as admin; returns the response head and the connection.
async fn raw_request(
    c: &ApiServers,
    head: &str,
) -> anyhow::Result<(String, tokio_rustls::client::TlsStream<tokio::net::TcpStream>)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cert, key) = admin_identity(c)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(c.ca_pem()?.as_bytes()) {
        roots.add(ca?)?;
    }
    let cfg =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?,
                PrivateKeyDer::from_pem_slice(key.as_bytes())?,
            )?;
    let addr = c.url(0).trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1")?, tcp)
        .await?;
    tls.write_all(head.as_bytes()).await?;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(
            tls.read(&mut byte).await? == 1,
            "connection closed in the response head"
        );
        got.push(byte[0]);
    }
    Ok((String::from_utf8(got)?, tls))
}

/// Node `n1`, whose kubelet is a `FakeKubelet` on loopback.
async fn node_with_fake_kubelet(
    c: &ApiServers,
    client: &kube::Client,
) -> anyhow::Result<integration_tests::fake_kubelet::FakeKubelet> {
    let kubelet = integration_tests::fake_kubelet::FakeKubelet::start(&c.ca_pem()?).await?;
    let r = post_json(
        client,
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    )
    .await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = request(
        client,
        "PATCH",
        "/api/v1/nodes/n1/status",
        Some("application/merge-patch+json"),
        serde_json::to_vec(&json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
        }}))?,
    )
    .await?;
    assert_eq!(r.code, 200, "{}", r.body);
    Ok(kubelet)
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_logs_exec_attach_and_port_forward_reach_the_nodes_kubelet() -> anyhow::Result<()> {
    use integration_tests::apiserver_cluster::{run_kubectl, upstream_kubectl};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let _kubelet = node_with_fake_kubelet(&c, &client).await?;
    let pod = |name: &str, node: Option<&str>, containers: &[&str]| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
            "containers": containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>(),
        }});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    for p in [
        pod("web", Some("n1"), &["app"]),
        pod("multi", Some("n1"), &["a", "waiting"]),
        pod("pending", None, &["app"]),
    ] {
        let r = post_json(&client, "/api/v1/namespaces/default/pods", &p).await?;
        assert_eq!(r.code, 201, "{}", r.body);
    }

    // Upstream kubectl's logs: the kubelet gets the container's path and
    // the options, and what it writes comes back.
    let home = tempfile::tempdir()?;
    // (success, stdout, stderr) of a kubectl run.
    let kubectl = |bin: &std::path::Path, args: &[&str]| -> anyhow::Result<(bool, String, String)> {
        let out = run_kubectl(bin, &c.kubeconfig(), home.path(), args, None)?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (ok, stdout, stderr) = kubectl(&upstream_kubectl("1.33")?, &["logs", "web", "--tail=2", "--timestamps"])?;
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "/containerLogs/default/web/app?timestamps=true&tailLines=2\nline 1\nline 2\n"
    );
    // Ours, which picks the first container and says so, as upstream.
    let ours = integration_tests::store_cluster::workspace_bin("kubectl")?;
    let (ok, stdout, stderr) = kubectl(&ours, &["logs", "multi", "--since=2m", "-p"])?;
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "/containerLogs/default/multi/a?previous=true&sinceSeconds=120\nline 1\nline 2\n"
    );
    assert_eq!(stderr, "Defaulted container \"a\" out of: a, waiting\n");
    let (ok, _, stderr) = kubectl(&ours, &["logs", "multi", "-c", "waiting"])?;
    assert!(!ok);
    assert_eq!(
        stderr,
        "Error from server (BadRequest): container \"waiting\" in pod \"multi\" is waiting to start: ContainerCreating\n"
    );
    // kube-rs too.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let text = pods
        .logs(
            "multi",
            &kube::api::LogParams {
                container: Some("a".into()),
                previous: true,
                since_seconds: Some(60),
                ..Default::default()
            },
        )
        .await?;
    assert!(
        text.starts_with("/containerLogs/default/multi/a?previous=true&sinceSeconds=60\n"),
        "{text}"
    );

    // Errors, as upstream.
    let log = |q: &str| format!("/api/v1/namespaces/default/pods/{q}");
    let r = get(&client, &log("multi/log")).await?;
    assert_eq!(r.code, 400);
    assert_eq!(
        r.body["message"],
        "a container name must be specified for pod multi, choose one of: [a waiting]"
    );
    let r = get(&client, &log("web/log?container=nope")).await?;
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (400, Some("container nope is not valid for pod web"))
    );
    let r = get(&client, &log("web/log?tailLines=-1&limitBytes=0")).await?;
    assert_eq!((r.code, r.body["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(r.body["details"]["kind"], "PodLogOptions");
    let fields: Vec<&str> = r.body["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, ["tailLines", "limitBytes"]);
    let r = get(&client, &log("web/log?tailLines=x")).await?;
    assert_eq!(r.code, 400);
    // The kubelet's own refusal comes back with its code and message.
    let r = get(&client, &log("multi/log?container=waiting")).await?;
    assert_eq!(r.code, 400);
    assert_eq!(
        r.body["message"],
        "container \"waiting\" in pod \"multi\" is waiting to start: ContainerCreating"
    );
    // A pod on no node has an empty log; it cannot be exec'd into.
    let r = get(&client, &log("pending/log")).await?;
    assert_eq!((r.code, r.body.as_str()), (200, Some("")));
    let r = request(
        &client,
        "POST",
        &log("pending/exec?command=ls&stdout=true"),
        None,
        Vec::new(),
    )
    .await?;
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (400, Some("pod pending does not have a host assigned"))
    );
    let r = get(&client, &log("gone/log")).await?;
    assert_eq!(r.code, 404);
    // Exec is an upgrade or nothing.
    let r = request(
        &client,
        "POST",
        &log("web/exec?command=ls&stdout=true"),
        None,
        Vec::new(),
    )
    .await?;
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (400, Some("Upgrade request required"))
    );
    let r = request(&client, "PUT", &log("web/exec?command=ls"), None, Vec::new()).await?;
    assert_eq!(r.code, 405);

    // SPDY upgrades, and ones the apiserver does not know, go to the
    // kubelet as they came (with the kubelet's query names) and once it
    // switches protocols the bytes are spliced: here a SPDY exec session
    // and a SPDY port-forward through the apiserver, then an unknown
    // upgrade the fake kubelet echoes.
    let host = c.url(0).trim_start_matches("https://").to_string();
    let upgrade = |path: &str, protocol: &str, version: &str| {
        format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\nX-Stream-Protocol-Version: {version}\r\n\r\n",
            log(path)
        )
    };
    let ten_seconds = Duration::from_secs(10);
    let (resp, conn) = raw_request(
        &c,
        &upgrade(
            "web/exec?command=cat&stdin=true&stdout=true",
            "SPDY/3.1",
            "v4.channel.k8s.io",
        ),
    )
    .await?;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(
        lower.contains("x-fake-kubelet-request: /exec/default/web/app?input=1&output=1&command=cat\r\n"),
        "{resp}"
    );
    assert!(
        lower.contains("x-stream-protocol-version: v4.channel.k8s.io\r\n"),
        "{resp}"
    );
    let session = spdy::Connection::new(conn, spdy::Role::Client);
    let stream = |kind: &str| spdy::Headers::new().with("streamType", kind);
    let mut error = session.open(stream("error")).await?;
    let mut stdin = session.open(stream("stdin")).await?;
    let mut stdout = session.open(stream("stdout")).await?;
    stdin.write(b"ping through the apiserver").await?;
    stdin.close().await?;
    assert_eq!(
        tokio::time::timeout(ten_seconds, stdout.read_to_end()).await?,
        b"ping through the apiserver"
    );
    let status: Value = serde_json::from_slice(&tokio::time::timeout(ten_seconds, error.read_to_end()).await?)?;
    assert_eq!(status["status"], "Success", "{status}");
    session.close().await;

    let (resp, conn) = raw_request(&c, &upgrade("web/portforward", "SPDY/3.1", "portforward.k8s.io")).await?;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    let session = spdy::Connection::new(conn, spdy::Role::Client);
    let pair = |kind: &str| stream(kind).with("port", "8080").with("requestID", "0");
    let mut error = session.open(pair("error")).await?;
    error.close().await?;
    let mut data = session.open(pair("data")).await?;
    data.write(b"ping through the apiserver").await?;
    let mut got = Vec::new();
    while got.len() < 26 {
        let chunk = tokio::time::timeout(ten_seconds, data.read())
            .await?
            .expect("port-forward data");
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"PING THROUGH THE APISERVER");
    session.close().await;

    let (resp, mut conn) =
        raw_request(&c, &upgrade("multi/attach?container=a&stdout=1&stderr=1", "foo/1", "x")).await?;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-fake-kubelet-request: /attach/default/multi/a?output=1&error=1\r\n"),
        "{resp}"
    );
    conn.write_all(b"ping through the apiserver").await?;
    let mut buf = vec![0u8; 26];
    tokio::time::timeout(ten_seconds, conn.read_exact(&mut buf)).await??;
    assert_eq!(buf, b"PING THROUGH THE APISERVER");
    Ok(())
}

/// Runs a kubectl to completion (at most a minute): exit code, stdout,
/// stderr.
async fn kubectl_with_input(
    bin: &std::path::Path,
    c: &ApiServers,
    home: &std::path::Path,
    args: &[&str],
    input: Option<&str>,
) -> anyhow::Result<(i32, String, String)> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).await?;
    }
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_attach_and_port_forward_stream_through_the_apiserver() -> anyhow::Result<()> {
    use integration_tests::apiserver_cluster::upstream_kubectl;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let _kubelet = node_with_fake_kubelet(&c, &client).await?;
    let pods = "/api/v1/namespaces/default/pods";
    for (name, labels, containers, phase) in [
        ("web", json!({"app": "web"}), vec!["app"], "Running"),
        ("multi", json!({}), vec!["a", "b"], "Running"),
        ("done", json!({}), vec!["app"], "Succeeded"),
        ("starting", json!({}), vec!["app"], "Pending"),
    ] {
        let containers: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}))
            .collect();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": "n1", "containers": containers}});
        let r = post_json(&client, pods, &pod).await?;
        assert_eq!(r.code, 201, "{}", r.body);
        let r = request(
            &client,
            "PATCH",
            &format!("{pods}/{name}/status"),
            Some("application/merge-patch+json"),
            serde_json::to_vec(&json!({"status": {"phase": phase}}))?,
        )
        .await?;
        assert_eq!(r.code, 200, "{}", r.body);
    }
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "websvc"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}, {"name": "closed", "port": 81, "targetPort": 1}]}});
    let r = post_json(&client, "/api/v1/namespaces/default/services", &svc).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let r = post_json(&client, "/api/v1/namespaces/default/configmaps", &cm).await?;
    assert_eq!(r.code, 201, "{}", r.body);

    let home = tempfile::tempdir()?;
    let ours = integration_tests::store_cluster::workspace_bin("kubectl")?;
    let upstream = upstream_kubectl("1.33")?;
    let run = |bin: &std::path::Path, args: &[&str], input: Option<&str>| {
        let (bin, args, input) = (
            bin.to_path_buf(),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            input.map(str::to_string),
        );
        let (c, home) = (&c, home.path().to_path_buf());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl_with_input(&bin, c, &home, &args, input.as_deref()).await
        }
    };

    // Exec: both kubectls reach the container's kubelet endpoint over the
    // WebSocket protocol and print what the process wrote.
    for bin in [&ours, &upstream] {
        let (code, stdout, stderr) = run(bin, &["exec", "web", "--", "ls", "-l"], None).await?;
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.starts_with("/exec/default/web/app?") && stdout.ends_with("command=ls&command=-l\n"),
            "{stdout}"
        );
        // Standard input reaches the process and its end closes it.
        let (code, stdout, stderr) = run(bin, &["exec", "-i", "web", "--", "cat"], Some("hello\nworld\n")).await?;
        assert_eq!((code, stdout.as_str()), (0, "hello\nworld\n"), "{stderr}");
    }
    // The rest must match upstream exactly: exit codes, stdout and stderr.
    for (args, input) in [
        (vec!["exec", "web", "--", "exit", "3"], None),
        (vec!["exec", "multi", "--", "ls"], None),
        (vec!["exec", "-it", "web", "--", "cat"], Some("typed\n")),
        (vec!["exec", "done", "--", "ls"], None),
        (vec!["exec", "web", "ls"], None),
        (vec!["exec", "web"], None),
        (vec!["exec"], None),
        (vec!["exec", "nope", "--", "ls"], None),
        (vec!["exec", "web", "-c", "nope", "--", "ls"], None),
        (vec!["exec", "cm/x", "--", "ls"], None),
        (vec!["attach", "web"], None),
        (vec!["attach", "-i", "multi", "-c", "b"], Some("to b\n")),
        (vec!["attach", "web", "-c", "nope"], None),
        (vec!["attach", "done"], None),
        (vec!["port-forward", "starting", "80"], None),
        (vec!["port-forward", "web", "nope"], None),
        (vec!["port-forward", "web", "0"], None),
        (vec!["port-forward", "web", "70000"], None),
        (vec!["port-forward", "svc/websvc", "82"], None),
        (vec!["port-forward", "web"], None),
    ] {
        let theirs = run(&upstream, &args, input).await?;
        let mine = run(&ours, &args, input).await?;
        assert_eq!(mine, theirs, "kubectl {args:?}");
    }
    // With a terminal (`script` gives kubectl a pty), both kubectls: raw
    // mode, the window size sent first, and ^D passed through to end the
    // remote cat.
    for bin in [&ours, &upstream] {
        let line = format!("stty cols 100 rows 30; exec {} exec -it web -- cat", bin.display());
        let mut child = tokio::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("KUBECONFIG", c.kubeconfig())
            .env("HOME", home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut terminal = child.stdout.take().expect("stdout");
        let mut seen = Vec::new();
        let waited = tokio::time::timeout(Duration::from_secs(15), async {
            let mut buf = [0u8; 256];
            while !String::from_utf8_lossy(&seen).contains("}]") {
                let n = terminal.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "exec -it ended: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
            anyhow::Ok(())
        })
        .await;
        anyhow::ensure!(
            waited.is_ok(),
            "{}: no resize after {:?}",
            bin.display(),
            String::from_utf8_lossy(&seen)
        );
        waited??;
        assert_eq!(String::from_utf8_lossy(&seen), "[resize {\"Width\":100,\"Height\":30}]");
        let mut keys = child.stdin.take().expect("stdin");
        keys.write_all(b"typed here\x04").await?;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), terminal.read_to_end(&mut rest)).await??;
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
        drop(keys);
        assert!(status.success(), "{status}: {}", String::from_utf8_lossy(&rest));
        assert_eq!(String::from_utf8_lossy(&rest), "typed here");
    }

    // Workloads and services resolve to their pod.
    for target in ["deploy/web", "svc/websvc"] {
        if target.starts_with("deploy") {
            let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}});
            let r = post_json(&client, "/apis/apps/v1/namespaces/default/deployments", &d).await?;
            assert_eq!(r.code, 201, "{}", r.body);
        }
        let (code, stdout, stderr) = run(&ours, &["exec", target, "--", "id"], None).await?;
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.starts_with("/exec/default/web/app?"), "{target}: {stdout}");
    }

    // Port-forward: our kubectl listens, says where, and carries each
    // connection to the pod's port; the service's port 80 is the pod's
    // named port http (8080); its port 81 is the pod's port 1, which the
    // kubelet refuses.
    let mut child = tokio::process::Command::new(&ours)
        .args(["port-forward", "svc/websvc", ":80", ":81"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let within = |d: u64| Duration::from_secs(d);
    let mut listening = Vec::new();
    while listening.len() < 2 {
        let Some(line) = tokio::time::timeout(within(30), stdout.next_line()).await?? else {
            let mut why = String::new();
            while let Ok(Some(l)) = stderr.next_line().await {
                why += &l;
            }
            anyhow::bail!("port-forward ended early: {why}");
        };
        if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
            let (port, remote) = rest.split_once(" -> ").expect("arrow");
            listening.push((port.parse::<u16>()?, remote.to_string()));
        }
    }
    assert_eq!(listening[0].1, "8080");
    assert_eq!(listening[1].1, "1");
    let (http, refusing) = (listening[0].0, listening[1].0);
    for round in ["first", "second"] {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", http)).await?;
        conn.write_all(format!("{round} connection").as_bytes()).await?;
        let mut buf = vec![0u8; round.len() + 11];
        if let Err(e) = tokio::time::timeout(within(10), conn.read_exact(&mut buf)).await? {
            let mut why = String::new();
            while let Ok(Ok(Some(l))) = tokio::time::timeout(within(1), stderr.next_line()).await {
                why += &l;
            }
            anyhow::bail!("{round} connection: {e}: {why}");
        }
        assert_eq!(String::from_utf8(buf)?, format!("{round} connection").to_uppercase());
        // (After any remaining `Forwarding from [::1]...` lines.)
        let line = loop {
            let line = tokio::time::timeout(within(10), stdout.next_line()).await??;
            if !line.as_deref().is_some_and(|l| l.starts_with("Forwarding from [::1]:")) {
                break line;
            }
        };
        assert_eq!(
            line.as_deref(),
            Some(format!("Handling connection for {http}").as_str())
        );
    }
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", refusing)).await?;
    conn.write_all(b"x").await?;
    loop {
        let line = tokio::time::timeout(within(10), stderr.next_line())
            .await??
            .expect("stderr ended");
        if line.contains("error forwarding port 1 to pod") {
            assert!(
                line.starts_with(&format!("an error occurred forwarding {refusing} -> 1: ")),
                "{line}"
            );
            break;
        }
    }
    child.kill().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_need_a_namespace_that_exists_and_is_not_terminating() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let cm_in = |ns: &str, name: &str| {
        let client = client.clone();
        let path = format!("/api/v1/namespaces/{ns}/configmaps");
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        async move { post_json(&client, &path, &body).await }
    };
    let r = cm_in("missing", "a").await?;
    assert_eq!(r.code, 404, "{}", r.body);
    assert_eq!(r.body["message"], "namespaces \"missing\" not found");
    assert_eq!(r.body["details"]["kind"], "namespaces");

    // A namespace is usable at once, before any cache has seen it.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "life"}});
    let r = post_json(&client, "/api/v1/namespaces", &ns).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = cm_in("life", "a").await?;
    assert_eq!(r.code, 201, "{}", r.body);

    // Deleted, it terminates (its `kubernetes` finalizer waits for the
    // namespace controller); creates are refused at once, and still once
    // the watch cache has the deletion.
    let r = request(&client, "DELETE", "/api/v1/namespaces/life", None, Vec::new()).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["status"]["phase"], "Terminating");
    let refused =
        "configmaps \"b\" is forbidden: unable to create new content in namespace life because it is being terminated";
    let r = cm_in("life", "b").await?;
    assert_eq!((r.code, r.body["message"].as_str()), (403, Some(refused)), "{}", r.body);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let r = get(&client, "/api/v1/namespaces/life?resourceVersion=0").await?;
            if r.body["metadata"]["deletionTimestamp"].is_string() {
                return anyhow::Ok(());
            }
            tokio::task::yield_now().await;
        }
    })
    .await??;
    let r = cm_in("life", "b").await?;
    assert_eq!((r.code, r.body["message"].as_str()), (403, Some(refused)), "{}", r.body);
    assert_eq!(r.body["details"], json!({"name": "b", "kind": "configmaps"}));

    // Deleting again changes nothing while the controller's finalizer is
    // there; clearing it through `finalize` removes the namespace.
    let r = request(&client, "DELETE", "/api/v1/namespaces/life", None, Vec::new()).await?;
    assert_eq!(
        (r.code, &r.body["spec"]["finalizers"]),
        (200, &json!(["kubernetes"])),
        "{}",
        r.body
    );
    let mut ns = get(&client, "/api/v1/namespaces/life").await?.body;
    ns["spec"]["finalizers"] = json!([]);
    let r = request(
        &client,
        "PUT",
        "/api/v1/namespaces/life/finalize",
        Some("application/json"),
        serde_json::to_vec(&ns)?,
    )
    .await?;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = get(&client, "/api/v1/namespaces/life").await?;
    assert_eq!(r.code, 404, "{}", r.body);
    Ok(())
}

/// The review APIs and service-account tokens as upstream authenticates
/// them: TokenRequest binds a token to a pod; the token is good only for
/// its audiences and only while its service account and pod exist; a
/// TokenReview reports exactly what a request with the token would get; the
/// access reviews answer from the policy the server enforces; upstream
/// kubectl's `auth whoami` and `auth can-i` work.
#[tokio::test(flavor = "multi_thread")]
async fn token_and_access_reviews_answer_as_the_server_authenticates() -> anyhow::Result<()> {
    use integration_tests::apiserver_cluster::{run_kubectl, upstream_kubectl};
    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    let files = tempfile::tempdir()?;
    let tokens = files.path().join("tokens.csv");
    std::fs::write(&tokens, "s3cret,alice,1001,\"dev,ops\"\n")?;
    let c = ApiServers::start_with(1, &["--token-auth-file", tokens.to_str().unwrap_or_default()]).await?;
    let client = c.client().await?;
    let review = |token: &str, audiences: &[&str]| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": {"token": token, "audiences": audiences}})
    };
    let token_reviews = "/apis/authentication.k8s.io/v1/tokenreviews";
    let ns = "/api/v1/namespaces/default";

    // A service account, a pod running as it, and a token bound to the pod.
    let r = post_json(
        &client,
        &format!("{ns}/serviceaccounts"),
        &json!({"metadata": {"name": "robot"}}),
    )
    .await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let sa_uid = r.body["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let pod = |name: &str, sa: &str| json!({"metadata": {"name": name}, "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "busybox"}]}});
    let r = post_json(&client, &format!("{ns}/pods"), &pod("runner", "robot")).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let pod_uid = r.body["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let request_token = |spec: Value| {
        let client = client.clone();
        async move {
            post_json(
                &client,
                &format!("{ns}/serviceaccounts/robot/token"),
                &json!({"spec": spec}),
            )
            .await
        }
    };
    let r = request_token(json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "runner"}})).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["spec"]["audiences"], json!([ISSUER]));
    assert_eq!(r.body["spec"]["boundObjectRef"]["uid"], json!(pod_uid));
    let pod_token = r.body["status"]["token"].as_str().unwrap_or_default().to_string();

    // The token works against the API, as the service account; whoami
    // (SelfSubjectReview) tells what the server saw.
    let robot = c.token_client(&pod_token).await?;
    let who = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let r = post_json(&robot, "/apis/authentication.k8s.io/v1/selfsubjectreviews", &who).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let info = &r.body["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:robot");
    assert_eq!(info["uid"], json!(sa_uid));
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["runner"])
    );
    assert_eq!(info["extra"]["authentication.kubernetes.io/pod-uid"], json!([pod_uid]));
    assert!(
        info["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .is_some_and(|c| c.starts_with("JTI=")),
        "{info}"
    );

    // A TokenReview reports the same user, for the API's audience.
    let r = post_json(&client, token_reviews, &review(&pod_token, &[])).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["status"]["authenticated"], true);
    assert_eq!(r.body["status"]["user"], *info);
    assert_eq!(r.body["status"]["audiences"], json!([ISSUER]));
    assert_eq!(r.body["metadata"], json!({"creationTimestamp": null}));

    // A token for another audience is no good for the API; a review for
    // that audience accepts it.
    let r = request_token(json!({"audiences": ["vault"], "expirationSeconds": 7200})).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["spec"]["expirationSeconds"], 7200);
    let vault_token = r.body["status"]["token"].as_str().unwrap_or_default().to_string();
    let vault = c.token_client(&vault_token).await?;
    assert_eq!(get(&vault, "/api/v1/namespaces").await?.code, 401);
    let r = post_json(&client, token_reviews, &review(&vault_token, &["vault", "other"])).await?;
    assert_eq!(r.body["status"]["authenticated"], true, "{}", r.body);
    assert_eq!(r.body["status"]["audiences"], json!(["vault"]));
    let r = post_json(&client, token_reviews, &review(&vault_token, &[])).await?;
    assert_eq!(
        r.body["status"],
        json!({"user": {}, "error": format!("token audiences [\"vault\"] is invalid for the target audiences [\"{ISSUER}\"]")})
    );

    // Static tokens count for the API's audience only; unknown tokens and
    // empty ones are told apart as upstream does.
    let r = post_json(&client, token_reviews, &review("s3cret", &[])).await?;
    assert_eq!(
        r.body["status"]["user"],
        json!({"username": "alice", "uid": "1001", "groups": ["dev", "ops", "system:authenticated"]})
    );
    let alice = c.token_client("s3cret").await?;
    let r = post_json(&alice, "/apis/authentication.k8s.io/v1/selfsubjectreviews", &who).await?;
    assert_eq!(r.body["status"]["userInfo"]["username"], "alice");
    let r = post_json(&client, token_reviews, &review("s3cret", &["vault"])).await?;
    assert_eq!(r.body["status"]["error"], "invalid bearer token");
    let r = post_json(&client, token_reviews, &review("nonsense", &[])).await?;
    assert_eq!(r.body["status"], json!({"user": {}, "error": "invalid bearer token"}));
    let r = post_json(
        &client,
        token_reviews,
        &json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1"}),
    )
    .await?;
    assert_eq!((r.code, r.body["reason"].clone()), (400, json!("BadRequest")));
    assert_eq!(r.body["message"], "token is required for TokenReview in authentication");
    assert_eq!(get(&client, token_reviews).await?.code, 405);

    // TokenRequest's own checks.
    let r = post_json(
        &client,
        &format!("{ns}/configmaps"),
        &json!({"metadata": {"name": "cfg"}}),
    )
    .await?;
    assert_eq!(r.code, 201);
    let r = request_token(json!({"boundObjectRef": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}})).await?;
    assert_eq!(r.code, 400);
    assert_eq!(
        r.body["message"],
        "cannot bind token to object of type /v1, Kind=ConfigMap"
    );
    assert_eq!(
        post_json(&client, &format!("{ns}/pods"), &pod("other", "default"))
            .await?
            .code,
        201
    );
    let r = request_token(json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "other"}})).await?;
    assert_eq!(r.code, 400);
    assert_eq!(
        r.body["message"],
        "cannot bind token for serviceaccount \"robot\" to pod running with different serviceaccount name."
    );
    let r =
        request_token(json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "runner", "uid": "stale"}}))
            .await?;
    assert_eq!(r.code, 409, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap_or_default().starts_with(
        "Operation cannot be fulfilled on Pod \"runner\": the UID in the bound object reference (stale) does not match"
    ));
    let r = request_token(json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "gone"}})).await?;
    assert_eq!(
        (r.code, r.body["message"].clone()),
        (404, json!("pods \"gone\" not found"))
    );
    let r = request_token(json!({"expirationSeconds": 599})).await?;
    assert_eq!(r.code, 422);
    assert_eq!(r.body["details"]["causes"][0]["field"], "spec.expirationSeconds");

    // Deleting the pod (it is on no node: at once) invalidates its token;
    // deleting the service account invalidates every token of it, and a
    // new account of the same name does not revive them.
    let r = request(&client, "DELETE", &format!("{ns}/pods/runner"), None, Vec::new()).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    // The review reads the objects from the watch cache, which follows
    // the deletions shortly.
    let rejected = |token: String, audiences: &'static [&'static str], want: String| {
        let client = client.clone();
        async move {
            let body = review(&token, audiences);
            integration_tests::store_cluster::eventually(&want.clone(), Duration::from_secs(10), || {
                let (client, body, want) = (client.clone(), body.clone(), want.clone());
                async move {
                    match post_json(&client, token_reviews, &body).await {
                        Ok(r) => r.body["status"]["error"] == json!(want),
                        Err(_) => false,
                    }
                }
            })
            .await
        }
    };
    rejected(
        pod_token.clone(),
        &[],
        "service account token has been invalidated".into(),
    )
    .await?;
    assert_eq!(get(&robot, "/api/v1/namespaces").await?.code, 401);
    let r = request(
        &client,
        "DELETE",
        &format!("{ns}/serviceaccounts/robot"),
        None,
        Vec::new(),
    )
    .await?;
    assert_eq!(r.code, 200, "{}", r.body);
    rejected(
        vault_token.clone(),
        &["vault"],
        "serviceaccounts \"robot\" not found".into(),
    )
    .await?;
    let r = post_json(
        &client,
        &format!("{ns}/serviceaccounts"),
        &json!({"metadata": {"name": "robot"}}),
    )
    .await?;
    let new_uid = r.body["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    rejected(
        vault_token,
        &["vault"],
        format!("service account UID ({new_uid}) does not match claim ({sa_uid})"),
    )
    .await?;

    // Access reviews answer from the server's policy: authenticated users
    // may do anything; anonymous ones only read the public paths.
    let access = |kind: &str, spec: Value| json!({"apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec});
    let authz = "/apis/authorization.k8s.io/v1";
    let create_pods = json!({"verb": "create", "resource": "pods", "namespace": "default"});
    let r = post_json(
        &client,
        &format!("{authz}/selfsubjectaccessreviews"),
        &access("SelfSubjectAccessReview", json!({"resourceAttributes": create_pods})),
    )
    .await?;
    assert_eq!((r.code, r.body["status"].clone()), (201, json!({"allowed": true})));
    for (spec, allowed) in [
        (json!({"user": "alice", "resourceAttributes": create_pods}), true),
        (
            json!({"groups": ["system:authenticated"], "resourceAttributes": create_pods}),
            true,
        ),
        (
            json!({"user": "system:anonymous", "groups": ["system:unauthenticated"], "resourceAttributes": create_pods}),
            false,
        ),
        (
            json!({"user": "system:anonymous", "nonResourceAttributes": {"verb": "get", "path": "/healthz"}}),
            true,
        ),
    ] {
        let r = post_json(
            &client,
            &format!("{authz}/subjectaccessreviews"),
            &access("SubjectAccessReview", spec.clone()),
        )
        .await?;
        assert_eq!(
            (r.code, r.body["status"]["allowed"].clone()),
            (201, json!(allowed)),
            "{spec}: {}",
            r.body
        );
    }
    let r = post_json(
        &client,
        &format!("{authz}/subjectaccessreviews"),
        &access("SubjectAccessReview", json!({})),
    )
    .await?;
    assert_eq!(r.code, 422, "{}", r.body);
    let fields: Vec<&str> = r.body["details"]["causes"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["spec.resourceAttributes", "spec.user"]);
    let r = post_json(
        &client,
        &format!("{authz}/namespaces/default/localsubjectaccessreviews"),
        &access(
            "LocalSubjectAccessReview",
            json!({"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "other"}}),
        ),
    )
    .await?;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["details"]["causes"][0]["field"],
        "spec.resourceAttributes.namespace"
    );
    let rules = |ns: &str| access("SelfSubjectRulesReview", json!({"namespace": ns}));
    let r = post_json(&client, &format!("{authz}/selfsubjectrulesreviews"), &rules("")).await?;
    assert_eq!(
        (r.code, r.body["message"].clone()),
        (400, json!("no namespace on request"))
    );
    let r = post_json(&client, &format!("{authz}/selfsubjectrulesreviews"), &rules("default")).await?;
    assert_eq!(
        r.body["status"]["resourceRules"],
        json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}])
    );

    // Impersonation: the request is made as the impersonated user, who is
    // authorized like any other; groups without a user are refused.
    let as_user = |user: &str, group: Option<&str>| -> anyhow::Result<http::Request<Vec<u8>>> {
        let mut b = http::Request::builder().uri(format!("{ns}/pods"));
        if !user.is_empty() {
            b = b.header("Impersonate-User", user);
        }
        if let Some(g) = group {
            b = b.header("Impersonate-Group", g);
        }
        Ok(b.body(Vec::new())?)
    };
    let r = integration_tests::http::send(&client, as_user("system:anonymous", None)?).await?;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(r.body["details"], json!({"kind": "pods"}));
    let r = integration_tests::http::send(&client, as_user("bob", Some("devs"))?).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = integration_tests::http::send(&client, as_user("", Some("devs"))?).await?;
    assert_eq!(r.code, 500, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Internal error occurred: requested [{Group  devs    }] without impersonating a user"
    );

    // Upstream kubectl on top of them, and ours alike.
    let home = tempfile::tempdir()?;
    let upstream = upstream_kubectl("1.33")?;
    let ours = integration_tests::store_cluster::workspace_bin("kubectl")?;
    let run = |bin: &std::path::Path, args: &[&str]| -> anyhow::Result<(Option<i32>, String, String)> {
        let out = run_kubectl(bin, &c.kubeconfig(), home.path(), args, None)?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let kubectl = |args: &[&str]| -> anyhow::Result<(bool, String, String)> {
        let (code, stdout, stderr) = run(&upstream, args)?;
        Ok((code == Some(0), stdout, stderr))
    };
    let r = post_json(&client, &format!("{ns}/pods"), &pod("runner2", "robot")).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = request_token(json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "runner2"}})).await?;
    let bound = r.body["status"]["token"].as_str().unwrap_or_default().to_string();
    // A review created from a file, as `kubectl create -f` does (no
    // metadata: the schema must not require it).
    let sar = files.path().join("sar.yaml");
    std::fs::write(
        &sar,
        "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: alice\n  resourceAttributes: {verb: get, resource: pods, namespace: default}\n",
    )?;
    let sar = sar.to_str().unwrap_or_default().to_string();
    for args in [
        &["create", "-f", &sar][..],
        &["create", "-f", &sar, "-o", "yaml"],
        &["auth", "whoami"],
        &["auth", "whoami", "-o", "json"],
        &["auth", "whoami", "-o", "yaml"],
        &["--token", &bound, "auth", "whoami"],
        &["--token", &bound, "auth", "whoami", "-o", "json"],
        &["auth", "can-i", "create", "pods"],
        &["auth", "can-i", "list", "deployments.apps/web", "-n", "kube-system"],
        &["auth", "can-i", "get", "nodes"],
        &["auth", "can-i", "get", "/healthz"],
        &["auth", "can-i", "frob", "pods"],
        &["auth", "can-i", "get", "widgets.example.com"],
        &["auth", "can-i", "-q", "get", "pods"],
        &["auth", "can-i", "get"],
        &["auth", "can-i", "--list"],
        &["auth", "can-i", "--list", "--no-headers"],
        &["auth", "can-i", "--list", "pods"],
        &["auth", "can-i", "get", "pods", "--no-headers"],
        &["auth", "can-i", "get", "/x", "--subresource=log"],
        // Impersonation.
        &[
            "auth",
            "whoami",
            "--as=bob",
            "--as-group=devs",
            "--as-group=ops",
            "--as-uid=42",
        ],
        &["auth", "whoami", "--as=bob"],
        &["auth", "whoami", "--as=system:serviceaccount:default:robot"],
        &["auth", "can-i", "--list", "--as=bob"],
        &["get", "pods", "--as-group=devs"],
        // Tables are at least 6 columns wide, with or without headers.
        &["get", "pods", "--no-headers"],
        &[
            "get",
            "configmaps",
            "--no-headers",
            "-o",
            "custom-columns=N:.metadata.name",
        ],
    ] {
        // A SelfSubjectReview is stamped with the time of the request, and
        // a table's AGE column ticks between the two runs.
        let untimed = |(code, stdout, stderr): (Option<i32>, String, String)| {
            let stdout: Vec<String> = stdout
                .lines()
                .filter(|l| !l.contains("creationTimestamp"))
                .map(|l| {
                    let (head, last) = l.rsplit_once(' ').unwrap_or(("", l));
                    // "3s", "2m5s", "4d": digits and units, starting with a digit.
                    let is_age = last.starts_with(|c: char| c.is_ascii_digit())
                        && last.ends_with(['s', 'm', 'h', 'd', 'y'])
                        && last.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c));
                    if is_age { format!("{head} <age>") } else { l.to_string() }
                })
                .collect();
            (code, stdout.join("\n"), stderr)
        };
        assert_eq!(
            untimed(run(&ours, args)?),
            untimed(run(&upstream, args)?),
            "kubectl {}",
            args.join(" ")
        );
    }
    assert_eq!(
        kubectl(&["auth", "whoami"])?,
        (
            true,
            "ATTRIBUTE   VALUE\nUsername    admin\nGroups      [system:masters system:authenticated]\n".into(),
            String::new()
        )
    );
    assert_eq!(
        kubectl(&["auth", "can-i", "create", "deployments"])?,
        (true, "yes\n".into(), String::new())
    );
    let (ok, list, _) = kubectl(&["auth", "can-i", "--list"])?;
    assert!(
        ok && list
            .lines()
            .any(|l| l.split_whitespace().eq(["*.*", "[]", "[]", "[*]"])),
        "{list}"
    );
    let (ok, out, err) = kubectl(&["create", "token", "robot", "--audience", "vault", "--duration", "20m"])?;
    assert!(ok, "{err}");
    let r = post_json(&client, token_reviews, &review(out.trim(), &["vault"])).await?;
    assert_eq!(
        r.body["status"]["user"]["username"], "system:serviceaccount:default:robot",
        "{}",
        r.body
    );
    Ok(())
}

/// Field selectors over unset fields: upstream's field sets give every
/// selectable field its Go value, so an unset boolean is `false` and an
/// unset count `0` (kubectl's `--field-selector spec.unschedulable=false`,
/// client-side cordon checks).
#[tokio::test(flavor = "multi_thread")]
async fn field_selectors_see_unset_fields_as_their_zero_values() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    for (name, spec) in [("plain", json!({})), ("cordoned", json!({"unschedulable": true}))] {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?,
            )
            .await?;
    }
    let names = |l: kube::core::ObjectList<k8s_openapi::api::core::v1::Node>| -> Vec<String> {
        l.items.into_iter().filter_map(|n| n.metadata.name).collect()
    };
    let schedulable = nodes
        .list(&ListParams::default().fields("spec.unschedulable=false"))
        .await?;
    assert_eq!(names(schedulable), ["plain"]);
    let cordoned = nodes
        .list(&ListParams::default().fields("spec.unschedulable=true"))
        .await?;
    assert_eq!(names(cordoned), ["cordoned"]);
    let not_cordoned = nodes
        .list(&ListParams::default().fields("spec.unschedulable!=true"))
        .await?;
    assert_eq!(names(not_cordoned), ["plain"]);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )?,
    )
    .await?;
    let host = pods
        .list(&ListParams::default().fields("spec.hostNetwork=false,status.podIP="))
        .await?;
    assert_eq!(
        host.items.len(),
        1,
        "an unset hostNetwork is false, an unset podIP empty"
    );
    let rs: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), "default");
    rs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "r"}, "spec": {"replicas": 0,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))?,
    )
    .await?;
    let zero = rs.list(&ListParams::default().fields("status.replicas=0")).await?;
    assert_eq!(zero.items.len(), 1, "an unset status.replicas is 0");
    Ok(())
}

/// Upstream's DELETE answers: a `Status` (details: name, group, the
/// resource as `kind`, uid) once the object is gone, for every kind whose
/// registry does not set `ReturnDeletedObject`; the object itself for
/// those that do (pods, namespaces, services, ...) and for any object a
/// delete only marks (finalizers, a terminating namespace); 202 only
/// when such an object stays and `orphanDependents=false` was sent.
#[tokio::test(flavor = "multi_thread")]
async fn delete_answers_a_status_or_the_object_as_upstream() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let ns = "/api/v1/namespaces/default";
    let del = |path: String| {
        let client = client.clone();
        async move { request(&client, "DELETE", &path, None, Vec::new()).await }
    };

    // A ConfigMap gone at once: a Status, no code, kind = the resource.
    let r = post_json(
        &client,
        &format!("{ns}/configmaps"),
        &json!({"metadata": {"name": "a"}}),
    )
    .await?;
    let uid = r.body["metadata"]["uid"].clone();
    let r = del(format!("{ns}/configmaps/a")).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": "a", "kind": "configmaps", "uid": uid}})
    );
    // A dry run answers the same, and deletes nothing.
    post_json(
        &client,
        &format!("{ns}/configmaps"),
        &json!({"metadata": {"name": "dry"}}),
    )
    .await?;
    let r = del(format!("{ns}/configmaps/dry?dryRun=All")).await?;
    assert_eq!((r.code, r.body["kind"].as_str()), (200, Some("Status")), "{}", r.body);
    assert_eq!(get(&client, &format!("{ns}/configmaps/dry")).await?.code, 200);

    // Held by a finalizer: the object, marked; 202 when orphanDependents
    // is false.
    let held = json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    post_json(&client, &format!("{ns}/configmaps"), &held).await?;
    let r = del(format!("{ns}/configmaps/held")).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "ConfigMap");
    assert!(r.body["metadata"]["deletionTimestamp"].is_string(), "{}", r.body);
    let r = del(format!("{ns}/configmaps/held?orphanDependents=false")).await?;
    assert_eq!(r.code, 202, "{}", r.body);
    assert_eq!(r.body["kind"], "ConfigMap");

    // Pods return the deleted object (ReturnDeletedObject); kube-rs sees
    // Left for a pod and Right (the Status) for a ConfigMap.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))?;
    pods.create(&PostParams::default(), &pod).await?;
    let gone = pods.delete("p", &DeleteParams::default()).await?;
    assert!(
        gone.left().is_some_and(|p| p.metadata.name.as_deref() == Some("p")),
        "a pod's delete answers the pod"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("b")).await?;
    let status = cms
        .delete("b", &DeleteParams::default())
        .await?
        .right()
        .expect("a Status");
    assert_eq!(status.details.map(|d| d.kind), Some("configmaps".to_string()));

    // A custom resource: a Status naming its group.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let r = post_json(&client, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &crd).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let gadgets = "/apis/example.com/v1/namespaces/default/gadgets";
    let body = json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}});
    let created = integration_tests::store_cluster::eventually("the CRD is served", Duration::from_secs(10), || {
        let (client, body) = (client.clone(), body.clone());
        async move { post_json(&client, gadgets, &body).await.is_ok_and(|r| r.code == 201) }
    })
    .await;
    created?;
    let r = del(format!("{gadgets}/g")).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["details"]["group"], "example.com");
    assert_eq!(r.body["details"]["kind"], "gadgets");
    assert_eq!(r.body["details"]["name"], "g");

    // A namespace: its first delete marks it Terminating and answers it.
    post_json(&client, "/api/v1/namespaces", &json!({"metadata": {"name": "doomed"}})).await?;
    let r = del("/api/v1/namespaces/doomed".into()).await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "Namespace");
    assert_eq!(r.body["status"]["phase"], "Terminating");
    assert_eq!(r.body["spec"]["finalizers"], json!(["kubernetes"]));
    Ok(())
}

/// `componentstatuses`: the scheduler (running) and the controller-manager
/// (not running) probed on their secure ports, the store as `etcd-0`;
/// every answer carries upstream's deprecation warning, and upstream
/// kubectl prints its table.
#[tokio::test(flavor = "multi_thread")]
async fn component_statuses_probe_the_control_plane() -> anyhow::Result<()> {
    use integration_tests::components::Component;
    use integration_tests::store_cluster::free_port;
    let (sched_port, cm_port) = (free_port()?, free_port()?);
    let c = ApiServers::start_with(
        1,
        &[
            "--component-status-scheduler",
            &format!("127.0.0.1:{sched_port}"),
            "--component-status-controller-manager",
            &format!("127.0.0.1:{cm_port}"),
        ],
    )
    .await?;
    let sched = Component::scheduler(
        &c,
        "kube-scheduler",
        &["--leader-elect=false", "--secure-port", &sched_port.to_string()],
    )?;
    sched.wait_ready().await?;
    let client = c.client().await?;

    // Discovery: get and list, short name cs.
    let r = get(&client, "/api/v1").await?;
    let cs = r.body["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|x| x["name"] == "componentstatuses"))
        .cloned()
        .expect("componentstatuses in discovery");
    assert_eq!(cs["kind"], "ComponentStatus");
    assert_eq!(cs["namespaced"], false);
    assert_eq!(cs["verbs"], json!(["get", "list"]));
    assert_eq!(cs["shortNames"], json!(["cs"]));

    let r = get(&client, "/api/v1/componentstatuses").await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "ComponentStatusList");
    let warning = r.headers.get("warning").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(
        warning.contains("v1 ComponentStatus is deprecated in v1.19+"),
        "{warning}"
    );
    let by_name = |name: &str| {
        r.body["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["metadata"]["name"] == name))
            .map(|i| i["conditions"][0].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        by_name("scheduler"),
        json!({"type": "Healthy", "status": "True", "message": "ok"})
    );
    assert_eq!(
        by_name("etcd-0"),
        json!({"type": "Healthy", "status": "True", "message": "ok"})
    );
    let addr = format!("127.0.0.1:{cm_port}");
    assert_eq!(
        by_name("controller-manager"),
        json!({"type": "Healthy", "status": "False",
            "message": format!("Get \"https://{addr}/healthz\": dial tcp {addr}: connect: connection refused")})
    );
    let r = get(&client, "/api/v1/componentstatuses/scheduler").await?;
    assert_eq!(
        (r.code, r.body["kind"].as_str()),
        (200, Some("ComponentStatus")),
        "{}",
        r.body
    );
    let r = get(&client, "/api/v1/componentstatuses/nothing").await?;
    assert_eq!(r.code, 500, "upstream's storage answers a plain error: {}", r.body);
    assert_eq!(r.body["message"], "Component not found: nothing");
    let r = request(
        &client,
        "DELETE",
        "/api/v1/componentstatuses/scheduler",
        None,
        Vec::new(),
    )
    .await?;
    assert_eq!(r.code, 405);

    // Upstream kubectl: the table, and the warning on stderr.
    let kubectl = integration_tests::apiserver_cluster::upstream_kubectl("1.33")?;
    let home = tempfile::tempdir()?;
    let out = integration_tests::apiserver_cluster::run_kubectl(
        &kubectl,
        &c.kubeconfig(),
        home.path(),
        &["get", "cs"],
        None,
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let header: Vec<&str> = stdout.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "MESSAGE", "ERROR"], "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("scheduler") && l.contains("Healthy") && l.contains("ok")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("controller-manager") && l.contains("Unhealthy")),
        "{stdout}"
    );
    assert!(
        stderr.contains("Warning: v1 ComponentStatus is deprecated in v1.19+"),
        "{stderr}"
    );
    Ok(())
}

/// Every subresource discovery advertises answers its advertised verbs:
/// never 405, and a 404 only for the missing object (a NotFound naming
/// it), never for the route.
#[tokio::test(flavor = "multi_thread")]
async fn every_advertised_subresource_verb_is_served() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let mut gvs = vec!["/api/v1".to_string()];
    let groups = get(&client, "/apis").await?;
    for g in groups.body["groups"].as_array().into_iter().flatten() {
        for v in g["versions"].as_array().into_iter().flatten() {
            gvs.push(format!("/apis/{}", v["groupVersion"].as_str().unwrap_or("")));
        }
    }
    let mut checked = 0;
    for gv in gvs {
        let list = get(&client, &gv).await?;
        for res in list.body["resources"].as_array().into_iter().flatten() {
            let Some((plural, sub)) = res["name"].as_str().and_then(|n| n.split_once('/')) else {
                continue;
            };
            let scope = if res["namespaced"] == true {
                "/namespaces/default"
            } else {
                ""
            };
            let path = format!("{gv}{scope}/{plural}/missing/{sub}");
            for verb in res["verbs"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let (method, ct) = match verb {
                    "get" => ("GET", None),
                    "create" => ("POST", Some("application/json")),
                    "update" => ("PUT", Some("application/json")),
                    "patch" => ("PATCH", Some("application/merge-patch+json")),
                    "delete" => ("DELETE", None),
                    other => panic!("{path}: unexpected verb {other}"),
                };
                let body = if ct.is_some() { b"{}".to_vec() } else { Vec::new() };
                let r = request(&client, method, &path, ct, body).await?;
                assert_ne!(r.code, 405, "{method} {path}: {}", r.body);
                if r.code == 404 {
                    assert_eq!(r.body["details"]["name"], "missing", "{method} {path}: {}", r.body);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} subresource verbs advertised");
    Ok(())
}

/// `/openapi/v2` lists every operation as upstream's swagger.json does, in
/// JSON and in the protobuf form kubectl 1.27 reads: pods (with their
/// subresources), deployments' scale, a custom resource's paths.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_v2_carries_the_paths() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let r = post_json(&client, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &crd).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let gizmo = "/apis/example.com/v1/namespaces/{namespace}/gizmos/{name}";
    integration_tests::store_cluster::eventually("the CRD's paths", Duration::from_secs(10), || async {
        get(&client, "/openapi/v2")
            .await
            .is_ok_and(|r| r.body["paths"][gizmo].is_object())
    })
    .await?;
    let doc = get(&client, "/openapi/v2").await?.body;
    let paths = &doc["paths"];
    let pod = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
    assert_eq!(pod["get"]["operationId"], "readCoreV1NamespacedPod");
    assert_eq!(pod["get"]["x-kubernetes-action"], "get");
    assert_eq!(
        pod["get"]["x-kubernetes-group-version-kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(
        pod["get"]["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Pod"
    );
    assert_eq!(pod["get"]["tags"], json!(["core_v1"]));
    assert_eq!(pod["get"]["schemes"], json!(["https"]));
    let names = |op: &Value| -> Vec<String> {
        op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        names(&pod["patch"]),
        ["body", "dryRun", "fieldManager", "fieldValidation", "force"]
    );
    assert_eq!(names(pod), ["name", "namespace", "pretty"]);
    assert_eq!(pod["delete"]["operationId"], "deleteCoreV1NamespacedPod");
    assert_eq!(
        pod["delete"]["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Pod"
    );
    let cm = &paths["/api/v1/namespaces/{namespace}/configmaps/{name}"];
    assert_eq!(
        cm["delete"]["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Status"
    );
    let list = &paths["/api/v1/namespaces/{namespace}/pods"]["get"];
    assert_eq!(list["operationId"], "listCoreV1NamespacedPod");
    assert_eq!(list["x-kubernetes-action"], "list");
    assert!(names(list).contains(&"labelSelector".to_string()));
    assert_eq!(
        list["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodList"
    );
    assert!(doc["definitions"]["io.k8s.api.core.v1.PodList"].is_object());
    assert_eq!(
        paths["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    assert_eq!(
        paths["/api/v1/watch/namespaces/{namespace}/pods"]["get"]["x-kubernetes-action"],
        "watchlist"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"],
        "patchCoreV1NamespacedPodStatus"
    );
    let exec = &paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"];
    assert_eq!(exec["post"]["operationId"], "connectCoreV1PostNamespacedPodExec");
    assert_eq!(exec["post"]["x-kubernetes-action"], "connect");
    assert_eq!(
        paths["/api/v1/nodes/{name}/proxy/{path}"]["get"]["operationId"],
        "connectCoreV1GetNodeProxyWithPath"
    );
    let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"];
    assert_eq!(scale["operationId"], "replaceAppsV1NamespacedDeploymentScale");
    assert_eq!(
        scale["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(
        paths["/apis/apps/v1/namespaces/{namespace}/deployments"]["delete"]["x-kubernetes-action"],
        "deletecollection"
    );
    let g = &paths[gizmo];
    assert_eq!(g["get"]["operationId"], "readExampleComV1NamespacedGizmo");
    assert_eq!(
        g["get"]["responses"]["200"]["schema"]["$ref"],
        "#/definitions/com.example.v1.Gizmo"
    );
    let consumes: Vec<&str> = g["patch"]["consumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !consumes.contains(&"application/strategic-merge-patch+json"),
        "{consumes:?}"
    );
    assert!(paths["/apis/example.com/v1/namespaces/{namespace}/gizmos/{name}/status"]["patch"].is_object());

    // The protobuf form carries the same operations.
    let req = http::Request::get("/openapi/v2")
        .header("Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
        .body(Vec::new())?;
    let r = client.send(req.map(kube::client::Body::from)).await?;
    let bytes = http_body_util::BodyExt::collect(r.into_body()).await?.to_bytes();
    let pb = <proto::openapi_v2::Document as prost::Message>::decode(bytes.as_ref())?;
    let pb_pod = pb
        .paths
        .as_ref()
        .and_then(|p| {
            p.path
                .iter()
                .find(|n| n.name == "/api/v1/namespaces/{namespace}/pods/{name}")
        })
        .and_then(|n| n.value.clone())
        .expect("the pod path in protobuf");
    let patch = pb_pod.patch.expect("patch");
    assert_eq!(patch.operation_id, "patchCoreV1NamespacedPod");
    let gvk = patch
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .and_then(|e| e.value.as_ref())
        .map(|v| v.yaml.clone())
        .unwrap_or_default();
    assert!(gvk.contains("kind: Pod"), "{gvk}");
    Ok(())
}

/// The fields of a 422's causes.
fn cause_fields(body: &Value) -> Vec<String> {
    body["details"]["causes"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["field"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_writes_are_validated_and_invalid_ones_store_nothing() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let merge = |v: Value| serde_json::to_vec(&v).expect("json");

    // A Deployment's status counts: never negative (kube-rs, merge patch).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))?;
    deployments.create(&PostParams::default(), &d).await?;
    let before = deployments.get("d").await?;
    let e = deployments
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": -1}})),
        )
        .await
        .expect_err("negative replicas");
    match &e {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
            assert!(
                s.message
                    .contains("status.replicas: Invalid value: -1: must be greater than or equal to 0"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    let r = request(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/d/status",
        Some("application/merge-patch+json"),
        merge(json!({"status": {"replicas": 1, "readyReplicas": 2, "availableReplicas": 2}})),
    )
    .await?;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(r.body["details"]["kind"], "Deployment");
    assert_eq!(
        cause_fields(&r.body),
        ["status.readyReplicas", "status.availableReplicas"],
        "{}",
        r.body
    );
    let after = deployments.get("d").await?;
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "nothing written"
    );
    assert_eq!(after.status, before.status);
    // Server-side apply of the status is validated too.
    let r = request(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/d/status?fieldManager=test",
        Some("application/apply-patch+yaml"),
        merge(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "status": {"updatedReplicas": -3}}),
        ),
    )
    .await?;
    assert_eq!(
        (r.code, cause_fields(&r.body)),
        (422, vec!["status.updatedReplicas".to_string()]),
        "{}",
        r.body
    );
    let ok = deployments
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}})),
        )
        .await?;
    assert_eq!(ok.status.and_then(|s| s.available_replicas), Some(1));

    // A Pod's IPs: valid addresses, podIP and podIPs in step.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))?;
    pods.create(&PostParams::default(), &p).await?;
    let before = pods.get("p").await?;
    let r = request(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/pods/p/status",
        Some("application/merge-patch+json"),
        merge(json!({"status": {"podIP": "10.0.0.300"}})),
    )
    .await?;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(cause_fields(&r.body), ["status.podIPs[0]"], "{}", r.body);
    let mut replaced = before.clone();
    replaced.status.get_or_insert_default().qos_class = Some("Guaranteed".into());
    let e = pods
        .replace_status("p", &PostParams::default(), &replaced)
        .await
        .expect_err("the QoS class is immutable");
    assert_eq!(api_code(&e), 422);
    let after = pods.get("p").await?;
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "nothing written"
    );
    let ok = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.0.0.5"}})),
        )
        .await?;
    let status = ok.status.expect("status");
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(
        status.pod_ips.unwrap_or_default().first().map(|i| i.ip.clone()),
        Some("10.0.0.5".to_string()),
        "podIPs follow podIP"
    );

    // A custom resource's status against the CRD's status schema.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {
                        "replicas": {"type": "integer"},
                        "phase": {"type": "string", "enum": ["Ready", "Pending"]}}}}}}}]}
    });
    let r = post_json(&client, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &crd).await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let path = "/apis/example.com/v1/namespaces/default/gadgets";
    let r = post_json(
        &client,
        path,
        &json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"replicas": 1}}),
    )
    .await?;
    assert_eq!(r.code, 201, "{}", r.body);
    let rv = r.body["metadata"]["resourceVersion"].clone();
    for (status, field) in [
        (json!({"phase": "Broken"}), "status.phase"),
        (json!({"replicas": "many"}), "status.replicas"),
        (json!({"replicas": -1}), ".status.replicas"),
    ] {
        let r = request(
            &client,
            "PATCH",
            &format!("{path}/g/status"),
            Some("application/merge-patch+json"),
            merge(json!({"status": status})),
        )
        .await?;
        assert_eq!(r.code, 422, "{status}: {}", r.body);
        assert_eq!(r.body["reason"], "Invalid");
        assert!(
            cause_fields(&r.body).contains(&field.to_string()),
            "{status}: {}",
            r.body
        );
    }
    let mut put = get(&client, &format!("{path}/g")).await?.body;
    put["status"] = json!({"phase": "Broken"});
    let r = request(
        &client,
        "PUT",
        &format!("{path}/g/status"),
        Some("application/json"),
        merge(put),
    )
    .await?;
    assert_eq!(
        (r.code, cause_fields(&r.body)),
        (422, vec!["status.phase".to_string()]),
        "{}",
        r.body
    );
    let stored = get(&client, &format!("{path}/g")).await?.body;
    assert_eq!(stored["metadata"]["resourceVersion"], rv, "nothing written");
    assert!(stored.get("status").is_none(), "{stored}");
    let r = request(
        &client,
        "PATCH",
        &format!("{path}/g/status"),
        Some("application/merge-patch+json"),
        merge(json!({"status": {"phase": "Ready", "replicas": 1}})),
    )
    .await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["status"], json!({"phase": "Ready", "replicas": 1}));
    Ok(())
}
