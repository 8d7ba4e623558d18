//! Commands that need a kubelet's streaming protocols (`exec`,
//! `port-forward`, `attach`): the apiserver proxies them, but the cluster
//! does not run a kubelet yet, so they fail clearly.

use clap::Args;

#[derive(Args, Debug, Default)]
pub struct StubArgs {
    /// Arguments (accepted and ignored).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(name: &str, _a: StubArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "\"kubectl {name}\" is not supported yet: it needs a kubelet to stream from, and this cluster does not run one"
    )
}
