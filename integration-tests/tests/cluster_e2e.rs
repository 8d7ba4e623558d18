//! End to end on one launcher-made cluster (`cluster up`: one control
//! plane, two workers in their own network namespaces): what a user does
//! with a cluster, checked as a user sees it — through Services, NodePorts
//! from the host, DNS from pods, upstream kubectl — and through faults: the
//! whole control plane restarted, a worker cut off the network.
//!
//! One shared cluster, so one test function running named steps in order:
//! the non-destructive ones first, then the control-plane restart, then
//! the cut worker last. Each step is bounded; a failure names the step and
//! ends with every process's log tail.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use integration_tests::apiserver_cluster::upstream_kubectl;
use integration_tests::launched::{self, Launched};
use integration_tests::store_cluster::workspace_bin;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
const BUSYBOX: &str = "busybox:1.36";
const PAUSE: &str = "registry.k8s.io/pause:3.10";

/// How long a node may miss heartbeats before it is NotReady, and how long
/// its pods tolerate that before they are evicted: short, so the cut
/// worker's pods move within a test's patience.
const NODE_GRACE: Duration = Duration::from_secs(10);
const TOLERATION: Duration = Duration::from_secs(10);
/// Past the grace period and the toleration: the controller-manager's
/// monitor period, the new pods' start and readiness, kube-proxy's sync.
const RECOVERY_WINDOW: Duration = Duration::from_secs(45);

const CONFIG: &str = "\
nodes:
- role: control-plane
- role: worker
- role: worker
components:
  kube-controller-manager:
    extraArgs:
      node-monitor-grace-period: 10s
      node-monitor-period: 2s
  kube-apiserver:
    extraArgs:
      default-not-ready-toleration-seconds: \"10\"
      default-unreachable-toleration-seconds: \"10\"
";

