//! `node-ipam-controller` with upstream's range allocator
//! (`pkg/controller/nodeipam/ipam/range_allocator.go`, `cidrset`): with
//! `--allocate-node-cidrs`, every Node gets `spec.podCIDR(s)`, a
//! `--node-cidr-mask-size` block (24 by default) of `--cluster-cidr`,
//! handed out round-robin, never twice: blocks nodes already hold are
//! marked used at start-up and a deleted node's block is released.
//! Only IPv4 is supported.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use parking_lot::Mutex;
use serde_json::json;

use super::StartFn;
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder};
use crate::informer::{Change, Informer};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CidrError {
    #[error("invalid CIDR {0:?}")]
    Invalid(String),
    #[error("only IPv4 cluster CIDRs are supported, got {0:?}")]
    NotIpv4(String),
    #[error("the node CIDR mask /{node} must be at least the cluster CIDR's /{cluster} and at most 16 bits longer")]
    BadMask { cluster: u8, node: u8 },
    #[error("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")]
    Exhausted,
    #[error("cidr {0} is out the range of cluster cidr {1}")]
    OutOfRange(String, String),
}

pub fn parse_cidr(s: &str) -> Result<(u32, u8), CidrError> {
    let (ip, len) = s.trim().split_once('/').ok_or_else(|| CidrError::Invalid(s.into()))?;
    if ip.contains(':') {
        return Err(CidrError::NotIpv4(s.into()));
    }
    let ip: Ipv4Addr = ip.parse().map_err(|_| CidrError::Invalid(s.into()))?;
    let len: u8 = len.parse().map_err(|_| CidrError::Invalid(s.into()))?;
    if len > 32 {
        return Err(CidrError::Invalid(s.into()));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok((u32::from(ip) & mask, len))
}

fn size(len: u8) -> u64 {
    1u64 << (32 - len)
}

/// Upstream's `CidrSet`: the node-sized blocks of one cluster CIDR.
#[derive(Debug)]
pub struct CidrSet {
    base: u32,
    cluster_len: u8,
    node_len: u8,
    used: Vec<bool>,
    next: usize,
    allocated: usize,
}

impl CidrSet {
    pub fn new(cluster: &str, node_len: u8) -> Result<Self, CidrError> {
        let (base, cluster_len) = parse_cidr(cluster)?;
        if node_len < cluster_len || node_len > 32 || node_len - cluster_len > 16 {
            return Err(CidrError::BadMask {
                cluster: cluster_len,
                node: node_len,
            });
        }
        Ok(CidrSet {
            base,
            cluster_len,
            node_len,
            used: vec![false; 1 << (node_len - cluster_len)],
            next: 0,
            allocated: 0,
        })
    }

    fn block(&self, i: usize) -> String {
        let ip = self.base as u64 + i as u64 * size(self.node_len);
        format!("{}/{}", Ipv4Addr::from(ip as u32), self.node_len)
    }

    fn cluster(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.cluster_len)
    }

    /// The next free block after the last one handed out (round-robin).
    pub fn allocate_next(&mut self) -> Result<String, CidrError> {
        let max = self.used.len();
        if self.allocated == max {
            return Err(CidrError::Exhausted);
        }
        let mut c = self.next;
        while self.used[c] {
            c = (c + 1) % max;
        }
        self.next = (c + 1) % max;
        self.used[c] = true;
        self.allocated += 1;
        Ok(self.block(c))
    }

    /// The block indices `cidr` covers.
    fn indices(&self, cidr: &str) -> Result<std::ops::RangeInclusive<usize>, CidrError> {
        let (ip, len) = parse_cidr(cidr)?;
        let start = ip as u64;
        let end = start + size(len) - 1;
        let cstart = self.base as u64;
        let cend = cstart + size(self.cluster_len) - 1;
        if end < cstart || start > cend {
            return Err(CidrError::OutOfRange(cidr.into(), self.cluster()));
        }
        let b = (start.max(cstart) - cstart) / size(self.node_len);
        let e = (end.min(cend) - cstart) / size(self.node_len);
        Ok(b as usize..=e as usize)
    }

    /// Marks `cidr` used (a node already holds it).
    pub fn occupy(&mut self, cidr: &str) -> Result<(), CidrError> {
        for i in self.indices(cidr)? {
            if !self.used[i] {
                self.used[i] = true;
                self.allocated += 1;
            }
        }
        Ok(())
    }

    pub fn release(&mut self, cidr: &str) -> Result<(), CidrError> {
        for i in self.indices(cidr)? {
            if self.used[i] {
                self.used[i] = false;
                self.allocated -= 1;
            }
        }
        Ok(())
    }

    pub fn is_used(&self, cidr: &str) -> bool {
        self.indices(cidr)
            .map(|r| r.into_iter().all(|i| self.used[i]))
            .unwrap_or(false)
    }
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let list = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if !list.is_empty() {
        return list;
    }
    spec.and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
        .into_iter()
        .collect()
}

