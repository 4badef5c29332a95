//! The standard `window-stats` analyzer: for every input window it emits the window's mean,
//! minimum, maximum, median and 95th percentile as new samples.
//!
//! For an input series `NAME{labels}` it emits `NAME_window_mean`, `NAME_window_min`,
//! `NAME_window_max`, `NAME_window_p50` and `NAME_window_p95`, each with the series' labels
//! plus `window="<config window>"`, timestamped with the window's newest point. Empty windows
//! (or windows with no finite value) emit nothing. Percentiles interpolate linearly between
//! the closest ranks (NumPy's default, see [`stats::percentile_sorted`]).
//!
//! Config (JSON): `{"window": "5m", "stats": ["mean", "p95"]}`. `window` is only echoed into
//! the `window` label (the engine decides the window's length; leave it out to add no
//! label); `stats` (default: all five) picks a subset of `mean`, `min`, `max`, `p50`, `p95`.

pub mod stats;

use serde::Deserialize;
use telltale_sdk::{Analysis, Analyzer, PluginError, SeriesWindow, parse_config, sample};

use crate::stats::{Stat, summarize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    stats: Option<Vec<String>>,
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq)]
struct Config {
    window: Option<String>,
    stats: Vec<Stat>,
}

impl Config {
    fn parse(json: &str) -> Result<Config, PluginError> {
        let raw: RawConfig = parse_config(json)?;
        let stats = match raw.stats {
            None => Stat::ALL.to_vec(),
            Some(names) if names.is_empty() => {
                return Err(PluginError::InvalidConfig(
                    "`stats` is empty: list at least one of mean, min, max, p50, p95".into(),
                ));
            }
            Some(names) => {
                let mut stats = Vec::with_capacity(names.len());
                for name in &names {
                    let stat = Stat::parse(name).ok_or_else(|| {
                        PluginError::InvalidConfig(format!(
                            "unknown statistic `{name}` in `stats`: use mean, min, max, p50 or p95"
                        ))
                    })?;
                    if !stats.contains(&stat) {
                        stats.push(stat);
                    }
                }
                stats
            }
        };
        Ok(Config {
            window: raw.window,
            stats,
        })
    }
}

struct WindowStats {
    config: Config,
}

impl Analyzer for WindowStats {
    fn init(config: &str) -> Result<Self, PluginError> {
        Ok(WindowStats {
            config: Config::parse(config)?,
        })
    }

    fn analyze(&mut self, windows: Vec<SeriesWindow>) -> Result<Analysis, PluginError> {
        Ok(Analysis {
            samples: analyze(&self.config, &windows),
            events: Vec::new(),
        })
    }
}

telltale_sdk::export_analyzer!(WindowStats);

fn analyze(config: &Config, windows: &[SeriesWindow]) -> Vec<telltale_sdk::Sample> {
    let mut out = Vec::with_capacity(windows.len() * config.stats.len());
    for w in windows {
        let Some(newest) = w.points.iter().map(|p| p.timestamp_ms).max() else {
            continue;
        };
        let Some(summary) = summarize(w.points.iter().map(|p| p.value)) else {
            continue;
        };
        for &stat in &config.stats {
            let mut s = sample(
                format!("{}_window_{}", w.name, stat.name()),
                summary.get(stat),
            )
            .at(newest);
            s.labels = w
                .labels
                .iter()
                .filter(|l| config.window.is_none() || l.name != "window")
                .cloned()
                .collect();
            if let Some(window) = &config.window {
                s = s.label("window", window.as_str());
            }
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use telltale_sdk::{Label, Point};

    fn window(name: &str, values: &[f64]) -> SeriesWindow {
        SeriesWindow {
            name: name.into(),
            labels: vec![Label {
                name: "cpu".into(),
                value: "total".into(),
            }],
            points: values
                .iter()
                .enumerate()
                .map(|(i, &value)| Point {
                    timestamp_ms: 1000 * i as i64,
                    value,
                })
                .collect(),
        }
    }

    #[test]
    fn emits_each_stat_with_labels_and_newest_timestamp() {
        let cfg = Config::parse(r#"{"window": "5m"}"#).unwrap();
        let out = analyze(
            &cfg,
            &[window("cpu", &[1.0, 2.0, 3.0]), window("empty", &[])],
        );
        assert_eq!(out.len(), 5);
        let names: Vec<_> = out.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cpu_window_mean",
                "cpu_window_min",
                "cpu_window_max",
                "cpu_window_p50",
                "cpu_window_p95"
            ]
        );
        assert!(out.iter().all(|s| s.timestamp_ms == 2000));
        assert_eq!(out[0].value, 2.0);
        assert_eq!(out[0].labels.len(), 2);
        assert_eq!(out[0].labels[1].name, "window");
        assert_eq!(out[0].labels[1].value, "5m");
    }

    #[test]
    fn stats_subset_and_errors() {
        let cfg = Config::parse(r#"{"stats": ["p95", "mean", "p95"]}"#).unwrap();
        assert_eq!(cfg.stats, vec![Stat::P95, Stat::Mean]);
        assert_eq!(Config::parse("null").unwrap().stats.len(), 5);
        for bad in [
            r#"{"stats": ["p99"]}"#,
            r#"{"stats": []}"#,
            r#"{"windw": "5m"}"#,
        ] {
            assert!(
                matches!(Config::parse(bad), Err(PluginError::InvalidConfig(_))),
                "{bad}"
            );
        }
    }
}
