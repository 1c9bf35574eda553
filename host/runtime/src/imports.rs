//! The host side of the `conduit:compute` imports, for both WIT versions:
//! tensors, logging, models. The versions differ only in what `read` returns
//! (0.2 adds the shape) and in how `infer` takes and returns tensors.

use crate::bindings::{v1, v2};
use crate::convert;
use crate::state::CallState;
use bytes::Bytes;
use conduit_types::Tensor;
use wasmtime::Result;
use wasmtime::component::Resource;

/// The `types` and `logging` imports of one version.
macro_rules! host_imports {
    ($version:ident, read -> $read_ty:ty = $read:expr, { $($extra:tt)* }) => {
        const _: () = {
            use crate::bindings::$version::conduit::compute::logging;
            use crate::bindings::$version::conduit::compute::types::{self as wit, TensorData};
            use crate::convert::$version::{from_wit_dtype, invalid, tensor_from_data, to_wit_dtype};

            impl wit::Host for CallState {}

            impl wit::HostTensor for CallState {
                fn create(
                    &mut self,
                    shape: Vec<i64>,
                    data: TensorData,
                ) -> Result<Result<Resource<Tensor>, wit::Error>> {
                    match tensor_from_data(shape, data) {
                        Ok(t) => Ok(Ok(self.push_created(t)?)),
                        Err(e) => Ok(Err(invalid(e))),
                    }
                }

                fn from_raw(
                    &mut self,
                    dtype: wit::Dtype,
                    shape: Vec<i64>,
                    raw: Vec<u8>,
                ) -> Result<Result<Resource<Tensor>, wit::Error>> {
                    match Tensor::new(from_wit_dtype(dtype), shape, Bytes::from(raw)) {
                        Ok(t) => Ok(Ok(self.push_created(t)?)),
                        Err(e) => Ok(Err(invalid(e))),
                    }
                }

                fn dtype(&mut self, this: Resource<Tensor>) -> Result<wit::Dtype> {
                    Ok(to_wit_dtype(self.table.get(&this)?.dtype()))
                }

                fn shape(&mut self, this: Resource<Tensor>) -> Result<Vec<i64>> {
                    Ok(self.table.get(&this)?.shape().to_vec())
                }

                fn byte_size(&mut self, this: Resource<Tensor>) -> Result<u64> {
                    Ok(self.table.get(&this)?.byte_size() as u64)
                }

                fn read(&mut self, this: Resource<Tensor>) -> Result<$read_ty> {
                    let tensor = self.table.get(&this)?;
                    Ok($read(tensor))
                }

                $($extra)*

                fn read_raw(
                    &mut self,
                    this: Resource<Tensor>,
                    offset: u64,
                    len: u64,
                ) -> Result<Result<Vec<u8>, wit::Error>> {
                    let data = self.table.get(&this)?.data();
                    let range = usize::try_from(offset)
                        .ok()
                        .zip(usize::try_from(len).ok())
                        .and_then(|(o, l)| Some(o..o.checked_add(l)?))
                        .filter(|r| r.end <= data.len());
                    Ok(match range {
                        Some(r) => Ok(data[r].to_vec()),
                        None => Err(wit::Error::InvalidInput(format!(
                            "byte range {offset}+{len} is outside a tensor of {} bytes",
                            data.len()
                        ))),
                    })
                }

                fn slice(
                    &mut self,
                    this: Resource<Tensor>,
                    start: u64,
                    end: u64,
                ) -> Result<Result<Resource<Tensor>, wit::Error>> {
                    let sliced = self.table.get(&this)?.slice_rows(
                        start.min(usize::MAX as u64) as usize,
                        end.min(usize::MAX as u64) as usize,
                    );
                    match sliced {
                        Ok(t) => Ok(Ok(self.push_view(t)?)),
                        Err(e) => Ok(Err(invalid(e))),
                    }
                }

                fn reshape(
                    &mut self,
                    this: Resource<Tensor>,
                    shape: Vec<i64>,
                ) -> Result<Result<Resource<Tensor>, wit::Error>> {
                    match self.table.get(&this)?.reshape(shape) {
                        Ok(t) => Ok(Ok(self.push_view(t)?)),
                        Err(e) => Ok(Err(invalid(e))),
                    }
                }

                fn share(&mut self, this: Resource<Tensor>) -> Result<Resource<Tensor>> {
                    let t = self.table.get(&this)?.clone();
                    self.push_view(t)
                }

                fn drop(&mut self, this: Resource<Tensor>) -> Result<()> {
                    self.remove_tensor(this)?;
                    Ok(())
                }
            }

            impl logging::Host for CallState {
                fn log(&mut self, level: logging::Level, message: String) -> Result<()> {
                    let keep = self.log_budget.take(message.len());
                    if keep == 0 {
                        return Ok(());
                    }
                    let mut end = keep;
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    let msg = conduit_types::escape_controls(&message[..end]);
                    let c = &*self.component;
                    match level {
                        logging::Level::Trace => tracing::trace!(component = c, "{msg}"),
                        logging::Level::Debug => tracing::debug!(component = c, "{msg}"),
                        logging::Level::Info => tracing::info!(component = c, "{msg}"),
                        logging::Level::Warn => tracing::warn!(component = c, "{msg}"),
                        logging::Level::Error => tracing::error!(component = c, "{msg}"),
                    }
                    Ok(())
                }
            }
        };
    };
}

