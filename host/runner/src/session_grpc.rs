//! The session service (`conduit.session.v1.Session`) over [`Serving`] and
//! its [`Sessions`]: open pins modules by digest, run executes one through
//! the same path as a KServe request (limits, batching, metrics) and keeps
//! its outputs as values, fetch returns them.

use crate::session::{MAX_MODULES, SessionBudget, SessionError, Sessions, StoredValue};
use crate::{InferRequest, ServeError, Serving, param};
use conduit_proto::session::v1::{self as pb, session_server as server};
use conduit_registry::{Manifest, Tenant};
use conduit_runtime::{Param, ParamValue};
use conduit_types::{DataType, Tensor, clip};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// The session service of a runner (and of `conduit dev`).
#[derive(Debug, Clone)]
pub struct SessionService {
    serving: Serving,
}

impl SessionService {
    /// Serves sessions over `serving`.
    pub fn new(serving: Serving) -> Self {
        Self { serving }
    }

    /// As a tonic service, with the data plane's message size limits.
    pub fn into_server(self) -> server::SessionServer<Self> {
        let config = self.serving.config();
        let (max_in, max_out) = (config.max_request_bytes, config.max_response_bytes);
        server::SessionServer::new(self)
            .max_decoding_message_size(max_in)
            .max_encoding_message_size(max_out.saturating_add(1 << 20))
    }

    fn sessions(&self) -> &Sessions {
        self.serving.sessions()
    }

    async fn tenant<T>(&self, request: &Request<T>) -> Result<Tenant, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or(""));
        Ok(self.serving.authenticate(header).await?)
    }

    fn budget(&self, tenant: &Tenant) -> SessionBudget {
        let l = self.serving.config().limits.of(&tenant.name);
        SessionBudget {
            max_sessions: l.max_sessions,
            max_bytes: l.session_values_bytes(),
            max_lease: Duration::from_millis(l.session_lease_ms),
        }
    }

    async fn resolve_all(
        &self,
        tenant: &Tenant,
        references: Vec<String>,
    ) -> Result<Vec<(String, Manifest)>, Status> {
        if references.len() > MAX_MODULES {
            return Err(ServeError::InvalidInput(format!(
                "a session holds at most {MAX_MODULES} modules, {} asked",
                references.len()
            ))
            .into());
        }
        let mut out = Vec::with_capacity(references.len());
        for r in references {
            let m = self
                .serving
                .resolve_reference_cached(tenant, &r)
                .await
                .map_err(|e| match e {
                    ServeError::InvalidInput(m) | ServeError::NotFound(m) => {
                        ServeError::NotFound(format!("module `{}`: {m}", clip(&r)))
                    }
                    other => other,
                })?;
            out.push((r, m));
        }
        Ok(out)
    }
}

fn info(reference: String, m: &Manifest) -> pb::ModuleInfo {
    let spec = |t: &conduit_registry::TensorSpec| pb::TensorSpec {
        name: t.name.clone(),
        datatype: t.datatype.clone(),
        shape: t.shape.clone(),
    };
    pb::ModuleInfo {
        reference,
        name: m.name.clone(),
        version: m.version.clone(),
        digest: m.digest.to_string(),
        kind: m.kind.to_string(),
        inputs: m.signature.inputs.iter().map(spec).collect(),
        outputs: m.signature.outputs.iter().map(spec).collect(),
    }
}

/// A wire tensor as a data-plane tensor.
///
/// # Errors
/// INVALID_ARGUMENT naming the input for an unknown type or a size that
/// does not match the shape.
pub fn tensor_from_proto(name: &str, t: pb::Tensor) -> Result<Tensor, ServeError> {
    let dtype: DataType = t
        .datatype
        .parse()
        .map_err(|e| ServeError::InvalidInput(format!("input `{}`: {e}", clip(name))))?;
    Tensor::new(dtype, t.shape, t.data)
        .map_err(|e| ServeError::InvalidInput(format!("input `{}`: {e}", clip(name))))
}

/// A data-plane tensor on the wire (shares its bytes).
pub fn tensor_to_proto(t: &Tensor) -> pb::Tensor {
    pb::Tensor {
        datatype: t.dtype().as_str().to_string(),
        shape: t.shape().to_vec(),
        data: t.data().clone(),
    }
}

fn param_from_proto(name: String, p: pb::Param) -> Option<Param> {
    use pb::param::Value as V;
    let value = match p.value? {
        V::BoolParam(b) => ParamValue::Bool(b),
        V::Int64Param(i) => ParamValue::Int64(i),
        V::StringParam(s) => ParamValue::String(s),
        V::DoubleParam(d) => ParamValue::Double(d),
        V::Uint64Param(u) => ParamValue::Uint64(u),
    };
    Some(param(name, value))
}

