//! `kubectl edit` (placeholder).

use clap::Args;

use crate::Factory;

#[derive(Args, Debug)]
pub struct EditArgs {
    pub args: Vec<String>,
}

pub async fn run(_f: &Factory, _a: EditArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
