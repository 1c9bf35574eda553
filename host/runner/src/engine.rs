//! Runs what a request names: a model through its executor, a component in
//! the sandbox, or a pipeline's DAG of both — each step as soon as its
//! inputs exist, independent steps concurrently.

use super::{ModelKey, RequestTiming, ServeError, Serving, TenantServing, host_signature, param};
use conduit_registry::{Kind, Manifest, PipelineDef, Step, Tenant, Wire};
use conduit_runtime::{CallContext, GuestError, InferFuture, ModelBackend, Param, ParamValue};
use conduit_types::{NamedTensors, Tensor, clip};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::Instrument;

/// What every step of one request shares.
#[derive(Clone)]
pub(super) struct Ctx {
    pub serving: Serving,
    pub tenant: Tenant,
    pub limits: TenantServing,
    pub deadline: Instant,
}

/// Time one step (or a whole request) spent.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StepTiming {
    /// Waiting in model queues.
    pub queue: Duration,
    /// Running models and components.
    pub compute: Duration,
    /// Executions: batches a model request led (see
    /// [`RunTiming::executions`](conduit_executor::RunTiming)), 1 for a
    /// component call.
    pub executions: u64,
    /// Rows of the batches a model request led (see
    /// [`RunTiming::batch_rows`](conduit_executor::RunTiming)); 0 for a
    /// component call or a pipeline (its model steps count their own).
    pub batch_rows: u64,
}

pub(super) struct StepOutput {
    pub outputs: NamedTensors,
    pub timing: StepTiming,
}

/// Runs a model through its executor's batch queue.
pub(super) async fn model_step(
    ctx: &Ctx,
    manifest: &Manifest,
    inputs: NamedTensors,
) -> Result<StepOutput, ServeError> {
    let executor = ctx.serving.executor(&ctx.tenant, manifest).await?;
    let (outputs, t) = executor
        .infer_for(&ctx.tenant.name, inputs)
        .await
        .map_err(|error| ServeError::Model {
            context: format!("model `{}`", manifest.reference()),
            error,
        })?;
    Ok(StepOutput {
        outputs,
        timing: StepTiming {
            queue: t.queue,
            compute: t.compute,
            executions: t.executions,
            batch_rows: t.batch_rows,
        },
    })
}

/// Runs a component in the sandbox under the tenant's limits, serving its
/// `model.infer` calls from the tenant's models.
pub(super) async fn component_step(
    ctx: &Ctx,
    manifest: &Manifest,
    inputs: NamedTensors,
    params: Vec<Param>,
) -> Result<StepOutput, ServeError> {
    let component = ctx.serving.component(&ctx.tenant, manifest).await?;
    let mut limits = ctx.limits.sandbox();
    limits.deadline = limits
        .deadline
        .min(ctx.deadline.saturating_duration_since(Instant::now()));
    let models = Arc::new(TenantModels { ctx: ctx.clone() });
    let call = CallContext::new(ctx.tenant.name.as_str())
        .with_limits(limits)
        .with_models(models);
    let started = Instant::now();
    let runtime = &ctx.serving.inner.runtime;
    let (result, fresh) = runtime
        .process_traced(&component, inputs, &params, &call)
        .await;
    let metrics = &ctx.serving.inner.metrics;
    if fresh {
        metrics.instantiated(&ctx.tenant.name);
    }
    let outputs = result
        .and_then(|o| component.check_outputs(o))
        .map_err(|error| {
            if error.is_trap() {
                metrics.trapped(&ctx.tenant.name, error.kind());
            }
            ServeError::Component {
                context: format!("component `{}`", manifest.reference()),
                error,
            }
        })?;
    Ok(StepOutput {
        outputs,
        timing: StepTiming {
            queue: Duration::ZERO,
            compute: started.elapsed(),
            executions: 1,
            batch_rows: 0,
        },
    })
}

/// Serves `model.infer` from a component: the name resolves in the calling
/// tenant's namespace and runs through the same executors and queues.
struct TenantModels {
    ctx: Ctx,
}

