//! Keeping a tenant's concurrency permit until its answer is on the wire.
//!
//! An answer is built in memory, then written as fast as the client reads.
//! Releasing the permit when the answer is built would let a tenant with a
//! limit of 2 requests hold any number of answers in slow connections; the
//! body carries the permit instead, and drops it with its last byte (or when
//! the connection goes away).

use super::RequestGuard;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A body that holds a [`RequestGuard`] until it is finished or dropped.
///
/// Data comes out in slices of at most [`CHUNK`] bytes (views of the same
/// buffer, no copies): a transport takes the next slice only when it has
/// written the last, so the guard lasts until the answer is nearly all on
/// the wire rather than until one large frame is handed over.
#[derive(Debug)]
pub struct HeldBody<B> {
    inner: B,
    rest: Bytes,
    guard: Option<RequestGuard>,
}

/// The largest slice a [`HeldBody`] hands out at once.
pub const CHUNK: usize = 64 << 10;

impl<B> HeldBody<B> {
    /// `inner`, holding `guard` until its end.
    pub fn new(inner: B, guard: Option<RequestGuard>) -> Self {
        Self {
            inner,
            rest: Bytes::new(),
            guard,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for HeldBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if !self.rest.is_empty() {
            let n = self.rest.len().min(CHUNK);
            let chunk = self.rest.split_to(n);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > CHUNK {
                        self.rest = data.split_off(CHUNK);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None) => {
                self.guard = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

/// A tower layer for the gRPC server: moves the [`RequestGuard`] a handler
/// left in its response's extensions into the response body.
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldGuardLayer;

impl<S> tower::Layer<S> for HoldGuardLayer {
    type Service = HoldGuard<S>;

    fn layer(&self, inner: S) -> HoldGuard<S> {
        HoldGuard { inner }
    }
}

/// The service [`HoldGuardLayer`] makes.
#[derive(Debug, Clone)]
pub struct HoldGuard<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, Req> tower::Service<Req> for HoldGuard<S>
where
    S: tower::Service<Req, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let Some(guard) = response.extensions_mut().remove::<RequestGuard>() else {
                return Ok(response);
            };
            Ok(response.map(|body| tonic::body::Body::new(HeldBody::new(body, Some(guard)))))
        })
    }
}