#[tonic::async_trait]
impl server::Session for SessionService {
    async fn open(
        &self,
        request: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let modules = self.resolve_all(&tenant, r.modules).await?;
        let infos: Vec<pb::ModuleInfo> = modules.iter().map(|(r, m)| info(r.clone(), m)).collect();
        let (session_id, lease) = if r.session_id.is_empty() {
            self.sessions().open(
                &tenant.name,
                modules,
                Duration::from_millis(r.lease_ms),
                self.budget(&tenant),
            )?
        } else {
            let lease = self
                .sessions()
                .extend(&tenant.name, &r.session_id, modules)?;
            (r.session_id, lease)
        };
        Ok(Response::new(pb::OpenResponse {
            session_id,
            runner_address: String::new(),
            runner_id: String::new(),
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            modules: infos,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let held = self.sessions().heartbeat(&tenant.name, &r.session_id)?;
        Ok(Response::new(pb::HeartbeatResponse {
            lease_ms: u64::try_from(held.lease.as_millis()).unwrap_or(u64::MAX),
            values: held.values,
            bytes: held.bytes,
        }))
    }

    async fn run(
        &self,
        request: Request<pb::RunRequest>,
    ) -> Result<Response<pb::RunResponse>, Status> {
        let received = Instant::now();
        let tenant = self.tenant(&request).await?;
        let timeout = crate::grpc::grpc_timeout(request.metadata())?;
        let r = request.into_inner();
        let mut tensors = Vec::new();
        let mut values = Vec::new();
        for input in r.inputs {
            match input.source {
                Some(pb::run_input::Source::Tensor(t)) => {
                    let t = tensor_from_proto(&input.name, t)?;
                    tensors.push((input.name, t));
                }
                Some(pb::run_input::Source::ValueId(v)) => values.push((input.name, v)),
                None => {
                    return Err(ServeError::InvalidInput(format!(
                        "input `{}` has neither a tensor nor a value id",
                        clip(&input.name)
                    ))
                    .into());
                }
            }
        }
        let (manifest, from_values) =
            self.sessions()
                .prepare(&tenant.name, &r.session_id, &r.module, &r.release, &values)?;
        for name in &r.fetch {
            if !manifest.signature.outputs.iter().any(|o| &o.name == name) {
                return Err(ServeError::InvalidInput(format!(
                    "`{}` has no output `{}` to fetch",
                    manifest.name,
                    clip(name)
                ))
                .into());
            }
        }
        let mut inputs = tensors;
        inputs.extend(from_values);
        let infer = InferRequest {
            model: manifest.name.clone(),
            // Pinned: what was resolved at open runs, whatever tags do since.
            version: manifest.digest.to_string(),
            id: String::new(),
            inputs,
            params: r
                .parameters
                .into_iter()
                .filter_map(|(k, v)| param_from_proto(k, v))
                .collect(),
            outputs: Vec::new(),
            timeout,
            decode: received.elapsed(),
            received: Some(received),
        };
        let mut answer = self.serving.infer(&tenant, infer).await?;
        let guard = answer.guard.take();
        let outputs: Vec<StoredValue> = answer
            .outputs
            .into_iter()
            .map(|(name, tensor)| StoredValue { name, tensor })
            .collect();
        let mut inline = 0usize;
        let mut reply = Vec::with_capacity(outputs.len());
        for v in &outputs {
            let fetched = r.fetch.contains(&v.name);
            if fetched {
                inline = inline.saturating_add(v.tensor.byte_size());
            }
            reply.push(pb::Value {
                name: v.name.clone(),
                value_id: 0,
                datatype: v.tensor.dtype().as_str().to_string(),
                shape: v.tensor.shape().to_vec(),
                tensor: fetched.then(|| tensor_to_proto(&v.tensor)),
            });
        }
        let max = self.serving.config().max_response_bytes;
        if inline > max {
            return Err(ServeError::ResponseTooLarge(format!(
                "the outputs asked for ({inline} bytes) are over the response limit of {max} \
                 bytes: fetch fewer at a time"
            ))
            .into());
        }
        let ids = self
            .sessions()
            .keep(&tenant.name, &r.session_id, outputs, &self.budget(&tenant))
            .map_err(|e: SessionError| e.to_status())?;
        for (v, id) in reply.iter_mut().zip(ids) {
            v.value_id = id;
        }
        let mut response = Response::new(pb::RunResponse {
            outputs: reply,
            digest: manifest.digest.to_string(),
        });
        if let Some(guard) = guard {
            response.extensions_mut().insert(guard);
        }
        Ok(response)
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        // An answer holds memory until sent: fetches count against the
        // tenant's concurrent-request limit like inference does.
        let guard = self.serving.admit_tenant(&tenant)?;
        let r = request.into_inner();
        let tensors = self
            .sessions()
            .fetch(&tenant.name, &r.session_id, &r.value_ids)?;
        let size = tensors
            .iter()
            .fold(0usize, |n, t| n.saturating_add(t.byte_size()));
        let max = self.serving.config().max_response_bytes;
        if size > max {
            return Err(ServeError::ResponseTooLarge(format!(
                "these values ({size} bytes) are over the response limit of {max} bytes: \
                 fetch fewer at a time"
            ))
            .into());
        }
        let mut response = Response::new(pb::FetchResponse {
            tensors: tensors.iter().map(tensor_to_proto).collect(),
        });
        response.extensions_mut().insert(guard);
        Ok(response)
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let released = self
            .sessions()
            .release(&tenant.name, &r.session_id, &r.value_ids)?;
        Ok(Response::new(pb::ReleaseResponse { released }))
    }

    async fn close(
        &self,
        request: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let released = self.sessions().close(&tenant.name, &r.session_id)?;
        Ok(Response::new(pb::CloseResponse { released }))
    }
}
