//! Not built yet.

use super::StartFn;

pub const START: Option<StartFn> = None;
