//! The commands. Each module holds its flags (clap `Args`) and a `run`.

pub mod apply;
pub mod attach;
pub mod auth;
pub mod config;
pub mod create;
pub mod delete;
pub mod describe;
pub mod edit;
pub mod explain;
pub mod expose;
pub mod get;
pub mod info;
pub mod label;
pub mod logs;
pub mod node;
pub mod patch;
pub mod portforward;
pub mod rollout;
pub mod run;
pub mod scale;
pub mod wait;

use crate::Factory;
use crate::cli::Command;

/// Runs one command.
pub async fn dispatch(f: &Factory, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Get(a) => get::run(f, a).await,
        Command::Apply(a) => apply::run(f, a).await,
        Command::Create(a) => create::run(f, a).await,
        Command::Replace(a) => apply::replace(f, a).await,
        Command::Delete(a) => delete::run(f, a).await,
        Command::Label(a) => label::run(f, a, label::Field::Labels).await,
        Command::Annotate(a) => label::run(f, a, label::Field::Annotations).await,
        Command::Patch(a) => patch::run(f, a).await,
        Command::Scale(a) => scale::run(f, a).await,
        Command::Edit(a) => edit::run(f, a).await,
        Command::Describe(a) => describe::run(f, a).await,
        Command::Wait(a) => wait::run(f, a).await,
        Command::Explain(a) => explain::run(f, a).await,
        Command::Config(c) => config::run(f, c),
        Command::Version(a) => info::version(f, a).await,
        Command::ClusterInfo(a) => info::cluster_info(f, a).await,
        Command::ApiResources(a) => info::api_resources(f, a).await,
        Command::ApiVersions => info::api_versions(f).await,
        Command::Rollout(c) => rollout::run(f, c).await,
        Command::Cordon(a) => node::cordon(f, a, true).await,
        Command::Uncordon(a) => node::cordon(f, a, false).await,
        Command::Taint(a) => node::taint(f, a).await,
        Command::Drain(a) => node::drain(f, a).await,
        Command::Expose(a) => expose::run(f, a).await,
        Command::Run(a) => run::run(f, a).await,
        Command::Logs(a) => logs::run(f, a).await,
        Command::Exec(a) => attach::exec(f, a).await,
        Command::PortForward(a) => portforward::run(f, a).await,
        Command::Attach(a) => attach::attach(f, a).await,
        Command::Auth(c) => auth::run(f, c).await,
    }
}

/// Parses `--dry-run` (`none`, `client`, `server`; a bare flag is `client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRun {
    None,
    Client,
    Server,
}

impl DryRun {
    pub fn parse(s: Option<&str>) -> anyhow::Result<DryRun> {
        match s {
            None | Some("none") | Some("false") => Ok(DryRun::None),
            Some("client") | Some("true") | Some("") => Ok(DryRun::Client),
            Some("server") => Ok(DryRun::Server),
            Some(other) => {
                anyhow::bail!("Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\".")
            }
        }
    }

    /// The ` (dry run)` / ` (server dry run)` suffix of messages.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }

    /// The `dryRun=All` query parameter for server dry runs.
    pub fn query(self) -> String {
        if self == DryRun::Server {
            "All".to_string()
        } else {
            String::new()
        }
    }
}

/// Prints the `kind.group/name verb` line of a changed object, or the
/// object itself when `-o` asks for it.
pub fn print_result(
    output: Option<&crate::printers::OutputFormat>,
    printer: &mut crate::printers::GenericPrinter,
    obj: &serde_json::Value,
    verb: &str,
    dry_run: DryRun,
) -> anyhow::Result<()> {
    match output {
        Some(crate::printers::OutputFormat::Name) => crate::out(&(crate::printers::object_ref(obj) + "\n")),
        Some(format) if !format.is_human() => crate::out(&printer.print(format, obj)?),
        _ => crate::out(&format!(
            "{} {verb}{}\n",
            crate::printers::object_ref(obj),
            dry_run.suffix()
        )),
    }
    Ok(())
}

/// The `-o` formats of commands that print what they changed.
pub const MUTATION_FORMATS: &str =
    "json,yaml,name,go-template,go-template-file,template,templatefile,jsonpath,jsonpath-as-json,jsonpath-file";

/// Parses the `-o` of a mutating command (`None` when absent).
pub fn parse_mutation_output(s: Option<&str>) -> anyhow::Result<Option<crate::printers::OutputFormat>> {
    match s {
        None | Some("") => Ok(None),
        Some(s) => crate::printers::OutputFormat::parse_with(s, MUTATION_FORMATS).map(Some),
    }
}
