//! Pipeline manifests: the TOML a user writes (a DAG of steps over
//! components and models, wired by tensor names), type-checked against every
//! step's signature at registration and stored fully resolved, each step
//! pinned to the digest it runs.
//!
//! ```toml
//! description = "tokenize, encode, pool and score"
//!
//! [[inputs]]
//! name = "text"
//! datatype = "BYTES"
//! shape = [-1, 1]
//!
//! [[outputs]]
//! name = "similarity"
//! datatype = "FP32"
//! shape = [-1]
//! from = "post.similarity"
//!
//! [[steps]]
//! name = "tokenize"
//! uses = "tokenizer@1.0.0"
//! inputs = { text = "text" }
//! params = { max_length = 128 }
//! ```
//!
//! A wire source `step.tensor` names an output of another step; any other
//! source names a pipeline input.

use crate::{Digest, Kind, Manifest, RegistryError, Signature, TensorSpec};
use conduit_types::clip;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// KServe v2 datatypes a pipeline may declare.
const DATATYPES: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BF16", "BYTES",
];

/// The largest number of steps one pipeline may have.
pub const MAX_STEPS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    inputs: Vec<SourcePort>,
    #[serde(default)]
    outputs: Vec<SourcePort>,
    #[serde(default)]
    steps: Vec<SourceStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcePort {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    /// Outputs only: the step output it is (`step.tensor`).
    #[serde(default)]
    from: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceStep {
    name: String,
    uses: String,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
}

/// Where a tensor comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wire {
    /// A pipeline input.
    Input(String),
    /// An output of an earlier step.
    Step {
        /// The step.
        step: String,
        /// Its output.
        tensor: String,
    },
}

impl std::fmt::Display for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Input(name) => write!(f, "pipeline input `{name}`"),
            Self::Step { step, tensor } => write!(f, "`{step}.{tensor}`"),
        }
    }
}

/// A typed request parameter given to a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamValue {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int64(i64),
    /// A floating-point number.
    Double(f64),
    /// A string.
    String(String),
}

/// One input of a step and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInput {
    /// The step's input name.
    pub name: String,
    /// Its source.
    pub from: Wire,
}

/// One resolved step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Step name, unique in the pipeline.
    pub name: String,
    /// Component or model.
    pub kind: Kind,
    /// What the manifest said (`tokenizer:prod`, `minilm@1.0.0`, a digest).
    pub uses: String,
    /// The version it resolved to at registration (`name@version`).
    pub pinned: String,
    /// The digest it runs (for a step that follows a tag: the digest at registration).
    pub digest: Digest,
    /// Whether the step follows its tag at run time instead of the pinned digest.
    pub follow: bool,
    /// The step's signature as checked.
    pub signature: Signature,
    /// Its inputs, in signature order.
    pub inputs: Vec<StepInput>,
    /// Parameters passed to it on every call.
    pub params: Vec<(String, ParamValue)>,
}

/// One pipeline output and the step output it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineOutput {
    /// The output as declared.
    pub spec: TensorSpec,
    /// Its source.
    pub from: Wire,
}

/// A pipeline as stored: every step resolved and checked, in an order that
/// runs each step after the steps it reads from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineDef {
    /// What it does.
    pub description: String,
    /// The pipeline's inputs.
    pub inputs: Vec<TensorSpec>,
    /// The pipeline's outputs.
    pub outputs: Vec<PipelineOutput>,
    /// Steps in topological order.
    pub steps: Vec<Step>,
}

impl PipelineDef {
    /// The pipeline's own signature.
    pub fn signature(&self) -> Signature {
        Signature {
            inputs: self.inputs.clone(),
            outputs: self.outputs.iter().map(|o| o.spec.clone()).collect(),
        }
    }

