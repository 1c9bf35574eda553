//! A small component whose `describe()` declares 200,000 outputs: a
//! signature that would be stored and read on every request if accepted.

#[cfg(target_arch = "wasm32")]
mod component {
    use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature};

    struct HugeSignature;

    impl Processor for HugeSignature {
        fn describe() -> Signature {
            let mut s = Signature::new().input("x", DataType::Fp32, [-1]);
            for i in 0..200_000 {
                s = s.output(&format!("y{i}"), DataType::Fp32, [-1]);
            }
            s
        }

        fn process(mut inputs: Inputs, _params: Params) -> Result<Outputs, Error> {
            Ok(Outputs::new().with("y0", inputs.take("x")?))
        }
    }

    conduit_guest::export!(HugeSignature);
}
