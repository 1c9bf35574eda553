//! The gateway's KServe v2 HTTP front end. Inference, model configuration,
//! statistics and loading are forwarded to a runner serving the model (the
//! body as the client sent it: JSON or Triton's binary extension, gzip or
//! not), with the same retries as over gRPC; health is the gateway's own;
//! metadata, model readiness and the repository index are answered by the
//! runner's HTTP front end over the gateway's own data plane (registry reads,
//! cached).

use crate::{Gateway, statistics};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conduit_runner::ServeError;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The HTTP client the gateway forwards with.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1 client for runners.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(std::time::Duration::from_secs(1)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Headers a forwarded request keeps (the rest are the hop's own).
const FORWARDED: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::ACCEPT_ENCODING,
];

/// The router: the gateway's routes, then the runner's front end over the
/// gateway's data plane for the rest.
pub fn router(gateway: Gateway) -> Router {
    let local = conduit_runner::http::router(gateway.serving.clone());
    Router::new()
        .route("/v2/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v2/models/{name}/infer", post(forward_model))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(forward_version),
        )
        .route("/v2/models/{name}/config", get(forward_model))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(forward_version),
        )
        .route("/v2/models/{name}/ready", get(forward_model))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(forward_version),
        )
        .route("/v2/models/stats", get(fan_out))
        .route("/v2/models/{name}/stats", get(fan_out))
        .route("/v2/models/{name}/versions/{version}/stats", get(fan_out))
        .route("/v2/repository/models/{name}/load", post(fan_out))
        .route("/v2/repository/models/{name}/unload", post(fan_out))
        .with_state(gateway)
        .fallback_service(local)
}

/// The one place the gateway's own HTTP errors are written; the message is
/// capped (`conduit_types::MAX_MESSAGE_BYTES`) whatever it echoes.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let message = conduit_types::cap_message(message.to_string());
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn serve_error(e: ServeError) -> Response {
    let status =
        StatusCode::from_u16(e.class().http()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e)
}

/// The caller's tenant, or the error answer.
async fn authenticated(
    gateway: &Gateway,
    headers: &HeaderMap,
) -> Result<conduit_registry::Tenant, Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    gateway
        .serving
        .authenticate(authorization)
        .await
        .map_err(serve_error)
}

/// The client's request as sent on to the runner at `http` (`host:port`):
/// its method, `path`, the forwarded headers and `body`.
fn runner_request(
    method: &Method,
    http: &str,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, axum::http::Error> {
    let mut request = hyper::Request::builder()
        .method(method.clone())
        .uri(format!("http://{http}{path}"));
    for h in &FORWARDED {
        if let Some(v) = headers.get(h) {
            request = request.header(h, v);
        }
    }
    for (k, v) in headers {
        if k.as_str().starts_with("inference-") {
            request = request.header(k, v);
        }
    }
    request.body(Full::new(body))
}

/// The gateway's requests per model (as it saw them), then its routing
/// counters; the same key rule as a runner's `/metrics`.
async fn metrics(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    if let Err(e) = gateway.serving.authorize_metrics(authorization).await {
        return serve_error(e);
    }
    let body = gateway.serving.render_metrics() + &gateway.router.counters().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn ready(State(gateway): State<Gateway>) -> Response {
    match gateway.health() {
        Ok(()) => StatusCode::OK.into_response(),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn forward_model(
    State(gateway): State<Gateway>,
    Path(name): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(gateway, name, String::new(), method, uri, headers, body).await
}

async fn forward_version(
    State(gateway): State<Gateway>,
    Path((name, version)): Path<(String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(gateway, name, version, method, uri, headers, body).await
}

/// Sends the request to a runner serving `name` at `version`, and to another
/// when that one is lost (no connection, a broken answer) or refuses (429).
async fn forward(
    gateway: Gateway,
    name: String,
    version: String,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tenant = match authenticated(&gateway, &headers).await {
        Ok(t) => t,
        Err(answer) => return answer,
    };
    let _permit = match gateway.serving.admit_tenant(&tenant) {
        Ok(p) => p,
        Err(e) => return serve_error(e),
    };
    let manifest = match gateway.serving.resolve(&tenant, &name, &version).await {
        Ok(m) => m,
        Err(e) => return serve_error(e),
    };
    let max = gateway.serving.config().max_request_bytes;
    let too_large = || {
        let mut r = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is too large: over the limit of {max} bytes"),
        );
        // The rest of the body is never read: this connection cannot carry
        // another request, so say so (a client's pool would reuse it).
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        r
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let body = match Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            );
        }
    };
    // Pinned to the version resolved here; the route's last segment kept.
    let tail = uri.path().rsplit('/').next().unwrap_or("");
    let path = format!(
        "/v2/models/{}/versions/{}/{tail}{}",
        manifest.name,
        manifest.version,
        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    let limits = gateway.serving.config().limits.of(&tenant.name);
    let deadline = conduit_runner::instant_after(Instant::now(), limits.request_deadline());
    let done = (tail == "infer").then(|| gateway.count(&tenant, &manifest));
    let response = send(
        &gateway, &tenant, &manifest, &name, deadline, &method, &path, &headers, body,
    )
    .await;
    if let Some(done) = done {
        let code = (!response.status().is_success()).then_some(tonic::Code::Unknown);
        done(code);
    }
    response
}

/// Sends one forwarded request, retrying as [`forward`] says.
#[allow(clippy::too_many_arguments)]
async fn send(
    gateway: &Gateway,
    tenant: &conduit_registry::Tenant,
    manifest: &conduit_registry::Manifest,
    name: &str,
    deadline: Instant,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let router = &gateway.router;
    router.counters().forwarded.fetch_add(1, Ordering::Relaxed);
    let mut tried = Vec::new();
    let mut last: Option<Response> = None;
    for attempt in 0..router.config().max_attempts {
        let target = match router.next(tenant, manifest, &tried, deadline).await {
            Ok(t) => t,
            Err(e) => return last.unwrap_or_else(|| serve_error(e)),
        };
        if attempt > 0 {
            router.counters().retries.fetch_add(1, Ordering::Relaxed);
        }
        let request = match runner_request(method, &target.runner.http, path, headers, body.clone())
        {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let sent = tokio::time::timeout(left, gateway.http.request(request)).await;
        let answer = match sent {
            Err(_) => {
                return serve_error(ServeError::Deadline(format!(
                    "`{name}`: the request's deadline passed"
                )));
            }
            Ok(Err(e)) => {
                router.suspect(&target.runner);
                tried.push(target.runner.id.clone());
                last = Some(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("runner {} failed: {e}", target.runner.id),
                ));
                continue;
            }
            Ok(Ok(answer)) => answer,
        };
        let (parts, incoming) = answer.into_parts();
        let bytes = match incoming.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                router.suspect(&target.runner);
                tried.push(target.runner.id.clone());
                last = Some(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("runner {} broke off its answer: {e}", target.runner.id),
                ));
                continue;
            }
        };
        let response = Response::from_parts(parts, Body::from(bytes));
        // A refusal for now: another runner may take it. (A 503 from a live
        // runner is the request's own answer, as over gRPC.)
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            tried.push(target.runner.id.clone());
            last = Some(response);
            continue;
        }
        if response.status().is_success() {
            target.served();
        }
        return response;
    }
    last.unwrap_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "no runner answered"))
}

