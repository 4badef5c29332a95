//! Test plugin for the benchmarks (`engine/plugin-host/benches/plugin_overhead.rs`): a collector whose
//! `collect()` returns `samples` samples (config `{"samples": N}`, default 50), each with
//! two labels, written the way the SDK writes them: every name and label formatted into the
//! call's batch (the `series` label from an integer), one timestamp from the host per call.
//! The benchmark's native baseline builds the very same samples as `model::Sample`s, so
//! the difference is the cost of the plugin boundary.
//!
//! With `{"discard": true}` it builds the same batch and drops it, returning none: the
//! benchmark subtracts that from a full call to tell the guest's own work from the
//! boundary (lowering, lifting, checks, conversion).
//!
//! With `{"rotate": true}` each call starts one sample further along (the same series in
//! another order), so no batch equals the previous one and the host resolves every sample
//! through its series cache instead of taking the previous call's series whole.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples};

/// The most samples one call may be asked for; more is a config mistake, not a benchmark.
const MAX_SAMPLES: usize = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_samples")]
    samples: usize,
    #[serde(default)]
    discard: bool,
    #[serde(default)]
    rotate: bool,
}

fn default_samples() -> usize {
    50
}

struct BenchSamples {
    samples: usize,
    discard: bool,
    rotate: bool,
    calls: usize,
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
            discard: cfg.discard,
            rotate: cfg.rotate,
            calls: 0,
        })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        let first = if self.rotate {
            self.calls % self.samples.max(1)
        } else {
            0
        };
        self.calls = self.calls.wrapping_add(1);
        if self.discard {
            let mut scratch = Samples::with_timestamp(out.timestamp_ms());
            write(&mut scratch, self.samples, first);
            core::hint::black_box(&scratch);
        } else {
            write(out, self.samples, first);
        }
        Ok(())
    }
}

/// Writes series `first, first + 1, …, n - 1, 0, …, first - 1`.
fn write(out: &mut Samples, n: usize, first: usize) {
    for i in (first..n).chain(0..first) {
        out.sample("bench_value", i as f64)
            .label("kind", "bench")
            .label("series", i);
    }
}

telltale_sdk::export_collector!(BenchSamples);
