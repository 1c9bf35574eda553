//! The two versions of the contract a component may target, behind one face:
//! pre-instances, instances, `describe` and `process`.
//!
//! 0.2 (`wit/`) is the current contract. 0.1 (`wit/0.1/`) is still served so
//! that components registered before 0.2 keep working; its calls cross the
//! boundary more often (a `dtype`, `shape` and `create` call per tensor).

use crate::bindings::{Param, ParamValue, v1, v2};
use crate::convert;
use crate::state::CallState;
use crate::{GuestError, NamedTensors, RuntimeError, Signature};
use bytes::Bytes;
use conduit_types::{Tensor, TensorError, clip};
use wasmtime::Store;
use wasmtime::component::InstancePre;

/// A version of the `conduit:compute` package this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WitVersion {
    /// `conduit:compute@0.1.0`: still served.
    V0_1,
    /// `conduit:compute@0.2.0`: the current contract.
    V0_2,
}

impl WitVersion {
    /// Every version this host serves, oldest first.
    pub const ALL: [WitVersion; 2] = [WitVersion::V0_1, WitVersion::V0_2];

    /// The package version, as in `conduit:compute@0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_1 => "0.1.0",
            Self::V0_2 => "0.2.0",
        }
    }

    /// The `@0.x.` prefix every interface name of this version carries.
    pub(crate) fn interface_suffix(self) -> &'static str {
        match self {
            Self::V0_1 => "@0.1.",
            Self::V0_2 => "@0.2.",
        }
    }
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A component linked and ready to instantiate, for its version.
#[derive(Clone)]
pub(crate) enum Pre {
    V1(v1::PipelinePre<CallState>),
    V2(v2::PipelinePre<CallState>),
}

/// An instance of a component, with its version's typed exports.
pub(crate) enum Bound {
    V1(v1::Pipeline),
    V2(v2::Pipeline),
}

impl Pre {
    /// Checks `pre`'s exports against `version`'s bindings.
    pub(crate) fn new(version: WitVersion, pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
        Ok(match version {
            WitVersion::V0_1 => Self::V1(v1::PipelinePre::new(pre)?),
            WitVersion::V0_2 => Self::V2(v2::PipelinePre::new(pre)?),
        })
    }

    /// Instantiates the component in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<Bound> {
        Ok(match self {
            Self::V1(pre) => Bound::V1(pre.instantiate_async(store).await?),
            Self::V2(pre) => Bound::V2(pre.instantiate_async(store).await?),
        })
    }
}

/// What a `process` call gave back, when the instance did not trap.
pub(crate) type Outcome = Result<NamedTensors, RuntimeError>;

impl Bound {
    /// Calls `describe()`.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<Signature> {
        Ok(match self {
            Self::V1(i) => i
                .conduit_compute_processor()
                .call_describe(store)
                .await?
                .into(),
            Self::V2(i) => i
                .conduit_compute_processor()
                .call_describe(store)
                .await?
                .into(),
        })
    }

    /// Calls `process(inputs, params)`: the outer error is a trap (the
    /// instance is done for), the inner one what the call answers.
    pub(crate) async fn process(
        &self,
        store: &mut Store<CallState>,
        inputs: NamedTensors,
        params: &[Param],
    ) -> wasmtime::Result<Outcome> {
        match self {
            Self::V1(i) => process_v1(i, store, inputs, params).await,
            Self::V2(i) => process_v2(i, store, inputs, params).await,
        }
    }
}