/// The cluster and what the steps share.
struct E2e {
    launched: Launched,
    client: kube::Client,
    /// kubectl binaries by name: upstream 1.33 and 1.27, and ours.
    kubectls: Vec<(&'static str, PathBuf)>,
    /// When the CronJob was created (it is checked in the apps step).
    cronjob_created: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launched_cluster_serves_workloads_and_survives_faults() -> anyhow::Result<()> {
    if let Some(why) = launched::missing_prerequisites() {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let started = Instant::now();
    let launched = Launched::up("e2e", CONFIG, Duration::from_secs(180))?;
    eprintln!("== cluster {} up in {:?}", launched.name, started.elapsed());
    let client = launched.client().await?;
    let kubectls = vec![
        ("1.33", upstream_kubectl("1.33")?),
        ("1.27", upstream_kubectl("1.27")?),
        ("ours", workspace_bin("kubectl")?),
    ];
    let mut e2e = E2e {
        launched,
        client,
        kubectls,
        cronjob_created: Instant::now(),
    };
    // Created first so that its first minute passes while other steps run.
    e2e.apply(&cronjob_yaml()).await?;
    e2e.cronjob_created = Instant::now();

    e2e.step("web: Service DNS, NodePort, session affinity", 180, web(&e2e))
        .await?;
    e2e.step("scale 3 -> 10 -> 2 over both workers", 180, scale(&e2e))
        .await?;
    e2e.step(
        "apps: Job, CronJob, DaemonSet, StatefulSet, volumes, kubectl, in-cluster API",
        300,
        apps(&e2e),
    )
    .await?;
    e2e.step(
        "rolling update without a failed request, then undo",
        240,
        rolling_update(&e2e),
    )
    .await?;
    e2e.step("control plane stopped and started", 240, control_plane_restart(&e2e))
        .await?;
    e2e.step("a worker cut off and healed", 300, cut_worker(&e2e)).await?;
    eprintln!("== all steps passed in {:?}", started.elapsed());
    Ok(())
}

impl E2e {
    /// Runs one step within `limit_secs`; a failure names it and carries
    /// the cluster's log tails.
    async fn step(
        &self,
        name: &str,
        limit_secs: u64,
        f: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        eprintln!("== step: {name}");
        let limit = Duration::from_secs(limit_secs);
        match tokio::time::timeout(limit, f).await {
            Ok(Ok(())) => {
                eprintln!("== step: {name}: ok in {:.1?}", start.elapsed());
                Ok(())
            }
            Ok(Err(e)) => bail!(
                "step {name:?} failed after {:.1?}: {e:#}\n{}",
                start.elapsed(),
                self.launched.logs()
            ),
            Err(_) => bail!(
                "step {name:?} did not finish within {limit:?}\n{}",
                self.launched.logs()
            ),
        }
    }

    fn worker(&self, i: usize) -> &str {
        &self.launched.plan.workers[i].name
    }

    fn worker_ip(&self, i: usize) -> Ipv4Addr {
        self.launched.plan.workers[i].ip
    }

    /// Runs a kubectl binary; (success, stdout, stderr).
    async fn kubectl_with(
        &self,
        bin: &PathBuf,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<(bool, String, String)> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .env("KUBECONFIG", self.launched.kubeconfig())
            .env("HOME", self.launched.home.path())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("running {}", bin.display()))?;
        if let Some(input) = stdin
            && let Some(mut s) = child.stdin.take()
        {
            s.write_all(input.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Upstream kubectl 1.33, failing unless it succeeds; its stdout.
    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let bin = self.kubectls[0].1.clone();
        self.kubectl_ok(&bin, args, None).await
    }

    async fn kubectl_ok(&self, bin: &PathBuf, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let (ok, stdout, stderr) = self.kubectl_with(bin, args, stdin).await?;
        if !ok {
            bail!("{} {} failed: {}", bin.display(), args.join(" "), stderr.trim());
        }
        Ok(stdout)
    }

    async fn apply(&self, yaml: &str) -> anyhow::Result<()> {
        let bin = self.kubectls[0].1.clone();
        self.kubectl_ok(&bin, &["apply", "-f", "-"], Some(yaml)).await?;
        Ok(())
    }

    /// `kubectl exec` in a pod's (only) container; its stdout.
    async fn exec(&self, ns: &str, pod: &str, command: &[&str]) -> anyhow::Result<String> {
        let mut args = vec!["exec", "-n", ns, pod, "--"];
        args.extend_from_slice(command);
        self.kubectl(&args).await
    }

    /// Waits until the pods matching `selector` satisfy `done`; the last
    /// list. On timeout the error lists the pods as they were.
    async fn wait_pods(
        &self,
        ns: &str,
        selector: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Pod]) -> bool,
    ) -> anyhow::Result<Vec<Pod>> {
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + timeout;
        let mut last = Vec::new();
        loop {
            match api.list(&ListParams::default().labels(selector)).await {
                Ok(list) => {
                    last = list.items;
                    if done(&last) {
                        return Ok(last);
                    }
                }
                Err(e) => eprintln!("listing pods in {ns}: {e}"),
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; pods in {ns} ({selector}):\n{}",
                    describe_pods(&last)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for exactly `n` pods matching `selector`, all Ready and none
    /// terminating.
    async fn wait_ready(&self, ns: &str, selector: &str, n: usize, timeout: Duration) -> anyhow::Result<Vec<Pod>> {
        self.wait_pods(ns, selector, &format!("{n} ready pods"), timeout, |pods| {
            pods.len() == n && pods.iter().all(|p| is_ready(p) && !is_terminating(p))
        })
        .await
    }

    async fn node_port(&self, ns: &str, service: &str) -> anyhow::Result<u16> {
        let svc = Api::<Service>::namespaced(self.client.clone(), ns).get(service).await?;
        let port = svc
            .spec
            .and_then(|s| s.ports)
            .and_then(|p| p.first().and_then(|p| p.node_port))
            .context("the Service has no nodePort")?;
        Ok(u16::try_from(port)?)
    }
}

// ---------------------------------------------------------------------
// Step 1: a web Deployment behind a ClusterIP, a NodePort and a sticky
// Service.

async fn web(e2e: &E2e) -> anyhow::Result<()> {
    let (server_node, client_node) = (e2e.worker(0), e2e.worker(1));
    e2e.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: e2e-web}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: e2e-web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {server_node}}}
      containers:
      - name: netexec
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: e2e-web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-np, namespace: e2e-web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-sticky, namespace: e2e-web}}
spec:
  selector: {{app: web}}
  sessionAffinity: ClientIP
  ports: [{{port: 80, targetPort: http}}]
---
{client}
"#,
        client = client_pod("e2e-web", client_node),
    ))
    .await?;
    let pods = e2e.wait_ready("e2e-web", "app=web", 3, Duration::from_secs(90)).await?;
    let names: BTreeSet<String> = pods.iter().map(pod_name).collect();
    e2e.wait_ready("e2e-web", "app=client", 1, Duration::from_secs(60))
        .await?;

    // From the other worker, by the Service's DNS name: every replica.
    let url = "http://web.e2e-web.svc.cluster.local/hostname";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = BTreeSet::new();
    while seen != names {
        if Instant::now() > deadline {
            bail!("by the Service's DNS name, answers from {seen:?} only; replicas {names:?}");
        }
        match wget_many(e2e, "e2e-web", "client", url, 30).await {
            Ok(answers) => seen.extend(answers),
            Err(e) => eprintln!("{e:#}"),
        }
    }

    // The NodePort from the host, on both workers (the client's has no
    // replica: it forwards to the other).
    let node_port = e2e.node_port("e2e-web", "web-np").await?;
    for i in 0..2 {
        let addr = SocketAddr::from((e2e.worker_ip(i), node_port));
        eventually_ok(
            &format!("NodePort {addr} answering"),
            Duration::from_secs(30),
            || async { http_get(addr, "/hostname").await.map(drop) },
        )
        .await?;
        let mut seen = BTreeSet::new();
        for _ in 0..30 {
            let body = http_get(addr, "/hostname")
                .await
                .with_context(|| format!("NodePort {addr}"))?;
            seen.insert(body);
        }
        if seen != names {
            bail!("NodePort {addr}: answers from {seen:?}, replicas {names:?}");
        }
    }

    // ClientIP affinity: one client, one replica.
    let url = "http://web-sticky.e2e-web.svc.cluster.local/hostname";
    eventually_ok("the sticky Service answering", Duration::from_secs(30), || async {
        wget_many(e2e, "e2e-web", "client", url, 1)
            .await?
            .first()
            .map(drop)
            .context("no answer")
    })
    .await?;
    let answers = wget_many(e2e, "e2e-web", "client", url, 20).await?;
    let distinct: BTreeSet<&String> = answers.iter().collect();
    if answers.len() != 20 || distinct.len() != 1 {
        bail!("sessionAffinity ClientIP: {} answers from {distinct:?}", answers.len());
    }
    Ok(())
}

