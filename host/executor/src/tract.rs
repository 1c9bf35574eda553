//! tract: a pure-Rust ONNX engine, CPU only, no shared library.
//!
//! A model loads once into an optimised plan whose dynamic dimensions are
//! tract symbols (`batch` on the first axis, `seq` on the second, unless the
//! model names them), so one plan serves every batch size and sequence
//! length. Matrix products run on a private rayon pool of
//! [`ModelConfig::intra_threads`] threads (tract-linalg's `multithread-mm`);
//! without one tract computes on the calling thread alone.

use super::{Backend, Device, ExecutorError, LoadedModel, ModelConfig};
use bytes::Bytes;
use conduit_types::{DataType, NamedTensors, Signature, Tensor, TensorSpec};
use std::panic::{AssertUnwindSafe, catch_unwind};
use tract_onnx::prelude::multithread::Executor;
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoTValue, RunOptions,
    TDim, TValue, TVec, TypedSimplePlan, TypedSimpleState,
};
use tract_onnx::tract_hir::infer::{Factoid, GenericFactoid, ShapeFactoid};

/// The tract backend. Stateless: each [`Backend::load`] parses and optimises
/// its own copy of the model.
#[derive(Debug, Clone, Copy, Default)]
pub struct TractBackend;

impl TractBackend {
    /// The tract backend; it needs nothing from the environment.
    pub fn new() -> Self {
        Self
    }
}

fn load_err(e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Load {
        backend: "tract",
        message: e.to_string(),
    }
}

/// tract errors carry a chain of contexts; `{:#}` shows all of it.
fn chain(e: &tract_onnx::prelude::TractError) -> String {
    format!("{e:#}")
}

fn run_err(e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Backend(e.to_string())
}

/// Conduit's data type as tract's, where tract has it.
fn datum_type(dtype: DataType) -> Option<DatumType> {
    Some(match dtype {
        DataType::Bool => DatumType::Bool,
        DataType::Uint8 => DatumType::U8,
        DataType::Uint16 => DatumType::U16,
        DataType::Uint32 => DatumType::U32,
        DataType::Uint64 => DatumType::U64,
        DataType::Int8 => DatumType::I8,
        DataType::Int16 => DatumType::I16,
        DataType::Int32 => DatumType::I32,
        DataType::Int64 => DatumType::I64,
        DataType::Fp16 => DatumType::F16,
        DataType::Fp32 => DatumType::F32,
        DataType::Fp64 => DatumType::F64,
        DataType::Bf16 | DataType::Bytes => return None,
    })
}

/// The tract symbol for a dynamic axis the model leaves unnamed: the batch
/// is always the first axis; BERT-style inputs share their second.
fn axis_symbol(model: &InferenceModel, axis: usize) -> TDim {
    match axis {
        0 => model.sym("batch").into(),
        1 => model.sym("seq").into(),
        n => model.sym(&format!("dim{n}")).into(),
    }
}

/// The input fact for `spec`: its dtype, its fixed dimensions, and for each
/// dynamic one the model's own dimension (a number or a named symbol) or
/// else a symbol of ours.
fn input_fact(
    model: &InferenceModel,
    ix: usize,
    spec: &TensorSpec,
) -> Result<InferenceFact, String> {
    let name = &spec.name;
    let dt = datum_type(spec.dtype).ok_or_else(|| {
        format!(
            "input `{name}` is {}, which tract does not take",
            spec.dtype
        )
    })?;
    let declared = model.input_fact(ix).map_err(|e| chain(&e))?;
    if let Some(model_dt) = declared.datum_type.concretize()
        && model_dt != dt
    {
        return Err(format!(
            "input `{name}` is {model_dt:?} in the model but {} in the signature",
            spec.dtype
        ));
    }
    if let GenericFactoid::Only(rank) = declared.shape.rank()
        && rank != spec.shape.len() as i64
    {
        return Err(format!(
            "input `{name}` has rank {rank} in the model but {:?} in the signature",
            spec.shape
        ));
    }
    let dims = spec
        .shape
        .iter()
        .enumerate()
        .map(|(axis, &d)| {
            let model_dim = declared.shape.dim(axis).and_then(|f| f.concretize());
            let dim = match (usize::try_from(d), model_dim) {
                (Ok(d), Some(m)) if m.to_i64().is_ok_and(|m| m != d as i64) => {
                    return Err(format!(
                        "input `{name}` axis {axis} is {m} in the model but {d} in the signature"
                    ));
                }
                (Ok(d), _) => TDim::from(d),
                (Err(_), Some(m)) => m,
                (Err(_), None) => axis_symbol(model, axis),
            };
            Ok(GenericFactoid::Only(dim))
        })
        .collect::<Result<TVec<_>, String>>()?;
    Ok(InferenceFact::dt_shape(dt, ShapeFactoid::closed(dims)))
}

