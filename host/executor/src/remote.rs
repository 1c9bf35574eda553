//! A model served by an inference server on the same host (a sidecar),
//! reached over KServe v2 gRPC: the path to accelerators whose runtime lives
//! in another process.
//!
//! The worker thread that owns a loaded remote model also owns a small
//! current-thread tokio runtime that drives its gRPC channel, so the
//! executor's plain std threads need no runtime of their own.

use super::{Backend, ExecutorError, LoadedModel, ModelConfig};
use conduit_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use conduit_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use conduit_proto::inference::model_metadata_response::TensorMetadata;
use conduit_proto::inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelReadyRequest,
    ServerLiveRequest, ServerReadyRequest,
};
use conduit_types::{DataType, NamedTensors, Signature, Tensor, TensorSpec};
use std::time::Duration;
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

type Client = GrpcInferenceServiceClient<Channel>;

/// How long `health` waits for ServerLive.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Forwards a model to a KServe v2 gRPC server (`inference.GRPCInferenceService`:
/// Triton, the Conduit sidecar) at a URL on the same host. The served model is
/// the one named `config.name`; the model bytes stay unused, since the server
/// loads its own copy.
///
/// [`Backend::load`] blocks on its own small tokio runtime, so it must run
/// outside any runtime, as the [`Executor`](super::Executor)'s worker threads do.
#[derive(Debug, Clone)]
pub struct RemoteBackend {
    url: String,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl RemoteBackend {
    /// A backend for the server at `url` (`http://127.0.0.1:8001`; a bare
    /// `HOST:PORT` means plain-text HTTP/2). Nothing connects until a model
    /// loads. Connecting and the load-time checks wait up to 5 s, one
    /// inference up to 30 s.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let url = if url.contains("://") {
            url
        } else {
            format!("http://{url}")
        };
        Self {
            url,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// How long connecting and each load-time check may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one inference may take.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, why: impl std::fmt::Display) -> ExecutorError {
        ExecutorError::Unavailable(format!(
            "remote executor at {} is not reachable: {why}",
            self.url
        ))
    }

    async fn connect(&self) -> Result<Client, ExecutorError> {
        let endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| {
                ExecutorError::Unavailable(format!(
                    "remote executor URL `{}` is not valid: {}",
                    self.url,
                    chain(&e)
                ))
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let channel = tokio::time::timeout(self.connect_timeout, endpoint.connect())
            .await
            .map_err(|_| {
                self.unreachable(format!("no connection within {:?}", self.connect_timeout))
            })?
            .map_err(|e| self.unreachable(chain(&e)))?;
        Ok(GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// Connects, checks that the server and the model are ready, and returns
    /// the model's metadata.
    async fn open(
        &self,
        model: &str,
    ) -> Result<(Client, Vec<TensorMetadata>, Vec<TensorMetadata>), ExecutorError> {
        let mut client = self.connect().await?;
        let t = self.connect_timeout;
        let failed = |f: Failure| self.unreachable(f);
        if !call(t, client.server_ready(ServerReadyRequest {}))
            .await
            .map_err(failed)?
            .ready
        {
            return Err(self.unreachable("the server is not ready"));
        }
        let not_served = |why: &str| {
            ExecutorError::Unavailable(format!(
                "remote executor at {} does not serve model `{model}`{why}",
                self.url
            ))
        };
        let ready = ModelReadyRequest {
            name: model.into(),
            version: String::new(),
        };
        match call(t, client.model_ready(ready)).await {
            Ok(r) if r.ready => {}
            Ok(_) => return Err(not_served(" (it is not ready there)")),
            Err(Failure::Status(s)) if s.code() == Code::NotFound => {
                return Err(not_served(&format!(": {}", s.message())));
            }
            Err(f) => return Err(failed(f)),
        }
        let metadata = ModelMetadataRequest {
            name: model.into(),
            version: String::new(),
        };
        let meta = call(t, client.model_metadata(metadata))
            .await
            .map_err(failed)?;
        Ok((client, meta.inputs, meta.outputs))
    }
}

impl Backend for RemoteBackend {
    fn name(&self) -> &'static str {
        "remote"
    }

    fn load(
        &self,
        _bytes: &[u8],
        signature: &Signature,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, ExecutorError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ExecutorError::Unavailable(format!(
                    "remote executor: cannot start its runtime: {e}"
                ))
            })?;
        let (client, inputs, outputs) = rt.block_on(self.open(&config.name))?;
        check_side("input", &signature.inputs, &inputs, true)
            .and_then(|()| check_side("output", &signature.outputs, &outputs, false))
            .map_err(|m| ExecutorError::Load {
                backend: "remote",
                message: format!(
                    "the signature does not match model `{}` at {}: {m}",
                    config.name, self.url
                ),
            })?;
        Ok(Box::new(RemoteModel {
            rt,
            client,
            url: self.url.clone(),
            model: config.name.clone(),
            outputs: signature.outputs.clone(),
            timeout: self.request_timeout,
        }))
    }
}

