#!/usr/bin/env python3
"""Checks the Helm chart deploy/helm/conduit (`make deploy-check`, part of `make test`).

1. `helm lint --strict` (Kubernetes 1.33) and a render with Helm's own engine: the PyPI
   wheel helm-python-sdk bundles libhelm_c, a C ABI over the Helm v4 Go SDK (v4.2.3 in
   0.2.2), called through ctypes; no `helm` binary is involved. Rendered for the default
   values, for values-gpu.yaml, and for the variants every template branch needs
   (ServiceMonitor on, KEDA instead of the built-in actuator, no runner autoscaling, an
   external NATS, limits files, a metrics key).
2. Every rendered manifest of a built-in kind is validated with kubernetes-validate
   --strict against the Kubernetes 1.33 OpenAPI schemas (unknown fields refused). The
   tool ships no schema for CRD kinds (monitoring.coreos.com ServiceMonitor, keda.sh
   ScaledObject): those are checked structurally here (fields, types, and that what they
   point at exists in the same render) and say so in the output.
3. The chart's invariants: least-privilege RBAC (the only Role's rules equal
   conduit_scheduler::kube::rbac_rules(<runner StatefulSet>), bound to the scheduler's
   ServiceAccount only; no ClusterRole; no token where none is needed), the scheduler's
   actuator arguments naming the rendered runner StatefulSet and namespace, probes on
   the roles' real health routes and named ports, Services selecting the right pods, the
   runners advertising their pod DNS names, the API key from the Secret the user names,
   the GPU overlay, pinned images; and the values the chart must refuse.
4. Every value of values.yaml documented in the chart's README.md; the Dockerfile's
   structure (no container engine exists here to build it): it builds with `make build`
   as CI does, ships the onnxruntime version scripts/requirements.txt pins, and runs as
   the uid the chart's securityContext names.

Also, for tests/all/deploy.rs (which compares with the Rust functions themselves and runs
the real binary with the rendered arguments):

    check_chart.py --print-role-rules   # the rendered Role's rules (default values), JSON
    check_chart.py --print-args         # namespace, runner StatefulSet, each role's args
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "conduit"
KUBE_VERSION = "1.33.0"
RELEASE = "conduit"
NAMESPACE = "conduit"
RUNNER_SET = "conduit-runner"  # what the default values render for release `conduit`

# conduit_scheduler::kube::rbac_rules(set), as serde_json writes k8s-openapi's PolicyRule
# (tests/all/deploy.rs asserts that the rendered Role equals the Rust function itself).
def expected_rules(statefulset: str) -> list[dict]:
    return [
        {
            "apiGroups": ["apps"],
            "resources": ["statefulsets/scale"],
            "resourceNames": [statefulset],
            "verbs": ["get", "patch"],
        }
    ]


CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


# ---------------------------------------------------------------- rendering


def render(values: dict | None, name: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    """The chart rendered by Helm's engine: every manifest, parsed."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=name, namespace=namespace, is_install=True)
    docs = []
    for path in sorted(out):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(out[path]):
            if doc:
                doc["__template"] = path
                docs.append(doc)
    return docs


def render_error(values: dict) -> str | None:
    try:
        render(values)
    except Exception as e:  # helm_python raises HelmRenderError / HelmValuesError
        return str(e)
    return None


