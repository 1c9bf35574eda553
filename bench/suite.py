#!/usr/bin/env python3
"""The benchmark suite: Conduit against its peers and the in-process limits, one run, one report.

    make bench-suite                      # sets up everything below, then runs the suite and plots
    make bench-suite SUITE_ARGS=--quick   # the short version (about 3 minutes)

or by hand, once `bash bench/peers/setup.sh`, `make components onnx-model minilm-reference` and
`cargo build --release -p conduit -p conduit-bench` are done:

    bench/peers/.venv/bin/python bench/suite.py [--quick] [--scenarios p1,p2,p3,p4,p5]
        [--servers conduit,pytriton,ray] [--rounds 3] [--concurrency 1,4,16]
        [--warmup-s 2] [--duration-s 10] [--out DIR]
    bench/peers/.venv/bin/python bench/plot.py [--out DIR]

The scenarios (goals from the benchmark issue; every ratio is taken within this one run):

- **P3, steps** (no server): one paraphrase request's tokenizer and post-processing, as WASM
  components called the way the pipeline calls them vs the same Rust natively
  (`conduit-bench baseline --what steps`) vs the peers' Python (`bench/peers/inprocess.py`).
  Goal: WASM ≤ 1.25× native.
- **P1, overhead** and **P2, pipeline**, in rounds: each round starts each server in turn
  (never two at once; Conduit: `conduit dev` on a fresh data directory with the tokenizer,
  MiniLM, embedding-post and the `paraphrase` pipeline pushed, as scripts/demo.sh does;
  PyTriton and Ray Serve: bench/peers/). For Conduit the round first measures P1: MiniLM
  through ONNX Runtime in process (`conduit-bench baseline --what model --batch 8`, the
  executor's batch size) and the bare `minilm` model through Conduit's gRPC at saturation
  (closed loop, 16 clients, 2 rows each), alternating in 4 s windows, 3 times each; the
  Python onnxruntime loop once beside them. Before the rounds, `conduit-bench
  --overhead-json` measures the data plane's own cost per request on a tiny model. Then P2:
  `paraphrase` closed loop at each concurrency, every answer checked by the load generator
  (`conduit-bench load`), once with the tokenizer padding to 128 tokens (`max_length`, the
  example pipeline: the model is ~90 % of a request) and once padding to the longer
  sentence (`longest`: ~16 tokens, the model is cheap and the platform shows). Medians over
  the rounds go in the tables. Goals: P1 ≥ 0.97× in-process rows/s and ≤ 30 µs data-plane
  overhead; P2 ≥ 1.5× PyTriton and Ray Serve at an equal or lower p99.
- **P4, registration under load**: Conduit serves `paraphrase` at half its measured
  saturation throughput (open loop, Poisson); mid-run a new version of embedding-post (new
  bytes: a custom section with a nonce, so it compiles afresh) and a pipeline version using it
  are pushed with the CLI and called. Goal: push → first response ≤ 1 s; the report also
  gives the other traffic's latency during the push against before it.
- **P5, sharing**: 10 tenants, each with its own paraphrase pipeline. "shared": all push the
  same MiniLM bytes (one digest, one loaded copy, one batch queue); "copies": each pushes the
  model with a different ONNX `doc_string` (10 digests, 10 loaded copies). Each arm on a fresh
  `conduit dev`: resident memory after every tenant's first answer, then throughput with
  one closed-loop client per tenant, all at once.

DIR (default bench/peers/.logs/suite, gitignored) gets suite.json (every setting and number,
the generator's full JSON per run), results.md (the tables) and the server logs. The load
generator's CPU time is recorded per run (it shares the 2 cores with the server). Exits
non-zero when a server fails to start, a run has errors, or a process is left behind —
not when a goal is missed: goals are reported.
"""
import argparse
import glob
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers")
sys.path.insert(0, PEERS)
import smoke  # noqa: E402  (bench/peers/smoke.py: Server, PORTS, leftover checks)

SERVERS = ("conduit", "pytriton", "ray")
SCENARIOS = ("p1", "p2", "p3", "p4", "p5")
CONDUIT_PORTS = {"grpc": 8401, "http": 8400}  # outside Ray's worker range 10002-19999
PAIR = ["The company Conduit is based in the Bay Area",
        "Conduit's headquarters are situated in Mountain View"]
TENANTS = 10


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def port_in_use(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def leb128(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def wasm_variant(src, dst, nonce):
    """src plus a custom section (`conduit-bench-nonce`): a new digest, the same behaviour."""
    name = b"conduit-bench-nonce"
    body = leb128(len(name)) + name + nonce.encode()
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read() + b"\x00" + leb128(len(body)) + body)


def onnx_variant(src, dst, nonce):
    """src with another ModelProto.doc_string (field 6; the last occurrence wins): a new digest."""
    text = nonce.encode()
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read() + b"\x32" + leb128(len(text)) + text)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


