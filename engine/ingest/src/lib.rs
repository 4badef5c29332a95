//! Push ingest: applications send metrics to Telltale instead of being collected.
//!
//! ```text
//! HTTP listener (axum) ─┬─ PUT/POST/DELETE /metrics/job/…   Pushgateway text 0.0.4 / OpenMetrics
//!                       ├─ POST /api/v2/write, /write       Influx line protocol
//!                       └─ POST /api/v1/samples             JSON batch
//! UDP listener ──────────── StatsD / DogStatsD datagrams → Aggregator → flush every interval
//!                                     │
//!              parse whole request → check limits → the source's StoreWriter (all or nothing)
//! ```
//!
//! Every HTTP request is taken whole or not at all: the body is parsed and checked against
//! every limit before the first sample reaches the store, so a rejected request leaves no
//! trace. Each listener writes through its own `StoreWriter` (source `ingest:NAME`, in the
//! `ingest` group), never through the store's internals. Pushed Pushgateway groups are kept here and re-written to the store on every
//! republish tick (stamped "now"), as a Prometheus scrape of a Pushgateway would see them,
//! until they are deleted or expire. The formats themselves are parsed by the
//! `telltale-formats` crate. `docs/ingest.md` is the user-facing description.
//!
//! The HTTP connections are served by `conn.rs`, not `axum::serve`: it bounds how many are
//! open and how long a client may take over its headers and body, so slow clients cannot
//! hold the `max_in_flight` slots others need.

mod conn;
mod http;
mod influx;
mod json;
mod limits;
mod pushgateway;
mod stats;
mod statsd;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::info;

use telltale_config::{IngestConfig, IngestStatsdConfig};
use telltale_model::{now_ms, self_metrics};
use telltale_store::{SeriesStore, SourceLimits, StoreWriter};

pub use limits::Limits;
use pushgateway::PushRegistry;
use stats::Stats;

/// Where samples came from; the `source` label of the `telltale_ingest_*` self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// `PUT`/`POST`/`DELETE /metrics/job/…`.
    Pushgateway,
    /// `/api/v2/write` and `/write`.
    Influx,
    /// `/api/v1/samples`.
    Json,
    /// The UDP listener.
    Statsd,
}

impl Source {
    /// Every source, in label order.
    pub const ALL: [Source; 4] = [
        Source::Pushgateway,
        Source::Influx,
        Source::Json,
        Source::Statsd,
    ];

    /// The `source` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pushgateway => "pushgateway",
            Source::Influx => "influx",
            Source::Json => "json",
            Source::Statsd => "statsd",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why the listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address is taken, not local, or not permitted.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// `HTTP` or `StatsD (UDP)`.
        what: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `ingest.http.token` is set but empty (typically an unset environment variable).
    #[error(
        "ingest.http.token is empty; set it to a secret (e.g. `${{TELLTALE_INGEST_TOKEN}}`) or remove it"
    )]
    EmptyToken,
}

/// State shared by every listener and task.
pub(crate) struct Shared {
    /// For the listeners' own metrics (accounted to no source).
    pub(crate) store: Arc<SeriesStore>,
    pub(crate) limits: Limits,
    pub(crate) token: Option<String>,
    pub(crate) stats: Stats,
    /// Each listener's store writer (by [`Source::index`]), all in the push listeners'
    /// group.
    pub(crate) writers: [StoreWriter; 4],
    pub(crate) push: parking_lot::Mutex<PushRegistry>,
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// Shared state for these settings (used by [`Ingest::bind`] and the benchmarks' tests).
    pub(crate) fn new(cfg: &IngestConfig, store: Arc<SeriesStore>) -> Shared {
        let limits = Limits::from_config(&cfg.limits);
        let writers = writers(&cfg.limits, &store);
        Shared {
            push: parking_lot::Mutex::new(PushRegistry::new(
                cfg.pushgateway.expire_after.get(),
                cfg.pushgateway.max_groups,
                writers[Source::Pushgateway.index()].clone(),
                limits.max_series_per_source,
            )),
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1))),
            writers,
            token: cfg
                .http
                .as_ref()
                .and_then(|h| h.token.clone())
                .filter(|t| !t.is_empty()),
            stats: Stats::default(),
            limits,
            store,
        }
    }
}

