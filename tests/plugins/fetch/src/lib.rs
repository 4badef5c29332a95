//! Test plugin: a collector that fetches `{"url": "..."}` through the `http` capability and
//! reports the status and body size; a refused or failed request fails the call with the
//! host's message.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples, http, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
}

struct Fetch {
    url: String,
}

impl Collector for Fetch {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        Ok(Fetch { url: config.url })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        let response = http::get_with_headers(&self.url, &[("accept", "text/plain")])
            .map_err(PluginError::Failed)?;
        out.sample("fetch_status_code", f64::from(response.status));
        out.sample("fetch_body_bytes", response.body.len() as f64);
        Ok(())
    }
}

telltale_sdk::export_collector!(Fetch);