/// Sends the request to every live runner: loading and unloading (a
/// runner's own state, wherever requests may be routed) and statistics
/// (summed). The first refusal is the answer; otherwise the last success,
/// or for statistics the sum.
async fn fan_out(
    State(gateway): State<Gateway>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(answer) = authenticated(&gateway, &headers).await {
        return answer;
    }
    let body = match Limited::new(body, 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            );
        }
    };
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), ToString::to_string);
    let runners = gateway.router.view().live_runners();
    if runners.is_empty() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no live runner in the cluster",
        );
    }
    let calls = runners.into_iter().map(|runner| {
        let request = runner_request(&method, &runner.http, &path, &headers, body.clone());
        let client = gateway.http.clone();
        tokio::spawn(async move {
            let request = request.map_err(|e| e.to_string())?;
            let answer =
                tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
                    .await
                    .map_err(|_| format!("runner {} did not answer in 30 s", runner.id))?
                    .map_err(|e| format!("runner {}: {e}", runner.id))?;
            let (parts, incoming) = answer.into_parts();
            let bytes = incoming
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((parts, bytes))
        })
    });
    let handles: Vec<_> = calls.collect();
    let stats = uri.path().ends_with("/stats");
    let mut merged: Option<serde_json::Value> = None;
    let mut last = None;
    for h in handles {
        let (parts, bytes) = match h.await {
            Ok(Ok(answer)) => answer,
            // A runner lost meanwhile: the others answer.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "a runner did not answer a fan-out");
                continue;
            }
            Err(_) => continue,
        };
        if !parts.status.is_success() {
            if stats && parts.status == StatusCode::NOT_FOUND {
                continue;
            }
            return Response::from_parts(parts, Body::from(bytes));
        }
        if stats && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            merged = Some(match merged.take() {
                None => v,
                Some(mut m) => {
                    statistics::merge_json(&mut m, v);
                    m
                }
            });
        }
        last = Some((parts, bytes));
    }
    match (merged, last) {
        (Some(m), Some((parts, _))) => {
            let mut r = Response::from_parts(parts, Body::from(m.to_string()));
            r.headers_mut().remove(header::CONTENT_LENGTH);
            r
        }
        (None, Some((parts, bytes))) => Response::from_parts(parts, Body::from(bytes)),
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "no runner answered"),
    }
}
