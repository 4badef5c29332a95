//! The standard `gpu` collector: NVIDIA GPUs read by the host through NVML (grant
//! `gpu: true`): utilisation, memory, temperature, power draw and limit, fan, SM and memory
//! clocks, throttle reasons, ECC errors and GPU memory per process.
//!
//! Every metric, with its type, unit, labels and meaning, is listed in
//! `plugins/gpu/metrics.yaml` (rendered in `docs/metrics.md`). Each sample carries the
//! labels `gpu` (NVML index), `uuid` and `name`; units are base units (hertz, bytes,
//! watts), converted from NVML's MHz here and from milliwatts by the host.
//!
//! On a machine without an NVIDIA driver or library the host answers
//! `unavailable: <reason>`. The plugin then logs that line once and returns no samples on
//! every call, successfully: an absent GPU is not a fault, so the supervisor must not back
//! the plugin off or quarantine it, and nothing else is disturbed.
//!
//! Config (JSON, every key optional): `{"processes": true}`: emit
//! `gpu_process_memory_used_bytes` per process (default `true`).

use serde::Deserialize;
use telltale_sdk::bindings::telltale::plugin::gpu::{Device, GpuSnapshot};
use telltale_sdk::{Collector, Level, PluginError, Sample, Samples, log, parse_config, sample};

/// The prefix the host puts on the reason when NVML cannot be used at all.
const UNAVAILABLE: &str = "unavailable: ";

/// The plugin's configuration (see the crate docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Emit GPU memory per process.
    #[serde(default = "default_true")]
    pub processes: bool,
}

fn default_true() -> bool {
    true
}

/// The collector's state between calls.
pub struct GpuCollector {
    config: Config,
    /// Whether the "unavailable" line has been logged already.
    reported_unavailable: bool,
}

/// What to do with the host's answer: the samples to return, and a line to log first.
#[derive(Debug)]
pub struct Outcome {
    /// The samples of this call.
    pub samples: Vec<Sample>,
    /// A line to log at warn level, if any.
    pub log: Option<String>,
}

impl GpuCollector {
    /// Turns the host's answer into this call's outcome (pure: the host call and the log
    /// happen in [`Collector::collect`]). An `unavailable: ` answer is logged on its first
    /// occurrence only and gives no samples; any other error fails the call.
    pub fn handle(&mut self, answer: Result<GpuSnapshot, String>) -> Result<Outcome, PluginError> {
        match answer {
            Ok(snapshot) => Ok(Outcome {
                samples: samples_from(&snapshot, self.config.processes),
                log: None,
            }),
            Err(reason) if reason.starts_with(UNAVAILABLE) => {
                let log = (!self.reported_unavailable).then_some(reason);
                self.reported_unavailable = true;
                Ok(Outcome {
                    samples: Vec::new(),
                    log,
                })
            }
            Err(reason) => Err(PluginError::Failed(reason)),
        }
    }
}

/// The labels that identify a GPU on every sample.
fn gpu_sample(name: &str, value: f64, d: &Device) -> Sample {
    sample(name, value)
        .label("gpu", d.index.to_string())
        .label("uuid", d.uuid.clone())
        .label("name", d.name.clone())
}

/// The samples of one snapshot. A figure the GPU does not support is left out.
pub fn samples_from(snapshot: &GpuSnapshot, per_process: bool) -> Vec<Sample> {
    const MHZ: f64 = 1_000_000.0;
    let mut out = Vec::new();
    for d in &snapshot.devices {
        let gauges: [(&str, Option<f64>); 11] = [
            (
                "gpu_utilization_percent",
                d.utilization_gpu_percent.map(f64::from),
            ),
            (
                "gpu_memory_utilization_percent",
                d.utilization_memory_percent.map(f64::from),
            ),
            (
                "gpu_memory_used_bytes",
                d.memory_used_bytes.map(|b| b as f64),
            ),
            (
                "gpu_memory_total_bytes",
                d.memory_total_bytes.map(|b| b as f64),
            ),
            (
                "gpu_memory_free_bytes",
                d.memory_free_bytes.map(|b| b as f64),
            ),
            (
                "gpu_temperature_celsius",
                d.temperature_celsius.map(f64::from),
            ),
            ("gpu_power_draw_watts", d.power_draw_watts),
            ("gpu_power_limit_watts", d.power_limit_watts),
            ("gpu_fan_speed_percent", d.fan_speed_percent.map(f64::from)),
            (
                "gpu_sm_clock_hertz",
                d.sm_clock_mhz.map(|m| f64::from(m) * MHZ),
            ),
            (
                "gpu_memory_clock_hertz",
                d.memory_clock_mhz.map(|m| f64::from(m) * MHZ),
            ),
        ];
        for (name, value) in gauges {
            if let Some(v) = value {
                out.push(gpu_sample(name, v, d));
            }
        }
        for reason in &d.throttle_reasons {
            out.push(gpu_sample("gpu_throttle_reason", 1.0, d).label("reason", reason.clone()));
        }
        for (kind, count) in [
            ("corrected", d.ecc_errors_corrected),
            ("uncorrected", d.ecc_errors_uncorrected),
        ] {
            if let Some(n) = count {
                out.push(gpu_sample("gpu_ecc_errors_total", n as f64, d).label("type", kind));
            }
        }
        if per_process {
            for p in &d.processes {
                if let Some(bytes) = p.used_memory_bytes {
                    out.push(
                        gpu_sample("gpu_process_memory_used_bytes", bytes as f64, d)
                            .label("pid", p.pid.to_string()),
                    );
                }
            }
        }
    }
    out
}

impl Collector for GpuCollector {
    fn init(config: &str) -> Result<Self, PluginError> {
        Ok(GpuCollector {
            config: parse_config(config)?,
            reported_unavailable: false,
        })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        let outcome = self.handle(telltale_sdk::bindings::telltale::plugin::gpu::snapshot())?;
        if let Some(line) = outcome.log {
            log(Level::Warn, &line);
        }
        out.extend(&outcome.samples);
        Ok(())
    }
}

telltale_sdk::export_collector!(GpuCollector);

#[cfg(test)]
mod tests;
