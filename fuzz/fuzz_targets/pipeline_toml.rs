#![no_main]
//! libFuzzer over `conduit_fuzz::pipeline_toml::run` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::pipeline_toml::run(data));