/// A pool of `threads` workers for tract's matrix products (0: one per CPU).
fn executor(threads: usize) -> Result<Executor, ExecutorError> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    if threads == 1 {
        return Ok(Executor::SingleThread);
    }
    // tract panics when the pool cannot start (no threads to be had).
    catch_unwind(|| Executor::multithread_with_name(threads, "conduit-tract")).map_err(|_| {
        ExecutorError::Unavailable(format!("cannot start {threads} threads for tract"))
    })
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn load(
        &self,
        bytes: &[u8],
        signature: &Signature,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, ExecutorError> {
        if let Device::Cuda(_) = config.device {
            return Err(ExecutorError::Unavailable(
                "the tract backend runs on the CPU only; use --backend ort for cuda:N".into(),
            ));
        }
        let mut reader = bytes;
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut reader)
            .map_err(|e| load_err(chain(&e)))?;

        // Inputs: in the model's order, each typed from the signature.
        let names: Vec<String> = model
            .input_outlets()
            .map_err(|e| load_err(chain(&e)))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        if let Some(extra) = signature.inputs.iter().find(|s| !names.contains(&s.name)) {
            return Err(load_err(format!(
                "the signature's input `{}` is not an input of the model (which takes {names:?})",
                extra.name
            )));
        }
        let mut inputs = Vec::with_capacity(names.len());
        for (ix, name) in names.into_iter().enumerate() {
            let spec = signature
                .inputs
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| {
                    load_err(format!(
                        "the model's input `{name}` is not in the signature"
                    ))
                })?;
            let fact = input_fact(&model, ix, spec).map_err(load_err)?;
            model
                .set_input_fact(ix, fact)
                .map_err(|e| load_err(chain(&e)))?;
            inputs.push(InputSpec {
                name,
                dtype: spec.dtype,
                shape: spec.shape.clone(),
            });
        }

        // Outputs: exactly the signature's, in its order.
        if !signature.outputs.is_empty() {
            model
                .select_outputs_by_name(signature.outputs.iter().map(|s| s.name.as_str()))
                .map_err(|e| load_err(chain(&e)))?;
        }
        let typed = model.into_optimized().map_err(|e| load_err(chain(&e)))?;
        let outputs = if signature.outputs.is_empty() {
            typed
                .output_outlets()
                .map_err(|e| load_err(chain(&e)))?
                .iter()
                .enumerate()
                .map(|(ix, o)| {
                    let name = typed
                        .outlet_label(*o)
                        .map_or_else(|| format!("output{ix}"), str::to_owned);
                    let fact = typed.outlet_fact(*o).map_err(|e| load_err(chain(&e)))?;
                    let dtype = data_type(fact.datum_type).ok_or_else(|| {
                        load_err(format!(
                            "output `{name}` is {:?}, which Conduit does not serve",
                            fact.datum_type
                        ))
                    })?;
                    Ok((name, dtype))
                })
                .collect::<Result<Vec<_>, ExecutorError>>()?
        } else {
            for (ix, spec) in signature.outputs.iter().enumerate() {
                let fact = typed.output_fact(ix).map_err(|e| load_err(chain(&e)))?;
                let want = datum_type(spec.dtype).ok_or_else(|| {
                    load_err(format!(
                        "output `{}` is {}, which tract does not return",
                        spec.name, spec.dtype
                    ))
                })?;
                // A shape computation may surface as TDim; it casts to INT64.
                if fact.datum_type != want && fact.datum_type != DatumType::TDim {
                    return Err(load_err(format!(
                        "output `{}` is {:?} in the model but {} in the signature",
                        spec.name, fact.datum_type, spec.dtype
                    )));
                }
            }
            signature
                .outputs
                .iter()
                .map(|s| (s.name.clone(), s.dtype))
                .collect()
        };

        let options = RunOptions {
            executor: Some(executor(config.intra_threads)?),
            ..RunOptions::default()
        };
        let plan = typed
            .into_runnable_with_options(&options)
            .map_err(|e| load_err(chain(&e)))?;
        let state = plan.spawn().map_err(|e| load_err(chain(&e)))?;
        Ok(Box::new(TractModel {
            plan,
            state: Some(state),
            inputs,
            outputs,
        }))
    }
}

