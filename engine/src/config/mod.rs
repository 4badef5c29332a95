//! The YAML configuration: its types, loading with positioned errors, `${ENV}` substitution
//! and the JSON Schema.

mod types;

pub use types::*;
