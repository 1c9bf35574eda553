//! Inputs that once broke an invariant, one test each, named after the
//! bug; the files live in `fuzz/regressions/<target>/`.

use conduit_fuzz::driver;

/// Replays `fuzz/regressions/<target>/<file>`.
fn replay(target: &str, file: &str) {
    let t = conduit_fuzz::target(target).expect("a target of that name");
    let path = driver::crate_dir()
        .join("regressions")
        .join(target)
        .join(file);
    driver::replay_file(t, &path);
}

/// Every regression file has its test below.
#[test]
fn every_regression_file_is_replayed() {
    let source = include_str!("regressions.rs");
    for t in conduit_fuzz::TARGETS {
        let dir = driver::crate_dir().join("regressions").join(t.name);
        for (path, _) in driver::read_dir(&dir) {
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                source.contains(&format!("\"{file}\"")),
                "{} has no test in tests/fuzz/regressions.rs",
                path.display()
            );
        }
    }
}

/// serde_json without `float_roundtrip` read FP64 JSON data one ULP off
/// (the first element; `0.1` was right): fixed by the feature in
/// `host/runner/Cargo.toml`.
#[test]
fn fp64_json_data_is_read_exactly() {
    replay("kserve_json", "fp64-data-read-one-ulp-off");
}

/// The same for a double request parameter.
#[test]
fn double_json_parameters_are_read_exactly() {
    replay("kserve_json", "double-parameter-read-one-ulp-off");
}

/// A module could be named `blake3`, and its references printed as
/// `blake3:latest`, which parses as a (bad) digest: the name is reserved
/// (`registry/src/names.rs`).
#[test]
fn a_module_cannot_be_named_blake3() {
    replay("reference", "module-named-blake3-prints-as-a-digest");
    replay("reference", "in-module-blake3-prints-as-a-digest");
}

/// A step parameter `nan` (or `inf`) resolves, but the stored pipeline
/// (JSON, where it becomes `null`) does not read back, so the push fails
/// at validation with "not a resolved pipeline". Open: in
/// `registry/src/pipeline.rs` (`resolve_step` should refuse non-finite
/// floats, naming the step and parameter).
#[test]
fn non_finite_step_parameters_are_refused() {
    replay("pipeline_toml", "nan-param-stored-form-does-not-read-back");
}

/// Pipeline input and output names are stored in the pipeline's signature
/// unchecked: over `MAX_TENSOR_NAME_BYTES` (here 129 bytes; any size up to
/// the upload limit), which components and models may not declare
/// (`Signature::check_bounds`). Open: in `registry/src/pipeline.rs`
/// (`check_file`).
#[test]
fn pipeline_tensor_names_are_bounded() {
    replay("pipeline_toml", "output-name-over-128-bytes");
}

/// … or with control characters (a newline here), which forge log lines.
/// Open, with the above.
#[test]
fn pipeline_tensor_names_have_no_control_characters() {
    replay("pipeline_toml", "input-name-with-a-newline");
}
