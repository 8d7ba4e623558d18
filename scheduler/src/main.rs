//! `kube-scheduler`: flags (upstream's names), logging, the runtime, then
//! the library's `run`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Parser};

use scheduler::config::{Config, parse_duration};

#[derive(Parser, Debug)]
#[command(
    name = "kube-scheduler",
    version,
    about = "The Kubernetes scheduler: assigns pods to nodes."
)]
struct Flags {
    /// Path to a kubeconfig file with the scheduler's identity.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start a leader election client and gain leadership before scheduling.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: Option<bool>,
    /// How long non-leaders wait after an observed renewal before taking over.
    #[arg(long, value_parser = parse_duration)]
    leader_elect_lease_duration: Option<Duration>,
    /// How long the leader keeps trying to renew before it gives up.
    #[arg(long, value_parser = parse_duration)]
    leader_elect_renew_deadline: Option<Duration>,
    /// How long clients wait between tries of acquisition and renewal.
    #[arg(long, value_parser = parse_duration)]
    leader_elect_retry_period: Option<Duration>,
    /// The name of the Lease used for leader election.
    #[arg(long)]
    leader_elect_resource_name: Option<String>,
    /// The namespace of the Lease used for leader election.
    #[arg(long)]
    leader_elect_resource_namespace: Option<String>,
    /// Only "leases" is supported.
    #[arg(long, default_value = "leases")]
    leader_elect_resource_lock: String,
    /// The port for HTTPS with /healthz, /livez, /readyz and /metrics; 0 turns it off.
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: String,
    /// File containing the default x509 certificate for HTTPS (self-signed if unset).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// File containing the x509 private key matching --tls-cert-file.
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// Log verbosity (accepted for compatibility; RUST_LOG sets the filter).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    verbosity: u8,
}

fn options(flags: Flags) -> anyhow::Result<scheduler::Options> {
    let config = match &flags.config {
        Some(p) => Config::from_file(&p.to_string_lossy()).map_err(|e| anyhow::anyhow!(e))?,
        None => Config::default(),
    };
    let kubeconfig = flags
        .kubeconfig
        .clone()
        .or_else(|| config.kubeconfig.clone().map(PathBuf::from))
        .context("--kubeconfig is required (or clientConnection.kubeconfig in --config)")?;
    if flags.leader_elect_resource_lock != "leases" {
        anyhow::bail!(
            "--leader-elect-resource-lock={}: only \"leases\" is supported",
            flags.leader_elect_resource_lock
        );
    }
    let mut o = scheduler::Options::new(kubeconfig, config.clone());
    let le = &config.leader_election;
    let from_file = |v: &Option<String>| v.as_deref().map(parse_duration).transpose();
    o.leader_elect = flags.leader_elect.or(le.leader_elect).unwrap_or(true);
    let err = |e: String| anyhow::anyhow!(e);
    o.lease_duration = flags
        .leader_elect_lease_duration
        .or(from_file(&le.lease_duration).map_err(err)?)
        .unwrap_or(o.lease_duration);
    o.renew_deadline = flags
        .leader_elect_renew_deadline
        .or(from_file(&le.renew_deadline).map_err(err)?)
        .unwrap_or(o.renew_deadline);
    o.retry_period = flags
        .leader_elect_retry_period
        .or(from_file(&le.retry_period).map_err(err)?)
        .unwrap_or(o.retry_period);
    if o.leader_elect && o.lease_duration <= o.renew_deadline {
        anyhow::bail!(
            "--leader-elect-lease-duration ({}) must be greater than --leader-elect-renew-deadline ({})",
            component_base::duration::format(o.lease_duration),
            component_base::duration::format(o.renew_deadline)
        );
    }
    o.lease_name = flags
        .leader_elect_resource_name
        .or(le.resource_name.clone())
        .unwrap_or(o.lease_name);
    o.lease_namespace = flags
        .leader_elect_resource_namespace
        .or(le.resource_namespace.clone())
        .unwrap_or(o.lease_namespace);
    o.bind_address = flags.bind_address;
    o.secure_port = flags.secure_port;
    o.tls = component_base::serving::Tls {
        cert_file: flags.tls_cert_file,
        key_file: flags.tls_private_key_file,
    };
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    component_base::logging::init();
    let opts = options(flags)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(scheduler::run(opts))
}
