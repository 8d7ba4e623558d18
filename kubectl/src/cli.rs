//! Command-line flags (clap), named as upstream kubectl names them.

use clap::{Args, Parser, Subcommand};

use crate::cmd;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl",
    about = "kubectl controls the Kubernetes cluster manager.",
    disable_version_flag = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalFlags {
    /// Path to the kubeconfig file to use for CLI requests.
    #[arg(long, global = true)]
    pub kubeconfig: Option<String>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The name of the kubeconfig cluster to use.
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// The name of the kubeconfig user to use.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// If present, the namespace scope for this CLI request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The address and port of the Kubernetes API server.
    #[arg(short = 's', long, global = true)]
    pub server: Option<String>,
    /// Bearer token for authentication to the API server.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// If true, the server's certificate will not be checked for validity.
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
    /// Username to impersonate for the operation. User could be a regular user or a service account in a namespace.
    #[arg(long = "as", global = true)]
    pub as_user: Option<String>,
    /// Group to impersonate for the operation, this flag can be repeated to specify multiple groups.
    #[arg(long = "as-group", global = true)]
    pub as_group: Vec<String>,
    /// UID to impersonate for the operation.
    #[arg(long = "as-uid", global = true)]
    pub as_uid: Option<String>,
    /// Number for the log level verbosity (accepted for compatibility).
    #[arg(short = 'v', long = "v", global = true, hide = true)]
    pub verbosity: Option<String>,
    /// The length of time to wait before giving up on a single server request (accepted for compatibility).
    #[arg(long, global = true, hide = true, value_parser = request_timeout)]
    pub request_timeout: Option<std::time::Duration>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Display one or many resources.
    Get(cmd::get::GetArgs),
    /// Apply a configuration to a resource by file name or stdin.
    Apply(cmd::apply::ApplyArgs),
    /// Create a resource from a file or from stdin.
    Create(cmd::create::CreateArgs),
    /// Replace a resource by file name or stdin.
    Replace(cmd::apply::ReplaceArgs),
    /// Delete resources by file names, stdin, resources and names, or by resources and label selector.
    Delete(cmd::delete::DeleteArgs),
    /// Update the labels on a resource.
    Label(cmd::label::LabelArgs),
    /// Update the annotations on a resource.
    Annotate(cmd::label::LabelArgs),
    /// Update fields of a resource.
    Patch(cmd::patch::PatchArgs),
    /// Set a new size for a deployment, replica set, replication controller, or stateful set.
    Scale(cmd::scale::ScaleArgs),
    /// Edit a resource on the server.
    Edit(cmd::edit::EditArgs),
    /// Show details of a specific resource or group of resources.
    Describe(cmd::describe::DescribeArgs),
    /// Experimental: Wait for a specific condition on one or many resources.
    Wait(cmd::wait::WaitArgs),
    /// Get documentation for a resource.
    Explain(cmd::explain::ExplainArgs),
    /// Modify kubeconfig files.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Print the client and server version information.
    Version(cmd::info::VersionArgs),
    /// Display cluster information.
    ClusterInfo(cmd::info::ClusterInfoArgs),
    /// Print the supported API resources on the server.
    ApiResources(cmd::info::ApiResourcesArgs),
    /// Print the supported API versions on the server, in the form of "group/version".
    ApiVersions,
    /// Manage the rollout of a resource.
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutCommand),
    /// Mark node as unschedulable.
    Cordon(cmd::node::CordonArgs),
    /// Mark node as schedulable.
    Uncordon(cmd::node::CordonArgs),
    /// Drain node in preparation for maintenance.
    Drain(cmd::node::DrainArgs),
    /// Update the taints on one or more nodes.
    Taint(cmd::node::TaintArgs),
    /// Take a replication controller, service, deployment or pod and expose it as a new Kubernetes service.
    Expose(cmd::expose::ExposeArgs),
    /// Run a particular image on the cluster.
    Run(cmd::run::RunArgs),
    /// Print the logs for a container in a pod.
    Logs(cmd::logs::LogsArgs),
    /// Execute a command in a container.
    Exec(cmd::attach::ExecArgs),
    /// Forward one or more local ports to a pod.
    PortForward(cmd::portforward::PortForwardArgs),
    /// Attach to a running container.
    Attach(cmd::attach::AttachArgs),
    /// Inspect authorization.
    #[command(subcommand)]
    Auth(cmd::auth::AuthCommand),
}

/// `--request-timeout`: a Go duration, or a bare number of seconds
/// (upstream's "Non-zero values should contain a corresponding time unit",
/// with plain integers still read as seconds).
fn request_timeout(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) => component_base::duration::parse(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_timeout_takes_go_durations_or_seconds() {
        let timeout = |v: &str| {
            Cli::try_parse_from(["kubectl", "get", "pods", &format!("--request-timeout={v}")])
                .map(|c| c.global.request_timeout)
                .map_err(|e| e.to_string())
        };
        let secs = |s: u64| Ok(Some(std::time::Duration::from_secs(s)));
        assert_eq!(timeout("1m30s"), secs(90));
        assert_eq!(timeout("5"), secs(5));
        assert_eq!(timeout("0"), secs(0));
        let err = timeout("5 minutes").expect_err("not Go's syntax");
        assert!(err.contains("Go syntax"), "{err}");
    }
}
