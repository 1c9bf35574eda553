//! Exercises the tensor handle API; param `op` selects the operation on
//! every input (outputs keep the input names):
//! - `route`: return the handle unchanged (no copy);
//! - `copy`: read the elements into the component and create a new tensor;
//! - `slice`: rows `[start, end)` (params `start`, `end`);
//! - `reshape`: flatten to one dimension;
//! - `share`: output each input twice (`name` and `name_again`);
//! - `raw`: read the raw bytes and rebuild with `from-raw`;
//! - `describe`: output each input's dtype, shape and byte size as strings.

#[cfg(target_arch = "wasm32")]
mod component {
    use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature, Tensor};

    struct TensorOps;

    impl Processor for TensorOps {
        fn describe() -> Signature {
            Signature::new()
                .input("x", DataType::Fp32, [-1])
                .output("x", DataType::Fp32, [-1])
        }

        fn process(inputs: Inputs, params: Params) -> Result<Outputs, Error> {
            let op = params.str_or("op", "route")?.to_string();
            let mut out = Outputs::new();
            for (name, t) in inputs {
                match op.as_str() {
                    "route" => out.push(name, t),
                    "copy" => {
                        let copied = Tensor::create(t.shape(), t.read())?;
                        out.push(name, copied);
                    }
                    "slice" => {
                        let start = params.i64_or("start", 0)?.max(0) as u64;
                        let end = params.i64_or("end", 1)?.max(0) as u64;
                        out.push(name, t.slice(start, end).map_err(Error::from)?);
                    }
                    "reshape" => {
                        let n = t.num_elements() as i64;
                        out.push(name, t.reshape(&[n]).map_err(Error::from)?);
                    }
                    "share" => {
                        out.push(format!("{name}_again"), t.share());
                        out.push(name, t);
                    }
                    "raw" => {
                        let raw = t.read_raw(0, t.byte_size()).map_err(Error::from)?;
                        out.push(name, Tensor::from_raw(t.dtype(), t.shape(), &raw)?);
                    }
                    "describe" => {
                        let text =
                            format!("{} {:?} {}", t.dtype().as_str(), t.shape(), t.byte_size());
                        out.push(name, Tensor::from_strings(&[1], [text])?);
                    }
                    other => return Err(Error::invalid_input(format!("unknown op `{other}`"))),
                }
            }
            Ok(out)
        }
    }

    conduit_guest::export!(TensorOps);
}
