//! Native tests of the sample mapping over a recorded snapshot (an H100 running two
//! processes and an idle consumer GPU), and of the once-only "unavailable" report.

use telltale_sdk::bindings::telltale::plugin::gpu::{Device, GpuProcess, GpuSnapshot};

use super::*;

/// A recorded snapshot, as the host's mapping gives it (see
/// `engine/plugin-host/src/gpu.rs`, whose test maps the same NVML reading).
fn recorded() -> GpuSnapshot {
    GpuSnapshot {
        devices: vec![
            Device {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-8c4d3e9b-2a1f-4b6e-9c7d-0e5f1a2b3c4d".into(),
                utilization_gpu_percent: Some(97),
                utilization_memory_percent: Some(61),
                memory_used_bytes: Some(65_011_712_000),
                memory_total_bytes: Some(85_520_809_984),
                memory_free_bytes: Some(20_509_097_984),
                temperature_celsius: Some(71),
                power_draw_watts: Some(612.345),
                power_limit_watts: Some(700.0),
                fan_speed_percent: None,
                sm_clock_mhz: Some(1980),
                memory_clock_mhz: Some(2619),
                throttle_reasons: vec!["sw_power_cap".into(), "sw_thermal_slowdown".into()],
                ecc_errors_corrected: Some(3),
                ecc_errors_uncorrected: Some(0),
                processes: vec![
                    GpuProcess {
                        pid: 47_990,
                        used_memory_bytes: Some(23_622_320_128),
                    },
                    GpuProcess {
                        pid: 48_213,
                        used_memory_bytes: Some(40_802_189_312),
                    },
                    GpuProcess {
                        pid: 48_300,
                        used_memory_bytes: None,
                    },
                ],
            },
            Device {
                index: 1,
                name: "NVIDIA GeForce RTX 3060".into(),
                uuid: "GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into(),
                utilization_gpu_percent: Some(0),
                utilization_memory_percent: Some(0),
                memory_used_bytes: Some(262_144_000),
                memory_total_bytes: Some(12_884_901_888),
                memory_free_bytes: Some(12_622_757_888),
                temperature_celsius: Some(38),
                power_draw_watts: None,
                power_limit_watts: None,
                fan_speed_percent: Some(30),
                sm_clock_mhz: Some(210),
                memory_clock_mhz: Some(405),
                throttle_reasons: vec!["gpu_idle".into()],
                ecc_errors_corrected: None,
                ecc_errors_uncorrected: None,
                processes: Vec::new(),
            },
        ],
    }
}

/// The value of the one sample called `name` with the given extra labels on GPU `gpu`.
fn value(samples: &[Sample], name: &str, gpu: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| s.labels.iter().any(|l| l.name == "gpu" && l.value == gpu))
        .filter(|s| {
            extra
                .iter()
                .all(|(k, v)| s.labels.iter().any(|l| l.name == *k && l.value == *v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} on gpu {gpu} {extra:?} twice");
    found.first().map(|s| s.value)
}

#[test]
fn recorded_snapshot_gives_base_unit_samples() {
    let samples = samples_from(&recorded(), true);
    let h = |name: &str| value(&samples, name, "0", &[]);
    assert_eq!(h("gpu_utilization_percent"), Some(97.0));
    assert_eq!(h("gpu_memory_utilization_percent"), Some(61.0));
    assert_eq!(h("gpu_memory_used_bytes"), Some(65_011_712_000.0));
    assert_eq!(h("gpu_memory_total_bytes"), Some(85_520_809_984.0));
    assert_eq!(h("gpu_memory_free_bytes"), Some(20_509_097_984.0));
    assert_eq!(h("gpu_temperature_celsius"), Some(71.0));
    assert_eq!(h("gpu_power_draw_watts"), Some(612.345));
    assert_eq!(h("gpu_power_limit_watts"), Some(700.0));
    assert_eq!(h("gpu_fan_speed_percent"), None, "the H100 SXM has no fan");
    assert_eq!(h("gpu_sm_clock_hertz"), Some(1_980_000_000.0));
    assert_eq!(h("gpu_memory_clock_hertz"), Some(2_619_000_000.0));
    let reason = |r: &str| value(&samples, "gpu_throttle_reason", "0", &[("reason", r)]);
    assert_eq!(reason("sw_power_cap"), Some(1.0));
    assert_eq!(reason("sw_thermal_slowdown"), Some(1.0));
    assert_eq!(reason("gpu_idle"), None);
    let ecc = |t: &str| value(&samples, "gpu_ecc_errors_total", "0", &[("type", t)]);
    assert_eq!(ecc("corrected"), Some(3.0));
    assert_eq!(ecc("uncorrected"), Some(0.0));
    let proc = |pid: &str| {
        value(
            &samples,
            "gpu_process_memory_used_bytes",
            "0",
            &[("pid", pid)],
        )
    };
    assert_eq!(proc("47990"), Some(23_622_320_128.0));
    assert_eq!(proc("48213"), Some(40_802_189_312.0));
    assert_eq!(proc("48300"), None, "unknown memory is left out, not 0");

    // Every sample names its GPU three ways.
    for s in &samples {
        let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(&names[..3], ["gpu", "uuid", "name"], "{}", s.name);
    }
    let uuid = samples[0].labels[1].value.as_str();
    assert_eq!(uuid, "GPU-8c4d3e9b-2a1f-4b6e-9c7d-0e5f1a2b3c4d");

    // The consumer GPU: no power, no ECC, idle.
    let r = |name: &str| value(&samples, name, "1", &[]);
    assert_eq!(r("gpu_power_draw_watts"), None);
    assert_eq!(r("gpu_fan_speed_percent"), Some(30.0));
    assert_eq!(
        value(
            &samples,
            "gpu_throttle_reason",
            "1",
            &[("reason", "gpu_idle")]
        ),
        Some(1.0)
    );
    assert!(!samples.iter().any(|s| s.name == "gpu_ecc_errors_total"
        && s.labels.iter().any(|l| l.name == "gpu" && l.value == "1")));
    // H100: 10 gauges (no fan) + 2 reasons + 2 ECC + 2 processes; RTX: 9 gauges (no
    // power) + 1 reason.
    assert_eq!(samples.len(), 16 + 10);

    let without = samples_from(&recorded(), false);
    assert!(
        !without
            .iter()
            .any(|s| s.name == "gpu_process_memory_used_bytes")
    );
}

#[test]
fn unavailable_is_reported_once_and_is_not_an_error() {
    let mut c = GpuCollector::init("null").unwrap();
    let reason = "unavailable: NVML library not found (libnvidia-ml.so.1): cannot open";
    let first = c.handle(Err(reason.to_string())).unwrap();
    assert!(first.samples.is_empty());
    assert_eq!(first.log.as_deref(), Some(reason));
    for _ in 0..3 {
        let next = c.handle(Err(reason.to_string())).unwrap();
        assert!(next.samples.is_empty());
        assert_eq!(next.log, None);
    }
    // Another failure is a real error.
    let err = c.handle(Err("NVML cannot open GPU 1: GPU is lost".into()));
    assert!(matches!(err, Err(PluginError::Failed(m)) if m.contains("GPU is lost")));
    // And a working GPU gives samples.
    let ok = c.handle(Ok(recorded())).unwrap();
    assert_eq!(ok.samples.len(), 26);
}

#[test]
fn config_is_checked() {
    assert!(GpuCollector::init(r#"{"processes": false}"#).is_ok());
    assert!(matches!(
        GpuCollector::init(r#"{"procs": false}"#),
        Err(PluginError::InvalidConfig(_))
    ));
}
