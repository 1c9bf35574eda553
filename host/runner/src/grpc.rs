//! KServe v2 gRPC (`inference.GRPCInferenceService`) over [`Serving`].
//!
//! Server health and metadata answer without a key (probes have none);
//! every model call needs `authorization: Bearer <key>`, which selects the
//! tenant. Errors map to codes in one place ([`ServeError::to_status`]).

use super::{Serving, wire};
use conduit_proto::inference::{self as pb, grpc_inference_service_server as server};
use conduit_registry::Tenant;
use std::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

/// The gRPC inference service.
#[derive(Debug, Clone)]
pub struct InferenceService {
    serving: Serving,
}

impl InferenceService {
    /// Serves `serving`.
    pub fn new(serving: Serving) -> Self {
        Self { serving }
    }

    /// As a tonic service, refusing messages over the configured request
    /// size. Serve it behind [`HoldGuardLayer`](super::HoldGuardLayer) so a
    /// tenant's permit lasts until its answer is sent.
    pub fn into_server(self) -> server::GrpcInferenceServiceServer<Self> {
        let config = self.serving.config();
        let (max_in, max_out) = (config.max_request_bytes, config.max_response_bytes);
        server::GrpcInferenceServiceServer::new(self)
            // tritonclient's `compression_algorithm`: the size limit below
            // holds for the decompressed message too (tonic stops inflating
            // at it). Answers go uncompressed, as Triton's by default.
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Deflate)
            .max_decoding_message_size(max_in)
            // A backstop: answers are checked against the limit before
            // encoding; this allows for the message's own framing.
            .max_encoding_message_size(max_out.saturating_add(1 << 20))
    }

    async fn tenant<T>(&self, request: &Request<T>) -> Result<Tenant, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or(""));
        Ok(self.serving.authenticate(header).await?)
    }
}

/// The most digits a `grpc-timeout` value may have (the gRPC spec's
/// `TimeoutValue`: a positive integer of at most 8 ASCII digits).
pub const MAX_TIMEOUT_DIGITS: usize = 8;