/// Checks the server's tensors of one side against the signature's: every
/// declared tensor exists with the same datatype and rank, and every
/// dimension agrees where both fix it. With `exhaustive`, the server may
/// have no others (an input it needs would never be sent).
fn check_side(
    side: &str,
    specs: &[TensorSpec],
    remote: &[TensorMetadata],
    exhaustive: bool,
) -> Result<(), String> {
    let names = || {
        let n: Vec<&str> = remote.iter().map(|r| r.name.as_str()).collect();
        n.join(", ")
    };
    for spec in specs {
        let name = &spec.name;
        let r = remote.iter().find(|r| r.name == *name).ok_or_else(|| {
            format!(
                "the server has no {side} `{name}` (its {side}s: {})",
                names()
            )
        })?;
        let dtype: DataType = r.datatype.parse().map_err(|_| {
            format!(
                "{side} `{name}` has datatype {:?} on the server",
                r.datatype
            )
        })?;
        if dtype != spec.dtype {
            return Err(format!(
                "{side} `{name}` is {} but the server's is {dtype}",
                spec.dtype
            ));
        }
        let fits = r.shape.len() == spec.shape.len()
            && r.shape
                .iter()
                .zip(&spec.shape)
                .all(|(a, b)| *a < 0 || *b < 0 || a == b);
        if !fits {
            return Err(format!(
                "{side} `{name}` has shape {:?} but the server's is {:?} (-1: any)",
                spec.shape, r.shape
            ));
        }
    }
    match remote
        .iter()
        .find(|r| !specs.iter().any(|s| s.name == r.name))
    {
        Some(r) if exhaustive => Err(format!(
            "the server's model also takes {side} `{}`, which the signature does not declare",
            r.name
        )),
        _ => Ok(()),
    }
}

/// One worker's connection to the served model.
struct RemoteModel {
    rt: Runtime,
    client: Client,
    url: String,
    model: String,
    outputs: Vec<TensorSpec>,
    timeout: Duration,
}

impl RemoteModel {
    fn down(&self, why: impl std::fmt::Display) -> ExecutorError {
        ExecutorError::Unavailable(format!("remote executor at {} is down: {why}", self.url))
    }

    fn run_error(&self, failure: Failure) -> ExecutorError {
        let status = match failure {
            Failure::Status(s) => s,
            timeout @ Failure::Timeout(_) => return self.down(timeout),
        };
        let message = || {
            format!(
                "model `{}` at {}: {}",
                self.model,
                self.url,
                describe(&status)
            )
        };
        match status.code() {
            Code::InvalidArgument => ExecutorError::InvalidInput(message()),
            Code::Unavailable => self.down(describe(&status)),
            // A status with a source was made up by the client from a
            // transport failure, not sent by the server.
            Code::Unknown | Code::Internal | Code::Cancelled
                if std::error::Error::source(&status).is_some() =>
            {
                self.down(describe(&status))
            }
            _ => ExecutorError::Backend(message()),
        }
    }

