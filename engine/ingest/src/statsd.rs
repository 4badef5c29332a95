//! StatsD / DogStatsD over UDP: datagrams are parsed as they arrive, aggregated per flush
//! interval by `telltale_formats::statsd::Aggregator`, and the aggregates stored on every
//! flush (stamped with the flush time).
//!
//! UDP has no response, so nothing can be refused "whole": a malformed line is counted
//! (`telltale_ingest_rejected_total{source="statsd",reason="parse"}`) and logged at most
//! once per [`LOG_EVERY`], and the valid lines of the same datagram are kept.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use telltale_formats::statsd::{Aggregator, StatsdMetric, parse_datagram};
use telltale_formats::{sanitize_label_name, sanitize_metric_name};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::limits::{Reason, check_sample};
use super::{Shared, Source};
use telltale_config::IngestStatsdConfig;
use telltale_model::{Labels, Sample, now_ms, self_metrics};

/// The most one warning about bad datagrams is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The self-metric with the kernel's count of datagrams it dropped for the listener's
/// socket (its receive buffer was full): datagrams that never reached Telltale.
pub(crate) const KERNEL_DROPS: &str = self_metrics::INGEST_STATSD_KERNEL_DROPS.name;

/// The self-metric with the receive buffer the kernel granted the socket, as it reports it
/// (Linux reports twice the size asked for, the other half being its bookkeeping).
pub(crate) const RECEIVE_BUFFER: &str = self_metrics::INGEST_STATSD_RECEIVE_BUFFER.name;

/// The StatsD state: the aggregator and the series budget.
pub(crate) struct Statsd {
    agg: Aggregator,
    /// Series key hash → flush number of its last update, mirroring the aggregator's expiry
    /// so a new series beyond `max_series_per_source` can be refused before it is added.
    series: HashMap<u64, u64>,
    hasher: RandomState,
    flushes: u64,
    expire_flushes: u64,
    max_series: usize,
    log: RateLimitedLog,
}

impl Statsd {
    /// A new aggregator forgetting series after `expire_flushes` idle flushes.
    pub(crate) fn new(expire_flushes: u64, max_series: usize) -> Self {
        Statsd {
            agg: Aggregator::new(expire_flushes),
            series: HashMap::new(),
            hasher: RandomState::new(),
            flushes: 0,
            expire_flushes: expire_flushes.max(1),
            max_series,
            log: RateLimitedLog::default(),
        }
    }

    /// Adds parsed metrics; returns how many were taken and how many refused.
    fn add_all(
        &mut self,
        shared: &Shared,
        metrics: Vec<StatsdMetric>,
        peer: SocketAddr,
    ) -> (usize, usize) {
        let n = metrics.len();
        let ok = metrics
            .into_iter()
            .map(|m| usize::from(self.add(shared, m, peer)))
            .sum::<usize>();
        (ok, n - ok)
    }

