//! Test plugin: a collector whose `collect()` takes `{"ms": N}` milliseconds, spinning on
//! the host clock (`"mode": "spin"`, the default) or sleeping through WASI
//! (`"mode": "sleep"`). Under its deadline it succeeds; over it, it must be stopped.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples, now_ms, parse_config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    ms: u64,
    mode: Option<String>,
}

struct Slow {
    ms: u64,
    sleep: bool,
}

impl Collector for Slow {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        let sleep = match config.mode.as_deref() {
            None | Some("spin") => false,
            Some("sleep") => true,
            Some(other) => {
                return Err(PluginError::InvalidConfig(format!(
                    "mode: expected `spin` or `sleep`, got `{other}`"
                )));
            }
        };
        Ok(Slow {
            ms: config.ms,
            sleep,
        })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        let start = now_ms();
        if self.sleep {
            std::thread::sleep(std::time::Duration::from_millis(self.ms));
        } else {
            while now_ms() - start < self.ms as i64 {
                core::hint::spin_loop();
            }
        }
        out.sample("slow_elapsed_ms", (now_ms() - start) as f64);
        Ok(())
    }
}

telltale_sdk::export_collector!(Slow);
