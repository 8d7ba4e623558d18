//! Not built yet.

use super::StartFn;

pub const START: Option<StartFn> = None;
pub const START_RC: Option<StartFn> = None;