    /// The stored (JSON) form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a pipeline serialises");
        bytes.push(b'\n');
        bytes
    }

    /// Reads the stored form.
    ///
    /// # Errors
    /// A message when the bytes are not a stored pipeline.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a resolved pipeline: {e}"))
    }

    /// Parses a pipeline manifest (TOML), resolves every step with
    /// `resolve`, and type-checks the wiring.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] naming the step and tensor for a
    /// malformed manifest or a type error; what `resolve` returns (with the
    /// step named) when a reference does not resolve.
    pub fn resolve<F>(text: &[u8], mut resolve: F) -> Result<Self, RegistryError>
    where
        F: FnMut(&str) -> Result<Manifest, RegistryError>,
    {
        let invalid = |m: String| RegistryError::InvalidArgument(format!("pipeline: {m}"));
        let text = std::str::from_utf8(text)
            .map_err(|_| invalid("the manifest is not UTF-8 text".into()))?;
        let file: SourceFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| {
                    text.as_bytes()[..s.start.min(text.len())]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                        + 1
                })
                .unwrap_or(0);
            invalid(format!(
                "not a valid pipeline manifest (TOML, line {line}): {}",
                e.message().trim()
            ))
        })?;
        check_file(&file).map_err(invalid)?;

        let mut steps = Vec::with_capacity(file.steps.len());
        for s in &file.steps {
            steps.push(resolve_step(s, &mut resolve)?);
        }
        let step_names: HashSet<&str> = file.steps.iter().map(|s| s.name.as_str()).collect();
        let inputs: Vec<TensorSpec> = file.inputs.iter().map(spec).collect();
        let wire = |from: &str| parse_wire(from, &step_names);

        // Wire and check every step input.
        let mut used_inputs = HashSet::new();
        for (step, source) in steps.iter_mut().zip(&file.steps) {
            for name in source.inputs.keys() {
                if !step.signature.inputs.iter().any(|i| &i.name == name) {
                    return Err(invalid(format!(
                        "step `{}` ({}) has no input `{}`; its inputs are {}",
                        step.name,
                        step.pinned,
                        clip(name),
                        names(&step.signature.inputs)
                    )));
                }
            }
            let mut wired = Vec::new();
            for want in &step.signature.inputs {
                let Some(from) = source.inputs.get(&want.name) else {
                    return Err(invalid(format!(
                        "step `{}` input `{}` is not wired: add `inputs.{} = \"<pipeline input or step.output>\"`",
                        step.name, want.name, want.name
                    )));
                };
                let from = wire(from);
                if let Wire::Step { step: s, .. } = &from
                    && s == &step.name
                {
                    return Err(invalid(format!(
                        "step `{}` input `{}` reads the step's own output",
                        step.name, want.name
                    )));
                }
                if let Wire::Input(i) = &from {
                    used_inputs.insert(i.clone());
                }
                wired.push(StepInput {
                    name: want.name.clone(),
                    from,
                });
            }
            step.inputs = wired;
        }
        let by_name: HashMap<&str, &Step> = steps.iter().map(|s| (s.name.as_str(), s)).collect();
        for step in &steps {
            let signature_of = |i: &StepInput| {
                step.signature
                    .inputs
                    .iter()
                    .find(|s| s.name == i.name)
                    .expect("wired from the signature")
            };
            for input in &step.inputs {
                let source = source_spec(&input.from, &inputs, &by_name).map_err(|m| {
                    invalid(format!("step `{}` input `{}`: {m}", step.name, input.name))
                })?;
                check_fit(source, signature_of(input)).map_err(|m| {
                    invalid(format!(
                        "step `{}` input `{}` from {}: {m}",
                        step.name, input.name, input.from
                    ))
                })?;
            }
        }
        if let Some(unused) = inputs.iter().find(|i| !used_inputs.contains(&i.name)) {
            return Err(invalid(format!(
                "pipeline input `{}` is not used by any step",
                unused.name
            )));
        }

        // Outputs: declared `from`, or the one step output of that name.
        let mut outputs = Vec::new();
        for port in &file.outputs {
            let from = match &port.from {
                Some(from) => wire(from),
                None => infer_source(&port.name, &steps).map_err(&invalid)?,
            };
            let source = source_spec(&from, &inputs, &by_name)
                .map_err(|m| invalid(format!("pipeline output `{}`: {m}", port.name)))?;
            let declared = spec(port);
            check_fit(source, &declared).map_err(|m| {
                invalid(format!("pipeline output `{}` from {from}: {m}", port.name))
            })?;
            outputs.push(PipelineOutput {
                spec: declared,
                from,
            });
        }
        let steps = topological(steps).map_err(invalid)?;
        Ok(Self {
            description: file.description.clone(),
            inputs,
            outputs,
            steps,
        })
    }
}

