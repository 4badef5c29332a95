//! Test plugin: an analyzer that reports a `level_shift` event when the mean of an input's
//! newest points moves away from the mean of the points before them. The engine's tests
//! use it to prove that analyzer events reach the store and rules (`events()` in a rule,
//! an alert at a webhook).
//!
//! For each input window of at least `recent + 1` points: `before` is the mean of all but
//! the newest `recent` points, `after` the mean of those. When they differ by more than
//! `threshold`, one event is reported, unless the last one reported for that series was
//! already at this level (within `threshold`): a shift is reported once, however many calls
//! still see it in their window. The event carries the series' labels plus
//! `metric="<series name>"`, severity `warning`, the message `NAME moved from BEFORE to
//! AFTER`, and the time of the first of the newest points (when the shift showed).
//!
//! Config (JSON): `{"threshold": 1.0, "recent": 3}` (these are the defaults).

use std::collections::HashMap;

use serde::Deserialize;
use telltale_sdk::{
    Analysis, Analyzer, Event, PluginError, SeriesWindow, Severity, event, parse_config,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_threshold")]
    threshold: f64,
    #[serde(default = "default_recent")]
    recent: usize,
}

fn default_threshold() -> f64 {
    1.0
}

fn default_recent() -> usize {
    3
}

struct LevelShift {
    config: Config,
    /// Per series (name and labels), the level the last event reported.
    reported: HashMap<String, f64>,
}

impl Analyzer for LevelShift {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        // Written so that a NaN threshold is refused too.
        if config.recent == 0 || config.threshold.is_nan() || config.threshold < 0.0 {
            return Err(PluginError::InvalidConfig(
                "`recent` must be at least 1 and `threshold` a number >= 0".into(),
            ));
        }
        Ok(LevelShift {
            config,
            reported: HashMap::new(),
        })
    }

    fn analyze(&mut self, windows: Vec<SeriesWindow>) -> Result<Analysis, PluginError> {
        Ok(Analysis {
            samples: Vec::new(),
            events: windows.iter().filter_map(|w| self.shift(w)).collect(),
        })
    }
}

impl LevelShift {
    /// The event for `w`, if its level shifted since it was last reported.
    fn shift(&mut self, w: &SeriesWindow) -> Option<Event> {
        let recent = self.config.recent;
        if w.points.len() <= recent {
            return None;
        }
        let (older, newer) = w.points.split_at(w.points.len() - recent);
        let mean =
            |p: &[telltale_sdk::Point]| p.iter().map(|p| p.value).sum::<f64>() / p.len() as f64;
        let (before, after) = (mean(older), mean(newer));
        let threshold = self.config.threshold;
        let key = format!("{}{:?}", w.name, w.labels);
        let seen = self
            .reported
            .get(&key)
            .is_some_and(|level| (after - level).abs() <= threshold);
        if (after - before).abs() <= threshold || seen {
            return None;
        }
        self.reported.insert(key, after);
        Some(
            event(
                "level_shift",
                Severity::Warning,
                format!("{} moved from {before} to {after}", w.name),
            )
            .labels(&w.labels)
            .label("metric", w.name.as_str())
            .at(newer[0].timestamp_ms),
        )
    }
}

telltale_sdk::export_analyzer!(LevelShift);

#[cfg(test)]
mod tests {
    use super::*;
    use telltale_sdk::{Label, Point};

    fn window(values: &[f64]) -> SeriesWindow {
        SeriesWindow {
            name: "queue_depth".into(),
            labels: vec![Label {
                name: "queue".into(),
                value: "jobs".into(),
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
    fn a_shift_is_reported_once_with_the_series_labels() {
        let mut a = LevelShift::init("").unwrap();
        // Flat: nothing.
        assert!(
            a.analyze(vec![window(&[10.0; 6])])
                .unwrap()
                .events
                .is_empty()
        );
        let shifted = window(&[10.0, 10.0, 10.0, 100.0, 100.0, 100.0]);
        let events = a.analyze(vec![shifted.clone()]).unwrap().events;
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, "level_shift");
        assert_eq!(e.message, "queue_depth moved from 10 to 100");
        assert_eq!(e.timestamp_ms, 3000, "the first of the newest points");
        let labels: Vec<(&str, &str)> = e
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(labels, [("queue", "jobs"), ("metric", "queue_depth")]);
        // The same shift seen again is not reported again; a new one is.
        assert!(a.analyze(vec![shifted]).unwrap().events.is_empty());
        let back = window(&[100.0, 100.0, 100.0, 5.0, 5.0, 5.0]);
        assert_eq!(a.analyze(vec![back]).unwrap().events.len(), 1);
    }

    #[test]
    fn too_few_points_or_a_small_move_report_nothing() {
        let mut a = LevelShift::init(r#"{"threshold": 5, "recent": 2}"#).unwrap();
        assert!(
            a.analyze(vec![window(&[1.0, 50.0])])
                .unwrap()
                .events
                .is_empty()
        );
        assert!(
            a.analyze(vec![window(&[1.0, 5.0, 5.0])])
                .unwrap()
                .events
                .is_empty()
        );
        assert_eq!(
            a.analyze(vec![window(&[1.0, 7.0, 7.0])])
                .unwrap()
                .events
                .len(),
            1
        );
        assert!(LevelShift::init(r#"{"recent": 0}"#).is_err());
        assert!(LevelShift::init(r#"{"thresold": 1}"#).is_err());
    }
}
