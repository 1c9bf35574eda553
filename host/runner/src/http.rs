//! KServe v2 HTTP/REST over [`Serving`], with Triton's routes and
//! extensions as `tritonclient.http` calls them.
//!
//! Server health and server metadata answer without a key (probes have
//! none); `/metrics` needs the metrics key or an admin tenant's key (it names
//! every tenant's models); every model and repository route needs
//! `Authorization: Bearer <key>`, which selects the tenant — as over gRPC.
//! Every error is `{"error": "<message>"}`; a [`ServeError`] gets the status
//! its class names ([`super::StatusClass::http`]), routing errors 404/405
//! and an oversized body 413. JSON tensors and Triton's binary tensor
//! extension are translated by the private `serving::json` module.

use super::encoding::{self, Inflate};
use super::{ServeError, Serving, json, wire};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conduit_registry::Tenant;
use conduit_types::clip;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Instant;

/// The HTTP router: Triton's KServe v2 REST routes over `serving`, to be
/// served with `axum::serve(listener, router(serving))`.
pub fn router(serving: Serving) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(health))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/stats", get(all_statistics))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/{name}/config", get(model_config))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(model_config),
        )
        .route("/v2/models/{name}/stats", get(model_statistics))
        .route(
            "/v2/models/{name}/versions/{version}/stats",
            get(model_statistics),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{name}/load", post(repository_load))
        .route(
            "/v2/repository/models/{name}/unload",
            post(repository_unload),
        )
        .route("/metrics", get(metrics))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(serving)
}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn too_large(declared: Option<u64>, max: usize) -> Self {
        let message = match declared {
            Some(n) => format!("request body of {n} bytes exceeds the limit of {max} bytes"),
            None => format!("request body exceeds the limit of {max} bytes"),
        };
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// The data-plane error this answer stands for, to count and log it.
    fn as_serve_error(&self) -> ServeError {
        let m = self.message.clone();
        match self.status {
            StatusCode::PAYLOAD_TOO_LARGE => ServeError::TooLarge(m),
            StatusCode::NOT_IMPLEMENTED => ServeError::Unsupported(m),
            StatusCode::REQUEST_TIMEOUT => ServeError::Deadline(m),
            s if s.is_server_error() => ServeError::Internal(m),
            _ => ServeError::InvalidInput(m),
        }
    }
}

/// The one place a data-plane error becomes an HTTP status.
impl From<ServeError> for HttpError {
    fn from(e: ServeError) -> Self {
        let status =
            StatusCode::from_u16(e.class().http()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, e.message())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let too_large = self.status == StatusCode::PAYLOAD_TOO_LARGE;
        // The last guard: no message leaves longer than the cap.
        let message = conduit_types::cap_message(self.message);
        let mut response = (self.status, axum::Json(json!({ "error": message }))).into_response();
        if too_large {
            // The rest of the body is never read, so this connection cannot
            // carry another request: say so, or a client's pool reuses it.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

type Answer = Result<Response, HttpError>;

/// `{name}` and, on the `/versions/{version}` routes, `{version}`.
#[derive(Deserialize)]
struct ModelPath {
    name: String,
    #[serde(default)]
    version: String,
}

fn model_path(path: Result<Path<ModelPath>, PathRejection>) -> Result<ModelPath, HttpError> {
    path.map(|Path(p)| p)
        .map_err(|e| ServeError::InvalidInput(e.body_text()).into())
}

async fn tenant(serving: &Serving, headers: &HeaderMap) -> Result<Tenant, HttpError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    Ok(serving.authenticate(header).await?)
}

/// The request body under this server's size cap and body-progress
/// timeout, decompressed when it comes with `Content-Encoding: gzip` or
/// `deflate` — the decompressed size under the same cap (413 past it).
async fn request_body(
    serving: &Serving,
    body: Body,
    headers: &HeaderMap,
) -> Result<Bytes, HttpError> {
    let config = serving.config();
    let coding = encoding::request_coding(headers)?;
    let max = config.max_request_bytes;
    let raw = read_body(body, headers, max, config.connections.body_progress_timeout).await?;
    let Some(coding) = coding else {
        return Ok(raw);
    };
    // Inflating up to the limit is CPU work: off the request threads.
    let inflated = tokio::task::spawn_blocking(move || encoding::decompress(coding, &raw, max))
        .await
        .map_err(|e| ServeError::Internal(format!("decompression task failed: {e}")))?;
    match inflated {
        Ok(data) => Ok(Bytes::from(data)),
        Err(Inflate::TooLarge) => Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body decompresses ({}) to more than the limit of {max} bytes",
                coding.as_str()
            ),
        )),
        Err(Inflate::Corrupt(m)) => {
            Err(ServeError::InvalidInput(format!("the request body is not valid {m}")).into())
        }
    }
}