impl ModelBackend for TenantModels {
    fn infer(&self, name: &str, inputs: NamedTensors) -> InferFuture<'_> {
        let name = name.to_string();
        Box::pin(async move {
            let manifest = self
                .ctx
                .serving
                .resolve_reference_cached(&self.ctx.tenant, &name)
                .await
                .map_err(|_| GuestError::NotFound(format!("model `{}` not found", clip(&name))))?;
            if manifest.kind != Kind::Model {
                return Err(GuestError::InvalidInput(format!(
                    "`{name}` is a {}, not a model",
                    manifest.kind
                )));
            }
            if self
                .ctx
                .serving
                .is_unloaded(&self.ctx.tenant.name, &manifest.name)
            {
                return Err(GuestError::Internal(format!(
                    "model `{name}` is unloaded; load it (RepositoryModelLoad) to use it again"
                )));
            }
            let ctx = &self.ctx;
            counted(
                ctx,
                &manifest,
                super::rows_of(&inputs),
                model_step(ctx, &manifest, inputs),
            )
            .await
            .map(|s| s.outputs)
            .map_err(|e| match e.class() {
                super::StatusClass::InvalidArgument => GuestError::InvalidInput(e.to_string()),
                super::StatusClass::NotFound => GuestError::NotFound(e.to_string()),
                super::StatusClass::ResourceExhausted => {
                    GuestError::ResourceExhausted(e.to_string())
                }
                _ => GuestError::Internal(e.to_string()),
            })
        })
    }
}

impl Serving {
    /// The manifest a step runs now: its pinned digest, or for a step that
    /// follows a tag, what the tag names now (if its signature still fits).
    /// Cached: a pinned pipeline reads nothing from the source per request.
    pub(super) async fn step_manifest(
        &self,
        tenant: &Tenant,
        step: &Step,
    ) -> Result<Manifest, ServeError> {
        if !step.follow {
            return self
                .resolve_reference_cached(tenant, &step.digest.to_string())
                .await;
        }
        let now = self
            .resolve_reference_cached(tenant, &step.uses)
            .await
            .map_err(|e| {
                ServeError::FailedPrecondition(format!(
                    "pipeline step `{}` follows `{}`, which no longer resolves: {e}",
                    step.name, step.uses
                ))
            })?;
        if now.kind != step.kind || now.signature != step.signature {
            return Err(ServeError::FailedPrecondition(format!(
                "pipeline step `{}` follows `{}`, now {} whose signature differs from {} checked at registration; push the pipeline again",
                step.name,
                step.uses,
                now.reference(),
                step.pinned
            )));
        }
        Ok(now)
    }
}

/// Runs one step (or a model a component calls) and counts it in the
/// statistics of the model or component it runs, as Triton counts the
/// composing models of an ensemble.
async fn counted(
    ctx: &Ctx,
    manifest: &Manifest,
    rows: u64,
    run: impl std::future::Future<Output = Result<StepOutput, ServeError>>,
) -> Result<StepOutput, ServeError> {
    let key = ModelKey {
        tenant: ctx.tenant.name.clone(),
        model: manifest.name.clone(),
        version: manifest.version.clone(),
    };
    let metrics = &ctx.serving.inner.metrics;
    let started = Instant::now();
    metrics.begin(&key);
    let result = run.await;
    match &result {
        Ok(out) => metrics.success(
            &key,
            rows,
            out.timing.executions,
            started.elapsed(),
            RequestTiming {
                queue: out.timing.queue,
                infer: out.timing.compute,
                batch_rows: out.timing.batch_rows,
                ..RequestTiming::default()
            },
        ),
        Err(e) => metrics.failure(&key, e.reason(), started.elapsed()),
    }
    result
}

async fn run_step(
    ctx: Ctx,
    step: Step,
    manifest: Manifest,
    inputs: NamedTensors,
    params: Vec<Param>,
) -> Result<StepOutput, ServeError> {
    let in_step = |e: ServeError| match e {
        ServeError::InvalidInput(m) => {
            ServeError::InvalidInput(format!("pipeline step `{}`: {m}", step.name))
        }
        ServeError::Component { context, error } => ServeError::Component {
            context: format!("pipeline step `{}` ({context})", step.name),
            error,
        },
        ServeError::Model { context, error } => ServeError::Model {
            context: format!("pipeline step `{}` ({context})", step.name),
            error,
        },
        other => other,
    };
    if manifest.kind != Kind::Pipeline && ctx.serving.is_unloaded(&ctx.tenant.name, &manifest.name)
    {
        // Triton: a model unloaded explicitly serves no ensemble until it
        // is loaded again.
        return Err(ServeError::Unavailable(format!(
            "pipeline step `{}` uses {} `{}`, which is unloaded; load it (RepositoryModelLoad \
             of `{}` or of this pipeline) to serve the pipeline again",
            step.name, manifest.kind, manifest.name, manifest.name
        )));
    }
    match manifest.kind {
        Kind::Model => counted(
            &ctx,
            &manifest,
            super::rows_of(&inputs),
            model_step(&ctx, &manifest, inputs),
        )
        .await
        .map_err(in_step),
        Kind::Component => counted(
            &ctx,
            &manifest,
            super::rows_of(&inputs),
            component_step(&ctx, &manifest, inputs, params),
        )
        .await
        .map_err(in_step),
        Kind::Pipeline => Err(ServeError::Internal(format!(
            "pipeline step `{}` names a pipeline",
            step.name
        ))),
    }
}

