//! What a cluster is made of, computed from its config alone: addresses,
//! names, paths, and every process with its exact command line. Nothing
//! here touches the machine, so the whole layout is table-tested.
//!
//! Layout of a cluster named `N` on node network `S` (a /24):
//!
//! - the host's end of bridge `kl<id>`: `S.1`, where the balancer (the
//!   apiservers' one address for nodes and components, `:6443`) and the
//!   registry (`:5000`) listen;
//! - control-plane member `i`: `S.(2+i)` on the same bridge, in the host's
//!   network namespace (kube-apiserver `:6443`, its store's peer `:2380`
//!   and client `:2379` ports, kube-scheduler `:10259`,
//!   kube-controller-manager `:10257`);
//! - worker `i`: network namespace `kl-<node>`, `eth0` = `S.(10+i)`
//!   (veth to the bridge), running its own containerd, kubelet and
//!   kube-proxy; pods on bridge `cni0` inside it, in the /24 of the pod
//!   subnet the controller-manager's node IPAM gives the node.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use crate::config::{Config, Role};

pub const API_PORT: u16 = 6443;
pub const REGISTRY_PORT: u16 = 5000;
pub const SCHEDULER_PORT: u16 = 10259;
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const KUBELET_PORT: u16 = 10250;
pub const KUBE_PROXY_HEALTHZ_PORT: u16 = 10256;
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The machine's resources, split between workers.
#[derive(Clone, Copy, Debug)]
pub struct HostResources {
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// Where things are: the state dir, the binaries, the images.
#[derive(Clone, Debug)]
pub struct Paths {
    pub state_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// The registry storage `make images` fills (target/images/registry).
    pub images: PathBuf,
    /// Parent of the workers' containerd dirs (short, for unix sockets).
    pub run_dir: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub config: Config,
    pub paths: Paths,
    pub bridge: String,
    pub node_subnet: Ipv4Net,
    pub host_ip: Ipv4Addr,
    pub pod_subnet: Ipv4Net,
    pub service_subnet: Ipv4Net,
    pub dns_ip: Ipv4Addr,
    pub control_planes: Vec<ControlPlane>,
    pub workers: Vec<Worker>,
    pub host: HostResources,
}

#[derive(Clone, Debug)]
pub struct ControlPlane {
    pub name: String,
    pub ip: Ipv4Addr,
}

#[derive(Clone, Debug)]
pub struct Worker {
    pub name: String,
    pub ip: Ipv4Addr,
    pub netns: String,
    /// The host's end of the worker's veth (on the bridge).
    pub veth: String,
    pub cgroup_root: String,
    pub containerd_dir: PathBuf,
    pub dir: PathBuf,
}

/// One long-running process of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSpec {
    /// `host` for the registry and balancer, else the node's name.
    pub node: String,
    pub component: String,
    /// Run inside this network namespace (`ip netns` name).
    pub netns: Option<String>,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub pid_file: PathBuf,
}

impl ProcessSpec {
    /// `node/component`, how `cluster logs` and progress output name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.node, self.component)
    }
}

/// A short, stable tag of the cluster's name for interface names (at most
/// 15 bytes each).
pub fn short_id(name: &str) -> String {
    // FNV-1a: stable across builds and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{:06x}", h & 0xff_ffff)
}

/// kind's node names: `N-control-plane`, `N-control-plane2`, `N-worker`,
/// `N-worker2`, ...
pub fn node_name(cluster: &str, role: Role, index: usize) -> String {
    let base = match role {
        Role::ControlPlane => "control-plane",
        Role::Worker => "worker",
    };
    if index == 0 {
        format!("{cluster}-{base}")
    } else {
        format!("{cluster}-{base}{}", index + 1)
    }
}

