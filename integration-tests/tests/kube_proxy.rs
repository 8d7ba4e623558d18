//! kube-proxy on real kernel networking: a node in a network namespace
//! with a pod bridge, backend "pods" running the test server, a client pod
//! and an outside client, kube-proxy programming the node from real
//! Services and EndpointSlices in a real apiserver. Each check sends real
//! packets. Needs root (skips otherwise); every namespace, link and
//! process goes away at the end.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::netns::{self, NetNs};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NODE: &str = "kp-node";
const NODE_IP: &str = "192.168.50.1";
const OUTSIDE_IP: &str = "192.168.50.2";
const BACKENDS: [(&str, &str); 2] = [("be1", "10.244.0.11"), ("be2", "10.244.0.12")];
const CLIENT_IP: &str = "10.244.0.20";

fn agnhost() -> PathBuf {
    node_setup::images::static_bin_dir().join("agnhost")
}

fn skip() -> bool {
    if let Some(why) = netns::missing_prerequisites() {
        eprintln!("skipping: {why}");
        return true;
    }
    assert!(
        agnhost().exists(),
        "{} is missing: run `make images`",
        agnhost().display()
    );
    false
}

/// The node, its pods and an outside client, with an apiserver reachable
/// from the node over a veth to the host.
struct Net {
    api: ApiServers,
    client: kube::Client,
    node: NetNs,
    outside: NetNs,
    /// Held for their lifetime: the backend pods and their servers.
    _backends: Vec<NetNs>,
    pod: NetNs,
    dir: tempfile::TempDir,
}

fn dns_bin() -> anyhow::Result<String> {
    Ok(integration_tests::store_cluster::workspace_bin("cluster-dns")?
        .to_string_lossy()
        .into_owned())
}

