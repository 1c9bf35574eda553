#!/usr/bin/env python3
"""Python components (issue 19): the sandboxed Python step against the Rust component and PyTriton.

    bench/peers/.venv/bin/python bench/python_guest.py \\
        --conduit $CARGO_TARGET_DIR/release/conduit \\
        --wasm-dir $CARGO_TARGET_DIR/wasm32-wasip2/release [--quick] [--json FILE]

(`bash bench/peers/setup.sh` makes the venv: PyTriton, tritonclient, numpy.) `--quick`: a smoke
run (about 30 s, mostly the push's compile and PyTriton's start and stop). `--targets rust,python`
leaves PyTriton out, so any Python with numpy and tritonclient runs it (the repo's .venv).

One run, three servers up at once, one KServe v2 gRPC client (tritonclient, this process):

- **Rust component**: `embedding_post.wasm` pushed to `conduit dev` as `embedding-post`.
- **Python component**: `embedding_post_py.wasm` (examples/components/embedding-post-py, built
  with componentize-py by `make py-components`) pushed to the same `conduit dev` as
  `embedding-post-py`.
- **PyTriton Python backend**: a PyTriton 0.7 server (this file with `--serve-pytriton`, its own
  process and session) whose model `embedding_post_py` runs the SAME pure-Python
  `pooling.embed_and_score` (examples/components/embedding-post-py/pooling.py) on native
  CPython. Its inference function turns Triton's numpy inputs into what `pooling` takes (the
  mask as a list of ints, a `read_rows` returning a float32 numpy slice, which `pooling` reads
  in place) and its `array('f')` results into numpy: that conversion is part of PyTriton's
  step, as a user would write it. A second model, `noop`, takes and returns the same tensors
  and does nothing: PyTriton's own cost per request (a reference).
- **Native CPython, in process** (a reference, no server): the same `pooling` call with the same
  conversion, called from this process: what the pure-Python math costs on native CPython.

All three take `last_hidden_state` FP32 [batch, seq, 384] and `attention_mask` INT64 [batch, seq]
and return `embeddings` FP32 [batch, 384] and `similarity` FP32 [batch / 2]. Inputs (fixed seed):
random-normal hidden states, masks with an unmasked prefix; `b2-s16` is a pair of short
sentences padded to the longer (16 and 12 tokens), `b2-s128` a pair padded to max_length 128
(12 and 13 real tokens). Before timing, the answers must agree: Python component vs Rust
component and PyTriton vs Python component, max |difference| <= --tolerance (1e-6).

Timing: closed loop, 1 client, requests back to back. First the Python and the Rust components'
first call after the push (cold: the instance is made on that call), then per input size a
warm-up per target and --rounds rounds that visit each target in turn for duration/rounds s,
so drift on a noisy machine hits all of them alike. p50/p99 of every request in the windows.
Server-side means over the timed windows: Conduit's `conduit_inference_compute_infer_duration_us`
and `…_request_duration_us` per exec (its /metrics), Triton's `compute_infer` and `success` per
request (its statistics endpoint, opened on loopback). The cold call also reads
`conduit_component_instantiations_total` to show whether it made a fresh instance.
RSS: `conduit dev` (VmRSS: before the pushes, after both components answered, at the end) and
the PyTriton server's whole session (its Python process, tritonserver and the backend stub).

Bounded: every wait has a timeout, only 127.0.0.1, each server in its own session, every process
started is stopped in a `finally` (SIGTERM, then SIGKILL of its process group), and a process
left in one of those sessions is an error. A request that fails while timing is counted, left out
of the latencies and reported (more than 10 for one target end the run). Exit status: 0, or 1 on a
disagreement, a failed request, a process left behind or any other error.
"""
import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
POOLING = os.path.join(ROOT, "examples/components/embedding-post-py/pooling.py")
DIM = 384
SEED = 19
# name, batch, seq, real tokens per row
SIZES = (("b2-s16", 2, 16, (16, 12)), ("b2-s128", 2, 128, (12, 13)))
TARGETS = ("rust", "python", "pytriton")
LABELS = {"rust": "Rust component", "python": "Python component", "pytriton": "PyTriton Python backend",
          "pytriton-noop": "PyTriton, empty function (reference)",
          "native": "pure Python on native CPython, in process, no server (reference)"}
MODELS = {"rust": "embedding-post", "python": "embedding-post-py", "pytriton": "embedding_post_py",
          "pytriton-noop": "noop"}
