//! Telltale: a monitoring engine that runs a collect → process → evaluate → notify pipeline.
//!
//! Start reading at [`pipeline`], which wires the stages together; [`model`] holds every
//! type that passes between them. `ARCHITECTURE.md` at the repository root is the map.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod ingest;
pub mod log_limit;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod plugin_host;
pub mod rules;
pub mod store;
