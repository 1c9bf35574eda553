//! The `kubernetes` runner actuator: the active scheduler sizes the runner
//! StatefulSet through its `scale` subresource.
//!
//! Least privilege: [`KubeActuator`] reads and patches
//! `statefulsets/scale` of one named StatefulSet and nothing else, so the
//! scheduler's Role grants exactly [`rbac_rules`] (the Helm chart renders its
//! Role from them). Each [`scale`](Actuator::scale) reads `spec.replicas`
//! and patches only when it differs from what is wanted, so a steady fleet
//! costs one GET per tick and no write.
//!
//! ```no_run
//! # async fn f() -> Result<(), conduit_scheduler::ActuatorError> {
//! use conduit_scheduler::{Actuator, KubeActuator};
//!
//! let actuator = KubeActuator::in_cluster(None, "conduit-runner".into()).await?;
//! let asked = actuator.scale(3, &[]).await?;
//! assert_eq!(asked, 3);
//! # Ok(())
//! # }
//! ```

use crate::actuator::{Actuator, ActuatorError};
use crate::records::RunnerRecord;
use ::kube::api::{Api, Patch, PatchParams};
use ::kube::core::Status;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::rbac::v1::PolicyRule;
use std::future::Future;
use std::pin::Pin;

/// Who refuses, in [`ActuatorError::Forbidden`].
const PLATFORM: &str = "Kubernetes API";

/// The API group of StatefulSets.
const API_GROUP: &str = "apps";

/// The only resource the actuator touches.
const RESOURCE: &str = "statefulsets/scale";

/// The only verbs it uses on it: `get` to read the size, `patch` to change it.
const VERBS: [&str; 2] = ["get", "patch"];

/// The field manager its patches are recorded under (`managedFields`).
const FIELD_MANAGER: &str = "conduit-scheduler";

/// The RBAC rules the `kubernetes` actuator needs to scale `statefulset`,
/// and all it needs: `get` and `patch` on `apps` `statefulsets/scale`,
/// restricted to that one StatefulSet. The scheduler's Role (Helm chart)
/// is rendered from these.
pub fn rbac_rules(statefulset: &str) -> Vec<PolicyRule> {
    vec![PolicyRule {
        api_groups: Some(vec![API_GROUP.to_owned()]),
        resources: Some(vec![RESOURCE.to_owned()]),
        resource_names: Some(vec![statefulset.to_owned()]),
        verbs: VERBS.iter().map(|v| (*v).to_owned()).collect(),
        non_resource_urls: None,
    }]
}

/// Scales the runner StatefulSet through the Kubernetes API (its `scale`
/// subresource only). Stateless: every call reads the set afresh.
#[derive(Clone)]
pub struct KubeActuator {
    client: ::kube::Client,
    namespace: String,
    statefulset: String,
}

impl std::fmt::Debug for KubeActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeActuator")
            .field("namespace", &self.namespace)
            .field("statefulset", &self.statefulset)
            .finish_non_exhaustive()
    }
}

