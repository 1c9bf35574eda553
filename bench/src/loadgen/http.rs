//! KServe v2 HTTP/REST with Triton's binary tensor extension, as
//! `tritonclient.http` sends it: a JSON header (inputs with
//! `parameters.binary_data_size`, outputs with `binary_data: true`), then
//! the tensors' raw bytes; `Inference-Header-Content-Length` gives the JSON's
//! length, both ways. HTTP/1.1 keep-alive over a minimal hyper client.

use super::client::{Failure, Target};
use super::workload::{Case, Wire};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

/// Triton's header naming the length of a body's JSON part.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The request, built once: path, headers and body.
pub struct Encoded {
    path: String,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    json_len: HeaderValue,
    body: Bytes,
}

impl Encoded {
    /// Builds the binary-extension body of `case`.
    ///
    /// # Errors
    /// When the key or address is not valid header text.
    pub fn new(target: &Target, case: &Case) -> anyhow::Result<Self> {
        let inputs: Vec<Value> = case
            .inputs
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "datatype": t.datatype,
                    "shape": t.shape,
                    "parameters": { "binary_data_size": t.data.len() },
                })
            })
            .collect();
        let outputs: Vec<Value> = case
            .outputs
            .iter()
            .map(|name| json!({ "name": name, "parameters": { "binary_data": true } }))
            .collect();
        let header = serde_json::to_vec(&json!({ "inputs": inputs, "outputs": outputs }))?;
        let mut body = BytesMut::from(&header[..]);
        for t in &case.inputs {
            body.extend_from_slice(&t.data);
        }
        let path = if target.version.is_empty() {
            format!("/v2/models/{}/infer", target.model)
        } else {
            format!(
                "/v2/models/{}/versions/{}/infer",
                target.model, target.version
            )
        };
        Ok(Self {
            path,
            host: HeaderValue::from_str(target.host_port())?,
            authorization: match &target.key {
                Some(key) => Some(HeaderValue::from_str(&format!("Bearer {key}"))?),
                None => None,
            },
            json_len: HeaderValue::from(header.len()),
            body: body.freeze(),
        })
    }
}

/// One HTTP/1.1 keep-alive connection, reopened on the next request when it
/// broke (or a timeout abandoned it mid-request).
pub struct Conn {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// Opens a connection to `target`.
    ///
    /// # Errors
    /// [`Failure::Connect`].
    pub async fn connect(target: &Target) -> Result<Self, Failure> {
        Ok(Self {
            sender: Some(open(target).await?),
        })
    }

    /// Sends one inference request.
    ///
    /// # Errors
    /// [`Failure::Transport`] for a broken connection, [`Failure::Status`]
    /// for a non-200 answer, [`Failure::Decode`] for a malformed one.
    pub async fn infer(&mut self, target: &Target, e: &Encoded) -> Result<Vec<Wire>, Failure> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => open(target).await?,
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&e.path)
            .header(HOST, e.host.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(HEADER_LENGTH, e.json_len.clone());
        if let Some(a) = &e.authorization {
            request = request.header(AUTHORIZATION, a.clone());
        }
        let request = request
            .body(Full::new(e.body.clone()))
            .map_err(|err| Failure::Transport(err.to_string()))?;
        let transport = |err: hyper::Error| Failure::Transport(err.to_string());
        sender.ready().await.map_err(transport)?;
        let response = sender.send_request(request).await.map_err(transport)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(transport)?.to_bytes();
        // The answer was read whole: the connection can carry the next one.
        self.sender = Some(sender);
        if parts.status != StatusCode::OK {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(Failure::Status {
                kind: format!("http {}", parts.status.as_u16()),
                message,
            });
        }
        let json_len = match parts.headers.get(HEADER_LENGTH) {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Failure::Decode(format!("bad {HEADER_LENGTH}: {v:?}")))?,
            None => body.len(),
        };
        decode(body, json_len).map_err(Failure::Decode)
    }
}

async fn open(target: &Target) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let connect = |e: std::io::Error| Failure::Connect(format!("{}: {e}", target.address));
    let tcp = tokio::net::TcpStream::connect(target.host_port())
        .await
        .map_err(connect)?;
    tcp.set_nodelay(true).map_err(connect)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| Failure::Connect(format!("{}: {e}", target.address)))?;
    // Drives the connection; ends when the sender is dropped or it breaks.
    tokio::spawn(connection);
    Ok(sender)
}