struct Allocator {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    set: Mutex<CidrSet>,
    /// Blocks patched onto nodes the cache may not show yet.
    assigned: Mutex<HashMap<String, String>>,
    recorder: Recorder,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let o = &ctx.opts;
    if !o.allocate_node_cidrs {
        tracing::info!("node-ipam-controller: --allocate-node-cidrs is off; pod CIDRs are not allocated");
        return Ok(());
    }
    let Some(cluster) = o.cluster_cidr.as_deref() else {
        anyhow::bail!("--allocate-node-cidrs needs --cluster-cidr");
    };
    // Dual-stack lists: the IPv4 entry is the one served here.
    let cluster = cluster
        .split(',')
        .find(|c| !c.contains(':'))
        .ok_or_else(|| CidrError::NotIpv4(cluster.into()))?;
    let set = CidrSet::new(cluster, o.node_cidr_mask_size.unwrap_or(24))?;
    let a = Arc::new(Allocator {
        client: ctx.client.clone(),
        nodes: ctx.informers.get::<Node>(),
        set: Mutex::new(set),
        assigned: Mutex::new(HashMap::new()),
        recorder: ctx.recorder("cidrAllocator"),
    });
    let queue = ctx.queue("cidrallocator_node");
    let (q, a2) = (queue.clone(), a.clone());
    a.nodes.add_handler(move |ch| {
        let name = util::name(&ch.object().metadata).to_string();
        if let Change::Delete(node) = ch {
            a2.release_node(node);
        }
        q.add(name);
    });
    tokio::spawn(async move {
        a.nodes.wait_synced().await;
        for node in a.nodes.list() {
            for cidr in pod_cidrs(&node) {
                if let Err(e) = a.set.lock().occupy(&cidr) {
                    tracing::warn!(node = %util::name(&node.metadata), error = %e, "cannot mark the node's pod CIDR used");
                }
            }
        }
        run_workers(queue, 1, move |name| {
            let a = a.clone();
            async move { a.sync(&name).await }
        });
    });
    Ok(())
}

impl Allocator {
    fn release_node(&self, node: &Node) {
        let name = util::name(&node.metadata);
        let mut cidrs = pod_cidrs(node);
        if let Some(c) = self.assigned.lock().remove(name)
            && !cidrs.contains(&c)
        {
            cidrs.push(c);
        }
        let mut set = self.set.lock();
        for c in cidrs {
            match set.release(&c) {
                Ok(()) => tracing::info!(node = %name, cidr = %c, "released the node's pod CIDR"),
                Err(e) => tracing::warn!(node = %name, error = %e, "cannot release the node's pod CIDR"),
            }
        }
    }

    fn status_event(&self, node: &Node, status: &str) {
        let name = util::name(&node.metadata);
        self.recorder.event_on(
            ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(name.into()),
                uid: node.metadata.uid.clone(),
                ..Default::default()
            },
            NORMAL,
            status,
            format!("Node {name} status is now: {status}"),
        );
    }

    /// Upstream's `AllocateOrOccupyCIDR` and `updateCIDRsAllocation`.
    async fn sync(&self, name: &str) -> anyhow::Result<()> {
        let Some(node) = self.nodes.get("", name) else {
            return Ok(());
        };
        if node.metadata.deletion_timestamp.is_some() {
            self.release_node(&node);
            return Ok(());
        }
        let have = pod_cidrs(&node);
        if !have.is_empty() {
            let mut set = self.set.lock();
            for c in &have {
                set.occupy(c)?;
            }
            self.assigned.lock().remove(name);
            return Ok(());
        }
        if self.assigned.lock().contains_key(name) {
            // Ours, the cache has not caught up yet.
            return Ok(());
        }
        let cidr = match self.set.lock().allocate_next() {
            Ok(c) => c,
            Err(e) => {
                self.status_event(&node, "CIDRNotAvailable");
                anyhow::bail!("failed to allocate cidr from cluster cidr at idx:0: {e}");
            }
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        let mut last = None;
        for _ in 0..3 {
            match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    tracing::info!(node = %name, pod_cidrs = ?[&cidr], "set node PodCIDR");
                    self.assigned.lock().insert(name.into(), cidr);
                    return Ok(());
                }
                Err(e) if util::is_not_found(&e) => {
                    let _ = self.set.lock().release(&cidr);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        self.status_event(&node, "CIDRAssignmentFailed");
        let _ = self.set.lock().release(&cidr);
        Err(last
            .map(anyhow::Error::from)
            .unwrap_or_else(|| anyhow::anyhow!("patch failed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_round_robin_without_duplicates() {
        let mut s = CidrSet::new("10.244.0.0/22", 24).unwrap();
        let got: Vec<String> = (0..4).map(|_| s.allocate_next().unwrap()).collect();
        assert_eq!(
            got,
            ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
        );
        assert_eq!(s.allocate_next(), Err(CidrError::Exhausted), "all four handed out");
        s.release("10.244.1.0/24").unwrap();
        assert_eq!(
            s.allocate_next().unwrap(),
            "10.244.1.0/24",
            "a released block is handed out again"
        );
    }

    #[test]
    fn occupied_blocks_are_skipped() {
        let mut s = CidrSet::new("10.244.0.0/16", 24).unwrap();
        s.occupy("10.244.0.0/24").unwrap();
        s.occupy("10.244.2.0/23").unwrap();
        let got: Vec<String> = (0..2).map(|_| s.allocate_next().unwrap()).collect();
        assert_eq!(
            got,
            ["10.244.1.0/24", "10.244.4.0/24"],
            "blocks nodes already hold are never handed out"
        );
        assert!(s.is_used("10.244.3.0/24"));
        assert!(matches!(s.occupy("10.0.0.0/24"), Err(CidrError::OutOfRange(..))));
    }

    #[test]
    fn masks_and_inputs_are_checked() {
        for (cluster, mask, ok, why) in [
            ("10.244.0.0/16", 24, true, "the common setup"),
            ("10.244.0.0/16", 8, false, "node block larger than the cluster range"),
            ("10.0.0.0/8", 25, false, "more than 16 bits of blocks"),
            ("fd00::/48", 64, false, "IPv6 is not supported"),
            ("10.244.0.0", 24, false, "not a CIDR"),
        ] {
            assert_eq!(CidrSet::new(cluster, mask).is_ok(), ok, "{why}");
        }
        let s = CidrSet::new("10.244.5.7/16", 24).unwrap();
        assert_eq!(s.block(0), "10.244.0.0/24", "host bits are masked off");
    }
}