fn spec(p: &SourcePort) -> TensorSpec {
    TensorSpec {
        name: p.name.clone(),
        datatype: p.datatype.clone(),
        shape: p.shape.clone(),
    }
}

fn names(specs: &[TensorSpec]) -> String {
    let list: Vec<String> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Shape and name checks that need no registry.
fn check_file(file: &SourceFile) -> Result<(), String> {
    if file.steps.is_empty() {
        return Err("a pipeline needs at least one `[[steps]]`".into());
    }
    if file.steps.len() > MAX_STEPS {
        return Err(format!(
            "a pipeline may have at most {MAX_STEPS} steps, this one has {}",
            file.steps.len()
        ));
    }
    if file.inputs.is_empty() || file.outputs.is_empty() {
        return Err("a pipeline needs at least one `[[inputs]]` and one `[[outputs]]`".into());
    }
    for (what, ports) in [("input", &file.inputs), ("output", &file.outputs)] {
        let mut seen = HashSet::new();
        for p in ports {
            if p.name.is_empty() {
                return Err(format!("a pipeline {what} has an empty name"));
            }
            // The rules every component and model signature follows
            // (`Signature::check_bounds`): a pipeline's ports are tensor
            // names that clients send and responses echo.
            if p.name.len() > conduit_types::MAX_TENSOR_NAME_BYTES {
                return Err(format!(
                    "pipeline {what} `{}` has a name of {} bytes; names are 1 to {} bytes",
                    clip(&p.name),
                    p.name.len(),
                    conduit_types::MAX_TENSOR_NAME_BYTES
                ));
            }
            if p.name.chars().any(char::is_control) {
                return Err(format!(
                    "pipeline {what} `{}` has control characters in its name",
                    clip(&conduit_types::escape_controls(&p.name))
                ));
            }
            if p.shape.len() > conduit_types::MAX_RANK {
                return Err(format!(
                    "pipeline {what} `{}` has rank {}; the limit is {}",
                    clip(&p.name),
                    p.shape.len(),
                    conduit_types::MAX_RANK
                ));
            }
            if !seen.insert(&p.name) {
                return Err(format!(
                    "pipeline {what} `{}` is declared twice",
                    clip(&p.name)
                ));
            }
            if !DATATYPES.contains(&p.datatype.as_str()) {
                return Err(format!(
                    "pipeline {what} `{}` has datatype `{}`; use one of {}",
                    clip(&p.name),
                    clip(&p.datatype),
                    DATATYPES.join(", ")
                ));
            }
            if p.shape.iter().any(|&d| d < -1) {
                return Err(format!(
                    "pipeline {what} `{}` has shape {}; dimensions are sizes or -1 (any)",
                    clip(&p.name),
                    clip(&format!("{:?}", p.shape))
                ));
            }
            if what == "input" && p.from.is_some() {
                return Err(format!(
                    "pipeline input `{}` has `from`; only outputs are wired",
                    clip(&p.name)
                ));
            }
        }
    }
    let mut seen = HashSet::new();
    for s in &file.steps {
        let ok = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!(
                "step name `{}` must be 1-64 letters, digits, `-` or `_`",
                clip(&s.name)
            ));
        }
        if !seen.insert(&s.name) {
            return Err(format!("step `{}` is declared twice", s.name));
        }
    }
    Ok(())
}