/// A busybox pod on `node` that sleeps, to run commands from.
fn client_pod(ns: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {ns}, labels: {{app: client}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: {BUSYBOX}
    command: [sleep, "3600"]
"#
    )
}

/// `n` requests to `url` from `pod` with busybox wget; the bodies of the
/// ones answered (one line each).
async fn wget_many(e2e: &E2e, ns: &str, pod: &str, url: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let script = format!("for i in $(seq {n}); do wget -q -O - {url}; echo; done");
    let out = e2e.exec(ns, pod, &["sh", "-c", &script]).await?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

// ---------------------------------------------------------------------
// Step 3: scaling.

async fn scale(e2e: &E2e) -> anyhow::Result<()> {
    e2e.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: e2e-scale}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: scale, namespace: e2e-scale}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: scale}}}}
  template:
    metadata: {{labels: {{app: scale}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: pause
        image: {PAUSE}
"#
    ))
    .await?;
    e2e.wait_ready("e2e-scale", "app=scale", 3, Duration::from_secs(60))
        .await?;
    e2e.kubectl(&["scale", "-n", "e2e-scale", "deployment/scale", "--replicas=10"])
        .await?;
    let pods = e2e
        .wait_ready("e2e-scale", "app=scale", 10, Duration::from_secs(90))
        .await?;
    let nodes: BTreeSet<String> = pods.iter().filter_map(node_of).collect();
    let workers: BTreeSet<String> = (0..2).map(|i| e2e.worker(i).to_owned()).collect();
    if nodes != workers {
        bail!(
            "10 replicas on {nodes:?}, not spread over {workers:?}:\n{}",
            describe_pods(&pods)
        );
    }
    e2e.kubectl(&["scale", "-n", "e2e-scale", "deployment/scale", "--replicas=2"])
        .await?;
    e2e.wait_ready("e2e-scale", "app=scale", 2, Duration::from_secs(90))
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------
// Step 7: the other workload kinds, volumes, kubectl's streaming commands
// and the API from a pod.

fn cronjob_yaml() -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: e2e-apps}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: tick, namespace: e2e-apps}}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: tick
            image: {BUSYBOX}
            command: [echo, tick]
"#
    )
}

async fn apps(e2e: &E2e) -> anyhow::Result<()> {
    let ns = "e2e-apps";
    e2e.apply(&format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: job, namespace: {ns}}}