def gpu_values() -> dict:
    return yaml.safe_load((CHART / "values-gpu.yaml").read_text())


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def clean(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "__template"}


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        raise SystemExit(f"expected one {kind} {name}, rendered {len(found)}")
    return found[0]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def container(workload: dict) -> dict:
    cs = workload["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1, f"{workload['metadata']['name']}: one container expected"
    return cs[0]


def args_of(workload: dict) -> list[str]:
    return list(container(workload).get("args", []))


def arg(args: list[str], flag: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
    return values[0] if len(values) == 1 else None


# ---------------------------------------------------------------- validation


def validate(docs: list[dict], case: str) -> tuple[int, int]:
    """kubernetes-validate --strict for built-in kinds; structural checks for CRDs."""
    schema, structural = 0, 0
    for doc in docs:
        what = f"{case}: {doc['kind']} {doc['metadata']['name']} ({doc['__template']})"
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            structural += 1
            continue  # checked by check_crds with the rest of the render in view
        try:
            kubernetes_validate.validate(clean(doc), KUBE_VERSION, strict=True)
            schema += 1
        except kv_utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            failures.append(f"{what}: kubernetes-validate --strict: {path}: {e.message}")
        except kv_utils.SchemaNotFoundError as e:
            failures.append(f"{what}: no Kubernetes {KUBE_VERSION} schema: {e.message}")
    return schema, structural


def check_crds(docs: list[dict], case: str) -> None:
    services = {d["metadata"]["name"]: d for d in of_kind(docs, "Service")}
    for sm in of_kind(docs, "ServiceMonitor"):
        what = f"{case}: ServiceMonitor {sm['metadata']['name']}"
        check(sm["apiVersion"] == "monitoring.coreos.com/v1", f"{what}: apiVersion")
        spec = sm.get("spec", {})
        check(set(spec) <= {"selector", "namespaceSelector", "endpoints"}, f"{what}: spec fields {sorted(spec)}")
        match = spec.get("selector", {}).get("matchLabels", {})
        selected = [
            s for s in services.values()
            if match and all(s["spec"].get("selector", {}).get(k) == v for k, v in match.items())
        ]
        check(len(selected) == 1, f"{what}: selects {len(selected)} Services, not one")
        check(spec.get("namespaceSelector") == {"matchNames": [NAMESPACE]}, f"{what}: namespaceSelector")
        endpoints = spec.get("endpoints", [])
        check(len(endpoints) >= 1, f"{what}: no endpoints")
        allowed = {"port", "path", "scheme", "interval", "scrapeTimeout", "authorization"}
        for ep in endpoints:
            check(set(ep) <= allowed, f"{what}: endpoint fields {sorted(ep)}")
            check(ep.get("path") == "/metrics", f"{what}: path")
            check(re.fullmatch(r"\d+[smh]", str(ep.get("interval", ""))) is not None, f"{what}: interval")
            if selected:
                ports = [p["name"] for p in selected[0]["spec"]["ports"]]
                check(ep.get("port") in ports, f"{what}: port {ep.get('port')} not on the Service ({ports})")
            auth = ep.get("authorization")
            if auth is not None:
                check(auth.get("type") == "Bearer", f"{what}: authorization type")
                cred = auth.get("credentials", {})
                check(isinstance(cred.get("name"), str) and cred["name"], f"{what}: credentials Secret name")
                check(isinstance(cred.get("key"), str) and cred["key"], f"{what}: credentials key")
        component = match.get("app.kubernetes.io/component")
        # Runners' and gateways' /metrics need a bearer key; the scheduler's does not.
        if component in ("runner", "gateway"):
            check(all("authorization" in ep for ep in endpoints), f"{what}: {component} /metrics needs a key")
    for so in of_kind(docs, "ScaledObject"):
        what = f"{case}: ScaledObject {so['metadata']['name']}"
        check(so["apiVersion"] == "keda.sh/v1alpha1", f"{what}: apiVersion")
        spec = so.get("spec", {})
        target = spec.get("scaleTargetRef", {})
        check(target.get("apiVersion") == "apps/v1" and target.get("kind") == "StatefulSet", f"{what}: target kind")
        sets = [s["metadata"]["name"] for s in of_kind(docs, "StatefulSet")]
        check(target.get("name") in sets, f"{what}: target {target.get('name')} not rendered")
        check(str(target.get("name", "")).endswith("-runner"), f"{what}: must scale the runner set")
        lo, hi = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
        check(isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi, f"{what}: min/max {lo}/{hi}")
        triggers = spec.get("triggers", [])
        check(len(triggers) == 1 and triggers[0].get("type") == "prometheus", f"{what}: one prometheus trigger")
        if triggers:
            meta = triggers[0].get("metadata", {})
            # KEDA reads trigger metadata as a map of strings.
            check(all(isinstance(v, str) for v in meta.values()), f"{what}: trigger metadata must be strings")
            check("conduit_scheduler_runners_desired" in meta.get("query", ""), f"{what}: query metric")
            check("conduit_scheduler_leader" in meta.get("query", ""), f"{what}: query must follow the leader")
            check(meta.get("threshold") == "1", f"{what}: threshold 1 (one runner per desired runner)")
            check(meta.get("ignoreNullValues") == "false", f"{what}: no leader must not read as 0")
            check(meta.get("serverAddress", "").startswith("http"), f"{what}: serverAddress")
            check(triggers[0].get("metricType") == "AverageValue", f"{what}: metricType")


# ---------------------------------------------------------------- invariants


def check_invariants(docs: list[dict], case: str, values: dict) -> None:
    merged = merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    mode = merged["runners"]["autoscaling"]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    check(len(names) == len(docs), f"{case}: duplicate resource names")
    for d in docs:
        check(d["metadata"].get("namespace") in (None, NAMESPACE), f"{case}: {d['kind']} in another namespace")

    # RBAC: nothing cluster-wide; one Role only with the built-in actuator, equal to
    # rbac_rules(<runner set>), bound to the scheduler's ServiceAccount only.
    check(not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding"), f"{case}: cluster-wide RBAC")
    roles, bindings = of_kind(docs, "Role"), of_kind(docs, "RoleBinding")
    sched = one(docs, "Deployment", f"{RELEASE}-scheduler")
    sched_pod = sched["spec"]["template"]["spec"]
    sargs = args_of(sched)
    runner = one(docs, "StatefulSet", RUNNER_SET)
    if mode == "kubernetes":
        check(len(roles) == 1 and len(bindings) == 1, f"{case}: one Role and one RoleBinding expected")
        if roles and bindings:
            check(roles[0]["rules"] == expected_rules(RUNNER_SET), f"{case}: Role rules {roles[0]['rules']}")
            b = bindings[0]
            check(b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                   "name": roles[0]["metadata"]["name"]}, f"{case}: roleRef")
            check(b["subjects"] == [{"kind": "ServiceAccount", "name": sched_pod["serviceAccountName"],
                                     "namespace": NAMESPACE}], f"{case}: RoleBinding subjects {b['subjects']}")
        check(arg(sargs, "--kube-statefulset") == runner["metadata"]["name"], f"{case}: --kube-statefulset")
        check(arg(sargs, "--kube-namespace") == NAMESPACE, f"{case}: --kube-namespace")
        check(sched_pod.get("automountServiceAccountToken") is True, f"{case}: the actuator needs its token")
        check("replicas" not in runner["spec"], f"{case}: the actuator owns the runner set's replicas")
    else:
        check(not roles and not bindings, f"{case}: no Role without the built-in actuator")
        check(arg(sargs, "--kube-statefulset") is None, f"{case}: no --kube-statefulset in mode {mode}")
        check(sched_pod.get("automountServiceAccountToken") is False, f"{case}: scheduler token not needed")
    if mode == "off":
        check(arg(sargs, "--max-runners") is None, f"{case}: runner autoscaling must be off")
        check(runner["spec"].get("replicas") == merged["runners"]["replicas"], f"{case}: fixed runner count")
    else:
        check(arg(sargs, "--max-runners") == str(merged["runners"]["maxRunners"]), f"{case}: --max-runners")
        check(arg(sargs, "--min-runners") == str(merged["runners"]["minRunners"]), f"{case}: --min-runners")
    check((mode == "keda") == bool(of_kind(docs, "ScaledObject")), f"{case}: ScaledObject iff keda")
    check(bool(merged["metrics"]["serviceMonitor"]["enabled"]) == bool(of_kind(docs, "ServiceMonitor")),
          f"{case}: ServiceMonitor iff metrics.serviceMonitor.enabled")

    # ServiceAccounts: every token off except the scheduler's with the actuator on.
    for sa in of_kind(docs, "ServiceAccount"):
        wants = sa["metadata"]["name"] == sched_pod["serviceAccountName"] and mode == "kubernetes"
        check(sa.get("automountServiceAccountToken") is wants, f"{case}: ServiceAccount {sa['metadata']['name']} token")
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        name = w["metadata"]["name"]
        if w is not sched:
            check(pod.get("automountServiceAccountToken") is False, f"{case}: {name} mounts a token")
            check(pod["serviceAccountName"] != sched_pod["serviceAccountName"], f"{case}: {name} uses the scheduler's account")
        check(pod["securityContext"].get("runAsNonRoot") is True, f"{case}: {name} may run as root")
        c = container(w)
        image = c["image"]
        check(("@sha256:" in image) or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")),
              f"{case}: {name} image {image} not pinned")
        # Probes point at named container ports; $(VAR)s in args are defined in env.
        ports = {p["name"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = c.get(probe)
            check(p is not None, f"{case}: {name} has no {probe}")
            if p:
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                check(port in ports, f"{case}: {name} {probe} port {port} not a container port")
        env = {e["name"] for e in c.get("env", [])}
        for a in c.get("args", []):
            for var in re.findall(r"\$\((\w+)\)", a):
                check(var in env, f"{case}: {name} arg {a} uses undefined $({var})")

    # Services select exactly one workload's pods, on its named ports.
    for svc in of_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        hits = [w for w in workloads(docs)
                if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        check(len(hits) == 1, f"{case}: Service {svc['metadata']['name']} selects {len(hits)} workloads")
        if hits:
            ports = {p["name"] for p in container(hits[0]).get("ports", [])}
            for p in svc["spec"]["ports"]:
                check(p["targetPort"] in ports, f"{case}: Service {svc['metadata']['name']} port {p['targetPort']}")
    for w in of_kind(docs, "StatefulSet"):
        check(("Service", w["spec"]["serviceName"]) in names, f"{case}: {w['metadata']['name']} serviceName")

    # The roles' real health routes (host/runner/src/http.rs, gateway/src/http.rs; the
    # gateway serves /v2/health/live through the runner router it falls back to).
    rc = container(runner)
    check(rc["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", f"{case}: runner liveness")
    check(rc["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready", f"{case}: runner readiness")
    gw = one(docs, "Deployment", f"{RELEASE}-gateway")
    gc = container(gw)
    check(gc["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", f"{case}: gateway liveness")
    check(gc["readinessProbe"]["httpGet"]["path"] in ("/v2/health/live", "/v2/health/ready"), f"{case}: gateway readiness")
    check(container(sched)["livenessProbe"]["httpGet"]["path"] == "/metrics", f"{case}: scheduler probe")
    check("tcpSocket" in container(one(docs, "StatefulSet", f"{RELEASE}-registry"))["livenessProbe"],
          f"{case}: registry probe")

    # Runners: joined under their pod name, advertising their pod DNS name.
    headless = one(docs, "Service", runner["spec"]["serviceName"])
    check(headless["spec"].get("clusterIP") == "None", f"{case}: runner Service must be headless")
    check(headless["spec"].get("publishNotReadyAddresses") is True, f"{case}: runner names must resolve while not ready")
    rargs = args_of(runner)
    domain = merged["runners"]["clusterDomain"]
    check(arg(rargs, "--advertise") == f"$(POD_NAME).{headless['metadata']['name']}.$(POD_NAMESPACE).svc.{domain}",
          f"{case}: runner --advertise {arg(rargs, '--advertise')}")
    check(arg(rargs, "--id") == "$(POD_NAME)", f"{case}: runner --id")
    renv = {e["name"]: e for e in rc["env"]}
    check(renv.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", f"{case}: POD_NAME")
    check(renv.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace", f"{case}: POD_NAMESPACE")
    grace = runner["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    check(grace * 1000 > int(arg(rargs, "--drain-timeout-ms") or 0), f"{case}: grace period under the drain timeout")
    devices = [a.split("=", 1)[1] for a in rargs if a.startswith("--device=")]
    check(devices == merged["runners"]["devices"], f"{case}: runner devices {devices}")

    # The API key comes from the Secret the user names, never from a literal.
    for w, role in ((runner, "runner"), (gw, "gateway")):
        env = {e["name"]: e for e in container(w)["env"]}
        ref = env.get("CONDUIT_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {})
        check(ref == {"name": merged["apiKey"]["existingSecret"], "key": merged["apiKey"]["key"]},
              f"{case}: {role} CONDUIT_API_KEY {ref}")
        check(arg(args_of(w), "--registry") == f"http://{RELEASE}-registry:{merged['registry']['port']}", f"{case}: {role} --registry")
        if merged["metrics"]["keySecret"]["name"]:
            check("CONDUIT_METRICS_KEY" in env, f"{case}: {role} metrics key")
    check(not of_kind(docs, "Secret"), f"{case}: the chart must not render Secrets")

    # NATS: pinned, JetStream on a volume, fenced by a NetworkPolicy.
    nats_on = merged["nats"]["enabled"]
    url = f"nats://{RELEASE}-nats:4222" if nats_on else merged["nats"]["url"]
    for w in (sched, runner, gw):
        check(arg(args_of(w), "--nats") == url, f"{case}: {w['metadata']['name']} --nats")
    if nats_on:
        nats = one(docs, "StatefulSet", f"{RELEASE}-nats")
        nargs = args_of(nats)
        check("--jetstream" in nargs and "--store_dir=/data" in nargs, f"{case}: NATS JetStream on /data")
        check(re.fullmatch(r"nats:2\.\d+\.\d+(-alpine)?", container(nats)["image"]) is not None, f"{case}: NATS image pin")
        if merged["nats"]["networkPolicy"]["enabled"]:
            np = one(docs, "NetworkPolicy", f"{RELEASE}-nats")
            froms = [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in np["spec"]["ingress"][0]["from"]]
            check(sorted(froms) == ["gateway", "runner", "scheduler"], f"{case}: NATS ingress from {froms}")
    else:
        check(not [d for d in docs if d["metadata"]["name"] == f"{RELEASE}-nats"], f"{case}: external NATS rendered one")

    # GPU: the overlay's resources, placement and device.
    limits = rc.get("resources", {}).get("limits", {})
    if merged["runners"]["resources"].get("limits", {}).get("nvidia.com/gpu"):
        pod = runner["spec"]["template"]["spec"]
        check(limits.get("nvidia.com/gpu") == 1, f"{case}: GPU limit")
        check(pod.get("nodeSelector") == merged["runners"]["nodeSelector"], f"{case}: GPU nodeSelector")
        check(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), f"{case}: GPU toleration")
        check(any(d.startswith("cuda") for d in devices), f"{case}: GPU runners must offer cuda")
    else:
        check("nvidia.com/gpu" not in json.dumps(runner), f"{case}: CPU runners ask for a GPU")


# ---------------------------------------------------------------- cases


CASES: list[tuple[str, dict]] = [
    ("default values", {}),
    ("values-gpu.yaml", gpu_values()),
    ("ServiceMonitor, metrics key, limits", {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                    "keySecret": {"name": "conduit-metrics"}},
        "runners": {"limits": "[default]\nmax_concurrent_requests = 64\n"},
        "gateway": {"limits": "[default]\nmax_concurrent_requests = 64\n", "readinessPath": "/v2/health/ready"},
    }),
    ("ServiceMonitor scraping with the API key", {"metrics": {"serviceMonitor": {"enabled": True}}}),
    ("KEDA instead of the built-in actuator", {
        "runners": {"autoscaling": "keda", "minRunners": 0},
        "keda": {"serverAddress": "http://prometheus-operated.monitoring:9090"},
        "metrics": {"serviceMonitor": {"enabled": True}},
    }),
    ("GPU with KEDA", merge(gpu_values(), {
        "runners": {"autoscaling": "keda"},
        "keda": {"serverAddress": "http://prometheus.monitoring:9090"},
    })),
    ("no runner autoscaling", {"runners": {"autoscaling": "off", "replicas": 3}}),
    ("external NATS, no NetworkPolicy", {"nats": {"enabled": False, "url": "nats://nats.nats:4222"}}),
    ("NetworkPolicy off, image digest", {
        "nats": {"networkPolicy": {"enabled": False}},
        "image": {"digest": "sha256:" + "0" * 64},
    }),
]

# Values the chart must refuse, and the words its message must contain.
REFUSED: list[tuple[str, dict, str]] = [
    ("grace period under the drain timeout", {"runners": {"drainTimeoutMs": 60000}}, "terminationGracePeriodSeconds"),
    ("unknown autoscaling mode", {"runners": {"autoscaling": "hpa"}}, "runners.autoscaling"),
    ("KEDA without Prometheus", {"runners": {"autoscaling": "keda"}}, "keda.serverAddress"),
    ("external NATS without a URL", {"nats": {"enabled": False}}, "nats.url"),
    ("no API key Secret", {"apiKey": {"existingSecret": ""}}, "apiKey.existingSecret"),
    ("min above max", {"runners": {"minRunners": 5, "maxRunners": 2}}, "minRunners"),
]


def check_dockerfile() -> None:
    """The image the chart runs (no container engine here to build it): its build runs
    the command CI runs, its ONNX Runtime is the version the tests pin, it runs as the
    user the chart's securityContext names."""
    text = (ROOT / "Dockerfile").read_text()
    what = "Dockerfile"
    check(re.search(r"^\s*make build;", text, re.M) is not None, f"{what}: the build must run `make build` as CI does")
    check(re.search(r"^build:\n\t\$\(CARGO\) build --release -p conduit$", (ROOT / "Makefile").read_text(), re.M) is not None,
          "Makefile: `make build` is no longer `cargo build --release -p conduit` (the Dockerfile runs it)")
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "scripts" / "requirements.txt").read_text(), re.M))
    check(f"ARG ORT_VERSION={pins.get('onnxruntime')}" in text, f"{what}: ORT_VERSION must be onnxruntime=={pins.get('onnxruntime')}")
    check(re.search(r"^ARG RUST_IMAGE=rust:1\.95", text, re.M) is not None, f"{what}: rust:1.95 (rust-toolchain.toml)")
    check("ORT_DYLIB_PATH=" in text, f"{what}: ORT_DYLIB_PATH")
    uid = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]
    check(f"USER {uid}:{uid}" in text and f"--uid {uid}" in text, f"{what}: USER must be {uid} (podSecurityContext)")
    check(re.search(r'^ENTRYPOINT \["/usr/local/bin/conduit"\]', text, re.M) is not None, f"{what}: entrypoint")
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in ("target", ".venv", "testdata", ".git"):
        check(path in ignored, f".dockerignore: {path}")


def check_values_documented() -> None:
    """Every value of values.yaml is in the chart README's tables (itself, or a prefix
    below the top-level sections such as `runners.resources`), and every value the
    tables name exists."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    leaves: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        else:
            leaves.append(path)

    walk(values, "")
    sections = {k for k, v in values.items() if isinstance(v, dict) and k not in ("podSecurityContext", "securityContext")}
    documented: set[str] = set()
    for line in (CHART / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            documented.update(re.findall(r"`([A-Za-z][\w.]*)`", line.split("|")[1]))
    for leaf in leaves:
        parts = leaf.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - sections
        check(bool(prefixes & documented), f"deploy/helm/conduit/README.md: value {leaf} is not documented")

    def exists(path: str) -> bool:
        node: object = values
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    for name in documented:
        check(exists(name), f"deploy/helm/conduit/README.md documents {name}, which values.yaml lacks")


def lint(values: dict, case: str) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + [
        {"error": e} for e in report.get("errors") or []
    ]
    for m in problems:
        failures.append(f"{case}: helm lint --strict: {m.get('path', '')} {m.get('error')}")


def run_checks() -> int:
    print(f"helm-python-sdk {helm.__version__ if hasattr(helm, '__version__') else ''}"
          f" (libhelm_c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}),"
          f" kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else ''}"
          f" against Kubernetes {KUBE_VERSION} (--strict)")
    for case, values in CASES:
        before = len(failures)
        lint(values, case)
        docs = render(values)
        schema, structural = validate(docs, case)
        check_crds(docs, case)
        check_invariants(docs, case, values)
        kinds = sorted({d["kind"] for d in docs})
        status = "ok" if len(failures) == before else "FAILED"
        crd = f", {structural} CRD objects checked structurally (no schema in kubernetes-validate)" if structural else ""
        print(f"  {status}: {case}: {len(docs)} manifests, {schema} validated --strict{crd}: {', '.join(kinds)}")
    for case, values, words in REFUSED:
        error = render_error(values)
        ok = error is not None and words in error
        check(ok, f"refused values: {case}: rendered anyway or said {error!r}")
        print(f"  {'ok' if ok else 'FAILED'}: refuses {case}")
    before = len(failures)
    check_values_documented()
    print(f"  {'ok' if len(failures) == before else 'FAILED'}: every value documented in the chart's README.md")
    before = len(failures)
    check_dockerfile()
    print(f"  {'ok' if len(failures) == before else 'FAILED'}: Dockerfile (structure only: no container engine here)")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    passed = len(CASES) + len(REFUSED) + 2
    print(f"check_chart: {len(failures)} problems in {passed} cases")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-role-rules", action="store_true",
                        help="print the rendered Role's rules (default values, release `conduit` in `conduit`) as JSON")
    parser.add_argument("--print-args", action="store_true",
                        help="print the namespace, the runner StatefulSet and every role's container args as JSON")
    opts = parser.parse_args()
    if opts.print_role_rules or opts.print_args:
        docs = render({})
        roles = of_kind(docs, "Role")
        if opts.print_role_rules:
            if len(roles) != 1:
                raise SystemExit(f"expected one Role, rendered {len(roles)}")
            print(json.dumps(roles[0]["rules"]))
        else:
            binding = one(docs, "RoleBinding", roles[0]["metadata"]["name"]) if len(roles) == 1 else None
            facts = {
                "namespace": NAMESPACE,
                "runner_statefulset": one(docs, "StatefulSet", RUNNER_SET)["metadata"]["name"],
                "role_namespace": NAMESPACE,
                "role_subjects": binding["subjects"] if binding else [],
                "scheduler_service_account": one(docs, "Deployment", f"{RELEASE}-scheduler")["spec"]["template"]["spec"]["serviceAccountName"],
                "args": {
                    c["name"]: c.get("args", [])
                    for w in workloads(docs)
                    for c in w["spec"]["template"]["spec"]["containers"]
                },
            }
            print(json.dumps(facts))
        return 0
    return run_checks()


if __name__ == "__main__":
    sys.exit(main())
