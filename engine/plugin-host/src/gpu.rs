//! The `gpu` capability: NVIDIA GPUs read by the host through NVML (`nvml-wrapper`), shared
//! by every instance granted `gpu: true`.
//!
//! `nvml-wrapper` loads `libnvidia-ml.so.1` at run time, so the engine builds and runs on
//! machines without an NVIDIA driver. NVML is initialised once per host, on the first
//! snapshot: initialising is slow (it wakes the driver) and its outcome does not change
//! while the engine runs, so a failure is kept as the reason every later call answers with.
//!
//! Reading is split in two so the mapping can be tested without a GPU: [`read_devices`]
//! asks NVML for plain [`RawDevice`] figures (every query that a GPU may not support is an
//! `Option`), and the pure [`map_snapshot`] turns those into the WIT records (milliwatts to
//! watts, throttle bits to names, compute and graphics processes merged).

use std::sync::OnceLock;

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;

use super::bindings::gpu;
use super::instance::StoreState;

/// The host's NVML handle, created on first use.
#[derive(Default)]
pub(crate) struct GpuSampler {
    /// NVML, or why it cannot be used here.
    nvml: OnceLock<Result<Nvml, String>>,
}

impl std::fmt::Debug for GpuSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.nvml.get() {
            None => "not initialised",
            Some(Ok(_)) => "available",
            Some(Err(_)) => "unavailable",
        };
        f.debug_struct("GpuSampler").field("nvml", &state).finish()
    }
}

impl GpuSampler {
    /// A sampler that does not touch NVML until the first [`GpuSampler::snapshot`].
    pub(crate) fn new() -> GpuSampler {
        GpuSampler::default()
    }

    /// Reads every GPU, or says why NVML cannot be used. Blocking (NVML calls the driver,
    /// and the first call loads the library): run it on a blocking thread.
    pub(crate) fn snapshot(&self) -> Result<gpu::GpuSnapshot, String> {
        let nvml = self
            .nvml
            .get_or_init(|| Nvml::init().map_err(|e| init_failure(&e)))
            .as_ref()
            .map_err(Clone::clone)?;
        Ok(map_snapshot(read_devices(nvml)?))
    }
}

/// Why NVML could not be initialised, in words a user can act on, with the `unavailable: `
/// prefix the contract promises.
fn init_failure(err: &nvml_wrapper::error::NvmlError) -> String {
    use nvml_wrapper::error::NvmlError;
    match err {
        NvmlError::LibloadingError(e) => {
            format!("unavailable: NVML library not found (libnvidia-ml.so.1): {e}")
        }
        NvmlError::DriverNotLoaded => "unavailable: the NVIDIA driver is not loaded".to_string(),
        NvmlError::NoPermission => "unavailable: no permission to use NVML".to_string(),
        other => format!("unavailable: NVML failed to initialise: {other}"),
    }
}

/// What NVML says about one GPU, before mapping: NVML's own units (milliwatts, MHz, raw
/// throttle bits). `None` is a query the GPU or driver does not support.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RawDevice {
    pub(crate) index: u32,
    pub(crate) name: String,
    pub(crate) uuid: String,
    /// (GPU, memory controller) busy percent.
    pub(crate) utilization: Option<(u32, u32)>,
    /// (used, total, free) bytes.
    pub(crate) memory: Option<(u64, u64, u64)>,
    pub(crate) temperature_celsius: Option<u32>,
    pub(crate) power_usage_mw: Option<u32>,
    pub(crate) power_limit_mw: Option<u32>,
    pub(crate) fan_percent: Option<u32>,
    pub(crate) sm_clock_mhz: Option<u32>,
    pub(crate) memory_clock_mhz: Option<u32>,
    /// NVML's `nvmlClocksThrottleReason*` bits.
    pub(crate) throttle_bits: Option<u64>,
    /// (corrected, uncorrected) volatile ECC error counts.
    pub(crate) ecc: Option<(u64, u64)>,
    /// (pid, used bytes) of compute processes, then graphics processes; a process may be
    /// in both lists.
    pub(crate) processes: Vec<(u32, Option<u64>)>,
}