spec:
  completions: 2
  parallelism: 2
  template:
    metadata: {{labels: {{app: job}}}}
    spec:
      restartPolicy: Never
      containers:
      - name: job
        image: {BUSYBOX}
        command: [sh, -c, "echo job-done"]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: ds, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: ds}}}}
  template:
    metadata: {{labels: {{app: ds}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: pause
        image: {PAUSE}
---
apiVersion: v1
kind: Service
metadata: {{name: ss, namespace: {ns}}}
spec:
  clusterIP: None
  selector: {{app: ss}}
  ports: [{{port: 8080}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: {ns}}}
spec:
  serviceName: ss
  replicas: 2
  selector: {{matchLabels: {{app: ss}}}}
  template:
    metadata: {{labels: {{app: ss}}}}
    spec:
      containers:
      - name: netexec
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        readinessProbe:
          httpGet: {{path: /healthz, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{greeting: hello-from-configmap}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {ns}}}
stringData: {{password: hello-from-secret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: vols, namespace: {ns}, labels: {{app: vols}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: vols
    image: {BUSYBOX}
    command: [sh, -c, "echo hello-from-logs; exec sleep 3600"]
    volumeMounts:
    - {{name: settings, mountPath: /etc/settings}}
    - {{name: creds, mountPath: /etc/creds}}
  volumes:
  - name: settings
    configMap: {{name: settings}}
  - name: creds
    secret: {{secretName: creds}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-reader, namespace: {ns}}}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: pod-reader, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}
subjects:
- {{kind: ServiceAccount, name: default, namespace: {ns}}}
"#
    ))
    .await?;

    // The Job completes.
    let jobs = Api::<Job>::namespaced(e2e.client.clone(), ns);
    eventually_ok("the Job to complete", Duration::from_secs(90), || async {
        let job = jobs.get("job").await?;
        let status = job.status.unwrap_or_default();
        let complete = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        if status.succeeded != Some(2) || !complete {
            bail!("succeeded {:?}, complete {complete}", status.succeeded);
        }
        Ok(())
    })
    .await?;

    // The DaemonSet: one ready pod on every node.
    let nodes: BTreeSet<String> = Api::<Node>::all(e2e.client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let want = nodes.clone();
    e2e.wait_pods(
        ns,
        "app=ds",
        "a ready DaemonSet pod on every node",
        Duration::from_secs(60),
        |pods| {
            pods.iter().all(is_ready)
                && pods.iter().filter_map(node_of).collect::<BTreeSet<_>>() == want
                && pods.len() == want.len()
        },
    )
    .await?;

    // The StatefulSet: in order, with stable DNS names.
    let pods = e2e.wait_ready(ns, "app=ss", 2, Duration::from_secs(90)).await?;
    let web0 = find_pod(&pods, "web-0")?;
    let web1 = find_pod(&pods, "web-1")?;
    let web0_ready = ready_since(web0).context("web-0 has no Ready time")?;
    let web1_created = web1
        .metadata
        .creation_timestamp
        .as_ref()
        .context("web-1 has no creationTimestamp")?
        .0;
    if web1_created < web0_ready {
        bail!("web-1 was created at {web1_created} before web-0 was ready at {web0_ready}");
    }
    let web0_ip = web0
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("web-0 has no IP")?;
    e2e.wait_ready(ns, "app=vols", 1, Duration::from_secs(60)).await?;
    let name = format!("web-0.ss.{ns}.svc.cluster.local");
    eventually_ok(
        &format!("{name} resolving to {web0_ip}"),
        Duration::from_secs(30),
        || async {
            let out = e2e.exec(ns, "vols", &["nslookup", &name]).await?;
            if !out.contains(&web0_ip) {
                bail!("nslookup {name}: {out}");
            }
            Ok(())
        },
    )
    .await?;

    // ConfigMap and Secret volumes.
    let greeting = e2e.exec(ns, "vols", &["cat", "/etc/settings/greeting"]).await?;
    let password = e2e.exec(ns, "vols", &["cat", "/etc/creds/password"]).await?;
    if greeting != "hello-from-configmap" || password != "hello-from-secret" {
        bail!("volumes: configmap {greeting:?}, secret {password:?}");
    }

    // logs, exec, cp and port-forward through each kubectl.
    for (version, bin) in &e2e.kubectls {
        kubectl_streaming(e2e, version, bin)
            .await
            .with_context(|| format!("kubectl {version}"))?;
    }

    // A pod calls the API through the `kubernetes` Service with its
    // service account's token.
    e2e.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: incluster, namespace: {ns}, labels: {{app: incluster}}}}
spec:
  restartPolicy: Never
  containers:
  - name: incluster
    image: {AGNHOST}
    args: [inclusterclient, --once, --path, /api/v1/namespaces/{ns}/pods]
"#
    ))
    .await?;
    let pods = e2e
        .wait_pods(
            ns,
            "app=incluster",
            "the in-cluster client to finish",
            Duration::from_secs(60),
            |pods| pods.iter().all(|p| matches!(phase(p), "Succeeded" | "Failed")) && !pods.is_empty(),
        )
        .await?;
    let logs = e2e.kubectl(&["logs", "-n", ns, "incluster"]).await?;
    if phase(&pods[0]) != "Succeeded" || !logs.contains("status=200") || !logs.contains("\"PodList\"") {
        bail!("the in-cluster client ended {}: {logs}", phase(&pods[0]));
    }

    // The CronJob fired within its first minute (and its Job completed).
    let deadline = e2e.cronjob_created + Duration::from_secs(100);
    loop {
        let fired = jobs.list(&ListParams::default()).await?.items.into_iter().any(|j| {
            let by_cronjob = j
                .metadata
                .owner_references
                .unwrap_or_default()
                .iter()
                .any(|o| o.kind == "CronJob" && o.name == "tick");
            by_cronjob && j.status.and_then(|s| s.succeeded).unwrap_or(0) >= 1
        });
        if fired {
            break;
        }
        if Instant::now() > deadline {
            let cronjob = e2e.kubectl(&["get", "cronjob", "-n", ns, "tick", "-o", "yaml"]).await?;
            bail!("the CronJob */1 did not run a Job to completion within 100 s:\n{cronjob}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // No more Jobs while the control plane restarts.
    e2e.kubectl(&["delete", "cronjob", "-n", ns, "tick"]).await?;
    Ok(())
}

/// `kubectl logs`, `exec`, `cp` and `port-forward` through one kubectl.
async fn kubectl_streaming(e2e: &E2e, version: &str, bin: &PathBuf) -> anyhow::Result<()> {
    let ns = "e2e-apps";
    let logs = e2e.kubectl_ok(bin, &["logs", "-n", ns, "vols"], None).await?;
    if !logs.contains("hello-from-logs") {
        bail!("logs: {logs:?}");
    }
    let out = e2e
        .kubectl_ok(bin, &["exec", "-n", ns, "vols", "--", "echo", "exec-ok"], None)
        .await?;
    if out.trim() != "exec-ok" {
        bail!("exec: {out:?}");
    }
    // Our kubectl has no `cp`.
    if version != "ours" {
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("up.txt");
        let content = format!("copied by kubectl {version}\n");
        std::fs::write(&local, &content)?;
        let remote = format!("{ns}/vols:/tmp/cp-{version}.txt");
        let local_s = local.to_string_lossy().into_owned();
        e2e.kubectl_ok(bin, &["cp", &local_s, &remote], None).await?;
        let back = dir.path().join("down.txt");
        let back_s = back.to_string_lossy().into_owned();
        e2e.kubectl_ok(bin, &["cp", &remote, &back_s], None).await?;
        let got = std::fs::read_to_string(&back)?;
        if got != content {
            bail!("cp round trip: {got:?}, sent {content:?}");
        }
    }
    port_forward(e2e, bin).await.context("port-forward")
}

/// `kubectl port-forward pod/web-0 :8080`, then a request through it.
async fn port_forward(e2e: &E2e, bin: &PathBuf) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(bin)
        .args(["port-forward", "-n", "e2e-apps", "pod/web-0", ":8080"])
        .env("KUBECONFIG", e2e.launched.kubeconfig())
        .env("HOME", e2e.launched.home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            // "Forwarding from 127.0.0.1:41234 -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let port: u16 = rest.split_whitespace().next().unwrap_or("").parse()?;
                return Ok(port);
            }
        }
        bail!("port-forward exited without forwarding")
    })
    .await
    .context("no \"Forwarding from\" line within 20 s")??;
    let body = http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/hostname").await?;
    child.kill().await.ok();
    if body != "web-0" {
        bail!("through port {port}: {body:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Step 2: a rolling update with draining, under load; then undo.

/// The image the rolling update moves to: our agnhost under a new name,
/// put on the workers by `cluster load-image` (no registry has it).
const NEXT_AGNHOST: &str = "example.com/e2e/agnhost:next";

/// Loads [`NEXT_AGNHOST`] into every worker's containerd.
fn load_next_agnhost(e2e: &E2e) -> anyhow::Result<()> {
    let archive = launched::retagged_archive("agnhost", "2.53", NEXT_AGNHOST, e2e.launched.root.path())?;
    e2e.launched
        .cluster_ok(&["load-image", &archive.display().to_string()])?;
    Ok(())
}

async fn rolling_update(e2e: &E2e) -> anyhow::Result<()> {
    let ns = "e2e-roll";
    load_next_agnhost(e2e)?;
    e2e.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: roll, namespace: {ns}}}
spec:
  replicas: 3
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  selector: {{matchLabels: {{app: roll}}}}
  template:
    metadata: {{labels: {{app: roll}}}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: web
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec: {{command: [sleep, "5"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: roll, namespace: {ns}}}
spec:
  type: NodePort
  selector: {{app: roll}}
  ports: [{{port: 80, targetPort: http}}]
"#
    ))
    .await?;
    let old = e2e.wait_ready(ns, "app=roll", 3, Duration::from_secs(90)).await?;
    let old_names: BTreeSet<String> = old.iter().map(pod_name).collect();
    let node_port = e2e.node_port(ns, "roll").await?;
    let targets: Vec<SocketAddr> = (0..2)
        .map(|i| SocketAddr::from((e2e.worker_ip(i), node_port)))
        .collect();
    for &addr in &targets {
        eventually_ok(
            &format!("NodePort {addr} answering"),
            Duration::from_secs(30),
            || async { http_get(addr, "/hostname").await.map(drop) },
        )
        .await?;
    }

    // A client without pause, a new connection per request, alternating
    // between the workers' NodePorts.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(client_loop(targets, stop.clone()));
    let result = async {
        e2e.kubectl(&[
            "patch",
            "-n",
            ns,
            "deployment/roll",
            "--type=json",
            "-p",
            &format!(
                r#"[{{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"{NEXT_AGNHOST}"}},{{"op":"replace","path":"/spec/template/spec/containers/0/args","value":["serve-hostname","--http","--port=8080"]}}]"#
            ),
        ])
        .await?;
        wait_template(e2e, ns, "serve-hostname").await
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let stats = load.await?;
    result?;
    eprintln!(
        "rolling update: {} requests answered, {} failed",
        stats.ok,
        stats.failed.len()
    );
    if !stats.failed.is_empty() {
        bail!(
            "{} of {} requests failed during the rolling update; first ones: {:?}",
            stats.failed.len(),
            stats.ok + stats.failed.len(),
            &stats.failed[..stats.failed.len().min(10)]
        );
    }
    let new_seen: BTreeSet<&String> = stats.hosts.iter().filter(|h| !old_names.contains(*h)).collect();
    if stats.ok < 20 || new_seen.is_empty() {
        bail!("the client saw {} answers, from new pods {new_seen:?}", stats.ok);
    }

    e2e.kubectl(&["rollout", "undo", "-n", ns, "deployment/roll"]).await?;
    wait_template(e2e, ns, "netexec").await
}

/// Waits until the rollout is done: the Deployment reports 3 updated,
/// available replicas and exactly 3 pods exist (the drained ones gone), all
/// ready, running `args[0]`.
async fn wait_template(e2e: &E2e, ns: &str, program: &str) -> anyhow::Result<()> {
    let deployments = Api::<Deployment>::namespaced(e2e.client.clone(), ns);
    eventually_ok("the Deployment's rollout", Duration::from_secs(120), || async {
        let d = deployments.get("roll").await?;
        let generation = d.metadata.generation.unwrap_or(0);
        let s = d.status.unwrap_or_default();
        let done = s.observed_generation >= Some(generation)
            && s.updated_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.replicas == Some(3);
        if !done {
            bail!("status {s:?}");
        }
        Ok(())
    })
    .await?;
    e2e.wait_pods(
        ns,
        "app=roll",
        &format!("3 ready pods running {program}"),
        Duration::from_secs(60),
        |pods| {
            pods.len() == 3
                && pods.iter().all(|p| {
                    is_ready(p)
                        && !is_terminating(p)
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.containers[0].args.as_ref())
                            .and_then(|a| a.first())
                            .is_some_and(|a| a == program)
                })
        },
    )
    .await?;
    Ok(())
}

