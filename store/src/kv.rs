//! [`Store`]: the etcd-shaped interface of one replica — range, put, delete,
//! txn with compares, watch from a revision, compact, leases, members. The
//! etcd gRPC service and the apiserver both sit on it.
//!
//! Requests are validated here, before they reach Raft, so a bad request is
//! refused with a clear error and never enters the log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::etcdserverpb as pb;
use proto::storepb::{LeaseRenew, MemberInfo, internal_request::Request as InternalReq};

use crate::error::{Result, StoreError};
use crate::mvcc::{Applied, Mvcc};
use crate::node::{Node, NodeStatus};
use crate::watch::{WatchSpec, Watcher};

/// etcd's default limit on operations in one transaction.
pub const MAX_TXN_OPS: usize = 128;

#[derive(Clone)]
pub struct Store {
    node: Node,
}

impl Store {
    pub fn new(node: Node) -> Self {
        Self { node }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn mvcc(&self) -> &Arc<Mvcc> {
        self.node.mvcc()
    }

    pub fn status(&self) -> NodeStatus {
        self.node.status()
    }

    /// A response header at the current revision.
    pub fn current_header(&self) -> pb::ResponseHeader {
        self.header(self.mvcc().current_revision())
    }

    /// A response header from this replica.
    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        let s = self.node.status();
        pb::ResponseHeader {
            cluster_id: self.node.config().cluster_id,
            member_id: self.node.id(),
            revision,
            raft_term: s.term,
        }
    }

    fn fill(&self, h: &mut Option<pb::ResponseHeader>) {
        let revision = h
            .as_ref()
            .map_or_else(|| self.mvcc().current_revision(), |h| h.revision);
        *h = Some(self.header(revision));
    }

    pub async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse> {
        check_range(&req)?;
        if !req.serializable {
            self.node.read_index().await?;
        }
        let mut resp = self.mvcc().range(&req)?;
        self.fill(&mut resp.header);
        Ok(resp)
    }

