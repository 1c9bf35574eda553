#!/usr/bin/env python3
"""The peer suite: Conduit against PyTriton and Ray Serve, one load generator, one table.

    bash bench/peers/setup.sh
    cargo build --release -p conduit -p conduit-bench      # if target/release lacks them
    make components                                         # the tokenizer and embedding-post .wasm
    bench/peers/.venv/bin/python bench/suite.py [--quick] [--out DIR] [--servers conduit,pytriton,ray]
        [--concurrency 1,4,16] [--warmup-s 2] [--duration-s 10]
    bench/peers/.venv/bin/python bench/plot.py [--out DIR]

For each server in turn (never two at once): start it in a session of its own (Conduit:
`conduit dev` on a fresh temporary data directory, then `conduit push` of the tokenizer
component, the all-MiniLM-L6-v2 model, the embedding-post component and the `paraphrase`
pipeline, as scripts/demo.sh; PyTriton and Ray Serve: bench/peers/pytriton_server.py and
ray_server.py, through bench/peers/smoke.py's `Server`), wait until it is ready, run
`conduit-bench load --protocol grpc --model paraphrase` closed loop at each concurrency
(every answer checked by the generator), SIGTERM it, wait for it to exit and look for
processes left behind. Then write DIR/suite.json (settings, the generator's full JSON per
run, start/stop times, load averages) and print a markdown table with Conduit's throughput
over each peer's at each concurrency. The issue's goal: >= 1.5x PyTriton and Ray Serve at an
equal or lower p99.

Default: 2 s warm-up, 10 s window, concurrency 1, 4, 16. `--quick`: 1 s warm-up, 4 s window,
concurrency 1 and 4 (about 1 minute in all). DIR defaults to bench/peers/.logs/suite
(gitignored); server logs go there too. Exits non-zero when a server fails to start, a run
has errors or fails, or a process is left behind.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import socket
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
CONDUIT_PORTS = {"grpc": 8401, "http": 8400}  # outside Ray's worker range 10002-19999


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def port_in_use(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Conduit:
    """`conduit dev` on a temporary data directory, with the paraphrase pipeline pushed."""

    kind = "conduit"

    def __init__(self, log_dir, binary, wasm_dir, model, max_batch=None):
        self.binary, self.wasm_dir, self.model = binary, wasm_dir, model
        self.max_batch = max_batch
        self.log_path = os.path.join(log_dir, "conduit.log")
        self.proc = None
        self.tmp = None
        self.key = None
        self.grpc = f"127.0.0.1:{CONDUIT_PORTS['grpc']}"

    def _env(self):
        env = dict(os.environ)
        if not env.get("ORT_DYLIB_PATH"):
            found = sorted(glob.glob(os.path.join(
                ROOT, ".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*")))
            if not found:
                raise RuntimeError("ORT_DYLIB_PATH is unset and .venv has no onnxruntime (make setup)")
            env["ORT_DYLIB_PATH"] = found[0]
        return env

    def start(self, timeout):
        for port in CONDUIT_PORTS.values():
            if port_in_use(port):
                raise RuntimeError(f"port {port} is already in use")
        t0 = time.monotonic()
        env = self._env()
        self.tmp = tempfile.mkdtemp(prefix="conduit-suite.")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.binary, "dev", "--data-dir", os.path.join(self.tmp, "data"),
             "--listen", self.grpc, "--http-listen", f"127.0.0.1:{CONDUIT_PORTS['http']}"],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=ROOT,
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
        env.update(CONDUIT_REGISTRY=f"http://{self.grpc}", CONDUIT_API_KEY=self.key)
        for args in (
            ["component", os.path.join(self.wasm_dir, "bert_tokenizer.wasm"), "--name", "tokenizer"],
            ["model", self.model, "--name", "minilm",
             *(["--max-batch", str(self.max_batch)] if self.max_batch else [])],
            ["component", os.path.join(self.wasm_dir, "embedding_post.wasm"), "--name", "embedding-post"],
            ["pipeline", os.path.join(ROOT, "examples/pipelines/paraphrase.toml"), "--name", "paraphrase"],
        ):
            cmd = [self.binary, "push", *args, "--version", "1.0.0"]
            r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            self.log.write(f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}")
            self.log.flush()
            if r.returncode:
                raise RuntimeError(f"`conduit push {args[0]}` failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        # Ready = one answer; `conduit-bench load` checks its first answer again before the run.
        r = subprocess.run([self.binary, "infer", "paraphrase", "--output", "similarity", "--input",
                            'text=[["The company Conduit is based in the Bay Area"],'
                            '["Conduit\'s headquarters are situated in Mountain View"]]'],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        self.log.write(f"$ conduit infer paraphrase\n{r.stdout}{r.stderr}")
        self.log.flush()
        if r.returncode:
            raise RuntimeError(f"`conduit infer paraphrase` failed: {r.stderr.strip()[-300:]}")
        return time.monotonic() - t0

    def stop(self, timeout=60):
        if self.proc is None:
            return 0.0, {}
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  conduit: no exit {timeout} s after SIGTERM; killing its process group", file=sys.stderr)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        took = time.monotonic() - t0
        left = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.tmp and self.tmp in cmd:
                left[int(pid)] = cmd
        self.log.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return took, left


def make_server(kind, args):
    if kind == "conduit":
        return Conduit(args.out, args.conduit, args.wasm_dir, args.model, args.conduit_max_batch)
    return smoke.Server(kind, args.out)


def target_of(server):
    if server.kind == "conduit":
        return server.grpc, server.key
    return f"127.0.0.1:{smoke.PORTS[server.kind]['grpc']}", None


def run_load(args, kind, url, key, concurrency):
    out = os.path.join(args.out, f"load-{kind}-c{concurrency}.json")
    if os.path.exists(out):
        os.remove(out)
    cmd = [args.bench, "load", "--url", url, "--protocol", "grpc", "--model", "paraphrase",
           "--workload", "paraphrase", "--concurrency", str(concurrency),
           "--warmup-s", str(args.warmup_s), "--duration-s", str(args.duration_s), "--json", out]
    if key:
        cmd += ["--key", key]
    shown = " ".join("$KEY" if c == key else c for c in cmd)
    before = loadavg()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       timeout=args.warmup_s + args.duration_s + 120)
    after = loadavg()
    doc = None
    if os.path.exists(out):
        with open(out) as f:
            doc = json.load(f)
    return {"server": kind, "concurrency": concurrency, "command": shown, "rc": r.returncode,
            "summary": r.stdout.strip(), "stderr": r.stderr.strip()[-2000:],
            "load1_before": before[0], "load1_after": after[0], "load": doc}


def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def row_numbers(run):
    d = run["load"]
    if not d:
        return None, None, None, None
    lat = d["latency_us"]
    p50 = lat["p50"] / 1000 if lat.get("p50") is not None else None
    p99 = lat["p99"] / 1000 if lat.get("p99") is not None else None
    return d["throughput_rps"], p50, p99, d["errors_total"]


def table(runs, servers, levels):
    by = {(r["server"], r["concurrency"]): row_numbers(r) for r in runs}
    lines = ["| server | concurrency | ok req/s | p50 (ms) | p99 (ms) | errors | Conduit / this (req/s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in servers:
        for c in levels:
            rps, p50, p99, err = by.get((s, c), (None,) * 4)
            conduit = by.get(("conduit", c), (None,) * 4)[0]
            ratio = f"{conduit / rps:.2f}×" if conduit and rps else "—"
            lines.append(f"| {s} | {c} | {fmt(rps)} | {fmt(p50)} | {fmt(p99)} | "
                         f"{'—' if err is None else err} | {ratio} |")
    peers = [s for s in servers if s != "conduit"]
    if "conduit" in servers and peers:
        lines += ["", "Goal: Conduit ≥ 1.5× the peer's throughput at an equal or lower p99.", "",
                  "| concurrency | " + " | ".join(f"vs {p}" for p in peers) + " |",
                  "|---:|" + "---|" * len(peers)]
        for c in levels:
            crps, _, cp99, _ = by.get(("conduit", c), (None,) * 4)
            cells = []
            for p in peers:
                prps, _, pp99, _ = by.get((p, c), (None,) * 4)
                if not (crps and prps and cp99 is not None and pp99 is not None):
                    cells.append("—")
                    continue
                met = crps / prps >= 1.5 and cp99 <= pp99
                cells.append(f"{crps / prps:.2f}×, p99 {cp99:.1f} vs {pp99:.1f} ms: "
                             f"{'met' if met else 'not met'}")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 s warm-up, 4 s window, concurrency 1,4")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--concurrency", help="default 1,4,16 (--quick: 1,4)")
    ap.add_argument("--warmup-s", type=float, help="default 2 (--quick: 1)")
    ap.add_argument("--duration-s", type=float, help="default 10 (--quick: 4)")
    ap.add_argument("--out", default=os.path.join(PEERS, ".logs", "suite"))
    ap.add_argument("--startup-timeout", type=float, default=240.0)
    ap.add_argument("--conduit", default=os.path.join(ROOT, "target/release/conduit"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "target/release/conduit-bench"))
    ap.add_argument("--wasm-dir", default=os.path.join(ROOT, "target/wasm32-wasip2/release"))
    ap.add_argument("--model", default=os.path.join(ROOT, "testdata/minilm/model.onnx"))
    ap.add_argument("--conduit-max-batch", type=int, default=None,
                    help="push minilm with --max-batch N (rows; default: the executor's 8)")
    args = ap.parse_args()
    if args.concurrency is None:
        args.concurrency = "1,4" if args.quick else "1,4,16"
    if args.warmup_s is None:
        args.warmup_s = 1.0 if args.quick else 2.0
    if args.duration_s is None:
        args.duration_s = 4.0 if args.quick else 10.0
    servers = [s for s in args.servers.split(",") if s]
    if any(s not in SERVERS for s in servers):
        ap.error(f"--servers: known are {', '.join(SERVERS)}")
    levels = [int(c) for c in args.concurrency.split(",") if c]
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    for path in [args.bench] + ([args.conduit] if "conduit" in servers else []):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: cargo build --release -p conduit -p conduit-bench")
    if "conduit" in servers:
        for f in ("bert_tokenizer.wasm", "embedding_post.wasm"):
            if not os.path.exists(os.path.join(args.wasm_dir, f)):
                sys.exit(f"{args.wasm_dir}/{f} is missing: make components")

    started = time.time()
    print(f"suite: {', '.join(servers)}; paraphrase over gRPC, closed loop c={args.concurrency}, "
          f"{args.warmup_s:g} s warm-up + {args.duration_s:g} s; {os.cpu_count()} CPUs, "
          f"load average {' '.join(map(str, loadavg()))}")
    failures, runs, info = [], [], {}
    for kind in servers:
        server = make_server(kind, args)
        print(f"{kind}: starting")
        entry = info.setdefault(kind, {"log": server.log_path})
        try:
            entry["ready_s"] = server.start(args.startup_timeout)
            print(f"  {kind}: ready after {entry['ready_s']:.1f} s")
            url, key = target_of(server)
            for c in levels:
                run = run_load(args, kind, url, key, c)
                runs.append(run)
                print(f"  {run['summary'] or '(no summary)'}")
                if run["rc"] or run["load"] is None:
                    failures.append(f"{kind} c={c}: conduit-bench load exited {run['rc']}: "
                                    f"{run['stderr'].splitlines()[-1] if run['stderr'] else ''}")
                elif run["load"]["errors_total"]:
                    failures.append(f"{kind} c={c}: {run['load']['errors_total']} errors: {run['load']['errors']}")
        except Exception as e:  # noqa: BLE001 - reported; the server is stopped all the same
            failures.append(f"{kind}: {e}")
            print(f"  {kind}: {e}", file=sys.stderr)
        finally:
            took, left = server.stop()
            entry["stop_s"] = took
            entry["left_behind"] = {str(p): c[:200] for p, c in left.items()}
            print(f"  {kind}: stopped {took:.1f} s after SIGTERM; "
                  f"{'no process left behind' if not left else f'{len(left)} processes LEFT BEHIND'}")
            for pid, cmd in left.items():
                failures.append(f"{kind}: left process {pid} ({cmd[:80]})")

    doc = {
        "tool": "bench/suite.py",
        "started_unix": started,
        "finished_unix": time.time(),
        "quick": args.quick,
        "protocol": "grpc",
        "model": "paraphrase",
        "concurrency": levels,
        "warmup_s": args.warmup_s,
        "duration_s": args.duration_s,
        "cpus": os.cpu_count(),
        "servers": info,
        "runs": runs,
        "failures": failures,
    }
    path = os.path.join(args.out, "suite.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print()
    print(table(runs, servers, levels))
    print()
    print(f"wrote {os.path.relpath(path, ROOT)} ({time.time() - started:.0f} s); "
          f"load average {' '.join(map(str, loadavg()))}")
    if failures:
        print("FAILED:")
        for f in failures:
            print(f"  {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
