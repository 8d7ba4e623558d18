//! Command-line flags, named like upstream kube-apiserver's where the
//! concept is the same, plus the embedded store's (named like etcd's).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Clone, Debug)]
#[command(
    name = "kube-apiserver",
    about = "Serves the Kubernetes API over an embedded replicated store."
)]
pub struct Options {
    /// The port on which to serve HTTPS.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// The IP address on which to advertise the apiserver to members of the
    /// cluster: the `default/kubernetes` Endpoints list it. Unset, the
    /// --bind-address, or when that is 0.0.0.0 or ::, the address of the
    /// interface of the host's default route.
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// How the `default/kubernetes` Endpoints are kept: `lease` (each
    /// apiserver holds a lease in the store under
    /// /registry/masterleases/ and the live ones are listed) or `none`.
    #[arg(long, value_enum, default_value = "lease")]
    pub endpoint_reconciler_type: EndpointReconcilerType,
    /// How often the endpoint reconciler renews this apiserver's lease and
    /// reconciles the Endpoints (upstream's fixed 10s; for tests).
    #[arg(long, hide = true, value_parser = component_base::duration::parse, default_value = "10s")]
    pub endpoint_reconciler_interval: Duration,
    /// How long a master lease lives unrenewed (upstream's fixed 15s;
    /// whole seconds, for tests).
    #[arg(long, hide = true, value_parser = component_base::duration::parse, default_value = "15s")]
    pub endpoint_reconciler_lease_ttl: Duration,
    /// Where the CA, serving certificate and keys live; created on first
    /// start. Defaults to <data-dir>/pki.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// A CIDR notation IP range from which to assign service cluster IPs.
    #[arg(long, default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// A port range to reserve for services with NodePort visibility.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// A file of static bearer tokens: token,user,uid,"group1,group2".
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Identifiers of the API: a bearer token must be meant for one of them.
    /// Defaults to the service-account issuer.
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Longest validity of a token from the TokenRequest API.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "24h")]
    pub service_account_max_token_expiration: Duration,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    pub max_request_body_bytes: usize,
    /// Most non-long-running requests in flight before 429.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Most mutating requests in flight before 429.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Serve lists and watches from the watch cache.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_cache: bool,
    /// Events kept per resource for watchers resuming from the past; older
    /// resumes are served by the store.
    #[arg(long, default_value_t = 4096)]
    pub default_watch_cache_size: usize,
    /// Client certificate the apiserver presents to kubelets; defaults to
    /// <cert-dir>/apiserver-kubelet-client.crt, issued by the cluster CA.
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Key of --kubelet-client-certificate.
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,
    /// CA bundle to verify kubelets' serving certificates with. Unset, as
    /// upstream, they are not verified.
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Node address types to reach kubelets by, in order of preference.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// Kubelet port, for nodes that do not publish
    /// status.daemonEndpoints.kubeletEndpoint.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Admission plugins to enable besides the default-on ones
    /// (comma-separated; upstream's names). Order does not matter.
    #[arg(long, value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
    /// Admission plugins to disable, even default-on ones.
    #[arg(long, value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// tolerationSeconds of the not-ready:NoExecute toleration that
    /// DefaultTolerationSeconds adds to pods without one.
    #[arg(long, default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// tolerationSeconds of the unreachable:NoExecute toleration that
    /// DefaultTolerationSeconds adds to pods without one.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
    /// How long events are kept.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "1h")]
    pub event_ttl: Duration,
    /// Where `componentstatuses/scheduler` probes the scheduler's health
    /// (upstream's fixed `127.0.0.1:10259`, HTTPS; for tests).
    #[arg(long, hide = true, default_value = "127.0.0.1:10259")]
    pub component_status_scheduler: String,
    /// Where `componentstatuses/controller-manager` probes the
    /// controller-manager's health (upstream's fixed `127.0.0.1:10257`).
    #[arg(long, hide = true, default_value = "127.0.0.1:10257")]
    pub component_status_controller_manager: String,
    /// Where to write the admin kubeconfig; defaults to
    /// <data-dir>/admin.kubeconfig.
    #[arg(long)]
    pub admin_kubeconfig: Option<PathBuf>,

    // The embedded store, flags as etcd's.
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory (store data, and by default certs).
    #[arg(long, default_value = "default.apiserver")]
    pub data_dir: PathBuf,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    pub listen_peer_urls: Vec<String>,
    /// This member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping (name=url,...).
    #[arg(long, default_value = "default=http://127.0.0.1:2380")]
    pub initial_cluster: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: store::member::ClusterState,
    /// Initial cluster token for the store cluster during bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Also serve etcd's client API on these URLs (empty: do not).
    #[arg(long, default_value = "", value_delimiter = ',')]
    pub listen_client_urls: Vec<String>,
    /// Start a new one-member cluster from this member's data.
    #[arg(long)]
    pub force_new_cluster: bool,
    /// Keep this much store history, as the apiserver's compaction interval.
    #[arg(long, default_value = "5m", value_parser = component_base::duration::parse)]
    pub etcd_compaction_interval: Duration,
}

