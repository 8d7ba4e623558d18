//! `kubectl expose` (placeholder).

use clap::Args;

use crate::Factory;

#[derive(Args, Debug)]
pub struct ExposeArgs {
    pub args: Vec<String>,
}

pub async fn run(_f: &Factory, _a: ExposeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
