//! Client faults on the gRPC wire answer INVALID_ARGUMENT, not INTERNAL.
//!
//! tonic decodes a request before any handler runs, and answers what it
//! cannot decode with INTERNAL: a body that is not the protobuf message
//! (`tonic-prost` maps every `prost::DecodeError` to INTERNAL), a message
//! with the compressed flag set and no `grpc-encoding`, a length prefix past
//! the end of the body, a flag other than 0 or 1, a corrupt compressed
//! message, no message at all. Our API reserves INTERNAL for the server's
//! own failures (traps, models failing: docs/api.md), so those are the
//! client's fault and answer INVALID_ARGUMENT.
//!
//! Why a layer over the whole server, and how it tells a decoding failure
//! from a handler's INTERNAL:
//!
//! - Framing is checked here, not guessed from tonic's messages: the layer
//!   reads the request body's 5-byte message prefixes as they pass (a few
//!   comparisons per frame, no copy) and records the first fault. An
//!   INTERNAL answer to a request whose framing was broken is rewritten,
//!   with a message that says what was wrong.
//! - A protobuf decoding failure cannot be seen without the message type,
//!   which only the generated service knows. A codec of our own
//!   (`codec_path` in `build.rs`) would be shared with the generated
//!   *clients*, where an undecodable *answer* is the server's fault and must
//!   stay INTERNAL (the gateway relays runners' answers). So the layer
//!   rewrites an INTERNAL whose message is exactly `tonic-prost`'s
//!   (`failed to decode Protobuf message: …`, prost's `DecodeError` text)
//!   and only while the request body was not read to its end: tonic reads a
//!   unary request to its end before the handler runs, so a handler's own
//!   INTERNAL (even one relaying such a text from a client call) is never
//!   touched; a streaming handler stops reading at the message that failed.
//! - tonic's messages that only a server decoding a *request* produces
//!   (`Missing request message.`, `Error decompressing: …, while sending
//!   request`) are rewritten as they are, matched exactly.
//!
//! Every answer tonic sends as a status alone (trailers-only: a handler's
//! error, a decoding failure) also has its message capped at
//! [`MAX_MESSAGE_BYTES`]: the last guard against an echo too large for a
//! client's metadata limit.

use bytes::Bytes;
use conduit_types::{MAX_MESSAGE_BYTES, cap_message};
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::{Code, Status};

/// The message `tonic-prost` gives a request that is not its protobuf
/// message starts with this (prost's `DecodeError` display).
const PROST_DECODE: &str = "failed to decode Protobuf message: ";
/// tonic's answer to a unary call whose body holds no message.
const MISSING_MESSAGE: &str = "Missing request message.";
/// tonic's answer to a request message that does not decompress starts with
/// the first and ends with the second (the second is the request side's).
const DECOMPRESS: (&str, &str) = ("Error decompressing: ", ", while sending request");

/// A tower layer for a tonic server: a request's broken framing or
/// undecodable message answers INVALID_ARGUMENT, and every status's message
/// is capped (see the [module docs](self) for how and why).
///
/// ```
/// // Then `.add_service(…)` and serve, as with any tonic server.
/// let _server = tonic::transport::Server::builder().layer(conduit_proto::ClientFaultLayer);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFaultLayer;

impl<S> tower::Layer<S> for ClientFaultLayer {
    type Service = ClientFaults<S>;

    fn layer(&self, inner: S) -> ClientFaults<S> {
        ClientFaults { inner }
    }
}

/// The service [`ClientFaultLayer`] makes.
#[derive(Debug, Clone)]
pub struct ClientFaults<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<Body>> for ClientFaults<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // `identity` is no encoding (tonic reads it so).
        let encoded = request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() != b"identity");
        let seen = Arc::new(Seen::default());
        let request = request.map(|body| Body::new(Framing::new(body, encoded, seen.clone())));
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            settle(&mut response, &seen);
            Ok(response)
        })
    }
}

/// Rewrites a trailers-only answer (tonic leaves its [`Status`] in the
/// response's extensions): a client fault becomes INVALID_ARGUMENT, and a
/// message over the cap is cut.
fn settle<B>(response: &mut http::Response<B>, seen: &Seen) {
    let Some(status) = response.extensions().get::<Status>().cloned() else {
        return;
    };
    let (code, message) = match client_fault(&status, seen) {
        Some(message) => (Code::InvalidArgument, message),
        None if status.message().len() > MAX_MESSAGE_BYTES => {
            (status.code(), status.message().to_string())
        }
        None => return,
    };
    let message = cap_message(message);
    let mut headers = http::HeaderMap::new();
    if Status::new(code, message.clone())
        .add_header(&mut headers)
        .is_err()
    {
        return;
    }
    for name in [Status::GRPC_STATUS, Status::GRPC_MESSAGE] {
        match headers.remove(&name) {
            Some(value) => response.headers_mut().insert(name, value),
            None => response.headers_mut().remove(name),
        };
    }
    let replaced = Status::with_details_and_metadata(
        code,
        message,
        Bytes::copy_from_slice(status.details()),
        status.metadata().clone(),
    );
    response.extensions_mut().insert(replaced);
}

