//! `kubectl run` (placeholder).

use clap::Args;

use crate::Factory;

#[derive(Args, Debug)]
pub struct RunArgs {
    pub args: Vec<String>,
}

pub async fn run(_f: &Factory, _a: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
