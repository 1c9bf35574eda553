#![no_main]
//! libFuzzer over `conduit_fuzz::registry_manifest::run` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::registry_manifest::run(data));
