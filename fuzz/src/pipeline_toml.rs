//! Pipeline manifests (TOML) through `PipelineDef::resolve`, against an
//! in-memory registry of the real example modules (their signatures as
//! their `describe` and ONNX metadata state them) and of the registry's
//! own test modules. References go through `Reference::parse`, as the
//! registry's resolver does.
//!
//! Input format: the manifest's bytes, as pushed.
//!
//! Checks: no panic; errors are `InvalidArgument` / `NotFound` with a
//! bounded status message; a resolved pipeline has 1 to `MAX_STEPS` steps
//! of unique names in an order where each reads only earlier steps, every
//! step input wired in signature order from a declared source, every
//! pipeline input used; its signature is one a host accepts; and its stored
//! form (`to_bytes`) reads back (`from_bytes`) as the same pipeline.

use crate::check;
use crate::generators::{self, toml_string};
use arbitrary::{Result, Unstructured};
use conduit_registry::{
    Digest, Kind, Manifest, PipelineDef, Reference, RegistryError, Signature, TensorSpec, Wire,
    shown,
};
use std::collections::HashSet;

/// `conduit_registry`'s limit on steps (`pipeline::MAX_STEPS`, not exported).
const MAX_STEPS: usize = 64;

/// Tokens for mutations.
pub const DICTIONARY: &[&[u8]] = &[
    b"[[steps]]\n",
    b"[[inputs]]\n",
    b"[[outputs]]\n",
    b"name = ",
    b"uses = ",
    b"follow = true\n",
    b"inputs = { ",
    b"params = { ",
    b"datatype = \"FP32\"\n",
    b"datatype = \"BYTES\"\n",
    b"shape = [-1, 1]\n",
    b"from = ",
    b"\"tokenize.input_ids\"",
    b"\"encode.last_hidden_state\"",
    b"\"post.similarity\"",
    b"\"tokenizer@1.0.0\"",
    b"\"minilm@1.0.0\"",
    b"\"embedding-post@1.0.0\"",
    b"nan",
    b"-inf",
    b"1e400",
    b"[[",
    b"{ a = { b = { c = 1 } } }",
    b"\"\"\"",
    b"'''",
];