    pub async fn put(&self, req: pb::PutRequest) -> Result<pb::PutResponse> {
        check_put(&req)?;
        match self.node.propose(InternalReq::Put(req)).await? {
            Applied::Put(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(&self, req: pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse> {
        check_delete(&req)?;
        match self.node.propose(InternalReq::DeleteRange(req)).await? {
            Applied::DeleteRange(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse> {
        check_txn(&req, MAX_TXN_OPS)?;
        if is_read_only(&req) {
            // Like etcd: a read-only txn needs no log entry, only a
            // linearizable view.
            self.node.read_index().await?;
            return self.read_only_txn(&req);
        }
        match self.node.propose(InternalReq::Txn(req)).await? {
            Applied::Txn(mut r) => {
                let h = self.header(r.header.as_ref().map_or(0, |h| h.revision));
                crate::mvcc::set_txn_headers(&mut r, &h);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    fn read_only_txn(&self, req: &pb::TxnRequest) -> Result<pb::TxnResponse> {
        use pb::request_op::Request;
        use pb::response_op::Response;
        // Evaluate at one revision so compares and ranges agree.
        let at = self.mvcc().current_revision();
        let succeeded = self.mvcc().compares_hold(&req.compare, at)?;
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    let r = pb::RangeRequest {
                        revision: if r.revision > 0 { r.revision } else { at },
                        ..r.clone()
                    };
                    Response::ResponseRange(self.mvcc().range(&r)?)
                }
                Some(Request::RequestTxn(t)) => Response::ResponseTxn(self.read_only_txn(t)?),
                _ => return Err(StoreError::InvalidArgument("write in a read-only txn".into())),
            };
            responses.push(pb::ResponseOp {
                response: Some(response),
            });
        }
        let mut r = pb::TxnResponse {
            header: None,
            succeeded,
            responses,
        };
        crate::mvcc::set_txn_headers(&mut r, &self.header(at));
        Ok(r)
    }

    pub async fn compact(&self, req: pb::CompactionRequest) -> Result<pb::CompactionResponse> {
        match self.node.propose(InternalReq::Compaction(req)).await? {
            Applied::Compaction(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    /// The newest revision, read linearizably: at least as new as any write
    /// acknowledged before the call (Raft ReadIndex).
    pub async fn linearizable_revision(&self) -> Result<i64> {
        self.node.read_index().await?;
        Ok(self.mvcc().current_revision())
    }

    /// Follows this replica's newest applied revision.
    pub fn revision_watch(&self) -> tokio::sync::watch::Receiver<i64> {
        self.node.hub().subscribe_revision()
    }

    /// Starts a watcher. Fails at once if `start_revision` is compacted.
    pub fn watch(&self, spec: WatchSpec) -> Result<Watcher> {
        if spec.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        Watcher::new(self.mvcc().clone(), self.node.hub().clone(), spec)
    }

    pub async fn lease_grant(&self, mut req: pb::LeaseGrantRequest) -> Result<pb::LeaseGrantResponse> {
        if req.id == 0 {
            // Chosen here, not by the state machine: replicas must agree.
            req.id = (rand::random::<u64>() >> 1).max(1) as i64;
        }
        if req.id < 0 {
            return Err(StoreError::InvalidArgument("lease id".into()));
        }
        match self.node.propose(InternalReq::LeaseGrant(req)).await? {
            Applied::LeaseGrant(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<pb::LeaseRevokeResponse> {
        match self
            .node
            .propose(InternalReq::LeaseRevoke(pb::LeaseRevokeRequest { id }))
            .await?
        {
            Applied::LeaseRevoke(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Renews a lease; returns its TTL.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        match self.node.propose(InternalReq::LeaseRenew(LeaseRenew { id })).await? {
            Applied::LeaseRenew { ttl } => Ok(ttl),
            other => Err(unexpected(other)),
        }
    }

    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<pb::LeaseTimeToLiveResponse> {
        self.node.read_index().await?;
        let header = Some(self.header(self.mvcc().current_revision()));
        Ok(match self.mvcc().lease_ttl(id) {
            // etcd answers an unknown lease with TTL -1, not an error.
            None => pb::LeaseTimeToLiveResponse {
                header,
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            },
            Some((granted, remaining, k)) => pb::LeaseTimeToLiveResponse {
                header,
                id,
                ttl: remaining,
                granted_ttl: granted,
                keys: if keys { k } else { vec![] },
            },
        })
    }

    pub async fn lease_leases(&self) -> Result<pb::LeaseLeasesResponse> {
        self.node.read_index().await?;
        let leases = self
            .mvcc()
            .lease_ids()
            .into_iter()
            .map(|id| pb::LeaseStatus { id })
            .collect();
        Ok(pb::LeaseLeasesResponse {
            header: Some(self.header(self.mvcc().current_revision())),
            leases,
        })
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        self.mvcc().members()
    }

    /// Peer URLs for member `id` (None: a new member) must be given, valid,
    /// and used by no other member. Ids derive from peer URLs, so a clash is
    /// reported as such rather than as an id clash.
    fn check_peer_urls(&self, id: Option<u64>, peer_urls: &[String]) -> Result<()> {
        if peer_urls.is_empty() {
            return Err(StoreError::InvalidArgument("peer URLs: none given".into()));
        }
        for u in peer_urls {
            url::Url::parse(u).map_err(|e| StoreError::InvalidArgument(format!("peer URL {u:?}: {e}")))?;
        }
        let taken = self
            .members()
            .iter()
            .any(|m| Some(m.id) != id && m.peer_urls.iter().any(|u| peer_urls.contains(u)));
        if taken {
            return Err(StoreError::PeerUrlExists);
        }
        Ok(())
    }

    pub async fn add_member(&self, peer_urls: Vec<String>, is_learner: bool) -> Result<MemberInfo> {
        self.check_peer_urls(None, &peer_urls)?;
        let member = MemberInfo {
            id: crate::member::member_id(&peer_urls, &self.node.config().cluster_token),
            name: String::new(),
            peer_urls,
            client_urls: vec![],
            is_learner,
        };
        self.node.add_member(member.clone()).await?;
        Ok(member)
    }

    /// Changes a member's peer URLs (etcd's MemberUpdate).
    pub async fn update_member(&self, id: u64, peer_urls: Vec<String>) -> Result<()> {
        if self.mvcc().member(id).is_none() {
            return Err(StoreError::MemberNotFound);
        }
        self.check_peer_urls(Some(id), &peer_urls)?;
        let update = MemberInfo {
            id,
            peer_urls,
            ..Default::default()
        };
        match self.node.propose(InternalReq::MemberUpdate(update)).await? {
            Applied::MemberUpdated => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn remove_member(&self, id: u64) -> Result<()> {
        self.node.remove_member(id).await.map(|_| ())
    }

    pub async fn promote_member(&self, id: u64) -> Result<()> {
        self.node.promote_member(id).await.map(|_| ())
    }

    /// Records this member's name and client URLs in the member table.
    pub async fn publish(&self, name: String, client_urls: Vec<String>) -> Result<()> {
        let me = self.mvcc().member(self.node.id()).unwrap_or_default();
        let info = MemberInfo {
            id: self.node.id(),
            name,
            client_urls,
            peer_urls: me.peer_urls,
            is_learner: me.is_learner,
        };
        self.node.propose(InternalReq::Publish(info)).await.map(|_| ())
    }

    /// Runs the leader's periodic duties until the node stops: revoking
    /// expired leases, and compacting history older than `retention`
    /// (etcd's periodic auto-compaction; zero disables it).
    pub async fn run_leader_duties(self, retention: Duration) {
        let mut samples: std::collections::VecDeque<(Instant, i64)> = Default::default();
        let sample_every = (retention / 10).max(Duration::from_millis(100));
        let mut last_sample = Instant::now() - sample_every;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.node.is_stopped() {
                return;
            }
            let now = Instant::now();
            if !retention.is_zero() && now.duration_since(last_sample) >= sample_every {
                samples.push_back((now, self.mvcc().current_revision()));
                last_sample = now;
            }
            if !self.status().is_leader {
                continue;
            }
            for id in self.mvcc().expired_leases(now) {
                match self.lease_revoke(id).await {
                    Ok(_) | Err(StoreError::LeaseNotFound) => {}
                    Err(e) => tracing::debug!(lease = id, error = %e, "revoking expired lease"),
                }
            }
            if retention.is_zero() {
                continue;
            }
            let mut target = None;
            while let Some(&(at, rev)) = samples.front() {
                if now.duration_since(at) < retention {
                    break;
                }
                target = Some(rev);
                samples.pop_front();
            }
            if let Some(rev) = target
                && rev > self.mvcc().compacted_revision()
            {
                match self
                    .compact(pb::CompactionRequest {
                        revision: rev,
                        physical: false,
                    })
                    .await
                {
                    Ok(_) => tracing::info!(revision = rev, "auto-compacted history"),
                    Err(StoreError::Compacted { .. }) => {}
                    Err(e) => tracing::warn!(revision = rev, error = %e, "auto-compaction failed"),
                }
            }
        }
    }
}

fn unexpected(a: Applied) -> StoreError {
    StoreError::Storage(format!("unexpected apply result {a:?}"))
}

fn is_read_only(req: &pb::TxnRequest) -> bool {
    use pb::request_op::Request;
    req.success.iter().chain(&req.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) => true,
        Some(Request::RequestTxn(t)) => is_read_only(t),
        _ => false,
    })
}

pub fn check_range(r: &pb::RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if r.limit < 0 {
        return Err(StoreError::InvalidArgument("range limit: negative".into()));
    }
    if pb::range_request::SortOrder::try_from(r.sort_order).is_err() {
        return Err(StoreError::InvalidArgument("range sort order".into()));
    }
    if pb::range_request::SortTarget::try_from(r.sort_target).is_err() {
        return Err(StoreError::InvalidArgument("range sort target".into()));
    }
    Ok(())
}

pub fn check_put(r: &pb::PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(StoreError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(StoreError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &pb::DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

/// etcd's txn checks: sizes, well-formed ops, and no key written twice in
/// one branch (a put and a delete covering the same key count).
pub fn check_txn(t: &pb::TxnRequest, max_ops: usize) -> Result<()> {
    use pb::request_op::Request;
    if t.compare.len() > max_ops || t.success.len() > max_ops || t.failure.len() > max_ops {
        return Err(StoreError::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if pb::compare::CompareResult::try_from(c.result).is_err()
            || pb::compare::CompareTarget::try_from(c.target).is_err()
        {
            return Err(StoreError::InvalidArgument("compare".into()));
        }
    }
    for branch in [&t.success, &t.failure] {
        for op in branch {
            match &op.request {
                Some(Request::RequestRange(r)) => check_range(r)?,
                Some(Request::RequestPut(p)) => check_put(p)?,
                Some(Request::RequestDeleteRange(d)) => check_delete(d)?,
                Some(Request::RequestTxn(n)) => check_txn(n, max_ops)?,
                None => return Err(StoreError::InvalidArgument("request op: empty".into())),
            }
        }
        check_duplicates(branch)?;
    }
    Ok(())
}

fn check_duplicates(ops: &[pb::RequestOp]) -> Result<()> {
    use pb::request_op::Request;
    let mut puts: HashSet<&[u8]> = HashSet::new();
    let mut deletes: Vec<(&[u8], &[u8])> = Vec::new();
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) if !puts.insert(&p.key) => {
                return Err(StoreError::DuplicateKey);
            }
            Some(Request::RequestDeleteRange(d)) => deletes.push((&d.key, &d.range_end)),
            _ => {}
        }
    }
    for key in &puts {
        if deletes.iter().any(|(s, e)| crate::mvcc::key_in_range(key, s, e)) {
            return Err(StoreError::DuplicateKey);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::request_op::Request;

    fn put(k: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestPut(pb::PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }

    fn del(k: &str, end: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn txn_checks() {
        let ok = |success: Vec<pb::RequestOp>| pb::TxnRequest {
            success,
            ..Default::default()
        };
        let cases: Vec<(pb::TxnRequest, Result<()>, &str)> = vec![
            (ok(vec![put("a"), put("b")]), Ok(()), "distinct puts"),
            (
                ok(vec![put("a"), put("a")]),
                Err(StoreError::DuplicateKey),
                "same key twice",
            ),
            (
                ok(vec![put("b"), del("a", "c")]),
                Err(StoreError::DuplicateKey),
                "put inside a deleted range",
            ),
            (ok(vec![put("c"), del("a", "c")]), Ok(()), "range end is exclusive"),
            (ok(vec![put("")]), Err(StoreError::EmptyKey), "empty key"),
            (
                ok((0..129).map(|i| put(&i.to_string())).collect()),
                Err(StoreError::TooManyOps),
                "129 ops",
            ),
            (
                ok(vec![pb::RequestOp { request: None }]),
                Err(StoreError::InvalidArgument("request op: empty".into())),
                "empty op",
            ),
        ];
        for (req, want, why) in cases {
            assert_eq!(check_txn(&req, MAX_TXN_OPS), want, "{why}");
        }
    }

    #[test]
    fn put_checks() {
        let p = |value: &str, lease, iv, il| pb::PutRequest {
            key: b"k".to_vec(),
            value: value.into(),
            lease,
            ignore_value: iv,
            ignore_lease: il,
            prev_kv: false,
        };
        assert_eq!(check_put(&p("", 0, true, false)), Ok(()));
        assert_eq!(check_put(&p("x", 0, true, false)), Err(StoreError::ValueProvided));
        assert_eq!(check_put(&p("", 5, false, true)), Err(StoreError::LeaseProvided));
    }
}
