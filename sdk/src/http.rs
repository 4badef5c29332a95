//! HTTP GET to the `host:port` pairs granted to the plugin (grant `http`).
//!
//! The host checks every URL (and every redirect) against the plugin's
//! `grants: { http: ["HOST:PORT", ...] }`, bounds the request by the call's remaining
//! deadline and caps the body at the plugin's `limits.max_http_body`. Any HTTP status is a
//! [`Response`]; only failures to get one (not granted, unreachable, too slow, too large)
//! are errors.
//!
//! ```ignore
//! use telltale_sdk::{PluginError, http};
//!
//! let response = http::get("http://127.0.0.1:9100/metrics")
//!     .map_err(PluginError::Failed)?;
//! if !response.is_success() {
//!     return Err(PluginError::Failed(format!("status {}", response.status)));
//! }
//! let text = response.text().map_err(|e| PluginError::Failed(e.to_string()))?;
//! ```

pub use crate::bindings::telltale::plugin::http::Response;

use crate::bindings::telltale::plugin::http as raw;

/// Fetches `url` with no extra request headers.
pub fn get(url: &str) -> Result<Response, String> {
    raw::get(url, &[])
}

/// Fetches `url` with extra request headers (name, value), e.g.
/// `[("accept", "text/plain")]`. The `host` header cannot be set.
pub fn get_with_headers(url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    raw::get(url, &headers)
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