fn resolve_step<F>(s: &SourceStep, resolve: &mut F) -> Result<Step, RegistryError>
where
    F: FnMut(&str) -> Result<Manifest, RegistryError>,
{
    let uses = clip(&s.uses);
    let in_step = |e: RegistryError| match e {
        RegistryError::NotFound(m) => {
            RegistryError::NotFound(format!("pipeline step `{}` uses `{uses}`: {m}", s.name))
        }
        RegistryError::InvalidArgument(m) => {
            RegistryError::InvalidArgument(format!("pipeline step `{}` uses `{uses}`: {m}", s.name))
        }
        other => other,
    };
    if s.follow && (s.uses.contains('@') || s.uses.starts_with("blake3:")) {
        return Err(RegistryError::InvalidArgument(format!(
            "pipeline step `{}`: `follow = true` needs a tag reference (`name:tag`), not `{uses}`",
            s.name
        )));
    }
    let manifest = resolve(&s.uses).map_err(in_step)?;
    if manifest.kind == Kind::Pipeline {
        return Err(RegistryError::InvalidArgument(format!(
            "pipeline step `{}` uses `{uses}`, a pipeline; steps are components or models",
            s.name
        )));
    }
    let mut params = Vec::with_capacity(s.params.len());
    for (name, value) in &s.params {
        let value = match value {
            toml::Value::Boolean(b) => ParamValue::Bool(*b),
            toml::Value::Integer(i) => ParamValue::Int64(*i),
            // A manifest is stored as JSON, which has no NaN or infinity.
            toml::Value::Float(f) if !f.is_finite() => {
                return Err(RegistryError::InvalidArgument(format!(
                    "pipeline step `{}` param `{}` is {f}; float params must be finite",
                    s.name,
                    clip(name)
                )));
            }
            toml::Value::Float(f) => ParamValue::Double(*f),
            toml::Value::String(v) => ParamValue::String(v.clone()),
            other => {
                return Err(RegistryError::InvalidArgument(format!(
                    "pipeline step `{}` param `{}` is a {}; params are booleans, integers, floats or strings",
                    s.name,
                    clip(name),
                    other.type_str()
                )));
            }
        };
        params.push((name.clone(), value));
    }
    Ok(Step {
        name: s.name.clone(),
        kind: manifest.kind,
        uses: s.uses.clone(),
        pinned: manifest.reference(),
        digest: manifest.digest,
        follow: s.follow,
        signature: manifest.signature,
        inputs: Vec::new(),
        params,
    })
}

fn parse_wire(from: &str, steps: &HashSet<&str>) -> Wire {
    if let Some((step, tensor)) = from.split_once('.')
        && steps.contains(step)
    {
        return Wire::Step {
            step: step.to_string(),
            tensor: tensor.to_string(),
        };
    }
    Wire::Input(from.to_string())
}

fn source_spec<'a>(
    from: &Wire,
    inputs: &'a [TensorSpec],
    steps: &HashMap<&str, &'a Step>,
) -> Result<&'a TensorSpec, String> {
    match from {
        Wire::Input(name) => inputs.iter().find(|i| &i.name == name).ok_or_else(|| {
            format!(
                "`{}` is neither a pipeline input nor `step.output` of a declared step",
                clip(name)
            )
        }),
        Wire::Step { step, tensor } => {
            let s = steps[step.as_str()];
            s.signature
                .outputs
                .iter()
                .find(|o| &o.name == tensor)
                .ok_or_else(|| {
                    format!(
                        "step `{step}` ({}) has no output `{tensor}`; its outputs are {}",
                        s.pinned,
                        names(&s.signature.outputs)
                    )
                })
        }
    }
}

fn infer_source(output: &str, steps: &[Step]) -> Result<Wire, String> {
    let producers: Vec<&Step> = steps
        .iter()
        .filter(|s| s.signature.outputs.iter().any(|o| o.name == output))
        .collect();
    let output_name = output;
    let output = clip(output);
    match producers[..] {
        [one] => Ok(Wire::Step {
            step: one.name.clone(),
            tensor: output_name.to_string(),
        }),
        [] => Err(format!(
            "pipeline output `{output}`: no step has an output of that name; add `from = \"step.output\"`"
        )),
        _ => Err(format!(
            "pipeline output `{output}`: several steps output `{output}`; add `from = \"step.output\"`"
        )),
    }
}

/// Whether a tensor described by `have` may flow where `want` is expected:
/// the same datatype and rank, and no two fixed dimensions that differ.
fn check_fit(have: &TensorSpec, want: &TensorSpec) -> Result<(), String> {
    if have.datatype != want.datatype {
        return Err(format!(
            "datatype mismatch: {} `{}` is {}, expected {}",
            "tensor", have.name, have.datatype, want.datatype
        ));
    }
    if have.shape.len() != want.shape.len() {
        return Err(format!(
            "rank mismatch: `{}` has shape {:?} (rank {}), expected {:?} (rank {})",
            have.name,
            have.shape,
            have.shape.len(),
            want.shape,
            want.shape.len()
        ));
    }
    let clash = have
        .shape
        .iter()
        .zip(&want.shape)
        .any(|(&a, &b)| a >= 0 && b >= 0 && a != b);
    if clash {
        return Err(format!(
            "shape mismatch: `{}` has shape {:?}, expected {:?} (-1: any)",
            have.name, have.shape, want.shape
        ));
    }
    Ok(())
}