impl Plan {
    /// The plan of cluster `name`; `node_subnet` is the /24 chosen at its
    /// first `up` (kept in its state).
    pub fn new(name: &str, config: Config, node_subnet: Ipv4Net, paths: Paths, host: HostResources) -> Plan {
        let id = short_id(name);
        let base = node_subnet.network();
        let at = |n: u8| {
            let o = base.octets();
            Ipv4Addr::new(o[0], o[1], o[2], n)
        };
        let pod_subnet: Ipv4Net = config.networking.pod_subnet.parse().expect("validated");
        let service_subnet: Ipv4Net = config.networking.service_subnet.parse().expect("validated");
        let dns_ip = nth(service_subnet, 10);
        let control_planes = (0..config.count(Role::ControlPlane))
            .map(|i| ControlPlane {
                name: node_name(name, Role::ControlPlane, i),
                ip: at(2 + i as u8),
            })
            .collect();
        let workers = (0..config.count(Role::Worker))
            .map(|i| {
                let node = node_name(name, Role::Worker, i);
                Worker {
                    ip: at(10 + i as u8),
                    netns: format!("kl-{node}"),
                    veth: format!("kl{id}w{i}"),
                    cgroup_root: format!("/kubelite-{node}"),
                    containerd_dir: paths.run_dir.join(format!("{id}-w{i}")),
                    dir: paths.state_dir.join("nodes").join(&node),
                    name: node,
                }
            })
            .collect();
        Plan {
            name: name.to_owned(),
            bridge: format!("kl{id}"),
            host_ip: at(1),
            node_subnet,
            pod_subnet,
            service_subnet,
            dns_ip,
            control_planes,
            workers,
            config,
            paths,
            host,
        }
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.paths.state_dir.join("pki")
    }

