//! Support for tests that start whole processes and clusters, and the
//! checkers they use.

pub mod apiserver_cluster;
pub mod bench;
pub mod components;
pub mod fake_kubelet;
pub mod http;
pub mod launched;
pub mod linearizability;
pub mod netns;
pub mod node;
pub mod store_cluster;
