//! The node's pod network: a CNI conflist (bridge + host-local IPAM over
//! the node's pod CIDR, portmap for hostPorts) written to
//! `--cni-conf-dir`, where the runtime picks it up. The CIDR is the Node's
//! `spec.podCIDR` (the controller-manager's node IPAM), else `--pod-cidr`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::Kubelet;

pub const CONF_FILE: &str = "10-kubelet-bridge.conflist";

/// The conflist for `cidr` on bridge `bridge`, IPAM state under `ipam_dir`.
pub fn conflist(bridge: &str, cidr: &str, ipam_dir: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("kubelet-{bridge}"),
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

async fn pod_cidr(k: &Kubelet) -> Option<String> {
    let api: Api<Node> = Api::all(k.client.clone());
    let from_node = api.get(&k.node_name).await.ok().and_then(|n| n.spec?.pod_cidr);
    from_node.or_else(|| k.opts.pod_cidr.clone())
}

fn write(k: &Kubelet, cidr: &str) -> anyhow::Result<bool> {
    let dir = &k.opts.cni_conf_dir;
    std::fs::create_dir_all(dir)?;
    let ipam = k.opts.root_dir.join("cni-ipam");
    let text = serde_json::to_string_pretty(&conflist(&k.opts.cni_bridge, cidr, &ipam.to_string_lossy()))?;
    let path = dir.join(CONF_FILE);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{CONF_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}

/// Writes the conf once the CIDR is known, and again if it changes.
pub async fn run(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let mut last: Option<String> = None;
    loop {
        if let Some(cidr) = pod_cidr(&k).await
            && last.as_deref() != Some(cidr.as_str())
        {
            match write(&k, &cidr) {
                Ok(_) => {
                    tracing::info!(%cidr, dir = %k.opts.cni_conf_dir.display(), "pod network configured");
                    last = Some(cidr);
                }
                Err(e) => tracing::warn!(error = %e, "writing the CNI configuration"),
            }
        }
        let wait = if last.is_some() {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(1)
        };
        tokio::time::sleep(wait).await;
    }
}