/// The message an INTERNAL `status` should carry as INVALID_ARGUMENT, when
/// it answers a request the client got wrong.
fn client_fault(status: &Status, seen: &Seen) -> Option<String> {
    if status.code() != Code::Internal {
        return None;
    }
    if let Some(fault) = seen.fault.get() {
        return Some(fault.to_string());
    }
    let message = status.message();
    let undecodable = message.starts_with(PROST_DECODE) && !seen.ended.load(Ordering::Acquire);
    let missing = message == MISSING_MESSAGE && seen.messages.load(Ordering::Acquire) == 0;
    let corrupt = message.starts_with(DECOMPRESS.0) && message.ends_with(DECOMPRESS.1);
    if undecodable || corrupt {
        Some(message.to_string())
    } else if missing {
        Some("the request holds no message".into())
    } else {
        None
    }
}

/// What the layer saw of one request body.
#[derive(Debug, Default)]
struct Seen {
    /// The first framing fault.
    fault: OnceLock<Fault>,
    /// Whole messages read.
    messages: AtomicU64,
    /// Whether the body was read to its end (or its trailers).
    ended: AtomicBool,
}

/// A request body's gRPC framing gone wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Flag 1 (compressed) without a `grpc-encoding`.
    CompressedWithoutEncoding,
    /// A flag other than 0 or 1.
    InvalidFlag(u8),
    /// The body ends inside a message's 5-byte prefix.
    PartialPrefix(usize),
    /// The body ends before the length its prefix declared.
    Truncated {
        /// The length the prefix declared.
        declared: u32,
        /// The bytes that came.
        arrived: u64,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed gRPC request: ")?;
        match self {
            Self::CompressedWithoutEncoding => f.write_str(
                "a message has the compressed flag set, but the request names no grpc-encoding",
            ),
            Self::InvalidFlag(flag) => {
                write!(
                    f,
                    "a message has compressed flag {flag} (valid flags are 0 and 1)"
                )
            }
            Self::PartialPrefix(n) => write!(
                f,
                "the body ends {n} bytes into a message's 5-byte length prefix"
            ),
            Self::Truncated { declared, arrived } => write!(
                f,
                "a message's length prefix declares {declared} bytes, but the body ends after \
                 {arrived}"
            ),
        }
    }
}

/// A request body that reads gRPC framing as it passes: each message's
/// 5-byte prefix (compressed flag, big-endian length), then skips the
/// message. It hands every frame on unchanged.
struct Framing {
    inner: Body,
    /// The request names a `grpc-encoding`: flag 1 is allowed.
    encoded: bool,
    prefix: [u8; 5],
    /// Bytes of `prefix` read so far.
    have: usize,
    /// Bytes of the current message still to come.
    left: u64,
    /// The length the current message's prefix declared.
    declared: u32,
    seen: Arc<Seen>,
}

impl Framing {
    fn new(inner: Body, encoded: bool, seen: Arc<Seen>) -> Self {
        Self {
            inner,
            encoded,
            prefix: [0; 5],
            have: 0,
            left: 0,
            declared: 0,
            seen,
        }
    }

    fn fault(&self, fault: Fault) {
        let _ = self.seen.fault.set(fault);
    }

