//! A component whose `describe()` sleeps for a minute in a blocking WASI
//! call: the push must fail at the describe deadline, not hold a slot.

#[cfg(target_arch = "wasm32")]
mod component {
    use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature};

    struct SlowDescribe;

    impl Processor for SlowDescribe {
        fn describe() -> Signature {
            std::thread::sleep(std::time::Duration::from_secs(60));
            Signature::new()
                .input("x", DataType::Fp32, [-1])
                .output("y", DataType::Fp32, [-1])
        }

        fn process(mut inputs: Inputs, _params: Params) -> Result<Outputs, Error> {
            Ok(Outputs::new().with("y", inputs.take("x")?))
        }
    }

    conduit_guest::export!(SlowDescribe);
}
