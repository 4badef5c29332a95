//! Capture of a guest's stdout and stderr: a bounded in-memory buffer per stream, drained
//! after every call and forwarded to the log with the plugin's name.
//!
//! wasmtime-wasi's `MemoryOutputPipe` caps the stream's whole lifetime and then fails
//! writes, which makes Rust's `eprintln!` panic inside the guest; this pipe instead drops
//! what does not fit into the current call's buffer and counts it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The most output kept per stream and call; the rest is dropped (and counted).
pub(crate) const OUTPUT_CAP_PER_CALL: usize = 64 << 10;

/// The most bytes one `write` may carry (the permit `check_write` hands out).
const WRITE_PERMIT: usize = 64 << 10;

#[derive(Debug, Default)]
struct Buffer {
    data: Vec<u8>,
    dropped: usize,
}

/// One captured stream. Clones share the buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct CapturedOutput {
    buffer: Arc<Mutex<Buffer>>,
}

impl CapturedOutput {
    fn append(&self, bytes: &[u8]) {
        let mut b = self.buffer.lock();
        let room = OUTPUT_CAP_PER_CALL.saturating_sub(b.data.len());
        let keep = bytes.len().min(room);
        b.data.extend_from_slice(&bytes[..keep]);
        b.dropped += bytes.len() - keep;
    }

    /// Takes what was written since the last call: the text and how many bytes were dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, usize) {
        let mut b = self.buffer.lock();
        let dropped = std::mem::take(&mut b.dropped);
        (std::mem::take(&mut b.data), dropped)
    }

    /// Writes what the guest printed since the last call to the log, one event per line.
    pub(crate) fn forward(&self, instance: &str, stream: &'static str) {
        let (data, dropped) = self.take();
        if !data.is_empty() {
            for line in String::from_utf8_lossy(&data).lines() {
                tracing::info!(plugin = %instance, stream, "{line}");
            }
        }
        if dropped > 0 {
            tracing::warn!(
                plugin = %instance,
                stream,
                "plugin wrote more than {OUTPUT_CAP_PER_CALL} bytes to {stream} in one call; \
                 {dropped} bytes were dropped"
            );
        }
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
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let out = CapturedOutput::default();
        out.append(&vec![b'a'; OUTPUT_CAP_PER_CALL - 1]);
        out.append(b"bcd");
        let (data, dropped) = out.take();
        assert_eq!(data.len(), OUTPUT_CAP_PER_CALL);
        assert_eq!(dropped, 2);
        // Drained: the next call starts empty.
        assert_eq!(out.take(), (Vec::new(), 0));
    }
}
