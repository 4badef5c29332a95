//! Capture of a guest's stdout and stderr: one bounded in-memory budget per call for both
//! streams together (`limits.max_output_bytes`), drained after every call and forwarded to
//! the log with the plugin's name.
//!
//! wasmtime-wasi's `MemoryOutputPipe` caps the stream's whole lifetime and then fails
//! writes, which makes Rust's `eprintln!` panic inside the guest; this pipe instead drops
//! what does not fit into the current call's budget and counts it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::error::format_bytes;

/// The most bytes one `write` may carry (the permit `check_write` hands out).
const WRITE_PERMIT: usize = 64 << 10;

const STREAM_NAMES: [&str; 2] = ["stdout", "stderr"];

#[derive(Debug, Default)]
struct Shared {
    /// The most bytes kept per call, both streams together.
    cap: usize,
    /// What each stream wrote this call (what fit).
    data: [Vec<u8>; 2],
    /// Bytes dropped this call because the budget was spent.
    dropped: usize,
}

/// The captured stdout and stderr of one instance. Clones share the buffers.
#[derive(Debug, Clone)]
pub(crate) struct OutputCapture {
    shared: Arc<Mutex<Shared>>,
}

/// One of the two captured streams, handed to the WASI context.
#[derive(Debug, Clone)]
pub(crate) struct CapturedOutput {
    shared: Arc<Mutex<Shared>>,
    stream: usize,
}

impl OutputCapture {
    /// A capture keeping at most `cap` bytes per call.
    pub(crate) fn new(cap: u64) -> OutputCapture {
        OutputCapture {
            shared: Arc::new(Mutex::new(Shared {
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
                ..Shared::default()
            })),
        }
    }

    /// The guest's stdout.
    pub(crate) fn stdout(&self) -> CapturedOutput {
        CapturedOutput {
            shared: Arc::clone(&self.shared),
            stream: 0,
        }
    }

    /// The guest's stderr.
    pub(crate) fn stderr(&self) -> CapturedOutput {
        CapturedOutput {
            shared: Arc::clone(&self.shared),
            stream: 1,
        }
    }

    /// Takes what was written since the last call: per stream, and how many bytes were
    /// dropped.
    pub(crate) fn take(&self) -> ([Vec<u8>; 2], usize) {
        let mut s = self.shared.lock();
        let dropped = std::mem::take(&mut s.dropped);
        (std::mem::take(&mut s.data), dropped)
    }

    /// The panic message a Rust guest printed to stderr in this call (`panicked at
    /// FILE:LINE:COL: MESSAGE`), if any: a trap after a panic is an `unreachable`
    /// instruction, and this line is what explains it.
    pub(crate) fn panic_message(&self) -> Option<String> {
        let s = self.shared.lock();
        let text = String::from_utf8_lossy(&s.data[1]);
        let mut lines = text.lines();
        let at = lines.find(|l| l.contains("panicked at"))?;
        let at = &at[at.find("panicked at")?..];
        let mut message = at.trim_end_matches(':').to_string();
        if let Some(next) = lines.next().filter(|l| !l.starts_with("note:")) {
            message.push_str(": ");
            message.push_str(next);
        }
        Some(message)
    }

    /// Writes what the guest printed since the last call to the log, one event per line,
    /// and a warning with the count of what the budget dropped.
    pub(crate) fn forward(&self, instance: &str) {
        let (data, dropped) = self.take();
        let cap = self.shared.lock().cap;
        for (stream, data) in STREAM_NAMES.iter().zip(data) {
            if !data.is_empty() {
                for line in String::from_utf8_lossy(&data).lines() {
                    tracing::info!(plugin = %instance, stream, "{line}");
                }
            }
        }
        if dropped > 0 {
            tracing::warn!(
                plugin = %instance,
                "plugin `{instance}` wrote more than limits.max_output_bytes = {} to \
                 stdout/stderr in one call; {dropped} more bytes were dropped",
                format_bytes(cap as u64)
            );
        }
    }
}

impl CapturedOutput {
    fn append(&self, bytes: &[u8]) {
        let mut s = self.shared.lock();
        let used = s.data[0].len() + s.data[1].len();
        let room = s.cap.saturating_sub(used);
        let keep = bytes.len().min(room);
        s.data[self.stream].extend_from_slice(&bytes[..keep]);
        s.dropped += bytes.len() - keep;
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: excess output is dropped, never refused (a refusal would make
        // the guest's `eprintln!` panic).
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_for_both_streams_and_counts_the_rest() {
        let out = OutputCapture::new(10);
        out.stdout().append(b"abcdef");
        out.stderr().append(b"ghijkl");
        let ([stdout, stderr], dropped) = out.take();
        assert_eq!(stdout, b"abcdef");
        assert_eq!(stderr, b"ghij");
        assert_eq!(dropped, 2);
        // Drained: the next call starts empty.
        assert_eq!(out.take(), ([Vec::new(), Vec::new()], 0));
    }

    #[test]
    fn finds_a_rust_panic_message() {
        let out = OutputCapture::new(1 << 10);
        out.stderr().append(
            b"\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom: 42\nnote: run with \
              `RUST_BACKTRACE=1`\n",
        );
        assert_eq!(
            out.panic_message().as_deref(),
            Some("panicked at src/lib.rs:12:9: boom: 42")
        );
        assert_eq!(OutputCapture::new(10).panic_message(), None);
    }
}
