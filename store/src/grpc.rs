//! etcd's v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance) over a
//! [`Store`], so that `etcdctl` and etcd client libraries work unchanged.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use proto::etcdserverpb as pb;
use proto::etcdserverpb::cluster_server::{Cluster, ClusterServer};
use proto::etcdserverpb::kv_server::{Kv, KvServer};
use proto::etcdserverpb::lease_server::{Lease, LeaseServer};
use proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
use proto::etcdserverpb::watch_server::{Watch, WatchServer};
use proto::storepb::MemberInfo;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::StoreError;
use crate::kv::Store;
use crate::watch::{WatchItem, WatchSpec};

type GrpcResult<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Events per watch response; a revision is never split.
const WATCH_BATCH_EVENTS: usize = 1000;
/// Chunk size of `Maintenance.Snapshot` responses.
const SNAPSHOT_CHUNK: usize = 32 * 1024;
/// gRPC allows this much beyond the request limit for framing, as etcd does.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The etcd API of one member.
#[derive(Clone)]
pub struct EtcdService {
    store: Store,
    progress_interval: Duration,
}

impl EtcdService {
    /// `progress_interval`: how often an idle watcher that asked for
    /// progress notifications gets one (etcd: 10 minutes).
    pub fn new(store: Store, progress_interval: Duration) -> Self {
        Self {
            store,
            progress_interval,
        }
    }

