//! Bad requests over etcd's API: each gets a clear error with the right
//! gRPC code, and none changes the store.

use integration_tests::store_cluster::{StoreCluster, channel};
use proto::etcdserverpb as pb;
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::watch_client::WatchClient;
use tonic::Code;

fn put(key: &[u8], value: Vec<u8>) -> pb::PutRequest {
    pb::PutRequest {
        key: key.to_vec(),
        value,
        ..Default::default()
    }
}

fn put_op(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(put(key.as_bytes(), b"v".to_vec()))),
    }
}

/// Asserts a request failed with `code` and a message containing `msg`.
fn expect<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, code: Code, msg: &str, why: &str) {
    let err = r.expect_err(why);
    assert_eq!(err.code(), code, "{why}: {err:?}");
    assert!(
        err.message().contains(msg),
        "{why}: message {:?} should contain {msg:?}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() -> anyhow::Result<()> {
    let c = StoreCluster::start(1).await?;
    let mut kv = c.kv(0).await?;
    kv.put(put(b"keep", b"v".to_vec())).await?;
    let rev_before = kv
        .range(pb::RangeRequest {
            key: b"keep".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map_or(0, |h| h.revision);

    // Sizes: etcd's 1.5 MiB request limit, and gRPC's own above it.
    expect(
        kv.put(put(b"big", vec![0; 1_600_000])).await,
        Code::InvalidArgument,
        "request is too large",
        "value over 1.5 MiB",
    );
    expect(
        kv.put(put(b"huge", vec![0; 3 << 20])).await,
        Code::OutOfRange,
        "",
        "value over the gRPC limit",
    );
    // The limit is on the request: just under it is fine.
    kv.put(put(b"almost", vec![1; 1_500_000])).await?;
    kv.delete_range(pb::DeleteRangeRequest {
        key: b"almost".to_vec(),
        ..Default::default()
    })
    .await?;
    let rev_before = rev_before + 2;

    // Empty keys.
    expect(
        kv.put(put(b"", b"v".to_vec())).await,
        Code::InvalidArgument,
        "key is not provided",
        "put without key",
    );
    expect(
        kv.range(pb::RangeRequest::default()).await,
        Code::InvalidArgument,
        "key is not provided",
        "range without key",
    );
    expect(
        kv.delete_range(pb::DeleteRangeRequest::default()).await,
        Code::InvalidArgument,
        "key is not provided",
        "delete without key",
    );
    // Bad ranges.
    expect(
        kv.range(pb::RangeRequest {
            key: b"a".to_vec(),
            limit: -1,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "limit",
        "negative limit",
    );
    expect(
        kv.range(pb::RangeRequest {
            key: b"a".to_vec(),
            sort_order: 9,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "sort order",
        "unknown sort order",
    );
    expect(
        kv.range(pb::RangeRequest {
            key: b"a".to_vec(),
            revision: 1_000_000,
            ..Default::default()
        })
        .await,
        Code::OutOfRange,
        "future revision",
        "read in the future",
    );
    let inverted = kv
        .range(pb::RangeRequest {
            key: b"z".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(inverted.kvs.is_empty(), "an inverted range is empty, as in etcd");
    // Put flags that contradict each other.
    expect(
        kv.put(pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "value is provided",
        "ignore_value with a value",
    );
    expect(
        kv.put(pb::PutRequest {
            key: b"absent".to_vec(),
            ignore_value: true,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "key not found",
        "ignore_value on a missing key",
    );
    expect(
        kv.put(pb::PutRequest {
            key: b"k".to_vec(),
            lease: 77,
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "lease not found",
        "unknown lease",
    );

    // Transactions.
    let txn = |success: Vec<pb::RequestOp>| pb::TxnRequest {
        compare: vec![],
        success,
        failure: vec![],
    };
    expect(
        kv.txn(txn((0..129).map(|i| put_op(&format!("t{i}"))).collect())).await,
        Code::InvalidArgument,
        "too many operations",
        "129 ops",
    );
    expect(
        kv.txn(txn(vec![put_op("t"), put_op("t")])).await,
        Code::InvalidArgument,
        "duplicate key",
        "one key twice",
    );
    expect(
        kv.txn(txn(vec![pb::RequestOp { request: None }])).await,
        Code::InvalidArgument,
        "request op",
        "empty op",
    );
    let bad_compare = pb::TxnRequest {
        compare: vec![pb::Compare {
            key: b"k".to_vec(),
            target: 42,
            ..Default::default()
        }],
        success: vec![put_op("t")],
        failure: vec![],
    };
    expect(
        kv.txn(bad_compare).await,
        Code::InvalidArgument,
        "compare",
        "unknown compare target",
    );

    // Compaction.
    expect(
        kv.compact(pb::CompactionRequest {
            revision: 1_000_000,
            physical: false,
        })
        .await,
        Code::OutOfRange,
        "future revision",
        "compact the future",
    );

    // Leases and members.
    let mut lease = LeaseClient::new(channel(&c.members[0].client_url).await?);
    expect(
        lease.lease_revoke(pb::LeaseRevokeRequest { id: 99 }).await,
        Code::NotFound,
        "lease not found",
        "revoke unknown lease",
    );
    expect(
        lease
            .lease_grant(pb::LeaseGrantRequest {
                ttl: 10_000_000_000,
                id: 0,
            })
            .await,
        Code::FailedPrecondition,
        "too large lease TTL",
        "TTL over the maximum",
    );
    let mut cluster = ClusterClient::new(channel(&c.members[0].client_url).await?);
    expect(
        cluster.member_remove(pb::MemberRemoveRequest { id: 12345 }).await,
        Code::NotFound,
        "member not found",
        "remove unknown member",
    );
    expect(
        cluster.member_promote(pb::MemberPromoteRequest { id: 12345 }).await,
        Code::NotFound,
        "member not found",
        "promote unknown member",
    );
    expect(
        cluster
            .member_add(pb::MemberAddRequest {
                peer_ur_ls: vec!["not a url".into()],
                is_learner: false,
            })
            .await,
        Code::InvalidArgument,
        "peer URL",
        "bad peer URL",
    );
    expect(
        cluster
            .member_add(pb::MemberAddRequest {
                peer_ur_ls: vec![c.members[0].peer_url.clone()],
                is_learner: false,
            })
            .await,
        Code::FailedPrecondition,
        "Peer URLs already exists",
        "duplicate peer URL",
    );

    // A watch with no key is refused on its stream, which stays usable.
    let mut watch = WatchClient::new(channel(&c.members[0].client_url).await?);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let create = |key: &[u8]| pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    };
    tx.send(create(b"")).await?;
    let mut stream = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let refused = stream.message().await?.expect("a response");
    assert!(
        refused.canceled && refused.cancel_reason.contains("key is not provided"),
        "{refused:?}"
    );
    tx.send(create(b"keep")).await?;
    let ok = stream.message().await?.expect("a response");
    assert!(ok.created && !ok.canceled);

    // Nothing above changed the store.
    let after = kv
        .range(pb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        after.header.map_or(0, |h| h.revision),
        rev_before,
        "bad requests must not write"
    );
    assert_eq!(after.kvs.len(), 1);
    Ok(())
}
