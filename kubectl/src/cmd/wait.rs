//! `kubectl wait` (placeholder).

use clap::Args;

use crate::Factory;

#[derive(Args, Debug)]
pub struct WaitArgs {
    pub args: Vec<String>,
}

pub async fn run(_f: &Factory, _a: WaitArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
