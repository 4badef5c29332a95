//! The standard `prometheus` collector: scrapes Prometheus text 0.0.4 / OpenMetrics
//! endpoints through the host's `http` capability and parses them with `telltale-formats`.
//!
//! Config (JSON):
//!
//! ```json
//! {"targets": [{"url": "http://127.0.0.1:8080/metrics", "name": "ray-head",
//!               "labels": {"service": "ray"}}],
//!  "allow": ["ray_serve_.*"], "deny": ["ray_serve_.*_bucket"],
//!  "honor_timestamps": true, "format": "auto"}
//! ```
//!
//! * Grants: `http: ["HOST:PORT", ...]` naming every target. The host bounds each request
//!   by the call's deadline (`limits.timeout`) and caps the body (`limits.max_http_body`).
//! * `allow` / `deny`: regular expressions (Rust `regex` syntax, close to Prometheus' RE2),
//!   anchored at both ends, matched against the sample's name and its family's name. A
//!   sample is kept when `allow` is empty or one pattern matches, and no `deny` pattern does.
//! * Every sample gets the target's labels: `instance="host:port"`, `job` (the target's
//!   `name`, when set) and the extra `labels`. A scraped label with the same name is kept
//!   as `exported_<name>` (Prometheus' `honor_labels: false`).
//! * `honor_timestamps` (default true): keep the exposition's timestamps; otherwise, and
//!   for samples without one, the scrape time.
//! * `format`: `auto` (default, by `Content-Type`, as Prometheus does), `text` or
//!   `openmetrics`. The request sends Prometheus' `Accept` header.
//! * Per target and collection: `up`, `scrape_duration_seconds`, `scrape_samples_scraped`
//!   and `scrape_samples_post_filter`. A target that cannot be fetched, answers non-2xx or
//!   sends a body that does not parse gives `up 0` and no samples; the other targets are
//!   still scraped. The error is logged when the target goes down (not again while it
//!   stays down), and its recovery when it comes back.

pub mod scrape;

use std::time::Instant;

use telltale_formats::prometheus::parse_text;
use telltale_sdk::{Collector, Level, PluginError, Samples, http, log, now_ms};

use crate::scrape::{ACCEPT, Config, Out, ScrapeResult, Target, map_exposition, target_metrics};

/// The collector: its config and, per target, the last outcome (to log only changes).
struct Prometheus {
    config: Config,
    /// Per target: `None` before the first scrape, then whether the last one was up. Only
    /// changes are logged, so a target that stays down does not flood the log.
    last_up: Vec<Option<bool>>,
}

/// Fetches and parses one target.
fn scrape_one(config: &Config, target: &Target, now: i64) -> Result<ScrapeResult, String> {
    let response = http::get_with_headers(&target.url, &[("accept", ACCEPT)])?;
    if !response.is_success() {
        return Err(format!("HTTP status {}", response.status));
    }
    let text = response
        .text()
        .map_err(|e| format!("body is not UTF-8: {e}"))?;
    let format = config.format.pick(response.header("content-type"));
    let exposition =
        parse_text(text, format).map_err(|e| format!("unparseable exposition: {e}"))?;
    Ok(map_exposition(config, target, exposition, now))
}

/// Writes one mapped sample into the call's batch.
fn write_sample(out: &mut Samples, o: Out) {
    let mut s = out.sample(o.name, o.value).at(o.timestamp_ms);
    for (k, v) in o.labels {
        s = s.label(k, v);
    }
}

impl Collector for Prometheus {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config = Config::parse(config).map_err(PluginError::InvalidConfig)?;
        let last_up = vec![None; config.targets.len()];
        Ok(Prometheus { config, last_up })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        for (i, target) in self.config.targets.iter().enumerate() {
            let now = now_ms();
            let started = Instant::now();
            let result = scrape_one(&self.config, target, now);
            let duration = started.elapsed().as_secs_f64();
            let up = result.is_ok();
            if self.last_up[i] != Some(up) {
                match &result {
                    Err(e) => log(Level::Warn, &format!("target {} is down: {e}", target.url)),
                    Ok(_) if self.last_up[i].is_some() => {
                        log(Level::Info, &format!("target {} is up again", target.url))
                    }
                    Ok(_) => {}
                }
                self.last_up[i] = Some(up);
            }
            for o in target_metrics(target, result.as_ref().ok(), duration, now) {
                write_sample(out, o);
            }
            if let Ok(r) = result {
                for o in r.samples {
                    write_sample(out, o);
                }
            }
        }
        Ok(())
    }
}

telltale_sdk::export_collector!(Prometheus);
