//! Upstream kubectl (1.33 and 1.27) against real kube-apiserver processes,
//! with the generated admin kubeconfig and no extra flags: apply → get →
//! edit-by-apply → edit/label/annotate/patch/scale → explain/describe →
//! delete. A run with 3 apiservers kills the Raft leader's process.

use std::path::Path;
use std::time::Duration;

use integration_tests::apiserver_cluster::{ApiServers, run_kubectl, upstream_kubectl};
use integration_tests::store_cluster::eventually;

const APP: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  mode: fast
";

struct Kubectl<'a> {
    bin: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    home: &'a Path,
}

impl Kubectl<'_> {
    /// Runs kubectl; fails the test with its stderr unless it succeeds.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = run_kubectl(&self.bin, &self.kubeconfig, self.home, args, stdin).expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = run_kubectl(&self.bin, &self.kubeconfig, self.home, args, stdin).expect("kubectl runs");
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn lifecycle(minor: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let c = rt.block_on(ApiServers::start(1))?;
    let home = tempfile::tempdir()?;
    let k = Kubectl {
        bin: upstream_kubectl(minor)?,
        kubeconfig: c.kubeconfig(),
        home: home.path(),
    };
    let v = k.ok(&["version"], None);
    assert!(v.contains("Server Version") && v.contains("v1.33.0"), "{v}");

    // apply → get.
    let out = k.ok(&["apply", "-f", "-"], Some(APP));
    for line in [
        "namespace/demo created",
        "deployment.apps/web created",
        "service/web created",
        "configmap/settings created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let out = k.ok(&["get", "deploy,svc,cm", "-n", "demo"], None);
    assert!(
        out.contains("NAME                  READY   UP-TO-DATE   AVAILABLE   AGE"),
        "{out}"
    );
    assert!(out.contains("service/web   ClusterIP"), "{out}");
    assert!(out.contains("configmap/settings"), "{out}");
    let out = k.ok(&["get", "deploy", "web", "-n", "demo", "-o", "wide"], None);
    assert!(
        out.contains("CONTAINERS") && out.contains("nginx,sidecar") && out.contains("app=web"),
        "{out}"
    );
    let out = k.ok(&["get", "svc", "-A"], None);
    assert!(out.contains("NAMESPACE") && out.contains("kubernetes"), "{out}");
    let out = k.ok(&["get", "deploy", "web", "-n", "demo", "-o", "yaml"], None);
    assert!(
        out.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{out}"
    );
    let out = k.ok(&["get", "cm", "-n", "demo", "-o", "name"], None);
    assert_eq!(out.trim(), "configmap/settings");

    // Edit by apply: the image changes, the other container stays, and a
    // second apply of the same file changes nothing.
    let edited = APP
        .replace("nginx:1.25", "nginx:1.26")
        .replace("replicas: 2", "replicas: 3");
    let out = k.ok(&["apply", "-f", "-"], Some(&edited));
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/settings unchanged"), "{out}");
    let out = k.ok(
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image} {.spec.replicas} {.metadata.generation}",
        ],
        None,
    );
    assert_eq!(out.trim(), "nginx:1.26 busybox:1.36 3 2");
    let out = k.ok(&["apply", "-f", "-"], Some(&edited));
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    // Removing a container from the file removes it from the object.
    let without_sidecar = edited.replace("      - name: sidecar\n        image: busybox:1.36\n", "");
    k.ok(&["apply", "-f", "-"], Some(&without_sidecar));
    let out = k.ok(
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}",
        ],
        None,
    );
    assert_eq!(out.trim(), "nginx");

    // Other writes.
    k.ok(&["label", "deploy", "web", "-n", "demo", "tier=front"], None);
    k.ok(&["annotate", "deploy", "web", "-n", "demo", "note=hi"], None);
    k.ok(&["scale", "deploy", "web", "-n", "demo", "--replicas=5"], None);
    k.ok(
        &[
            "patch",
            "deploy",
            "web",
            "-n",
            "demo",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#,
        ],
        None,
    );
    k.ok(
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "demo",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"extra":"1"}}"#,
        ],
        None,
    );
    k.ok(
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "demo",
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/data/extra"}]"#,
        ],
        None,
    );
    let out = k.ok(&["get", "deploy", "web", "-n", "demo", "--show-labels"], None);
    assert!(out.contains("app=web,tier=front"), "{out}");
    let out = k.ok(
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
        ],
        None,
    );
    assert_eq!(out.trim(), "5 nginx:1.27");
    // kubectl edit through an editor that rewrites the file.
    let editor = home.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/mode: fast/mode: slow/' \"$1\"\n")?;
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let edit = std::process::Command::new(&k.bin)
        .args(["edit", "cm", "settings", "-n", "demo"])
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", home.path())
        .env("KUBE_EDITOR", &editor)
        .output()?;
    assert!(edit.status.success(), "{}", String::from_utf8_lossy(&edit.stderr));
    let out = k.ok(
        &["get", "cm", "settings", "-n", "demo", "-o", "jsonpath={.data.mode}"],
        None,
    );
    assert_eq!(out.trim(), "slow");
    // Imperative creates: kubectl 1.33's typed clients send protobuf
    // bodies, 1.27's JSON; both must give the same objects.
    imperative_creates(&k);
    // Server-side validation refuses unknown fields by default.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: demo\nbogus: 1\n";
    let err = k.fails(&["apply", "-f", "-"], Some(bad));
    assert!(err.contains("bogus"), "{err}");
    // Discovery and schema.
    let out = k.ok(&["api-resources"], None);
    assert!(
        out.lines()
            .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")),
        "{out}"
    );
    let out = k.ok(&["api-versions"], None);
    assert!(out.lines().any(|l| l == "apps/v1"), "{out}");
    let out = k.ok(&["explain", "deployment.spec"], None);
    assert!(out.contains("replicas"), "{out}");
    let out = k.ok(&["describe", "deploy", "web", "-n", "demo"], None);
    assert!(
        out.contains("Name:") && out.contains("web") && out.contains("nginx:1.27"),
        "{out}"
    );
    // Server-side apply.
    let ssa = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: demo\ndata:\n  a: \"1\"\n";
    let out = k.ok(&["apply", "--server-side", "-f", "-"], Some(ssa));
    assert!(out.contains("configmap/ssa serverside-applied"), "{out}");

    // delete -f: the objects are gone and the namespace terminates (it
    // waits for the namespace controller, so kubectl must not wait for it).
    let out = k.ok(&["delete", "-f", "-", "--wait=false"], Some(APP));
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    assert!(out.contains("namespace \"demo\" deleted"), "{out}");
    let err = k.fails(&["get", "deploy", "web", "-n", "demo"], None);
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
    let phase = k.ok(&["get", "ns", "demo", "-o", "jsonpath={.status.phase}"], None);
    assert_eq!(phase, "Terminating");
    Ok(())
}

