#!/usr/bin/env python3
"""Sessions and the Python SDK, measured against a real ``conduit dev`` (issue 17).

1. A chained two-module call (MiniLM -> embedding-post on 8 sentences): the model's
   output kept on the runner as a remote value and passed on, against fetching it and
   sending it back (the only way with a stateless client). Latency and the tensor bytes
   that crossed the client, per call.
2. Per-call overhead on the tiny model (testdata/fixtures/add.onnx, one FP32 [1, 4]):
   the SDK's ``Module.run(..., fetch=[...])`` against tritonclient's gRPC ``infer`` on the
   same server, sequential calls, one client. Goal: the SDK lower.

Both clients run in this process on the same 2-vCPU machine as the server; the ratios
are what to read. Prints a markdown table.

    .venv/bin/python bench/sessions.py --conduit target/release/conduit \\
        --wasm-dir target/wasm32-wasip2/release --model testdata/minilm/model.onnx
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import conduit

SENTENCES = [
    "The company Conduit is based in the Bay Area",
    "Conduit's headquarters are situated in Mountain View",
    "Grandmother's apple pie needs more cinnamon",
    "A recipe for apple pie with a lot of cinnamon",
    "WebAssembly components run sandboxed beside the model",
    "User code runs in a sandbox next to the accelerator",
    "The weather in Paris is mild in the spring",
    "Spring in Paris is usually pleasant and mild",
]


def timed(n: int, call) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e6)
    return out


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conduit", required=True, help="the conduit binary")
    ap.add_argument("--wasm-dir", required=True, help="the built components")
    ap.add_argument("--model", default="testdata/minilm/model.onnx")
    ap.add_argument("--tiny", default="testdata/fixtures/add.onnx")
    ap.add_argument("--chain-calls", type=int, default=200)
    ap.add_argument("--tiny-calls", type=int, default=3000)
    args = ap.parse_args()
    wasm = Path(args.wasm_dir)

    import tritonclient.grpc as grpcclient

    with conduit.local(binary=args.conduit) as server:
        repo = conduit.ModuleRepository(server.addr, server.api_key)
        repo.register_component("tokenizer", "1.0.0", wasm / "bert_tokenizer.wasm")
        repo.register_onnx("minilm", "1.0.0", args.model)
        repo.register_component("embedding-post", "1.0.0", wasm / "embedding_post.wasm")
        repo.register_onnx("add", "1.0.0", args.tiny)

        with conduit.Session(
            server.addr, ["tokenizer@1.0.0", "minilm@1.0.0", "embedding-post@1.0.0", "add@1.0.0"],
            api_key=server.api_key,
        ) as session:
            tokenize = session.new_module("tokenizer@1.0.0")
            encode = session.new_module("minilm@1.0.0")
            post = session.new_module("embedding-post@1.0.0")
            text = np.array([[s.encode()] for s in SENTENCES], dtype=object)
            tokens = tokenize.run(text=text, parameters={"max_length": 256, "padding": "longest"})
            ids, mask, types = (tokens[n].numpy() for n in ("input_ids", "attention_mask", "token_type_ids"))

            def remote():
                hidden = encode.run(input_ids=ids, attention_mask=mask, token_type_ids=types)
                out = post.run(
                    last_hidden_state=hidden["last_hidden_state"], attention_mask=mask,
                    fetch=["similarity"],
                )
                return out["similarity"].numpy()

            def resend():
                hidden = encode.run(
                    input_ids=ids, attention_mask=mask, token_type_ids=types,
                    fetch=["last_hidden_state"],
                )["last_hidden_state"].numpy()
                out = post.run(last_hidden_state=hidden, attention_mask=mask, fetch=["similarity"])
                return out["similarity"].numpy()

            assert np.array_equal(remote(), resend()), "both ways give the same scores"
            rows = []
            for label, call in (("remote value", remote), ("fetch and resend", resend)):
                timed(10, call)
                before = session.stats()
                samples = timed(args.chain_calls, call)
                after = session.stats()
                moved = (after.bytes_sent - before.bytes_sent + after.bytes_received
                         - before.bytes_received) / args.chain_calls
                rows.append((label, statistics.median(samples), pct(samples, 0.99), moved))

            add = session.new_module("add@1.0.0")
            x = np.arange(4, dtype=np.float32).reshape(1, 4)
            sdk = lambda: add.run(x=x, fetch=["y"])["y"].numpy()
            http_port = server.http_addr  # noqa: F841 (the gRPC address serves both)
            triton = grpcclient.InferenceServerClient(server.addr.removeprefix("http://"))
            headers = {"authorization": f"Bearer {server.api_key}"}
            inp = grpcclient.InferInput("x", [1, 4], "FP32")
            inp.set_data_from_numpy(x)
            out = [grpcclient.InferRequestedOutput("y")]
            tc = lambda: triton.infer("add", [inp], outputs=out, headers=headers).as_numpy("y")
            assert np.array_equal(sdk(), tc())
            tiny = []
            # Interleaved rounds, so drift on a noisy machine hits both alike.
            sdk_s, tc_s = [], []
            for _ in range(5):
                timed(100, sdk)
                sdk_s += timed(args.tiny_calls // 5, sdk)
                timed(100, tc)
                tc_s += timed(args.tiny_calls // 5, tc)
            tiny.append(("conduit SDK, run(fetch=[y])", statistics.median(sdk_s), pct(sdk_s, 0.99)))
            tiny.append(("tritonclient.grpc infer", statistics.median(tc_s), pct(tc_s, 0.99)))

    print("## Chained two-module call (MiniLM -> embedding-post, 8 sentences)\n")
    print("| how | p50 µs | p99 µs | tensor bytes through the client per call |")
    print("|---|---|---|---|")
    for label, p50, p99, moved in rows:
        print(f"| {label} | {p50:.0f} | {p99:.0f} | {moved:,.0f} |")
    print(f"\nremote / resend: latency {rows[0][1] / rows[1][1]:.2f}x, bytes {rows[0][3] / rows[1][3]:.3f}x\n")
    print("## Per-call overhead, tiny model (add.onnx, FP32 [1, 4])\n")
    print("| client | p50 µs | p99 µs |")
    print("|---|---|---|")
    for label, p50, p99 in tiny:
        print(f"| {label} | {p50:.0f} | {p99:.0f} |")
    ratio = tiny[0][1] / tiny[1][1]
    print(f"\nSDK / tritonclient p50: {ratio:.2f}x ({'lower' if ratio < 1 else 'NOT lower'})")


if __name__ == "__main__":
    main()
