//! The HTTP listener's connections: its own accept loop around hyper, because
//! `axum::serve` can be given neither a timer nor limits, and a client that is slow on
//! purpose must not hold what others need.
//!
//! * **Connections** are bounded (`max_connections`): a slot is taken before `accept`, so
//!   beyond it clients wait in the kernel's accept queue instead of costing a descriptor.
//! * **Headers** must arrive within `header_timeout` (hyper's header read timer, which also
//!   runs while a keep-alive connection is idle); the connection is then closed. No request
//!   exists yet, so there is nobody to answer: a connection that had sent part of a request
//!   is counted as `telltale_ingest_rejected_total{source="http",reason="header_timeout"}`,
//!   a silent idle one is just closed.
//! * **Bodies** must arrive within `body_timeout` of the headers and, after
//!   `body_rate_grace`, keep up `min_body_rate` ([`TimedBody`]). The endpoint's read of the
//!   body then fails, the request is answered 408 and counted with reason `body_timeout` or
//!   `body_rate` under its own source, and the connection is closed. This is what frees an
//!   `ingest.limits.max_in_flight` slot held by a client that dribbles its body.
//!
//! The in-flight slot itself is taken by the endpoint, after the headers are in.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Method, Request, Uri};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::Shared;
use super::limits::Reason;
use telltale_config::IngestHttpConfig;
use telltale_model::self_metrics;

/// The self-metric with the number of open HTTP connections.
pub(crate) const CONNECTIONS: &str = self_metrics::INGEST_HTTP_CONNECTIONS.name;

/// The most one warning of a kind (timeouts, a full listener) is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// On shutdown, how long open connections may take to finish their requests.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// How long the listener waits for clients, and for how many (see `IngestHttpConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Patience {
    pub(crate) header_timeout: Option<Duration>,
    pub(crate) body_timeout: Option<Duration>,
    /// Bytes per second; 0: no floor.
    pub(crate) min_body_rate: u64,
    pub(crate) body_rate_grace: Duration,
    pub(crate) max_connections: usize,
}

impl Patience {
    /// The settings of `ingest.http`; a zero duration turns its timeout off.
    pub(crate) fn from_config(c: &IngestHttpConfig) -> Self {
        let on = |d: Duration| Some(d).filter(|d| !d.is_zero());
        Patience {
            header_timeout: on(c.header_timeout.get()),
            body_timeout: on(c.body_timeout.get()),
            min_body_rate: c.min_body_rate.0,
            body_rate_grace: c.body_rate_grace.get(),
            max_connections: c.max_connections.max(1),
        }
    }
}

/// Serves `router` on `listener` until `stop` completes, then lets open requests finish
/// (for at most [`SHUTDOWN_WAIT`]).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    patience: Patience,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(patience.max_connections));
    let graceful = GracefulShutdown::new();
    let log = Arc::new(Warnings::default());
    shared.stats.set(CONNECTIONS, 0.0);
    tokio::pin!(stop);
    loop {
        // A slot first, then `accept`: beyond the limit a client waits in the accept queue
        // (which the kernel bounds) rather than costing a file descriptor here.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset before it was
                    // accepted: nothing to serve, and retrying at once would spin.
                    log.warn(|| format!("cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let open = patience.max_connections - slots.available_permits();
        shared.stats.set(CONNECTIONS, open as f64);
        if open == patience.max_connections {
            log.warn(|| {
                format!(
                    "{open} HTTP connections are open (ingest.http.max_connections); \
                     further clients wait until one closes"
                )
            });
        }
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::default());
        let handler = Handler {
            router: router.clone(),
            state: state.clone(),
            peer,
            patience,
            log: log.clone(),
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(patience.header_timeout);
        let io = TokioIo::new(Counted {
            inner: stream,
            state: state.clone(),
        });
        let connection = graceful.watch(builder.serve_connection(io, handler));
        let shared = shared.clone();
        let slots = slots.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let result = connection.await;
            match result {
                Ok(()) => {}
                Err(e) if e.is_timeout() && state.mid_request() => {
                    shared.stats.rejected_http(Reason::HeaderTimeout);
                    log.warn(|| {
                        format!(
                            "closed the connection from {peer}: its request line and headers \
                             did not arrive within ingest.http.header_timeout ({})",
                            human(patience.header_timeout)
                        )
                    });
                }
                Err(e) if e.is_timeout() => {
                    debug!("ingest: closed the idle connection from {peer}")
                }
                Err(e) => debug!("ingest: connection from {peer}: {e}"),
            }
            drop(permit);
            shared.stats.set(
                CONNECTIONS,
                (patience.max_connections - slots.available_permits()) as f64,
            );
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_WAIT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            "ingest: HTTP requests still open {}s after shutdown began; leaving them",
            SHUTDOWN_WAIT.as_secs()
        );
    }
}

fn human(d: Option<Duration>) -> String {
    d.map_or_else(
        || "off".into(),
        |d| humantime::format_duration(d).to_string(),
    )
}

/// What the accept loop, the request handler and the body share about one connection.
#[derive(Default)]
struct ConnState {
    /// Bytes read from the socket so far.
    read: AtomicU64,
    /// `read` when the last response was ready: anything beyond it belongs to a request
    /// that has begun, which tells a stalled request from an idle keep-alive connection.
    answered_at: AtomicU64,
    /// Why the current request's body was cut, for the handler's log line.
    cut: Mutex<Option<BodyCut>>,
}

impl ConnState {
    fn mid_request(&self) -> bool {
        self.read.load(Ordering::Relaxed) > self.answered_at.load(Ordering::Relaxed)
    }
}

