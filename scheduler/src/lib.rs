//! `kube-scheduler`: upstream's scheduling framework as its own process.
//! The framework and plugins are pure (`framework`, `plugins`); the queue
//! and the cache are plain data structures; `scheduler` wires them to the
//! apiserver through kube-rs.

pub mod config;
pub mod framework;
pub mod plugins;
pub mod profile;
