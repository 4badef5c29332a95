//! Test plugin: a collector that returns a huge output. The config chooses how:
//!
//! * `{"samples": N}`: N samples (default 1,000,000) named `flood_value`;
//! * `{"samples": 1, "name_bytes": N}`: a metric name N bytes long;
//! * `{"samples": 1, "label_value_bytes": N}`: a label value N bytes long;
//! * `{"output_bytes": N}`: N bytes written to stderr before returning;
//! * `{"log_bytes": N}`: N bytes of `host.log` messages (100 bytes each) before returning;
//! * `{"churn": {"samples": S, "labels": L, "value_bytes": B}}`: S samples of new series
//!   every call (`flood_churn`, L labels of B bytes each, unique per call), all within the
//!   per-call limits, to grow the store by label bytes.
//!
//! The engine must refuse the output with a message naming the plugin, the limit and its
//! value, and keep running.

use serde::Deserialize;
use telltale_sdk::{Collector, Level, PluginError, Samples, log, parse_config};

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    samples: Option<usize>,
    name_bytes: Option<usize>,
    label_value_bytes: Option<usize>,
    output_bytes: Option<usize>,
    log_bytes: Option<usize>,
    churn: Option<Churn>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Churn {
    samples: usize,
    labels: usize,
    value_bytes: usize,
}

struct Flood {
    config: Config,
    calls: u64,
}

impl Collector for Flood {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Option<Config> = parse_config(config)?;
        Ok(Flood {
            config: config.unwrap_or_default(),
            calls: 0,
        })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        self.calls += 1;
        let c = &self.config;
        if let Some(churn) = c.churn {
            let names: Vec<String> = (0..churn.labels).map(|l| format!("l{l:02}")).collect();
            for i in 0..churn.samples {
                let id = format!("{}-{i}-", self.calls);
                let value = format!("{id:x<width$}", width = churn.value_bytes.max(id.len()));
                let mut s = out.sample("flood_churn", 1.0);
                for name in &names {
                    s = s.label(name.as_str(), value.as_str());
                }
            }
            return Ok(());
        }
        if let Some(n) = c.output_bytes {
            let line = "x".repeat(99);
            for _ in 0..n / 100 {
                eprintln!("{line}");
            }
        }
        if let Some(n) = c.log_bytes {
            let line = "y".repeat(100);
            for _ in 0..n / 100 {
                log(Level::Warn, &line);
            }
        }
        let name = match c.name_bytes {
            Some(n) => "f".repeat(n),
            None => "flood_value".to_string(),
        };
        let blob = c.label_value_bytes.map(|n| "v".repeat(n));
        let count = c.samples.unwrap_or(1_000_000);
        for i in 0..count {
            let s = out.sample(&name, i as f64);
            if let Some(blob) = &blob {
                s.label("blob", blob);
            }
        }
        Ok(())
    }
}

telltale_sdk::export_collector!(Flood);
