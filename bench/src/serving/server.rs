//! The in-process server the serving bench talks to, and the client-side
//! helpers: requests with raw tensor contents, reading answers, pushing.

use anyhow::{Context, Result, anyhow, ensure};
use bytes::Bytes;
use conduit_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use conduit_proto::inference::model_infer_request::InferInputTensor;
use conduit_proto::inference::{ModelInferRequest, ModelInferResponse};
use conduit_registry::{ExecutorHints, Kind, PushProgress, RegistryClient, Tenant, TenantLimits};
use conduit_runner::{Node, NodeConfig, Serving};
use conduit_runtime::Runtime;
use conduit_types::NamedTensors;
use std::path::{Path, PathBuf};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// A tokio runtime that may be dropped inside another runtime's task.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        // A plain drop inside another runtime's task would panic.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The in-process server: its runtime, address, key and data plane.
pub(crate) struct Server {
    runtime: OwnRuntime,
    pub(crate) url: String,
    pub(crate) key: String,
    pub(super) authorization: MetadataValue<Ascii>,
    pub(crate) serving: Serving,
    pub(super) tenant: Tenant,
    pub(super) components: Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
    pub(super) scratch: PathBuf,
}

impl Server {
    /// Opens a registry in `scratch` and serves it with the data plane on
    /// `127.0.0.1:0`.
    pub(crate) async fn start(scratch: PathBuf) -> Result<Self> {
        let _ = std::fs::remove_dir_all(&scratch);
        let runtime = OwnRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("conduit-server")
                .build()?,
        ));
        let node = Node::local(NodeConfig::new(&scratch), TenantLimits::default())?;
        let key = node
            .bootstrap
            .clone()
            .context("fresh registry has an admin key")?
            .api_key;
        let registry = node.registry.clone().context("registry in process")?;
        let tenant = registry.authenticate(&key)?;
        let (serving, components) = (node.serving.clone(), node.runtime.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // As `conduit dev` serves: both services on one listener, through
        // the one node builder (TCP_NODELAY on every accepted socket).
        let handle = runtime.0.as_ref().expect("server runtime").handle();
        let task = handle.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            node.serve(listener, None, async {
                let _ = stopped.await;
            })
            .await?;
            Ok(())
        });
        Ok(Self {
            runtime,
            url,
            authorization: format!("Bearer {key}").parse()?,
            key,
            serving,
            tenant,
            components,
            stop: Some(stop),
            task: Some(task),
            scratch,
        })
    }

    /// Runs `future` on the server's runtime (as the gRPC handlers run).
    pub(crate) async fn on_server<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let runtime = self.runtime.0.as_ref().expect("server runtime");
        Ok(runtime.spawn(future).await?)
    }

    pub(super) async fn client(&self) -> Result<GrpcInferenceServiceClient<Channel>> {
        let channel = Endpoint::from_shared(self.url.clone())?.connect().await?;
        Ok(GrpcInferenceServiceClient::new(channel))
    }

    pub(crate) async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Sends one `ModelInfer` with the key.
pub(super) async fn infer(
    client: &mut GrpcInferenceServiceClient<Channel>,
    authorization: &MetadataValue<Ascii>,
    request: ModelInferRequest,
) -> Result<ModelInferResponse> {
    let model = request.model_name.clone();
    let mut r = tonic::Request::new(request);
    r.metadata_mut()
        .insert("authorization", authorization.clone());
    client
        .model_infer(r)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| {
            anyhow!(
                "ModelInfer `{model}` failed: {:?}: {}",
                s.code(),
                s.message()
            )
        })
}

/// A request carrying `inputs` as `raw_input_contents`.
pub(super) fn request(model: &str, inputs: &NamedTensors) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: inputs
            .iter()
            .map(|(name, t)| InferInputTensor {
                name: name.clone(),
                datatype: t.dtype().as_str().into(),
                shape: t.shape().to_vec(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|(_, t)| t.data().clone()).collect(),
        ..Default::default()
    }
}

/// The raw bytes of output `name`.
pub(super) fn output<'a>(
    response: &'a ModelInferResponse,
    name: &str,
) -> Result<(&'a [i64], &'a Bytes)> {
    let i = response
        .outputs
        .iter()
        .position(|o| o.name == name)
        .with_context(|| format!("response has no output `{name}`"))?;
    let raw = response
        .raw_output_contents
        .get(i)
        .with_context(|| format!("output `{name}` has no raw contents"))?;
    Ok((&response.outputs[i].shape, raw))
}

pub(super) fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Checks the response names what ran (`conduit.digest`).
pub(super) fn check_digest(response: &ModelInferResponse) -> Result<()> {
    ensure!(
        response
            .parameters
            .get("conduit.digest")
            .is_some_and(|p| p.parameter_choice.is_some()),
        "response of `{}` lacks the `conduit.digest` parameter: {:?}",
        response.model_name,
        response.parameters.keys().collect::<Vec<_>>()
    );
    Ok(())
}

pub(crate) async fn push_file(
    client: &RegistryClient,
    kind: Kind,
    name: &str,
    bytes: &[u8],
    executor: ExecutorHints,
) -> Result<()> {
    let (digest, _) = client.upload(bytes, &PushProgress::default()).await?;
    client
        .put_manifest(kind, name, "1.0.0", &digest, &executor, &[], &[])
        .await
        .with_context(|| format!("registering {kind} `{name}`"))?;
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