#[derive(Default)]
struct LoadStats {
    ok: usize,
    failed: Vec<String>,
    hosts: BTreeSet<String>,
}

async fn client_loop(targets: Vec<SocketAddr>, stop: Arc<AtomicBool>) -> LoadStats {
    let mut stats = LoadStats::default();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let addr = targets[i % targets.len()];
        i += 1;
        match http_get(addr, "/hostname").await {
            Ok(body) => {
                stats.ok += 1;
                stats.hosts.insert(body);
            }
            Err(e) => stats.failed.push(format!("{addr}: {e:#}")),
        }
    }
    stats
}

// ---------------------------------------------------------------------
// Step 6: the whole control plane stopped and started again.

async fn control_plane_restart(e2e: &E2e) -> anyhow::Result<()> {
    let ns = "e2e-cp";
    e2e.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: marker, namespace: {ns}}}
data: {{phase: before}}
"#
    ))
    .await?;
    // A watch from before the restart, to resume after it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let configmaps = Api::<ConfigMap>::namespaced(e2e.client.clone(), ns);
    let watch = tokio::spawn(async move {
        let mut stream = watcher(configmaps, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = stream.next().await {
            if let Ok(cm) = event
                && cm.metadata.name.as_deref() == Some("marker")
                && let Some(phase) = cm.data.and_then(|d| d.get("phase").cloned())
                && tx.send(phase).is_err()
            {
                return;
            }
        }
    });
    let result = async {
        wait_message(&mut rx, "before", Duration::from_secs(30)).await?;
        let objects_before = objects(e2e).await?;
        let pods_before = running_pods(e2e).await?;

        let cp = e2e.launched.plan.control_planes[0].name.clone();
        for component in ["kube-apiserver", "kube-scheduler", "kube-controller-manager"] {
            e2e.launched.cluster_ok(&["kill", &cp, component])?;
        }
        eventually_ok("the API to be down", Duration::from_secs(20), || async {
            match e2e.client.apiserver_version().await {
                Ok(_) => bail!("still answering"),
                Err(_) => Ok(()),
            }
        })
        .await?;
        let out = e2e.launched.cluster_ok(&["up", "--wait", "120s"])?;
        eprintln!("{out}");

        let objects_after = objects(e2e).await?;
        if objects_after != objects_before {
            let gone: Vec<_> = objects_before.difference(&objects_after).collect();
            let new: Vec<_> = objects_after.difference(&objects_before).collect();
            bail!("objects changed across the restart: gone {gone:?}, new {new:?}");
        }
        let pods_after = running_pods(e2e).await?;
        if pods_after != pods_before {
            let changed: Vec<_> = pods_before
                .iter()
                .filter(|(k, v)| pods_after.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}: {v} -> {:?}", pods_after.get(k)))
                .collect();
            bail!("running pods changed across the restart: {changed:?}");
        }

        Api::<ConfigMap>::namespaced(e2e.client.clone(), ns)
            .patch(
                "marker",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"phase": "after"}})),
            )
            .await?;
        wait_message(&mut rx, "after", Duration::from_secs(60))
            .await
            .context("the watch from before the restart")
    }
    .await;
    watch.abort();
    result
}

