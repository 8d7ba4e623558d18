//! `kubectl describe` (placeholder).

use clap::Args;

use crate::Factory;

#[derive(Args, Debug)]
pub struct DescribeArgs {
    pub args: Vec<String>,
}

pub async fn run(_f: &Factory, _a: DescribeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
