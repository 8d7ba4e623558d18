//! Raft messages between members over gRPC (`storepb.RaftPeer`).
//!
//! Each peer has a queue and a task that drains it into one `Send` call per
//! batch. Queues are bounded: when a peer is slow or down its messages are
//! dropped and Raft is told the peer is unreachable; Raft resends.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use proto::storepb::raft_peer_client::RaftPeerClient;
use proto::storepb::raft_peer_server::{RaftPeer, RaftPeerServer};
use proto::storepb::{MemberInfo, MessageBatch, SendAck};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;

use crate::node::{Node, Transport, is_snapshot};

const QUEUE: usize = 4096;
const BATCH: usize = 512;
/// Large enough for a snapshot of the whole state.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

struct Peer {
    urls: Vec<String>,
    tx: mpsc::Sender<Message>,
}

/// The sending side, given to the [`Node`].
pub struct GrpcTransport {
    me: u64,
    /// The Raft thread's runtime ([`crate::RaftRuntime`]): peer
    /// tasks and their connections run there.
    runtime: tokio::runtime::Handle,
    /// Snapshots are encoded and sent here, off the Raft thread.
    background: tokio::runtime::Handle,
    peers: Mutex<HashMap<u64, Peer>>,
    node: Arc<OnceLock<Node>>,
}

impl GrpcTransport {
    /// Peer tasks run on `runtime`, the Raft thread's; must be called
    /// inside another Tokio runtime, where snapshots are sent.
    pub fn new(me: u64, node: Arc<OnceLock<Node>>, runtime: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(Self {
            me,
            runtime,
            background: tokio::runtime::Handle::current(),
            peers: Mutex::new(HashMap::new()),
            node,
        })
    }

    fn spawn_peer(&self, id: u64, url: String) -> mpsc::Sender<Message> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let node = self.node.clone();
        let me = self.me;
        self.runtime
            .spawn(peer_loop(me, id, url, rx, node, self.background.clone()));
        tx
    }
}

async fn peer_loop(
    me: u64,
    id: u64,
    url: String,
    mut rx: mpsc::Receiver<Message>,
    node: Arc<OnceLock<Node>>,
    background: tokio::runtime::Handle,
) {
    let endpoint = match tonic::transport::Endpoint::from_shared(url.clone()) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true),
        Err(e) => {
            tracing::error!(peer = format!("{id:x}"), url, error = %e, "bad peer URL; not sending to it");
            return;
        }
    };
    let client = RaftPeerClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Batches go over one long-lived stream; when it breaks, the next batch
    // opens a new one. Snapshots, rare and large, go as single calls on
    // their own connection, from the background runtime, so that their
    // encoding does not hold up the Raft thread and their outcome can be
    // reported.
    let mut stream: Option<mpsc::Sender<MessageBatch>> = None;
    while let Some(first) = rx.recv().await {
        let mut msgs = vec![first];
        while msgs.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let (snapshots, rest): (Vec<Message>, Vec<Message>) = msgs.into_iter().partition(is_snapshot);
        if !rest.is_empty() {
            let batch = encode(me, &rest);
            let sent = match &stream {
                Some(tx) if !tx.is_closed() => tx.send(batch).await.is_ok(),
                _ => {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    let mut c = client.clone();
                    let node = node.clone();
                    tokio::spawn(async move {
                        if c.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.is_err()
                            && let Some(node) = node.get()
                        {
                            node.report_unreachable(id);
                        }
                    });
                    let ok = tx.send(batch).await.is_ok();
                    stream = Some(tx);
                    ok
                }
            };
            if !sent {
                stream = None;
                if let Some(node) = node.get() {
                    node.report_unreachable(id);
                }
            }
        }
        for snap in snapshots {
            let (endpoint, node) = (endpoint.clone(), node.clone());
            background.spawn(async move {
                let mut client = RaftPeerClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
                let ok = client.send(encode(me, std::slice::from_ref(&snap))).await.is_ok();
                if let Some(node) = node.get() {
                    if !ok {
                        node.report_unreachable(id);
                    }
                    node.report_snapshot(snap.to, ok);
                }
            });
        }
    }
}

fn encode(me: u64, msgs: &[Message]) -> MessageBatch {
    MessageBatch {
        from: me,
        messages: msgs.iter().filter_map(|m| m.write_to_bytes().ok()).collect(),
    }
}

impl Transport for GrpcTransport {
    fn send(&self, msgs: Vec<Message>) {
        let peers = self.peers.lock();
        for m in msgs {
            let to = m.to;
            let Some(peer) = peers.get(&to) else { continue };
            let snapshot = is_snapshot(&m);
            if peer.tx.try_send(m).is_err()
                && let Some(node) = self.node.get()
            {
                node.report_unreachable(to);
                if snapshot {
                    node.report_snapshot(to, false);
                }
            }
        }
    }

    fn set_peer(&self, member: &MemberInfo) {
        let Some(url) = member.peer_urls.first().cloned() else {
            return;
        };
        let mut peers = self.peers.lock();
        if peers.get(&member.id).is_some_and(|p| p.urls == member.peer_urls) {
            return;
        }
        let tx = self.spawn_peer(member.id, url);
        peers.insert(
            member.id,
            Peer {
                urls: member.peer_urls.clone(),
                tx,
            },
        );
    }

    fn remove_peer(&self, id: u64) {
        self.peers.lock().remove(&id);
    }
}

/// The receiving side: a gRPC service stepping messages into the node.
#[derive(Clone)]
pub struct PeerService {
    node: Arc<OnceLock<Node>>,
}

impl PeerService {
    pub fn new(node: Arc<OnceLock<Node>>) -> Self {
        Self { node }
    }

    pub fn into_server(self) -> RaftPeerServer<Self> {
        RaftPeerServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

impl PeerService {
    fn step_batch(&self, batch: MessageBatch) -> Result<(), tonic::Status> {
        let node = self
            .node
            .get()
            .ok_or_else(|| tonic::Status::unavailable("member is starting"))?;
        for bytes in batch.messages {
            let mut m = Message::default();
            if m.merge_from_bytes(&bytes).is_err() {
                return Err(tonic::Status::invalid_argument("undecodable raft message"));
            }
            node.step(m);
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn stream(
        &self,
        req: tonic::Request<tonic::Streaming<MessageBatch>>,
    ) -> Result<tonic::Response<SendAck>, tonic::Status> {
        let mut inbound = req.into_inner();
        while let Some(batch) = inbound.message().await? {
            self.step_batch(batch)?;
        }
        Ok(tonic::Response::new(SendAck {}))
    }

    async fn send(&self, req: tonic::Request<MessageBatch>) -> Result<tonic::Response<SendAck>, tonic::Status> {
        self.step_batch(req.into_inner())?;
        Ok(tonic::Response::new(SendAck {}))
    }
}
