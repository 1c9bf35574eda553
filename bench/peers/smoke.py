#!/usr/bin/env python3
"""Smoke test and quick closed-loop numbers for the peer servers (PyTriton, Ray Serve).

    bash bench/peers/setup.sh
    bench/peers/.venv/bin/python bench/peers/smoke.py [--duration 10] [--concurrency 1,4]
        [--targets inproc,pytriton-grpc,ray-http,ray-grpc] [--models paraphrase,minilm]
        [--intra-threads N] [--json FILE]

For each server in turn: start it (bench/peers/pytriton_server.py, bench/peers/ray_server.py)
as a subprocess, wait for its READY line, check the answers (the README pair scores
0.6965 ± 1e-3, an unrelated pair < 0.3, shapes, unit-norm embeddings, `minilm` pooled to the
same score), then run N client threads (one connection each) sending requests back to back
for --warmup + --duration seconds and report requests/s and p50/p99 latency of the requests
that finished in the measured window. Then SIGTERM the server, wait for it to exit, and list
any process it left behind (tritonserver, Python-backend stubs, raylet, gcs_server, ray::…).
Exits non-zero if a check fails or a process is left over.

Targets: inproc (no server: the same Python code in this process, threads sharing one ONNX
Runtime session; a reference to read the others against on a noisy machine), pytriton-grpc
(KServe v2 gRPC, tritonclient), ray-http (Ray Serve's HTTP: JSON in, JSON out for paraphrase
and raw FP32 out for minilm), ray-grpc (KServe v2 gRPC through Ray Serve's gRPC proxy).
Ports: PyTriton HTTP 8200, gRPC 8201; Ray Serve HTTP 8300, gRPC 8301.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from paraphrase import HIDDEN, MAX_LENGTH, MiniLM, Tokenizer, embed_and_score  # noqa: E402

PAIR = ("The company Conduit is based in the Bay Area", "Conduit's headquarters are situated in Mountain View")
UNRELATED = ("The company Conduit is based in the Bay Area", "Grandmother's apple pie needs more cinnamon")
EXPECTED = 0.6965
TOLERANCE = 1e-3

PORTS = {"pytriton": {"http": 8200, "grpc": 8201}, "ray": {"http": 8300, "grpc": 8301}}
INTRA_THREADS = 0  # --intra-threads
LEFTOVER_MARKS = ("tritonserver", "triton_python_backend_stub", "raylet", "gcs_server", "ray::",
                  "ray/dashboard", "ray/autoscaler", "ray/_private", "pytriton_server.py", "ray_server.py")


# ---------------------------------------------------------------------------------- clients


class TritonGrpc:
    """KServe v2 gRPC client (tritonclient); works against PyTriton and Ray's gRPC proxy."""

    def __init__(self, url):
        import tritonclient.grpc as grpcclient

        self.g = grpcclient
        self.client = grpcclient.InferenceServerClient(url)

    def paraphrase(self, texts):
        arr = np.array([[t.encode()] for t in texts], dtype=object)
        inp = self.g.InferInput("text", list(arr.shape), "BYTES")
        inp.set_data_from_numpy(arr)
        r = self.client.infer("paraphrase", [inp], client_timeout=60)
        return r.as_numpy("similarity"), r.as_numpy("embeddings")

    def minilm(self, ids, mask, types):
        ins = []
        for name, a in (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types)):
            x = self.g.InferInput(name, list(a.shape), "INT64")
            x.set_data_from_numpy(a)
            ins.append(x)
        return self.client.infer("minilm", ins, client_timeout=60).as_numpy("last_hidden_state")

    def close(self):
        self.client.close()