impl KubeActuator {
    /// An actuator scaling `statefulset` in `namespace` through `client`.
    pub fn new(
        client: ::kube::Client,
        namespace: impl Into<String>,
        statefulset: impl Into<String>,
    ) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            statefulset: statefulset.into(),
        }
    }

    /// An actuator with the client's inferred configuration (the pod's
    /// service account in a cluster, else `KUBECONFIG` / `~/.kube/config`),
    /// scaling `statefulset` in `namespace`, or in the configuration's
    /// default namespace (in a pod: its own).
    ///
    /// # Errors
    ///
    /// [`ActuatorError::Transient`] when no Kubernetes configuration can be
    /// found or loaded.
    pub async fn in_cluster(
        namespace: Option<String>,
        statefulset: String,
    ) -> Result<Self, ActuatorError> {
        let client = ::kube::Client::try_default().await.map_err(|e| {
            ActuatorError::Transient(format!("no usable Kubernetes configuration: {e}"))
        })?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Self::new(client, namespace, statefulset))
    }

    /// The namespace of the StatefulSet it scales.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name of the StatefulSet it scales.
    pub fn statefulset(&self) -> &str {
        &self.statefulset
    }

    /// The RBAC rules it needs ([`rbac_rules`] for its StatefulSet).
    pub fn rbac_rules(&self) -> Vec<PolicyRule> {
        rbac_rules(&self.statefulset)
    }

    /// Makes the StatefulSet `desired` replicas; returns the replicas the
    /// API reports asked for.
    async fn scale_to(&self, desired: u32) -> Result<u32, ActuatorError> {
        let wanted = i32::try_from(desired).map_err(|_| {
            ActuatorError::Transient(format!(
                "cannot ask for {desired} runners: more than a StatefulSet can hold"
            ))
        })?;
        let api = Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace);
        let current = api
            .get_scale(&self.statefulset)
            .await
            .map_err(|e| self.error("get", e))?;
        let current = spec_replicas(&current);
        if current == wanted {
            return Ok(desired);
        }
        let patch = serde_json::json!({ "spec": { "replicas": wanted } });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let scaled = api
            .patch_scale(&self.statefulset, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| self.error("patch", e))?;
        let scaled = spec_replicas(&scaled);
        tracing::info!(
            namespace = %self.namespace,
            statefulset = %self.statefulset,
            from = current,
            to = scaled,
            "scaled the runner StatefulSet"
        );
        Ok(u32::try_from(scaled).unwrap_or(0))
    }

    /// Maps a failed `verb` on the scale subresource to an [`ActuatorError`]
    /// that names what was refused, so an operator can fix RBAC or the name.
    fn error(&self, verb: &str, error: ::kube::Error) -> ActuatorError {
        let what = format!(
            "{verb} {RESOURCE} `{}` in `{}`",
            self.statefulset, self.namespace
        );
        match error {
            ::kube::Error::Api(status) if is_refusal(&status) => ActuatorError::Forbidden {
                platform: PLATFORM,
                message: format!("{what}: {}", status_message(&status)),
            },
            ::kube::Error::Api(status) if status.code == 404 || status.reason == "NotFound" => {
                ActuatorError::NotFound(format!(
                    "StatefulSet `{}` not found in namespace `{}` ({verb} {RESOURCE}): {}",
                    self.statefulset,
                    self.namespace,
                    status_message(&status)
                ))
            }
            ::kube::Error::Api(status) => {
                ActuatorError::Transient(format!("{what}: {}", status_message(&status)))
            }
            other => ActuatorError::Transient(format!("{what}: {other}")),
        }
    }
}

/// `spec.replicas` of a `Scale` (absent means 0: the API omits a zero).
fn spec_replicas(scale: &Scale) -> i32 {
    scale
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(0)
}

/// Whether the API refused the caller (401 Unauthorized, 403 Forbidden).
fn is_refusal(status: &Status) -> bool {
    matches!(status.code, 401 | 403)
        || matches!(status.reason.as_str(), "Forbidden" | "Unauthorized")
}

/// The API's message, with its code and reason when it has them.
fn status_message(status: &Status) -> String {
    match (status.code, status.reason.is_empty()) {
        (0, true) => status.message.clone(),
        (0, false) => format!("{} ({})", status.message, status.reason),
        (code, true) => format!("{} ({code})", status.message),
        (code, false) => format!("{} ({code} {})", status.message, status.reason),
    }
}