fn step_params(step: &Step, request: &[Param]) -> Vec<Param> {
    let mut params: Vec<Param> = step
        .params
        .iter()
        .map(|(name, v)| {
            let value = match v {
                conduit_registry::ParamValue::Bool(b) => ParamValue::Bool(*b),
                conduit_registry::ParamValue::Int64(i) => ParamValue::Int64(*i),
                conduit_registry::ParamValue::Double(d) => ParamValue::Double(*d),
                conduit_registry::ParamValue::String(s) => ParamValue::String(s.clone()),
            };
            param(name.clone(), value)
        })
        .collect();
    let prefix = format!("{}.", step.name);
    for p in request {
        if let Some(name) = p.name.strip_prefix(&prefix) {
            params.retain(|q| q.name != name);
            params.push(param(name, p.value.clone()));
        }
    }
    params
}

/// Runs a pipeline; returns its outputs, summed timing, and the provenance
/// parameters (`conduit.step.<name>` = digest run).
pub(super) async fn run_pipeline(
    ctx: &Ctx,
    def: Arc<PipelineDef>,
    inputs: NamedTensors,
    request_params: &[Param],
) -> Result<(NamedTensors, StepTiming, Vec<(String, String)>), ServeError> {
    let mut values: HashMap<Wire, Tensor> = inputs
        .into_iter()
        .map(|(name, t)| (Wire::Input(name), t))
        .collect();
    let mut started = vec![false; def.steps.len()];
    let mut finished = 0;
    let mut timing = StepTiming::default();
    let mut provenance = Vec::with_capacity(def.steps.len());
    let mut running: JoinSet<(usize, String, Result<StepOutput, ServeError>)> = JoinSet::new();
    while finished < def.steps.len() {
        for (i, step) in def.steps.iter().enumerate() {
            if started[i] || !step.inputs.iter().all(|w| values.contains_key(&w.from)) {
                continue;
            }
            started[i] = true;
            let manifest = ctx.serving.step_manifest(&ctx.tenant, step).await?;
            let digest = manifest.digest.to_string();
            let inputs: NamedTensors = step
                .inputs
                .iter()
                .map(|w| (w.name.clone(), values[&w.from].clone()))
                .collect();
            let params = step_params(step, request_params);
            let span = tracing::info_span!(
                "step",
                step = %step.name,
                module = %manifest.name,
                version = %manifest.version,
                digest = %manifest.digest,
            );
            let (ctx, step) = (ctx.clone(), step.clone());
            running.spawn(
                async move {
                    let result = run_step(ctx, step, manifest, inputs, params).await;
                    (i, digest, result)
                }
                .instrument(span),
            );
        }
        let Some(joined) = running.join_next().await else {
            return Err(ServeError::Internal(
                "pipeline has steps that can never run".into(),
            ));
        };
        let (i, digest, result) =
            joined.map_err(|e| ServeError::Internal(format!("pipeline step task failed: {e}")))?;
        let out = result?;
        let step = &def.steps[i];
        timing.queue += out.timing.queue;
        timing.compute += out.timing.compute;
        timing.executions += out.timing.executions;
        provenance.push((format!("conduit.step.{}", step.name), digest));
        let mut produced: HashMap<String, Tensor> = out.outputs.into_iter().collect();
        for spec in &step.signature.outputs {
            match produced.remove(&spec.name) {
                Some(t) => {
                    values.insert(
                        Wire::Step {
                            step: step.name.clone(),
                            tensor: spec.name.clone(),
                        },
                        t,
                    );
                }
                None => {
                    return Err(ServeError::Internal(format!(
                        "pipeline step `{}` ({}) returned no output `{}`, which its signature declares",
                        step.name, step.pinned, spec.name
                    )));
                }
            }
        }
        finished += 1;
    }
    let signature = host_signature(&def.signature())?;
    let mut outputs = Vec::with_capacity(def.outputs.len());
    for (out, spec) in def.outputs.iter().zip(&signature.outputs) {
        let tensor = values.get(&out.from).cloned().ok_or_else(|| {
            ServeError::Internal(format!("pipeline output `{}` was not produced", spec.name))
        })?;
        if tensor.dtype() != spec.dtype {
            return Err(ServeError::Internal(format!(
                "pipeline output `{}` is {}, declared {}",
                spec.name,
                tensor.dtype(),
                spec.dtype
            )));
        }
        outputs.push((spec.name.clone(), tensor));
    }
    Ok((outputs, timing, provenance))
}
