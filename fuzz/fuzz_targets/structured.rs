#![no_main]
//! libFuzzer over any target's generator: the target named by
//! `CONDUIT_FUZZ_TARGET` runs on the input its `generate` builds from the
//! fuzzer's bytes (see docs/fuzzing.md).

use std::sync::OnceLock;

fn target() -> &'static conduit_fuzz::Target {
    static TARGET: OnceLock<&'static conduit_fuzz::Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let name = std::env::var("CONDUIT_FUZZ_TARGET")
            .expect("set CONDUIT_FUZZ_TARGET to a conduit-fuzz target name");
        conduit_fuzz::target(&name).unwrap_or_else(|| panic!("no target `{name}`"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| conduit_fuzz::run_structured(target(), data));
