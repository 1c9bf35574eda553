#!/usr/bin/env python3
"""The Python in-process baseline: the `paraphrase` workload with no server at all.

    bench/peers/.venv/bin/python bench/peers/inprocess.py [--what model,steps] [--batch 2,8]
        [--warmup-s 2] [--duration-s 10] [--steps-s 2] [--quick] [--intra-threads N] [--json FILE]

model: Python onnxruntime (bench/peers/paraphrase.py's MiniLM, testdata/minilm/model.onnx)
called back to back in one thread on batches of B rows (the README pair repeated B/2 times),
after --warmup-s, for --duration-s per batch size: calls, rows/s, pairs/s (a request is a
pair) and per-call p50/p90/p99. The physical limit of this machine for the peer servers.
The output is checked once per batch size: shape [B, 128, 384], finite, pair score > 0.5.

steps: the Python pre- and post-processing of one paraphrase request, timed call by call
after 0.5 s of warm-up for --steps-s (at most 200000 calls): `pre` = Tokenizer on the two
texts, `post` = embed_and_score on the model's real output for the pair.

--quick: warm-up 0.5 s, window 3 s, steps 0.5 s. Exits non-zero when a check fails.
bench/suite.py runs it as a subprocess and reads the JSON written by --json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from paraphrase import HIDDEN, MAX_LENGTH, MiniLM, Tokenizer, embed_and_score  # noqa: E402

PAIR = ("The company Conduit is based in the Bay Area", "Conduit's headquarters are situated in Mountain View")
MAX_STEP_CALLS = 200_000


def pcts(samples_ns):
    """p50/p90/p99 in µs; numpy.percentile with its default linear interpolation."""
    p = np.percentile(np.asarray(samples_ns, dtype=np.float64) / 1e3, [50, 90, 99])
    return {"p50": round(float(p[0]), 1), "p90": round(float(p[1]), 1), "p99": round(float(p[2]), 1)}


def timed_loop(fn, warmup_s, duration_s, cap=None):
    """Runs fn back to back for warmup_s (discarded), then duration_s; returns (samples ns, window s)."""
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        fn()
    samples = []
    start = time.perf_counter_ns()
    end_ns = start + int(duration_s * 1e9)
    while True:
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        if t1 >= end_ns or (cap and len(samples) >= cap):
            break
    return samples, (t1 - start) / 1e9


def fail(msg):
    print(f"inprocess.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def bench_model(args, model, pair):
    out = []
    for b in args.batch:
        if b < 2 or b % 2:
            fail(f"batch {b}: must be even and >= 2")
        ids, mask, types = (np.ascontiguousarray(np.tile(a, (b // 2, 1))) for a in pair)
        hidden = model(ids, mask, types)
        if hidden.shape != (b, MAX_LENGTH, HIDDEN):
            fail(f"batch {b}: output shape {hidden.shape}, expected {(b, MAX_LENGTH, HIDDEN)}")
        if not np.isfinite(hidden).all():
            fail(f"batch {b}: non-finite output")
        sim = float(embed_and_score(hidden[:2], mask[:2])[1][0])
        if not sim > 0.5:
            fail(f"batch {b}: paraphrase pair similarity {sim:.4f}, expected > 0.5")
        samples, window = timed_loop(lambda: model(ids, mask, types), args.warmup_s, args.duration_s)
        rows = b * len(samples) / window
        lat = pcts(samples)
        out.append({"batch": b, "calls": len(samples), "window_s": round(window, 3), "rows_per_s": round(rows, 2),
                    "pairs_per_s": round(rows / 2, 2), "latency_us": lat, "similarity": round(sim, 4)})
        print(f"python ort, batch {b}: {rows:.1f} rows/s ({rows / 2:.1f} pairs/s), "
              f"p50 {lat['p50'] / 1e3:.1f} ms, p90 {lat['p90'] / 1e3:.1f} ms, p99 {lat['p99'] / 1e3:.1f} ms "
              f"({len(samples)} calls in {window:.1f} s)", flush=True)
    return out


def bench_steps(args, tok, model, pair):
    hidden = model(*pair)
    mask = pair[1]
    res = {}
    for name, fn in (("pre", lambda: tok(list(PAIR))), ("post", lambda: embed_and_score(hidden, mask))):
        samples, window = timed_loop(fn, 0.5, args.steps_s, cap=MAX_STEP_CALLS)
        lat = pcts(samples)
        res[name] = {"count": len(samples), "p50_us": lat["p50"], "p90_us": lat["p90"], "p99_us": lat["p99"]}
        print(f"python {name}: p50 {lat['p50']:.1f} µs, p90 {lat['p90']:.1f} µs, p99 {lat['p99']:.1f} µs "
              f"({len(samples)} calls in {window:.1f} s)", flush=True)
    res["pre_plus_post_p50_us"] = round(res["pre"]["p50_us"] + res["post"]["p50_us"], 1)
    print(f"python pre+post: p50 sum {res['pre_plus_post_p50_us']:.1f} µs", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--what", default="model,steps")
    ap.add_argument("--batch", default="2,8")
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--steps-s", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--intra-threads", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.quick:
        args.warmup_s, args.duration_s, args.steps_s = 0.5, 3.0, 0.5
    args.batch = [int(x) for x in args.batch.split(",") if x.strip()]
    what = {w.strip() for w in args.what.split(",") if w.strip()}
    if not what <= {"model", "steps"}:
        fail(f"--what {args.what}: expected a subset of model,steps")

    import onnxruntime as ort
    import tokenizers

    tok, model = Tokenizer(), MiniLM(intra_threads=args.intra_threads)
    pair = tok(list(PAIR))
    doc = {"tool": "bench/peers/inprocess.py", "onnxruntime": ort.__version__, "numpy": np.__version__,
           "tokenizers": tokenizers.__version__, "cpus": os.cpu_count(), "quick": args.quick,
           "intra_threads": args.intra_threads,
           "settings": {"warmup_s": args.warmup_s, "duration_s": args.duration_s, "steps_s": args.steps_s}}
    if "model" in what:
        doc["model"] = bench_model(args, model, pair)
    if "steps" in what:
        doc["steps"] = bench_steps(args, tok, model, pair)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