/// Why a `grpc-timeout` value was refused: the caller's bug, answered with
/// INVALID_ARGUMENT (see [`grpc_timeout`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "grpc-timeout `{value}` is not a gRPC timeout ({why}): 1 to 8 ASCII digits, then a unit \
     H, M, S, m, u or n"
)]
pub struct TimeoutError {
    /// The value as sent, clipped for the message.
    pub value: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Parses a `grpc-timeout` value as the gRPC spec writes it: `TimeoutValue
/// TimeoutUnit`, 1 to 8 ASCII digits then one of `H` (hours), `M`
/// (minutes), `S`, `m`, `u`, `n`; `0` reads as zero (a deadline already
/// past), as tonic and grpc-go read it. Pure, total and panic-free on any
/// input (a fuzz target calls it): the largest value, `99999999H`, is far
/// inside what a [`Duration`](std::time::Duration) holds, and the
/// arithmetic is checked anyway.
///
/// ```
/// use conduit_runner::grpc::parse_grpc_timeout;
/// use std::time::Duration;
/// assert_eq!(parse_grpc_timeout("1500m"), Ok(Duration::from_millis(1500)));
/// assert!(parse_grpc_timeout("123456789S").is_err());
/// ```
///
/// # Errors
/// [`TimeoutError`] for an empty value, no digits, more than 8 digits,
/// anything but ASCII digits before the unit, or an unknown unit.
pub fn parse_grpc_timeout(value: &str) -> Result<std::time::Duration, TimeoutError> {
    use std::time::Duration;
    let refuse = |why| TimeoutError {
        value: conduit_types::clip(value).into_owned(),
        why,
    };
    let Some((&unit, digits)) = value.as_bytes().split_last() else {
        return Err(refuse("it is empty"));
    };
    if digits.is_empty() {
        return Err(refuse("no digits before the unit"));
    }
    if digits.len() > MAX_TIMEOUT_DIGITS {
        return Err(refuse("more than 8 digits"));
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(refuse("not ASCII digits before the unit"));
    }
    // At most 8 digits: at most 99,999,999, which no step below overflows.
    let n = digits.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let overflow = || refuse("too large");
    Ok(match unit {
        b'H' => Duration::from_secs(n.checked_mul(3600).ok_or_else(overflow)?),
        b'M' => Duration::from_secs(n.checked_mul(60).ok_or_else(overflow)?),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(refuse("an unknown unit")),
    })
}

/// The deadline a call's `grpc-timeout` metadata sets; `None` without one.
///
/// # Errors
/// [`ServeError::InvalidInput`](super::ServeError::InvalidInput) for a value
/// that is not a gRPC timeout ([`parse_grpc_timeout`]) or not text: a
/// client bug, said as such rather than ignored.
pub fn grpc_timeout(
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Option<std::time::Duration>, super::ServeError> {
    let Some(v) = metadata.get("grpc-timeout") else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| super::ServeError::InvalidInput("grpc-timeout is not ASCII text".into()))?;
    parse_grpc_timeout(text)
        .map(Some)
        .map_err(|e| super::ServeError::InvalidInput(e.to_string()))
}

#[tonic::async_trait]
impl server::GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let ready = self.serving.health();
        if let Err(why) = &ready {
            tracing::debug!("not ready: {why}");
        }
        Ok(Response::new(pb::ServerReadyResponse {
            ready: ready.is_ok(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let ready = match self.serving.ready(&tenant, &r.name, &r.version).await {
            Ok(ready) => ready,
            Err(super::ServeError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "conduit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: super::EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let m = self.serving.resolve(&tenant, &r.name, &r.version).await?;
        let versions = self.serving.versions(&tenant, &m.name).await?;
        let meta = |t: &conduit_registry::TensorSpec| pb::model_metadata_response::TensorMetadata {
            name: t.name.clone(),
            datatype: t.datatype.clone(),
            shape: t.shape.clone(),
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name.clone(),
            versions: versions.into_iter().map(|v| v.version).collect(),
            platform: wire::platform(m.kind).into(),
            inputs: m.signature.inputs.iter().map(meta).collect(),
            outputs: m.signature.outputs.iter().map(meta).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let received = Instant::now();
        let tenant = self.tenant(&request).await?;
        let timeout = grpc_timeout(request.metadata());
        let request = request.into_inner();
        let (model, version) = (request.model_name.clone(), request.model_version.clone());
        let decoded = timeout.and_then(|t| Ok((t, wire::decode_request(request)?)));
        let (timeout, mut infer) = match decoded {
            Ok(decoded) => decoded,
            Err(e) => {
                self.serving
                    .decode_failed(&tenant, &model, &version, &e)
                    .await;
                return Err(e.into());
            }
        };
        infer.received = Some(received);
        if let Some(t) = timeout {
            infer.timeout = Some(infer.timeout.map_or(t, |mine| mine.min(t)));
        }
        let mut answer = self.serving.infer(&tenant, infer).await?;
        let guard = answer.guard.take();
        let mut response = Response::new(wire::encode_response(answer));
        if let Some(guard) = guard {
            response.extensions_mut().insert(guard);
        }
        Ok(response)
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let config = self
            .serving
            .model_config(&tenant, &r.name, &r.version)
            .await?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let stats = self
            .serving
            .statistics(&tenant, &r.name, &r.version)
            .await?;
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: stats.iter().map(|(k, c)| wire::statistics(k, c)).collect(),
        }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let models = self.serving.index(&tenant, r.ready).await?;
        Ok(Response::new(pb::RepositoryIndexResponse {
            models: models
                .into_iter()
                .map(|m| pb::repository_index_response::ModelIndex {
                    name: m.name,
                    version: m.version,
                    state: m.state.into(),
                    reason: m.reason,
                })
                .collect(),
        }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        self.serving
            .load(
                &tenant,
                &r.model_name,
                r.parameters.keys().map(String::as_str),
            )
            .await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        self.serving.unload(&tenant, &r.model_name).await?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_unit_parses() {
        let cases = [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("4S", Duration::from_secs(4)),
            ("1500m", Duration::from_millis(1500)),
            ("250u", Duration::from_micros(250)),
            ("99n", Duration::from_nanos(99)),
            ("0S", Duration::ZERO),
            ("00000007S", Duration::from_secs(7)),
        ];
        for (value, want) in cases {
            assert_eq!(parse_grpc_timeout(value), Ok(want), "{value}");
        }
    }

    #[test]
    fn eight_digits_at_most_and_the_largest_does_not_overflow() {
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(
            parse_grpc_timeout("99999999M"),
            Ok(Duration::from_secs(99_999_999 * 60))
        );
        assert_eq!(
            parse_grpc_timeout("12345678S"),
            Ok(Duration::from_secs(12_345_678))
        );
        for value in [
            "123456789S",
            "999999999H",
            "18446744073709551615H",
            "5124095576030431H",
        ] {
            let e = parse_grpc_timeout(value).unwrap_err();
            assert_eq!(e.why, "more than 8 digits", "{value}");
        }
    }

    #[test]
    fn empty_and_garbage_are_refused() {
        for value in [
            "", "S", "H", "1", "12", "1s", "1h", "1x", "-1S", "+1S", " 1S", "1 S", "1.5S", "1e3m",
            "１S", "1SS", "0x10S", "💥", "1💥",
        ] {
            assert!(parse_grpc_timeout(value).is_err(), "{value:?}");
        }
        let long = "9".repeat(17_000) + "S";
        let message = parse_grpc_timeout(&long).unwrap_err().to_string();
        assert!(
            message.len() < 500 && message.contains("(cut)"),
            "{message}"
        );
    }

    #[test]
    fn the_metadata_reader_says_invalid_argument() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(grpc_timeout(&m).unwrap(), None);
        m.insert("grpc-timeout", "10S".parse().unwrap());
        assert_eq!(grpc_timeout(&m).unwrap(), Some(Duration::from_secs(10)));
        m.insert("grpc-timeout", "123456789S".parse().unwrap());
        let status = grpc_timeout(&m).unwrap_err().to_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("123456789S"),
            "{}",
            status.message()
        );
    }
}
