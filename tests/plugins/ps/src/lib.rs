//! Test plugin: a collector that reads the process table through the `processes` capability
//! and reports how many processes there are and, for `{"pid": N}`, that process's figures.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples, parse_config, processes};

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

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        let list = processes::list();
        out.sample("ps_processes", list.len() as f64);
        if let Some(pid) = self.pid {
            let p = list
                .iter()
                .find(|p| p.pid == pid)
                .ok_or_else(|| PluginError::Failed(format!("no process {pid}")))?;
            let exe = p.exe.as_deref().unwrap_or_default();
            for (name, value) in [
                ("ps_rss_bytes", p.rss_bytes as f64),
                ("ps_virtual_bytes", p.virtual_bytes as f64),
                ("ps_cpu_time_ms", p.cpu_time_ms as f64),
                ("ps_cmd_args", p.cmd.len() as f64),
                ("ps_threads", p.threads.map_or(-1.0, f64::from)),
                ("ps_open_fds", p.open_fds.map_or(-1.0, f64::from)),
                ("ps_start_time_seconds", p.start_time_seconds as f64),
                ("ps_parent_pid", p.parent_pid.map_or(-1.0, f64::from)),
            ] {
                out.sample(name, value)
                    .label("name", &p.name)
                    .label("exe", exe);
            }
        }
        Ok(())
    }
}

telltale_sdk::export_collector!(Ps);