    fn request(&self, inputs: &NamedTensors) -> ModelInferRequest {
        ModelInferRequest {
            model_name: self.model.clone(),
            inputs: inputs
                .iter()
                .map(|(name, t)| InferInputTensor {
                    name: name.clone(),
                    datatype: t.dtype().as_str().into(),
                    shape: t.shape().to_vec(),
                    ..Default::default()
                })
                .collect(),
            outputs: self
                .outputs
                .iter()
                .map(|s| InferRequestedOutputTensor {
                    name: s.name.clone(),
                    ..Default::default()
                })
                .collect(),
            raw_input_contents: inputs.iter().map(|(_, t)| t.data().clone()).collect(),
            ..Default::default()
        }
    }

    /// The reply's tensors in the signature's order, checked against it.
    fn outputs(&self, reply: ModelInferResponse) -> Result<NamedTensors, ExecutorError> {
        let bad = |m: String| {
            ExecutorError::Backend(format!(
                "model `{}` at {} sent a malformed reply: {m}",
                self.model, self.url
            ))
        };
        self.outputs
            .iter()
            .map(|spec| {
                let name = &spec.name;
                let (i, out) = reply
                    .outputs
                    .iter()
                    .enumerate()
                    .find(|(_, o)| o.name == *name)
                    .ok_or_else(|| bad(format!("no output `{name}`")))?;
                let dtype: DataType = out
                    .datatype
                    .parse()
                    .map_err(|_| bad(format!("output `{name}` has datatype {:?}", out.datatype)))?;
                if dtype != spec.dtype {
                    return Err(bad(format!(
                        "output `{name}` is {dtype}, not {}",
                        spec.dtype
                    )));
                }
                let fits = out.shape.len() == spec.shape.len()
                    && out
                        .shape
                        .iter()
                        .zip(&spec.shape)
                        .all(|(got, want)| *got >= 0 && (*want < 0 || got == want));
                if !fits {
                    return Err(bad(format!(
                        "output `{name}` has shape {:?}, not {:?} (-1: any)",
                        out.shape, spec.shape
                    )));
                }
                let raw = reply
                    .raw_output_contents
                    .get(i)
                    .ok_or_else(|| bad(format!("output `{name}` has no raw_output_contents")))?;
                let tensor = Tensor::new(dtype, out.shape.clone(), raw.clone())
                    .map_err(|e| bad(format!("output `{name}`: {e}")))?;
                Ok((name.clone(), tensor))
            })
            .collect()
    }
}

impl LoadedModel for RemoteModel {
    fn run(&mut self, inputs: &NamedTensors) -> Result<NamedTensors, ExecutorError> {
        let mut request = tonic::Request::new(self.request(inputs));
        request.set_timeout(self.timeout);
        let reply = self
            .rt
            .block_on(call(self.timeout, self.client.model_infer(request)));
        reply
            .map_err(|f| self.run_error(f))
            .and_then(|r| self.outputs(r))
    }

    fn may_run_inline(&self) -> bool {
        // `run` blocks on a runtime of its own: never on a tokio worker.
        false
    }

    fn health(&self) -> Result<(), ExecutorError> {
        let mut client = self.client.clone();
        let live = self
            .rt
            .block_on(call(
                HEALTH_TIMEOUT,
                client.server_live(ServerLiveRequest {}),
            ))
            .map_err(|f| self.down(f))?;
        if live.live {
            Ok(())
        } else {
            Err(self.down("the server says it is not live"))
        }
    }
}

/// Why a call got no answer.
enum Failure {
    Status(Status),
    Timeout(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => f.write_str(&describe(s)),
            Self::Timeout(t) => write!(f, "no reply within {t:?}"),
        }
    }
}

