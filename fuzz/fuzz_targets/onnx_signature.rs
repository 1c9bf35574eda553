#![no_main]
//! libFuzzer over `conduit_fuzz::onnx_signature::run` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::onnx_signature::run(data));
