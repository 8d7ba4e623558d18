//! placeholder
use crate::Factory;
use clap::Subcommand;
#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    Status,
}
pub async fn run(_f: &Factory, _c: RolloutCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
