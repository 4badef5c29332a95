//! Test plugin for the benchmarks (`engine/benches/plugin_overhead.rs`): a collector whose
//! `collect()` returns `samples` samples (config `{"samples": N}`, default 50), each with
//! two labels, built the way a real collector builds them: fresh strings every call, one
//! timestamp from the host per call. The benchmark's native baseline builds the very same
//! samples, so the difference is the cost of the plugin boundary.

use serde::Deserialize;
use telltale_sdk::{Collector, Label, PluginError, Sample};

/// The most samples one call may be asked for; more is a config mistake, not a benchmark.
const MAX_SAMPLES: usize = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_samples")]
    samples: usize,
}

fn default_samples() -> usize {
    50
}

struct BenchSamples {
    samples: usize,
}

impl Collector for BenchSamples {
    fn init(config: &str) -> Result<Self, PluginError> {
        let cfg: Config = telltale_sdk::parse_config(config)?;
        if cfg.samples > MAX_SAMPLES {
            return Err(PluginError::InvalidConfig(format!(
                "`samples` is {}, at most {MAX_SAMPLES}",
                cfg.samples
            )));
        }
        Ok(BenchSamples {
            samples: cfg.samples,
        })
    }

    fn collect(&mut self) -> Result<Vec<Sample>, PluginError> {
        let now = telltale_sdk::now_ms();
        Ok((0..self.samples)
            .map(|i| Sample {
                name: "bench_value".to_string(),
                labels: vec![
                    Label {
                        name: "kind".to_string(),
                        value: "bench".to_string(),
                    },
                    Label {
                        name: "series".to_string(),
                        value: i.to_string(),
                    },
                ],
                value: i as f64,
                timestamp_ms: now,
            })
            .collect())
    }
}

telltale_sdk::export_collector!(BenchSamples);
