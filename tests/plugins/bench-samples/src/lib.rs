//! Test plugin for the benchmarks (`engine/benches/plugin_overhead.rs`): a collector whose
//! `collect()` returns `samples` samples (config `{"samples": N}`, default 50), each with
//! two labels, written the way the SDK writes them: every name and label formatted into the
//! call's batch (the `series` label from an integer), one timestamp from the host per call.
//! The benchmark's native baseline builds the very same samples as `model::Sample`s, so
//! the difference is the cost of the plugin boundary.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples};

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

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        for i in 0..self.samples {
            out.sample("bench_value", i as f64)
                .label("kind", "bench")
                .label("series", i);
        }
        Ok(())
    }
}

telltale_sdk::export_collector!(BenchSamples);