fn imperative_creates(k: &Kubectl) {
    k.ok(&["create", "namespace", "scratch"], None);
    k.ok(
        &["create", "configmap", "lit", "-n", "scratch", "--from-literal=a=1"],
        None,
    );
    k.ok(
        &[
            "create",
            "secret",
            "generic",
            "pw",
            "-n",
            "scratch",
            "--from-literal=p=s3cret",
        ],
        None,
    );
    k.ok(
        &["create", "deployment", "api", "-n", "scratch", "--image=nginx:1.25"],
        None,
    );
    k.ok(
        &[
            "create",
            "service",
            "clusterip",
            "api",
            "-n",
            "scratch",
            "--tcp=80:8080",
        ],
        None,
    );
    let out = k.ok(&["get", "all", "-n", "scratch"], None);
    assert!(
        out.contains("deployment.apps/api") && out.contains("service/api"),
        "{out}"
    );
    // Bodies decode to upstream's JSON: base64 secret data, no zero-valued
    // plain fields (nodePort, hostPort, stdin…), explicit pointer zeros kept.
    let out = k.ok(
        &["get", "secret", "pw", "-n", "scratch", "-o", "jsonpath={.data.p}"],
        None,
    );
    assert_eq!(out, "czNjcmV0");
    let svc = k.ok(&["get", "svc", "api", "-n", "scratch", "-o", "json"], None);
    assert!(
        !svc.contains("nodePort") && !svc.contains("healthCheckNodePort"),
        "{svc}"
    );
    for args in [
        &[
            "create",
            "job",
            "once",
            "-n",
            "scratch",
            "--image=busybox",
            "--",
            "true",
        ][..],
        &[
            "create",
            "cronjob",
            "tick",
            "-n",
            "scratch",
            "--image=busybox",
            "--schedule=*/5 * * * *",
        ],
        &[
            "create",
            "role",
            "reader",
            "-n",
            "scratch",
            "--verb=get,list",
            "--resource=pods",
        ],
        &[
            "create",
            "rolebinding",
            "reader",
            "-n",
            "scratch",
            "--role=reader",
            "--user=bob",
        ],
        &["create", "quota", "q", "-n", "scratch", "--hard=pods=10"],
        &[
            "create",
            "pdb",
            "api",
            "-n",
            "scratch",
            "--selector=app=api",
            "--min-available=1",
        ],
        &["create", "priorityclass", "high", "--value=1000"],
        &[
            "create",
            "ingress",
            "api",
            "-n",
            "scratch",
            "--rule=api.example.com/=api:80",
        ],
        &["create", "serviceaccount", "robot", "-n", "scratch"],
        &["run", "solo", "-n", "scratch", "--image=nginx"],
        &["scale", "deployment", "api", "-n", "scratch", "--replicas=0"],
    ] {
        k.ok(args, None);
    }
    let job = k.ok(&["get", "job", "once", "-n", "scratch", "-o", "json"], None);
    let job: serde_json::Value = serde_json::from_str(&job).expect("job json");
    let uid = job["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(job["spec"]["template"]["metadata"]["labels"]["job-name"], "once");
    assert!(
        job["spec"]["template"]["spec"]["containers"][0].get("stdin").is_none(),
        "{job}"
    );
    let out = k.ok(
        &[
            "get",
            "deploy",
            "api",
            "-n",
            "scratch",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    );
    assert_eq!(out, "0");
    let token = k.ok(&["create", "token", "robot", "-n", "scratch"], None);
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    // Eviction (policy/v1) through drain.
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\n  namespace: scratch\nspec:\n  nodeName: worker\n  containers:\n  - name: c\n    image: nginx\n";
    k.ok(&["apply", "-f", "-"], Some(node));
    let out = k.ok(&["drain", "worker", "--force", "--grace-period=0"], None);
    assert!(
        out.contains("pod/bound evicted") && out.contains("node/worker drained"),
        "{out}"
    );
    k.ok(&["delete", "node", "worker"], None);
}

#[test]
fn upstream_kubectl_1_33_apply_get_edit_delete() -> anyhow::Result<()> {
    lifecycle("1.33")
}

#[test]
fn upstream_kubectl_1_27_apply_get_edit_delete() -> anyhow::Result<()> {
    lifecycle("1.27")
}

#[tokio::test(flavor = "multi_thread")]
async fn three_apiserver_cluster_survives_leader_kill() -> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams, WatchEvent, WatchParams};

    let mut c = ApiServers::start(3).await?;
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}))
            .expect("cm")
    };
    // Writes through one apiserver are read and watched through the others.
    let api0: Api<ConfigMap> = Api::namespaced(c.client_for(0).await?, "default");
    let api2: Api<ConfigMap> = Api::namespaced(c.client_for(2).await?, "default");
    let mut watch = api2.watch(&WatchParams::default().timeout(30), "0").await?.boxed();
    let created = api0.create(&PostParams::default(), &cm("from-0")).await?;
    let got = api2.get("from-0").await?;
    assert_eq!(got.metadata.uid, created.metadata.uid);
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = watch.try_next().await? {
            if let WatchEvent::Added(o) = ev
                && o.metadata.name.as_deref() == Some("from-0")
            {
                return anyhow::Ok(true);
            }
        }
        anyhow::Ok(false)
    })
    .await??;
    assert!(seen, "the watch on apiserver 2 missed a write through apiserver 0");

    // Kill the process whose store leads; the others keep serving writes.
    let leader = c.leader().await?;
    c.kill9(leader);
    let survivor = (0..3).find(|i| *i != leader).expect("a survivor");
    let api: Api<ConfigMap> = Api::namespaced(c.client_for(survivor).await?, "default");
    let mut n = 0;
    eventually("a write after the leader was killed", Duration::from_secs(20), || {
        n += 1;
        let api = api.clone();
        let name = format!("after-{n}");
        async move { api.create(&PostParams::default(), &cm(&name)).await.is_ok() }
    })
    .await?;
    let other = (0..3)
        .find(|i| *i != leader && *i != survivor)
        .expect("another survivor");
    let api_other: Api<ConfigMap> = Api::namespaced(c.client_for(other).await?, "default");
    assert!(api_other.get("from-0").await.is_ok());
    // The killed member comes back and catches up.
    c.restart(leader).await?;
    let back: Api<ConfigMap> = Api::namespaced(c.client_for(leader).await?, "default");
    eventually("the restarted member to catch up", Duration::from_secs(20), || {
        let back = back.clone();
        async move { back.get("after-1").await.is_ok() }
    })
    .await?;
    Ok(())
}