    /// Takes one datagram. Returns the outcome label (`ok`, `partial`, `rejected`).
    pub(crate) fn datagram(
        &mut self,
        shared: &Shared,
        data: &[u8],
        peer: SocketAddr,
    ) -> &'static str {
        let Ok(text) = std::str::from_utf8(data) else {
            shared.stats.rejected(Source::Statsd, Reason::Encoding, 1);
            self.log
                .warn(|| format!("a datagram from {peer} is not UTF-8"));
            return "rejected";
        };
        let (mut good, mut bad) = (0usize, 0usize);
        match parse_datagram(text) {
            Ok(metrics) => {
                let (ok, refused) = self.add_all(shared, metrics, peer);
                (good, bad) = (good + ok, bad + refused);
            }
            // One bad line must not cost the others: parse line by line (error path only).
            Err(_) => {
                for (i, line) in text.split('\n').enumerate() {
                    match parse_datagram(line) {
                        Ok(metrics) => {
                            let (ok, refused) = self.add_all(shared, metrics, peer);
                            (good, bad) = (good + ok, bad + refused);
                        }
                        Err(e) => {
                            bad += 1;
                            shared.stats.rejected(Source::Statsd, Reason::Parse, 1);
                            self.log.warn(|| {
                                format!(
                                    "datagram from {peer}, line {}, column {}: {}: {:?}",
                                    i + 1,
                                    e.column,
                                    e.message,
                                    truncate(line, 80)
                                )
                            });
                        }
                    }
                }
            }
        }
        shared.stats.accepted(Source::Statsd, good);
        match (good, bad) {
            (_, 0) => "ok",
            (0, _) => "rejected",
            _ => "partial",
        }
    }

    /// Adds one metric unless it breaks a limit; counts and logs a refusal.
    fn add(&mut self, shared: &Shared, m: StatsdMetric, peer: SocketAddr) -> bool {
        // The aggregator's series identity: sanitised name and sanitised, non-empty tags.
        let name = sanitize_metric_name(&m.name).unwrap_or_else(|| "_".into());
        let labels: Labels = m
            .tags
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .filter_map(|(k, v)| Some((sanitize_label_name(k)?, v.clone())))
            .collect();
        if let Err(r) = check_sample(&shared.limits, &name, &labels, 0, None) {
            shared.stats.rejected(Source::Statsd, r.reason, 1);
            self.log
                .warn(|| format!("metric `{}` from {peer}: {}", m.name, r.message));
            return false;
        }
        let key = self.hasher.hash_one((&name, &labels));
        if !self.series.contains_key(&key) && self.series.len() >= self.max_series {
            shared
                .stats
                .rejected(Source::Statsd, Reason::SeriesLimit, 1);
            self.log.warn(|| {
                format!(
                    "metric `{}` from {peer} refused: StatsD already has {} series (ingest.limits.max_series_per_source)",
                    m.name,
                    self.series.len()
                )
            });
            return false;
        }
        let original = m.name.clone();
        match self.agg.add(m) {
            Ok(()) => {
                self.series.insert(key, self.flushes);
                true
            }
            Err(e) => {
                shared
                    .stats
                    .rejected(Source::Statsd, Reason::TypeConflict, 1);
                self.log
                    .warn(|| format!("metric `{original}` from {peer} refused: {e}"));
                false
            }
        }
    }

    /// Ends the interval: the aggregates as samples stamped `now`.
    pub(crate) fn flush(&mut self, now: i64) -> Vec<Sample> {
        let out = self.agg.flush(now);
        self.flushes += 1;
        let (flushes, expire) = (self.flushes, self.expire_flushes);
        self.series.retain(|_, last| flushes - *last <= expire);
        out.into_iter()
            .map(|p| Sample {
                name: p.name.into(),
                labels: p.labels.into_iter().collect(),
                value: p.value,
                timestamp_ms: p.timestamp_ms.unwrap_or(now),
            })
            .collect()
    }
}

/// Receives datagrams and flushes every `flush_interval` until `stop`; flushes once more
/// on the way out.
pub(crate) async fn run(
    socket: UdpSocket,
    cfg: IngestStatsdConfig,
    shared: Arc<Shared>,
    stop: impl std::future::Future<Output = ()>,
) {
    let interval = cfg.flush_interval.get().max(Duration::from_millis(10));
    let expire = cfg
        .expire_after
        .get()
        .as_millis()
        .div_ceil(interval.as_millis().max(1));
    let mut state = Statsd::new(
        u64::try_from(expire).unwrap_or(u64::MAX),
        shared.limits.max_series_per_source,
    );
    tune_receive_buffer(&socket, cfg.receive_buffer.0, &shared);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The largest UDP payload; StatsD clients stay far below it.
    let mut buf = vec![0u8; 65_536];
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    let started = Instant::now();
                    let outcome = state.datagram(&shared, &buf[..n], peer);
                    shared.stats.request(Source::Statsd, outcome, Some(started.elapsed()));
                }
                Err(e) => {
                    state.log.warn(|| format!("cannot receive: {e}"));
                    // e.g. ICMP errors surfacing on Linux: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = tick.tick() => {
                flush(&mut state, &shared);
                publish_kernel_drops(&socket, &shared);
            }
            _ = &mut stop => break,
        }
    }
    flush(&mut state, &shared);
    publish_kernel_drops(&socket, &shared);
}

