#![no_main]
//! libFuzzer over `conduit_fuzz::http_encoding::run` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::http_encoding::run(data));