/// The whole body, refused with 413 once it passes `max` bytes (at once
/// when `Content-Length` says so).
async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    max: usize,
    stall: std::time::Duration,
) -> Result<Bytes, HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(HttpError::too_large(declared, max));
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = super::listen::next_frame(&mut body, stall).await? {
        let frame = frame.map_err(|e| {
            HttpError::from(ServeError::InvalidInput(format!(
                "reading the request body failed: {e}"
            )))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > max {
            return Err(HttpError::too_large(declared, max));
        }
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    })
}

/// A JSON body that may be empty (then `T::default()`).
fn optional_json<T: Default + for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ServeError::InvalidInput(format!("malformed JSON request: {e}")).into())
}

fn json_response(value: &Value) -> Response {
    axum::Json(value).into_response()
}

async fn health() -> StatusCode {
    StatusCode::OK
}

/// 200 when the runner can serve; 503 with the reason otherwise (its
/// registry unreachable, a model's executor down).
async fn ready(State(serving): State<Serving>) -> Answer {
    serving
        .health()
        .map_err(|why| HttpError::new(StatusCode::SERVICE_UNAVAILABLE, why))?;
    Ok(StatusCode::OK.into_response())
}

async fn server_metadata() -> Response {
    json_response(&json!({
        "name": "conduit",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": super::EXTENSIONS,
    }))
}

async fn model_metadata(
    State(serving): State<Serving>,
    headers: HeaderMap,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Answer {
    let p = model_path(path)?;
    let tenant = tenant(&serving, &headers).await?;
    let m = serving.resolve(&tenant, &p.name, &p.version).await?;
    let versions: Vec<String> = serving
        .versions(&tenant, &m.name)
        .await?
        .into_iter()
        .map(|v| v.version)
        .collect();
    let meta = |t: &conduit_registry::TensorSpec| json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape });
    Ok(json_response(&json!({
        "name": m.name,
        "versions": versions,
        "platform": wire::platform(m.kind),
        "inputs": m.signature.inputs.iter().map(meta).collect::<Vec<_>>(),
        "outputs": m.signature.outputs.iter().map(meta).collect::<Vec<_>>(),
    })))
}

