//! `kube-scheduler`: upstream's scheduling framework as its own process.
//! The framework and plugins are pure (`framework`, `plugins`); the queue
//! and the cache are plain data structures; `scheduler` wires them to the
//! apiserver through kube-rs.

pub mod cache;
pub mod config;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod profile;
pub mod queue;
pub mod scheduler;

pub use scheduler::{Options, run};
