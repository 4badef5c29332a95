//! The semantic checks of the `store:` section: intervals that work together, tiers kept
//! from finest to coarsest, a raw tier that covers the in-memory window, a size cap the
//! database can live in, and a file path that can be a file.

use std::path::Path;
use std::time::Duration;

use crate::types::{Config, HumanDuration, StoreConfig};
use crate::{Seg, locate};

/// The longest `checkpoint_interval`: a restart replays every flush since the last
/// checkpoint, and the `wal` table grows by one row per flush until then.
pub(crate) const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);

/// The smallest `max_disk`: below it the schema, the indexes and one checkpoint's worth of
/// heads leave no room for history, and eviction would delete every chunk it writes.
pub(crate) const MIN_MAX_DISK: u64 = 16 << 20;

/// The tiers in order from finest to coarsest: their key under `store.retention` and what
/// their chunks hold, for messages.
const TIERS: [(&str, &str); 4] = [
    ("raw", "samples"),
    ("minute", "per-minute roll-ups"),
    ("hour", "per-hour roll-ups"),
    ("day", "per-day roll-ups"),
];

fn path(keys: &[&str]) -> Vec<Seg> {
    std::iter::once(Seg::key("store"))
        .chain(keys.iter().map(|k| Seg::key(k)))
        .collect()
}

/// Whether the whole of `path` is written in `source`: [`locate`] falls back to the
/// nearest parent it finds, so a path is written when it lands elsewhere than its parent.
fn written(source: &str, path: &[Seg]) -> bool {
    match path.split_last() {
        None => false,
        Some((_, [])) => locate(source, path).is_some(),
        Some((_, parent)) => {
            let here = locate(source, path);
            here.is_some() && here != locate(source, parent)
        }
    }
}

fn tier_retention(s: &StoreConfig, tier: &str) -> HumanDuration {
    match tier {
        "raw" => s.retention.raw,
        "minute" => s.retention.minute,
        "hour" => s.retention.hour,
        _ => s.retention.day,
    }
}

