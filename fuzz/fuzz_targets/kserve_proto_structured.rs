#![no_main]
//! libFuzzer over `conduit_fuzz::kserve_proto::run_request`, on structured
//! requests (`kserve_proto::Request`) rather than bytes (see
//! docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|r: conduit_fuzz::kserve_proto::Request| {
    conduit_fuzz::kserve_proto::run_request(r.0)
});
