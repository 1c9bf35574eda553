//! The `conduit` binary: the README's first command.

use crate::common::*;
use std::process::Command;

#[test]
fn tokenize_prints_the_reference_ids_for_the_readme_pair() {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["tokenize", "--component"])
        .arg(component_path("bert-tokenizer"))
        .args([
            "--max-length",
            "32",
            "The company Conduit is based in the Bay Area",
            "Conduit's headquarters are situated in Mountain View",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let native = bert_tokenizer::encode(
        "The company Conduit is based in the Bay Area",
        Some("Conduit's headquarters are situated in Mountain View"),
        32,
    );
    let ids = native
        .input_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert!(stdout.contains(&format!("[{ids}]")), "{stdout}");
    assert!(stdout.contains("input_ids: INT64 [1, 32]"), "{stdout}");
    assert!(native.input_ids.starts_with(&[101]), "[CLS] first");
}

#[test]
fn tokenize_reports_a_missing_component_in_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["tokenize", "--component", "/nonexistent/tok.wasm", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/tok.wasm"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn describe_prints_world_and_signature() {
    let path = component_path("embed-pipeline");
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .arg("describe")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let digest = conduit_types::Digest::of(&std::fs::read(&path).unwrap());
    assert!(stdout.contains(&format!("digest: {digest}")), "{stdout}");
    assert!(stdout.contains("world:  pipeline"), "{stdout}");
    assert!(stdout.contains("wit:    conduit:compute@0.2.0"), "{stdout}");
    assert!(
        stdout.contains("input   input_ids: INT64[-1, -1]"),
        "{stdout}"
    );
    assert!(stdout.contains("output  similarity: FP32[-1]"), "{stdout}");
    // A foreign component is refused with one clear line.
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .arg("describe")
        .arg(component_path("wrong-world"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("conduit:compute/processor@0.2.0"),
        "{stderr}"
    );
}
