//! `kubectl explain` (placeholder).

use clap::Args;

use crate::Factory;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    pub args: Vec<String>,
}

pub async fn run(_f: &Factory, _a: ExplainArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
