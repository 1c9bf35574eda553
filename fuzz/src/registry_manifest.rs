//! Registry manifests: the `PutManifest` request a client sends (protobuf),
//! through the checks the service and the registry make before they touch
//! storage, and the stored manifest (JSON) the registry reads back.
//!
//! Input format: a stored manifest when the first non-blank byte is `{`;
//! otherwise an encoded `conduit.registry.v1.PutManifestRequest`.
//!
//! Checks: no panic; a refused request is `InvalidArgument` with a bounded
//! status message (the service's own `Status::invalid_argument` for a bad
//! digest included); an accepted one stores as JSON that reads back equal;
//! a stored manifest that reads re-serializes to one that reads equal.

use crate::check;
use arbitrary::{Result, Unstructured};
use conduit_proto::registry::v1 as pb;
use conduit_registry::{
    Digest, ExecutorHints, Kind, Manifest, Reference, RegistryError, Signature, TensorSpec,
    check_name, check_user_tag, parse_version,
};
use prost::Message;

/// Tokens for mutations.
pub const DICTIONARY: &[&[u8]] = &[
    b"\"kind\"",
    b"\"component\"",
    b"\"model\"",
    b"\"pipeline\"",
    b"\"digest\"",
    b"\"signature\"",
    b"\"executor\"",
    b"\"max_batch_size\"",
    b"\"references\"",
    b"\"tags\"",
    b"blake3:",
    b"1.0.0",
    b"latest",
    b"4294967296",
    b"\x08\x04",
    b"\x08\xff\xff\xff\xff\x0f",
];

/// Runs one input.
pub fn run(data: &[u8]) {
    if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return stored(data);
    }
    if let Ok(request) = pb::PutManifestRequest::decode(data) {
        put(request);
    }
}

fn stored(data: &[u8]) {
    let Ok(m) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    round_trip(&m);
}

fn round_trip(m: &Manifest) {
    let json = serde_json::to_vec(m).expect("a manifest serialises");
    let back: Manifest = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "a manifest's JSON does not read back: {e}: {}",
            check::preview(&String::from_utf8_lossy(&json))
        )
    });
    // Tags are not stored.
    let expected = Manifest {
        tags: Vec::new(),
        ..m.clone()
    };
    assert_eq!(back, expected, "a manifest changes through its stored form");
}

/// The checks of `RegistryService::put_manifest` and
/// `Registry::put_manifest` that come before storage, in their order.
fn put(r: pb::PutManifestRequest) {
    let kind = match pb::Kind::try_from(r.kind) {
        Ok(pb::Kind::Component) => Kind::Component,
        Ok(pb::Kind::Model) => Kind::Model,
        Ok(pb::Kind::Pipeline) => Kind::Pipeline,
        Ok(pb::Kind::Unspecified) => return,
        Err(_) => {
            return check::registry_error(
                "kind",
                RegistryError::InvalidArgument(format!("unknown module kind {}", r.kind)),
            );
        }
    };
    // The service maps a bad digest itself.
    let digest: Digest = match r.digest.parse() {
        Ok(d) => d,
        Err(e) => {
            return check::bounded(
                &tonic::Status::invalid_argument(format!("{e}")),
                "PutManifest digest",
            );
        }
    };
    if let Err(e) = check_name(&r.name) {
        return check::registry_error("check_name", e);
    }
    let version = match parse_version(&r.version) {
        Ok(v) => v.to_string(),
        Err(e) => return check::registry_error("parse_version", e),
    };
    for tag in &r.tags {
        if let Err(e) = check_user_tag(tag) {
            return check::registry_error("check_user_tag", e);
        }
    }
    for reference in &r.references {
        if let Err(e) = Reference::parse(reference) {
            return check::registry_error("Reference::parse", e);
        }
    }
    let hints = r.executor.unwrap_or_default();
    let manifest = Manifest {
        tenant: "default".into(),
        name: r.name,
        version,
        kind,
        digest,
        size: 1,
        signature: Signature::default(),
        executor: ExecutorHints {
            format: hints.format,
            backend: hints.backend,
            device: hints.device,
            max_batch_size: hints.max_batch_size,
            max_queue_delay_us: hints.max_queue_delay_us,
            preferred_batch_sizes: hints.preferred_batch_sizes,
            instances: hints.instances,
            replicas: hints.replicas,
            max_replicas: hints.max_replicas,
            target_busy_percent: hints.target_busy_percent.min(100),
            target_queue_ms: hints.target_queue_ms,
            idle_seconds: hints.idle_seconds,
        },
        world: String::new(),
        references: r.references,
        created_at: "2026-01-01T00:00:00Z".into(),
        created_by: "default (key k)".into(),
        tags: Vec::new(),
    };
    round_trip(&manifest);
}

/// A structured `PutManifestRequest`, or now and then a stored manifest.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let name = match u.int_in_range(0..=7u8)? {
        0 => crate::generators::name(u)?,
        _ => u
            .choose(&["tok", "minilm", "paraphrase", "embedding-post"])?
            .to_string(),
    };
    let version = u
        .choose(&["1.0.0", "1.0.0-rc.1", "1.0.0+b", "1.0", "", "v1.0.0"])?
        .to_string();
    let digest = match u.int_in_range(0..=7u8)? {
        0 => format!("blake3:{}", "f".repeat(u.int_in_range(0..=3000)?)),
        1 => crate::generators::name(u)?,
        _ => Digest::of(&u.arbitrary::<[u8; 4]>()?).to_string(),
    };
    if u.ratio(1, 6)? {
        let manifest = Manifest {
            tenant: crate::generators::name(u)?,
            name,
            version,
            kind: *u.choose(&[Kind::Component, Kind::Model, Kind::Pipeline])?,
            digest: Digest::of(digest.as_bytes()),
            size: u.arbitrary()?,
            signature: Signature {
                inputs: vec![TensorSpec {
                    name: crate::generators::name(u)?,
                    datatype: crate::generators::datatype_name(u)?,
                    shape: crate::generators::shape(u)?,
                }],
                outputs: Vec::new(),
            },
            executor: ExecutorHints {
                max_batch_size: u.arbitrary()?,
                preferred_batch_sizes: vec![u.arbitrary()?],
                ..ExecutorHints::default()
            },
            world: u.choose(&["", "op", "pipeline"])?.to_string(),
            references: vec![crate::generators::name(u)?],
            created_at: "2026-01-01T00:00:00Z".into(),
            created_by: "default (key k)".into(),
            tags: Vec::new(),
        };
        return Ok(serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"));
    }
    let mut tags = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        tags.push(
            u.choose(&["prod", "latest", "1.0.0", "v2", "x/y", ""])?
                .to_string(),
        );
    }
    let mut references = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        references.push(
            u.choose(&["tok@1.0.0", "minilm:prod", "x@@", "blake3:00"])?
                .to_string(),
        );
    }
    Ok(pb::PutManifestRequest {
        kind: *u.choose(&[0, 1, 2, 3, 4, -1])?,
        name,
        version,
        digest,
        executor: u.ratio(1, 2)?.then(|| pb::ExecutorHints {
            format: "onnx".into(),
            max_batch_size: 8,
            max_queue_delay_us: 500,
            target_busy_percent: 250,
            ..Default::default()
        }),
        tags,
        references,
    }
    .encode_to_vec())
}
