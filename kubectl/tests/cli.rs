//! End to end: our `kubectl` binary against a real `kube-apiserver` process
//! on loopback (free ports, temp data dir, killed on drop), through
//! apply → get → edit-by-apply → label/scale/patch → delete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `kube-apiserver` built next to this test's executable
/// (`target/<profile>/deps/cli-*` → `target/<profile>/kube-apiserver`).
fn apiserver_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("test executable directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("kube-apiserver");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p apiserver)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    integration_tests::store_cluster::free_port().expect("free port")
}

/// A running apiserver with its own data dir; killed when dropped.
struct ApiServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl ApiServer {
    fn start() -> ApiServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let log = File::create(dir.path().join("apiserver.log")).expect("log file");
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new(apiserver_bin())
            .arg("--data-dir")
            .arg(&data)
            .args(["--secure-port", &free_port().to_string(), "--bind-address", "127.0.0.1"])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            // No controller creates the `default` service accounts pods
            // would need (as upstream's integration tests).
            .arg("--disable-admission-plugins=ServiceAccount")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver");
        let server = ApiServer { child, dir };
        server.wait_ready();
        server
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data").join("admin.kubeconfig")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Polls until the kubeconfig exists and the API answers with the
    /// bootstrapped `default` namespace, with a bounded deadline.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut delay = Duration::from_millis(20);
        loop {
            if self.kubeconfig().exists() {
                let out = kubectl(self, &["get", "namespace", "default", "-o", "name"]);
                if out.status.success() {
                    return;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default();
                panic!("kube-apiserver not ready in time; log:\n{log}");
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl(server: &ApiServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl"))
        .args(args)
        .env("KUBECONFIG", server.kubeconfig())
        .env("HOME", server.home())
        .env_remove("KUBE_EDITOR")
        .output()
        .expect("run kubectl")
}

/// Runs kubectl, expecting success; returns stdout.
fn ok(server: &ApiServer, args: &[&str]) -> String {
    let out = kubectl(server, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stderr}\nstdout: {stdout}"
    );
    stdout
}

/// Runs kubectl, expecting exit code 1; returns stderr.
fn fails(server: &ApiServer, args: &[&str]) -> String {
    let out = kubectl(server, args);
    assert_eq!(out.status.code(), Some(1), "kubectl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_manifests(dir: &Path, replicas: u32, extra_cm_key: bool, port: bool) {
    let ports = if port {
        "\n        ports:\n        - containerPort: 80"
    } else {
        ""
    };
    let extra = if extra_cm_key { "\n  extra: \"yes\"" } else { "" };
    let text = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25{ports}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  greeting: hello{extra}
"
    );
    std::fs::write(dir.join("app.yaml"), text).expect("write manifest");
}

#[test]
fn apply_get_update_delete() {
    let server = ApiServer::start();
    let manifests = tempfile::tempdir().expect("manifest dir");
    let dir = manifests.path().to_str().expect("utf-8 path");

    // apply: create, then nothing to do.
    write_manifests(manifests.path(), 2, true, true);
    assert_eq!(
        ok(&server, &["apply", "-f", dir]),
        "deployment.apps/web created\nservice/web created\nconfigmap/cfg created\n"
    );
    assert_eq!(
        ok(&server, &["apply", "-f", dir]),
        "deployment.apps/web unchanged\nservice/web unchanged\nconfigmap/cfg unchanged\n"
    );

    // get: server-side tables, several kinds with kind prefixes.
    let tables = ok(&server, &["get", "deploy,svc"]);
    let lines: Vec<&str> = tables.lines().collect();
    assert!(
        lines[0].starts_with("NAME                  READY   UP-TO-DATE   AVAILABLE   AGE"),
        "{tables}"
    );
    assert!(
        lines[1].starts_with("deployment.apps/web   0/2     0            0           "),
        "{tables}"
    );
    assert_eq!(lines[2], "", "{tables}");
    assert!(
        lines[3].starts_with("NAME                 TYPE        CLUSTER-IP"),
        "{tables}"
    );
    assert!(tables.contains("\nservice/web          ClusterIP   "), "{tables}");
    assert_eq!(
        ok(&server, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );
    assert_eq!(ok(&server, &["get", "deploy", "-o", "name"]), "deployment.apps/web\n");
    let yaml = ok(&server, &["get", "cm", "cfg", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: v1\ndata:\n  extra: \"yes\"\n  greeting: hello\nkind: ConfigMap\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration: |\n      {\"apiVersion\":\"v1\""),
        "{yaml}"
    );

    // A label set outside the manifest survives re-applies (three-way merge).
    assert_eq!(
        ok(&server, &["label", "deploy", "web", "tier=backend"]),
        "deployment.apps/web labeled\n"
    );
    let err = fails(&server, &["label", "deploy", "web", "tier=frontend"]);
    assert_eq!(
        err,
        "error: 'tier' already has a value (backend), and --overwrite is false\n"
    );

    // Edit by apply: new replica count, a port and a config key removed.
    write_manifests(manifests.path(), 3, false, false);
    assert_eq!(
        ok(&server, &["apply", "-f", dir]),
        "deployment.apps/web configured\nservice/web unchanged\nconfigmap/cfg configured\n"
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.replicas} {.metadata.labels.tier} {.spec.template.spec.containers[0].ports}"
            ]
        ),
        "3 backend "
    );
    assert_eq!(
        ok(&server, &["get", "cm", "cfg", "-o", "jsonpath={.data}"]),
        "{\"greeting\":\"hello\"}"
    );

    // scale and patch.
    assert_eq!(
        ok(&server, &["scale", "deploy/web", "--replicas=5"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        ok(&server, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );
    let patch = r#"{"spec":{"replicas":1}}"#;
    assert_eq!(
        ok(&server, &["patch", "deploy", "web", "-p", patch]),
        "deployment.apps/web patched\n"
    );
    assert_eq!(
        ok(&server, &["patch", "deploy", "web", "-p", patch]),
        "deployment.apps/web patched (no change)\n"
    );
    let merge = r#"{"metadata":{"annotations":{"note":"x"}}}"#;
    assert_eq!(
        ok(&server, &["patch", "svc", "web", "--type", "merge", "-p", merge]),
        "service/web patched\n"
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "svc",
                "web",
                "-o",
                "custom-columns=NAME:.metadata.name,NOTE:.metadata.annotations.note"
            ]
        ),
        "NAME   NOTE\nweb    x\n"
    );

    // delete waits until the objects are gone.
    assert_eq!(
        ok(&server, &["delete", "-f", dir]),
        "deployment.apps \"web\" deleted\nservice \"web\" deleted\nconfigmap \"cfg\" deleted\n"
    );
    assert_eq!(
        fails(&server, &["get", "deploy", "web"]),
        "Error from server (NotFound): deployments.apps \"web\" not found\n"
    );
    let out = kubectl(&server, &["get", "deploy"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "No resources found in default namespace.\n"
    );
}

/// `drain`: cordons, refuses DaemonSet and unmanaged pods unless told,
/// evicts through the eviction subresource, waits on a disruption budget
/// that allows nothing (429) until the timeout, and drains once it allows.
#[test]
fn drain_evicts_through_disruption_budgets() {
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("manifest dir");
    let owner = |kind: &str, name: &str| {
        format!(
            "  ownerReferences:\n  - apiVersion: apps/v1\n    kind: {kind}\n    name: {name}\n    uid: 6c3c7e8e-0000-4000-8000-000000000001\n    controller: true\n"
        )
    };
    let pod = |name: &str, labels: &str, owner: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n{owner}spec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: nginx\n---\n"
        )
    };
    let mut manifest = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n---\n".to_string();
    manifest += &pod("web", "app: web", &owner("ReplicaSet", "web-1"));
    manifest += &pod("loner", "app: loner", "");
    manifest += &pod("agent", "app: agent", &owner("DaemonSet", "agent"));
    manifest += "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels: {app: web}\n";
    let file = dir.path().join("drain.yaml");
    std::fs::write(&file, manifest).expect("write manifest");
    ok(&server, &["apply", "-f", file.to_str().expect("path")]);
    // The pod runs (so its budget counts); the budget allows nothing yet.
    ok(
        &server,
        &[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ],
    );
    let no_disruptions = r#"{"status":{"observedGeneration":1,"disruptionsAllowed":0,"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}"#;
    ok(
        &server,
        &[
            "patch",
            "pdb",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            no_disruptions,
        ],
    );

    // Unmanaged and DaemonSet pods stop the drain; the node stays cordoned.
    let out = kubectl(&server, &["drain", "n1", "--grace-period=0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "node/n1 cordoned\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agent")
            && stderr
                .contains("cannot delete Pods that declare no controller (use --force to override): default/loner")
            && stderr.contains("There are pending nodes to be drained:\n n1\n"),
        "{stderr}"
    );
    assert_eq!(
        ok(&server, &["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]),
        "true"
    );

    // The budget refuses the eviction (429) until the timeout.
    let args = [
        "drain",
        "n1",
        "--grace-period=0",
        "--force",
        "--ignore-daemonsets",
        "--timeout=1s",
    ];
    let out = kubectl(&server, &args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: ")
            && stderr.contains("deleting Pods that declare no controller: default/loner")
            && stderr.contains("ignoring DaemonSet-managed Pods: default/agent")
            && stderr.contains("error when evicting pods/\"web\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    assert_eq!(ok(&server, &["get", "pod", "web", "-o", "name"]), "pod/web\n");

    // Once the budget allows one disruption, the drain completes and the
    // budget records it.
    ok(
        &server,
        &[
            "patch",
            "pdb",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"disruptionsAllowed":1}}"#,
        ],
    );
    let stdout = ok(&server, &args);
    assert!(
        stdout.contains("evicting pod default/web\n") && stdout.contains("pod/web evicted\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("node/n1 drained\n"), "{stdout}");
    assert_eq!(ok(&server, &["get", "pods", "-o", "name"]), "pod/agent\n");
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.disruptionsAllowed} {.status.disruptedPods.web}"
            ]
        )
        .split(' ')
        .next(),
        Some("0")
    );
}

/// Upstream kubectl 1.33 beside the one on PATH, if this machine has it.
fn upstream_kubectl() -> Option<PathBuf> {
    let on_path = std::process::Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .ok()?;
    let real = PathBuf::from(String::from_utf8_lossy(&on_path.stdout).trim());
    let candidate = real.parent()?.join("kubectl.1.33");
    candidate.exists().then_some(candidate)
}

/// Runs upstream kubectl against `server`, expecting success; returns stdout.
fn upstream_ok(upstream: &Path, server: &ApiServer, args: &[&str]) -> String {
    let out = Command::new(upstream)
        .args(args)
        .env("KUBECONFIG", server.kubeconfig())
        .env("HOME", server.home())
        .output()
        .expect("run upstream kubectl");
    assert!(
        out.status.success(),
        "upstream kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `describe pod` prints what upstream kubectl prints for the same pod:
/// containers with their states, conditions, volumes, tolerations.
#[test]
fn describe_pod_matches_upstream() {
    let Some(upstream) = upstream_kubectl() else {
        panic!("upstream kubectl 1.33 is part of this machine's setup");
    };
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("manifest dir");
    // The pod's priority comes from its class (Priority admission refuses
    // a pod that sets spec.priority itself).
    let pod = r#"apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: ten
value: 10
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web, tier: front}
  annotations: {note: hello}
spec:
  nodeName: n1
  priorityClassName: ten
  containers:
  - name: app
    image: nginx:1.27
    command: [nginx]
    args: ["-g", "daemon off;"]
    ports:
    - {containerPort: 80, name: http}
    - {containerPort: 443}
    env:
    - {name: MODE, value: fast}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {memory: 128Mi}
    volumeMounts:
    - {name: cfg, mountPath: /etc/web, readOnly: true}
    - {name: scratch, mountPath: /tmp}
  - name: sidecar
    image: busybox
  volumes:
  - name: cfg
    configMap: {name: settings}
  - name: scratch
    emptyDir: {}
  tolerations:
  - {key: dedicated, operator: Equal, value: web, effect: NoSchedule}
  - {operator: Exists}
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
"#;
    let file = dir.path().join("pod.yaml");
    std::fs::write(&file, pod).expect("write pod");
    ok(&server, &["apply", "-f", file.to_str().expect("path")]);
    let status = r#"{"status":{"phase":"Running","hostIP":"10.1.0.5","podIP":"10.244.0.7","podIPs":[{"ip":"10.244.0.7"}],
        "startTime":"2026-01-02T03:04:05Z",
        "conditions":[{"type":"Ready","status":"True"},{"type":"PodScheduled","status":"True"}],
        "containerStatuses":[
          {"name":"app","ready":true,"restartCount":2,"image":"nginx:1.27","imageID":"sha256:abc","containerID":"containerd://111",
           "state":{"running":{"startedAt":"2026-01-02T03:04:06Z"}},
           "lastState":{"terminated":{"exitCode":137,"reason":"OOMKilled","startedAt":"2026-01-02T03:00:00Z","finishedAt":"2026-01-02T03:04:00Z"}}},
          {"name":"sidecar","ready":false,"restartCount":0,"image":"busybox","imageID":"","containerID":"",
           "state":{"waiting":{"reason":"ContainerCreating"}}}]}}"#;
    ok(
        &server,
        &[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );

    let ours = ok(&server, &["describe", "pod", "web"]);
    assert_eq!(ours, upstream_ok(&upstream, &server, &["describe", "pod", "web"]));
}

/// `describe node` prints what upstream kubectl prints: lease, conditions,
/// capacity, system info, the node's pods and their resource totals.
#[test]
fn describe_node_matches_upstream() {
    let Some(upstream) = upstream_kubectl() else {
        panic!("upstream kubectl 1.33 is part of this machine's setup");
    };
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("manifest dir");
    let manifest = r#"apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {kubernetes.io/hostname: n1, node-role.kubernetes.io/worker: ""}
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
  taints:
  - {key: dedicated, value: web, effect: NoSchedule}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: n1, namespace: kube-node-lease}
spec: {holderIdentity: n1, leaseDurationSeconds: 40, renewTime: "2026-01-02T03:04:05.000000Z"}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default}
spec:
  nodeName: n1
  containers:
  - name: c
    image: nginx
    resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: "1", memory: 128Mi}}
  - name: d
    image: nginx
    resources: {requests: {cpu: 100m}}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default}