/// The socket, counting what is read from it.
struct Counted {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.state.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Hands each request to the router with a [`TimedBody`], and logs a cut body with the
/// client's address once the answer is ready.
struct Handler {
    router: Router,
    state: Arc<ConnState>,
    peer: SocketAddr,
    patience: Patience,
    log: Arc<Warnings>,
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let (method, uri): (Method, Uri) = (req.method().clone(), req.uri().clone());
        let req = req.map(|body| TimedBody::new(body, self.patience, self.state.clone()));
        let mut router = self.router.clone();
        let state = self.state.clone();
        let (peer, log) = (self.peer, self.log.clone());
        Box::pin(async move {
            let response = tower_service::Service::call(&mut router, req).await;
            state
                .answered_at
                .store(state.read.load(Ordering::Relaxed), Ordering::Relaxed);
            if let Some(cut) = state.cut.lock().take() {
                // The path only: a query string may carry credentials (Influx v1 `p=`).
                log.warn(|| format!("{peer} {method} {}: answered 408: {cut}", uri.path()));
            }
            response
        })
    }
}

/// A request body that must arrive in time: whole within `body_timeout` of the headers,
/// and, once `body_rate_grace` has passed, at `min_body_rate` or faster (by the grace plus
/// `t`, `min_body_rate × t` bytes). Fails with a [`BodyCut`] otherwise.
///
/// The bounds are checked only while the body is waiting for the client, so a body that
/// completes is never refused after the fact, and a client that keeps the socket busy
/// still meets the deadline the first time it pauses.
pub(crate) struct TimedBody {
    inner: Incoming,
    patience: Patience,
    started: Instant,
    received: u64,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    state: Arc<ConnState>,
    failed: bool,
}

impl TimedBody {
    fn new(inner: Incoming, patience: Patience, state: Arc<ConnState>) -> Self {
        TimedBody {
            inner,
            patience,
            started: Instant::now(),
            received: 0,
            sleep: None,
            state,
            failed: false,
        }
    }

    /// When the body is next due, and which bound that is; `None` when both are off.
    fn due(&self) -> Option<(Instant, Reason)> {
        let p = &self.patience;
        let whole = p
            .body_timeout
            .and_then(|t| self.started.checked_add(t))
            .map(|at| (at, Reason::BodyTimeout));
        let rate = (p.min_body_rate > 0)
            .then(|| {
                let earned =
                    Duration::try_from_secs_f64(self.received as f64 / p.min_body_rate as f64)
                        .unwrap_or(Duration::MAX);
                self.started
                    .checked_add(p.body_rate_grace)?
                    .checked_add(earned)
            })
            .flatten()
            .map(|at| (at, Reason::BodyRate));
        match (whole, rate) {
            (Some(w), Some(r)) => Some(if r.0 < w.0 { r } else { w }),
            (w, r) => w.or(r),
        }
    }

    fn cut(&mut self, reason: Reason) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.failed = true;
        let cut = BodyCut {
            reason,
            received: self.received,
            after: self.started.elapsed(),
            patience: self.patience,
        };
        *self.state.cut.lock() = Some(cut.clone());
        Poll::Ready(Some(Err(Box::new(cut))))
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let Some((due, reason)) = this.due() else {
            return Poll::Pending;
        };
        if Instant::now() >= due {
            return this.cut(reason);
        }
        let due = tokio::time::Instant::from_std(due);
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if sleep.deadline() != due {
            sleep.as_mut().reset(due);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => this.cut(reason),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a body was given up on: the error a [`TimedBody`] returns, and the 408's message.
#[derive(Debug, Clone)]
pub(crate) struct BodyCut {
    /// [`Reason::BodyTimeout`] or [`Reason::BodyRate`].
    pub(crate) reason: Reason,
    received: u64,
    after: Duration,
    patience: Patience,
}

impl std::fmt::Display for BodyCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (received, after) = (self.received, self.after.as_secs_f64());
        match self.reason {
            Reason::BodyRate => write!(
                f,
                "the request body arrived slower than ingest.http.min_body_rate ({} bytes/s \
                 after {}): {received} bytes in {after:.1}s",
                self.patience.min_body_rate,
                humantime::format_duration(self.patience.body_rate_grace)
            ),
            _ => write!(
                f,
                "the request body did not arrive within ingest.http.body_timeout ({}): \
                 {received} bytes in {after:.1}s",
                human(self.patience.body_timeout)
            ),
        }
    }
}

impl std::error::Error for BodyCut {}

/// Finds a [`BodyCut`] behind the error of a body read (the router and `Limited` wrap it).
pub(crate) fn body_cut<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyCut> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(cut) = e.downcast_ref::<BodyCut>() {
            return Some(cut);
        }
        at = e.source();
    }
    None
}

/// Warnings about clients, at most one per [`LOG_EVERY`] with the number held back: a
/// client that times out on purpose must not flood the log either.
#[derive(Default)]
struct Warnings {
    inner: Mutex<(Option<Instant>, u64)>,
}

impl Warnings {
    fn warn(&self, message: impl FnOnce() -> String) {
        let held = {
            let mut s = self.inner.lock();
            let now = Instant::now();
            if s.0.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
                s.1 += 1;
                return;
            }
            s.0 = Some(now);
            std::mem::take(&mut s.1)
        };
        if held > 0 {
            warn!("ingest: {} ({held} similar messages suppressed)", message());
        } else {
            warn!("ingest: {}", message());
        }
    }
}