VERSION = "1.0.0"


def load_pooling(path):
    spec = importlib.util.spec_from_file_location("pooling", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def numpy_step(pooling, hidden, mask):
    """What a PyTriton user writes around `pooling.embed_and_score`: numpy in, numpy out."""
    batch, seq, dim = hidden.shape

    def read_rows(b, lo, hi):
        return hidden[b, lo:hi]  # a float32 buffer: `pooling` reads it in place, no copy

    emb, sims = pooling.embed_and_score(read_rows, mask.reshape(-1).tolist(), batch, seq, dim)
    return (np.frombuffer(emb, dtype=np.float32).reshape(batch, dim),
            np.frombuffer(sims, dtype=np.float32).copy())


# ------------------------------------------------------------------ the PyTriton server


def serve_pytriton(args):
    """`--serve-pytriton`: the PyTriton peer (run as a subprocess of the benchmark)."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

    pooling = load_pooling(args.pooling)

    def infer(requests):
        return [dict(zip(("embeddings", "similarity"),
                         numpy_step(pooling, r["last_hidden_state"], r["attention_mask"])))
                for r in requests]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port, grpc_address="127.0.0.1",
                          grpc_port=args.grpc_port, allow_metrics=False, exit_timeout_secs=5, log_verbose=0)
    # `statistics` open (loopback only): the benchmark reads Triton's server-side times
    security = TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=MODELS["pytriton"],
            infer_func=infer,
            inputs=[Tensor(name="last_hidden_state", dtype=np.float32, shape=(-1, -1, DIM)),
                    Tensor(name="attention_mask", dtype=np.int64, shape=(-1, -1))],
            outputs=[Tensor(name="embeddings", dtype=np.float32, shape=(-1, DIM)),
                     Tensor(name="similarity", dtype=np.float32, shape=(-1,))],
            # no batching: `similarity` has batch / 2 rows, no batch dimension Triton could split
            config=ModelConfig(max_batch_size=0, batching=False),
            strict=True,
        )
        def noop(requests):  # PyTriton's own cost: the same tensors in and out, no Python work
            out = []
            for r in requests:
                batch = r["last_hidden_state"].shape[0]
                out.append({"embeddings": np.zeros((batch, DIM), np.float32),
                            "similarity": np.zeros(batch // 2, np.float32)})
            return out

        triton.bind(
            model_name=MODELS["pytriton-noop"],
            infer_func=noop,
            inputs=[Tensor(name="last_hidden_state", dtype=np.float32, shape=(-1, -1, DIM)),
                    Tensor(name="attention_mask", dtype=np.int64, shape=(-1, -1))],
            outputs=[Tensor(name="embeddings", dtype=np.float32, shape=(-1, DIM)),
                     Tensor(name="similarity", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=0, batching=False),
            strict=True,
        )
        triton.run()
        print(f"PYTRITON READY grpc=127.0.0.1:{args.grpc_port} pid={os.getpid()}", flush=True)
        while not stop.wait(0.5):
            if not triton.is_alive():
                print("python_guest: Triton is no longer alive", file=sys.stderr, flush=True)
                return 1
    print("PYTRITON STOPPED", flush=True)
    return 0


# ------------------------------------------------------------------ processes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid):
    """Pids of the live processes in session `sid` (field 6 of /proc/PID/stat)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(pid))
    return out


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Proc:
    """A server subprocess in a session of its own, its output pumped to a log; waits for a line."""

    def __init__(self, name, cmd, log_path, env=None):
        self.name, self.cmd, self.log_path, self.env = name, cmd, log_path, env
        self.proc = None
        self.lines = []
        self.cond = threading.Condition()

    def start(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env, cwd=ROOT, start_new_session=True)

        def pump():
            for line in self.proc.stdout:
                try:
                    self.log.write(line)
                    self.log.flush()
                except ValueError:  # the log was closed by stop(): a late line
                    pass
                with self.cond:
                    self.lines.append(line.rstrip("\n"))
                    self.cond.notify_all()
            with self.cond:
                self.cond.notify_all()

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, pred, timeout):
        """The first output line for which pred(line) is truthy, waiting at most `timeout` s."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if pred(line):
                        return line
                seen = len(self.lines)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: not ready after {timeout} s; see {self.log_path}")
                self.cond.wait(min(left, 0.5))

    def pids(self):
        return session_pids(self.proc.pid) if self.proc else []

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL of the whole session after `timeout` s; returns processes left behind."""
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {self.name}: no exit {timeout} s after SIGTERM; SIGKILL to its process group",
                      file=sys.stderr)
        deadline = time.monotonic() + 10
        left = self.pids()
        while left and time.monotonic() < deadline:  # children exiting after their parent
            time.sleep(0.2)
            left = self.pids()
        if left or self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()
        return left