    /// The admin kubeconfig (`cluster kubeconfig` prints its path).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.paths.state_dir.join("kubeconfig")
    }

    pub fn component_kubeconfig(&self, component: &str) -> PathBuf {
        self.paths
            .state_dir
            .join("kubeconfigs")
            .join(format!("{component}.kubeconfig"))
    }

    /// Where the host reaches the apiservers (the balancer).
    pub fn host_endpoint(&self) -> SocketAddr {
        SocketAddr::from((
            self.config.networking.api_server_address,
            self.config.networking.api_server_port,
        ))
    }

    /// Where nodes and components reach the apiservers (the balancer on
    /// the bridge).
    pub fn cluster_endpoint(&self) -> SocketAddr {
        SocketAddr::from((self.host_ip, API_PORT))
    }

    pub fn registry_addr(&self) -> SocketAddr {
        SocketAddr::from((self.host_ip, REGISTRY_PORT))
    }

    /// Every name and address the apiservers' serving certificate carries.
    pub fn apiserver_sans(&self) -> Vec<String> {
        let mut sans = vec![
            self.host_ip.to_string(),
            self.config.networking.api_server_address.to_string(),
            nth(self.service_subnet, 1).to_string(),
        ];
        sans.extend(self.control_planes.iter().map(|c| c.ip.to_string()));
        sans.extend(self.control_planes.iter().map(|c| c.name.clone()));
        sans
    }

    fn log(&self, node: &str, component: &str) -> PathBuf {
        self.paths
            .state_dir
            .join("logs")
            .join(node)
            .join(format!("{component}.log"))
    }

    fn spec(&self, node: &str, component: &str, program: &str, netns: Option<&str>, args: Vec<String>) -> ProcessSpec {
        ProcessSpec {
            node: node.to_owned(),
            component: component.to_owned(),
            netns: netns.map(str::to_owned),
            program: self.paths.bin_dir.join(program),
            args,
            env: vec![(
                "RUST_LOG".into(),
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )],
            log: self.log(node, component),
            pid_file: self
                .paths
                .state_dir
                .join("pids")
                .join(node)
                .join(format!("{component}.pid")),
        }
    }

    fn feature_gates(&self) -> Vec<String> {
        if self.config.feature_gates.is_empty() {
            return vec![];
        }
        let gates: Vec<String> = self
            .config
            .feature_gates
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vec![format!("--feature-gates={}", gates.join(","))]
    }

    fn extra(&self, component: &str) -> Vec<String> {
        let mut args = self.feature_gates();
        args.extend(self.config.extra_args(component));
        args
    }

    /// The registry and the balancer, on the host.
    pub fn host_processes(&self) -> Vec<ProcessSpec> {
        let state = &self.paths.state_dir;
        let registry = self.spec(
            "host",
            "registry",
            "node-setup",
            None,
            strings([
                "registry",
                "--storage",
                &path(&self.paths.images),
                "--dir",
                &path(&state.join("registry")),
                "--address",
                &self.host_ip.to_string(),
                "--port",
                &REGISTRY_PORT.to_string(),
            ]),
        );
        let mut lb = strings([
            "balancer",
            "--listen",
            &self.host_endpoint().to_string(),
            "--listen",
            &self.cluster_endpoint().to_string(),
        ]);
        for cp in &self.control_planes {
            lb.extend(strings(["--backend", &SocketAddr::from((cp.ip, API_PORT)).to_string()]));
        }
        let balancer = self.spec("host", "balancer", "cluster", None, lb);
        vec![registry, balancer]
    }

    /// kube-apiserver, kube-scheduler, kube-controller-manager of each
    /// control-plane member.
    pub fn control_plane_processes(&self) -> Vec<ProcessSpec> {
        let initial_cluster = self
            .control_planes
            .iter()
            .map(|c| format!("{}=http://{}:2380", c.name, c.ip))
            .collect::<Vec<_>>()
            .join(",");
        let pki = self.pki_dir();
        let mut out = Vec::new();
        for cp in &self.control_planes {
            let ip = cp.ip.to_string();
            let dir = self.paths.state_dir.join("control-plane").join(&cp.name);
            let mut args = strings([
                "--name",
                &cp.name,
                "--data-dir",
                &path(&dir.join("data")),
                "--cert-dir",
                &path(&pki),
                "--admin-kubeconfig",
                &path(&dir.join("admin.kubeconfig")),
                "--bind-address",
                &ip,
                "--advertise-address",
                &ip,
                "--secure-port",
                &API_PORT.to_string(),
                "--service-cluster-ip-range",
                &self.service_subnet.to_string(),
                "--listen-peer-urls",
                &format!("http://{ip}:2380"),
                "--initial-advertise-peer-urls",
                &format!("http://{ip}:2380"),
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-token",
                &self.name,
                "--listen-client-urls",
                &format!("http://{ip}:2379"),
                "--kubelet-preferred-address-types",
                "InternalIP,Hostname",
                "--component-status-scheduler",
                &format!("{ip}:{SCHEDULER_PORT}"),
                "--component-status-controller-manager",
                &format!("{ip}:{CONTROLLER_MANAGER_PORT}"),
            ]);
            args.extend(self.extra("kube-apiserver"));
            out.push(self.spec(&cp.name, "kube-apiserver", "kube-apiserver", None, args));

            let mut args = strings([
                "--kubeconfig",
                &path(&self.component_kubeconfig("kube-scheduler")),
                "--bind-address",
                &ip,
                "--secure-port",
                &SCHEDULER_PORT.to_string(),
            ]);
            args.extend(self.extra("kube-scheduler"));
            out.push(self.spec(&cp.name, "kube-scheduler", "kube-scheduler", None, args));

            let mut args = strings([
                "--kubeconfig",
                &path(&self.component_kubeconfig("kube-controller-manager")),
                "--bind-address",
                &ip,
                "--secure-port",
                &CONTROLLER_MANAGER_PORT.to_string(),
                "--service-account-private-key-file",
                &path(&pki.join("sa.key")),
                "--root-ca-file",
                &path(&pki.join("ca.crt")),
                "--allocate-node-cidrs",
                "--cluster-cidr",
                &self.pod_subnet.to_string(),
                "--service-cluster-ip-range",
                &self.service_subnet.to_string(),
                "--cluster-name",
                &self.name,
            ]);
            args.extend(self.extra("kube-controller-manager"));
            out.push(self.spec(
                &cp.name,
                "kube-controller-manager",
                "kube-controller-manager",
                None,
                args,
            ));
        }
        out
    }

    /// What each worker reserves so that its allocatable is its share of
    /// the machine (every kubelet sees the whole host as capacity).
    pub fn system_reserved(&self) -> Option<String> {
        let n = self.workers.len() as u64;
        if n <= 1 {
            return None;
        }
        let cpu_milli = u64::from(self.host.cpus) * 1000 * (n - 1) / n;
        let memory_mi = self.host.memory_bytes / (1 << 20) * (n - 1) / n;
        Some(format!("cpu={cpu_milli}m,memory={memory_mi}Mi"))
    }

    pub fn containerd_socket(&self, w: &Worker) -> PathBuf {
        w.containerd_dir.join("containerd.sock")
    }

    /// containerd, kubelet and kube-proxy of one worker, in its netns.
    pub fn worker_processes(&self, w: &Worker) -> Vec<ProcessSpec> {
        let cni_conf_dir = w.containerd_dir.join("cni").join("net.d");
        let containerd = self.spec(
            &w.name,
            "containerd",
            "node-setup",
            Some(&w.netns),
            strings([
                "containerd",
                "--dir",
                &path(&w.containerd_dir),
                "--registry",
                &self.registry_addr().to_string(),
                "--cni-conf-dir",
                &path(&cni_conf_dir),
                "--cgroup-parent-prefix",
                &w.cgroup_root,
            ]),
        );
        let pki = self.pki_dir();
        let mut args = strings([
            "--kubeconfig",
            &path(&w.dir.join("kubelet.kubeconfig")),
            "--hostname-override",
            &w.name,
            "--node-ip",
            &w.ip.to_string(),
            "--cluster-dns",
            &self.dns_ip.to_string(),
            "--cluster-domain",
            CLUSTER_DOMAIN,
            "--container-runtime-endpoint",
            &format!("unix://{}", path(&self.containerd_socket(w))),
            "--root-dir",
            &path(&w.dir.join("kubelet")),
            "--pod-log-dir",
            &path(&w.dir.join("pod-logs")),
            "--cni-conf-dir",
            &path(&cni_conf_dir),
            "--cni-bridge",
            "cni0",
            "--cgroup-root",
            &w.cgroup_root,
            "--client-ca-file",
            &path(&pki.join("ca.crt")),
            "--tls-cert-file",
            &path(&w.dir.join("pki").join("kubelet.crt")),
            "--tls-private-key-file",
            &path(&w.dir.join("pki").join("kubelet.key")),
            "--eviction-hard",
            "memory.available<100Mi",
        ]);
        if let Some(reserved) = self.system_reserved() {
            args.extend(strings(["--system-reserved", &reserved]));
        }
        args.extend(self.extra("kubelet"));
        let kubelet = self.spec(&w.name, "kubelet", "kubelet", Some(&w.netns), args);
        let mut args = strings([
            "--kubeconfig",
            &path(&self.component_kubeconfig("kube-proxy")),
            "--hostname-override",
            &w.name,
            "--proxy-mode",
            self.config.networking.kube_proxy_mode.as_str(),
            "--cluster-cidr",
            &self.pod_subnet.to_string(),
            "--healthz-bind-address",
            &format!("0.0.0.0:{KUBE_PROXY_HEALTHZ_PORT}"),
        ]);
        args.extend(self.extra("kube-proxy"));
        let proxy = self.spec(&w.name, "kube-proxy", "kube-proxy", Some(&w.netns), args);
        vec![containerd, kubelet, proxy]
    }

    /// Every process, in start order.
    pub fn processes(&self) -> Vec<ProcessSpec> {
        let mut all = self.host_processes();
        all.extend(self.control_plane_processes());
        for w in &self.workers {
            all.extend(self.worker_processes(w));
        }
        all
    }
}

