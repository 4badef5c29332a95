//! `kind: console`: notifications printed to standard output.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Problem;

/// Console notifier settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Print the JSON payload instead of one readable line.
    #[serde(default)]
    pub json: bool,
}

impl ConsoleConfig {
    /// Nothing to check: every value its types allow works.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        Vec::new()
    }
}
