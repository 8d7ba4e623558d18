//! Pods: where they come from ([`manager`]), what to do for one
//! ([`plan`]), doing it ([`worker`], [`spec`]), and what to report
//! ([`status`], [`status_manager`]).

pub mod backoff;
pub mod manager;
pub mod plan;
pub mod runtime;
pub mod spec;
pub mod status;
pub mod status_manager;
pub mod worker;