async fn process_v1(
    instance: &v1::Pipeline,
    store: &mut Store<CallState>,
    inputs: NamedTensors,
    params: &[Param],
) -> wasmtime::Result<Outcome> {
    use v1::conduit::compute::types as wit;
    let mut handles = Vec::with_capacity(inputs.len());
    for (name, tensor) in inputs {
        handles.push(wit::NamedTensor {
            name,
            tensor: store.data_mut().push_input(tensor)?,
        });
    }
    let params: Vec<wit::Param> = params.iter().map(param_v1).collect();
    let returned = instance
        .conduit_compute_processor()
        .call_process(&mut *store, &handles, &params)
        .await?;
    let outputs = match returned {
        Ok(outputs) => outputs,
        Err(e) => return Ok(Err(RuntimeError::Guest(convert::v1::from_wit_error(e)))),
    };
    let state = store.data_mut();
    let mut taken = Vec::with_capacity(outputs.len());
    for o in outputs {
        taken.push((o.name, state.remove_tensor(o.tensor)?));
    }
    Ok(Ok(taken))
}

async fn process_v2(
    instance: &v2::Pipeline,
    store: &mut Store<CallState>,
    inputs: NamedTensors,
    params: &[Param],
) -> wasmtime::Result<Outcome> {
    use v2::conduit::compute::types as wit;
    let mut handles = Vec::with_capacity(inputs.len());
    for (name, tensor) in inputs {
        let (dtype, shape) = (
            convert::v2::to_wit_dtype(tensor.dtype()),
            tensor.shape().to_vec(),
        );
        handles.push(wit::NamedTensor {
            name,
            dtype,
            shape,
            tensor: store.data_mut().push_input(tensor)?,
        });
    }
    let returned = instance
        .conduit_compute_processor()
        .call_process(&mut *store, &handles, params)
        .await?;
    let outputs = match returned {
        Ok(outputs) => outputs,
        Err(e) => return Ok(Err(RuntimeError::Guest(convert::v2::from_wit_error(e)))),
    };
    let state = store.data_mut();
    let mut taken = Vec::with_capacity(outputs.len());
    let mut bad = None;
    for o in outputs {
        // Every value is taken (handles leave the table) even after a bad
        // one, so that the instance holds no leftovers and stays reusable.
        match state.take_value(o.value)? {
            Ok(tensor) => taken.push((o.name, tensor)),
            Err(e) => {
                bad.get_or_insert_with(|| {
                    RuntimeError::Guest(GuestError::Internal(format!(
                        "output `{}`: {e}",
                        clip(&o.name)
                    )))
                });
            }
        }
    }
    Ok(bad.map_or(Ok(taken), Err))
}

impl CallState {
    /// Takes a tensor a 0.2 component returned (or passes to a model): a
    /// handle leaves the table; new data is checked like `create` and
    /// `from-raw` check it and charged to the call's output budget.
    ///
    /// The outer error traps (the output budget is spent, or a stale
    /// handle); the inner one is data that does not fit its shape.
    pub(crate) fn take_value(
        &mut self,
        value: v2::conduit::compute::types::TensorValue,
    ) -> wasmtime::Result<Result<Tensor, TensorError>> {
        use v2::conduit::compute::types::TensorValue;
        let made = match value {
            TensorValue::Handle(handle) => return Ok(Ok(self.remove_tensor(handle)?)),
            TensorValue::Dense(d) => convert::v2::tensor_from_data(d.shape, d.data),
            TensorValue::Raw(r) => Tensor::new(
                convert::v2::from_wit_dtype(r.dtype),
                r.shape,
                Bytes::from(r.raw),
            ),
        };
        Ok(match made {
            Ok(tensor) => {
                self.charge_created(&tensor)?;
                Ok(tensor)
            }
            Err(e) => Err(e),
        })
    }
}

/// A request parameter in 0.1's types (the fields are the same).
fn param_v1(p: &Param) -> v1::conduit::compute::types::Param {
    use v1::conduit::compute::types::ParamValue as V1;
    v1::conduit::compute::types::Param {
        name: p.name.clone(),
        value: match &p.value {
            ParamValue::Bool(b) => V1::Bool(*b),
            ParamValue::Int64(i) => V1::Int64(*i),
            ParamValue::Uint64(u) => V1::Uint64(*u),
            ParamValue::Double(d) => V1::Double(*d),
            ParamValue::String(s) => V1::String(s.clone()),
        },
    }
}
