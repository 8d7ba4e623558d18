//! `kubeadm`: the few pieces of upstream's kubeadm this project needs to
//! give a node its identity from the cluster CA (until TLS bootstrap):
//!
//! - `kubeadm kubeconfig user --client-name system:node:n1 --org system:nodes
//!   --cert-dir <apiserver data dir>/pki --server https://...` prints a
//!   kubeconfig with a client certificate (as upstream's command does);
//! - `kubeadm certs kubelet-serving --cert-dir ... --node-name n1 --ip 10.0.0.5
//!   --out-dir <dir>` writes `kubelet.crt`/`kubelet.key`, a serving
//!   certificate for the kubelet's API signed by the cluster CA;
//! - `kubeadm certs all --cert-dir <dir> --apiserver-cert-extra-sans
//!   10.0.0.2,lb.example` creates the cluster's PKI before the first
//!   apiserver starts (CA, serving certificate with those names, the
//!   service-account key, the apiserver's kubelet client), as upstream's
//!   `kubeadm init phase certs all`: every apiserver of the cluster is then
//!   started with that `--cert-dir`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubeadm",
    about = "Node credentials from the cluster CA (a subset of upstream's kubeadm)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Kubeconfig files.
    Kubeconfig {
        #[command(subcommand)]
        cmd: KubeconfigCmd,
    },
    /// Certificates.
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
}

#[derive(Subcommand)]
enum KubeconfigCmd {
    /// Prints a kubeconfig for a user, with a client certificate from the CA.
    User {
        /// The user (certificate CN), e.g. system:node:n1.
        #[arg(long)]
        client_name: String,
        /// Groups (certificate O), e.g. system:nodes.
        #[arg(long)]
        org: Vec<String>,
        /// Directory with the CA's ca.crt and ca.key.
        #[arg(long)]
        cert_dir: PathBuf,
        /// The apiserver's URL.
        #[arg(long)]
        server: String,
    },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Creates what is missing of the cluster's PKI (an existing CA and keys are kept).
    All {
        #[arg(long)]
        cert_dir: PathBuf,
        /// Extra names and addresses of the apiserver's serving certificate
        /// (every apiserver's address, a load balancer's).
        #[arg(long, value_delimiter = ',')]
        apiserver_cert_extra_sans: Vec<String>,
    },
    /// Writes a serving certificate for a kubelet.
    KubeletServing {
        #[arg(long)]
        cert_dir: PathBuf,
        #[arg(long)]
        node_name: String,
        /// The node's addresses (repeat).
        #[arg(long)]
        ip: Vec<String>,
        #[arg(long)]
        out_dir: PathBuf,
    },
}

fn ca(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).with_context(|| {
            format!(
                "reading {} (is --cert-dir the apiserver's pki directory?)",
                dir.join(f).display()
            )
        })
    };
    Ok((read("ca.crt")?, read("ca.key")?))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Kubeconfig {
            cmd:
                KubeconfigCmd::User {
                    client_name,
                    org,
                    cert_dir,
                    server,
                },
        } => {
            let (ca_cert, ca_key) = ca(&cert_dir)?;
            let groups: Vec<&str> = org.iter().map(String::as_str).collect();
            let (cert, key) = apiserver::certs::issue_client(&ca_cert, &ca_key, &client_name, &groups)?;
            print!(
                "{}",
                apiserver::certs::kubeconfig(&server, &ca_cert, &client_name, &cert, &key)
            );
        }
        Cmd::Certs {
            cmd: CertsCmd::All {
                cert_dir,
                apiserver_cert_extra_sans,
            },
        } => {
            apiserver::certs::Pki::ensure(&cert_dir, &apiserver_cert_extra_sans)?;
        }
        Cmd::Certs {
            cmd:
                CertsCmd::KubeletServing {
                    cert_dir,
                    node_name,
                    ip,
                    out_dir,
                },
        } => {
            let (ca_cert, ca_key) = ca(&cert_dir)?;
            let mut names = vec![node_name.clone()];
            names.extend(ip);
            let (cert, key) =
                apiserver::certs::issue_serving(&ca_cert, &ca_key, &format!("system:node:{node_name}"), &names)?;
            std::fs::create_dir_all(&out_dir)?;
            std::fs::write(out_dir.join("kubelet.crt"), cert)?;
            std::fs::write(out_dir.join("kubelet.key"), key)?;
            std::fs::copy(cert_dir.join("ca.crt"), out_dir.join("ca.crt"))?;
        }
    }
    Ok(())
}
