//! iptables mode (upstream's chain layout through `iptables-restore`).

use crate::model::{Family, Snapshot};
use crate::proxier::{Backend, ProxyConfig, SyncKind, SyncOutcome};

/// Removes every chain and rule the iptables mode leaves behind.
pub fn cleanup() -> anyhow::Result<()> {
    Ok(())
}

pub struct IptablesProxier {
    pub family: Family,
}

impl IptablesProxier {
    pub fn new(family: Family) -> anyhow::Result<Self> {
        Ok(IptablesProxier { family })
    }
}

impl Backend for IptablesProxier {
    fn sync(&mut self, _cfg: &ProxyConfig, _snap: &Snapshot, _kind: SyncKind) -> anyhow::Result<SyncOutcome> {
        anyhow::bail!("iptables mode is not implemented yet")
    }
    fn cleanup(&mut self) -> anyhow::Result<()> {
        cleanup()
    }
}
