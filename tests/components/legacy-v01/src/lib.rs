//! A component built against `conduit:compute@0.1.0` (`wit/0.1/`), the
//! contract before 0.2, with the raw bindings: it asks the host for each
//! input's dtype and shape, reads it, and creates its output with `create`.
//! It scales `x` by the `factor` parameter (default 2) into `y`.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "op", path: "../../../wit/0.1" });

    use conduit::compute::logging::{Level, log};
    use conduit::compute::types::{
        Dtype, Error, NamedTensor, Param, ParamValue, Signature, Tensor, TensorData, TensorSpec,
    };
    use exports::conduit::compute::processor::Guest;

    struct Legacy;

    impl Guest for Legacy {
        fn describe() -> Signature {
            let spec = |name: &str| TensorSpec {
                name: name.into(),
                dtype: Dtype::Fp32,
                shape: vec![-1],
            };
            Signature {
                inputs: vec![spec("x")],
                outputs: vec![spec("y")],
            }
        }

        fn process(
            inputs: Vec<NamedTensor>,
            params: Vec<Param>,
        ) -> Result<Vec<NamedTensor>, Error> {
            let x = inputs
                .into_iter()
                .find(|t| t.name == "x")
                .ok_or_else(|| Error::InvalidInput("missing input `x`".into()))?
                .tensor;
            let factor = match params.iter().find(|p| p.name == "factor").map(|p| &p.value) {
                None => 2.0,
                Some(ParamValue::Double(f)) => *f as f32,
                Some(_) => return Err(Error::InvalidInput("`factor` must be a double".into())),
            };
            if x.dtype() != Dtype::Fp32 {
                return Err(Error::InvalidInput("`x` must be FP32".into()));
            }
            let TensorData::Fp32(values) = x.read() else {
                return Err(Error::Internal(
                    "an FP32 tensor read as another type".into(),
                ));
            };
            log(Level::Debug, &format!("scaling {} values", values.len()));
            let y = Tensor::create(
                &x.shape(),
                &TensorData::Fp32(values.iter().map(|v| v * factor).collect()),
            )?;
            Ok(vec![NamedTensor {
                name: "y".into(),
                tensor: y,
            }])
        }
    }

    export!(Legacy);
}
