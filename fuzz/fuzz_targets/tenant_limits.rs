#![no_main]
//! libFuzzer over `conduit_fuzz::tenant_limits::run` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::tenant_limits::run(data));
