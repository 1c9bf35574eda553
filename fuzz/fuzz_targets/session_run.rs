#![no_main]
//! libFuzzer over `conduit_fuzz::session_run::run` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::session_run::run(data));
