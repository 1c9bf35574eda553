#![no_main]
//! libFuzzer over `conduit_fuzz::grpc_timeout::run` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::grpc_timeout::run(data));