impl Net {
    async fn start() -> anyhow::Result<Net> {
        let node = NetNs::new("kpn")?;
        // A /30 between host and node for the API, picked at random.
        let r: u32 = rand::random::<u32>() % (250 * 64);
        let (a, b) = (r / 64, (r % 64) * 4);
        let host_ip = format!("172.31.{a}.{}", b + 1);
        let node_uplink = format!("172.31.{a}.{}", b + 2);
        let host_if = format!("kh{}", netns::unique_tag());
        netns::veth(
            None,
            &host_if,
            Some(&format!("{host_ip}/30")),
            &node,
            "uplink",
            Some(&format!("{node_uplink}/30")),
        )?;
        // As on any node, a default route (Service addresses are routed
        // nowhere; the node's own traffic to them is DNATed on output).
        node.exec(&["ip", "route", "add", "default", "via", &host_ip])?;
        let api = ApiServers::start_with(1, &["--bind-address", "0.0.0.0", "--advertise-address", &host_ip]).await?;
        let client = api.client().await?;

        node.sysctl("net.ipv4.ip_forward", "1")?;
        netns::bridge(&node, "cbr0", "10.244.0.1/24")?;
        // Pod -> Service -> pod on one bridge needs bridged traffic to
        // pass the IP hooks (br_netfilter).
        node.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
        let outside = NetNs::new("kpo")?;
        netns::veth(
            Some(&node),
            "ext0",
            Some(&format!("{NODE_IP}/24")),
            &outside,
            "eth0",
            Some(&format!("{OUTSIDE_IP}/24")),
        )?;
        outside.exec(&["ip", "route", "add", "default", "via", NODE_IP])?;

        let dir = tempfile::tempdir()?;
        let mut backends = Vec::new();
        for (name, ip) in BACKENDS {
            let mut be = netns::pod(&node, "cbr0", "kpb", &format!("{ip}/24"), "10.244.0.1")?;
            let script = format!(
                "hostname {name} && exec {} netexec --http-port 8080 --udp-port 8081",
                agnhost().display()
            );
            be.spawn(
                &["unshare", "--uts", "sh", "-c", &script],
                Some(&dir.path().join(format!("{name}.log"))),
            )?;
            backends.push(be);
        }
        let pod = netns::pod(&node, "cbr0", "kpc", &format!("{CLIENT_IP}/24"), "10.244.0.1")?;

        // The Node object kube-proxy reads its addresses from.
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": NODE}}))?,
            )
            .await?;
        nodes
            .patch_status(
                NODE,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}})),
            )
            .await?;
        let net = Net {
            api,
            client,
            node,
            outside,
            _backends: backends,
            pod,
            dir,
        };
        for (name, ip) in BACKENDS {
            net.eventually(
                &format!("{name} serving"),
                &net.pod,
                || http(ip, 8080, "/hostname"),
                |r| r.as_ref().is_ok_and(|s| s == name),
            )
            .await?;
        }
        Ok(net)
    }

    fn start_proxy(&mut self, mode: &str) -> anyhow::Result<()> {
        let kubeconfig = self.api.dir().join("api0/kube-proxy.kubeconfig");
        let bin = integration_tests::store_cluster::workspace_bin("kube-proxy")?;
        let log = self.dir.path().join(format!("kube-proxy-{mode}.log"));
        let bin = bin.to_string_lossy().into_owned();
        let kc = kubeconfig.to_string_lossy().into_owned();
        self.node.spawn(
            &[
                &bin,
                "--kubeconfig",
                &kc,
                "--hostname-override",
                NODE,
                "--proxy-mode",
                mode,
                "--cluster-cidr",
                "10.244.0.0/16",
                "--min-sync-period",
                "100ms",
                "--healthz-bind-address",
                "127.0.0.1:10256",
                "--metrics-bind-address",
                "127.0.0.1:10249",
            ],
            Some(&log),
        )?;
        Ok(())
    }

    fn proxy_log(&self, mode: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("kube-proxy-{mode}.log"))).unwrap_or_default()
    }

    /// Retries `f` in `ns` until `ok` holds (20 s at most).
    async fn eventually<F>(&self, what: &str, ns: &NetNs, f: impl Fn() -> Vec<String>, ok: F) -> anyhow::Result<String>
    where
        F: Fn(&anyhow::Result<String>) -> bool,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = run_in(ns, &f());
            if ok(&r) {
                return Ok(r.unwrap_or_default());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; last result: {r:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn service(&self, name: &str, spec: serde_json::Value) -> anyhow::Result<Service> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
        Ok(api
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?,
            )
            .await?)
    }

    /// The slice for `svc`: backends as (name, ip, node, ready, serving, terminating).
    async fn slice(&self, svc: &str, eps: &[(&str, &str, &str, bool, bool, bool)]) -> anyhow::Result<()> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), "default");
        let endpoints: Vec<serde_json::Value> = eps
            .iter()
            .map(|(_, ip, node, ready, serving, terminating)| {
                json!({"addresses": [ip], "nodeName": node,
                       "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
            })
            .collect();
        let body = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-manual"), "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "udp", "port": 8081, "protocol": "UDP"}],
        });
        api.patch(
            &format!("{svc}-manual"),
            &PatchParams::apply("kube-proxy-test").force(),
            &Patch::Apply(body),
        )
        .await?;
        Ok(())
    }
}

fn run_in(ns: &NetNs, args: &[String]) -> anyhow::Result<String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ns.exec(&args)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `curl` for one request, 2 s at most.
fn http(ip: &str, port: u16, path: &str) -> Vec<String> {
    ["curl", "-sS", "--max-time", "2", &format!("http://{ip}:{port}{path}")]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// One UDP datagram `msg` and its answer.
fn udp(ip: &str, port: u16, msg: &str) -> Vec<String> {
    let code = format!(
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(1);\
         s.sendto(b'{msg}',('{ip}',{port}));print(s.recv(1000).decode())"
    );
    vec!["python3".into(), "-c".into(), code]
}

/// How a TCP connect ends: `refused after <ms>`, `timeout` or `connected`.
fn connect(ip: &str, port: u16) -> Vec<String> {
    let code = format!(
        "import socket,time;t=time.time()\n\
         try:\n  socket.create_connection(('{ip}',{port}),timeout=3);print('connected')\n\
         except ConnectionRefusedError: print('refused after %d' % ((time.time()-t)*1000))\n\
         except OSError as e: print('error %s' % e)"
    );
    vec!["python3".into(), "-c".into(), code]
}

fn cluster_ip(svc: &Service) -> String {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default()
}

fn node_port(svc: &Service) -> u16 {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p[0].node_port)
        .unwrap_or(0) as u16
}