/// Orders steps so each runs after the steps it reads; refuses cycles.
fn topological(steps: Vec<Step>) -> Result<Vec<Step>, String> {
    let index: HashMap<String, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();
    let deps: Vec<HashSet<usize>> = steps
        .iter()
        .map(|s| {
            s.inputs
                .iter()
                .filter_map(|i| match &i.from {
                    Wire::Step { step, .. } => Some(index[step]),
                    Wire::Input(_) => None,
                })
                .collect()
        })
        .collect();
    let mut done = vec![false; steps.len()];
    let mut order = Vec::with_capacity(steps.len());
    while order.len() < steps.len() {
        let ready: Vec<usize> = (0..steps.len())
            .filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))
            .collect();
        if ready.is_empty() {
            let stuck: Vec<String> = (0..steps.len())
                .filter(|&i| !done[i])
                .map(|i| format!("`{}`", steps[i].name))
                .collect();
            return Err(format!(
                "the steps {} read each other's outputs in a cycle",
                stuck.join(", ")
            ));
        }
        for i in ready {
            done[i] = true;
            order.push(i);
        }
    }
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().expect("each step once"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(
        name: &str,
        kind: Kind,
        inputs: &[(&str, &str, &[i64])],
        outputs: &[(&str, &str, &[i64])],
    ) -> Manifest {
        let specs = |l: &[(&str, &str, &[i64])]| {
            l.iter()
                .map(|(n, d, s)| TensorSpec {
                    name: n.to_string(),
                    datatype: d.to_string(),
                    shape: s.to_vec(),
                })
                .collect()
        };
        Manifest {
            tenant: "t".into(),
            name: name.into(),
            version: "1.0.0".into(),
            kind,
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
        }
    }

    fn modules(reference: &str) -> Result<Manifest, RegistryError> {
        let name = reference.split(['@', ':']).next().unwrap();
        match name {
            "tok" => Ok(manifest(
                "tok",
                Kind::Component,
                &[("text", "BYTES", &[-1, -1])],
                &[("ids", "INT64", &[-1, -1]), ("mask", "INT64", &[-1, -1])],
            )),
            "enc" => Ok(manifest(
                "enc",
                Kind::Model,
                &[("ids", "INT64", &[-1, -1]), ("mask", "INT64", &[-1, -1])],
                &[("hidden", "FP32", &[-1, -1, 384])],
            )),
            "post" => Ok(manifest(
                "post",
                Kind::Component,
                &[
                    ("hidden", "FP32", &[-1, -1, -1]),
                    ("mask", "INT64", &[-1, -1]),
                ],
                &[("score", "FP32", &[-1])],
            )),
            "pipe" => Ok(manifest("pipe", Kind::Pipeline, &[], &[])),
            "id" => Ok(manifest(
                "id",
                Kind::Component,
                &[("x", "INT64", &[-1, -1])],
                &[("y", "INT64", &[-1, -1])],
            )),
            _ => Err(RegistryError::NotFound(format!("`{reference}` not found"))),
        }
    }

    const GOOD: &str = r#"
description = "demo"
[[inputs]]
name = "text"
datatype = "BYTES"
shape = [-1, 1]
[[outputs]]
name = "score"
datatype = "FP32"
shape = [-1]
[[steps]]
name = "post"
uses = "post@1.0.0"
inputs = { hidden = "encode.hidden", mask = "tokenize.mask" }
[[steps]]
name = "encode"
uses = "enc:prod"
inputs = { ids = "tokenize.ids", mask = "tokenize.mask" }
[[steps]]
name = "tokenize"
uses = "tok"
follow = true
inputs = { text = "text" }
params = { max_length = 128, lower = true, scale = 0.5, mode = "x" }
"#;

    fn check(text: &str) -> Result<PipelineDef, RegistryError> {
        PipelineDef::resolve(text.as_bytes(), modules)
    }

    fn refused(text: &str, fragments: &[&str]) {
        let err = check(text).expect_err("must be refused").to_string();
        for f in fragments {
            assert!(err.contains(f), "{err:?} lacks {f:?}");
        }
        assert!(!err.contains('\n'), "one line: {err:?}");
    }

    #[test]
    fn resolves_orders_and_round_trips() {
        let def = check(GOOD).unwrap();
        let order: Vec<&str> = def.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["tokenize", "encode", "post"]);
        assert_eq!(def.steps[0].pinned, "tok@1.0.0");
        assert!(def.steps[0].follow);
        assert_eq!(def.steps[0].params.len(), 4);
        assert_eq!(def.steps[1].digest, Digest::of(b"enc"));
        assert_eq!(
            def.outputs[0].from,
            Wire::Step {
                step: "post".into(),
                tensor: "score".into()
            }
        );
        assert_eq!(def.signature().inputs[0].name, "text");
        assert_eq!(PipelineDef::from_bytes(&def.to_bytes()).unwrap(), def);
    }

    #[test]
    fn refuses_type_errors_naming_step_and_tensor() {
        refused(
            &GOOD.replace("hidden = \"encode.hidden\"", "hidden = \"tokenize.ids\""),
            &[
                "step `post` input `hidden`",
                "datatype mismatch",
                "INT64",
                "FP32",
            ],
        );
        refused(
            &GOOD.replace("shape = [-1, 1]", "shape = [-1]"),
            &["step `tokenize` input `text`", "rank mismatch"],
        );
        refused(
            &GOOD.replace("ids = \"tokenize.ids\", ", ""),
            &["step `encode` input `ids` is not wired"],
        );
        refused(
            &GOOD.replace("text = \"text\"", "text = \"text\", extra = \"text\""),
            &["step `tokenize`", "no input `extra`"],
        );
        refused(
            &GOOD.replace("\"encode.hidden\"", "\"encode.nope\""),
            &["step `post` input `hidden`", "no output `nope`"],
        );
        refused(
            &GOOD.replace("text = \"text\"", "text = \"missing\""),
            &["step `tokenize` input `text`", "`missing`"],
        );
        refused(
            &GOOD.replace(
                "[[outputs]]",
                "[[inputs]]\nname = \"spare\"\ndatatype = \"FP32\"\nshape = [1]\n[[outputs]]",
            ),
            &["pipeline input `spare` is not used"],
        );
        refused(
            &GOOD.replace("shape = [-1]\n[[steps]]", "shape = [-1, 2]\n[[steps]]"),
            &["pipeline output `score`", "rank mismatch"],
        );
        refused(
            &GOOD.replace("uses = \"post@1.0.0\"", "uses = \"ghost@1.0.0\""),
            &["pipeline step `post` uses `ghost@1.0.0`", "not found"],
        );
        refused(
            &GOOD.replace("uses = \"post@1.0.0\"", "uses = \"pipe@1.0.0\""),
            &["a pipeline; steps are components or models"],
        );
        refused(
            &GOOD.replace("uses = \"tok\"", "uses = \"tok@1.0.0\""),
            &["`follow = true` needs a tag reference"],
        );
        refused(
            &GOOD.replace("mode = \"x\"", "mode = [1]"),
            &["param `mode` is a array"],
        );
        refused("steps = 3", &["TOML, line 1"]);
        refused(
            &GOOD.replace("description", "descriptoin"),
            &["unknown field"],
        );
        refused(
            &GOOD.replace("\"BYTES\"", "\"STRING\""),
            &["datatype `STRING`"],
        );
    }

    #[test]
    fn refuses_cycles() {
        let cyclic = r#"
[[inputs]]
name = "text"
datatype = "BYTES"
shape = [-1, 1]
[[outputs]]
name = "y"
datatype = "INT64"
shape = [-1, -1]
from = "a.y"
[[steps]]
name = "t"
uses = "tok@1.0.0"
inputs = { text = "text" }
[[steps]]
name = "a"
uses = "id@1.0.0"
inputs = { x = "b.y" }
[[steps]]
name = "b"
uses = "id@1.0.0"
inputs = { x = "a.y" }
"#;
        refused(cyclic, &["`a`, `b`", "cycle"]);
        assert!(check(&cyclic.replace("x = \"b.y\"", "x = \"t.ids\"")).is_ok());
    }
}
