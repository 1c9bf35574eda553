#!/usr/bin/env python3
"""GPU vs CPU throughput of all-MiniLM-L6-v2 through the Conduit sidecar (KServe v2 gRPC).

Run by run.sh, from the folder pack.sh writes (bench/gpu/out/), with a python3 that has
torch, grpcio, protobuf and numpy:

    python3 bench.py [--seconds 20] [--concurrency 8] [--batch 8] [--seq 128] [--cpu-only]

It starts two sidecars (launch_sidecar.py -> sidecar/conduit_sidecar.py) on 127.0.0.1 with
a port of their own choosing (--listen 127.0.0.1:0), one with `--torch-cuda
minilm_torch.py:make` (float16 on CUDA) and one with `--torch-device cpu` added (float32);
sends both the same batch and compares the outputs (max |gpu - cpu| <= --tol, cosine of the
mean-pooled rows >= --min-cos); then, one sidecar at a time, a closed loop of
--concurrency clients, each sending batch x seq requests back to back, for --warmup seconds
untimed and --seconds timed; prints rows/s, requests/s and latency percentiles for each,
and the GPU/CPU ratio; stops both sidecars (SIGTERM) and exits 0, or 1 on any failure (2
for bad arguments).

The sidecar runs one request at a time per model (a lock in its torch backend), so with
several in flight the latency is mostly waiting: the throughput is the number to read, and
1000 / (requests/s) is the time one request holds the model, decoding and encoding included.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = "minilm"
OUTPUT = "last_hidden_state"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class BenchError(RuntimeError):
    pass


def say(msg: str = "") -> None:
    print(msg, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="timed load per device (20)")
    p.add_argument("--warmup", type=float, default=3.0, help="untimed load first (3)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (8)")
    p.add_argument("--batch", type=int, default=8, help="rows per request (8)")
    p.add_argument("--seq", type=int, default=128, help="tokens per row (128)")
    # float16 vs float32 on this model: max |diff| about 1e-2 over 8 x 128 (outputs up to ~6),
    # as measured with torch's CPU float16; a wrong mask or weight gives 0.1 or far more.
    p.add_argument("--tol", type=float, default=5e-2, help="max |gpu - cpu| allowed (5e-2)")
    p.add_argument("--min-cos", type=float, default=0.999,
                   help="min cosine of gpu and cpu mean-pooled rows (0.999)")
    p.add_argument("--start-timeout", type=float, default=180.0, help="seconds to load (180)")
    p.add_argument("--cpu-only", action="store_true", help="no GPU: run the CPU half alone")
    p.add_argument("--gpu-only", action="store_true", help="skip the CPU sidecar")
    p.add_argument("--gpu-dtype", choices=("fp16", "bf16", "fp32"),
                   help="compute dtype of the 'gpu' sidecar (minilm_torch's default: fp16)")
    p.add_argument("--device", default="cuda",
                   help="torch device of the 'gpu' sidecar (cuda; cpu tests the bench itself)")
    args = p.parse_args(argv)
    if args.cpu_only and args.gpu_only:
        p.error("--cpu-only and --gpu-only exclude each other")
    if min(args.concurrency, args.batch, args.seq) < 1 or args.seq > 512 or args.seconds <= 0:
        p.error("--concurrency, --batch >= 1; 1 <= --seq <= 512; --seconds > 0")
    return args


# -- preflight ------------------------------------------------------------------------------


def preflight(args) -> None:
    py = sys.executable
    for mod, why in (
        ("numpy", "numpy"),
        ("grpc", "grpcio"),
        ("google.protobuf", "protobuf"),
    ):
        try:
            __import__(mod)
        except ImportError as e:
            raise BenchError(f"{why} is not importable by {py} ({e}); use the python3 that has "
                             "torch and grpcio (PYTHON=... bash run.sh)") from None
    try:
        import torch
    except ImportError as e:
        raise BenchError(f"torch is not importable by {py} ({e}); this bench needs the "
                         "machine's PyTorch (PYTHON=/path/to/python3 bash run.sh)") from None
    import grpc
    import google.protobuf
    import numpy

    say(f"python   {py} ({sys.version.split()[0]})")
    say(f"packages torch {torch.__version__} (CUDA {torch.version.cuda}), numpy "
        f"{numpy.__version__}, grpcio {grpc.__version__}, protobuf {google.protobuf.__version__}")
    if not args.cpu_only and not args.device.startswith("cuda"):
        say(f"gpu      none: the 'gpu' sidecar runs on --device {args.device} (a test of the bench)")
    elif not args.cpu_only:
        if not torch.cuda.is_available():
            hint = ("this torch is a CPU-only build" if torch.version.cuda is None
                    else "no NVIDIA driver/device is visible (nvidia-smi? CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
            raise BenchError(f"torch {torch.__version__} sees no CUDA device: {hint}; "
                             "--cpu-only runs the CPU half alone")
        dev = torch.device(args.device)
        say(f"gpu      {torch.cuda.get_device_name(dev)}, "
            f"{torch.cuda.get_device_properties(dev).total_memory / 2**30:.0f} GiB")
    say(f"cpu      {os.cpu_count()} logical cores")


# -- sidecars -------------------------------------------------------------------------------


class Sidecar:
    """One sidecar process; `wait_ready()` reads its `listening on HOST:PORT` line."""

    def __init__(self, label: str, device: str, workers: int, dtype: str | None = None):
        self.label, self.device = label, device
        log_dir = HERE if os.access(HERE, os.W_OK) else Path(tempfile.gettempdir())
        self.log_path = log_dir / f"sidecar-{label}.log"
        self.address = None
        cmd = [
            sys.executable, "-u", str(HERE / "launch_sidecar.py"),
            "--listen", "127.0.0.1:0",
            "--name", MODEL,
            "--torch-cuda", "minilm_torch.py:make",
            "--workers", str(workers),
        ]  # fmt: skip
        if device != "cuda":
            cmd += ["--torch-device", device]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if dtype:
            env["MINILM_DTYPE"] = dtype
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd, cwd=HERE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env
        )
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  [{self.label} sidecar] {ln}" for ln in lines[-n:])

    def wait_ready(self, deadline: float) -> str:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"the {self.label} sidecar printed no 'listening on' line in "
                                 f"time; its log:\n{self.log_tail()}")
            try:
                line = self._lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait()
                raise BenchError(f"the {self.label} sidecar exited ({rc}) before it listened; "
                                 f"its log:\n{self.log_tail()}")
            if line.startswith("listening on "):
                self.address = line.split()[-1]
                return self.address

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# -- client ---------------------------------------------------------------------------------


def make_batch(batch: int, seq: int, seed: int = 0):
    """Token ids as a tokenizer would give them: [CLS] ... [SEP] then padding, with rows of
    different lengths (the first one full) so the attention mask matters."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(2, seq // 2), seq + 1, size=batch)
    lengths[0] = seq
    ids = np.zeros((batch, seq), dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(1996, 29600, size=n)  # ordinary word pieces
        ids[r, 0], ids[r, n - 1] = 101, 102  # [CLS], [SEP]
        mask[r, :n] = 1
    return ids, mask, np.zeros_like(ids)


def make_request(pb, arrays):
    req = pb.ModelInferRequest(model_name=MODEL)
    for name, a in zip(INPUTS, arrays):
        t = req.inputs.add()
        t.name, t.datatype = name, "INT64"
        t.shape.extend(a.shape)
        req.raw_input_contents.append(a.astype("<i8").tobytes())
    req.outputs.add().name = OUTPUT
    return req


def decode(resp):
    import numpy as np

    for i, out in enumerate(resp.outputs):
        if out.name == OUTPUT:
            if out.datatype != "FP32":
                raise BenchError(f"{OUTPUT} came back as {out.datatype}, not FP32")
            raw = resp.raw_output_contents[i]
            return np.frombuffer(raw, dtype="<f4").reshape(tuple(out.shape))
    raise BenchError(f"no {OUTPUT} in the response")


def closed_loop(stub, req, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """`concurrency` threads, each sending `req` back to back until `seconds` have passed.
    Returns (latencies in s, elapsed s until the last reply); raises on the first error."""
    import grpc

    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def worker():
        mine = []
        try:
            while time.perf_counter() < deadline and not errors:
                t0 = time.perf_counter()
                stub.ModelInfer(req, timeout=120)
                mine.append(time.perf_counter() - t0)
        except grpc.RpcError as e:
            errors.append(BenchError(f"ModelInfer failed: {e.code().name}: {e.details()}"))
        except BaseException as e:  # noqa: BLE001 - report whatever stopped the thread
            errors.append(e)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0] if isinstance(errors[0], BenchError) else BenchError(repr(errors[0]))
    return latencies, elapsed


def measure(label, stub, req, args) -> dict:
    if args.warmup > 0:
        closed_loop(stub, req, args.concurrency, args.warmup)
    lat, elapsed = closed_loop(stub, req, args.concurrency, args.seconds)
    lat.sort()
    n = len(lat)
    if n == 0:
        raise BenchError(f"{label}: no request finished")

    def pct(q):
        return lat[min(n - 1, int(q * n))] * 1e3

    r = {
        "label": label,
        "requests": n,
        "elapsed": elapsed,
        "rows_s": n * args.batch / elapsed,
        "req_s": n / elapsed,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "hold_ms": elapsed / n * 1e3,
    }
    say(f"  {label}: {n} requests in {elapsed:.1f} s: {r['rows_s']:.1f} rows/s, "
        f"p50 {r['p50']:.1f} ms, {r['hold_ms']:.2f} ms/request")
    return r


# -- main -----------------------------------------------------------------------------------


def run(args) -> int:
    import grpc
    import numpy as np

    sys.path.insert(0, str(HERE))
    import kserve_stubs

    say("== Conduit GPU bench: all-MiniLM-L6-v2 through the sidecar (KServe v2 gRPC) ==")
    preflight(args)
    pb, config_pb, pb_grpc = kserve_stubs.load()
    say(f"stubs    {kserve_stubs.which()}")

    sides = []  # (label, device, dtype)
    if not args.cpu_only:
        sides.append(("gpu", args.device, args.gpu_dtype))
    if not args.gpu_only:
        sides.append(("cpu", "cpu", None))
    workers = max(8, args.concurrency + 2)
    cars: dict[str, Sidecar] = {}
    ok = True
    try:
        t0 = time.monotonic()
        for label, device, dtype in sides:  # both load at once
            cars[label] = Sidecar(label, device, workers, dtype)
        deadline = t0 + args.start_timeout
        stubs_by = {}
        for label, car in cars.items():
            address = car.wait_ready(deadline)
            for line in car.log_tail(50).splitlines():
                if "minilm_torch:" in line:
                    say(line.strip())
            channel = grpc.insecure_channel(
                address,
                options=[("grpc.max_receive_message_length", -1),
                         ("grpc.max_send_message_length", -1)],
            )  # fmt: skip
            stub = stubs_by[label] = pb_grpc.GRPCInferenceServiceStub(channel)
            cfg = stub.ModelConfig(pb.ModelConfigRequest(name=MODEL), timeout=30).config
            kind = config_pb.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind)
            want = "KIND_GPU" if car.device.startswith("cuda") else "KIND_CPU"
            if kind != want:
                raise BenchError(f"the {label} sidecar reports {kind}, expected {want}")
            say(f"{label} sidecar listening on {address} ({time.monotonic() - t0:.1f} s after "
                f"start), {cfg.platform}, {kind}")

        arrays = make_batch(args.batch, args.seq)
        req = make_request(pb, arrays)
        outs = {}
        for label, stub in stubs_by.items():
            out = decode(stub.ModelInfer(req, timeout=120))
            if out.shape != (args.batch, args.seq, 384) or not np.isfinite(out).all():
                raise BenchError(f"{label}: output shape {out.shape} or non-finite values")
            outs[label] = out.astype(np.float64)

        agreement = None
        if len(outs) == 2:
            g, c = outs["gpu"], outs["cpu"]
            mask = arrays[1].astype(bool)
            diff = np.abs(g - c)
            m = arrays[1][:, :, None].astype(np.float64)
            pg, pc = (g * m).sum(1) / m.sum(1), (c * m).sum(1) / m.sum(1)
            cos = (pg * pc).sum(1) / np.linalg.norm(pg, axis=1) / np.linalg.norm(pc, axis=1)
            agreement = {
                "max": float(diff.max()),
                "max_tokens": float(diff[mask].max()),
                "mean": float(diff[mask].mean()),
                "cos": float(cos.min()),
                "scale": float(np.abs(c).max()),
            }
            ok = agreement["max"] <= args.tol and agreement["cos"] >= args.min_cos
            say(f"agreement on one batch ({args.batch} x {args.seq}): max |gpu - cpu| = "
                f"{agreement['max']:.2e} (real tokens {agreement['max_tokens']:.2e}, mean "
                f"{agreement['mean']:.1e}; |cpu| up to {agreement['scale']:.2f}); min cosine of "
                f"mean-pooled rows {agreement['cos']:.6f} (>= {args.min_cos:g}); "
                f"tolerance {args.tol:g}: {'OK' if ok else 'FAIL'}")

        say(f"load: {args.concurrency} concurrent requests of {args.batch} x {args.seq} tokens, "
            f"{args.warmup:g} s warm-up + {args.seconds:g} s per device")
        results = {}
        for label, stub in stubs_by.items():
            results[label] = measure(label, stub, req, args)
    finally:
        for label, car in cars.items():
            rc = car.stop()
            if rc != 0:
                say(f"the {label} sidecar exited {rc}; its log:\n{car.log_tail()}")
                ok = False

    say("")
    say(f"{'device':<8}{'rows/s':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'ms/req':>9}{'requests':>10}")
    for r in results.values():
        say(f"{r['label']:<8}{r['rows_s']:>10.1f}{r['req_s']:>9.1f}{r['p50']:>9.1f}"
            f"{r['p99']:>9.1f}{r['hold_ms']:>9.2f}{r['requests']:>10}")
    for r in results.values():
        say(f"RESULT {r['label']} rows_per_s={r['rows_s']:.1f} req_per_s={r['req_s']:.2f} "
            f"p50_ms={r['p50']:.2f} p99_ms={r['p99']:.2f} ms_per_req={r['hold_ms']:.3f}")
    if "gpu" in results and "cpu" in results:
        say(f"RESULT gpu_over_cpu={results['gpu']['rows_s'] / results['cpu']['rows_s']:.2f}x")
    if agreement is not None:
        good = agreement["max"] <= args.tol and agreement["cos"] >= args.min_cos
        say(f"RESULT max_abs_diff={agreement['max']:.3e} tol={args.tol:g} "
            f"min_cos={agreement['cos']:.6f} {'ok' if good else 'FAIL'}")
    say("bench: OK" if ok else "bench: FAIL")
    return 0 if ok else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as e:
        say(f"bench: FAIL: {e}")
        return 1
    except KeyboardInterrupt:
        say("bench: interrupted")
        return 1


if __name__ == "__main__":
    sys.exit(main())
