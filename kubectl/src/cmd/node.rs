//! placeholder
use crate::Factory;
use clap::Args;
#[derive(Args, Debug)]
pub struct CordonArgs {
    pub args: Vec<String>,
}
#[derive(Args, Debug)]
pub struct TaintArgs {
    pub args: Vec<String>,
}
pub async fn cordon(_f: &Factory, _a: CordonArgs, _c: bool) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
pub async fn taint(_f: &Factory, _a: TaintArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