spec:
  nodeName: n1
  containers:
  - {name: c, image: nginx, resources: {requests: {memory: 1Gi}}}
"#;
    let file = dir.path().join("node.yaml");
    std::fs::write(&file, manifest).expect("write manifest");
    ok(&server, &["apply", "-f", file.to_str().expect("path")]);
    let status = r#"{"status":{
        "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status",
           "lastHeartbeatTime":"2026-01-02T03:04:05Z","lastTransitionTime":"2026-01-02T03:00:00Z"}],
        "addresses":[{"type":"InternalIP","address":"10.1.0.5"},{"type":"Hostname","address":"n1"}],
        "capacity":{"cpu":"2","memory":"4026532Ki","pods":"110","ephemeral-storage":"20Gi"},
        "allocatable":{"cpu":"2","memory":"3924132Ki","pods":"110","ephemeral-storage":"18Gi"},
        "nodeInfo":{"machineID":"m","systemUUID":"u","bootID":"b","kernelVersion":"6.1.0","osImage":"Debian GNU/Linux 12 (bookworm)",
           "operatingSystem":"linux","architecture":"amd64","containerRuntimeVersion":"containerd://1.6.20",
           "kubeletVersion":"v1.33.0","kubeProxyVersion":"v1.33.0"}}}"#;
    ok(
        &server,
        &[
            "patch",
            "node",
            "n1",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );

    let ours = ok(&server, &["describe", "node", "n1"]);
    let theirs = upstream_ok(&upstream, &server, &["describe", "node", "n1"]);
    // The pods' ages may differ by a second between the two runs.
    let without_ages = |text: &str| -> String {
        text.lines()
            .map(|l| match l.strip_prefix("  default ") {
                Some(_) => l.trim_end().rsplit_once(' ').map_or(l, |(head, _)| head).to_string(),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        ours.contains("  default                     a       350m (17%)"),
        "{ours}"
    );
    assert_eq!(without_ages(&ours), without_ages(&theirs));
}

/// `describe` of the other common kinds prints what upstream prints (one
/// key per ConfigMap and Secret: upstream prints their keys in Go's random
/// map order).
#[test]
fn describe_matches_upstream_for_common_kinds() {
    let Some(upstream) = upstream_kubectl() else {
        panic!("upstream kubectl 1.33 is part of this machine's setup");
    };
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("manifest dir");
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, OBJECTS).expect("write manifest");
    ok(&server, &["apply", "-f", file.to_str().expect("path")]);
    // A pod controlled by the ReplicaSet, so its describer counts and lists it.
    let uid = ok(
        &server,
        &["get", "rs", "front", "-n", "desc", "-o", "jsonpath={.metadata.uid}"],
    );
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: front-a\n  namespace: desc\n  labels: {{app: front}}\n  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: front, uid: {uid}, controller: true}}]\nspec:\n  containers: [{{name: c, image: busybox}}]\n"
        ),
    )
    .expect("write pod");
    ok(&server, &["apply", "-f", pod.to_str().expect("path")]);
    for what in [
        ["rs", "front"],
        ["deploy", "web"],
        ["svc", "web"],
        ["svc", "np"],
        ["cm", "cfg"],
        ["secret", "s"],
        ["ns", "desc"],
    ] {
        let args = ["describe", what[0], what[1], "-n", "desc"];
        assert_eq!(ok(&server, &args), upstream_ok(&upstream, &server, &args), "{what:?}");
    }
}