/// tract's data type as Conduit's, where Conduit has it.
fn data_type(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 | DatumType::TDim => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        _ => return None,
    })
}

struct InputSpec {
    name: String,
    dtype: DataType,
    /// `-1`: dynamic.
    shape: Vec<i64>,
}

struct TractModel {
    plan: std::sync::Arc<TypedSimplePlan>,
    /// Kept between runs (its buffers are reused); dropped after a failure,
    /// which may leave it half-way through a turn.
    state: Option<TypedSimpleState>,
    inputs: Vec<InputSpec>,
    outputs: Vec<(String, DataType)>,
}

/// `t` as a tract tensor, checked against `spec`.
fn to_tract(spec: &InputSpec, t: &Tensor) -> Result<TValue, ExecutorError> {
    let name = &spec.name;
    if t.dtype() != spec.dtype {
        return Err(ExecutorError::InvalidInput(format!(
            "input `{name}` must be {}, got {}",
            spec.dtype,
            t.dtype()
        )));
    }
    let fits = t.shape().len() == spec.shape.len()
        && t.shape()
            .iter()
            .zip(&spec.shape)
            .all(|(&got, &want)| want < 0 || got == want);
    if !fits {
        return Err(ExecutorError::InvalidInput(format!(
            "input `{name}` must have shape {:?} (-1: any), got {:?}",
            spec.shape,
            t.shape()
        )));
    }
    let dt = datum_type(spec.dtype).ok_or_else(|| {
        ExecutorError::InvalidInput(format!(
            "the tract backend does not take {} inputs",
            spec.dtype
        ))
    })?;
    // `Tensor` guarantees non-negative dimensions whose product matches the
    // bytes; the checks below only keep a bad tensor from panicking here.
    let shape: Vec<usize> = t
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ExecutorError::InvalidInput(format!("input `{name}` has a negative dimension"))
        })?;
    let mut tensor =
        tract_onnx::prelude::Tensor::zero_dt(dt, &shape).map_err(|e| run_err(chain(&e)))?;
    let dst = tensor.as_bytes_mut();
    let src = t.data();
    if dst.len() != src.len() {
        return Err(ExecutorError::InvalidInput(format!(
            "input `{name}` of shape {shape:?} needs {} bytes, got {}",
            dst.len(),
            src.len()
        )));
    }
    if spec.dtype == DataType::Bool {
        // tract's `bool` must be 0 or 1; KServe's BOOL is any non-zero byte.
        for (d, s) in dst.iter_mut().zip(src.iter()) {
            *d = u8::from(*s != 0);
        }
    } else {
        dst.copy_from_slice(src);
    }
    Ok(tensor.into_tvalue())
}

/// A tract output as a Conduit tensor of `dtype`.
fn from_tract(name: &str, dtype: DataType, v: TValue) -> Result<Tensor, ExecutorError> {
    let bad = |e: String| ExecutorError::Backend(format!("output `{name}`: {e}"));
    let want = datum_type(dtype).ok_or_else(|| bad(format!("{dtype} is not returned by tract")))?;
    let tensor = v.cast_to_dt(want).map_err(|e| bad(chain(&e)))?;
    let shape = tensor.shape().iter().map(|&d| d as i64).collect();
    let bytes = tensor
        .try_as_plain_ram()
        .map_err(|e| bad(chain(&e)))?
        .as_bytes();
    Tensor::new(dtype, shape, Bytes::copy_from_slice(bytes)).map_err(|e| bad(e.to_string()))
}

impl TractModel {
    fn run_inner(&mut self, inputs: &NamedTensors) -> Result<NamedTensors, ExecutorError> {
        let values: TVec<TValue> = self
            .inputs
            .iter()
            .map(|spec| {
                let (_, t) = inputs
                    .iter()
                    .find(|(n, _)| *n == spec.name)
                    .ok_or_else(|| {
                        ExecutorError::InvalidInput(format!("missing input `{}`", spec.name))
                    })?;
                to_tract(spec, t)
            })
            .collect::<Result<_, _>>()?;
        let mut state = match self.state.take() {
            Some(state) => state,
            None => self.plan.spawn().map_err(|e| run_err(chain(&e)))?,
        };
        let outputs = state.run(values).map_err(|e| run_err(chain(&e)))?;
        self.state = Some(state);
        if outputs.len() != self.outputs.len() {
            return Err(run_err(format!(
                "the model produced {} outputs, expected {}",
                outputs.len(),
                self.outputs.len()
            )));
        }
        self.outputs
            .iter()
            .zip(outputs)
            .map(|((name, dtype), v)| Ok((name.clone(), from_tract(name, *dtype, v)?)))
            .collect()
    }
}