type Spec = (&'static str, &'static str, &'static [i64]);

/// A module of the in-memory registry: name, kind, inputs, outputs.
pub type Module = (&'static str, Kind, &'static [Spec], &'static [Spec]);

/// The modules the in-memory registry holds (every version and tag of each).
pub const MODULES: &[Module] = &[
    (
        "tokenizer",
        Kind::Component,
        &[("text", "BYTES", &[-1, -1])],
        &[
            ("input_ids", "INT64", &[-1, -1]),
            ("attention_mask", "INT64", &[-1, -1]),
            ("token_type_ids", "INT64", &[-1, -1]),
            ("truncated", "INT64", &[-1]),
        ],
    ),
    (
        "minilm",
        Kind::Model,
        &[
            ("input_ids", "INT64", &[-1, -1]),
            ("attention_mask", "INT64", &[-1, -1]),
            ("token_type_ids", "INT64", &[-1, -1]),
        ],
        &[("last_hidden_state", "FP32", &[-1, -1, 384])],
    ),
    (
        "embedding-post",
        Kind::Component,
        &[
            ("last_hidden_state", "FP32", &[-1, -1, -1]),
            ("attention_mask", "INT64", &[-1, -1]),
        ],
        &[
            ("embeddings", "FP32", &[-1, -1]),
            ("similarity", "FP32", &[-1]),
        ],
    ),
    (
        "ops",
        Kind::Component,
        &[("x", "FP32", &[-1])],
        &[("x", "FP32", &[-1])],
    ),
    (
        "tok",
        Kind::Component,
        &[("text", "BYTES", &[-1, -1])],
        &[("ids", "INT64", &[-1, -1]), ("mask", "INT64", &[-1, -1])],
    ),
    (
        "enc",
        Kind::Model,
        &[("ids", "INT64", &[-1, -1]), ("mask", "INT64", &[-1, -1])],
        &[("hidden", "FP32", &[-1, -1, 384])],
    ),
    (
        "post",
        Kind::Component,
        &[
            ("hidden", "FP32", &[-1, -1, -1]),
            ("mask", "INT64", &[-1, -1]),
        ],
        &[("score", "FP32", &[-1])],
    ),
    (
        "id",
        Kind::Component,
        &[("x", "INT64", &[-1, -1])],
        &[("y", "INT64", &[-1, -1])],
    ),
    ("pipe", Kind::Pipeline, &[], &[]),
];

fn specs(list: &[Spec]) -> Vec<TensorSpec> {
    list.iter()
        .map(|(name, datatype, shape)| TensorSpec {
            name: (*name).into(),
            datatype: (*datatype).into(),
            shape: shape.to_vec(),
        })
        .collect()
}

/// The in-memory registry's resolver.
///
/// # Errors
/// What `Reference::parse` says, or `NotFound`.
pub fn resolve(reference: &str) -> std::result::Result<Manifest, RegistryError> {
    let (_, parsed) = Reference::parse(reference)?;
    let version = match &parsed {
        Reference::Version { version, .. } => version.to_string(),
        _ => "1.0.0".into(),
    };
    let found = parsed
        .name()
        .and_then(|n| MODULES.iter().find(|m| m.0 == n))
        .filter(|_| version == "1.0.0");
    let Some((name, kind, inputs, outputs)) = found else {
        return Err(RegistryError::NotFound(format!(
            "`{}` not found",
            shown(reference)
        )));
    };
    Ok(Manifest {
        tenant: "default".into(),
        name: (*name).into(),
        version,
        kind: *kind,
        digest: Digest::of(name.as_bytes()),
        size: 1,
        signature: Signature {
            inputs: specs(inputs),
            outputs: specs(outputs),
        },
        executor: Default::default(),
        world: String::new(),
        references: Vec::new(),
        created_at: String::new(),
        created_by: String::new(),
        tags: Vec::new(),
    })
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let def = match PipelineDef::resolve(data, resolve) {
        Ok(def) => def,
        Err(e) => return check::registry_error("PipelineDef::resolve", e),
    };
    assert!(!def.steps.is_empty() && def.steps.len() <= MAX_STEPS);
    let mut seen = HashSet::new();
    for step in &def.steps {
        assert!(
            !seen.contains(step.name.as_str()),
            "step `{}` twice",
            step.name
        );
        assert_ne!(step.kind, Kind::Pipeline);
        let wired: Vec<&str> = step.inputs.iter().map(|i| i.name.as_str()).collect();
        let declared: Vec<&str> = step
            .signature
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(
            wired, declared,
            "step `{}` is not wired in signature order",
            step.name
        );
        for input in &step.inputs {
            check_source(&def, &input.from, &seen, &step.name);
        }
        seen.insert(step.name.as_str());
    }
    let every: HashSet<&str> = def.steps.iter().map(|s| s.name.as_str()).collect();
    for output in &def.outputs {
        check_source(&def, &output.from, &every, "the outputs");
    }
    for input in &def.inputs {
        let used = def
            .steps
            .iter()
            .flat_map(|s| &s.inputs)
            .any(|i| i.from == Wire::Input(input.name.clone()));
        assert!(used, "pipeline input `{}` is not used", input.name);
    }
    let host = conduit_runner::host_signature(&def.signature())
        .unwrap_or_else(|e| panic!("a resolved pipeline's signature is refused by hosts: {e}"));
    if let Err(e) = host.check_bounds() {
        panic!("a resolved pipeline's signature is over the signature bounds: {e}");
    }
    let stored = def.to_bytes();
    let back = PipelineDef::from_bytes(&stored).unwrap_or_else(|e| {
        panic!(
            "a resolved pipeline's stored form does not read back: {e}\n  stored: {}",
            check::preview(&String::from_utf8_lossy(&stored))
        )
    });
    assert!(
        back.to_bytes() == stored,
        "a resolved pipeline changes through its stored form"
    );
}

/// Whether `from` names a pipeline input, or an output of a step in `steps`.
fn check_source(def: &PipelineDef, from: &Wire, steps: &HashSet<&str>, reader: &str) {
    match from {
        Wire::Input(name) => assert!(
            def.inputs.iter().any(|i| &i.name == name),
            "{reader} reads `{name}`, which is no pipeline input"
        ),
        Wire::Step { step, tensor } => {
            assert!(
                steps.contains(step.as_str()),
                "{reader} reads step `{step}`, which does not run before it"
            );
            let s = def
                .steps
                .iter()
                .find(|s| &s.name == step)
                .expect("declared");
            assert!(
                s.signature.outputs.iter().any(|o| &o.name == tensor),
                "{reader} reads `{step}.{tensor}`, which that step does not output"
            );
        }
    }
}

/// A structured manifest over the in-memory modules: well wired by
/// construction (every step input from a pipeline input or an earlier
/// step's output of its datatype and rank, steps written in a shuffled
/// order), then now and then broken in one place.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    // Step modules, and unique step names.
    let usable: Vec<&Module> = MODULES.iter().filter(|m| m.1 != Kind::Pipeline).collect();
    let mut steps: Vec<(String, &Module)> = Vec::new();
    for i in 0..u.int_in_range(1..=4)? {
        let module = if u.ratio(1, 30)? {
            &MODULES[MODULES.len() - 1]
        } else {
            *u.choose(&usable)?
        };
        let name = match u.int_in_range(0..=20u8)? {
            0 => generators::name(u)?,
            1 => "s".repeat(u.int_in_range(60..=70)?),
            _ => format!(
                "{}{i}",
                u.choose(&["tokenize", "encode", "post", "side", "step"])?
            ),
        };
        steps.push((name, module));
    }
    // Wire each step from pipeline inputs or earlier steps' outputs.
    let mut inputs: Vec<(String, Spec)> = Vec::new();
    let mut wiring: Vec<Vec<(String, String)>> = Vec::new();
    for (i, (_, m)) in steps.iter().enumerate() {
        let mut wires = Vec::new();
        for want in m.2 {
            let earlier: Vec<String> = steps[..i]
                .iter()
                .flat_map(|(n, e)| {
                    e.3.iter()
                        .filter(|o| o.1 == want.1 && o.2.len() == want.2.len())
                        .map(move |o| format!("{n}.{}", o.0))
                })
                .collect();
            let from = if !earlier.is_empty() && u.ratio(3, 4)? {
                u.choose(&earlier)?.clone()
            } else if let Some((name, _)) = inputs
                .iter()
                .find(|(_, s)| s.1 == want.1 && s.2 == want.2)
                .filter(|_| u.ratio(1, 2).unwrap_or(false))
            {
                name.clone()
            } else {
                let name = match u.int_in_range(0..=30u8)? {
                    0 => generators::name(u)?,
                    1 => "n".repeat(u.int_in_range(120..=140)?),
                    _ => format!("{}{}", want.0, inputs.len()),
                };
                inputs.push((name.clone(), *want));
                name
            };
            wires.push((want.0.to_string(), from));
        }
        wiring.push(wires);
    }
    if inputs.is_empty() {
        inputs.push(("unused".into(), ("x", "FP32", &[-1])));
    }
    // Outputs: step outputs, by `from` or by a name only one step outputs.
    let produced: Vec<(String, Spec)> = steps
        .iter()
        .flat_map(|(n, m)| m.3.iter().map(move |o| (format!("{n}.{}", o.0), *o)))
        .collect();
    let mut text = String::new();
    if u.ratio(1, 2)? {
        text.push_str(&format!(
            "description = {}\n",
            toml_string(&u.arbitrary::<String>()?)
        ));
    }
    for (name, spec) in &inputs {
        text.push_str(&port(u, "inputs", name, spec, None)?);
    }
    let mut declared = HashSet::new();
    for _ in 0..u.int_in_range(1..=3)? {
        let (from, spec) = u.choose(&produced)?;
        let tensor = from.rsplit('.').next().unwrap_or(from);
        let name = match u.int_in_range(0..=20u8)? {
            0 => generators::name(u)?,
            1 => "o".repeat(u.int_in_range(120..=140)?),
            _ => tensor.to_string(),
        };
        if !declared.insert(name.clone()) && u.ratio(7, 8)? {
            continue;
        }
        let from = if name == tensor && u.ratio(1, 3)? {
            None
        } else {
            Some(from.as_str())
        };
        text.push_str(&port(u, "outputs", &name, spec, from)?);
    }
    // Steps in a shuffled order: the registry sorts them.
    let mut order: Vec<usize> = (0..steps.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, u.int_in_range(0..=i)?);
    }
    for i in order {
        let (name, m) = &steps[i];
        text.push_str(&format!("\n[[steps]]\nname = {}\n", toml_string(name)));
        let uses = match u.int_in_range(0..=30u8)? {
            0 => u
                .choose(&["ghost@1.0.0", "blake3:00", "tok@2.0.0", "@", "tok@1.0.0+b"])?
                .to_string(),
            1..=4 => format!("{}:prod", m.0),
            5..=8 => m.0.to_string(),
            _ => format!("{}@1.0.0", m.0),
        };
        text.push_str(&format!("uses = {}\n", toml_string(&uses)));
        if !uses.contains('@') && u.ratio(1, 4)? || u.ratio(1, 40)? {
            text.push_str("follow = true\n");
        }
        let mut wires: Vec<String> = wiring[i]
            .iter()
            .filter(|_| !u.ratio(1, 40).unwrap_or(false))
            .map(|(input, from)| format!("{} = {}", toml_string(input), toml_string(from)))
            .collect();
        if u.ratio(1, 40)? {
            wires.push(format!("extra = {}", toml_string(&inputs[0].0)));
        }
        text.push_str(&format!("inputs = {{ {} }}\n", wires.join(", ")));
        if u.ratio(1, 3)? {
            let mut params = Vec::new();
            for _ in 0..u.int_in_range(1..=3)? {
                params.push(format!(
                    "{} = {}",
                    toml_string(&generators::name(u)?),
                    toml_value(u)?
                ));
            }
            text.push_str(&format!("params = {{ {} }}\n", params.join(", ")));
        }
    }
    Ok(text.into_bytes())
}

