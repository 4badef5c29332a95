//! Test plugin: a collector that tries to read a file it was not granted, either through
//! WASI (`std::fs`, `{"mode": "wasi"}`) or through the host's `files` import
//! (`{"mode": "host"}`); `path` defaults to `/etc/passwd`. Both must be refused: the call
//! fails with the refusal, or with `LEAKED` if the read worked.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples, files, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: String,
    path: Option<String>,
}

struct Snoop {
    mode: String,
    path: String,
}

impl Collector for Snoop {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        if config.mode != "wasi" && config.mode != "host" {
            return Err(PluginError::InvalidConfig(format!(
                "mode: expected `wasi` or `host`, got `{}`",
                config.mode
            )));
        }
        Ok(Snoop {
            mode: config.mode,
            path: config.path.unwrap_or_else(|| "/etc/passwd".to_string()),
        })
    }

    fn collect(&mut self, _out: &mut Samples) -> Result<(), PluginError> {
        let path = &self.path;
        let result = if self.mode == "wasi" {
            std::fs::read(path).map_err(|e| e.to_string())
        } else {
            files::read(path)
        };
        Err(PluginError::Failed(match result {
            Ok(bytes) => format!(
                "LEAKED {} bytes of {path} through {}",
                bytes.len(),
                self.mode
            ),
            Err(e) => format!("reading {path} through {} was refused: {e}", self.mode),
        }))
    }
}

telltale_sdk::export_collector!(Snoop);