class RayHttp:
    """Ray Serve's JSON API (see ray_server.py), one keep-alive connection."""

    def __init__(self, host, port):
        self.host, self.port, self.conn = host, port, None

    def _post(self, path, doc):
        body = json.dumps(doc).encode()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.conn.request("POST", path, body, {"content-type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            if resp.status != 200:
                raise RuntimeError(f"POST {path}: HTTP {resp.status}: {data[:300]!r}")
            return resp, data

    def paraphrase(self, texts):
        _, data = self._post("/paraphrase", {"text": list(texts)})
        doc = json.loads(data)
        return np.array(doc["similarity"], dtype=np.float32), np.array(doc["embeddings"], dtype=np.float32)

    def minilm(self, ids, mask, types):
        resp, data = self._post("/minilm", {"input_ids": ids.tolist(), "attention_mask": mask.tolist(),
                                            "token_type_ids": types.tolist()})
        shape = [int(x) for x in resp.getheader("x-shape").split(",")]
        return np.frombuffer(data, dtype="<f4").reshape(shape)

    def close(self):
        if self.conn is not None:
            self.conn.close()


class InProcess:
    """No server: the same Python code called in this process (the floor for the peers)."""

    shared = None

    def __init__(self):
        if InProcess.shared is None:
            InProcess.shared = (Tokenizer(), MiniLM(intra_threads=INTRA_THREADS))
        self.tok, self.model = InProcess.shared

    def paraphrase(self, texts):
        ids, mask, types = self.tok(texts)
        emb, sims = embed_and_score(self.model(ids, mask, types), mask)
        return sims, emb

    def minilm(self, ids, mask, types):
        return self.model(ids, mask, types)

    def close(self):
        pass


TARGETS = {
    "inproc": (None, InProcess),
    "pytriton-grpc": ("pytriton", lambda: TritonGrpc(f"127.0.0.1:{PORTS['pytriton']['grpc']}")),
    "ray-http": ("ray", lambda: RayHttp("127.0.0.1", PORTS["ray"]["http"])),
    "ray-grpc": ("ray", lambda: TritonGrpc(f"127.0.0.1:{PORTS['ray']['grpc']}")),
}


# ---------------------------------------------------------------------------------- servers


def pids_with_marks(marks=LEFTOVER_MARKS):
    """{pid: command line} of every process (but this one) whose command line holds one of `marks`."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if any(m in cmd for m in marks):
            out[int(pid)] = cmd
    return out


def terminate(proc, what, timeout=60):
    """SIGTERM `proc` and wait for it (SIGKILL its process group after `timeout` s); returns the seconds taken."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {what}: no exit {timeout} s after SIGTERM; killing its process group", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return time.monotonic() - t0


class NoServer:
    """Stands in for a server for the in-process target."""

    kind = "inproc"

    def start(self, timeout):
        return 0.0

    def stop(self):
        return 0.0, {}


class Server:
    """One peer server subprocess in its own session (process group)."""

    def __init__(self, kind, log_dir, extra=()):
        self.kind = kind
        ports = PORTS[kind]
        script = "pytriton_server.py" if kind == "pytriton" else "ray_server.py"
        self.cmd = [sys.executable, os.path.join(HERE, script),
                    "--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"]), *extra]
        self.log_path = os.path.join(log_dir, f"{kind}.log")
        self.proc = None
        self.before = {}

    def start(self, timeout):
        for port in PORTS[self.kind].values():
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    raise RuntimeError(f"port {port} is already in use: is another peer server running?")
        self.before = pids_with_marks()
        t0 = time.monotonic()
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     start_new_session=True, cwd=os.path.dirname(os.path.dirname(HERE)))
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.log.write(line)
                self.log.flush()
                if "READY" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        while not ready.wait(0.2):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} before READY; "
                                   f"see {self.log_path}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{self.kind} not READY after {timeout} s; see {self.log_path}")
        return time.monotonic() - t0

    def stop(self, timeout=60):
        """SIGTERM, wait; returns (seconds to exit, leftover processes as {pid: cmdline})."""
        if self.proc is None:
            return 0.0, {}
        took = terminate(self.proc, self.kind, timeout)
        # Children may take a moment to notice their parent left.
        deadline = time.monotonic() + 15
        while True:
            left = {p: c for p, c in pids_with_marks().items() if p not in self.before}
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.log.close()
        return took, left


# ---------------------------------------------------------------------------------- checks and load


def check(target, client, tok):
    failures = []
    sim, emb = client.paraphrase(PAIR)
    s = float(sim[0])
    if abs(s - EXPECTED) > TOLERANCE:
        failures.append(f"README pair scored {s:.4f}, expected {EXPECTED} ± {TOLERANCE}")
    if emb.shape != (2, HIDDEN):
        failures.append(f"embeddings shape {emb.shape}, expected (2, {HIDDEN})")
    elif np.abs(np.linalg.norm(emb, axis=1) - 1).max() > 1e-4:
        failures.append("embeddings are not unit-norm")
    u = float(client.paraphrase(UNRELATED)[0][0])
    if not u < 0.3:
        failures.append(f"unrelated pair scored {u:.4f}, expected < 0.3")
    ids, mask, types = tok(PAIR)
    hidden = client.minilm(ids, mask, types)
    if hidden.shape != (2, MAX_LENGTH, HIDDEN):
        failures.append(f"minilm output shape {hidden.shape}, expected (2, {MAX_LENGTH}, {HIDDEN})")
    else:
        m = float(embed_and_score(hidden, mask)[1][0])
        if abs(m - s) > 1e-5:
            failures.append(f"minilm pooled to {m:.6f}, paraphrase said {s:.6f}")
    print(f"  {target}: README pair {s:.4f}, unrelated pair {u:.4f}, minilm {hidden.shape}"
          f" -> {'ok' if not failures else 'FAILED'}")
    return failures