/// 200 when ready; Triton's 400 when not (unloaded, or no such model).
async fn model_ready(
    State(serving): State<Serving>,
    headers: HeaderMap,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Answer {
    let p = model_path(path)?;
    let tenant = tenant(&serving, &headers).await?;
    let reason = match serving.ready(&tenant, &p.name, &p.version).await {
        Ok(true) => return Ok(StatusCode::OK.into_response()),
        Ok(false) => format!("model `{}` is unloaded", p.name),
        Err(ServeError::NotFound(m)) => m,
        Err(e) => return Err(e.into()),
    };
    Err(HttpError::new(StatusCode::BAD_REQUEST, reason))
}

async fn model_config(
    State(serving): State<Serving>,
    headers: HeaderMap,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Answer {
    let p = model_path(path)?;
    let tenant = tenant(&serving, &headers).await?;
    let config = serving.model_config(&tenant, &p.name, &p.version).await?;
    Ok(json_response(&json::model_config(&config)))
}

async fn statistics(serving: &Serving, headers: &HeaderMap, name: &str, version: &str) -> Answer {
    let tenant = tenant(serving, headers).await?;
    let stats: Vec<_> = serving
        .statistics(&tenant, name, version)
        .await?
        .iter()
        .map(|(k, c)| wire::statistics(k, c))
        .collect();
    Ok(json_response(&json::statistics(&stats)))
}

async fn all_statistics(State(serving): State<Serving>, headers: HeaderMap) -> Answer {
    statistics(&serving, &headers, "", "").await
}

async fn model_statistics(
    State(serving): State<Serving>,
    headers: HeaderMap,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Answer {
    let p = model_path(path)?;
    statistics(&serving, &headers, &p.name, &p.version).await
}

async fn infer(
    State(serving): State<Serving>,
    headers: HeaderMap,
    path: Result<Path<ModelPath>, PathRejection>,
    body: Body,
) -> Answer {
    let received = Instant::now();
    let p = model_path(path)?;
    let tenant = tenant(&serving, &headers).await?;
    let (mut request, modes) = match decode_infer(&serving, &headers, body).await {
        Ok(decoded) => decoded,
        Err(e) => {
            serving
                .decode_failed(&tenant, &p.name, &p.version, &e.as_serve_error())
                .await;
            return Err(e);
        }
    };
    request.model = p.name;
    request.version = p.version;
    request.received = Some(received);
    let mut answer = serving.infer(&tenant, request).await?;
    let encoded = json::encode_response(&answer, &modes, serving.config().max_response_bytes)?;
    let coding = encoding::response_coding(&headers);
    let data = match coding {
        None => encoded.body,
        Some(coding) => {
            let plain = encoded.body;
            tokio::task::spawn_blocking(move || Bytes::from(encoding::compress(coding, &plain)))
                .await
                .map_err(|e| ServeError::Internal(format!("compression task failed: {e}")))?
        }
    };
    // The tenant's permit goes with the body: released when the last byte
    // is written (or the client goes away), not when the answer is built.
    let body = super::HeldBody::new(Body::from(data), answer.guard.take());
    let mut response = Body::new(body).into_response();
    let headers = response.headers_mut();
    if let Some(coding) = coding {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.as_str()),
        );
    }
    match encoded.json_len {
        // The JSON length of the uncompressed body, as Triton sends it.
        Some(n) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(json::HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(response)
}

/// An inference request body as the data plane's request (model, version
/// and arrival left for the caller) and the client's output modes.
async fn decode_infer(
    serving: &Serving,
    headers: &HeaderMap,
    body: Body,
) -> Result<(super::InferRequest, json::OutputModes), HttpError> {
    let body = request_body(serving, body, headers).await?;
    let json_len = match headers.get(json::HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ServeError::InvalidInput("Inference-Header-Content-Length must be a byte count".into())
        })?),
    };
    let (json, binary) = json::split_body(body, json_len)?;
    Ok(json::decode_request(&json, binary)?)
}

#[derive(Default, Deserialize)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

async fn repository_index(
    State(serving): State<Serving>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let tenant = tenant(&serving, &headers).await?;
    let body = request_body(&serving, body, &headers).await?;
    let r: IndexRequest = optional_json(&body)?;
    let models: Vec<Value> = serving
        .index(&tenant, r.ready)
        .await?
        .into_iter()
        .map(|m| {
            json!({ "name": m.name, "version": m.version, "state": m.state, "reason": m.reason })
        })
        .collect();
    Ok(json_response(&Value::Array(models)))
}

/// A load or unload body: `{"parameters": {...}}`, possibly empty.
#[derive(Default, Deserialize)]
struct RepositoryRequest {
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
}

async fn repository_load(
    State(serving): State<Serving>,
    headers: HeaderMap,
    path: Result<Path<ModelPath>, PathRejection>,
    body: Body,
) -> Answer {
    let p = model_path(path)?;
    let tenant = tenant(&serving, &headers).await?;
    let body = request_body(&serving, body, &headers).await?;
    let r: RepositoryRequest = optional_json(&body)?;
    serving
        .load(&tenant, &p.name, r.parameters.keys().map(String::as_str))
        .await?;
    Ok(json_response(&json!({})))
}

async fn repository_unload(
    State(serving): State<Serving>,
    headers: HeaderMap,
    path: Result<Path<ModelPath>, PathRejection>,
    body: Body,
) -> Answer {
    let p = model_path(path)?;
    let tenant = tenant(&serving, &headers).await?;
    let body = request_body(&serving, body, &headers).await?;
    // `unload_dependents` (tritonclient always sends it) has nothing to act on.
    let _: RepositoryRequest = optional_json(&body)?;
    serving.unload(&tenant, &p.name).await?;
    Ok(json_response(&json!({})))
}