/// A `[[inputs]]` or `[[outputs]]` table of `spec`'s datatype and shape,
/// now and then another.
fn port(
    u: &mut Unstructured<'_>,
    table: &str,
    name: &str,
    spec: &Spec,
    from: Option<&str>,
) -> Result<String> {
    let datatype = match u.int_in_range(0..=40u8)? {
        0 => "STRING",
        1 => *u.choose(&["BYTES", "FP32", "INT64", "FP16", "BOOL"])?,
        _ => spec.1,
    };
    let shape = match u.int_in_range(0..=40u8)? {
        0 => (*u.choose(&["[-1, 1]", "[-1]", "[3]", "[-2]", "[]", "[-1, -1, 384]"])?).to_string(),
        // A fixed size where the source is dynamic fits too.
        1..=4 => format!(
            "{:?}",
            spec.2
                .iter()
                .map(|&d| if d < 0 { 2 } else { d })
                .collect::<Vec<_>>()
        ),
        _ => format!("{:?}", spec.2),
    };
    let mut t = format!(
        "\n[[{table}]]\nname = {}\ndatatype = \"{datatype}\"\nshape = {shape}\n",
        toml_string(name)
    );
    if let Some(from) = from {
        t.push_str(&format!("from = {}\n", toml_string(from)));
    }
    Ok(t)
}

/// A TOML value for a step parameter: every kind, non-finite floats too.
fn toml_value(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => u.arbitrary::<bool>()?.to_string(),
        1 => u.arbitrary::<i64>()?.to_string(),
        2 => {
            let f: f64 = u.arbitrary()?;
            if f.is_nan() {
                "nan".into()
            } else if f.is_infinite() {
                if f > 0.0 { "inf".into() } else { "-inf".into() }
            } else {
                format!("{f:?}")
            }
        }
        3 => (*u.choose(&["nan", "+inf", "-inf", "-nan", "0.5", "1e308"])?).into(),
        4 => "[1, 2]".into(),
        5 => "{ a = 1 }".into(),
        6 => "1979-05-27T07:32:00Z".into(),
        _ => toml_string(&generators::name(u)?),
    })
}
