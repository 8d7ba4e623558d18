//! placeholder
use clap::Args;
#[derive(Args, Debug)]
pub struct StubArgs {
    pub args: Vec<String>,
}
pub fn run(_name: &str, _a: StubArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