async fn metrics(State(serving): State<Serving>, headers: HeaderMap) -> Answer {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    serving.authorize_metrics(header).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        serving.render_metrics(),
    )
        .into_response())
}

async fn unknown_route(method: Method, uri: Uri) -> HttpError {
    ServeError::NotFound(format!(
        "no route for {} {}",
        clip(method.as_str()),
        clip(uri.path())
    ))
    .into()
}

async fn wrong_method(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            clip(method.as_str()),
            clip(uri.path())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServingConfig;
    use conduit_executor::Backends;
    use conduit_registry::{
        Candidate, ExecutorHints, Kind, NewManifest, Registry, RegistryConfig, Signature,
        TensorSpec, ValidateFuture, Validated, Validator,
    };
    use conduit_runtime::{EngineConfig, Runtime, RuntimeConfig};
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Accepts every module as a model `x: FP32[-1, 2] -> y: FP32[-1, 2]`.
    struct Fixed;

    impl Validator for Fixed {
        fn validate<'a>(&'a self, _: Candidate<'a>) -> ValidateFuture<'a> {
            let spec = |name: &str| TensorSpec {
                name: name.into(),
                datatype: "FP32".into(),
                shape: vec![-1, 2],
            };
            Box::pin(async move {
                Ok(Validated {
                    signature: Signature {
                        inputs: vec![spec("x")],
                        outputs: vec![spec("y")],
                    },
                    world: String::new(),
                })
            })
        }
    }

    /// A router over a registry holding model `m@1.0.0` (with no backend to
    /// run it), served on `127.0.0.1:0` until dropped.
    struct Server {
        addr: SocketAddr,
        key: String,
        root: std::path::PathBuf,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    async fn start(max_request_bytes: usize) -> Server {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "conduit-http-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let (registry, bootstrap) = Registry::open(
            RegistryConfig {
                root: root.clone(),
                default_limits: Default::default(),
            },
            Arc::new(Fixed),
        )
        .unwrap();
        let key = bootstrap.unwrap().api_key;
        let tenant = registry.authenticate(&key).unwrap();
        let bytes = b"not really onnx";
        let mut upload = registry
            .begin_upload(&tenant, bytes.len() as u64, None)
            .unwrap();
        upload.write(bytes).unwrap();
        let committed = upload.finish().unwrap();
        registry
            .put_manifest(
                &tenant,
                NewManifest {
                    kind: Kind::Model,
                    name: "m".into(),
                    version: "1.0.0".into(),
                    digest: committed.digest,
                    executor: ExecutorHints {
                        max_batch_size: 4,
                        ..Default::default()
                    },
                    tags: Vec::new(),
                    references: Vec::new(),
                },
            )
            .await
            .unwrap();
        let runtime = Runtime::new(RuntimeConfig {
            engine: EngineConfig {
                max_instances: 2,
                ..Default::default()
            },
            cache_dir: None,
        })
        .unwrap();
        let serving = Serving::new(
            std::sync::Arc::new(registry),
            runtime,
            Backends::default(),
            ServingConfig {
                max_request_bytes,
                ..Default::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router(serving))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Server {
            addr,
            key,
            root,
            _stop: stop,
        }
    }

    struct Reply {
        status: u16,
        headers: HashMap<String, String>,
        body: Vec<u8>,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(&self.body));
            })
        }

        fn error(&self) -> String {
            self.json()["error"].as_str().unwrap().to_string()
        }
    }

    /// Sends raw HTTP/1.1 bytes and reads the reply to the end.
    async fn send(addr: SocketAddr, request: Vec<u8>) -> Reply {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(&request).unwrap();
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).unwrap();
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8(raw[..split].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap()[9..12].parse().unwrap();
            let headers: HashMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            assert!(!headers.contains_key("transfer-encoding"), "{head}");
            Reply {
                status,
                headers,
                body: raw[split + 4..].to_vec(),
            }
        })
        .await
        .unwrap()
    }

    async fn call(
        server: &Server,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut request = request.into_bytes();
        request.extend_from_slice(body);
        send(server.addr, request).await
    }

    async fn get(server: &Server, path: &str) -> Reply {
        let auth = format!("Bearer {}", server.key);
        call(server, "GET", path, &[("authorization", &auth)], b"").await
    }

    async fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let auth = format!("Bearer {}", server.key);
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        call(server, "POST", path, &all, body).await
    }

    #[tokio::test]
    async fn errors_are_json_with_the_class_status() {
        for (e, status) in [
            (ServeError::NotFound("gone".into()), 404),
            (ServeError::Unauthenticated("who".into()), 401),
            (ServeError::Overloaded("busy".into()), 429),
            (ServeError::Internal("boom".into()), 500),
        ] {
            let message = e.to_string();
            let response = HttpError::from(e).into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v, json!({ "error": message }));
        }
        let e = HttpError::too_large(Some(10), 5);
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            e.message,
            "request body of 10 bytes exceeds the limit of 5 bytes"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn server_routes_need_no_key_but_metrics_do() {
        let s = start(1 << 20).await;
        for path in ["/v2/health/live", "/v2/health/ready"] {
            let r = call(&s, "GET", path, &[], b"").await;
            assert_eq!((r.status, r.body.len()), (200, 0), "{path}");
        }
        let r = call(&s, "GET", "/v2", &[], b"").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["name"], "conduit");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            v["extensions"]
                .as_array()
                .unwrap()
                .contains(&json!("binary_tensor_data"))
        );
        // /metrics names every tenant's models: an admin key (or the
        // metrics key) is required.
        let r = call(&s, "GET", "/metrics", &[], b"").await;
        assert_eq!(r.status, 401);
        let admin = format!("Bearer {}", s.key);
        let r = call(&s, "GET", "/metrics", &[("authorization", &admin)], b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "text/plain; version=0.0.4");
        assert!(
            String::from_utf8(r.body)
                .unwrap()
                .contains("conduit_models_loaded")
        );

        let r = call(&s, "GET", "/v2/nope", &[], b"").await;
        assert_eq!(
            (r.status, r.error()),
            (404, "no route for GET /v2/nope".into())
        );
        let r = call(&s, "POST", "/v2/health/live", &[], b"").await;
        assert_eq!(r.status, 405);
        assert!(r.error().contains("POST is not allowed on /v2/health/live"));
        let r = get(&s, "/v2/models/m/infer").await;
        assert_eq!(r.status, 405);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn model_routes_need_a_key() {
        let s = start(1 << 20).await;
        for path in ["/v2/models/m", "/v2/models/m/ready", "/v2/models/stats"] {
            let r = call(&s, "GET", path, &[], b"").await;
            assert_eq!(r.status, 401, "{path}");
            assert!(r.error().contains("missing API key"), "{}", r.error());
            let r = call(&s, "GET", path, &[("authorization", "Bearer nope")], b"").await;
            assert_eq!((r.status, r.error()), (401, "invalid API key".into()));
        }
        let r = call(
            &s,
            "POST",
            "/v2/models/m/infer",
            &[("authorization", "Basic x")],
            b"{}",
        )
        .await;
        assert_eq!(r.status, 401);
        let r = call(&s, "POST", "/v2/repository/index", &[], b"").await;
        assert_eq!(r.status, 401);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn metadata_config_and_statistics() {
        let s = start(1 << 20).await;
        let r = get(&s, "/v2/models/m").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!({
                "name": "m",
                "versions": ["1.0.0"],
                "platform": "onnxruntime_onnx",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
            })
        );
        assert_eq!(get(&s, "/v2/models/m/versions/1.0.0").await.status, 200);
        let r = get(&s, "/v2/models/m/versions/2.0.0").await;
        assert_eq!(r.status, 404);
        assert!(
            r.error().contains("version `2.0.0` not found"),
            "{}",
            r.error()
        );
        assert_eq!(get(&s, "/v2/models/other").await.status, 404);

        let r = get(&s, "/v2/models/m/config").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["max_batch_size"], 4);
        assert_eq!(v["input"][0]["data_type"], "TYPE_FP32");
        assert_eq!(v["input"][0]["dims"], json!([2]));
        assert!(v["dynamic_batching"]["max_queue_delay_microseconds"].is_u64());
        assert_eq!(
            get(&s, "/v2/models/m/versions/1.0.0/config").await.status,
            200
        );

        // Triton lists every ready model version, zeroed while unused.
        let r = get(&s, "/v2/models/stats").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        let stats = v["model_stats"].as_array().unwrap();
        assert_eq!(stats.len(), 1, "{v}");
        assert_eq!(
            (&stats[0]["name"], &stats[0]["version"]),
            (&json!("m"), &json!("1.0.0"))
        );
        assert_eq!(stats[0]["inference_count"], 0);
        assert_eq!(stats[0]["inference_stats"]["success"]["count"], 0);
        assert_eq!(get(&s, "/v2/models/m/stats").await.status, 200);
        assert_eq!(
            get(&s, "/v2/models/m/versions/1.0.0/stats").await.status,
            200
        );
        assert_eq!(get(&s, "/v2/models/nope/stats").await.status, 404);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn readiness_and_repository() {
        let s = start(1 << 20).await;
        assert_eq!(get(&s, "/v2/models/m/ready").await.status, 200);
        assert_eq!(
            get(&s, "/v2/models/m/versions/1.0.0/ready").await.status,
            200
        );
        let r = get(&s, "/v2/models/nope/ready").await;
        assert_eq!(
            (r.status, r.error()),
            (400, "model `nope` not found".into())
        );

        let r = post(&s, "/v2/repository/index", &[], b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!([{"name": "m", "version": "1.0.0", "state": "READY", "reason": ""}])
        );
        let body = br#"{"parameters":{"unload_dependents":false}}"#;
        let r = post(&s, "/v2/repository/models/m/unload", &[], body).await;
        assert_eq!((r.status, r.json()), (200, json!({})));
        let r = get(&s, "/v2/models/m/ready").await;
        assert_eq!((r.status, r.error()), (400, "model `m` is unloaded".into()));
        let r = post(&s, "/v2/repository/index", &[], br#"{"ready":false}"#).await;
        assert_eq!(r.json()[0]["state"], "UNAVAILABLE");
        let r = post(&s, "/v2/repository/index", &[], br#"{"ready":true}"#).await;
        assert_eq!(r.json(), json!([]));
        let r = post(&s, "/v2/repository/index", &[], b"{").await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("line 1 column 1"), "{}", r.error());

        let r = post(
            &s,
            "/v2/repository/models/m/load",
            &[],
            br#"{"parameters":{"config":"{}"}}"#,
        )
        .await;
        assert_eq!(r.status, 400);
        assert!(
            r.error().contains("config overrides are not supported"),
            "{}",
            r.error()
        );
        // Loading makes it servable, then fails to start: this build's test
        // server has no ONNX Runtime.
        let r = post(&s, "/v2/repository/models/m/load", &[], b"{}").await;
        assert_eq!(r.status, 503, "{}", r.error());
        assert_eq!(get(&s, "/v2/models/m/ready").await.status, 200);
        let r = post(&s, "/v2/repository/models/nope/unload", &[], b"").await;
        assert_eq!(r.status, 404);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn infer_decodes_json_and_binary_then_serves() {
        let s = start(1 << 20).await;
        let json = br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[[1,2]]}]}"#;
        // Decoded and checked, then the model cannot start (no ONNX Runtime).
        let r = post(&s, "/v2/models/m/infer", &[], json).await;
        assert_eq!(r.status, 503, "{}", r.error());
        assert_eq!(r.headers["content-type"], "application/json");
        let r = post(&s, "/v2/models/m/versions/1.0.0/infer", &[], json).await;
        assert_eq!(r.status, 503, "{}", r.error());

        let header = br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0u8; 8]);
        let len = header.len().to_string();
        let r = post(
            &s,
            "/v2/models/m/infer",
            &[("Inference-Header-Content-Length", &len)],
            &body,
        )
        .await;
        assert_eq!(r.status, 503, "{}", r.error());
        let r = post(&s, "/v2/models/m/infer", &[], &body).await;
        assert_eq!(r.status, 400);
        assert!(
            r.error().contains("trailing characters at line 1"),
            "{}",
            r.error()
        );

        // The data plane's own checks come back as its statuses.
        let wrong = br#"{"inputs":[{"name":"z","datatype":"FP32","shape":[1,2],"data":[1,2]}]}"#;
        let r = post(&s, "/v2/models/m/infer", &[], wrong).await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("has no input `z`"), "{}", r.error());
        let r = post(&s, "/v2/models/nope/infer", &[], json).await;
        assert_eq!(r.status, 404);

        let r = post(&s, "/v2/models/m/infer", &[], b"{\"inputs\": [}").await;
        assert_eq!(r.status, 400);
        assert!(
            r.error().contains("malformed inference request JSON"),
            "{}",
            r.error()
        );
        assert!(r.error().contains("line 1 column 13"), "{}", r.error());
        let r = post(
            &s,
            "/v2/models/m/infer",
            &[("content-encoding", "br")],
            json,
        )
        .await;
        assert_eq!(r.status, 501);
        assert!(r.error().contains("`br` is not supported"), "{}", r.error());

        // A body that is not a JSON object says what was expected.
        let r = post(&s, "/v2/models/m/infer", &[], b"[1,2,3]").await;
        assert_eq!(r.status, 400);
        assert!(
            r.error().contains("must be a JSON object") && r.error().contains("a JSON array"),
            "{}",
            r.error()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn compressed_bodies_are_inflated_within_the_limit() {
        use super::encoding::{Coding, compress};
        let s = start(1 << 16).await;
        let json = br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[[1,2]]}]}"#;
        for coding in [Coding::Gzip, Coding::Deflate] {
            // Decoded and checked, then the model cannot start (no ONNX Runtime).
            let body = compress(coding, json);
            let headers = [("content-encoding", coding.as_str())];
            let r = post(&s, "/v2/models/m/infer", &headers, &body).await;
            assert_eq!(r.status, 503, "{coding:?}: {}", r.error());
            let wrong = compress(
                coding,
                br#"{"inputs":[{"name":"z","datatype":"FP32","shape":[1],"data":[1]}]}"#,
            );
            let r = post(&s, "/v2/models/m/infer", &headers, &wrong).await;
            assert_eq!(r.status, 400, "{coding:?}: {}", r.error());
            assert!(r.error().contains("has no input `z`"), "{}", r.error());
        }
        // A bomb: 1 MiB of spaces in about a kilobyte, over the 64 KiB limit.
        let bomb = compress(Coding::Gzip, &vec![b' '; 1 << 20]);
        assert!(bomb.len() < 1 << 16);
        let r = post(
            &s,
            "/v2/models/m/infer",
            &[("content-encoding", "gzip")],
            &bomb,
        )
        .await;
        assert_eq!(r.status, 413);
        assert_eq!(
            r.error(),
            "request body decompresses (gzip) to more than the limit of 65536 bytes"
        );
        let r = post(
            &s,
            "/v2/models/m/infer",
            &[("content-encoding", "gzip")],
            b"plain",
        )
        .await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("not valid gzip body"), "{}", r.error());
        // Decode failures are counted against the model they name.
        let auth = format!("Bearer {}", s.key);
        let r = call(&s, "GET", "/metrics", &[("authorization", &auth)], b"").await;
        let text = String::from_utf8(r.body).unwrap();
        let line = r#"conduit_inference_request_failure_total{tenant="default",model="m",version="1.0.0",reason="decode"} 1"#;
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        let line = r#"conduit_inference_request_failure_total{tenant="default",model="m",version="1.0.0",reason="too_large"} 1"#;
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn oversized_bodies_get_413() {
        let s = start(64).await;
        let r = post(&s, "/v2/models/m/infer", &[], &[b' '; 65]).await;
        assert_eq!(r.status, 413);
        assert_eq!(
            r.error(),
            "request body of 65 bytes exceeds the limit of 64 bytes"
        );
        let r = post(&s, "/v2/repository/index", &[], &[b' '; 100]).await;
        assert_eq!(r.status, 413);
        // Without a Content-Length the limit applies as the body streams in.
        let auth = format!("Bearer {}", s.key);
        let mut request = format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
             authorization: {auth}\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..3 {
            request.extend_from_slice(b"20\r\n");
            request.extend_from_slice(&[b' '; 32]);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let r = send(s.addr, request).await;
        assert_eq!(r.status, 413);
        assert_eq!(r.error(), "request body exceeds the limit of 64 bytes");
        // At the limit it is read (and is not valid JSON).
        let r = post(&s, "/v2/models/m/infer", &[], &[b' '; 64]).await;
        assert_eq!(r.status, 400);
    }
}
