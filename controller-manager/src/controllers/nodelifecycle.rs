//! Not built yet.

use super::StartFn;

pub const START: Option<StartFn> = None;
pub const START_TAINT_EVICTION: Option<StartFn> = None;