# ------------------------------------------------------------------ measuring


def make_inputs(batch, seq, lengths, seed):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((batch, seq, DIM), dtype=np.float32)
    mask = np.zeros((batch, seq), dtype=np.int64)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    return hidden, mask


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


class Client:
    """One tritonclient gRPC connection per server; the same request objects for every target."""

    def __init__(self, grpc_urls, key):
        import tritonclient.grpc as grpcclient

        self.g = grpcclient
        self.clients = {t: grpcclient.InferenceServerClient(u) for t, u in grpc_urls.items()}
        self.headers = {t: ({"authorization": f"Bearer {key}"} if not t.startswith("pytriton") else None)
                        for t in grpc_urls}
        self.outputs = [grpcclient.InferRequestedOutput("embeddings"), grpcclient.InferRequestedOutput("similarity")]

    def inputs(self, hidden, mask):
        h = self.g.InferInput("last_hidden_state", list(hidden.shape), "FP32")
        h.set_data_from_numpy(hidden)
        m = self.g.InferInput("attention_mask", list(mask.shape), "INT64")
        m.set_data_from_numpy(mask)
        return [h, m]

    def call(self, target, inputs):
        r = self.clients[target].infer(MODELS[target], inputs, outputs=self.outputs, headers=self.headers[target],
                                       client_timeout=30)
        return r.as_numpy("embeddings"), r.as_numpy("similarity")

    def live(self, target):
        return self.clients[target].is_server_live(headers=self.headers[target], client_timeout=10)

    def close(self):
        for c in self.clients.values():
            c.close()


def conduit_metrics(url, key):
    """{(name, model): value} of Conduit's per-model counters, from its Prometheus endpoint."""
    import urllib.request

    want = ("conduit_inference_compute_infer_duration_us", "conduit_inference_request_duration_us",
            "conduit_inference_exec_count", "conduit_component_instantiations_total")
    out = {}
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"})  # the admin key
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in want:
            continue
        labels = {}
        if "{" in line:
            for part in line[line.index("{") + 1:line.rindex("}")].split(","):
                k, _, v = part.partition("=")
                labels[k.strip()] = v.strip().strip('"')
        key = (name, labels.get("model", labels.get("tenant", "")))
        out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def triton_stats(client, model):
    """(requests, compute_infer ns, success ns) of a Triton model, from its statistics endpoint."""
    st = client.get_inference_statistics(model, client_timeout=10, as_json=True)["model_stats"][0]["inference_stats"]
    return (int(st["success"].get("count", 0)), int(st["compute_infer"].get("ns", 0)),
            int(st["success"].get("ns", 0)))


class ServerSide:
    """Server-side time per request over a window: Conduit's counters, Triton's statistics."""

    def __init__(self, client, metrics_url, key):
        self.client, self.metrics_url, self.key = client, metrics_url, key

    def snapshot(self):
        snap = {}
        for t in self.client.clients:
            try:
                if t.startswith("pytriton"):
                    snap[t] = triton_stats(self.client.clients[t], MODELS[t])
                elif self.metrics_url:
                    m = conduit_metrics(self.metrics_url, self.key)
                    g = lambda n: m.get((n, MODELS[t]), 0.0)  # noqa: E731
                    snap[t] = (g("conduit_inference_exec_count"), g("conduit_inference_compute_infer_duration_us") * 1e3,
                               g("conduit_inference_request_duration_us") * 1e3)
            except Exception as e:  # noqa: BLE001 - a reference number; reported as missing
                print(f"  server-side stats of {t}: {e}", file=sys.stderr)
        return snap

    @staticmethod
    def per_request(before, after):
        out = {}
        for t in after:
            if t in before and after[t][0] > before[t][0]:
                n = after[t][0] - before[t][0]
                out[t] = {"requests": n, "compute_ms": (after[t][1] - before[t][1]) / n / 1e6,
                          "server_ms": (after[t][2] - before[t][2]) / n / 1e6}
        return out