/// `--endpoint-reconciler-type`: upstream's names (`master-count` is
/// not offered).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointReconcilerType {
    Lease,
    None,
}

impl Options {
    /// The address this apiserver advertises (upstream's
    /// `DefaultAdvertiseAddress`): --advertise-address; unset (or
    /// unspecified), the --bind-address unless that is unspecified or
    /// loopback, else the address of the default route's interface.
    /// Where the host has no default route (upstream then refuses to
    /// start), 127.0.0.1.
    pub fn resolved_advertise_address(&self) -> String {
        let given = self.advertise_address.as_deref().filter(|a| !is_unspecified(a));
        if let Some(a) = given {
            return a.to_string();
        }
        let bind = self.bind_address.parse::<IpAddr>().ok();
        if let Some(ip) = bind.filter(|ip| !ip.is_unspecified() && !ip.is_loopback()) {
            return ip.to_string();
        }
        match default_route_address() {
            Some(ip) => ip.to_string(),
            None => {
                tracing::warn!("no default route to take an advertise address from; advertising 127.0.0.1");
                "127.0.0.1".into()
            }
        }
    }
}

fn is_unspecified(addr: &str) -> bool {
    addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// The source address the kernel picks for the default route (IPv4, else
/// IPv6) to a public address: connecting a UDP socket sends nothing, it
/// only routes.
fn default_route_address() -> Option<IpAddr> {
    let probes: [(&str, &str); 2] = [("0.0.0.0:0", "8.8.8.8:53"), ("[::]:0", "[2001:4860:4860::8888]:53")];
    probes.iter().find_map(|(local, remote)| {
        let sock = std::net::UdpSocket::bind(local).ok()?;
        sock.connect(remote).ok()?;
        let ip = sock.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        Options::parse_from(std::iter::once("kube-apiserver").chain(args.iter().copied()))
    }

    #[test]
    fn the_advertise_address_defaults_as_upstreams() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["--advertise-address", "10.0.0.5"], "10.0.0.5", "given"),
            (
                &["--advertise-address", "10.0.0.5", "--bind-address", "10.1.1.1"],
                "10.0.0.5",
                "given, whatever the bind address",
            ),
            (
                &["--bind-address", "10.1.1.1"],
                "10.1.1.1",
                "unset: a specific bind address",
            ),
            (
                &["--advertise-address", "0.0.0.0", "--bind-address", "10.1.1.1"],
                "10.1.1.1",
                "unspecified counts as unset",
            ),
        ];
        for (args, want, why) in cases {
            assert_eq!(opts(args).resolved_advertise_address(), *want, "{why}");
        }
        // Bound to loopback or everything: the default route's address
        // (loopback only on a host without one).
        for bind in ["127.0.0.1", "0.0.0.0"] {
            let got: IpAddr = opts(&["--bind-address", bind])
                .resolved_advertise_address()
                .parse()
                .unwrap();
            assert!(!got.is_unspecified(), "{bind}: {got}");
        }
    }
}