/// Asks the kernel for a receive buffer of `want` bytes (0: leave the system default), so a
/// burst queues instead of being dropped while the listener is busy, and logs and publishes
/// what it granted: Linux caps the request at `net.core.rmem_max` without an error.
fn tune_receive_buffer(socket: &UdpSocket, want: u64, shared: &Shared) {
    let sock = socket2::SockRef::from(socket);
    if want > 0 {
        // The option is a C int.
        let asked = usize::try_from(want.min(i32::MAX as u64)).unwrap_or(i32::MAX as usize);
        if let Err(e) = sock.set_recv_buffer_size(asked) {
            warn!("ingest: cannot set the StatsD receive buffer to {want} bytes: {e}");
        }
    }
    match sock.recv_buffer_size() {
        Ok(granted) => {
            shared.stats.set(RECEIVE_BUFFER, granted as f64);
            // Linux grants twice what it was asked (half for its own bookkeeping).
            if want > 0 && (granted as u64) < want {
                info!(
                    "ingest: StatsD receive buffer: {granted} bytes, less than the {want} asked \
                     for (ingest.statsd.receive_buffer); the kernel caps it at \
                     net.core.rmem_max, raise that sysctl to allow more"
                );
            } else {
                info!("ingest: StatsD receive buffer: {granted} bytes");
            }
        }
        Err(e) => warn!("ingest: cannot read the StatsD receive buffer size: {e}"),
    }
}

/// Publishes the kernel's drop count of the socket, when the system tells it.
fn publish_kernel_drops(socket: &UdpSocket, shared: &Shared) {
    if let Some(drops) = kernel_drops(socket) {
        shared.stats.set(KERNEL_DROPS, drops as f64);
    }
}

/// How many datagrams the kernel dropped for `socket` (receive buffer full), from the
/// `drops` column of `/proc/self/net/udp` or `udp6`, in the row of the socket's inode
/// (which `/proc/self/fd/<fd>` names as `socket:[<inode>]`).
///
/// The other way to learn it, `SO_RXQ_OVFL`, reports the same per-socket counter but only
/// as ancillary data of each `recvmsg`, which tokio's `recv_from` does not expose: it would
/// take an unsafe `recvmsg` loop on the receive path. The /proc row costs one read of a
/// small in-memory file per flush interval, off the receive path, and needs no privilege.
#[cfg(target_os = "linux")]
pub(crate) fn kernel_drops(socket: &UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
    let inode: u64 = link
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .into_iter()
        .find_map(|table| drops_in(&std::fs::read_to_string(table).ok()?, inode))
}

/// Elsewhere the count is not published.
#[cfg(not(target_os = "linux"))]
pub(crate) fn kernel_drops(_socket: &UdpSocket) -> Option<u64> {
    None
}

/// The `drops` column (13th) of the row of a `/proc/net/udp` table whose `inode` column
/// (10th) is `inode`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let mut cols = row.split_whitespace();
        if cols.nth(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        cols.nth(2)?.parse().ok()
    })
}

fn flush(state: &mut Statsd, shared: &Shared) {
    let samples = state.flush(now_ms());
    if samples.is_empty() {
        return;
    }
    let report = shared.writer(Source::Statsd).ingest(samples);
    shared.stats.dropped(Source::Statsd, &report);
}

fn truncate(s: &str, chars: usize) -> &str {
    match s.char_indices().nth(chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Logs at most one warning per [`LOG_EVERY`], saying how many were held back.
#[derive(Default)]
pub(crate) struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn warn(&mut self, message: impl FnOnce() -> String) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        let held = std::mem::take(&mut self.suppressed);
        self.last = Some(now);
        if held > 0 {
            warn!("statsd: {} ({held} similar messages suppressed)", message());
        } else {
            warn!("statsd: {}", message());
        }
    }
}