def timed_loop(fn, seconds, errors, what):
    """Calls `fn` back to back for `seconds`; returns the latencies (ms) of the calls that
    succeeded. A failed call is appended to `errors` (and left out of the latencies); more than
    10 failures in one loop end the run."""
    out = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        try:
            fn()
            ok = True
        except Exception as e:  # noqa: BLE001 - counted and reported
            ok = False
            errors.append({"target": what, "after_ms": (time.perf_counter() - t0) * 1e3,
                           "at": time.strftime("%H:%M:%S"), "error": str(e)[:300]})
            print(f"  {what}: request failed after {errors[-1]['after_ms']:.0f} ms: {str(e)[:200]}",
                  file=sys.stderr, flush=True)
            if sum(1 for x in errors if x["target"] == what) > 10:
                raise RuntimeError(f"{what}: more than 10 failed requests") from e
        t1 = time.perf_counter()
        if ok:
            out.append((t1 - t0) * 1e3)
        if t1 >= end:
            return out


def max_diff(a, b):
    (ea, sa), (eb, sb) = a, b
    if ea.shape != eb.shape or sa.shape != sb.shape:
        return float("inf")
    return float(max(np.max(np.abs(ea - eb)), np.max(np.abs(sa - sb))))


# ------------------------------------------------------------------ the benchmark


def conduit_env():
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")  # the log then says how long each component took to compile
    env.pop("CONDUIT_API_KEY", None)
    env.pop("CONDUIT_REGISTRY", None)
    return env


def push(binary, registry, key, wasm, name, log, timeout):
    env = dict(conduit_env(), CONDUIT_REGISTRY=registry, CONDUIT_API_KEY=key)
    cmd = [binary, "push", "component", wasm, "--name", name, "--version", VERSION]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - t0
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    if r.returncode:
        raise RuntimeError(f"`conduit push component {os.path.basename(wasm)}` failed ({r.returncode}): "
                           f"{r.stderr.strip()[-400:]}")
    return took