/// The store writers of the push listeners: each bounded by `max_series_per_source` and
/// `max_series_bytes_per_source`, all together by `ingest.limits.max_series` and
/// `max_series_bytes` (default: half of the store's), so pushes alone never fill the store.
fn writers(l: &telltale_config::IngestLimitsConfig, store: &Arc<SeriesStore>) -> [StoreWriter; 4] {
    let whole = store.limits();
    let group = store.group(
        limits::INGEST_GROUP,
        SourceLimits {
            max_series: l.max_series.unwrap_or(whole.max_series / 2),
            max_bytes: l.max_series_bytes.map_or(whole.max_series_bytes / 2, |b| {
                usize::try_from(b.0).unwrap_or(usize::MAX)
            }),
        },
    );
    let each = SourceLimits {
        max_series: l.max_series_per_source,
        max_bytes: usize::try_from(l.max_series_bytes_per_source.0).unwrap_or(usize::MAX),
    };
    Source::ALL.map(|src| store.writer(&format!("ingest:{}", src.as_str()), each, Some(group)))
}

impl Shared {
    /// The store writer of `source`.
    pub(crate) fn writer(&self, source: Source) -> &StoreWriter {
        &self.writers[source.index()]
    }
}

/// The bound push-ingest listeners, ready to [`run`](Ingest::run).
pub struct Ingest {
    shared: Arc<Shared>,
    http: Option<(TcpListener, conn::Patience)>,
    statsd: Option<(UdpSocket, IngestStatsdConfig)>,
    republish: Duration,
}

impl Ingest {
    /// Binds the configured listeners (so a taken port fails the start, not a later task).
    /// `evaluation_interval` is the default republish period of pushed groups.
    pub async fn bind(
        cfg: &IngestConfig,
        evaluation_interval: Duration,
        store: Arc<SeriesStore>,
    ) -> Result<Ingest, StartError> {
        if cfg
            .http
            .as_ref()
            .is_some_and(|h| h.token.as_deref() == Some(""))
        {
            return Err(StartError::EmptyToken);
        }
        let http = match &cfg.http {
            Some(h) => Some((
                TcpListener::bind(h.listen)
                    .await
                    .map_err(|source| StartError::Bind {
                        what: "HTTP",
                        addr: h.listen,
                        source,
                    })?,
                conn::Patience::from_config(h),
            )),
            None => None,
        };
        let statsd = match &cfg.statsd {
            Some(s) => Some((
                UdpSocket::bind(s.listen)
                    .await
                    .map_err(|source| StartError::Bind {
                        what: "StatsD (UDP)",
                        addr: s.listen,
                        source,
                    })?,
                s.clone(),
            )),
            None => None,
        };
        let republish = cfg
            .pushgateway
            .republish
            .map(|d| d.get())
            .unwrap_or(evaluation_interval)
            .max(Duration::from_millis(10));
        Ok(Ingest {
            shared: Arc::new(Shared::new(cfg, store)),
            http,
            statsd,
            republish,
        })
    }

    /// The bound HTTP address (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound StatsD address (useful with port 0).
    pub fn statsd_addr(&self) -> Option<SocketAddr> {
        self.statsd.as_ref().and_then(|(s, _)| s.local_addr().ok())
    }

    /// Serves until `stop` turns true (or its sender is dropped). In-flight HTTP requests
    /// finish; the StatsD aggregator flushes once more so the last interval is not lost.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let Ingest {
            shared,
            http,
            statsd,
            republish,
        } = self;
        let http_task = async {
            if let Some((listener, patience)) = http {
                if let Ok(addr) = listener.local_addr() {
                    info!(
                        "ingest: HTTP listening on {addr} (Pushgateway /metrics/job/…, Influx /api/v2/write and /write, JSON /api/v1/samples){}",
                        if shared.token.is_some() {
                            ", token required"
                        } else {
                            ""
                        }
                    );
                }
                http::serve(listener, shared.clone(), patience, stopped(stop.clone())).await;
            }
        };
        let statsd_task = async {
            if let Some((socket, cfg)) = statsd {
                if let Ok(addr) = socket.local_addr() {
                    info!(
                        "ingest: StatsD listening on udp://{addr} (flush every {})",
                        cfg.flush_interval
                    );
                }
                statsd::run(socket, cfg, shared.clone(), stopped(stop.clone())).await;
            }
        };
        let housekeeping = housekeeping(shared.clone(), republish, stopped(stop.clone()));
        tokio::join!(http_task, statsd_task, housekeeping);
    }
}

/// Completes when `stop` turns true or its sender goes away.
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Every `period`: re-stores the live pushed groups, drops expired ones, forgets series
/// budgets older than the store's retention and writes the self-metrics.
async fn housekeeping(
    shared: Arc<Shared>,
    period: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        let now = now_ms();
        pushgateway::republish(&shared, now);
        let groups = shared.push.lock().group_count();
        shared.store.ingest(
            shared
                .stats
                .samples(now, &[(self_metrics::INGEST_PUSH_GROUPS.name, groups)]),
        );
    }
}

#[cfg(test)]
mod tests;
