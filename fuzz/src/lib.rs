//! Fuzz targets for every decoder a Conduit client reaches, in the shape of
//! wasmtime's `fuzz/` + `crates/fuzzing`: the targets, their generators and
//! the byte mutations live here, in a library; what drives them is thin.
//!
//! Each target module has `run(data: &[u8])`, which feeds the bytes to the
//! real library decoder and checks its invariants (it never panics; errors
//! are the layer's typed error, and their gRPC status message is bounded;
//! what decodes re-encodes and decodes to the same thing), and
//! `generate(u)`, which builds a structured input from [`arbitrary`] data in
//! the same byte format, so every failure is a file `run` replays.
//!
//! The stable driver ([`driver`]) replays `fuzz/corpus/<target>/` and then
//! runs seeded random cases: structured ones from `generate`, and mutations
//! of the corpus ([`mutate`]). `tests/fuzz` runs it for every target;
//! `docs/fuzzing.md` has the commands.
//!
//! ```ignore
//! // Replay one input, as the tests and the cargo-fuzz targets do:
//! let target = conduit_fuzz::target("kserve_json").unwrap();
//! (target.run)(br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}]}"#);
//! ```

pub mod check;
pub mod corpus;
pub mod driver;
pub mod generators;
pub mod mutate;

pub mod grpc_timeout;
pub mod http_encoding;
pub mod kserve_json;
pub mod kserve_proto;
pub mod onnx_signature;
pub mod pipeline_toml;
pub mod reference;
pub mod registry_manifest;
pub mod session_run;
pub mod tenant_limits;

use arbitrary::Unstructured;

/// One fuzz target: a decoder, its invariants and its input generator.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: the folder of its corpus and its artifacts.
    pub name: &'static str,
    /// Feeds one input to the decoder; panics when an invariant breaks.
    pub run: fn(&[u8]),
    /// A structured input, in the byte format `run` reads.
    pub generate: fn(&mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>>,
    /// Tokens worth inserting when mutating this target's inputs.
    pub dictionary: &'static [&'static [u8]],
    /// Random cases a default run (`cargo test`) makes: sized so that the
    /// whole crate's tests take well under a minute in release on 2 cores.
    pub default_cases: u64,
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "kserve_json",
        run: kserve_json::run,
        generate: kserve_json::generate,
        dictionary: kserve_json::DICTIONARY,
        default_cases: 100_000,
    },
    Target {
        name: "kserve_proto",
        run: kserve_proto::run,
        generate: kserve_proto::generate,
        dictionary: kserve_proto::DICTIONARY,
        default_cases: 150_000,
    },
    Target {
        name: "session_run",
        run: session_run::run,
        generate: session_run::generate,
        dictionary: kserve_proto::DICTIONARY,
        default_cases: 300_000,
    },
    Target {
        name: "pipeline_toml",
        run: pipeline_toml::run,
        generate: pipeline_toml::generate,
        dictionary: pipeline_toml::DICTIONARY,
        default_cases: 60_000,
    },
    Target {
        name: "reference",
        run: reference::run,
        generate: reference::generate,
        dictionary: reference::DICTIONARY,
        default_cases: 200_000,
    },
    Target {
        name: "registry_manifest",
        run: registry_manifest::run,
        generate: registry_manifest::generate,
        dictionary: registry_manifest::DICTIONARY,
        default_cases: 300_000,
    },
    Target {
        name: "tenant_limits",
        run: tenant_limits::run,
        generate: tenant_limits::generate,
        dictionary: tenant_limits::DICTIONARY,
        default_cases: 200_000,
    },
    Target {
        name: "grpc_timeout",
        run: grpc_timeout::run,
        generate: grpc_timeout::generate,
        dictionary: grpc_timeout::DICTIONARY,
        default_cases: 300_000,
    },
    Target {
        name: "onnx_signature",
        run: onnx_signature::run,
        generate: onnx_signature::generate,
        dictionary: onnx_signature::DICTIONARY,
        default_cases: 250_000,
    },
    Target {
        name: "http_encoding",
        run: http_encoding::run,
        generate: http_encoding::generate,
        dictionary: http_encoding::DICTIONARY,
        default_cases: 50_000,
    },
];

/// Runs `target` on the input its generator builds from `data` (structured
/// fuzzing: `data` is `arbitrary`'s raw material, not an input).
pub fn run_structured(target: &Target, data: &[u8]) {
    if let Ok(input) = (target.generate)(&mut Unstructured::new(data)) {
        (target.run)(&input);
    }
}

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