def run(args):
    pooling = load_pooling(args.pooling)
    os.makedirs(args.out, exist_ok=True)
    wasm = {"rust": os.path.join(args.wasm_dir or "", "embedding_post.wasm"),
            "python": os.path.join(args.wasm_dir or "", "embedding_post_py.wasm")}
    targets = [t for t in TARGETS if t in args.targets]
    for t in targets:
        if t in wasm and not os.path.isfile(wasm[t]):
            raise RuntimeError(f"{wasm[t]} not found (make components py-components)")
    conduit_targets = [t for t in targets if t in wasm]
    if conduit_targets and not os.access(args.conduit or "", os.X_OK):
        raise RuntimeError(f"--conduit {args.conduit!r} is not an executable")

    push_log = os.path.join(args.out, "push.log")
    if os.path.exists(push_log):
        os.remove(push_log)
    result = {"settings": {k: v for k, v in vars(args).items() if k != "serve_pytriton"},
              "targets": targets, "loadavg_before": os.getloadavg(), "cold": {}, "push_s": {},
              "rss_kib": {}, "sizes": {}, "agreement": {}, "wasm_bytes": {},
              "errors": []}
    procs = []
    tmp = tempfile.mkdtemp(prefix="conduit-pyguest.")
    client = None
    try:
        urls, key, metrics_url = {}, None, None
        if conduit_targets:
            dev = Proc("conduit", [args.conduit, "dev", "--data-dir", os.path.join(tmp, "data"),
                                   "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
                       os.path.join(args.out, "conduit.log"), env=conduit_env())
            procs.append(dev)
            t0 = time.monotonic()
            dev.start()
            grpc = dev.wait_for(lambda l: "inference (KServe v2 gRPC):" in l, args.startup_timeout)
            registry = dev.wait_for(lambda l: "registry (gRPC):" in l, args.startup_timeout)
            metrics = dev.wait_for(lambda l: l.strip().startswith("metrics: http"), args.startup_timeout)
            metrics_url = metrics.split(": ", 1)[1].strip()
            key = dev.wait_for(lambda l: l.strip().startswith("export CONDUIT_API_KEY="), args.startup_timeout)
            key = key.strip().split("=", 1)[1]
            grpc_addr = grpc.split("):", 1)[1].strip()
            registry = registry.split("):", 1)[1].strip()
            print(f"conduit dev ready after {time.monotonic() - t0:.1f} s at {grpc_addr}", flush=True)
            time.sleep(0.5)
            result["rss_kib"]["conduit_idle"] = rss_kib([dev.proc.pid])
            for t in conduit_targets:
                urls[t] = grpc_addr
                result["wasm_bytes"][t] = os.path.getsize(wasm[t])
                result["push_s"][t] = push(args.conduit, registry, key, wasm[t], MODELS[t],
                                           os.path.join(args.out, "push.log"), args.push_timeout)
                print(f"pushed {MODELS[t]} ({result['wasm_bytes'][t] / 2**20:.1f} MiB) in "
                      f"{result['push_s'][t]:.2f} s", flush=True)
                time.sleep(0.5)
                result["rss_kib"][f"conduit_after_push_{t}"] = rss_kib([dev.proc.pid])
        loaded = {}
        if conduit_targets:
            with dev.cond:
                for line in dev.lines:
                    if "component loaded" in line and "elapsed_ms=" in line:
                        loaded[line.split("component=", 1)[1].split()[0]] = int(line.split("elapsed_ms=")[1].split()[0])
        result["compile_ms_by_digest"] = loaded
        if "pytriton" in targets:
            grpc_port, http_port = free_port(), free_port()
            pt = Proc("pytriton", [sys.executable, os.path.abspath(__file__), "--serve-pytriton",
                                   "--grpc-port", str(grpc_port), "--http-port", str(http_port),
                                   "--pooling", args.pooling],
                      os.path.join(args.out, "pytriton.log"))
            procs.append(pt)
            t0 = time.monotonic()
            pt.start()
            pt.wait_for(lambda l: "PYTRITON READY" in l, args.startup_timeout)
            print(f"PyTriton ready after {time.monotonic() - t0:.1f} s at 127.0.0.1:{grpc_port}", flush=True)
            urls["pytriton"] = urls["pytriton-noop"] = f"127.0.0.1:{grpc_port}"

        client = Client(urls, key)
        for t in targets:
            if not client.live(t):
                raise RuntimeError(f"{t}: server not live")
        data = {name: make_inputs(b, s, lens, SEED + i) for i, (name, b, s, lens) in enumerate(SIZES)}
        reqs = {name: client.inputs(*data[name]) for name in data}

        # Cold: each component's first call after its push (the connection is already up).
        first = SIZES[0][0]
        side = ServerSide(client, metrics_url, key)
        for t in targets:
            inst0 = conduit_metrics(metrics_url, key) if t in conduit_targets else {}
            t0 = time.perf_counter()
            client.call(t, reqs[first])
            cold = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            client.call(t, reqs[first])
            second = (time.perf_counter() - t0) * 1e3
            result["cold"][t] = {"first_ms": cold, "second_ms": second}
            if t in conduit_targets:
                inst1 = conduit_metrics(metrics_url, key)
                result["cold"][t]["instantiations"] = sum(
                    v - inst0.get(k, 0.0) for k, v in inst1.items() if k[0] == "conduit_component_instantiations_total")
            print(f"{LABELS[t]}: first call {cold:.2f} ms, second {second:.2f} ms", flush=True)
        if conduit_targets:
            result["rss_kib"]["conduit_after_first_calls"] = rss_kib([dev.proc.pid])
        if "pytriton" in targets:
            result["rss_kib"]["pytriton_session"] = rss_kib(pt.pids())

        # Agreement, every size, before any timing.
        failures = []
        for name, (hidden, mask) in data.items():
            answers = {t: client.call(t, reqs[name]) for t in targets}
            answers["native"] = numpy_step(pooling, hidden, mask)
            agree = {}
            for a, b in (("python", "rust"), ("pytriton", "python"), ("native", "pytriton"), ("native", "rust")):
                if a in answers and b in answers:
                    d = max_diff(answers[a], answers[b])
                    agree[f"{a}_vs_{b}"] = d
                    if d > args.tolerance:
                        failures.append(f"{name}: {LABELS[a]} vs {LABELS[b]}: max |diff| {d:.3g} > {args.tolerance}")
            result["agreement"][name] = agree
            print(f"{name}: agreement " + ", ".join(f"{k} {v:.2g}" for k, v in agree.items()), flush=True)
        if failures:
            result["failures"] = failures
            raise RuntimeError("answers disagree: " + "; ".join(failures))

        # Timing: warm-up, then rounds that visit each target in turn.
        window = args.duration_s / args.rounds
        for name, (hidden, mask) in data.items():
            fns = {t: (lambda t=t: client.call(t, reqs[name])) for t in targets}
            if "pytriton" in targets:
                fns["pytriton-noop"] = lambda: client.call("pytriton-noop", reqs[name])
            fns["native"] = lambda: numpy_step(pooling, hidden, mask)
            samples = {t: [] for t in fns}
            for t, fn in fns.items():
                timed_loop(fn, args.warmup_s, result["errors"], t)
            load0 = os.getloadavg()[0]
            snap0 = side.snapshot()
            for _ in range(args.rounds):
                for t, fn in fns.items():
                    samples[t] += timed_loop(fn, window, result["errors"], t)
            server = side.per_request(snap0, side.snapshot())
            rows = {t: {"n": len(s), "p50_ms": statistics.median(s), "p99_ms": pct(s, 0.99),
                        "mean_ms": statistics.fmean(s), "max_ms": max(s), **({"server_side": server[t]} if t in server else {})}
                    for t, s in samples.items()}
            result["sizes"][name] = {"rows": rows, "load1_before": load0, "load1_after": os.getloadavg()[0]}
            print(f"{name}: " + ", ".join(f"{t} p50 {r['p50_ms']:.3f} ms" for t, r in rows.items()), flush=True)
        if conduit_targets:
            result["rss_kib"]["conduit_end"] = rss_kib([dev.proc.pid])
            with open(f"/proc/{dev.proc.pid}/status") as f:
                hwm = [l for l in f if l.startswith("VmHWM:")]
            result["rss_kib"]["conduit_peak"] = int(hwm[0].split()[1]) if hwm else None
        if "pytriton" in targets:
            result["rss_kib"]["pytriton_session_end"] = rss_kib(pt.pids())
    finally:
        if client is not None:
            client.close()
        left = {}
        for p in reversed(procs):
            left[p.name] = p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        result["left_behind"] = left
        result["loadavg_after"] = os.getloadavg()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    return result


def report(result):
    targets = result["targets"]
    sizes = result["sizes"]
    names = list(sizes)
    shown = [t for t in (*TARGETS, "pytriton-noop", "native") if any(t in sizes[n]["rows"] for n in names)]
    out = ["| per request, 1 client, closed loop | " + " | ".join(f"`{n}` p50 / p99 (ms)" for n in names) + " |",
           "|---|" + "---:|" * len(names)]
    for t in shown:
        cells = [f"{sizes[n]['rows'][t]['p50_ms']:.3f} / {sizes[n]['rows'][t]['p99_ms']:.3f}"
                 if t in sizes[n]["rows"] else "—" for n in names]
        out.append(f"| {LABELS[t]} | " + " | ".join(cells) + " |")

    if result.get("errors"):
        by = {}
        for e in result["errors"]:
            by.setdefault(e["target"], []).append(e)
        out += ["", "Failed requests (left out of the latencies; the run exits 1): " + "; ".join(
            f"{LABELS[t]} {len(es)} (first: {es[0]['error'][:120]}, after {es[0]['after_ms']:.0f} ms)"
            for t, es in by.items()) + "."]
    side = [t for t in shown if any("server_side" in sizes[n]["rows"].get(t, {}) for n in names)]
    if side:
        out += ["", "| in the server, mean per request: compute / whole request (ms) | "
                + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---:|" * len(names)]
        for t in side:
            cells = []
            for n in names:
                ss = sizes[n]["rows"].get(t, {}).get("server_side")
                cells.append(f"{ss['compute_ms']:.3f} / {ss['server_ms']:.3f}" if ss else "—")
            out.append(f"| {LABELS[t]} | " + " | ".join(cells) + " |")

    def ratio(n, a, b, q="p50_ms"):
        rows = sizes[n]["rows"]
        return f"{rows[a][q] / rows[b][q]:.2f}×" if a in rows and b in rows else "—"

    out += ["", "| ratio | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---:|" * len(names)]
    for a, b in (("pytriton", "python"), ("python", "rust")):
        for q in ("p50_ms", "p99_ms"):
            out.append(f"| {LABELS[a]} / {LABELS[b]}, {q[:3]} | " + " | ".join(
                f"**{ratio(n, a, b, q)}**" if q == "p50_ms" else ratio(n, a, b, q) for n in names) + " |")
    out += ["", "| | " + " | ".join(LABELS[t] for t in targets) + " |", "|---|" + "---:|" * len(targets)]
    out.append("| first call after push, `b2-s16` (ms) | " + " | ".join(
        f"{result['cold'][t]['first_ms']:.2f}" for t in targets) + " |")
    out.append("| fresh instances made by that call | " + " | ".join(
        f"{result['cold'][t]['instantiations']:.0f}" if "instantiations" in result["cold"][t] else "—"
        for t in targets) + " |")
    out.append("| second call (ms) | " + " | ".join(f"{result['cold'][t]['second_ms']:.2f}" for t in targets) + " |")
    if names:
        out.append("| warm p50, `b2-s16` (ms) | " + " | ".join(
            f"{sizes[names[0]]['rows'][t]['p50_ms']:.3f}" for t in targets) + " |")
    out.append("| push (s) | " + " | ".join(
        f"{result['push_s'][t]:.2f}" if t in result["push_s"] else "—" for t in targets) + " |")
    compile = list(result.get("compile_ms_by_digest", {}).values())
    if len(compile) == len([t for t in targets if t in result["push_s"]]):
        out.append("| compile, from the server's log (s) | " + " | ".join(
            f"{compile[i] / 1e3:.2f}" for i, t in enumerate(t for t in targets if t in result["push_s"]))
            + (" | —" if "pytriton" in targets else "") + " |")
    out.append("| .wasm (MiB) | " + " | ".join(
        f"{result['wasm_bytes'][t] / 2**20:.1f}" if t in result["wasm_bytes"] else "—" for t in targets) + " |")
    rss = result["rss_kib"]
    mib = lambda k: f"{rss[k] / 1024:.0f} MiB" if rss.get(k) else "—"  # noqa: E731
    out.append("")
    out.append(f"RSS: `conduit dev` {mib('conduit_idle')} idle, {mib('conduit_after_push_rust')} after pushing "
               f"the Rust component, {mib('conduit_after_push_python')} after pushing the Python one, "
               f"{mib('conduit_after_first_calls')} after the components' first calls, {mib('conduit_end')} at the end (peak {mib('conduit_peak')}); "
               f"PyTriton's session (Python, tritonserver, stub) {mib('pytriton_session')} → "
               f"{mib('pytriton_session_end')}. Load average {result['loadavg_before'][0]:.2f} before, "
               f"{result['loadavg_after'][0]:.2f} after.")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conduit", help="the conduit binary")
    ap.add_argument("--wasm-dir", help="directory with embedding_post.wasm and embedding_post_py.wasm")
    ap.add_argument("--pooling", default=POOLING, help="the pure-Python module PyTriton runs (default: %(default)s)")
    ap.add_argument("--targets", default=",".join(TARGETS), help="subset of %(default)s")
    ap.add_argument("--quick", action="store_true", help="a smoke run: a few seconds of timing")
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--duration-s", type=float, default=10.0, help="per target and input size")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tolerance", type=float, default=1e-6)
    ap.add_argument("--startup-timeout", type=float, default=120)
    ap.add_argument("--push-timeout", type=float, default=600, help="a push compiles the component")
    ap.add_argument("--out", default=os.path.join(HERE, "peers/.logs/python-guest"), help="server logs")
    ap.add_argument("--json", help="write every setting and number here")
    # internal: the PyTriton server
    ap.add_argument("--serve-pytriton", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--grpc-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--http-port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_pytriton:
        return serve_pytriton(args)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if bad := set(args.targets) - set(TARGETS):
        ap.error(f"unknown targets {sorted(bad)}")
    if args.quick:
        args.warmup_s, args.duration_s, args.rounds = 0.3, 1.0, 2
    if any(t != "pytriton" for t in args.targets) and not (args.conduit and args.wasm_dir):
        ap.error("--conduit and --wasm-dir are needed for the component targets")
    try:
        result = run(args)
    except Exception as e:  # noqa: BLE001 - reported, exit status 1
        print(f"python_guest: {e}", file=sys.stderr)
        return 1
    print()
    print(report(result))
    if result["errors"]:
        print(f"\npython_guest: {len(result['errors'])} failed request(s), left out of the latencies:",
              file=sys.stderr)
        for e in result["errors"]:
            print(f"  {e['at']} {e['target']}: after {e['after_ms']:.0f} ms: {e['error'][:200]}", file=sys.stderr)
    left = {k: v for k, v in result["left_behind"].items() if v}
    if left:
        print(f"python_guest: processes left behind: {left}", file=sys.stderr)
        return 1
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
