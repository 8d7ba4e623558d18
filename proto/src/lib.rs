//! Generated gRPC code.
//!
//! * [`mvccpb`] and [`etcdserverpb`]: etcd's v3 API, written from etcd's
//!   public definitions, so `etcdctl` and etcd client libraries talk to our
//!   store unchanged.
//! * [`storepb`]: the store's own messages: Raft transport between peers and
//!   the entries replicated through the Raft log.
//! * [`openapi_v2`]: gnostic's OpenAPI v2 model, for `/openapi/v2` in
//!   protobuf, which kubectl reads.

#![allow(clippy::all, clippy::pedantic, missing_docs)] // generated code

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod storepb {
    tonic::include_proto!("storepb");
}

pub mod openapi_v2 {
    tonic::include_proto!("openapi.v2");
}