impl Actuator for KubeActuator {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn scale<'a>(
        &'a self,
        desired: u32,
        _live: &'a [RunnerRecord],
    ) -> Pin<Box<dyn Future<Output = Result<u32, ActuatorError>> + Send + 'a>> {
        Box::pin(self.scale_to(desired))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::kube::client::Body;
    use http::{Method, Request, Response, StatusCode};
    use std::time::Duration;
    use tokio::task::JoinHandle;
    use tower_test::mock::Handle;

    const NS: &str = "conduit";
    const SET: &str = "conduit-runner";
    const SCALE_PATH: &str = "/apis/apps/v1/namespaces/conduit/statefulsets/conduit-runner/scale";
    /// The query a PATCH carries, as `key=value` pairs.
    const PATCH_QUERY: [&str; 1] = ["fieldManager=conduit-scheduler"];

    /// What the mocked API server answers to one request it expects.
    enum Reply {
        /// An HTTP status and a JSON body.
        Http(StatusCode, String),
        /// The connection fails.
        Unreachable,
    }

    /// One request the mocked API server expects, and its reply.
    struct Exchange {
        method: Method,
        /// The JSON body a PATCH must carry (GETs carry none).
        body: Option<serde_json::Value>,
        reply: Reply,
    }

    fn scale_body(replicas: i32) -> String {
        // The API omits a zero `spec.replicas` (Go's `omitempty`).
        let spec = if replicas == 0 {
            serde_json::json!({})
        } else {
            serde_json::json!({ "replicas": replicas })
        };
        serde_json::json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": { "name": SET, "namespace": NS },
            "spec": spec,
            "status": { "replicas": replicas, "selector": "app=conduit-runner" }
        })
        .to_string()
    }

    fn status_body(code: u16, reason: &str, message: &str) -> String {
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code
        })
        .to_string()
    }

    fn get(replicas: i32) -> Exchange {
        Exchange {
            method: Method::GET,
            body: None,
            reply: Reply::Http(StatusCode::OK, scale_body(replicas)),
        }
    }

    fn patch(replicas: i32) -> Exchange {
        Exchange {
            method: Method::PATCH,
            body: Some(serde_json::json!({ "spec": { "replicas": replicas } })),
            reply: Reply::Http(StatusCode::OK, scale_body(replicas)),
        }
    }

    fn failing(mut exchange: Exchange, code: u16, reason: &str, message: &str) -> Exchange {
        let status = StatusCode::from_u16(code).expect("a valid HTTP status");
        exchange.reply = Reply::Http(status, status_body(code, reason, message));
        exchange
    }

    /// The actuator on a mocked API server that expects exactly `script`,
    /// in order, and fails on any request beyond it. Await the handle after
    /// dropping the actuator; it records `(method, path)` of every request.
    fn mocked(script: Vec<Exchange>) -> (KubeActuator, JoinHandle<Vec<(Method, String)>>) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = ::kube::Client::new(service, "default");
        let server = tokio::spawn(serve(handle, script));
        (KubeActuator::new(client, NS, SET), server)
    }

    /// The non-empty `key=value` pairs of a URI's query (kube writes
    /// `scale?&fieldManager=…`; the empty pair means nothing).
    fn query_pairs(uri: &http::Uri) -> Vec<&str> {
        uri.query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .collect()
    }

    async fn serve(
        mut handle: Handle<Request<Body>, Response<Body>>,
        script: Vec<Exchange>,
    ) -> Vec<(Method, String)> {
        let mut seen = Vec::new();
        for (i, exchange) in script.into_iter().enumerate() {
            let (request, send) = handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("request {i} never came"));
            let (parts, body) = request.into_parts();
            assert_eq!(parts.method, exchange.method, "request {i}");
            assert_eq!(parts.uri.path(), SCALE_PATH, "request {i}");
            let body = body.collect_bytes().await.expect("a readable body");
            match exchange.body {
                None => {
                    assert!(query_pairs(&parts.uri).is_empty(), "request {i}");
                    assert!(body.is_empty(), "request {i}: a GET with a body");
                }
                Some(expected) => {
                    assert_eq!(query_pairs(&parts.uri), PATCH_QUERY, "request {i}");
                    assert_eq!(
                        parts
                            .headers
                            .get(http::header::CONTENT_TYPE)
                            .map(|v| v.as_bytes()),
                        Some(&b"application/merge-patch+json"[..]),
                        "request {i}"
                    );
                    let sent: serde_json::Value =
                        serde_json::from_slice(&body).expect("a JSON patch");
                    assert_eq!(sent, expected, "request {i}");
                    assert_eq!(
                        body.as_ref(),
                        expected.to_string().as_bytes(),
                        "request {i}"
                    );
                }
            }
            seen.push((parts.method, parts.uri.path().to_owned()));
            match exchange.reply {
                Reply::Http(status, json) => send.send_response(
                    Response::builder()
                        .status(status)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Body::from(json.into_bytes()))
                        .expect("a valid response"),
                ),
                Reply::Unreachable => send.send_error(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused",
                )),
            }
        }
        if let Some((request, _)) = handle.next_request().await {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
        seen
    }

    /// Drops the actuator (closing the mock) and waits for the server's
    /// verdict.
    async fn finish(
        actuator: KubeActuator,
        server: JoinHandle<Vec<(Method, String)>>,
    ) -> Vec<(Method, String)> {
        drop(actuator);
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the mocked API server finishes")
            .expect("the mocked API server saw what it expected")
    }

    #[tokio::test]
    async fn scales_up_with_one_get_and_one_merge_patch() {
        let (actuator, server) = mocked(vec![get(1), patch(3)]);
        assert_eq!(actuator.scale(3, &[]).await, Ok(3));
        let seen = finish(actuator, server).await;
        assert_eq!(seen.len(), 2);
    }

    #[tokio::test]
    async fn the_current_size_is_only_read() {
        let (actuator, server) = mocked(vec![get(2)]);
        assert_eq!(actuator.scale(2, &[]).await, Ok(2));
        assert_eq!(finish(actuator, server).await.len(), 1);
    }

    #[tokio::test]
    async fn scales_to_zero() {
        let (actuator, server) = mocked(vec![get(2), patch(0)]);
        assert_eq!(actuator.scale(0, &[]).await, Ok(0));
        finish(actuator, server).await;
    }

    #[tokio::test]
    async fn zero_is_read_from_an_omitted_replicas() {
        let (actuator, server) = mocked(vec![get(0)]);
        assert_eq!(actuator.scale(0, &[]).await, Ok(0));
        finish(actuator, server).await;
    }

    #[tokio::test]
    async fn a_403_is_forbidden_and_names_the_verb_and_resource() {
        let api = "statefulsets.apps \"conduit-runner\" is forbidden: User \
                   \"system:serviceaccount:conduit:conduit-scheduler\" cannot patch \
                   resource \"statefulsets/scale\" in API group \"apps\" in the namespace \"conduit\"";
        let (actuator, server) = mocked(vec![get(1), failing(patch(3), 403, "Forbidden", api)]);
        let err = actuator.scale(3, &[]).await.unwrap_err();
        let ActuatorError::Forbidden { platform, message } = &err else {
            panic!("not Forbidden: {err:?}");
        };
        assert_eq!(*platform, "Kubernetes API");
        assert!(
            message.starts_with("patch statefulsets/scale `conduit-runner` in `conduit`: "),
            "{message}"
        );
        assert!(message.contains(api), "{message}");
        finish(actuator, server).await;
    }

    #[tokio::test]
    async fn a_401_on_the_read_is_forbidden() {
        let (actuator, server) = mocked(vec![failing(get(1), 401, "Unauthorized", "Unauthorized")]);
        let err = actuator.scale(3, &[]).await.unwrap_err();
        assert!(
            matches!(&err, ActuatorError::Forbidden { message, .. }
                if message.starts_with("get statefulsets/scale `conduit-runner` in `conduit`")),
            "{err:?}"
        );
        finish(actuator, server).await;
    }

    #[tokio::test]
    async fn a_404_is_not_found_and_names_the_set_and_namespace() {
        let api = "statefulsets.apps \"conduit-runner\" not found";
        let (actuator, server) = mocked(vec![failing(get(1), 404, "NotFound", api)]);
        let err = actuator.scale(3, &[]).await.unwrap_err();
        let ActuatorError::NotFound(message) = &err else {
            panic!("not NotFound: {err:?}");
        };
        assert!(message.contains("`conduit-runner`"), "{message}");
        assert!(message.contains("namespace `conduit`"), "{message}");
        assert!(message.contains(api), "{message}");
        finish(actuator, server).await;
    }

    #[tokio::test]
    async fn server_errors_and_conflicts_are_transient_and_it_recovers() {
        let (actuator, server) = mocked(vec![
            failing(
                get(1),
                500,
                "InternalError",
                "etcdserver: request timed out",
            ),
            get(1),
            failing(
                patch(2),
                409,
                "Conflict",
                "Operation cannot be fulfilled on statefulsets.apps \"conduit-runner\": \
                 the object has been modified; please apply your changes to the latest version and try again",
            ),
            get(1),
            patch(2),
        ]);
        let err = actuator.scale(2, &[]).await.unwrap_err();
        assert!(
            matches!(&err, ActuatorError::Transient(m) if m.contains("etcdserver")),
            "{err:?}"
        );
        let err = actuator.scale(2, &[]).await.unwrap_err();
        assert!(
            matches!(&err, ActuatorError::Transient(m) if m.contains("has been modified")),
            "{err:?}"
        );
        assert_eq!(actuator.scale(2, &[]).await, Ok(2));
        finish(actuator, server).await;
    }

    #[tokio::test]
    async fn an_unreachable_api_is_transient() {
        let (actuator, server) = mocked(vec![Exchange {
            method: Method::GET,
            body: None,
            reply: Reply::Unreachable,
        }]);
        let err = actuator.scale(2, &[]).await.unwrap_err();
        assert!(matches!(err, ActuatorError::Transient(_)), "{err:?}");
        finish(actuator, server).await;
    }

    #[test]
    fn rbac_rules_are_exactly_scale_get_and_patch_on_the_one_set() {
        let rules = serde_json::to_value(rbac_rules(SET)).expect("serializable rules");
        assert_eq!(
            rules,
            serde_json::json!([{
                "apiGroups": ["apps"],
                "resources": ["statefulsets/scale"],
                "resourceNames": ["conduit-runner"],
                "verbs": ["get", "patch"]
            }])
        );
    }

    /// Every request the actuator makes is covered by its RBAC rules, and
    /// every rule is used: the Role grants exactly what it calls.
    #[tokio::test]
    async fn the_requests_it_makes_are_exactly_what_its_rules_grant() {
        let (actuator, server) = mocked(vec![get(1), patch(3), get(3)]);
        actuator.scale(3, &[]).await.expect("scaled");
        actuator.scale(3, &[]).await.expect("kept");
        let rules = actuator.rbac_rules();
        let seen = finish(actuator, server).await;
        let mut used = Vec::new();
        for (method, path) in &seen {
            let verb = match *method {
                Method::GET => "get",
                Method::PATCH => "patch",
                ref other => panic!("a verb outside the rules: {other}"),
            };
            // /apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/{subresource}
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let [_, group, _, _, _, resource, name, subresource] = segments[..] else {
                panic!("an unexpected path: {path}");
            };
            let resource = format!("{resource}/{subresource}");
            let granted = rules.iter().any(|rule| {
                rule.api_groups.as_deref() == Some(&[group.to_owned()][..])
                    && rule.resources.as_deref() == Some(&[resource.clone()][..])
                    && rule.resource_names.as_deref() == Some(&[name.to_owned()][..])
                    && rule.verbs.iter().any(|v| v == verb)
            });
            assert!(granted, "{verb} {path} is not granted by {rules:?}");
            used.push(verb);
        }
        used.sort_unstable();
        used.dedup();
        assert_eq!(used, VERBS, "a granted verb it never uses");
    }
}