/// The `n`th address of a subnet (1: the `kubernetes` Service's, 10: the
/// cluster DNS's, as kubeadm picks them).
pub fn nth(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn strings<const N: usize>(a: [&str; N]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(cps: usize, workers: usize) -> Plan {
        let mut config = Config::with_counts(cps, workers);
        config
            .components
            .entry("kube-controller-manager".into())
            .or_default()
            .extra_args
            .insert("node-monitor-grace-period".into(), "10s".into());
        Plan::new(
            "ci",
            config,
            "172.30.7.0/24".parse().unwrap(),
            Paths {
                state_dir: "/var/lib/kubelite/ci".into(),
                bin_dir: "/src/target/debug".into(),
                images: "/src/target/images/registry".into(),
                run_dir: "/run/kubelite".into(),
            },
            HostResources {
                cpus: 2,
                memory_bytes: 24 << 30,
            },
        )
    }

    fn arg<'a>(p: &'a ProcessSpec, flag: &str) -> &'a str {
        let i = p
            .args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} in {p:?}"));
        &p.args[i + 1]
    }

    #[test]
    fn names_addresses_and_interfaces() {
        let p = plan(3, 2);
        assert_eq!(p.host_ip.to_string(), "172.30.7.1");
        assert_eq!(p.dns_ip.to_string(), "10.96.0.10");
        let cps: Vec<_> = p
            .control_planes
            .iter()
            .map(|c| (c.name.as_str(), c.ip.to_string()))
            .collect();
        assert_eq!(
            cps,
            [
                ("ci-control-plane", "172.30.7.2".to_string()),
                ("ci-control-plane2", "172.30.7.3".to_string()),
                ("ci-control-plane3", "172.30.7.4".to_string())
            ]
        );
        let w = &p.workers[1];
        assert_eq!(
            (w.name.as_str(), w.ip.to_string()),
            ("ci-worker2", "172.30.7.11".to_string())
        );
        assert_eq!(w.netns, "kl-ci-worker2");
        assert_eq!(w.cgroup_root, "/kubelite-ci-worker2");
        assert!(p.bridge.len() <= 15 && w.veth.len() <= 15, "{} {}", p.bridge, w.veth);
        assert!(w.veth.starts_with(&p.bridge));
        // containerd's TTRPC socket path must fit a sockaddr_un.
        assert!(p.containerd_socket(w).as_os_str().len() + 7 < 100);
        assert!(p.apiserver_sans().contains(&"172.30.7.1".to_string()));
        assert!(p.apiserver_sans().contains(&"10.96.0.1".to_string()));
    }

    #[test]
    fn three_apiservers_form_one_store_group_behind_the_balancer() {
        let p = plan(3, 1);
        let apis: Vec<_> = p
            .control_plane_processes()
            .into_iter()
            .filter(|s| s.component == "kube-apiserver")
            .collect();
        assert_eq!(apis.len(), 3);
        let cluster = "ci-control-plane=http://172.30.7.2:2380,ci-control-plane2=http://172.30.7.3:2380,ci-control-plane3=http://172.30.7.4:2380";
        for (i, a) in apis.iter().enumerate() {
            assert_eq!(arg(a, "--initial-cluster"), cluster);
            assert_eq!(arg(a, "--advertise-address"), format!("172.30.7.{}", 2 + i));
            assert_eq!(arg(a, "--cert-dir"), "/var/lib/kubelite/ci/pki");
            assert_eq!(a.netns, None);
        }
        let lb = &p.host_processes()[1];
        assert_eq!(lb.component, "balancer");
        let backends: Vec<_> = lb
            .args
            .windows(2)
            .filter(|w| w[0] == "--backend")
            .map(|w| w[1].clone())
            .collect();
        assert_eq!(backends, ["172.30.7.2:6443", "172.30.7.3:6443", "172.30.7.4:6443"]);
        let listens: Vec<_> = lb
            .args
            .windows(2)
            .filter(|w| w[0] == "--listen")
            .map(|w| w[1].clone())
            .collect();
        assert_eq!(listens, ["127.0.0.1:6443", "172.30.7.1:6443"]);
    }

    #[test]
    fn workers_run_in_their_namespace_with_their_own_runtime_and_share() {
        let p = plan(1, 2);
        let procs = p.worker_processes(&p.workers[1]);
        let ids: Vec<_> = procs.iter().map(ProcessSpec::id).collect();
        assert_eq!(
            ids,
            ["ci-worker2/containerd", "ci-worker2/kubelet", "ci-worker2/kube-proxy"]
        );
        assert!(procs.iter().all(|s| s.netns.as_deref() == Some("kl-ci-worker2")));
        let kubelet = &procs[1];
        assert_eq!(arg(kubelet, "--cgroup-root"), "/kubelite-ci-worker2");
        assert_eq!(arg(kubelet, "--node-ip"), "172.30.7.11");
        assert_eq!(arg(kubelet, "--cluster-dns"), "10.96.0.10");
        // Half of 2 CPUs and 24 GiB each.
        assert_eq!(arg(kubelet, "--system-reserved"), "cpu=1000m,memory=12288Mi");
        assert_eq!(arg(&procs[0], "--cgroup-parent-prefix"), "/kubelite-ci-worker2");
        assert_eq!(arg(&procs[0], "--registry"), "172.30.7.1:5000");
        assert_eq!(arg(&procs[2], "--proxy-mode"), "nftables");
        // One worker: nothing to reserve.
        assert_eq!(plan(1, 1).system_reserved(), None);
    }

    #[test]
    fn extra_args_and_ipam() {
        let p = plan(1, 1);
        let cm = p
            .control_plane_processes()
            .into_iter()
            .find(|s| s.component == "kube-controller-manager")
            .unwrap();
        assert!(cm.args.contains(&"--allocate-node-cidrs".to_string()));
        assert_eq!(arg(&cm, "--cluster-cidr"), "10.244.0.0/16");
        assert_eq!(cm.args.last().unwrap(), "--node-monitor-grace-period=10s");
        assert_eq!(p.processes().len(), 2 + 3 + 3);
    }

    #[test]
    fn short_ids_are_stable_and_distinct() {
        assert_eq!(short_id("kubelite"), short_id("kubelite"));
        assert_ne!(short_id("a"), short_id("b"));
        assert_eq!(short_id("x").len(), 6);
    }
}