/// Reports every problem of `config.store`. `file` is the database file as `run` would
/// open it (`store.path` under the data directory); it is looked at only while the store
/// is enabled.
pub(crate) fn check(
    config: &Config,
    source: &str,
    file: &Path,
    report: &mut dyn FnMut(&[Seg], String, &str),
) {
    let s = &config.store;
    let flush = s.flush_interval.get();
    let checkpoint = s.checkpoint_interval.get();
    if flush.is_zero() {
        report(
            &path(&["flush_interval"]),
            "store.flush_interval must be longer than zero".into(),
            "remove it to use the default (1s): a crash loses at most this much",
        );
    }
    if checkpoint.is_zero() {
        report(
            &path(&["checkpoint_interval"]),
            "store.checkpoint_interval must be longer than zero".into(),
            "remove it to use the default (5m)",
        );
    } else if checkpoint > MAX_CHECKPOINT_INTERVAL {
        report(
            &path(&["checkpoint_interval"]),
            format!(
                "store.checkpoint_interval ({}) is longer than 1h",
                s.checkpoint_interval
            ),
            "a restart replays every flush since the last checkpoint; keep it at 1h or less \
             (the default is 5m)",
        );
    }
    if !flush.is_zero() && !checkpoint.is_zero() && flush > checkpoint {
        // Whichever of the two the operator wrote is the one to change.
        let key = if written(source, &path(&["flush_interval"])) {
            "flush_interval"
        } else {
            "checkpoint_interval"
        };
        report(
            &path(&[key]),
            format!(
                "store.flush_interval ({}) is longer than store.checkpoint_interval ({})",
                s.flush_interval, s.checkpoint_interval
            ),
            "a checkpoint folds the flushes since the previous one into chunks: flush at \
             least as often as you checkpoint",
        );
    }

    for (tier, _) in TIERS {
        if tier_retention(s, tier).get().is_zero() {
            report(
                &path(&["retention", tier]),
                format!("store.retention.{tier} must be longer than zero"),
                "remove it to use the default, or give a duration such as `30d`",
            );
        }
    }
    for pair in TIERS.windows(2) {
        let [(finer, finer_holds), (coarser, coarser_holds)] = pair else {
            continue;
        };
        let (f, c) = (tier_retention(s, finer), tier_retention(s, coarser));
        if f.get().is_zero() || c.get().is_zero() || c >= f {
            continue;
        }
        let key = if written(source, &path(&["retention", coarser]))
            || !written(source, &path(&["retention", finer]))
        {
            coarser
        } else {
            finer
        };
        report(
            &path(&["retention", key]),
            format!(
                "store.retention.{coarser} ({c}) is shorter than store.retention.{finer} ({f}): \
                 {coarser_holds} would be deleted before the {finer_holds} they summarise"
            ),
            &format!(
                "keep each tier at least as long as the finer one before it: raise \
                 {coarser} to {f} or more, or lower {finer}"
            ),
        );
    }
    let hot = config.engine.retention;
    let raw = s.retention.raw;
    if s.enabled && !raw.get().is_zero() && raw < hot {
        let p = if written(source, &path(&["retention", "raw"])) {
            path(&["retention", "raw"])
        } else {
            vec![Seg::key("engine"), Seg::key("retention")]
        };
        report(
            &p,
            format!(
                "store.retention.raw ({raw}) is shorter than engine.retention ({hot}): reads \
                 of samples between the two ages would find them neither in memory nor on disk"
            ),
            &format!(
                "raise store.retention.raw to {hot} or more, or lower engine.retention (the \
                 in-memory window)"
            ),
        );
    }

    if s.timestamp_tolerance.get() > std::time::Duration::from_millis(100) {
        report(
            &path(&["timestamp_tolerance"]),
            format!(
                "store.timestamp_tolerance ({}) would move sample times by more than 100ms",
                s.timestamp_tolerance
            ),
            "use a few milliseconds (2ms absorbs a collector's scheduling jitter) or 0s to \
             store every time exactly",
        );
    }

    if s.max_disk.0 < MIN_MAX_DISK {
        report(
            &path(&["max_disk"]),
            format!(
                "store.max_disk of {} bytes is too small for the database",
                s.max_disk.0
            ),
            "give it at least 16MiB; the default is 10GiB",
        );
    }

    if s.path.as_os_str().is_empty() {
        report(
            &path(&["path"]),
            "store.path is empty".into(),
            "name the database file, e.g. `path: telltale.db` (relative paths are under \
             engine.data_dir)",
        );
    } else if s.enabled && file.is_dir() {
        report(
            &path(&["path"]),
            format!("store.path is the directory {}, not a file", file.display()),
            "name a file in it, e.g. `telltale.db`",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{err, parse_checked};

    fn ok(src: &str) {
        if let Err(d) = parse_checked(src) {
            panic!("expected no error in:\n{src}\n{d}");
        }
    }

    #[test]
    fn the_defaults_and_a_disabled_store_pass() {
        ok("");
        ok("store:\n  enabled: false\n");
        ok(concat!(
            "store:\n",
            "  flush_interval: 5s\n",
            "  checkpoint_interval: 5s\n",
            "  retention: { raw: 1h, minute: 1h, hour: 1h, day: 1h }\n",
            "  max_disk: 16MiB\n",
        ));
    }

    #[test]
    fn zero_intervals_are_errors() {
        let text = err("store:\n  flush_interval: 0s\n  checkpoint_interval: 0s\n");
        assert!(
            text.contains("t.yaml:2:3: error: store.flush_interval must be longer than zero"),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:3:3: error: store.checkpoint_interval must be longer than zero"),
            "{text}"
        );
        assert!(text.contains("remove it to use the default"), "{text}");
    }

    #[test]
    fn flushing_less_often_than_checkpointing_is_an_error_where_it_was_written() {
        let text = err("store:\n  flush_interval: 10m\n");
        assert!(
            text.contains(
                "t.yaml:2:3: error: store.flush_interval (10m) is longer than \
                 store.checkpoint_interval (5m)"
            ),
            "{text}"
        );
        assert!(text.contains("flush at least as often"), "{text}");
        let text = err("store:\n  checkpoint_interval: 500ms\n");
        assert!(
            text.contains("t.yaml:2:3: error: store.flush_interval (1s) is longer than"),
            "{text}"
        );
    }

    #[test]
    fn a_checkpoint_interval_over_an_hour_is_an_error() {
        let text = err("store:\n  checkpoint_interval: 2h\n");
        assert!(
            text.contains("t.yaml:2:3: error: store.checkpoint_interval (2h) is longer than 1h"),
            "{text}"
        );
        assert!(text.contains("a restart replays"), "{text}");
        ok("store:\n  checkpoint_interval: 1h\n");
    }

    #[test]
    fn zero_tier_retention_is_an_error() {
        let text = err("store:\n  retention:\n    minute: 0s\n");
        assert!(
            text.contains("t.yaml:3:5: error: store.retention.minute must be longer than zero"),
            "{text}"
        );
        // A zero tier is not reported again as out of order.
        assert!(!text.contains("is shorter than"), "{text}");
    }

    #[test]
    fn a_coarser_tier_kept_shorter_than_a_finer_one_names_both() {
        let text = err("store:\n  retention:\n    hour: 7d\n");
        assert!(
            text.contains(
                "t.yaml:3:5: error: store.retention.hour (7days) is shorter than \
                 store.retention.minute (30days)"
            ),
            "{text}"
        );
        assert!(text.contains("raise hour to 30days or more"), "{text}");
        // Only the finer tier written: the error points at it.
        let text = err("store:\n  retention:\n    raw: 3d\n    minute: 2d\n");
        assert!(
            text.contains(
                "t.yaml:4:5: error: store.retention.minute (2days) is shorter than \
                 store.retention.raw (3days): per-minute roll-ups would be deleted before \
                 the samples they summarise"
            ),
            "{text}"
        );
        let text = err("store:\n  retention:\n    raw: 45d\n");
        assert!(
            text.contains("t.yaml:3:5: error: store.retention.minute (30days) is shorter"),
            "{text}"
        );
    }

    #[test]
    fn raw_retention_must_cover_the_in_memory_window() {
        let text = err("engine:\n  retention: 72h\n");
        assert!(
            text.contains(
                "t.yaml:2:3: error: store.retention.raw (2days) is shorter than \
                 engine.retention (3days)"
            ),
            "{text}"
        );
        assert!(text.contains("raise store.retention.raw"), "{text}");
        let text = err("engine:\n  retention: 2h\nstore:\n  retention:\n    raw: 1h\n");
        assert!(
            text.contains("t.yaml:5:5: error: store.retention.raw (1h) is shorter than"),
            "{text}"
        );
        // Without a store there is nothing on disk to cover.
        ok("engine:\n  retention: 72h\nstore:\n  enabled: false\n");
    }

    #[test]
    fn a_timestamp_tolerance_over_100ms_is_an_error() {
        let text = err("store:\n  timestamp_tolerance: 1s\n");
        assert!(
            text.contains("t.yaml:2:3: error: store.timestamp_tolerance (1s) would move"),
            "{text}"
        );
    }

    #[test]
    fn max_disk_below_16_mib_is_an_error() {
        let text = err("store:\n  max_disk: 1MiB\n");
        assert!(
            text.contains("t.yaml:2:3: error: store.max_disk of 1048576 bytes is too small"),
            "{text}"
        );
        assert!(text.contains("at least 16MiB"), "{text}");
    }

    #[test]
    fn the_path_must_name_a_file() {
        let text = err("store:\n  path: ''\n");
        assert!(
            text.contains("t.yaml:2:3: error: store.path is empty"),
            "{text}"
        );
        let data_dir = env!("CARGO_MANIFEST_DIR");
        let text = err(&format!(
            "engine:\n  data_dir: {data_dir}\nstore:\n  path: src\n"
        ));
        assert!(
            text.contains(&format!(
                "t.yaml:4:3: error: store.path is the directory {data_dir}/src, not a file"
            )),
            "{text}"
        );
        ok(&format!(
            "engine:\n  data_dir: {data_dir}\nstore:\n  path: not-there/telltale.db\n"
        ));
    }

    /// The README shows the section with its defaults: it must parse to them.
    #[test]
    fn the_readme_shows_the_defaults() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```yaml\nstore:")
            .expect("a store: block in README.md")
            + 8;
        let block = &readme[start..];
        let block = &block[..block.find("```").expect("the block's end")];
        let shown = parse_checked(block).unwrap().store;
        let default = crate::StoreConfig::default();
        assert_eq!(shown.enabled, default.enabled);
        assert_eq!(shown.path, default.path);
        assert_eq!(shown.flush_interval, default.flush_interval);
        assert_eq!(shown.checkpoint_interval, default.checkpoint_interval);
        assert_eq!(shown.max_disk, default.max_disk);
        assert_eq!(shown.timestamp_tolerance, default.timestamp_tolerance);
        let (r, d) = (&shown.retention, &default.retention);
        assert_eq!(
            (r.raw, r.minute, r.hour, r.day),
            (d.raw, d.minute, d.hour, d.day)
        );
    }

    #[test]
    fn the_schema_describes_the_store_section() {
        let schema = crate::json_schema();
        let store = &schema["properties"]["store"];
        assert!(
            store["description"]
                .as_str()
                .is_some_and(|d| d.contains("durable store")),
            "{store}"
        );
        let text = schema.to_string();
        for key in [
            "flush_interval",
            "checkpoint_interval",
            "max_disk",
            "minute",
        ] {
            assert!(text.contains(key), "{key} missing from the schema");
        }
    }
}