    fn scan(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.seen.fault.get().is_none() {
            if self.left > 0 {
                let n = usize::try_from(self.left).map_or(data.len(), |l| l.min(data.len()));
                data = &data[n..];
                self.left -= n as u64;
                if self.left == 0 {
                    self.seen.messages.fetch_add(1, Ordering::AcqRel);
                }
                continue;
            }
            let n = (self.prefix.len() - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < self.prefix.len() {
                continue;
            }
            self.have = 0;
            match self.prefix[0] {
                0 => {}
                1 if self.encoded => {}
                1 => self.fault(Fault::CompressedWithoutEncoding),
                flag => self.fault(Fault::InvalidFlag(flag)),
            }
            let [_, a, b, c, d] = self.prefix;
            self.declared = u32::from_be_bytes([a, b, c, d]);
            self.left = u64::from(self.declared);
            if self.left == 0 {
                self.seen.messages.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn end(&mut self) {
        if self.have > 0 {
            self.fault(Fault::PartialPrefix(self.have));
        } else if self.left > 0 {
            self.fault(Fault::Truncated {
                declared: self.declared,
                arrived: u64::from(self.declared) - self.left,
            });
        }
        self.seen.ended.store(true, Ordering::Release);
    }
}

impl http_body::Body for Framing {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.scan(data);
                } else if frame.is_trailers() {
                    self.end();
                }
            }
            Poll::Ready(None) => self.end(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(encoded: bool) -> Framing {
        Framing::new(Body::empty(), encoded, Arc::default())
    }

    fn message(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn whole_messages_in_any_chunking_are_no_fault() {
        let mut body = message(0, b"hello");
        body.extend(message(0, b""));
        body.extend(message(0, &[7; 300]));
        for chunk in [1, 2, 5, 6, 64, body.len()] {
            let mut f = framing(false);
            for piece in body.chunks(chunk) {
                f.scan(piece);
            }
            f.end();
            assert_eq!(f.seen.fault.get(), None, "chunks of {chunk}");
            assert_eq!(f.seen.messages.load(Ordering::Relaxed), 3);
            assert!(f.seen.ended.load(Ordering::Relaxed));
        }
    }

    #[test]
    fn compressed_flag_needs_an_encoding() {
        let mut f = framing(false);
        f.scan(&message(1, b"x"));
        assert_eq!(f.seen.fault.get(), Some(&Fault::CompressedWithoutEncoding));
        let mut f = framing(true);
        f.scan(&message(1, b"x"));
        f.end();
        assert_eq!(f.seen.fault.get(), None);
        let mut f = framing(true);
        f.scan(&message(2, b"x"));
        assert_eq!(f.seen.fault.get(), Some(&Fault::InvalidFlag(2)));
    }

    #[test]
    fn a_body_that_ends_early_is_truncated() {
        let mut f = framing(false);
        let mut body = message(0, b"abc");
        body[4] = 10; // declares 10 bytes, 3 follow
        f.scan(&body);
        f.end();
        assert_eq!(
            f.seen.fault.get(),
            Some(&Fault::Truncated {
                declared: 10,
                arrived: 3
            })
        );
        let mut f = framing(false);
        f.scan(&[0, 0]);
        f.end();
        assert_eq!(f.seen.fault.get(), Some(&Fault::PartialPrefix(2)));
        let mut f = framing(false);
        f.scan(&message(0, &[0xff; 4])[..5]);
        f.scan(&[0xff; 2]);
        f.end();
        assert!(f.seen.fault.get().is_some());
        assert!(
            f.seen
                .fault
                .get()
                .unwrap()
                .to_string()
                .contains("declares 4 bytes")
        );
    }

    fn answered(status: Status, seen: &Seen) -> Status {
        let mut response = status.into_http::<()>();
        settle(&mut response, seen);
        let from_headers = Status::from_header_map(response.headers()).unwrap();
        let kept = response.extensions().get::<Status>().unwrap();
        assert_eq!(kept.code(), from_headers.code());
        assert_eq!(kept.message(), from_headers.message());
        from_headers
    }

    #[test]
    fn tonic_decoding_failures_become_invalid_argument() {
        let seen = Seen::default();
        let s = answered(
            Status::internal("failed to decode Protobuf message: invalid varint"),
            &seen,
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "failed to decode Protobuf message: invalid varint"
        );
        let s = answered(Status::internal(MISSING_MESSAGE), &seen);
        assert_eq!(s.code(), Code::InvalidArgument);
        let s = answered(
            Status::internal("Error decompressing: corrupt deflate stream, while sending request"),
            &seen,
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        let framed = Seen::default();
        let _ = framed.fault.set(Fault::CompressedWithoutEncoding);
        let s = answered(
            Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ),
            &framed,
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("no grpc-encoding"), "{}", s.message());
    }

    #[test]
    fn a_handlers_internal_stays_internal() {
        // Read to its end: the handler ran, whatever its message says.
        let ended = Seen::default();
        ended.ended.store(true, Ordering::Relaxed);
        for message in [
            "failed to decode Protobuf message: invalid varint",
            "component `x` trapped: unreachable",
            "Error decompressing: corrupt deflate stream, while receiving response with status: 200 OK",
        ] {
            let s = answered(Status::internal(message), &ended);
            assert_eq!(s.code(), Code::Internal, "{message}");
            assert_eq!(s.message(), message);
        }
        let s = answered(Status::not_found("model `m` not found"), &Seen::default());
        assert_eq!(s.code(), Code::NotFound);
    }

    #[test]
    fn every_status_message_is_capped() {
        let mut status = Status::not_found(format!("model `{}` not found", "x".repeat(17_000)));
        status
            .metadata_mut()
            .insert("conduit-error", "session-not-found".parse().unwrap());
        let s = answered(status, &Seen::default());
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().len() <= MAX_MESSAGE_BYTES);
        assert!(s.message().ends_with("… (cut)"));
        assert_eq!(
            s.metadata().get("conduit-error").unwrap(),
            "session-not-found"
        );
    }
}