async fn call<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) => Err(Failure::Status(status)),
        Err(_) => Err(Failure::Timeout(timeout)),
    }
}

/// A status's code and message; for one the client made from a transport
/// failure, that failure and its causes.
fn describe(status: &Status) -> String {
    match std::error::Error::source(status) {
        Some(source) => chain(source),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// An error and its sources, `: `-joined (transport errors hide the cause).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !s.contains(&c) {
            s = format!("{s}: {c}");
        }
        next = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_proto::inference::model_infer_response::InferOutputTensor;

    fn spec(name: &str, dtype: DataType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn reply(datatype: &str, shape: &[i64], raw: &[&[u8]]) -> ModelInferResponse {
        ModelInferResponse {
            outputs: vec![InferOutputTensor {
                name: "y".into(),
                datatype: datatype.into(),
                shape: shape.to_vec(),
                ..Default::default()
            }],
            raw_output_contents: raw.iter().map(|r| r.to_vec().into()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn malformed_replies_are_backend_errors() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = {
            let _entered = rt.enter();
            Endpoint::from_static("http://127.0.0.1:9").connect_lazy()
        };
        let model = RemoteModel {
            rt,
            client: GrpcInferenceServiceClient::new(channel),
            url: "http://127.0.0.1:9".into(),
            model: "add".into(),
            outputs: vec![spec("y", DataType::Fp32, &[-1, 2])],
            timeout: Duration::from_secs(1),
        };
        let good = model.outputs(reply("FP32", &[1, 2], &[&[0; 8]])).unwrap();
        assert_eq!(good[0].1.shape(), [1, 2]);
        let cases = [
            (ModelInferResponse::default(), "no output `y`"),
            (reply("FP16", &[1, 2], &[&[0; 4]]), "is FP16, not FP32"),
            (reply("FLOAT", &[1, 2], &[&[0; 8]]), "datatype \"FLOAT\""),
            (reply("FP32", &[2], &[&[0; 8]]), "shape [2]"),
            (reply("FP32", &[1, 3], &[&[0; 12]]), "shape [1, 3]"),
            (reply("FP32", &[-1, 2], &[&[0; 8]]), "shape [-1, 2]"),
            (reply("FP32", &[1, 2], &[]), "no raw_output_contents"),
            (reply("FP32", &[1, 2], &[&[0; 7]]), "needs 8 bytes, got 7"),
        ];
        for (reply, want) in cases {
            match model.outputs(reply) {
                Err(ExecutorError::Backend(m)) => assert!(m.contains(want), "{m} / {want}"),
                other => panic!("{want}: got {other:?}"),
            }
        }
    }

    #[test]
    fn signatures_match_by_name_datatype_and_rank() {
        let remote = |datatype: &str, shape: &[i64]| TensorMetadata {
            name: "x".into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
        };
        let ours = [spec("x", DataType::Fp32, &[-1, 4])];
        assert!(check_side("input", &ours, &[remote("FP32", &[-1, 4])], true).is_ok());
        assert!(check_side("input", &ours, &[remote("FP32", &[8, -1])], true).is_ok());
        for (theirs, want) in [
            (
                remote("INT64", &[-1, 4]),
                "is FP32 but the server's is INT64",
            ),
            (remote("FP32", &[-1, 4, 1]), "has shape"),
            (remote("FP32", &[-1, 3]), "has shape"),
        ] {
            let m = check_side("input", &ours, &[theirs], true).unwrap_err();
            assert!(m.contains(want) && m.contains("`x`"), "{m}");
        }
        let extra = [
            remote("FP32", &[-1, 4]),
            TensorMetadata {
                name: "mask".into(),
                ..remote("INT64", &[-1, 4])
            },
        ];
        assert!(check_side("output", &ours, &extra, false).is_ok());
        let m = check_side("input", &ours, &extra, true).unwrap_err();
        assert!(m.contains("`mask`"), "{m}");
    }
}