const OBJECTS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: desc, labels: {team: a}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: desc, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
        env: [{name: A, value: b}]
        resources: {requests: {cpu: 100m}}
        volumeMounts: [{name: c, mountPath: /c}]
      volumes: [{name: c, configMap: {name: cfg}}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: front, namespace: desc, labels: {app: front}}
spec:
  replicas: 3
  selector: {matchLabels: {app: front}}
  template:
    metadata: {labels: {app: front}}
    spec:
      containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: desc}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: desc}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 81, targetPort: 8081}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: desc}
data: {long: "line1\nline2"}
binaryData: {b: aGVsbG8=}
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: desc}
stringData: {pw: secret}
"#;

#[test]
fn kubeconfig_commands_merge_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::write(
        &a,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster:\n    server: https://one\n    certificate-authority-data: Q0E=\ncontexts:\n- name: first\n  context:\n    cluster: c1\n    user: u1\ncurrent-context: first\nusers:\n- name: u1\n  user:\n    token: secret\n",
    )
    .expect("write a");
    std::fs::write(
        &b,
        "clusters:\n- name: c1\n  cluster:\n    server: https://ignored\ncontexts:\n- name: second\n  context:\n    cluster: c1\n    user: u1\n    namespace: team\ncurrent-context: second\n",
    )
    .expect("write b");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl"))
            .args(args)
            .env("KUBECONFIG", format!("{}:{}", a.display(), b.display()))
            .env("HOME", dir.path())
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(&["config", "current-context"]), "first\n");
    assert_eq!(
        run(&["config", "get-contexts"]),
        "CURRENT   NAME     CLUSTER   AUTHINFO   NAMESPACE\n*         first    c1        u1         \n          second   c1        u1         team\n"
    );
    assert_eq!(
        run(&["config", "view", "--minify"]),
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: DATA+OMITTED\n    server: https://one\n  name: c1\ncontexts:\n- context:\n    cluster: c1\n    user: u1\n  name: first\ncurrent-context: first\nkind: Config\npreferences: {}\nusers:\n- name: u1\n  user:\n    token: REDACTED\n"
    );
    assert_eq!(
        run(&["config", "use-context", "second"]),
        "Switched to context \"second\".\n"
    );
    assert_eq!(run(&["config", "current-context"]), "second\n");
    // The first file that exists receives the new current-context.
    assert!(
        std::fs::read_to_string(&a)
            .expect("read a")
            .contains("current-context: second\n")
    );
}

