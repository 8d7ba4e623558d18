//! Pure API machinery, in the spirit of `k8s.io/apimachinery`: no IO, no
//! async, only functions over `serde_json::Value` and plain data, so that the
//! apiserver, our kubectl and tests share one implementation.

pub mod duration;
pub mod events;
pub mod fields;
pub mod labels;
pub mod pods;
pub mod printers;
pub mod protobuf;
pub mod quantity;
pub mod strategic;
pub mod validation;
