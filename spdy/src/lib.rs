//! SPDY/3.1, as far as Kubernetes' streaming protocols use it: the
//! kubelet and the container runtime's streaming server (containerd's
//! CRI server, through moby/spdystream) speak it for `exec`, `attach` and
//! `port-forward`, and the apiserver speaks it to them.
//!
//! - [`frame`] — frames, their encoding, and the zlib header compression
//!   (SPDY/3's dictionary in [`dictionary`]); plain functions, no IO.
//! - [`connection`] — a connection over any Tokio byte stream (after an
//!   HTTP `Upgrade: SPDY/3.1`): streams opened and accepted, data
//!   multiplexed, PINGs answered.
//! - [`kube`] — the names Kubernetes' stream protocols put on the upgrade
//!   and on streams.

pub mod connection;
pub mod dictionary;
pub mod frame;
pub mod kube;

pub use connection::{Connection, Error, IncomingStream, Role, Stream, StreamReader, StreamWriter};
pub use frame::{Frame, Headers};