/// `rollout history` and `rollout undo` over a Deployment's ReplicaSets (as
/// the deployment controller leaves them: owned, with revision
/// annotations) print and do what upstream kubectl 1.33 does.
#[test]
fn rollout_history_and_undo_match_upstream() {
    let Some(upstream) = upstream_kubectl() else {
        panic!("upstream kubectl 1.33 is part of this machine's setup");
    };
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("manifest dir");
    let deployment = |image: &str, revision: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    deployment.kubernetes.io/revision: \"{revision}\"\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
        )
    };
    let file = dir.path().join("deploy.yaml");
    std::fs::write(&file, deployment("nginx:2", 2)).expect("write manifest");
    ok(&server, &["apply", "-f", file.to_str().expect("path")]);
    let uid = ok(&server, &["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"]);
    let rs = |n: u32, image: &str, cause: &str| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-{n}\n  labels: {{app: web, pod-template-hash: h{n}}}\n  annotations:\n    deployment.kubernetes.io/revision: \"{n}\"\n    kubernetes.io/change-cause: {cause}\n  ownerReferences:\n  - apiVersion: apps/v1\n    kind: Deployment\n    name: web\n    uid: {uid}\n    controller: true\n    blockOwnerDeletion: true\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: web, pod-template-hash: h{n}}}\n  template:\n    metadata:\n      labels: {{app: web, pod-template-hash: h{n}}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n---\n"
        )
    };
    let rs_file = dir.path().join("rs.yaml");
    std::fs::write(&rs_file, rs(1, "nginx:1", "first") + &rs(2, "nginx:2", "second")).expect("write manifest");
    ok(&server, &["apply", "-f", rs_file.to_str().expect("path")]);
    for args in [
        &["rollout", "history", "deployment/web"][..],
        &["rollout", "history", "deployment/web", "--revision=1"][..],
    ] {
        assert_eq!(ok(&server, args), upstream_ok(&upstream, &server, args), "{args:?}");
    }
    // Undo to revision 1, by ours and then (from the same start) by
    // upstream: the same message and the same template.
    let template = || ok(&server, &["get", "deploy", "web", "-o", "jsonpath={.spec.template}"]);
    let undo = ["rollout", "undo", "deployment/web", "--to-revision=1"];
    let ours = ok(&server, &undo);
    let ours_template = template();
    assert!(
        ours_template.contains("nginx:1") && !ours_template.contains("pod-template-hash"),
        "{ours_template}"
    );
    ok(&server, &["apply", "-f", file.to_str().expect("path")]);
    assert!(template().contains("nginx:2"));
    let theirs = upstream_ok(&upstream, &server, &undo);
    assert_eq!(ours, theirs);
    assert_eq!(ours_template, template());
    // Nothing to undo to.
    assert_eq!(
        fails(&server, &["rollout", "undo", "deployment/web", "--to-revision=7"]),
        "error: unable to find specified revision 7 in history\n"
    );
}