/// The outputs of an answer whose first `json_len` bytes are JSON and the
/// rest the binary outputs, in order.
fn decode(body: Bytes, json_len: usize) -> Result<Vec<Wire>, String> {
    if json_len > body.len() {
        return Err(format!(
            "JSON length {json_len} exceeds the body's {} bytes",
            body.len()
        ));
    }
    let header: Value = serde_json::from_slice(&body[..json_len]).map_err(|e| e.to_string())?;
    let mut binary = body.slice(json_len..);
    let outputs = header["outputs"]
        .as_array()
        .ok_or("answer has no outputs")?;
    let mut wires = Vec::with_capacity(outputs.len());
    for o in outputs {
        let name = o["name"].as_str().ok_or("output without a name")?;
        let datatype = o["datatype"].as_str().unwrap_or_default().to_string();
        let shape = o["shape"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let data = match o["parameters"]["binary_data_size"].as_u64() {
            Some(n) if n as usize <= binary.len() => binary.split_to(n as usize),
            Some(n) => return Err(format!("output `{name}`: {n} bytes announced, fewer sent")),
            None => json_data(&datatype, &o["data"])
                .map_err(|e| format!("output `{name}`: {e}"))?
                .into(),
        };
        wires.push(Wire {
            name: name.into(),
            datatype,
            shape,
            data,
        });
    }
    Ok(wires)
}

/// An output given as JSON `data` (a server that ignored `binary_data`),
/// as raw little-endian bytes.
fn json_data(datatype: &str, data: &Value) -> Result<Vec<u8>, String> {
    fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            other => out.push(other),
        }
    }
    let mut items = Vec::new();
    flatten(data, &mut items);
    let mut raw = Vec::new();
    for v in items {
        let bad = || format!("{datatype} element {v}");
        match datatype {
            "FP32" => raw.extend((v.as_f64().ok_or_else(bad)? as f32).to_le_bytes()),
            "FP64" => raw.extend(v.as_f64().ok_or_else(bad)?.to_le_bytes()),
            "INT32" => raw.extend((v.as_i64().ok_or_else(bad)? as i32).to_le_bytes()),
            "INT64" => raw.extend(v.as_i64().ok_or_else(bad)?.to_le_bytes()),
            "BYTES" => {
                let s = v.as_str().ok_or_else(bad)?;
                raw.extend((s.len() as u32).to_le_bytes());
                raw.extend(s.as_bytes());
            }
            other => return Err(format!("JSON data of datatype {other} not supported")),
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_binary_and_json_outputs() {
        let header = br#"{"model_name":"m","outputs":[{"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"b","datatype":"INT64","shape":[1,2],"data":[[3,4]]}]}"#;
        let mut body = header.to_vec();
        body.extend(1.5f32.to_le_bytes());
        body.extend(2.5f32.to_le_bytes());
        let wires = decode(Bytes::from(body), header.len()).unwrap();
        assert_eq!(wires[0].shape, [2]);
        assert_eq!(&wires[0].data[..4], &1.5f32.to_le_bytes());
        assert_eq!(wires[1].data.len(), 16);
        assert_eq!(&wires[1].data[8..], &4i64.to_le_bytes());
        let short = decode(Bytes::from(header.to_vec()), header.len()).unwrap_err();
        assert!(short.contains("8 bytes announced"), "{short}");
    }

    #[test]
    fn encodes_the_binary_extension() {
        let target = Target {
            protocol: super::super::client::Protocol::Http,
            address: "http://127.0.0.1:8000/".into(),
            model: "add".into(),
            version: "2".into(),
            key: Some("k".into()),
            timeout: std::time::Duration::from_secs(1),
        };
        let case = super::super::workload::Workload::Add
            .case(std::path::Path::new("unused"))
            .unwrap();
        let e = Encoded::new(&target, &case).unwrap();
        assert_eq!(e.path, "/v2/models/add/versions/2/infer");
        assert_eq!(e.host, "127.0.0.1:8000");
        let n: usize = e.json_len.to_str().unwrap().parse().unwrap();
        let header: Value = serde_json::from_slice(&e.body[..n]).unwrap();
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 16);
        assert_eq!(header["outputs"][0]["parameters"]["binary_data"], true);
        assert_eq!(e.body.len(), n + 16);
    }
}
