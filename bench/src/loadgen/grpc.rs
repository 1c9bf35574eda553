//! KServe v2 gRPC: `ModelInfer` with the inputs as `raw_input_contents` and
//! the outputs read from `raw_output_contents`, as `tritonclient.grpc` and
//! `perf_analyzer -i grpc` send them.

use super::client::{Failure, Target};
use super::workload::{Case, Wire};
use conduit_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use conduit_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use conduit_proto::inference::{ModelInferRequest, ModelInferResponse};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// Answers up to this size are accepted (tonic's default is 4 MiB).
const MAX_MESSAGE: usize = 256 << 20;

/// The request, built once; each send clones it (the tensors' bytes are
/// shared, not copied).
pub struct Encoded {
    request: ModelInferRequest,
    authorization: Option<MetadataValue<Ascii>>,
}

impl Encoded {
    /// Builds the `ModelInferRequest` of `case`.
    ///
    /// # Errors
    /// When the key is not valid header text.
    pub fn new(target: &Target, case: &Case) -> anyhow::Result<Self> {
        let request = ModelInferRequest {
            model_name: target.model.clone(),
            model_version: target.version.clone(),
            inputs: case
                .inputs
                .iter()
                .map(|t| InferInputTensor {
                    name: t.name.clone(),
                    datatype: t.datatype.clone(),
                    shape: t.shape.clone(),
                    ..Default::default()
                })
                .collect(),
            outputs: case
                .outputs
                .iter()
                .map(|name| InferRequestedOutputTensor {
                    name: name.clone(),
                    ..Default::default()
                })
                .collect(),
            raw_input_contents: case.inputs.iter().map(|t| t.data.clone()).collect(),
            ..Default::default()
        };
        let authorization = match &target.key {
            Some(key) => Some(format!("Bearer {key}").parse()?),
            None => None,
        };
        Ok(Self {
            request,
            authorization,
        })
    }
}

/// A gRPC channel (HTTP/2: concurrent requests multiplex on it).
#[derive(Clone)]
pub struct Conn(GrpcInferenceServiceClient<Channel>);

impl Conn {
    /// Connects to `target`.
    ///
    /// # Errors
    /// [`Failure::Connect`].
    pub async fn connect(target: &Target) -> Result<Self, Failure> {
        let channel = Endpoint::from_shared(format!("http://{}", target.host_port()))
            .map_err(|e| Failure::Connect(format!("bad address {}: {e}", target.address)))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| Failure::Connect(format!("{}: {e}", target.address)))?;
        Ok(Self(
            GrpcInferenceServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
        ))
    }

    /// Sends one `ModelInfer`.
    ///
    /// # Errors
    /// [`Failure::Status`] for an error status (transport errors included,
    /// as tonic reports them), [`Failure::Decode`] for a malformed answer.
    pub async fn infer(&mut self, e: &Encoded) -> Result<Vec<Wire>, Failure> {
        let mut request = tonic::Request::new(e.request.clone());
        if let Some(a) = &e.authorization {
            request.metadata_mut().insert("authorization", a.clone());
        }
        let answer = self
            .0
            .model_infer(request)
            .await
            .map_err(|s| Failure::Status {
                kind: format!("grpc {:?}", s.code()),
                message: s.message().to_string(),
            })?
            .into_inner();
        decode(answer)
    }
}

fn decode(answer: ModelInferResponse) -> Result<Vec<Wire>, Failure> {
    if answer.raw_output_contents.len() != answer.outputs.len() {
        return Err(Failure::Decode(format!(
            "{} outputs but {} raw_output_contents",
            answer.outputs.len(),
            answer.raw_output_contents.len()
        )));
    }
    Ok(answer
        .outputs
        .into_iter()
        .zip(answer.raw_output_contents)
        .map(|(o, data)| Wire {
            name: o.name,
            datatype: o.datatype,
            shape: o.shape,
            data,
        })
        .collect())
}