    /// Adds every etcd service to a tonic router.
    pub fn add_to(self, server: &mut tonic::transport::Server) -> tonic::transport::server::Router {
        let max = self.store.node().config().max_request_bytes + GRPC_OVERHEAD_BYTES;
        server
            .add_service(
                KvServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                WatchServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(LeaseServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(ClusterServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(MaintenanceServer::new(self).max_decoding_message_size(max))
    }
}

fn member_pb(m: &MemberInfo) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

#[tonic::async_trait]
impl Kv for EtcdService {
    async fn range(&self, req: Request<pb::RangeRequest>) -> GrpcResult<pb::RangeResponse> {
        Ok(Response::new(self.store.range(req.into_inner()).await?))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> GrpcResult<pb::PutResponse> {
        Ok(Response::new(self.store.put(req.into_inner()).await?))
    }

    async fn delete_range(&self, req: Request<pb::DeleteRangeRequest>) -> GrpcResult<pb::DeleteRangeResponse> {
        Ok(Response::new(self.store.delete_range(req.into_inner()).await?))
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> GrpcResult<pb::TxnResponse> {
        Ok(Response::new(self.store.txn(req.into_inner()).await?))
    }

    async fn compact(&self, req: Request<pb::CompactionRequest>) -> GrpcResult<pb::CompactionResponse> {
        Ok(Response::new(self.store.compact(req.into_inner()).await?))
    }
}

/// Per-stream bookkeeping for progress requests: where each watcher is.
#[derive(Default)]
struct StreamWatchers {
    tasks: HashMap<i64, (tokio::task::JoinHandle<()>, Arc<AtomicI64>)>,
}

#[tonic::async_trait]
impl Watch for EtcdService {
    type WatchStream = BoxStream<pb::WatchResponse>;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> GrpcResult<Self::WatchStream> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<pb::WatchResponse, Status>>(256);
        let this = self.clone();
        tokio::spawn(async move {
            let mut watchers = StreamWatchers::default();
            let mut next_id: i64 = 0;
            while let Some(Ok(msg)) = inbound.next().await {
                use pb::watch_request::RequestUnion;
                match msg.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        this.create_watch(c, &mut watchers, &mut next_id, &tx).await;
                    }
                    Some(RequestUnion::CancelRequest(c)) => {
                        if let Some((task, _)) = watchers.tasks.remove(&c.watch_id) {
                            task.abort();
                            let resp = pb::WatchResponse {
                                header: Some(this.store.current_header()),
                                watch_id: c.watch_id,
                                canceled: true,
                                ..Default::default()
                            };
                            let _ = tx.send(Ok(resp)).await;
                        }
                    }
                    Some(RequestUnion::ProgressRequest(_)) => {
                        // Like etcd 3.5: one notification for the stream,
                        // only when every watcher has caught up.
                        let current = this.store.node().hub().current_revision();
                        let synced = watchers
                            .tasks
                            .values()
                            .all(|(_, next)| next.load(Ordering::Acquire) > current);
                        if synced {
                            let resp = pb::WatchResponse {
                                header: Some(this.store.header(current)),
                                watch_id: -1,
                                ..Default::default()
                            };
                            let _ = tx.send(Ok(resp)).await;
                        }
                    }
                    None => {}
                }
            }
            for (_, (task, _)) in watchers.tasks {
                task.abort();
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl EtcdService {
    async fn create_watch(
        &self,
        c: pb::WatchCreateRequest,
        watchers: &mut StreamWatchers,
        next_id: &mut i64,
        tx: &mpsc::Sender<Result<pb::WatchResponse, Status>>,
    ) {
        use pb::watch_create_request::FilterType;
        let current = self.store.mvcc().current_revision();
        let id = if c.watch_id > 0 {
            c.watch_id
        } else {
            while watchers.tasks.contains_key(next_id) {
                *next_id += 1;
            }
            *next_id
        };
        let refuse = |reason: String, compact_revision: i64| pb::WatchResponse {
            header: Some(self.store.header(current)),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason,
            compact_revision,
            ..Default::default()
        };
        if watchers.tasks.contains_key(&id) {
            let _ = tx
                .send(Ok(refuse(
                    "etcdserver: duplicate watch ID provided on the WatchStream".into(),
                    0,
                )))
                .await;
            return;
        }
        let spec = WatchSpec {
            key: c.key,
            range_end: c.range_end,
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        };
        let mut watcher = match self.store.watch(spec) {
            Ok(w) => w,
            Err(StoreError::Compacted { compact_revision }) => {
                let _ = tx
                    .send(Ok(refuse(
                        StoreError::Compacted { compact_revision }.to_string(),
                        compact_revision,
                    )))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Ok(refuse(e.to_string(), 0))).await;
                return;
            }
        };
        let created = pb::WatchResponse {
            header: Some(self.store.header(current)),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        if tx.send(Ok(created)).await.is_err() {
            return;
        }
        let position = Arc::new(AtomicI64::new(watcher.next_revision()));
        let progress = c.progress_notify.then_some(self.progress_interval);
        let (store, tx, pos) = (self.store.clone(), tx.clone(), position.clone());
        let task = tokio::spawn(async move {
            loop {
                let deadline = progress.map(|p| Instant::now() + p);
                let item = watcher.next(WATCH_BATCH_EVENTS, deadline).await;
                pos.store(watcher.next_revision(), Ordering::Release);
                let resp = match item {
                    Ok(WatchItem::Events { revision, events }) => pb::WatchResponse {
                        header: Some(store.header(revision)),
                        watch_id: id,
                        events,
                        ..Default::default()
                    },
                    Ok(WatchItem::Progress { revision }) => pb::WatchResponse {
                        header: Some(store.header(revision)),
                        watch_id: id,
                        ..Default::default()
                    },
                    Err(StoreError::Compacted { compact_revision }) => {
                        let resp = pb::WatchResponse {
                            header: Some(store.current_header()),
                            watch_id: id,
                            canceled: true,
                            compact_revision,
                            cancel_reason: StoreError::Compacted { compact_revision }.to_string(),
                            ..Default::default()
                        };
                        let _ = tx.send(Ok(resp)).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        watchers.tasks.insert(id, (task, position));
        *next_id = (*next_id).max(id + 1);
    }
}

#[tonic::async_trait]
impl Lease for EtcdService {
    async fn lease_grant(&self, req: Request<pb::LeaseGrantRequest>) -> GrpcResult<pb::LeaseGrantResponse> {
        Ok(Response::new(self.store.lease_grant(req.into_inner()).await?))
    }

    async fn lease_revoke(&self, req: Request<pb::LeaseRevokeRequest>) -> GrpcResult<pb::LeaseRevokeResponse> {
        Ok(Response::new(self.store.lease_revoke(req.into_inner().id).await?))
    }

    type LeaseKeepAliveStream = BoxStream<pb::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> GrpcResult<Self::LeaseKeepAliveStream> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let store = self.store.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = inbound.next().await {
                let ttl = match store.lease_keep_alive(msg.id).await {
                    Ok(ttl) => ttl,
                    // etcd answers TTL 0 for a lease that is gone.
                    Err(StoreError::LeaseNotFound) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                let resp = pb::LeaseKeepAliveResponse {
                    header: Some(store.current_header()),
                    id: msg.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> GrpcResult<pb::LeaseTimeToLiveResponse> {
        let r = req.into_inner();
        Ok(Response::new(self.store.lease_time_to_live(r.id, r.keys).await?))
    }

    async fn lease_leases(&self, _req: Request<pb::LeaseLeasesRequest>) -> GrpcResult<pb::LeaseLeasesResponse> {
        Ok(Response::new(self.store.lease_leases().await?))
    }
}

#[tonic::async_trait]
impl Cluster for EtcdService {
    async fn member_add(&self, req: Request<pb::MemberAddRequest>) -> GrpcResult<pb::MemberAddResponse> {
        let r = req.into_inner();
        let m = self.store.add_member(r.peer_ur_ls, r.is_learner).await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.store.current_header()),
            member: Some(member_pb(&m)),
            members: self.store.members().iter().map(member_pb).collect(),
        }))
    }

    async fn member_remove(&self, req: Request<pb::MemberRemoveRequest>) -> GrpcResult<pb::MemberRemoveResponse> {
        self.store.remove_member(req.into_inner().id).await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.store.current_header()),
            members: self.store.members().iter().map(member_pb).collect(),
        }))
    }

    async fn member_update(&self, req: Request<pb::MemberUpdateRequest>) -> GrpcResult<pb::MemberUpdateResponse> {
        let r = req.into_inner();
        self.store.update_member(r.id, r.peer_ur_ls).await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(self.store.current_header()),
            members: self.store.members().iter().map(member_pb).collect(),
        }))
    }

    async fn member_list(&self, req: Request<pb::MemberListRequest>) -> GrpcResult<pb::MemberListResponse> {
        // As etcd 3.5: on request, first catch up with every change the
        // cluster committed (ReadIndex); otherwise this member's view.
        if req.into_inner().linearizable {
            self.store.linearizable_revision().await?;
        }
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.store.current_header()),
            members: self.store.members().iter().map(member_pb).collect(),
        }))
    }

