//! `node-setup`: builds and pushes the project's images, and runs a node's
//! registry or containerd in the foreground (for `make images`, `make up`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use node_setup::ContainerdConfig;
use node_setup::images::{ImagesOptions, Inputs, registry_storage_dir};

#[derive(Parser, Debug)]
#[command(
    name = "node-setup",
    about = "A node's registry and containerd; the project's images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build the pause, busybox and agnhost images and push them into a registry storage dir.
    Images {
        /// Where the static `pause` and `agnhost` binaries are.
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// The registry storage to push into [default: target/images/registry].
        #[arg(long)]
        registry_dir: Option<PathBuf>,
        /// Where the OCI layouts go [default: <registry-dir>/../oci].
        #[arg(long)]
        layout_dir: Option<PathBuf>,
    },
    /// Serve a registry storage dir read-only until SIGTERM; prints its address.
    Registry {
        #[arg(long)]
        storage: PathBuf,
        /// Config and log.
        #[arg(long)]
        dir: PathBuf,
        /// The address to listen on (a cluster's bridge address, for nodes in network namespaces).
        #[arg(long, default_value = "127.0.0.1")]
        address: std::net::IpAddr,
        /// A fixed port [default: a free one].
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run a node's containerd until SIGTERM, then clean up; prints its socket.
    Containerd {
        /// containerd's root, state, sockets, config and log; removed on exit.
        #[arg(long)]
        dir: PathBuf,
        /// The local registry, ip:port.
        #[arg(long, value_parser = node_setup::parse_registry_addr)]
        registry: std::net::SocketAddr,
        #[arg(long)]
        cni_conf_dir: Option<PathBuf>,
        #[arg(long, default_value = "/usr/lib/cni")]
        cni_bin_dir: PathBuf,
        /// Cgroup parent of the node's pods, removed on cleanup (e.g. /kubepods-node1).
        #[arg(long)]
        cgroup_parent_prefix: Option<String>,
        #[arg(long, default_value = "info")]
        log_level: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Images {
            bin_dir,
            busybox,
            registry_dir,
            layout_dir,
        } => {
            let registry_dir = registry_dir.unwrap_or_else(registry_storage_dir);
            let layout_dir = layout_dir.unwrap_or_else(|| registry_dir.join("..").join("oci"));
            let options = ImagesOptions {
                inputs: Inputs::from_bin_dir(&bin_dir, &busybox),
                layout_dir,
                registry_dir,
            };
            for image in node_setup::images::build_and_push(&options)? {
                println!(
                    "{} {} {} bytes {}",
                    image.name.name,
                    image.name.tags.join(","),
                    image.size,
                    image.manifest_digest
                );
            }
            Ok(())
        }
        Command::Registry {
            storage,
            dir,
            address,
            port,
        } => runtime.block_on(node_setup::run_registry(storage, dir, address, port)),
        Command::Containerd {
            dir,
            registry,
            cni_conf_dir,
            cni_bin_dir,
            cgroup_parent_prefix,
            log_level,
        } => {
            let mut config = ContainerdConfig::new(dir, registry);
            if let Some(conf_dir) = cni_conf_dir {
                config.cni_conf_dir = conf_dir;
            }
            config.cni_bin_dir = cni_bin_dir;
            config.cgroup_parent_prefix = cgroup_parent_prefix;
            config.log_level = log_level;
            runtime.block_on(node_setup::run_containerd(config))
        }
    }
}