class Conduit:
    """`conduit dev` on a temporary data directory, driven with the `conduit` CLI."""

    kind = "conduit"

    def __init__(self, args, tag="conduit", max_batch=None, padding="max_length"):
        self.binary, self.wasm_dir, self.model = args.conduit, args.wasm_dir, args.model
        self.max_batch = max_batch
        self.padding = padding
        self.log_path = os.path.join(args.out, f"{tag}.log")
        self.proc = None
        self.tmp = None
        self.key = None
        self.grpc = f"127.0.0.1:{CONDUIT_PORTS['grpc']}"
        self.env = self._env()

    @staticmethod
    def _env():
        env = dict(os.environ)
        if not env.get("ORT_DYLIB_PATH"):
            found = sorted(glob.glob(os.path.join(
                ROOT, ".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*")))
            if not found:
                raise RuntimeError("ORT_DYLIB_PATH is unset and .venv has no onnxruntime (make venv)")
            env["ORT_DYLIB_PATH"] = found[0]
        return env

    def start(self, timeout):
        """Starts `conduit dev` and pushes the paraphrase pipeline; returns the seconds taken."""
        t0 = time.monotonic()
        self.launch(timeout)
        self.push_paraphrase(timeout=timeout, max_batch=self.max_batch)
        self.infer_paraphrase(timeout=timeout)
        return time.monotonic() - t0

    def launch(self, timeout):
        for port in CONDUIT_PORTS.values():
            if port_in_use(port):
                raise RuntimeError(f"port {port} is already in use")
        t0 = time.monotonic()
        self.tmp = tempfile.mkdtemp(prefix="conduit-suite.")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.binary, "dev", "--data-dir", os.path.join(self.tmp, "data"),
             "--listen", self.grpc, "--http-listen", f"127.0.0.1:{CONDUIT_PORTS['http']}"],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=self.env, cwd=ROOT,
            start_new_session=True)
        got_key = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.log.write(line)
                self.log.flush()
                s = line.strip()
                if s.startswith("export CONDUIT_API_KEY="):
                    self.key = s.split("=", 1)[1]
                    got_key.set()

        threading.Thread(target=pump, daemon=True).start()
        while not got_key.wait(0.1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"conduit exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"conduit printed no API key after {timeout} s; see {self.log_path}")

    def cli(self, args, key=None, timeout=120):
        """Runs `conduit ARGS` against this server; returns its stdout (raises on failure)."""
        env = dict(self.env, CONDUIT_REGISTRY=f"http://{self.grpc}", CONDUIT_API_KEY=key or self.key)
        r = subprocess.run([self.binary, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=timeout)
        self.log.write(f"$ conduit {' '.join(args)}\n{r.stdout}{r.stderr}")
        self.log.flush()
        if r.returncode:
            raise RuntimeError(f"`conduit {' '.join(args[:2])}` failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        return r.stdout

    def pipeline_text(self):
        """The example pipeline as the suite runs it: the peers truncate at 128 tokens, so
        the suite sets the same on the example (which truncates at 256, as
        sentence-transformers does) and this server's padding."""
        path = os.path.join(ROOT, "examples/pipelines/paraphrase.toml")
        with open(path) as f:
            text = f.read()
        want = 'params = { max_length = 256, padding = "longest" }'
        if want not in text:
            raise RuntimeError(f"{path} no longer has `{want}`")
        return text.replace(want, f'params = {{ max_length = 128, padding = "{self.padding}" }}')

    def push_paraphrase(self, key=None, model=None, max_batch=None, timeout=120):
        pipeline = os.path.join(self.tmp, f"paraphrase-{self.padding}.toml")
        with open(pipeline, "w") as f:
            f.write(self.pipeline_text())
        for args in (
            ["component", os.path.join(self.wasm_dir, "bert_tokenizer.wasm"), "--name", "tokenizer"],
            ["model", model or self.model, "--name", "minilm",
             *(["--max-batch", str(max_batch)] if max_batch else [])],
            ["component", os.path.join(self.wasm_dir, "embedding_post.wasm"), "--name", "embedding-post"],
            ["pipeline", pipeline, "--name", "paraphrase"],
        ):
            self.cli(["push", *args, "--version", "1.0.0"], key=key, timeout=timeout)

    def infer_paraphrase(self, key=None, version=None, timeout=120):
        text = json.dumps([[PAIR[0]], [PAIR[1]]])
        out = self.cli(["infer", "paraphrase", *(["--model-version", version] if version else []),
                        "--output", "similarity", "--json", "--input", f"text={text}"],
                       key=key, timeout=timeout)
        return out

    def create_tenant(self, name):
        out = self.cli(["tenant", "create", name])
        return [line for line in out.splitlines() if line.strip()][-1].strip()

    def memory_kib(self):
        """VmRSS and VmHWM (peak) of the server, in KiB."""
        got = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    got[k] = int(v.split()[0])
        return got

    def stop(self, timeout=60):
        if self.proc is None:
            return 0.0, {}
        took = smoke.terminate(self.proc, "conduit", timeout)
        left = smoke.pids_with_marks([self.tmp]) if self.tmp else {}
        self.log.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return took, left


def child_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_cmd(args, url, key, model, workload, out, concurrency=None, rate=None,
             warmup=None, duration=None, timeline=False, threads=None):
    cmd = [args.bench, "load", "--url", url, "--protocol", "grpc", "--model", model,
           "--workload", workload, "--warmup-s", str(args.warmup_s if warmup is None else warmup),
           "--duration-s", str(args.duration_s if duration is None else duration), "--json", out]
    cmd += ["--concurrency", str(concurrency)] if concurrency else ["--rate", f"{rate:.3f}"]
    if timeline:
        cmd.append("--timeline")
    if threads:
        cmd += ["--threads", str(threads)]
    if key:
        cmd += ["--key", key]
    return cmd


def shown(cmd, key):
    return " ".join("$KEY" if c == key else c for c in cmd)


def read_json(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def run_load(args, label, url, key, model="paraphrase", workload="paraphrase", **kw):
    """One `conduit-bench load` run, waited for; returns its record (the generator's JSON in `load`)."""
    out = os.path.join(args.out, f"load-{label}.json")
    if os.path.exists(out):
        os.remove(out)
    cmd = load_cmd(args, url, key, model, workload, out, **kw)
    before, cpu0 = loadavg(), child_cpu_s()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       timeout=(kw.get("warmup") or args.warmup_s) + (kw.get("duration") or args.duration_s) + 120)
    doc = read_json(out)
    return {"label": label, "command": shown(cmd, key), "rc": r.returncode,
            "summary": r.stdout.strip(), "stderr": r.stderr.strip()[-2000:],
            "generator_cpu_s": child_cpu_s() - cpu0,
            "load1_before": before[0], "load1_after": loadavg()[0], "load": doc}


def check_run(run, failures, what):
    if run["rc"] or run["load"] is None:
        last = run["stderr"].splitlines()[-1] if run["stderr"] else ""
        failures.append(f"{what}: conduit-bench load exited {run['rc']}: {last}")
    elif run["load"]["errors_total"]:
        failures.append(f"{what}: {run['load']['errors_total']} errors: {run['load']['errors']}")


def stop_checked(server, failures, what):
    """Stops `server`; a process it left behind is a failure."""
    _, left = server.stop()
    for pid, cmd in left.items():
        failures.append(f"{what}: left process {pid} ({cmd[:80]})")


def run_tool(cmd, out, timeout=600):
    """Runs a baseline tool that writes JSON to `out`; returns (record, parsed JSON)."""
    if os.path.exists(out):
        os.remove(out)
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env=Conduit._env())
    rec = {"command": " ".join(cmd), "rc": r.returncode, "stdout": r.stdout.strip(),
           "stderr": r.stderr.strip()[-2000:], "seconds": time.monotonic() - t0}
    if r.returncode:
        raise RuntimeError(f"`{' '.join(cmd[:3])}` failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return rec, read_json(out)


# ---------------------------------------------------------------- P3


def scenario_p3(args, failures):
    print("p3: tokenizer and post-processing steps, WASM vs native vs Python")
    secs = "0.5" if args.quick else "2"
    rust_out = os.path.join(args.out, "p3-rust.json")
    py_out = os.path.join(args.out, "p3-python.json")
    try:
        rec_r, rust = run_tool([args.bench, "baseline", "--what", "steps", "--steps-s", secs,
                                "--components", args.wasm_dir, "--model", args.model, "--json", rust_out], rust_out)
        rec_p, py = run_tool([args.python, os.path.join(PEERS, "inprocess.py"), "--what", "steps",
                              "--steps-s", secs, "--json", py_out], py_out)
    except Exception as e:  # noqa: BLE001 - reported
        failures.append(f"p3: {e}")
        return None
    for line in rec_r["stdout"].splitlines() + rec_p["stdout"].splitlines():
        print(f"  {line}")
    rows = []
    for step, py_key in (("tokenize", "pre"), ("post", "post")):
        s = rust["steps"][step]
        wasm, native, compute = s["wasm"]["p50_us"], s["native"]["p50_us"], s["native_compute"]["p50_us"]
        python = py["steps"][py_key]["p50_us"]
        rows.append({"step": step, "wasm_us": wasm, "native_us": native, "native_compute_us": compute,
                     "python_us": python, "wasm_over_native": wasm / native,
                     "python_over_wasm": python / wasm})
    return {"rust": rust, "python": py, "commands": [rec_r["command"], rec_p["command"]], "rows": rows}


# ---------------------------------------------------------------- P1 + P2


def scenario_p1_overhead(args, failures):
    """The data plane's own cost per request on a tiny model (in-process server, gRPC loopback)."""
    print("p1: server-side overhead per request on a tiny model (add.onnx)")
    out = os.path.join(args.out, "p1-overhead.json")
    try:
        rec, doc = run_tool([args.bench, "--components", args.wasm_dir, "--model", args.model,
                             *(["--quick"] if args.quick else []), "--overhead-json", out], out)
    except Exception as e:  # noqa: BLE001 - reported
        failures.append(f"p1 overhead: {e}")
        return None
    print(f"  data plane (Serving::infer − executor) p50 {doc['data_plane_us']:.1f} µs; "
          f"gRPC ModelInfer − ServerLive {doc['beyond_transport_floor_us']:.1f} µs; "
          f"ServerLive round trip {doc['server_live_us']:.1f} µs")
    doc["command"] = rec["command"]
    doc["table"] = rec["stdout"]
    return doc


def scenario_p1_p2(args, servers, levels, failures):
    rounds = []
    for rnd in range(args.rounds):
        print(f"round {rnd + 1}/{args.rounds}")
        entry = {"round": rnd + 1, "servers": {}, "p2": [], "p1": None}
        for padding in args.padding:
            for kind in servers:
                if "p2" not in args.scenarios and (kind != "conduit" or padding != "max_length"):
                    continue
                if kind == "conduit":
                    server = Conduit(args, tag=f"conduit-{padding}", max_batch=args.conduit_max_batch,
                                     padding=padding)
                else:
                    server = smoke.Server(kind, args.out, ["--padding", padding])
                what = f"{kind} ({padding})"
                info = entry["servers"].setdefault(f"{kind}-{padding}", {"log": server.log_path})
                print(f"  {what}: starting")
                try:
                    info["ready_s"] = server.start(args.startup_timeout)
                    print(f"  {what}: ready after {info['ready_s']:.1f} s")
                    if kind == "conduit":
                        url, key = server.grpc, server.key
                    else:
                        url, key = f"127.0.0.1:{smoke.PORTS[kind]['grpc']}", None
                    if kind == "conduit" and padding == "max_length" and "p1" in args.scenarios:
                        entry["p1"] = p1_round(args, server, rnd, failures)
                    if "p2" in args.scenarios:
                        for c in levels:
                            label = f"p2-{kind}-{padding}-c{c}-r{rnd + 1}"
                            run = run_load(args, label, url, key, concurrency=c)
                            run.update(server=kind, padding=padding, concurrency=c, round=rnd + 1)
                            entry["p2"].append(run)
                            print(f"    {run['summary'].splitlines()[0] if run['summary'] else '(no summary)'}")
                            check_run(run, failures, f"p2 {what} c={c} round {rnd + 1}")
                except Exception as e:  # noqa: BLE001 - reported; the server is stopped all the same
                    failures.append(f"{what} round {rnd + 1}: {e}")
                    print(f"  {what}: {e}", file=sys.stderr)
                finally:
                    took, left = server.stop()
                    info["stop_s"] = took
                    info["left_behind"] = {str(p): c[:200] for p, c in left.items()}
                    print(f"  {what}: stopped {took:.1f} s after SIGTERM; "
                          f"{'no process left behind' if not left else f'{len(left)} processes LEFT BEHIND'}")
                    for pid, cmd in left.items():
                        failures.append(f"{what}: left process {pid} ({cmd[:80]})")
        rounds.append(entry)
    return rounds


def p1_round(args, server, rnd, failures):
    """In-process ONNX Runtime (Rust) at batch 8 and the bare minilm through Conduit, alternating
    in short windows (this machine's speed drifts by 10-30 % over tens of seconds), then the
    Python onnxruntime loop once."""
    w, d, turns = (1.0, 3.0, 2) if args.quick else (1.0, 4.0, 3)
    rust_rows, conduit_rows, rust_docs, runs = [], [], [], []
    for turn in range(turns):
        rust_out = os.path.join(args.out, f"p1-rust-r{rnd + 1}-{turn + 1}.json")
        _, rust = run_tool([args.bench, "baseline", "--what", "model", "--batch", "8", "--warmup-s", str(w),
                            "--duration-s", str(d), "--model", args.model, "--json", rust_out], rust_out)
        rust_docs.append(rust)
        rust_rows.append(rust["model"][0]["rows_per_s"])
        run = run_load(args, f"p1-conduit-minilm-c16-r{rnd + 1}-{turn + 1}", server.grpc, server.key,
                       model="minilm", workload="minilm", concurrency=16, warmup=w, duration=d)
        check_run(run, failures, f"p1 round {rnd + 1}")
        runs.append(run)
        conduit_rows.append(2 * run["load"]["throughput_rps"] if run["load"] else None)
    py_out = os.path.join(args.out, f"p1-python-r{rnd + 1}.json")
    _, py = run_tool([args.python, os.path.join(PEERS, "inprocess.py"), "--what", "model", "--batch", "8",
                      "--warmup-s", str(w), "--duration-s", str(d), "--json", py_out], py_out)
    py_rows = py["model"][0]["rows_per_s"]
    rust_mean = sum(rust_rows) / len(rust_rows)
    conduit_mean = sum(conduit_rows) / len(conduit_rows) if None not in conduit_rows else None
    ratio = conduit_mean / rust_mean if conduit_mean else None
    print(f"    p1: in-process ort (Rust) {' '.join(f'{x:.1f}' for x in rust_rows)} rows/s, "
          f"Conduit gRPC minilm c=16 {' '.join(fmt(x) for x in conduit_rows)} rows/s (alternating) "
          f"→ {fmt(ratio, 3)}×; Python in process {py_rows:.1f} rows/s")
    return {"rust": rust_docs, "python": py, "conduit": runs, "rust_rows_per_s": rust_mean,
            "rust_rows_each": rust_rows, "conduit_rows_each": conduit_rows,
            "python_rows_per_s": py_rows, "conduit_rows_per_s": conduit_mean, "ratio": ratio,
            "commands": [rust_docs and f"{args.bench} baseline --what model --batch 8 --warmup-s {w} --duration-s {d}",
                         runs[0]["command"] if runs else None]}


def p2_summary(rounds, servers, levels, paddings):
    """Median throughput/p50/p99 per (padding, server, concurrency) over the rounds, and the run nearest it."""
    out = []
    for padding in paddings:
        for s in servers:
            for c in levels:
                runs = [r for e in rounds for r in e["p2"] if r["server"] == s and r["concurrency"] == c
                        and r["padding"] == padding and r["load"]]
                if not runs:
                    out.append({"server": s, "padding": padding, "concurrency": c, "rounds": 0})
                    continue
                rps = [r["load"]["throughput_rps"] for r in runs]
                med = median(rps)
                nearest = min(runs, key=lambda r: abs(r["load"]["throughput_rps"] - med))
                out.append({
                    "server": s, "padding": padding, "concurrency": c, "rounds": len(runs),
                    "throughput_rps": med, "throughput_all": rps,
                    "p50_ms": median([r["load"]["latency_us"]["p50"] / 1e3 for r in runs]),
                    "p99_ms": median([r["load"]["latency_us"]["p99"] / 1e3 for r in runs]),
                    "errors": sum(r["load"]["errors_total"] for r in runs),
                    # The generator's CPU seconds per second of its run (1.0 = one core).
                    "generator_cpu_share": median([r["generator_cpu_s"] / (r["load"]["duration_s"] +
                                                                          r["load"]["warmup_s"]) for r in runs]),
                    "cdf_label": nearest["label"],
                    "cdf": nearest["load"]["cdf"],
                })
    return out


# ---------------------------------------------------------------- P4


def scenario_p4(args, rate, failures):
    print(f"p4: push a new embedding-post version while serving paraphrase at {rate:.1f} req/s (open loop)")
    server = Conduit(args, tag="conduit-p4")
    result = {"rate_rps": rate}
    try:
        server.start(args.startup_timeout)
        pre, during = (1.5, 5.0) if args.quick else (4.0, 12.0)
        out = os.path.join(args.out, "load-p4.json")
        if os.path.exists(out):
            os.remove(out)
        cmd = load_cmd(args, server.grpc, server.key, "paraphrase", "paraphrase", out, rate=rate,
                       warmup=1.0, duration=pre + during, timeline=True)
        gen = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        variant = os.path.join(server.tmp, "embedding_post.v2.wasm")
        wasm_variant(os.path.join(args.wasm_dir, "embedding_post.wasm"), variant, f"p4-{time.time()}")
        toml = os.path.join(server.tmp, "paraphrase.v2.toml")
        text = server.pipeline_text()
        with open(toml, "w") as f:
            f.write(text.replace('uses = "embedding-post@1.0.0"', 'uses = "embedding-post@1.1.0"'))
        time.sleep(1.0 + pre)  # the warm-up, then `pre` seconds of undisturbed traffic
        t0 = time.time()
        server.cli(["push", "component", variant, "--name", "embedding-post", "--version", "1.1.0"])
        t1 = time.time()
        server.cli(["push", "pipeline", toml, "--name", "paraphrase", "--version", "1.1.0"])
        t2 = time.time()
        answer = server.infer_paraphrase(version="1.1.0")
        t3 = time.time()
        stdout, stderr = gen.communicate(timeout=pre + during + 120)
        doc = read_json(out)
        run = {"label": "p4", "command": shown(cmd, server.key), "rc": gen.returncode, "summary": stdout.strip(),
               "stderr": stderr.strip()[-2000:], "load": doc}
        check_run(run, failures, "p4 traffic")
        result.update(run=run, push_component_s=t1 - t0, push_pipeline_s=t2 - t1, first_infer_s=t3 - t2,
                      push_to_first_response_s=t3 - t0, answer=answer.strip()[-400:])
        if doc and doc.get("timeline"):
            start = doc["window_start_unix_s"]
            push_from, push_to = (t0 - start) * 1e3, (t3 - start) * 1e3
            result.update(push_from_ms=push_from, push_to_ms=push_to)

            def stats(rows):
                lat = sorted(r[1] for r in rows if r[2])
                if not lat:
                    return {"count": 0}
                at = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
                return {"count": len(lat), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": lat[-1]}

            tl = doc["timeline"]
            # "during": requests sent while the push ran or that were still in flight when it began.
            result["before"] = stats([r for r in tl if r[0] + r[1] < push_from])
            result["during"] = stats([r for r in tl if r[0] <= push_to and r[0] + r[1] >= push_from])
            result["after"] = stats([r for r in tl if r[0] > push_to])
        print(f"  push component {result['push_component_s'] * 1e3:.0f} ms + pipeline "
              f"{result['push_pipeline_s'] * 1e3:.0f} ms + first call {result['first_infer_s'] * 1e3:.0f} ms "
              f"= push → first response {result['push_to_first_response_s'] * 1e3:.0f} ms")
        if "before" in result:
            b, d = result["before"], result["during"]
            print(f"  other traffic p99 before {fmt(b.get('p99_ms'))} ms, during {fmt(d.get('p99_ms'))} ms "
                  f"(max {fmt(d.get('max_ms'))} ms, {d['count']} requests)")
    except Exception as e:  # noqa: BLE001 - reported; the server is stopped all the same
        failures.append(f"p4: {e}")
        print(f"  p4: {e}", file=sys.stderr)
    finally:
        stop_checked(server, failures, "p4")
    return result


# ---------------------------------------------------------------- P5


def scenario_p5(args, failures):
    warmup, duration = (1.0, 3.0) if args.quick else (2.0, 10.0)
    arms = {}
    for arm in ("shared", "copies"):
        print(f"p5: {TENANTS} tenants, {arm} model")
        server = Conduit(args, tag=f"conduit-p5-{arm}")
        res = {}
        try:
            server.launch(args.startup_timeout)
            res["idle_kib"] = server.memory_kib()
            keys = []
            t0 = time.monotonic()
            for i in range(TENANTS):
                key = server.create_tenant(f"team-{i}")
                model = args.model
                if arm == "copies":
                    model = os.path.join(server.tmp, f"model-{i}.onnx")
                    onnx_variant(args.model, model, f"copy {i}")
                server.push_paraphrase(key=key, model=model)
                server.infer_paraphrase(key=key)
                if arm == "copies":
                    os.remove(model)
                keys.append(key)
            res["setup_s"] = time.monotonic() - t0
            res["loaded_kib"] = server.memory_kib()
            res["data_dir_bytes"] = sum(os.path.getsize(os.path.join(d, f))
                                        for d, _, fs in os.walk(server.tmp) for f in fs)
            procs, outs = [], []
            cpu0 = child_cpu_s()
            for i, key in enumerate(keys):
                out = os.path.join(args.out, f"load-p5-{arm}-t{i}.json")
                if os.path.exists(out):
                    os.remove(out)
                cmd = load_cmd(args, server.grpc, key, "paraphrase", "paraphrase", out, concurrency=1,
                               warmup=warmup, duration=duration, threads=1)
                procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True))
                outs.append(out)
            runs = []
            for i, (p, out) in enumerate(zip(procs, outs)):
                stdout, stderr = p.communicate(timeout=duration + 180)
                run = {"label": f"p5-{arm}-t{i}", "rc": p.returncode, "summary": stdout.strip(),
                       "stderr": stderr.strip()[-1000:], "load": read_json(out)}
                check_run(run, failures, f"p5 {arm} tenant {i}")
                runs.append(run)
            res["generator_cpu_s"] = child_cpu_s() - cpu0
            res["after_load_kib"] = server.memory_kib()
            ok = [r["load"] for r in runs if r["load"]]
            res["throughput_rps"] = sum(d["throughput_rps"] for d in ok)
            res["per_tenant_rps"] = [d["throughput_rps"] for d in ok]
            res["p50_ms"] = median([d["latency_us"]["p50"] / 1e3 for d in ok])
            res["p99_ms"] = max(d["latency_us"]["p99"] / 1e3 for d in ok) if ok else None
            res["runs"] = runs
            res["list"] = server.cli(["list"], timeout=60)[-2000:]
            rss = res["after_load_kib"]["VmRSS"] / 1024
            print(f"  {arm}: RSS {res['loaded_kib']['VmRSS'] / 1024:.0f} MiB after the first answers, "
                  f"{rss:.0f} MiB after load (peak {res['after_load_kib']['VmHWM'] / 1024:.0f} MiB); "
                  f"{res['throughput_rps']:.1f} req/s over {len(ok)} tenants, worst p99 {fmt(res['p99_ms'])} ms")
        except Exception as e:  # noqa: BLE001 - reported; the server is stopped all the same
            failures.append(f"p5 {arm}: {e}")
            print(f"  p5 {arm}: {e}", file=sys.stderr)
        finally:
            stop_checked(server, failures, f"p5 {arm}")
        arms[arm] = res
    return arms


# ---------------------------------------------------------------- report


def report(doc, servers, levels):
    lines = [f"Suite run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(doc['started_unix']))}, "
             f"{doc['cpus']} CPUs, {doc['rounds']} round(s), {doc['warmup_s']:g} s warm-up + "
             f"{doc['duration_s']:g} s per point, {doc['elapsed_s'] / 60:.1f} min in all.", ""]
    goals = []
    p1 = [e["p1"] for e in doc.get("round_runs", []) if e.get("p1")]
    if p1:
        lines += ["**P1 overhead** — rows/s at batch 8 (the executor's), MiniLM seq 128, each the mean of "
                  "windows alternating between the two:", "",
                  "| round | ORT in process (Rust) | ORT in process (Python) | Conduit gRPC, bare `minilm`, 16 clients "
                  "| Conduit / Rust | load generator's CPU |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for i, p in enumerate(p1):
            runs = [r for r in p["conduit"] if r.get("load")]
            cpu = sum(r["generator_cpu_s"] for r in runs) / max(
                1e-9, sum(r["load"]["duration_s"] + r["load"]["warmup_s"] for r in runs))
            lines.append(f"| {i + 1} | {p['rust_rows_per_s']:.1f} | {p['python_rows_per_s']:.1f} | "
                         f"{fmt(p['conduit_rows_per_s'])} | {fmt(p['ratio'], 3)} | {cpu * 100:.0f} % of a core |")
        r = median([p["ratio"] for p in p1])
        goals.append(("P1 bare MiniLM via gRPC / in-process ORT", f"{fmt(r, 3)}×", "≥ 0.97×",
                      r is not None and r >= 0.97))
        lines.append("")
    ov = doc.get("p1_overhead")
    if ov:
        lines += ["**P1 server-side overhead** — `add.onnx` [1, 4], one row, concurrency 1, p50 µs "
                  "(`conduit-bench --overhead-json`, median of call-by-call differences):", "",
                  "| data plane in process (`Serving::infer` − executor) | gRPC `ModelInfer` − `ServerLive` | "
                  "gRPC round trip − executor | `ServerLive` round trip |", "|---:|---:|---:|---:|",
                  f"| {ov['data_plane_us']:.1f} | {ov['beyond_transport_floor_us']:.1f} | "
                  f"{ov['round_trip_minus_executor_us']:.1f} | {ov['server_live_us']:.1f} |", ""]
        goals.append(("P1 server-side overhead, tiny model (data plane p50)", f"{ov['data_plane_us']:.1f} µs",
                      "≤ 30 µs", ov["data_plane_us"] <= 30.0))
    for padding in doc.get("padding", []):
        p2 = [x for x in doc.get("p2") or [] if x.get("padding") == padding]
        if not p2:
            continue
        by = {(x["server"], x["concurrency"]): x for x in p2}
        how = ("every request padded to 128 tokens: the model is ~90 % of each request"
               if padding == "max_length" else
               "padded to the longer sentence (~16 tokens): the model is cheap, the platform shows")
        lines += [f"**P2 pipeline, padding `{padding}`** — `paraphrase` over KServe v2 gRPC, closed loop, "
                  f"median of the rounds; {how}:", "",
                  "| server | clients | req/s | p50 (ms) | p99 (ms) | errors | generator CPU | Conduit / this |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for s in servers:
            for c in levels:
                x = by.get((s, c), {})
                cr = by.get(("conduit", c), {}).get("throughput_rps")
                ratio = f"{cr / x['throughput_rps']:.2f}×" if cr and x.get("throughput_rps") else "—"
                share = x.get("generator_cpu_share")
                lines.append(f"| {s} | {c} | {fmt(x.get('throughput_rps'))} | {fmt(x.get('p50_ms'))} | "
                             f"{fmt(x.get('p99_ms'))} | {x.get('errors', '—')} | "
                             f"{'—' if share is None else f'{share * 100:.0f} %'} | {ratio} |")
        # The goal takes Conduit over the peer within each round (runs a minute or two apart:
        # this machine's speed drifts by 10-30 % over minutes), then the median of the rounds.
        runs = {(r["round"], r["server"], r["concurrency"]): r["load"]
                for e in doc.get("round_runs", []) for r in e["p2"]
                if r.get("padding") == padding and r.get("load")}
        ratio_lines = []
        for p in [s for s in servers if s != "conduit"]:
            for c in levels:
                cx, px = by.get(("conduit", c), {}), by.get((p, c), {})
                per_round = [runs[(n, "conduit", c)]["throughput_rps"] / runs[(n, p, c)]["throughput_rps"]
                             for n in range(1, doc["rounds"] + 1)
                             if (n, "conduit", c) in runs and (n, p, c) in runs
                             and runs[(n, p, c)]["throughput_rps"]]
                if per_round and cx.get("p99_ms") is not None and px.get("p99_ms") is not None:
                    r = median(per_round)
                    met = r >= 1.5 and cx["p99_ms"] <= px["p99_ms"]
                    goals.append((f"P2 ({padding}) vs {p}, {c} clients",
                                  f"{r:.2f}×, p99 {cx['p99_ms']:.1f} vs {px['p99_ms']:.1f} ms",
                                  "≥ 1.5×, p99 ≤", met))
                    ratio_lines.append(f"| {p} | {c} | {' · '.join(f'{x:.2f}' for x in per_round)} | {r:.2f}× |")
        if ratio_lines:
            lines += ["", "Conduit's throughput over each peer's, round by round (the goal uses their median):", "",
                      "| peer | clients | per round | median |", "|---|---:|---|---:|", *ratio_lines]
        lines.append("")
    p3 = doc.get("p3")
    if p3:
        lines += ["**P3 steps** — one paraphrase request (2 sentences, 128 tokens), p50 µs per call:", "",
                  "| step | WASM in Conduit | same Rust, native step | native compute only | Python (peers) | WASM / native | Python / WASM |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in p3["rows"]:
            lines.append(f"| {r['step']} | {r['wasm_us']:.1f} | {r['native_us']:.1f} | {r['native_compute_us']:.1f} | "
                         f"{r['python_us']:.1f} | {r['wasm_over_native']:.2f} | {r['python_over_wasm']:.1f} |")
            goals.append((f"P3 {r['step']}: WASM / native", f"{r['wasm_over_native']:.2f}×", "≤ 1.25×",
                          r["wasm_over_native"] <= 1.25))
        lines.append("")
    p4 = doc.get("p4")
    if p4 and "push_to_first_response_s" in p4:
        lines += [f"**P4 registration under load** — paraphrase at {p4['rate_rps']:.1f} req/s (half of saturation), "
                  "open loop; a new embedding-post version and a pipeline version using it pushed mid-run:", "",
                  f"- push component {p4['push_component_s'] * 1e3:.0f} ms, push pipeline "
                  f"{p4['push_pipeline_s'] * 1e3:.0f} ms, first call {p4['first_infer_s'] * 1e3:.0f} ms: "
                  f"**push → first response {p4['push_to_first_response_s'] * 1e3:.0f} ms**"]
        if "before" in p4:
            lines += ["", "| other traffic | requests | p50 (ms) | p99 (ms) | max (ms) |", "|---|---:|---:|---:|---:|"]
            for k in ("before", "during", "after"):
                x = p4[k]
                lines.append(f"| {k} the push | {x['count']} | {fmt(x.get('p50_ms'))} | {fmt(x.get('p99_ms'))} | "
                             f"{fmt(x.get('max_ms'))} |")
        goals.append(("P4 push → first response under 50 % load",
                      f"{p4['push_to_first_response_s'] * 1e3:.0f} ms", "≤ 1000 ms",
                      p4["push_to_first_response_s"] <= 1.0))
        lines.append("")
    p5 = doc.get("p5")
    if p5 and all("throughput_rps" in p5.get(a, {}) for a in ("shared", "copies")):
        s, c = p5["shared"], p5["copies"]
        lines += [f"**P5 sharing** — {TENANTS} tenants, each its own paraphrase pipeline, one client each, all at once:", "",
                  "| model | RSS after first answers (MiB) | RSS after load (MiB) | peak (MiB) | stored (MiB) | req/s, all tenants | worst tenant p99 (ms) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, x in (("one shared copy", s), (f"{TENANTS} copies", c)):
            lines.append(f"| {name} | {x['loaded_kib']['VmRSS'] / 1024:.0f} | {x['after_load_kib']['VmRSS'] / 1024:.0f} | "
                         f"{x['after_load_kib']['VmHWM'] / 1024:.0f} | {x['data_dir_bytes'] / 2**20:.0f} | "
                         f"{x['throughput_rps']:.1f} | {fmt(x['p99_ms'])} |")
        mem = c["after_load_kib"]["VmRSS"] / s["after_load_kib"]["VmRSS"]
        tput = s["throughput_rps"] / c["throughput_rps"] if c["throughput_rps"] else None
        lines += ["", f"Sharing uses 1/{mem:.1f} of the memory of {TENANTS} copies and gives {fmt(tput, 2)}× their throughput.", ""]
        goals.append(("P5 memory: 10 copies / shared", f"{mem:.1f}×", "(report)", None))
        goals.append(("P5 throughput: shared / 10 copies", f"{fmt(tput, 2)}×", "(report)", None))
    if goals:
        lines += ["**Goals**", "", "| goal | measured | target | |", "|---|---|---|---|"]
        for g, m, t, ok in goals:
            lines.append(f"| {g} | {m} | {t} | {'met' if ok else ('—' if ok is None else 'NOT met')} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 1 s warm-up + 3 s windows, concurrency 1,4: under 3 minutes")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--servers", default=",".join(SERVERS), help="P2's servers")
    ap.add_argument("--rounds", type=int, help="P1/P2 rounds (default 3, --quick: 1)")
    ap.add_argument("--concurrency", help="P2's levels (default 1,4,16; --quick: 1,4)")
    ap.add_argument("--padding", default="max_length,longest",
                    help="P2's tokenizer padding: to 128 tokens (max_length) and/or to the longer text (longest)")
    ap.add_argument("--warmup-s", type=float, help="default 2 (--quick: 1)")
    ap.add_argument("--duration-s", type=float, help="P2's window, default 8 (--quick: 3)")
    ap.add_argument("--out", default=os.path.join(PEERS, ".logs", "suite"))
    ap.add_argument("--startup-timeout", type=float, default=240.0)
    ap.add_argument("--conduit", default=os.path.join(ROOT, "target/release/conduit"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "target/release/conduit-bench"))
    ap.add_argument("--python", default=sys.executable, help="the peers' interpreter (for inprocess.py)")
    ap.add_argument("--wasm-dir", default=os.path.join(ROOT, "target/wasm32-wasip2/release"))
    ap.add_argument("--model", default=os.path.join(ROOT, "testdata/minilm/model.onnx"))
    ap.add_argument("--report", metavar="SUITE_JSON",
                    help="only print (and write beside it as results.md) the tables of an earlier run")
    ap.add_argument("--conduit-max-batch", type=int, default=None,
                    help="push minilm with --max-batch N (rows; default: the executor's 8)")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            doc = json.load(f)
        text = report(doc, doc["servers_p2"], doc["concurrency"])
        with open(os.path.join(os.path.dirname(os.path.abspath(args.report)), "results.md"), "w") as f:
            f.write(text + "\n")
        print(text)
        return 0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.concurrency is None:
        args.concurrency = "1,4" if args.quick else "1,4,16"
    if args.warmup_s is None:
        args.warmup_s = 1.0 if args.quick else 2.0
    if args.duration_s is None:
        args.duration_s = 3.0 if args.quick else 8.0
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if any(s not in SCENARIOS for s in args.scenarios):
        ap.error(f"--scenarios: known are {', '.join(SCENARIOS)}")
    servers = [s for s in args.servers.split(",") if s]
    if any(s not in SERVERS for s in servers):
        ap.error(f"--servers: known are {', '.join(SERVERS)}")
    if "p1" in args.scenarios and "conduit" not in servers:
        servers.insert(0, "conduit")
    levels = [int(c) for c in args.concurrency.split(",") if c]
    args.padding = [p for p in args.padding.split(",") if p]
    if any(p not in ("max_length", "longest") for p in args.padding):
        ap.error("--padding: max_length and/or longest")
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    for path in (args.bench, args.conduit):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: cargo build --release -p conduit -p conduit-bench")
    for f in ("bert_tokenizer.wasm", "embedding_post.wasm"):
        if not os.path.exists(os.path.join(args.wasm_dir, f)):
            sys.exit(f"{args.wasm_dir}/{f} is missing: make components")

    started = time.time()
    print(f"suite: {', '.join(args.scenarios)}; P2 servers {', '.join(servers)}, c={args.concurrency}, "
          f"{args.rounds} round(s), {args.warmup_s:g} s warm-up + {args.duration_s:g} s; "
          f"{os.cpu_count()} CPUs, load average {' '.join(map(str, loadavg()))}")
    failures = []
    doc = {"tool": "bench/suite.py", "started_unix": started, "quick": args.quick,
           "scenarios": args.scenarios, "servers_p2": servers, "concurrency": levels, "rounds": args.rounds,
           "warmup_s": args.warmup_s, "duration_s": args.duration_s, "cpus": os.cpu_count(),
           "padding": args.padding,
           "uname": " ".join(os.uname()), "failures": failures}
    if "p3" in args.scenarios:
        doc["p3"] = scenario_p3(args, failures)
    if "p1" in args.scenarios:
        doc["p1_overhead"] = scenario_p1_overhead(args, failures)
    if "p1" in args.scenarios or "p2" in args.scenarios:
        doc["round_runs"] = scenario_p1_p2(args, servers, levels, failures)
        if "p2" in args.scenarios:
            doc["p2"] = p2_summary(doc["round_runs"], servers, levels, args.padding)
    if "p4" in args.scenarios:
        saturation = max((s["throughput_rps"] for s in doc.get("p2") or []
                          if s["server"] == "conduit" and s["padding"] == "max_length"
                          and s.get("throughput_rps")), default=None)
        doc["p4"] = scenario_p4(args, 0.5 * (saturation or 30.0), failures)
    if "p5" in args.scenarios:
        doc["p5"] = scenario_p5(args, failures)
    doc["finished_unix"] = time.time()
    doc["elapsed_s"] = doc["finished_unix"] - started
    text = report(doc, servers, levels)
    path = os.path.join(args.out, "suite.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")
    print()
    print(text)
    print()
    print(f"wrote {os.path.relpath(path, ROOT)} and results.md ({doc['elapsed_s']:.0f} s); "
          f"load average {' '.join(map(str, loadavg()))}")
    if failures:
        print("FAILED:")
        for f in failures:
            print(f"  {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