    async fn member_promote(&self, req: Request<pb::MemberPromoteRequest>) -> GrpcResult<pb::MemberPromoteResponse> {
        let id = req.into_inner().id;
        match self.store.promote_member(id).await {
            Ok(()) => {}
            // Like etcd, hand the promotion to the leader, the only member
            // that can tell whether the learner has caught up.
            Err(StoreError::NotLeader) => return self.forward_promote(id).await,
            Err(e) => return Err(e.into()),
        }
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.store.current_header()),
            members: self.store.members().iter().map(member_pb).collect(),
        }))
    }
}

impl EtcdService {
    async fn forward_promote(&self, id: u64) -> GrpcResult<pb::MemberPromoteResponse> {
        let leader = self.store.status().leader;
        let url = self
            .store
            .mvcc()
            .member(leader)
            .and_then(|m| m.client_urls.first().cloned())
            .ok_or(StoreError::NoLeader)?;
        let mut client = proto::etcdserverpb::cluster_client::ClusterClient::connect(url)
            .await
            .map_err(|e| Status::unavailable(format!("etcdserver: cannot reach the leader: {e}")))?;
        client.member_promote(pb::MemberPromoteRequest { id }).await
    }
}

#[tonic::async_trait]
impl Maintenance for EtcdService {
    async fn alarm(&self, _req: Request<pb::AlarmRequest>) -> GrpcResult<pb::AlarmResponse> {
        Ok(Response::new(pb::AlarmResponse {
            header: Some(self.store.current_header()),
            alarms: vec![],
        }))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> GrpcResult<pb::StatusResponse> {
        let s = self.store.status();
        let size = self.store.node().db_size();
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.store.current_header()),
            version: crate::ETCD_API_VERSION.into(),
            db_size: size,
            leader: s.leader,
            raft_index: s.commit,
            raft_term: s.term,
            raft_applied_index: s.applied,
            errors: vec![],
            db_size_in_use: size,
            is_learner: s.is_learner,
        }))
    }

    async fn defragment(&self, _req: Request<pb::DefragmentRequest>) -> GrpcResult<pb::DefragmentResponse> {
        // sled reclaims space on its own; nothing to do.
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(self.store.current_header()),
        }))
    }

    async fn hash(&self, _req: Request<pb::HashRequest>) -> GrpcResult<pb::HashResponse> {
        let (hash, _) = self.store.mvcc().hash_kv(0).map_err(Status::from)?;
        Ok(Response::new(pb::HashResponse {
            header: Some(self.store.current_header()),
            hash,
        }))
    }

    async fn hash_kv(&self, req: Request<pb::HashKvRequest>) -> GrpcResult<pb::HashKvResponse> {
        let (hash, compact_revision) = self
            .store
            .mvcc()
            .hash_kv(req.into_inner().revision)
            .map_err(Status::from)?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.store.current_header()),
            hash,
            compact_revision,
        }))
    }

    type SnapshotStream = BoxStream<pb::SnapshotResponse>;

    async fn snapshot(&self, _req: Request<pb::SnapshotRequest>) -> GrpcResult<Self::SnapshotStream> {
        let data = crate::snapshot::wrap(&self.store.node().snapshot_data().await?);
        let header = self.store.current_header();
        let total = data.len();
        let chunks: Vec<Result<pb::SnapshotResponse, Status>> = data
            .chunks(SNAPSHOT_CHUNK)
            .scan(0usize, |sent, c| {
                *sent += c.len();
                Some(Ok(pb::SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - *sent) as u64,
                    blob: c.to_vec(),
                }))
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn move_leader(&self, req: Request<pb::MoveLeaderRequest>) -> GrpcResult<pb::MoveLeaderResponse> {
        let to = req.into_inner().target_id;
        if self.store.mvcc().member(to).is_none() {
            return Err(StoreError::MemberNotFound.into());
        }
        if !self.store.status().is_leader {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        self.store.node().transfer_leader(to)?;
        let deadline = Instant::now() + self.store.node().config().request_timeout;
        while self.store.status().leader != to {
            if Instant::now() > deadline {
                return Err(StoreError::Timeout.into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(self.store.current_header()),
        }))
    }
}
