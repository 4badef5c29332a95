//! How Telltale tells an operator about problems in what they wrote and in what keeps
//! going wrong.
//!
//! Owns:
//! * [`Diagnostic`] / [`Diagnostics`]: `file:line:column: error: message`, the offending
//!   line with a caret and a hint, for config files and rule files alike.
//! * [`LogLimit`]: which occurrences of a warning that repeats every tick get a log line.
//!
//! Invariants: nothing here does I/O or reads the clock; time is a parameter. This crate
//! depends on no other Telltale crate, so every stage can use it.

mod diagnostic;
mod log_limit;

pub use diagnostic::{Diagnostic, Diagnostics, Position, did_you_mean, location};
pub use log_limit::{LogLimit, Notice};
