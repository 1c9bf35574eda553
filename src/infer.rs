//! `conduit infer`: one KServe v2 gRPC call from the command line.
//!
//! Inputs are `name=JSON`: the JSON's nesting gives the shape, the model's
//! metadata the datatype (`text=[["a"],["b"]]` is BYTES `[2, 1]`).

use anyhow::{Context, Result, anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use conduit_proto::inference::{
    InferParameter, ModelInferRequest, ModelMetadataRequest,
    grpc_inference_service_client::GrpcInferenceServiceClient, infer_parameter::ParameterChoice,
    model_infer_request::InferInputTensor, model_infer_request::InferRequestedOutputTensor,
};
use serde_json::Value;
use std::collections::HashMap;

/// `conduit infer` options.
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// The model, component or pipeline: any reference (`name`, `name@version`,
    /// `name:tag`, `name@blake3:<hex>`, `blake3:<hex>`, `tenant/…`), or a name with `--model-version`.
    pub model: String,
    /// Version, tag or digest within the named module (default: `latest`).
    #[arg(long = "model-version", default_value = "")]
    pub version: String,
    /// An input, `name=JSON` (repeatable); nesting gives the shape.
    #[arg(long = "input", short = 'i', required = true)]
    pub inputs: Vec<String>,
    /// A request parameter, `name=value` (repeatable); for a pipeline step, `step.name=value`.
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Only these outputs (repeatable).
    #[arg(long = "output")]
    pub outputs: Vec<String>,
    /// Print the whole answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `conduit infer`.
pub async fn infer(conn: &crate::modules::Connection, mut args: InferArgs) -> Result<()> {
    let key = conn.key()?;
    // The reference is parsed once, here: KServe v2 takes a model name and a
    // version, tag or digest apart.
    (args.model, args.version) =
        crate::modules::model_and_version(conn, &args.model, &args.version).await?;
    let channel = tonic::transport::Endpoint::from_shared(conn.registry.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", conn.registry))?;
    let mut client = GrpcInferenceServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    let meta = client
        .model_metadata(authed(
            &key,
            ModelMetadataRequest {
                name: args.model.clone(),
                version: args.version.clone(),
            },
        )?)
        .await
        .map_err(status)?
        .into_inner();
    let mut inputs = Vec::new();
    let mut raw = Vec::new();
    for spec in &args.inputs {
        let (name, json) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--input `{spec}` must be name=JSON"))?;
        let declared = meta.inputs.iter().find(|i| i.name == name).ok_or_else(|| {
            let names: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
            anyhow!(
                "`{}` has no input `{name}`; its inputs: {}",
                args.model,
                names.join(", ")
            )
        })?;
        let value: Value = serde_json::from_str(json)
            .or_else(|_| serde_json::from_str(&format!("{json:?}")))
            .with_context(|| format!("--input {name}: not JSON"))?;
        let (shape, data) =
            encode(&declared.datatype, &value).with_context(|| format!("--input {name}"))?;
        inputs.push(InferInputTensor {
            name: name.to_string(),
            datatype: declared.datatype.clone(),
            shape,
            ..Default::default()
        });
        raw.push(data);
    }
    let mut parameters = HashMap::new();
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--param `{p}` must be name=value"))?;
        let choice = if let Ok(i) = v.parse::<i64>() {
            ParameterChoice::Int64Param(i)
        } else if let Ok(f) = v.parse::<f64>() {
            ParameterChoice::DoubleParam(f)
        } else if let Ok(b) = v.parse::<bool>() {
            ParameterChoice::BoolParam(b)
        } else {
            ParameterChoice::StringParam(v.to_string())
        };
        parameters.insert(
            k.to_string(),
            InferParameter {
                parameter_choice: Some(choice),
            },
        );
    }
    let request = ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.version.clone(),
        parameters,
        inputs,
        outputs: args
            .outputs
            .iter()
            .map(|n| InferRequestedOutputTensor {
                name: n.clone(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: raw,
        ..Default::default()
    };
    let answer = client
        .model_infer(authed(&key, request)?)
        .await
        .map_err(status)?
        .into_inner();
    let mut outputs = Vec::new();
    for (i, out) in answer.outputs.iter().enumerate() {
        let data = answer
            .raw_output_contents
            .get(i)
            .ok_or_else(|| anyhow!("output `{}` has no data", out.name))?;
        outputs.push((out, decode(&out.datatype, data)?));
    }
    let mut params: Vec<(&String, String)> = answer
        .parameters
        .iter()
        .map(|(k, v)| {
            let v = match &v.parameter_choice {
                Some(ParameterChoice::StringParam(s)) => s.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (k, v)
        })
        .collect();
    params.sort();
    if args.json {
        let json = serde_json::json!({
            "model_name": answer.model_name,
            "model_version": answer.model_version,
            "parameters": params.iter().map(|(k, v)| ((*k).clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "outputs": outputs.iter().map(|(o, data)| serde_json::json!({
                "name": o.name, "datatype": o.datatype, "shape": o.shape, "data": data,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("{} {}", answer.model_name, answer.model_version);
    for (k, v) in &params {
        println!("  {k}: {v}");
    }
    for (o, data) in &outputs {
        let values = data.as_array().map(Vec::as_slice).unwrap_or_default();
        let shown: Vec<String> = values.iter().take(8).map(short).collect();
        let more = if values.len() > 8 {
            format!(", … ({} values)", values.len())
        } else {
            String::new()
        };
        println!(
            "{} {} {:?}: [{}{more}]",
            o.name,
            o.datatype,
            o.shape,
            shown.join(", ")
        );
    }
    Ok(())
}

fn short(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", s.code(), s.message())
}

fn authed<T>(key: &str, message: T) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}")
            .parse()
            .map_err(|_| anyhow!("the API key has characters a header cannot carry"))?,
    );
    Ok(request)
}

/// The shape of nested arrays and their leaves in order.
fn flatten<'a>(
    v: &'a Value,
    depth: usize,
    shape: &mut Vec<i64>,
    leaves: &mut Vec<&'a Value>,
) -> Result<()> {
    match v {
        Value::Array(items) => {
            if shape.len() == depth {
                shape.push(items.len() as i64);
            } else if shape[depth] != items.len() as i64 {
                bail!("ragged array: rows of different lengths");
            }
            for item in items {
                flatten(item, depth + 1, shape, leaves)?;
            }
        }
        leaf => {
            if shape.len() != depth {
                bail!("ragged array: mixed nesting depths");
            }
            leaves.push(leaf);
        }
    }
    Ok(())
}

/// Raw KServe v2 bytes of `value` as `datatype`, and its shape.
fn encode(datatype: &str, value: &Value) -> Result<(Vec<i64>, Bytes)> {
    let mut shape = Vec::new();
    let mut leaves = Vec::new();
    flatten(value, 0, &mut shape, &mut leaves)?;
    let mut out = BytesMut::new();
    for leaf in leaves {
        let num = || {
            leaf.as_f64()
                .ok_or_else(|| anyhow!("{leaf} is not a number ({datatype})"))
        };
        let int = || {
            leaf.as_i64()
                .ok_or_else(|| anyhow!("{leaf} is not an integer ({datatype})"))
        };
        match datatype {
            "BYTES" => {
                let s = match leaf {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.put_u32_le(u32::try_from(s.len())?);
                out.put_slice(s.as_bytes());
            }
            "BOOL" => out.put_u8(u8::from(
                leaf.as_bool()
                    .ok_or_else(|| anyhow!("{leaf} is not a boolean"))?,
            )),
            "FP32" => out.put_f32_le(num()? as f32),
            "FP64" => out.put_f64_le(num()?),
            "INT8" => out.put_i8(i8::try_from(int()?)?),
            "INT16" => out.put_i16_le(i16::try_from(int()?)?),
            "INT32" => out.put_i32_le(i32::try_from(int()?)?),
            "INT64" => out.put_i64_le(int()?),
            "UINT8" => out.put_u8(u8::try_from(int()?)?),
            "UINT16" => out.put_u16_le(u16::try_from(int()?)?),
            "UINT32" => out.put_u32_le(u32::try_from(int()?)?),
            "UINT64" => out.put_u64_le(u64::try_from(int()?)?),
            other => bail!("datatype {other} cannot be given as JSON here"),
        }
    }
    Ok((shape, out.freeze()))
}

/// Raw KServe v2 bytes as a flat JSON array.
fn decode(datatype: &str, raw: &[u8]) -> Result<Value> {
    fn each<const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> Value) -> Vec<Value> {
        raw.chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N")))
            .collect()
    }
    let values = match datatype {
        "FP32" => each::<4>(raw, |b| Value::from(f64::from(f32::from_le_bytes(b)))),
        "FP64" => each::<8>(raw, |b| Value::from(f64::from_le_bytes(b))),
        "INT64" => each::<8>(raw, |b| Value::from(i64::from_le_bytes(b))),
        "INT32" => each::<4>(raw, |b| Value::from(i32::from_le_bytes(b))),
        "INT16" => each::<2>(raw, |b| Value::from(i16::from_le_bytes(b))),
        "INT8" => each::<1>(raw, |b| Value::from(b[0] as i8)),
        "UINT64" => each::<8>(raw, |b| Value::from(u64::from_le_bytes(b))),
        "UINT32" => each::<4>(raw, |b| Value::from(u32::from_le_bytes(b))),
        "UINT16" => each::<2>(raw, |b| Value::from(u16::from_le_bytes(b))),
        "UINT8" => each::<1>(raw, |b| Value::from(b[0])),
        "BOOL" => each::<1>(raw, |b| Value::from(b[0] != 0)),
        "BYTES" => {
            let mut out = Vec::new();
            let mut rest = raw;
            while rest.len() >= 4 {
                let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                let item = rest
                    .get(4..4 + len)
                    .ok_or_else(|| anyhow!("truncated BYTES output"))?;
                out.push(Value::from(String::from_utf8_lossy(item).into_owned()));
                rest = &rest[4 + len..];
            }
            out
        }
        other => bail!("cannot print {other} outputs"),
    };
    Ok(Value::Array(values))
}
