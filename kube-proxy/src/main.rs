//! `kube-proxy`: flags (upstream's names), logging, the runtime, then the
//! library's `run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgAction, Parser};

use kube_proxy::options::{
    KubeProxyConfiguration, Options, ProxyMode, parse_bind_address, parse_cidrs, parse_duration,
    parse_nodeport_addresses,
};

#[derive(Parser, Debug)]
#[command(
    name = "kube-proxy",
    version,
    about = "The Kubernetes network proxy: programs nftables (default) or iptables so that Service addresses reach their endpoints."
)]
struct Flags {
    /// Path to a kubeconfig file with kube-proxy's identity (system:kube-proxy).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// A KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1); flags win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Which proxy mode to use: "nftables" (default) or "iptables". IPVS is not available.
    #[arg(long)]
    proxy_mode: Option<String>,
    /// The pods' CIDR range(s), comma-separated: traffic from outside them to a ClusterIP is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// The node's name, if not the host's name.
    #[arg(long)]
    hostname_override: Option<String>,
    /// Which addresses accept NodePorts: "primary" (the node's IPs; nftables' default) or CIDRs.
    #[arg(long)]
    nodeport_addresses: Option<String>,
    /// SNAT all traffic sent via Service cluster IPs.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    masquerade_all: Option<bool>,
    /// How often rules are fully rewritten (e.g. 30s, 1m).
    #[arg(long)]
    sync_period: Option<String>,
    /// The minimum interval between two syncs (e.g. 1s).
    #[arg(long)]
    min_sync_period: Option<String>,
    /// host:port for /healthz and /livez (default 0.0.0.0:10256); empty turns it off.
    #[arg(long)]
    healthz_bind_address: Option<String>,
    /// host:port for /metrics (default 127.0.0.1:10249); empty turns it off.
    #[arg(long)]
    metrics_bind_address: Option<String>,
    /// Remove every rule kube-proxy made (both modes) and exit.
    #[arg(long)]
    cleanup: bool,
    /// Log verbosity (accepted for compatibility; RUST_LOG sets the filter).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    verbosity: u8,
}

fn options(flags: Flags) -> anyhow::Result<Options> {
    let file = match &flags.config {
        Some(p) => KubeProxyConfiguration::from_file(p)?,
        None => KubeProxyConfiguration::default(),
    };
    let kubeconfig = flags
        .kubeconfig
        .clone()
        .or_else(|| file.client_connection.kubeconfig.clone().map(PathBuf::from))
        .context("--kubeconfig is required (or clientConnection.kubeconfig in --config)")?;
    let mut o = Options::new(kubeconfig);
    o.mode = ProxyMode::parse(flags.proxy_mode.as_deref().or(file.mode.as_deref()).unwrap_or(""))?;
    let section = file.section(o.mode);
    if let Some(c) = flags.cluster_cidr.as_deref().or(file.cluster_cidr.as_deref()) {
        o.cluster_cidrs = parse_cidrs(c).context("--cluster-cidr")?;
    }
    o.hostname_override = flags.hostname_override.or(file.hostname_override.clone());
    if let Some(n) = flags.nodeport_addresses {
        o.nodeport_addresses = parse_nodeport_addresses(&n)?;
    } else if let Some(list) = &file.node_port_addresses {
        o.nodeport_addresses = parse_nodeport_addresses(&list.join(","))?;
    }
    o.masquerade_all = flags.masquerade_all.or(section.masquerade_all).unwrap_or(false);
    if let Some(d) = flags.sync_period.as_deref().or(section.sync_period.as_deref()) {
        o.sync_period = parse_duration(d).context("--sync-period")?;
    }
    if let Some(d) = flags.min_sync_period.as_deref().or(section.min_sync_period.as_deref()) {
        o.min_sync_period = parse_duration(d).context("--min-sync-period")?;
    }
    if o.sync_period.is_zero() {
        anyhow::bail!("--sync-period must be greater than 0");
    }
    if let Some(a) = flags
        .healthz_bind_address
        .as_deref()
        .or(file.healthz_bind_address.as_deref())
    {
        o.healthz_bind_address = parse_bind_address(a, 10256).context("--healthz-bind-address")?;
    }
    if let Some(a) = flags
        .metrics_bind_address
        .as_deref()
        .or(file.metrics_bind_address.as_deref())
    {
        o.metrics_bind_address = parse_bind_address(a, 10249).context("--metrics-bind-address")?;
    }
    if let Some(l) = section.localhost_nodeports {
        o.localhost_nodeports = l;
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    component_base::logging::init();
    if flags.cleanup {
        kube_proxy::nftables::cleanup()?;
        kube_proxy::iptables::cleanup()?;
        return Ok(());
    }
    let opts = options(flags)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(kube_proxy::run(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let argv = ["kube-proxy", "--kubeconfig", "/dev/null"].iter().chain(args);
        options(Flags::try_parse_from(argv)?)
    }

    #[test]
    fn duration_flags_take_gos_syntax() -> anyhow::Result<()> {
        let o = parse(&["--sync-period=1h30m", "--min-sync-period=500ms"])?;
        assert_eq!(o.sync_period, std::time::Duration::from_secs(5400));
        assert_eq!(o.min_sync_period, std::time::Duration::from_millis(500));
        let e = parse(&["--sync-period=1 hour"]).expect_err("not Go's syntax");
        assert!(format!("{e:#}").contains("--sync-period"), "{e:#}");
        let e = parse(&["--sync-period=-30s"]).expect_err("negative");
        assert!(format!("{e:#}").contains("must not be negative"), "{e:#}");
        Ok(())
    }
}
