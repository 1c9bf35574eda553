//! The host side of the `conduit:compute` imports: tensors, logging, models.

use crate::bindings::conduit::compute::types::{self as wit, TensorData};
use crate::bindings::conduit::compute::{logging, model};
use crate::convert::{
    from_wit_dtype, invalid, tensor_from_data, tensor_to_data, to_wit_dtype, to_wit_error,
};
use crate::state::CallState;
use bytes::Bytes;
use conduit_types::Tensor;
use wasmtime::Result;
use wasmtime::component::Resource;

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

    fn read(&mut self, this: Resource<Tensor>) -> Result<TensorData> {
        Ok(tensor_to_data(self.table.get(&this)?))
    }

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

impl model::Host for CallState {
    async fn infer(
        &mut self,
        name: String,
        inputs: Vec<wit::NamedTensor>,
    ) -> Result<Result<Vec<wit::NamedTensor>, wit::Error>> {
        let mut tensors = Vec::with_capacity(inputs.len());
        for input in inputs {
            tensors.push((input.name, self.remove_tensor(input.tensor)?));
        }
        let Some(models) = self.models.clone() else {
            return Ok(Err(wit::Error::Unsupported(format!(
                "cannot run model `{name}`: no model executor is available to this component"
            ))));
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
            Err(e) => Ok(Err(to_wit_error(e))),
        }
    }
}