/// The throttle reasons NVML reports, by bit, with the names the WIT contract documents.
/// `USER_DEFINED_CLOCKS` is a deprecated alias of `APPLICATIONS_CLOCKS_SETTING` (same bit).
const THROTTLE_NAMES: &[(ThrottleReasons, &str)] = &[
    (ThrottleReasons::GPU_IDLE, "gpu_idle"),
    (
        ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
        "applications_clocks_setting",
    ),
    (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
    (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
    (ThrottleReasons::SYNC_BOOST, "sync_boost"),
    (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
    (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
    (
        ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN,
        "hw_power_brake_slowdown",
    ),
    (
        ThrottleReasons::DISPLAY_CLOCK_SETTING,
        "display_clock_setting",
    ),
];

/// Asks NVML about every GPU. Fails only when the GPUs cannot be counted or one cannot be
/// opened; a figure a GPU does not support is `None`.
fn read_devices(nvml: &Nvml) -> Result<Vec<RawDevice>, String> {
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML cannot count the GPUs: {e}"))?;
    let mut devices = Vec::with_capacity(count as usize);
    for index in 0..count {
        let d = nvml
            .device_by_index(index)
            .map_err(|e| format!("NVML cannot open GPU {index}: {e}"))?;
        let mut processes: Vec<(u32, Option<u64>)> = Vec::new();
        for list in [
            d.running_compute_processes(),
            d.running_graphics_processes(),
        ] {
            processes.extend(list.unwrap_or_default().into_iter().map(|p| {
                let used = match p.used_gpu_memory {
                    UsedGpuMemory::Used(bytes) => Some(bytes),
                    UsedGpuMemory::Unavailable => None,
                };
                (p.pid, used)
            }));
        }
        let corrected = d
            .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
            .ok();
        let uncorrected = d
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .ok();
        devices.push(RawDevice {
            index: d.index().unwrap_or(index),
            name: d.name().unwrap_or_default(),
            uuid: d.uuid().unwrap_or_default(),
            utilization: d.utilization_rates().ok().map(|u| (u.gpu, u.memory)),
            memory: d.memory_info().ok().map(|m| (m.used, m.total, m.free)),
            temperature_celsius: d.temperature(TemperatureSensor::Gpu).ok(),
            power_usage_mw: d.power_usage().ok(),
            power_limit_mw: d.enforced_power_limit().ok(),
            fan_percent: d.fan_speed(0).ok(),
            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
            memory_clock_mhz: d.clock_info(Clock::Memory).ok(),
            throttle_bits: d.current_throttle_reasons().ok().map(|r| r.bits()),
            ecc: corrected.zip(uncorrected),
            processes,
        });
    }
    Ok(devices)
}

/// Turns NVML's figures into the WIT snapshot: devices sorted by index, watts from
/// milliwatts, throttle bits as names (in [`THROTTLE_NAMES`] order), processes merged by
/// pid (a process in both NVML lists appears once, with the larger known memory figure).
pub(crate) fn map_snapshot(mut raw: Vec<RawDevice>) -> gpu::GpuSnapshot {
    raw.sort_by_key(|d| d.index);
    let devices = raw
        .into_iter()
        .map(|d| {
            let mut processes: Vec<gpu::GpuProcess> = Vec::with_capacity(d.processes.len());
            let mut by_pid = d.processes;
            by_pid.sort_by_key(|(pid, _)| *pid);
            for (pid, used) in by_pid {
                match processes.last_mut() {
                    Some(last) if last.pid == pid => {
                        last.used_memory_bytes = last.used_memory_bytes.max(used);
                    }
                    _ => processes.push(gpu::GpuProcess {
                        pid,
                        used_memory_bytes: used,
                    }),
                }
            }
            let throttle_reasons = d
                .throttle_bits
                .map(|bits| {
                    THROTTLE_NAMES
                        .iter()
                        .filter(|(flag, _)| bits & flag.bits() != 0)
                        .map(|(_, name)| (*name).to_string())
                        .collect()
                })
                .unwrap_or_default();
            gpu::Device {
                index: d.index,
                name: d.name,
                uuid: d.uuid,
                utilization_gpu_percent: d.utilization.map(|u| u.0),
                utilization_memory_percent: d.utilization.map(|u| u.1),
                memory_used_bytes: d.memory.map(|m| m.0),
                memory_total_bytes: d.memory.map(|m| m.1),
                memory_free_bytes: d.memory.map(|m| m.2),
                temperature_celsius: d.temperature_celsius,
                power_draw_watts: d.power_usage_mw.map(|mw| f64::from(mw) / 1000.0),
                power_limit_watts: d.power_limit_mw.map(|mw| f64::from(mw) / 1000.0),
                fan_speed_percent: d.fan_percent,
                sm_clock_mhz: d.sm_clock_mhz,
                memory_clock_mhz: d.memory_clock_mhz,
                throttle_reasons,
                ecc_errors_corrected: d.ecc.map(|e| e.0),
                ecc_errors_uncorrected: d.ecc.map(|e| e.1),
                processes,
            }
        })
        .collect();
    gpu::GpuSnapshot { devices }
}

impl gpu::Host for StoreState {
    async fn snapshot(&mut self) -> Result<gpu::GpuSnapshot, String> {
        // Components without the grant are refused at load time (`check_imports`), so a
        // missing sampler here means an engine bug; answer with an error, not a crash.
        let Some(sampler) = self.caps.gpu.clone() else {
            tracing::error!(plugin = %self.caps.instance, "gpu.snapshot called without the grant");
            return Err("the `gpu` capability is not granted".to_string());
        };
        tokio::task::spawn_blocking(move || sampler.snapshot())
            .await
            .unwrap_or_else(|e| Err(format!("reading the GPUs failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded reading of an H100 SXM running two training processes (one of which NVML
    /// lists as both a compute and a graphics process), plus an idle consumer GPU without
    /// ECC or power readings, given out of index order.
    pub(crate) fn recorded() -> Vec<RawDevice> {
        vec![
            RawDevice {
                index: 1,
                name: "NVIDIA GeForce RTX 3060".into(),
                uuid: "GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into(),
                utilization: Some((0, 0)),
                memory: Some((262_144_000, 12_884_901_888, 12_622_757_888)),
                temperature_celsius: Some(38),
                power_usage_mw: None,
                power_limit_mw: None,
                fan_percent: Some(30),
                sm_clock_mhz: Some(210),
                memory_clock_mhz: Some(405),
                throttle_bits: Some(ThrottleReasons::GPU_IDLE.bits()),
                ecc: None,
                processes: Vec::new(),
            },
            RawDevice {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-8c4d3e9b-2a1f-4b6e-9c7d-0e5f1a2b3c4d".into(),
                utilization: Some((97, 61)),
                memory: Some((65_011_712_000, 85_520_809_984, 20_509_097_984)),
                temperature_celsius: Some(71),
                power_usage_mw: Some(612_345),
                power_limit_mw: Some(700_000),
                fan_percent: None,
                sm_clock_mhz: Some(1980),
                memory_clock_mhz: Some(2619),
                throttle_bits: Some(
                    (ThrottleReasons::SW_POWER_CAP | ThrottleReasons::SW_THERMAL_SLOWDOWN).bits(),
                ),
                ecc: Some((3, 0)),
                processes: vec![
                    (48_213, Some(40_802_189_312)),
                    (47_990, Some(23_622_320_128)),
                    (48_213, None),
                ],
            },
        ]
    }

    #[test]
    fn recorded_snapshot_maps_to_the_contract() {
        let snap = map_snapshot(recorded());
        assert_eq!(snap.devices.len(), 2);
        let h100 = &snap.devices[0];
        assert_eq!(h100.index, 0);
        assert_eq!(h100.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(h100.uuid, "GPU-8c4d3e9b-2a1f-4b6e-9c7d-0e5f1a2b3c4d");
        assert_eq!(h100.utilization_gpu_percent, Some(97));
        assert_eq!(h100.utilization_memory_percent, Some(61));
        assert_eq!(h100.memory_used_bytes, Some(65_011_712_000));
        assert_eq!(h100.memory_total_bytes, Some(85_520_809_984));
        assert_eq!(h100.memory_free_bytes, Some(20_509_097_984));
        assert_eq!(h100.temperature_celsius, Some(71));
        assert_eq!(h100.power_draw_watts, Some(612.345));
        assert_eq!(h100.power_limit_watts, Some(700.0));
        assert_eq!(h100.fan_speed_percent, None);
        assert_eq!(h100.sm_clock_mhz, Some(1980));
        assert_eq!(h100.memory_clock_mhz, Some(2619));
        assert_eq!(
            h100.throttle_reasons,
            vec![
                "sw_power_cap".to_string(),
                "sw_thermal_slowdown".to_string()
            ]
        );
        assert_eq!(h100.ecc_errors_corrected, Some(3));
        assert_eq!(h100.ecc_errors_uncorrected, Some(0));
        let procs: Vec<(u32, Option<u64>)> = h100
            .processes
            .iter()
            .map(|p| (p.pid, p.used_memory_bytes))
            .collect();
        assert_eq!(
            procs,
            vec![
                (47_990, Some(23_622_320_128)),
                (48_213, Some(40_802_189_312))
            ]
        );

        let rtx = &snap.devices[1];
        assert_eq!(rtx.index, 1);
        assert_eq!(rtx.power_draw_watts, None);
        assert_eq!(rtx.power_limit_watts, None);
        assert_eq!(rtx.fan_speed_percent, Some(30));
        assert_eq!(rtx.throttle_reasons, vec!["gpu_idle".to_string()]);
        assert_eq!(rtx.ecc_errors_corrected, None);
        assert!(rtx.processes.is_empty());
    }

    #[test]
    fn every_throttle_bit_has_one_distinct_name() {
        let all = THROTTLE_NAMES
            .iter()
            .fold(0u64, |acc, (flag, _)| acc | flag.bits());
        let raw = RawDevice {
            throttle_bits: Some(all),
            ..RawDevice::default()
        };
        let names = &map_snapshot(vec![raw]).devices[0].throttle_reasons;
        assert_eq!(names.len(), THROTTLE_NAMES.len());
        let unknown_only = RawDevice {
            throttle_bits: Some(1 << 40),
            ..RawDevice::default()
        };
        assert!(
            map_snapshot(vec![unknown_only]).devices[0]
                .throttle_reasons
                .is_empty()
        );
    }

    /// This machine has no NVIDIA driver: NVML fails to load, and the sampler says why on
    /// every call without retrying the load.
    #[test]
    fn without_nvml_the_sampler_reports_why_every_time() {
        if std::path::Path::new("/proc/driver/nvidia").exists() {
            eprintln!("skipped: this machine has an NVIDIA driver");
            return;
        }
        let sampler = GpuSampler::new();
        let first = sampler.snapshot().unwrap_err();
        assert!(
            first.starts_with("unavailable: NVML library not found (libnvidia-ml.so.1)")
                || first.starts_with("unavailable: "),
            "{first}"
        );
        assert_eq!(sampler.snapshot().unwrap_err(), first);
        assert!(format!("{sampler:?}").contains("unavailable"));
    }

    /// The real unavailable path through the plugin host and the embedded standard plugin:
    /// refused without the grant; with it, every call succeeds with no samples.
    #[tokio::test]
    async fn the_gpu_plugin_collects_nothing_successfully_without_nvml() {
        use crate::{Collector, PluginHost, PluginSource, PluginSpec};
        use telltale_config::{Grants, PluginLimits};

        if std::path::Path::new("/proc/driver/nvidia").exists() {
            eprintln!("skipped: this machine has an NVIDIA driver");
            return;
        }
        let spec = |grants: Grants| PluginSpec {
            instance: "gpu".to_string(),
            source: PluginSource::Standard("gpu".into()),
            config_json: "null".to_string(),
            grants,
            limits: PluginLimits::default(),
        };
        let host = PluginHost::new(None).unwrap();
        let err = host
            .load::<Collector>(spec(Grants::default()))
            .await
            .err()
            .expect("refused without the grant");
        assert!(
            err.to_string()
                .ends_with("add `grants: { gpu: true }` to its entry"),
            "{err}"
        );
        let grants = Grants {
            gpu: true,
            ..Grants::default()
        };
        let mut gpu = host.load::<Collector>(spec(grants)).await.unwrap();
        for _ in 0..3 {
            let samples = gpu.call(()).await.unwrap();
            assert!(samples.is_empty(), "{samples:?}");
        }
    }
}
