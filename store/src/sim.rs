//! A simulated network for multi-replica tests in one process: messages go
//! straight into the destination's inbox, through filters that drop, delay,
//! partition or isolate, so that faults are reproducible and need no
//! sockets. Not used outside tests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use proto::storepb::MemberInfo;
use raft::eraftpb::Message;

use crate::node::{Node, Transport, is_snapshot};

#[derive(Default)]
struct Filters {
    /// Probability of dropping any message, 0..=1.
    drop_rate: f64,
    delay: Option<Duration>,
    /// When set, messages cross only within a group.
    partition: Option<Vec<HashSet<u64>>>,
    isolated: HashSet<u64>,
}

impl Filters {
    fn blocks(&self, from: u64, to: u64) -> bool {
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            return true;
        }
        if let Some(groups) = &self.partition {
            let group_of = |id| groups.iter().position(|g| g.contains(&id));
            if group_of(from) != group_of(to) {
                return true;
            }
        }
        self.drop_rate > 0.0 && rand::random::<f64>() < self.drop_rate
    }
}

/// The network all simulated replicas share.
pub struct SimNetwork {
    nodes: RwLock<HashMap<u64, Node>>,
    filters: Mutex<Filters>,
    runtime: tokio::runtime::Handle,
}

impl SimNetwork {
    /// Must be called inside a Tokio runtime (delays run on it).
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            nodes: RwLock::default(),
            filters: Mutex::default(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub fn transport(self: &Arc<Self>, me: u64) -> Arc<SimTransport> {
        Arc::new(SimTransport { me, net: self.clone() })
    }

    pub fn register(&self, node: Node) {
        self.nodes.write().insert(node.id(), node);
    }

    pub fn unregister(&self, id: u64) {
        self.nodes.write().remove(&id);
    }

    pub fn set_drop_rate(&self, rate: f64) {
        self.filters.lock().drop_rate = rate;
    }

    pub fn set_delay(&self, delay: Option<Duration>) {
        self.filters.lock().delay = delay;
    }

    /// Splits the network into groups; messages cross only within a group.
    pub fn partition(&self, groups: Vec<Vec<u64>>) {
        self.filters.lock().partition = Some(groups.into_iter().map(|g| g.into_iter().collect()).collect());
    }

    pub fn isolate(&self, id: u64) {
        self.filters.lock().isolated.insert(id);
    }

    /// Removes every filter.
    pub fn heal(&self) {
        *self.filters.lock() = Filters::default();
    }

    fn deliver(&self, from: u64, msg: Message) {
        let to = msg.to;
        let (blocked, delay) = {
            let f = self.filters.lock();
            (f.blocks(from, to), f.delay)
        };
        let nodes = self.nodes.read();
        let snapshot = is_snapshot(&msg);
        if blocked {
            if let Some(sender) = nodes.get(&from) {
                sender.report_unreachable(to);
                if snapshot {
                    sender.report_snapshot(to, false);
                }
            }
            return;
        }
        let Some(dest) = nodes.get(&to).cloned() else { return };
        let sender = nodes.get(&from).cloned();
        drop(nodes);
        let step = move || {
            dest.step(msg);
            if snapshot && let Some(s) = sender {
                s.report_snapshot(to, true);
            }
        };
        match delay {
            None => step(),
            Some(d) => {
                self.runtime.spawn(async move {
                    tokio::time::sleep(d).await;
                    step();
                });
            }
        }
    }
}

pub struct SimTransport {
    me: u64,
    net: Arc<SimNetwork>,
}

impl Transport for SimTransport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            self.net.deliver(self.me, m);
        }
    }

    fn set_peer(&self, _member: &MemberInfo) {}

    fn remove_peer(&self, _id: u64) {}
}
