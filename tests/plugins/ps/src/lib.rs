//! Test plugin: a collector that reads the process table through the `processes` capability
//! and reports how many processes there are and, for `{"pid": N}`, that process's figures.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Sample, parse_config, processes, sample};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    pid: Option<u32>,
}

struct Ps {
    pid: Option<u32>,
}

impl Collector for Ps {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Option<Config> = parse_config(config)?;
        Ok(Ps {
            pid: config.unwrap_or_default().pid,
        })
    }

    fn collect(&mut self) -> Result<Vec<Sample>, PluginError> {
        let list = processes::list();
        let mut out = vec![sample("ps_processes", list.len() as f64)];
        if let Some(pid) = self.pid {
            let p = list
                .iter()
                .find(|p| p.pid == pid)
                .ok_or_else(|| PluginError::Failed(format!("no process {pid}")))?;
            let with = |name: &str, value: f64| {
                sample(name, value)
                    .label("name", p.name.clone())
                    .label("exe", p.exe.clone().unwrap_or_default())
            };
            out.extend([
                with("ps_rss_bytes", p.rss_bytes as f64),
                with("ps_virtual_bytes", p.virtual_bytes as f64),
                with("ps_cpu_time_ms", p.cpu_time_ms as f64),
                with("ps_cmd_args", p.cmd.len() as f64),
                with("ps_threads", p.threads.map_or(-1.0, f64::from)),
                with("ps_open_fds", p.open_fds.map_or(-1.0, f64::from)),
                with("ps_start_time_seconds", p.start_time_seconds as f64),
                with("ps_parent_pid", p.parent_pid.map_or(-1.0, f64::from)),
            ]);
        }
        Ok(out)
    }
}

telltale_sdk::export_collector!(Ps);