def closed_loop(make_client, model, clients, warmup, duration, tok):
    ids, mask, types = tok(PAIR)
    start = time.monotonic()
    window = (start + warmup, start + warmup + duration)
    lat, errors, lock = [], [], threading.Lock()

    def worker():
        c = make_client()
        mine = []
        try:
            while True:
                t0 = time.monotonic()
                if t0 >= window[1]:
                    break
                try:
                    if model == "paraphrase":
                        c.paraphrase(PAIR)
                    else:
                        c.minilm(ids, mask, types)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(repr(e)[:200])
                    time.sleep(0.05)
                    continue
                t1 = time.monotonic()
                if window[0] <= t1 <= window[1]:
                    mine.append(t1 - t0)
        finally:
            c.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a = np.array(lat) * 1000
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    return {
        "load1": load,
        "requests_per_s": len(a) / duration,
        "p50_ms": float(np.percentile(a, 50)) if len(a) else float("nan"),
        "p99_ms": float(np.percentile(a, 99)) if len(a) else float("nan"),
        "requests": int(len(a)),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="inproc,pytriton-grpc,ray-http,ray-grpc")
    ap.add_argument("--models", default="paraphrase,minilm")
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--startup-timeout", type=float, default=240.0)
    ap.add_argument("--log-dir", default=os.path.join(HERE, ".logs"))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--intra-threads", type=int, default=0,
                    help="ONNX Runtime intra-op threads, for every target (0: ORT's default, 2 here)")
    args = ap.parse_args()

    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown targets {unknown}; known: {sorted(TARGETS)}")
    models = [m for m in args.models.split(",") if m]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    os.makedirs(args.log_dir, exist_ok=True)
    global INTRA_THREADS
    INTRA_THREADS = args.intra_threads
    extra = ["--intra-threads", str(args.intra_threads)] if args.intra_threads else []
    tok = Tokenizer()

    with open("/proc/loadavg") as f:
        print(f"load average before: {' '.join(f.read().split()[:3])}; {os.cpu_count()} CPUs")
    failures, rows, servers = [], [], []
    for kind in dict.fromkeys(TARGETS[t][0] for t in targets):
        server = Server(kind, args.log_dir, extra) if kind else NoServer()
        kind = server.kind
        servers.append(kind)
        if isinstance(server, Server):
            print(f"{kind}: starting ({' '.join(os.path.relpath(c) if c.endswith('.py') else c for c in server.cmd[1:])})")
        try:
            took = server.start(args.startup_timeout)
            if isinstance(server, Server):
                print(f"  {kind}: READY after {took:.1f} s")
            for target in (t for t in targets if (TARGETS[t][0] or "inproc") == kind):
                make = TARGETS[target][1]
                c = make()
                try:
                    failures += [f"{target}: {f}" for f in check(target, c, tok)]
                finally:
                    c.close()
                for model in models:
                    for n in levels:
                        r = closed_loop(make, model, n, args.warmup, args.duration, tok)
                        r.update(target=target, model=model, clients=n)
                        rows.append(r)
                        print(f"  {target:14s} {model:10s} c={n}: {r['requests_per_s']:6.1f} req/s  "
                              f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}  "
                              f"load {r['load1']:.2f}")
                        if r["errors"]:
                            failures.append(f"{target} {model} c={n}: {r['errors']} errors, first {r['first_error']}")
        except Exception as e:  # noqa: BLE001 - reported, then the server is still stopped
            failures.append(f"{kind}: {e}")
            print(f"  {kind}: {e}", file=sys.stderr)
        finally:
            took, left = server.stop()
            if isinstance(server, Server):
                print(f"  {kind}: stopped {took:.1f} s after SIGTERM; "
                      f"{'no process left behind' if not left else f'{len(left)} processes LEFT BEHIND'}")
            for pid, cmd in left.items():
                print(f"    {pid}: {cmd[:160]}")
                failures.append(f"{kind}: left process {pid} ({cmd[:80]})")

    with open("/proc/loadavg") as f:
        print(f"load average after: {' '.join(f.read().split()[:3])}")
    print()
    print("| target | model | clients | requests/s | p50 (ms) | p99 (ms) | load avg (1 min) after |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['target']} | `{r['model']}` | {r['clients']} | {r['requests_per_s']:.1f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['load1']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "failures": failures}, f, indent=1)
    print()
    if failures:
        print("FAILED:")
        for f in failures:
            print(f"  {f}")
        return 1
    print(f"smoke ok: {', '.join(servers)}; {len(rows)} load runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
