#![no_main]
//! libFuzzer over `conduit_fuzz::kserve_json::run` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::kserve_json::run(data));