/// Which backends answer `n` requests.
fn hits(ns: &NetNs, cmd: &[String], n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| run_in(ns, cmd).ok())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn exercise(mode: &str) -> anyhow::Result<()> {
    let mut net = Net::start().await?;
    net.start_proxy(mode)?;
    let all = [
        ("be1", "10.244.0.11", NODE, true, true, false),
        ("be2", "10.244.0.12", NODE, true, true, false),
    ];
    let ports = json!([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                       {"name": "udp", "port": 81, "targetPort": 8081, "protocol": "UDP"}]);
    let web = net.service("web", json!({"ports": ports})).await?;
    net.slice("web", &all).await?;
    let ip = cluster_ip(&web);

    // ClusterIP, TCP: both endpoints answer, from a pod and from the node.
    let from_pod = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = hits(&net.pod, &http(&ip, 80, "/hostname"), 10);
            if seen.len() == 2 {
                return Ok::<_, anyhow::Error>(seen);
            }
            if Instant::now() > deadline {
                bail!(
                    "ClusterIP {ip}:80 from a pod reached {seen:?}, want be1 and be2\n{}",
                    net.proxy_log(mode)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(from_pod.await?, BTreeSet::from(["be1".to_string(), "be2".to_string()]));
    let from_node = hits(&net.node, &http(&ip, 80, "/hostname"), 12);
    assert_eq!(from_node.len(), 2, "from the node: {from_node:?}");
    // A pod keeps its own address through the Service (no masquerade).
    let seen_ip = run_in(&net.pod, &http(&ip, 80, "/clientip"))?;
    assert!(seen_ip.starts_with(&format!("{CLIENT_IP}:")), "backend saw {seen_ip}");

    // ClusterIP, UDP.
    let udp_seen = hits(&net.pod, &udp(&ip, 81, "hostname"), 12);
    assert_eq!(udp_seen.len(), 2, "UDP via ClusterIP: {udp_seen:?}");

    // NodePort from outside the node (masqueraded: policy Cluster).
    let np = net
        .service("web-np", json!({"type": "NodePort", "ports": ports}))
        .await?;
    net.slice("web-np", &all).await?;
    let port = node_port(&np);
    let answer: String = net
        .eventually(
            "NodePort from outside",
            &net.outside,
            || http(NODE_IP, port, "/hostname"),
            |r| matches!(r.as_deref(), Ok("be1") | Ok("be2")),
        )
        .await?;
    assert!(answer.starts_with("be"));

    // externalTrafficPolicy Local: only the local endpoint, client IP kept.
    let local = net
        .service(
            "web-local",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": ports}),
        )
        .await?;
    net.slice(
        "web-local",
        &[
            ("be1", "10.244.0.11", NODE, true, true, false),
            ("be2", "10.244.0.12", "other-node", true, true, false),
        ],
    )
    .await?;
    let lport = node_port(&local);
    let client_seen: String = net
        .eventually(
            "NodePort with Local policy",
            &net.outside,
            || http(NODE_IP, lport, "/clientip"),
            |r| r.as_ref().is_ok_and(|s| s.contains(':')),
        )
        .await?;
    assert!(
        client_seen.starts_with(&format!("{OUTSIDE_IP}:")),
        "Local policy must keep the client IP, backend saw {client_seen}"
    );
    let only = hits(&net.outside, &http(NODE_IP, lport, "/hostname"), 8);
    assert_eq!(only, BTreeSet::from(["be1".to_string()]));
    // Its health check node port says this node has one local endpoint.
    let hc = local.spec.as_ref().and_then(|s| s.health_check_node_port).unwrap_or(0);
    assert!(hc > 0, "no healthCheckNodePort: {:?}", local.spec);
    let health = run_in(&net.outside, &http(NODE_IP, hc as u16, "/"))?;
    assert!(health.contains("\"localEndpoints\":1"), "{health}");

    // Session affinity: every request from one client to one backend.
    let sticky = net
        .service(
            "sticky",
            json!({"ports": ports, "sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        )
        .await?;
    net.slice("sticky", &all).await?;
    let sip = cluster_ip(&sticky);
    net.eventually(
        "sticky service",
        &net.pod,
        || http(&sip, 80, "/hostname"),
        |r| r.as_ref().is_ok_and(|s| s.starts_with("be")),
    )
    .await?;
    let stuck = hits(&net.pod, &http(&sip, 80, "/hostname"), 15);
    assert_eq!(stuck.len(), 1, "session affinity: {stuck:?}");

    // No endpoints: rejected at once (ICMP port unreachable), not a hang.
    let empty = net.service("empty", json!({"ports": ports})).await?;
    let eip = cluster_ip(&empty);
    let refused: String = net
        .eventually(
            "empty service to reject",
            &net.pod,
            || connect(&eip, 80),
            |r| r.as_ref().is_ok_and(|s| s.starts_with("refused")),
        )
        .await?;
    let ms: u64 = refused.trim_start_matches("refused after ").parse().unwrap_or(9999);
    assert!(ms < 1000, "rejection took {ms} ms");

    // Endpoint removal: new connections stop going to it.
    net.slice("web", &all[..1]).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = hits(&net.pod, &http(&ip, 80, "/hostname"), 10);
        if seen == BTreeSet::from(["be1".to_string()]) {
            break;
        }
        if Instant::now() > deadline {
            bail!("after removing be2, still reached {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A terminating-but-serving endpoint is used when no ready one remains.
    net.slice("web", &[("be2", "10.244.0.12", NODE, false, true, true)])
        .await?;
    let t: String = net
        .eventually(
            "fallback to the terminating endpoint",
            &net.pod,
            || http(&ip, 80, "/hostname"),
            |r| r.as_ref().is_ok_and(|s| s == "be2"),
        )
        .await?;
    assert_eq!(t, "be2");

    // Health and metrics.
    let healthz = run_in(&net.node, &http("127.0.0.1", 10256, "/healthz"))?;
    assert!(healthz.contains("lastUpdated"), "{healthz}");
    let metrics = run_in(&net.node, &http("127.0.0.1", 10249, "/metrics"))?;
    assert!(
        metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds"),
        "{metrics}"
    );
    assert!(metrics.contains("kubeproxy_sync_proxy_rules_last_timestamp_seconds"));

    // Deleting a Service removes its rules: its ClusterIP stops answering.
    let svcs: Api<Service> = Api::namespaced(net.client.clone(), "default");
    svcs.delete("sticky", &DeleteParams::default()).await?;
    net.eventually(
        "deleted service to stop answering",
        &net.pod,
        || connect(&sip, 80),
        |r| r.as_ref().is_ok_and(|s| !s.starts_with("connected")),
    )
    .await
    .context("after deleting the Service")?;
    net.node.kill_all();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_mode_serves_cluster_ips_nodeports_affinity_and_rejects() {
    if skip() {
        return;
    }
    tokio::time::timeout(Duration::from_secs(180), exercise("nftables"))
        .await
        .expect("bounded")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_serves_cluster_ips_nodeports_affinity_and_rejects() {
    if skip() {
        return;
    }
    tokio::time::timeout(Duration::from_secs(180), exercise("iptables"))
        .await
        .expect("bounded")
        .unwrap();
}

/// The addresses in busybox nslookup's answer section (after the server's
/// own lines), sorted.
fn answers(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .split("Name:")
        .skip(1)
        .flat_map(|block| {
            block
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Cluster DNS in a pod, reached through kube-proxy at its Service's
/// ClusterIP from another pod: Services, headless Services (with an
/// endpoint hostname) and pod names resolve. And a pod reaches the
/// apiserver through the `kubernetes` Service with a service-account token.
async fn dns_and_api(net: &mut Net) -> anyhow::Result<()> {
    // Pods reach the host (the apiserver) masqueraded as the node, as the
    // CNI bridge plugin's ipMasq does.
    net.node.exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "10.244.0.0/16",
        "!",
        "-d",
        "10.244.0.0/16",
        "-j",
        "MASQUERADE",
    ])?;
    let mut dns_pod = netns::pod(&net.node, "cbr0", "kpd", "10.244.0.30/24", "10.244.0.1")?;
    let resolv = net.dir.path().join("resolv.conf");
    std::fs::write(&resolv, "")?;
    let kubeconfig = net.api.kubeconfig().to_string_lossy().into_owned();
    let dns_log = net.dir.path().join("cluster-dns.log");
    dns_pod.spawn(
        &[
            &dns_bin()?,
            "--kubeconfig",
            &kubeconfig,
            "--dns-port",
            "53",
            "--resolv-conf",
            &resolv.to_string_lossy(),
        ],
        Some(&dns_log),
    )?;
    let dns = net
        .service(
            "kube-dns",
            json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
        )
        .await?;
    let slices: Api<EndpointSlice> = Api::namespaced(net.client.clone(), "default");
    slices
        .patch(
            "kube-dns-manual",
            &PatchParams::apply("kube-proxy-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kube-dns-manual", "labels": {"kubernetes.io/service-name": "kube-dns"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.30"], "nodeName": NODE, "conditions": {"ready": true}}],
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
            })),
        )
        .await?;
    let hl = net
        .service(
            "hl",
            json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}),
        )
        .await;
    hl?;
    slices
        .patch(
            "hl-manual",
            &PatchParams::apply("kube-proxy-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "hl-manual", "labels": {"kubernetes.io/service-name": "hl"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.244.0.11"], "hostname": "be1", "conditions": {"ready": true}},
                    {"addresses": ["10.244.0.12"], "hostname": "be2", "conditions": {"ready": true}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            })),
        )
        .await?;
    let server = cluster_ip(&dns);
    let web: Api<Service> = Api::namespaced(net.client.clone(), "default");
    let web_ip = cluster_ip(&web.get("web").await?);
    let lookup = |name: &str| -> Vec<String> {
        ["busybox", "nslookup", name, server.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let out = net
        .eventually(
            "DNS for a Service through its ClusterIP",
            &net.pod,
            || lookup("web.default.svc.cluster.local"),
            |r| r.as_ref().is_ok_and(|s| answers(s).contains(&web_ip)),
        )
        .await
        .with_context(|| std::fs::read_to_string(&dns_log).unwrap_or_default())?;
    eprintln!("{out}");
    assert_eq!(answers(&out), vec![web_ip.clone()], "{out}");
    let out = run_in(&net.pod, &lookup("hl.default.svc.cluster.local"))?;
    assert_eq!(answers(&out), vec!["10.244.0.11", "10.244.0.12"], "headless: {out}");
    let out = run_in(&net.pod, &lookup("be1.hl.default.svc.cluster.local"))?;
    assert_eq!(answers(&out), vec!["10.244.0.11"], "endpoint hostname: {out}");
    let out = run_in(&net.pod, &lookup("10-244-0-12.default.pod.cluster.local"))?;
    assert_eq!(answers(&out), vec!["10.244.0.12"], "pod name: {out}");
    let missing = net
        .pod
        .command("busybox")
        .args(["nslookup", "nope.default.svc.cluster.local", &server])
        .output()?;
    let text = String::from_utf8_lossy(&missing.stdout).to_string() + &String::from_utf8_lossy(&missing.stderr);
    assert!(
        text.contains("NXDOMAIN") || !missing.status.success(),
        "unknown name: {text}"
    );

    // The API from a pod: kubernetes.default's ClusterIP, a token.
    let k: Service = web.get("kubernetes").await?;
    let kip = cluster_ip(&k);
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(net.client.clone(), "default");
    let _ = sas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}}))?,
        )
        .await;
    let tr: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": []}}))?;
    let token = sas
        .create_token_request("default", &PostParams::default(), &tr)
        .await?
        .status
        .context("token status")?
        .token;
    let ca = net.api.dir().join("pki/ca.crt").to_string_lossy().into_owned();
    let auth = format!("Authorization: Bearer {token}");
    let url = format!("https://{kip}:443/api/v1/namespaces/default/services/kubernetes");
    let body = net
        .eventually(
            "the API through the kubernetes Service",
            &net.pod,
            || {
                ["curl", "-sS", "--max-time", "3", "--cacert", &ca, "-H", &auth, &url]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            },
            |r| {
                r.as_ref()
                    .is_ok_and(|s| s.contains("\"kind\":\"Service\"") || s.contains("\"kind\": \"Service\""))
            },
        )
        .await?;
    assert!(body.contains("kubernetes"), "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_services_and_reach_the_api_through_kube_proxy() {
    if skip() {
        return;
    }
    tokio::time::timeout(Duration::from_secs(180), async {
        let mut net = Net::start().await?;
        net.start_proxy("nftables")?;
        let ports = json!([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]);
        net.service("web", json!({"ports": ports})).await?;
        dns_and_api(&mut net).await
    })
    .await
    .expect("bounded")
    .unwrap();
}
