//! Accepting connections for both front ends: a connection limit, and for
//! HTTP/1 header-read, idle keep-alive and body-progress timeouts, so that
//! idle, half-sent or trickling connections cannot pile up.

use super::{ServeError, Serving};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// Bounds on connections (both front ends; the timeouts are HTTP/1's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once per listener; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, counted from when the
    /// connection opens or the previous answer was sent (so it is also the
    /// keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// Longest pause while a request body is being received.
    pub body_progress_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_progress_timeout: Duration::from_secs(10),
        }
    }
}

/// A connection holding one of the listener's connection slots.
#[derive(Debug)]
pub struct Limited<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Limited<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Accepts connections from `listener` (with `TCP_NODELAY`) while fewer
/// than `max` are open; past that, each new one is closed at once (a clear
/// refusal instead of a growing backlog). Stops when the receiver is dropped.
pub fn accept_limited(listener: TcpListener, max: usize) -> mpsc::Receiver<Limited<TcpStream>> {
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(max.max(1)));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, max, "connection limit reached; closing a new connection");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            if tx
                .send(Limited {
                    io: stream,
                    _slot: slot,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

/// The accepted connections as the stream `tonic`'s `serve_with_incoming` takes.
pub fn incoming(
    rx: mpsc::Receiver<Limited<TcpStream>>,
) -> impl tokio_stream::Stream<Item = std::io::Result<Limited<TcpStream>>> {
    tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}

/// Serves the HTTP/REST front end of `serving` on `listener` until
/// `shutdown` resolves, then lets open connections finish their requests.
///
/// # Errors
/// Never in practice; the signature leaves room for listener failures.
pub async fn serve_http(
    listener: TcpListener,
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let limits = serving.config().connections;
    serve_router(listener, super::http::router(serving), limits, shutdown).await
}

/// Serves any axum `router` on `listener` within `limits` (the connection
/// cap, the header timeout) until `shutdown` resolves, then lets open
/// connections finish their requests: the runner's front end and the
/// gateway's.
///
/// # Errors
/// Never in practice; the signature leaves room for listener failures.
pub async fn serve_router(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut accepted = accept_limited(listener, limits.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            c = accepted.recv() => match c { Some(c) => c, None => break },
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let serve = builder.serve_connection(hyper_util::rt::TokioIo::new(conn), service);
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            tokio::pin!(serve);
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = serve.as_mut() => {}
                () = stopping => {
                    serve.as_mut().graceful_shutdown();
                    let _ = serve.await;
                }
            }
        });
    }
    drop(accepted);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Waits up to `timeout` for the next frame of a request body.
///
/// # Errors
/// [`ServeError::InvalidInput`] when the client stops sending for that long.
pub(super) async fn next_frame<B>(
    body: &mut B,
    timeout: Duration,
) -> Result<Option<Result<http_body::Frame<B::Data>, B::Error>>, ServeError>
where
    B: http_body::Body + Unpin,
{
    let next = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
    tokio::time::timeout(timeout, next).await.map_err(|_| {
        ServeError::InvalidInput(format!(
            "the request body stalled: no bytes for {} ms",
            timeout.as_millis()
        ))
    })
}