impl LoadedModel for TractModel {
    fn run(&mut self, inputs: &NamedTensors) -> Result<NamedTensors, ExecutorError> {
        // A panic inside tract must not take the worker thread down; the
        // state it may have left half-run is dropped (`run_inner` only puts
        // it back after a clean run).
        catch_unwind(AssertUnwindSafe(|| self.run_inner(inputs))).unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ExecutorError::Backend(format!("tract panicked: {why}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx_signature;

    const ADD: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/fixtures/add.onnx"
    );
    const MINILM: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/minilm/model.onnx"
    );

    fn load(path: &str, threads: usize) -> Box<dyn LoadedModel> {
        let bytes = std::fs::read(path).unwrap();
        let signature = onnx_signature(&bytes).unwrap();
        let config = ModelConfig {
            intra_threads: threads,
            ..ModelConfig::default()
        };
        TractBackend::new()
            .load(&bytes, &signature, &config)
            .unwrap()
    }

    fn run_add(model: &mut Box<dyn LoadedModel>, rows: usize, x: &[f32]) -> Vec<f32> {
        let input = Tensor::from_f32(vec![rows as i64, 4], x).unwrap();
        let out = model.run(&vec![("x".into(), input)]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "y");
        assert_eq!(out[0].1.shape(), &[rows as i64, 4]);
        out[0].1.to_f32().unwrap()
    }

    #[test]
    fn add_serves_any_batch_with_one_plan() {
        let mut model = load(ADD, 2);
        for rows in [1usize, 3, 1] {
            let x: Vec<f32> = (0..rows * 4).map(|i| i as f32 * 0.5 - 1.0).collect();
            let y = run_add(&mut model, rows, &x);
            let y0 = run_add(&mut model, rows, &vec![0.0; rows * 4]);
            for i in 0..x.len() {
                assert!((y[i] - y0[i] - x[i]).abs() < 1e-6, "row {rows} element {i}");
            }
        }
    }

    #[test]
    fn identity_i64_round_trips_dynamic_batch_and_seq() {
        let mut model = load(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/fixtures/identity_i64.onnx"
            ),
            0,
        );
        for (batch, seq) in [(1i64, 5i64), (3, 2)] {
            let ids: Vec<i64> = (0..batch * seq).map(|i| i * 1_000_000_007 - 9).collect();
            let input = Tensor::from_i64(vec![batch, seq], &ids).unwrap();
            let out = model.run(&vec![("ids".into(), input.clone())]).unwrap();
            assert_eq!(out[0].0, "ids_out");
            assert_eq!(out[0].1, input);
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let mut model = load(ADD, 1);
        let wrong_dtype = Tensor::from_i64(vec![1, 4], &[1, 2, 3, 4]).unwrap();
        let wrong_shape = Tensor::from_f32(vec![1, 5], &[0.0; 5]).unwrap();
        let wrong_rank = Tensor::from_f32(vec![4], &[0.0; 4]).unwrap();
        for (name, t) in [("x", wrong_dtype), ("x", wrong_shape), ("x", wrong_rank)] {
            let err = model.run(&vec![(name.into(), t)]).unwrap_err();
            assert!(matches!(err, ExecutorError::InvalidInput(_)), "{err}");
        }
        let missing = model.run(&vec![]).unwrap_err();
        assert!(
            matches!(missing, ExecutorError::InvalidInput(_)),
            "{missing}"
        );
        // Still serves afterwards.
        run_add(&mut model, 2, &[0.0; 8]);
    }

    #[test]
    fn load_errors() {
        let backend = TractBackend::new();
        let garbage = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/fixtures/garbage.onnx"
        ))
        .unwrap();
        let bytes = std::fs::read(ADD).unwrap();
        let signature = onnx_signature(&bytes).unwrap();
        let err = backend
            .load(&garbage, &signature, &ModelConfig::default())
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                ExecutorError::Load {
                    backend: "tract",
                    ..
                }
            ),
            "{err}"
        );

        let cuda = ModelConfig {
            device: Device::Cuda(0),
            ..ModelConfig::default()
        };
        let err = backend.load(&bytes, &signature, &cuda).err().unwrap();
        assert!(matches!(err, ExecutorError::Unavailable(_)), "{err}");

        let mut wrong = signature.clone();
        wrong.inputs[0].dtype = DataType::Int64;
        let err = backend
            .load(&bytes, &wrong, &ModelConfig::default())
            .err()
            .unwrap();
        assert!(matches!(err, ExecutorError::Load { .. }), "{err}");
    }

    #[test]
    fn minilm_runs_a_batch() {
        if !std::path::Path::new(MINILM).exists() {
            eprintln!("skipping: {MINILM} is absent");
            return;
        }
        let mut model = load(MINILM, 0);
        for (batch, seq) in [(2usize, 7usize), (1, 3)] {
            let n = batch * seq;
            let shape = vec![batch as i64, seq as i64];
            let ids: Vec<i64> = (0..n as i64).map(|i| 101 + i * 37 % 2000).collect();
            let inputs = vec![
                (
                    "input_ids".to_string(),
                    Tensor::from_i64(shape.clone(), &ids).unwrap(),
                ),
                (
                    "attention_mask".to_string(),
                    Tensor::from_i64(shape.clone(), &vec![1; n]).unwrap(),
                ),
                (
                    "token_type_ids".to_string(),
                    Tensor::from_i64(shape, &vec![0; n]).unwrap(),
                ),
            ];
            let out = model.run(&inputs).unwrap();
            let (name, hidden) = &out[0];
            assert_eq!(name, "last_hidden_state");
            assert_eq!(hidden.shape(), &[batch as i64, seq as i64, 384]);
            assert!(hidden.to_f32().unwrap().iter().all(|v| v.is_finite()));
        }
        // tract's Gather panics on a token id past the vocabulary; that must
        // come back as an error, and the model must go on serving.
        let shape = vec![1, 2];
        let bad = vec![
            (
                "input_ids".to_string(),
                Tensor::from_i64(shape.clone(), &[101, 999_999]).unwrap(),
            ),
            (
                "attention_mask".to_string(),
                Tensor::from_i64(shape.clone(), &[1, 1]).unwrap(),
            ),
            (
                "token_type_ids".to_string(),
                Tensor::from_i64(shape.clone(), &[0, 0]).unwrap(),
            ),
        ];
        let err = model.run(&bad).unwrap_err();
        assert!(matches!(err, ExecutorError::Backend(_)), "{err}");
        let good = vec![
            (
                "input_ids".to_string(),
                Tensor::from_i64(shape.clone(), &[101, 102]).unwrap(),
            ),
            (
                "attention_mask".to_string(),
                Tensor::from_i64(shape.clone(), &[1, 1]).unwrap(),
            ),
            (
                "token_type_ids".to_string(),
                Tensor::from_i64(shape, &[0, 0]).unwrap(),
            ),
        ];
        assert_eq!(model.run(&good).unwrap()[0].1.shape(), &[1, 2, 384]);
    }

    /// The numbers in the JSON array that follows the first `"key":` in `json`.
    fn json_numbers(json: &str, key: &str) -> Vec<f64> {
        let start = json.find(&format!("\"{key}\":[")).unwrap() + key.len() + 4;
        let end = start + json[start..].find(']').unwrap();
        json[start..end]
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect()
    }

    #[test]
    fn minilm_matches_the_onnxruntime_reference() {
        let reference = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/minilm_reference.json"
        );
        if !std::path::Path::new(MINILM).exists() || !std::path::Path::new(reference).exists() {
            eprintln!("skipping: the MiniLM model or its reference is absent");
            return;
        }
        let json = std::fs::read_to_string(reference).unwrap();
        let ids: Vec<i64> = json_numbers(&json, "input_ids")
            .iter()
            .map(|&v| v as i64)
            .collect();
        let want = json_numbers(&json, "last_hidden_state");
        let seq = ids.len();
        assert_eq!(want.len(), seq * 384);
        // The same sentence twice: a batch of 2 must give the reference in each row.
        let shape = vec![2, seq as i64];
        let inputs = vec![
            (
                "input_ids".to_string(),
                Tensor::from_i64(shape.clone(), &[ids.clone(), ids].concat()).unwrap(),
            ),
            (
                "attention_mask".to_string(),
                Tensor::from_i64(shape.clone(), &vec![1; 2 * seq]).unwrap(),
            ),
            (
                "token_type_ids".to_string(),
                Tensor::from_i64(shape, &vec![0; 2 * seq]).unwrap(),
            ),
        ];
        let mut model = load(MINILM, 2);
        let out = model.run(&inputs).unwrap();
        let got = out[0].1.to_f32().unwrap();
        let worst = got
            .iter()
            .enumerate()
            .map(|(i, &g)| (f64::from(g) - want[i % want.len()]).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "largest difference from onnxruntime: {worst}");
    }
}
