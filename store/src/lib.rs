//! A replicated key-value store with etcd's semantics: the cluster's source
//! of truth, replacing etcd. Raft (raft-rs) replicates a log of requests; a
//! multi-version state machine in sled applies them; etcd's v3 gRPC API
//! serves clients; the apiserver embeds [`Store`] directly.
//!
//! Map: [`index`] (in-memory key index) → [`mvcc`] (state machine on sled) →
//! [`raft_log`] (Raft log on sled) → [`node`] (the Raft driver thread) →
//! [`kv`] (the validated, etcd-shaped [`Store`]) → [`grpc`] (etcd's API) and
//! [`transport`] (peer messages). [`member`] wires one member from etcd-style
//! configuration; [`sim`] is the simulated network for tests.

pub mod codec;
pub mod data_dir;
pub mod error;
pub mod grpc;
pub mod index;
pub mod kv;
pub mod member;
pub mod mvcc;
pub mod node;
pub mod raft_log;
pub mod sim;
pub mod snapshot;
pub mod transport;
pub mod watch;

pub use data_dir::DataDir;
pub use error::{Result, StoreError};
pub use kv::Store;
pub use member::{Member, MemberConfig};
pub use node::{Bootstrap, Node, NodeConfig, NodeStatus, RaftRuntime};
pub use watch::{ProgressRequester, WatchItem, WatchSpec, Watcher};

/// etcd's default limit on one request (`--max-request-bytes`).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// The version reported by `Maintenance.Status`: the etcd API level served.
pub const ETCD_API_VERSION: &str = "3.4.0";