host_imports!(v1, read -> v1::conduit::compute::types::TensorData = convert::v1::tensor_to_data, {});
host_imports!(
    v2,
    read -> v2::conduit::compute::types::Dense = |t: &Tensor| {
        v2::conduit::compute::types::Dense {
            shape: t.shape().to_vec(),
            data: convert::v2::tensor_to_data(t),
        }
    },
    {
        fn read_all_raw(&mut self, this: Resource<Tensor>) -> Result<Vec<u8>> {
            Ok(self.table.get(&this)?.data().to_vec())
        }
    }
);

fn no_models(name: &str) -> String {
    format!("cannot run model `{name}`: no model executor is available to this component")
}

impl v1::conduit::compute::model::Host for CallState {
    async fn infer(
        &mut self,
        name: String,
        inputs: Vec<v1::conduit::compute::types::NamedTensor>,
    ) -> Result<
        Result<Vec<v1::conduit::compute::types::NamedTensor>, v1::conduit::compute::types::Error>,
    > {
        use v1::conduit::compute::types as wit;
        let mut tensors = Vec::with_capacity(inputs.len());
        for input in inputs {
            tensors.push((input.name, self.remove_tensor(input.tensor)?));
        }
        let Some(models) = self.models.clone() else {
            return Ok(Err(wit::Error::Unsupported(no_models(&name))));
        };
        match models.infer(&name, tensors).await {
            Ok(outputs) => {
                let mut out = Vec::with_capacity(outputs.len());
                for (name, tensor) in outputs {
                    out.push(wit::NamedTensor {
                        name,
                        tensor: self.push_view(tensor)?,
                    });
                }
                Ok(Ok(out))
            }
            Err(e) => Ok(Err(convert::v1::to_wit_error(e))),
        }
    }
}

impl v2::conduit::compute::model::Host for CallState {
    async fn infer(
        &mut self,
        name: String,
        inputs: Vec<v2::conduit::compute::types::NamedValue>,
    ) -> Result<
        Result<Vec<v2::conduit::compute::types::NamedTensor>, v2::conduit::compute::types::Error>,
    > {
        use v2::conduit::compute::types as wit;
        let mut tensors = Vec::with_capacity(inputs.len());
        for input in inputs {
            match self.take_value(input.value)? {
                Ok(tensor) => tensors.push((input.name, tensor)),
                Err(e) => {
                    return Ok(Err(wit::Error::InvalidInput(format!(
                        "model input `{}`: {e}",
                        conduit_types::clip(&input.name)
                    ))));
                }
            }
        }
        let Some(models) = self.models.clone() else {
            return Ok(Err(wit::Error::Unsupported(no_models(&name))));
        };
        match models.infer(&name, tensors).await {
            Ok(outputs) => {
                let mut out = Vec::with_capacity(outputs.len());
                for (name, tensor) in outputs {
                    out.push(wit::NamedTensor {
                        name,
                        dtype: convert::v2::to_wit_dtype(tensor.dtype()),
                        shape: tensor.shape().to_vec(),
                        tensor: self.push_view(tensor)?,
                    });
                }
                Ok(Ok(out))
            }
            Err(e) => Ok(Err(convert::v2::to_wit_error(e))),
        }
    }
}