async fn wait_message(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    want: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(got)) if got == want => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => bail!("the watch ended"),
            Err(_) => bail!("no {want:?} from the watch within {timeout:?}"),
        }
    }
}

/// Every object of the kinds the steps made, as kind/namespace/name.
async fn objects(e2e: &E2e) -> anyhow::Result<BTreeSet<String>> {
    let out = e2e
        .kubectl(&[
            "get",
            "namespaces,nodes,deployments,replicasets,statefulsets,daemonsets,jobs,services,configmaps,secrets,serviceaccounts,roles,rolebindings,pods",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
        ])
        .await?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// The test's running pods: name -> uid and each container's ID and
/// restart count.
async fn running_pods(e2e: &E2e) -> anyhow::Result<BTreeMap<String, String>> {
    let pods = Api::<Pod>::all(e2e.client.clone()).list(&ListParams::default()).await?;
    let mut out = BTreeMap::new();
    for p in pods.items {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        if !ns.starts_with("e2e-") || phase(&p) != "Running" {
            continue;
        }
        let containers: Vec<String> = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                format!(
                    "{}={}/{}",
                    c.name,
                    c.container_id.clone().unwrap_or_default(),
                    c.restart_count
                )
            })
            .collect();
        out.insert(
            format!("{ns}/{}", pod_name(&p)),
            format!(
                "uid {} {}",
                p.metadata.uid.clone().unwrap_or_default(),
                containers.join(",")
            ),
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------
// Step 4: a worker cut off the network, then healed.

async fn cut_worker(e2e: &E2e) -> anyhow::Result<()> {
    let ns = "e2e-evict";
    e2e.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: evict, namespace: {ns}}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: evict}}}}
  template:
    metadata: {{labels: {{app: evict}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: netexec
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: evict, namespace: {ns}}}
spec:
  type: NodePort
  selector: {{app: evict}}
  ports: [{{port: 80, targetPort: http}}]
"#
    ))
    .await?;
    let pods = e2e.wait_ready(ns, "app=evict", 4, Duration::from_secs(90)).await?;
    // Cut the worker that runs some of them (the second if both do).
    let on = |i: usize| -> Vec<String> {
        pods.iter()
            .filter(|p| node_of(p).as_deref() == Some(e2e.worker(i)))
            .map(pod_name)
            .collect()
    };
    let (victim, survivor) = if on(1).is_empty() { (0, 1) } else { (1, 0) };
    let stranded = on(victim);
    let victim_name = e2e.worker(victim).to_owned();
    let survivor_name = e2e.worker(survivor).to_owned();
    eprintln!("cutting {victim_name} off with pods {stranded:?}");
    let node_port = e2e.node_port(ns, "evict").await?;
    let addr = SocketAddr::from((e2e.worker_ip(survivor), node_port));
    eventually_ok(
        &format!("NodePort {addr} answering"),
        Duration::from_secs(30),
        || async { http_get(addr, "/hostname").await.map(drop) },
    )
    .await?;

    let cut = Instant::now();
    e2e.launched.cluster_ok(&["link", &victim_name, "down"])?;
    let result = async {
        let nodes = Api::<Node>::all(e2e.client.clone());
        eventually_ok(
            &format!("{victim_name} NotReady"),
            NODE_GRACE + Duration::from_secs(30),
            || async {
                match node_ready(&nodes.get(&victim_name).await?) {
                    true => bail!("still Ready"),
                    false => Ok(()),
                }
            },
        )
        .await?;
        eprintln!("{victim_name} NotReady after {:.1?}", cut.elapsed());

        // The Service answers again, only from the survivor's pods, 20
        // times in a row.
        let limit = NODE_GRACE + TOLERATION + RECOVERY_WINDOW;
        let mut in_a_row = 0;
        let mut last_error = String::new();
        while in_a_row < 20 {
            if cut.elapsed() > limit {
                bail!("the Service did not answer 20 times in a row within {limit:?} of the cut; last: {last_error}");
            }
            match http_get(addr, "/hostname").await {
                Ok(host) if !stranded.contains(&host) => in_a_row += 1,
                Ok(host) => {
                    in_a_row = 0;
                    last_error = format!("answered by stranded {host}");
                }
                Err(e) => {
                    in_a_row = 0;
                    last_error = format!("{e:#}");
                }
            }
        }
        eprintln!("the Service answers again {:.1?} after the cut", cut.elapsed());

        // The stranded pods are evicted and replaced on the survivor.
        let remaining = limit.saturating_sub(cut.elapsed()) + Duration::from_secs(10);
        let survivor_for = survivor_name.clone();
        let stranded_for = stranded.clone();
        e2e.wait_pods(
            ns,
            "app=evict",
            "4 ready replicas on the survivor, the stranded ones evicted",
            remaining,
            move |pods| {
                let live: Vec<&Pod> = pods.iter().filter(|p| !is_terminating(p)).collect();
                live.len() == 4
                    && live
                        .iter()
                        .all(|p| is_ready(p) && node_of(p).as_deref() == Some(survivor_for.as_str()))
                    && pods
                        .iter()
                        .filter(|p| stranded_for.contains(&pod_name(p)))
                        .all(is_terminating)
            },
        )
        .await?;
        Ok(())
    }
    .await;

    // Heal it whatever happened, then it comes back Ready and finishes
    // the evicted pods' deletion.
    e2e.launched.cluster_ok(&["link", &victim_name, "up"])?;
    result?;
    let nodes = Api::<Node>::all(e2e.client.clone());
    eventually_ok(
        &format!("{victim_name} Ready again"),
        Duration::from_secs(60),
        || async {
            match node_ready(&nodes.get(&victim_name).await?) {
                true => Ok(()),
                false => bail!("not Ready"),
            }
        },
    )
    .await?;
    e2e.wait_pods(
        ns,
        "app=evict",
        "the evicted pods gone",
        Duration::from_secs(60),
        |pods| pods.len() == 4 && !pods.iter().any(|p| stranded.contains(&pod_name(p))),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------
// Helpers.

/// Retries `f` until it succeeds, for at most `timeout`; the last error on
/// timeout.
async fn eventually_ok<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("timed out after {timeout:?} waiting for {what}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// `GET path` on a new connection; the body if the status is 200.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.context("connect")?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .context("write")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.context("read")?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .context("no answer within 3 s")??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        bail!("answered {status:?}");
    }
    Ok(body.trim().to_owned())
}

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn is_ready(p: &Pod) -> bool {
    ready_since(p).is_some()
}

/// When the pod became Ready, if it is.
fn ready_since(p: &Pod) -> Option<jiff::Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0).unwrap_or_default())
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn find_pod<'a>(pods: &'a [Pod], name: &str) -> anyhow::Result<&'a Pod> {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .with_context(|| format!("no pod {name}"))
}

fn describe_pods(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| {
            format!(
                "  {} on {:?}: {} ready={} terminating={}\n",
                pod_name(p),
                node_of(p),
                phase(p),
                is_ready(p),
                is_terminating(p)
            )
        })
        .collect()
}
