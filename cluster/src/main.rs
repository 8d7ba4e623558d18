//! `cluster`: bring up, inspect and remove a multi-process cluster on this
//! machine (see the crate docs of `cluster`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use cluster::config::Config;
use cluster::lifecycle::{self, UpOptions};
use cluster::plan::Plan;
use cluster::{net, process};

/// `println!`, but a closed stdout (`cluster logs kubelet | head`) ends the
/// program quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// `print!` as [`out!`].
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

#[derive(Parser)]
#[command(name = "cluster", about = "A multi-process Kubernetes cluster on this machine")]
struct Cli {
    /// Where clusters keep their state (one directory per cluster).
    #[arg(long, global = true, env = "KUBELITE_ROOT", default_value = "/var/lib/kubelite")]
    root: PathBuf,
    /// The cluster's name.
    #[arg(long, global = true, env = "KUBELITE_CLUSTER", default_value = "kubelite")]
    name: String,
    /// Where the component binaries are [default: beside this one].
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the cluster, or bring back an existing one from its state; waits until it is ready.
    Up {
        /// A cluster config file (apiVersion: kubelite.dev/v1alpha1, kind: Cluster).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Control-plane members (1 or 3), overriding the config.
        #[arg(long)]
        control_planes: Option<usize>,
        /// Workers, overriding the config.
        #[arg(long)]
        workers: Option<usize>,
        /// How long to wait for the cluster to be ready.
        #[arg(long, default_value = "5m", value_parser = component_base::duration::parse)]
        wait: Duration,
        /// Do not apply the cluster DNS add-on.
        #[arg(long)]
        no_addons: bool,
    },
    /// Stop every process, keeping the state (`up` brings the same cluster back).
    Stop,
    /// Stop everything and remove every trace of the cluster.
    Down,
    /// The cluster's processes and nodes.
    Status,
    /// Print the admin kubeconfig (or its path).
    Kubeconfig {
        #[arg(long)]
        path: bool,
    },
    /// Load an image archive (docker save / OCI tar) into every worker's containerd.
    LoadImage { archive: PathBuf },
    /// Print a component's logs (every node's unless --node), or list the log files.
    Logs {
        component: Option<String>,
        #[arg(long)]
        node: Option<String>,
        /// Only the last N lines of each.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// The clusters under --root.
    List,
    /// Take a worker's link down or up (cut it off the network).
    #[command(hide = true)]
    Link {
        node: String,
        #[arg(value_parser = ["up", "down"])]
        state: String,
    },
    /// Kill a component's process at once (tests: a crash).
    #[command(hide = true)]
    Kill { node: String, component: String },
    /// The apiservers' TCP balancer (started by `up`).
    #[command(hide = true)]
    Balancer {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        #[arg(long, required = true)]
        backend: Vec<SocketAddr>,
    },
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn bin_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(d) => Ok(d),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("the binary's directory")?
            .to_owned()),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Cmd::Balancer { listen, backend } = cli.cmd {
        tracing_subscriber::fmt().try_init().ok();
        return cluster::balancer::run(listen, backend).await;
    }
    cluster::config::validate_name(&cli.name)?;
    let bin = bin_dir(cli.bin_dir)?;
    let load = || lifecycle::load(&cli.root, &cli.name, &bin);
    match cli.cmd {
        Cmd::Up {
            config,
            control_planes,
            workers,
            wait,
            no_addons,
        } => {
            let mut cfg = match &config {
                Some(path) => Some(
                    Config::parse(
                        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                    )
                    .with_context(|| format!("in {}", path.display()))?,
                ),
                None => None,
            };
            if control_planes.is_some() || workers.is_some() {
                let c = cfg.get_or_insert_with(Config::single_node);
                c.set_counts(control_planes, workers);
                c.validate()?;
            }
            if let Some(c) = &cfg
                && let Some(n) = &c.name
                && n != &cli.name
                && std::env::var_os("KUBELITE_CLUSTER").is_none()
            {
                bail!("the config names cluster {n:?}: pass --name {n}");
            }
            lifecycle::preflight(&bin)?;
            let existed = lifecycle::state_dir(&cli.root, &cli.name).join("cluster.yaml").exists();
            let plan = lifecycle::prepare(&cli.root, &cli.name, cfg, &bin)?;
            let opts = UpOptions {
                timeout: wait,
                no_addons,
            };
            if let Err(e) = lifecycle::up(&plan, &opts).await {
                let started = plan.processes().iter().any(|s| process::running(s).is_some());
                if !existed && !started {
                    // Failed before starting anything (preflight, a port
                    // in use): leave nothing behind.
                    lifecycle::down(&plan)?;
                } else {
                    eprintln!(
                        "cluster {} is not ready; `cluster status --name {0}` and `cluster logs --name {0}` show more, `cluster down --name {0}` removes it",
                        plan.name
                    );
                }
                return Err(e);
            }
            print_usage(&plan);
        }
        Cmd::Stop => {
            let plan = load()?;
            lifecycle::stop(&plan);
            out!("cluster {} stopped; `cluster up --name {0}` brings it back", plan.name);
        }
        Cmd::Down => {
            let dir = lifecycle::state_dir(&cli.root, &cli.name);
            if !dir.join("cluster.yaml").exists() {
                out!("no cluster {:?} under {}", cli.name, cli.root.display());
                return Ok(());
            }
            let plan = load()?;
            lifecycle::down(&plan)?;
            out!("cluster {} removed", plan.name);
        }
        Cmd::Status => status(&load()?).await?,
        Cmd::Kubeconfig { path } => {
            let plan = load()?;
            if path {
                out!("{}", plan.admin_kubeconfig().display());
            } else {
                out_raw!("{}", std::fs::read_to_string(plan.admin_kubeconfig())?);
            }
        }
        Cmd::LoadImage { archive } => {
            let plan = load()?;
            if !archive.is_file() {
                bail!(
                    "{} is not a file (want an image archive from `docker save` or skopeo)",
                    archive.display()
                );
            }
            for w in &plan.workers {
                let socket = plan.containerd_socket(w);
                let out = std::process::Command::new("ctr")
                    .arg("--address")
                    .arg(&socket)
                    .args(["-n", "k8s.io", "images", "import", "--all-platforms"])
                    .arg(&archive)
                    .output()
                    .context("running ctr (containerd; `make deps` installs it)")?;
                if !out.status.success() {
                    bail!(
                        "loading {} into {}: {}",
                        archive.display(),
                        w.name,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                out_raw!("{}: {}", w.name, String::from_utf8_lossy(&out.stdout));
            }
        }
        Cmd::Logs { component, node, tail } => {
            let plan = load()?;
            let specs: Vec<_> = plan
                .processes()
                .into_iter()
                .filter(|s| node.as_ref().is_none_or(|n| &s.node == n))
                .filter(|s| component.as_ref().is_none_or(|c| &s.component == c))
                .collect();
            if specs.is_empty() {
                let known: std::collections::BTreeSet<_> = plan.processes().into_iter().map(|s| s.component).collect();
                bail!(
                    "no such component or node; components: {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
            if component.is_none() {
                for s in specs {
                    out!("{:<45} {}", s.id(), s.log.display());
                }
                return Ok(());
            }
            for s in specs {
                out!("==> {} ({}) <==", s.id(), s.log.display());
                match tail {
                    Some(n) => out!("{}", process::log_tail(&s.log, n)),
                    None => out_raw!("{}", std::fs::read_to_string(&s.log).unwrap_or_default()),
                }
            }
        }
        Cmd::List => {
            if let Ok(entries) = std::fs::read_dir(&cli.root) {
                for e in entries.flatten() {
                    if e.path().join("cluster.yaml").exists() {
                        out!("{}", e.file_name().to_string_lossy());
                    }
                }
            }
        }
        Cmd::Link { node, state } => {
            let plan = load()?;
            let w = plan
                .workers
                .iter()
                .find(|w| w.name == node)
                .with_context(|| format!("no worker {node:?}"))?;
            net::set_worker_link(w, state == "up")?;
        }
        Cmd::Kill { node, component } => {
            let plan = load()?;
            let spec = plan
                .processes()
                .into_iter()
                .find(|s| s.node == node && s.component == component)
                .with_context(|| format!("no {node}/{component}"))?;
            process::kill(&spec);
        }
        Cmd::Balancer { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn print_usage(plan: &Plan) {
    out!("");
    out!("The cluster's kubeconfig is {}:", plan.admin_kubeconfig().display());
    out!("  export KUBECONFIG={}", plan.admin_kubeconfig().display());
    out!("  kubectl get nodes");
    out!(
        "Logs: `cluster logs --name {0} <component>`; stop: `cluster stop --name {0}`; remove: `cluster down --name {0}`",
        plan.name
    );
}

async fn status(plan: &Plan) -> anyhow::Result<()> {
    out!("cluster {} (state {})", plan.name, plan.paths.state_dir.display());
    out!("{:<45} {:<8} LOG", "PROCESS", "PID");
    let mut all_running = true;
    for s in plan.processes() {
        let pid = process::running(&s);
        all_running &= pid.is_some();
        out!(
            "{:<45} {:<8} {}",
            s.id(),
            pid.map(|p| p.to_string()).unwrap_or_else(|| "stopped".into()),
            s.log.display()
        );
    }
    match lifecycle::admin_client(plan).await {
        Ok(client) => {
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
            match nodes.list(&Default::default()).await {
                Ok(list) => {
                    out!("\n{:<30} {:<8} {:<16} POD CIDR", "NODE", "READY", "ADDRESS");
                    for n in list {
                        let ready = lifecycle::node_ready(&n);
                        let ip = n
                            .status
                            .as_ref()
                            .and_then(|s| s.addresses.as_ref())
                            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                            .map(|a| a.address.clone())
                            .unwrap_or_default();
                        let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.clone()).unwrap_or_default();
                        out!(
                            "{:<30} {:<8} {:<16} {}",
                            n.metadata.name.unwrap_or_default(),
                            ready,
                            ip,
                            cidr
                        );
                    }
                }
                Err(e) => out!("\nthe apiserver does not answer: {e}"),
            }
        }
        Err(e) => out!("\nno client: {e:#}"),
    }
    if !all_running {
        out!(
            "\nsome processes are stopped: `cluster up --name {}` starts them again",
            plan.name
        );
    }
    Ok(())
}
