//! `cluster-dns`: flags, logging, runtime, then `cluster_dns::run`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "cluster-dns",
    version,
    about = "Cluster DNS: Services and EndpointSlices as DNS records (CoreDNS's kubernetes plugin), other names forwarded"
)]
struct Flags {
    /// Kubeconfig to reach the apiserver; without it, the in-cluster
    /// service account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// TTL (seconds) of every answer, and the SOA's minimum.
    #[arg(long, default_value_t = 5)]
    ttl: u32,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    #[arg(long, default_value_t = 53)]
    dns_port: u16,
    #[arg(long, default_value_t = 8080)]
    health_port: u16,
    #[arg(long, default_value_t = 8181)]
    ready_port: u16,
    #[arg(long, default_value_t = 9153)]
    metrics_port: u16,
    /// Where the upstream resolvers for other names come from.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// How long forwarding may take before SERVFAIL.
    #[arg(long, default_value = "2s", value_parser = component_base::duration::parse)]
    forward_timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    component_base::logging::init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(cluster_dns::run(cluster_dns::Config {
        kubeconfig: flags.kubeconfig,
        cluster_domain: flags.cluster_domain,
        ttl: flags.ttl,
        bind_address: flags.bind_address,
        dns_port: flags.dns_port,
        health_port: flags.health_port,
        ready_port: flags.ready_port,
        metrics_port: flags.metrics_port,
        resolv_conf: flags.resolv_conf,
        forward_timeout: flags.forward_timeout,
        sync_wait: Duration::from_secs(5),
    }))
}
