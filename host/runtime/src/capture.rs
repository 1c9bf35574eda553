//! Guest log capture: `logging.log` records and WASI stdout/stderr, both
//! written to the host's `tracing` log under a per-call byte cap.

use conduit_types::escape_controls;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A byte budget shared by everything one call logs.
#[derive(Debug, Clone)]
pub(crate) struct LogBudget {
    inner: Arc<Mutex<Budget>>,
}

#[derive(Debug)]
struct Budget {
    left: usize,
    dropped: usize,
}

impl LogBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Budget {
                left: bytes,
                dropped: 0,
            })),
        }
    }

    /// Takes up to `len` bytes of budget; returns how many may be kept.
    pub(crate) fn take(&self, len: usize) -> usize {
        let mut b = self.inner.lock().expect("log budget lock");
        let keep = len.min(b.left);
        b.left -= keep;
        b.dropped += len - keep;
        keep
    }

    /// Starts a new call: `bytes` of budget, nothing dropped.
    pub(crate) fn reset(&self, bytes: usize) {
        let mut b = self.inner.lock().expect("log budget lock");
        b.left = bytes;
        b.dropped = 0;
    }

    /// Bytes dropped so far because the budget ran out.
    pub(crate) fn dropped(&self) -> usize {
        self.inner.lock().expect("log budget lock").dropped
    }
}

/// Where a WASI output stream goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// A WASI stdout/stderr that forwards whole lines to `tracing`, within the budget.
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    stream: Stream,
    component: Arc<str>,
    budget: LogBudget,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl CapturedOutput {
    pub(crate) fn new(stream: Stream, component: Arc<str>, budget: LogBudget) -> Self {
        Self {
            stream,
            component,
            budget,
            pending: Arc::default(),
        }
    }

    fn write(&self, buf: &[u8]) {
        let keep = self.budget.take(buf.len());
        let mut pending = self.pending.lock().expect("capture lock");
        pending.extend_from_slice(&buf[..keep]);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            self.emit(&line[..line.len() - 1]);
        }
    }

    /// Emits whatever is left without a trailing newline.
    pub(crate) fn flush(&self) {
        let rest: Vec<u8> = std::mem::take(&mut *self.pending.lock().expect("capture lock"));
        if !rest.is_empty() {
            self.emit(&rest);
        }
    }

    fn emit(&self, line: &[u8]) {
        let lossy = String::from_utf8_lossy(line);
        let text = escape_controls(lossy.trim_end_matches('\r'));
        match self.stream {
            Stream::Stdout => {
                tracing::info!(component = %self.component, stream = "stdout", "{text}")
            }
            Stream::Stderr => {
                tracing::warn!(component = %self.component, stream = "stderr", "{text}")
            }
        }
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Output past the budget is dropped, never refused: a guest whose
        // `println!` fails would panic.
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use conduit_types::escape_controls;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text é"), "plain text é");
        assert_eq!(
            escape_controls("a\nINFO forged line\r\u{1b}[31mred"),
            "a\\nINFO forged line\\r\\u{1b}[31mred"
        );
    }
}
