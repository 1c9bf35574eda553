#!/usr/bin/env python3
"""PyTriton peer: `paraphrase` and `minilm` on Triton 2.51 (Python backend), KServe v2.

    bench/peers/.venv/bin/python bench/peers/pytriton_server.py --http-port 8200 --grpc-port 8201

Models (KServe v2 over gRPC and HTTP, 127.0.0.1 only):
  paraphrase  text BYTES [-1, 1] → similarity FP32 [-1], embeddings FP32 [-1, 384];
              no batching (max_batch_size 0): tokenize, run, pool in one call.
  minilm      input_ids, attention_mask, token_type_ids INT64 [-1, -1] →
              last_hidden_state FP32 [-1, -1, 384]; Triton's dynamic batcher, up to 8 rows,
              500 µs queue delay (Conduit's default executor hints).

The statistics endpoint is open (PyTriton guards it, model-repository, shared-memory, trace
and logging with a random token by default); the others keep that token.

Prints `PYTRITON READY http=… grpc=…` once both models are loaded. SIGTERM or SIGINT leaves
the `with Triton(...)` block, which stops tritonserver and its Python-backend stubs.
"""
import argparse
import logging
import os
import signal
import sys
import threading

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paraphrase import HIDDEN, MiniLM, Tokenizer, embed_and_score  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--http-port", type=int, default=8200)
    ap.add_argument("--grpc-port", type=int, default=8201)
    ap.add_argument("--max-batch", type=int, default=8, help="minilm's dynamic batcher, rows (0: off)")
    ap.add_argument("--delay-us", type=int, default=500, help="minilm's max queue delay")
    ap.add_argument("--intra-threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    ap.add_argument("--protect-statistics", action="store_true",
                    help="keep PyTriton's default token on the statistics endpoint")
    ap.add_argument("--padding", choices=("max_length", "longest"), default="max_length",
                    help="the tokenizer's: to 128 tokens, or to the request's longest text")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

    tok = Tokenizer(padding=args.padding)
    model = MiniLM(intra_threads=args.intra_threads)

    def paraphrase_fn(requests):
        out = []
        for req in requests:
            text = req["text"]
            if text.ndim != 2 or text.shape[1] != 1:
                raise ValueError(f"input `text` must be [n, 1], got {list(text.shape)}")
            ids, mask, types = tok(text.reshape(-1).tolist())
            emb, sims = embed_and_score(model(ids, mask, types), mask)
            out.append({"similarity": sims, "embeddings": emb})
        return out

    @batch
    def minilm_fn(input_ids, attention_mask, token_type_ids):
        return {"last_hidden_state": model(input_ids, attention_mask, token_type_ids)}

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        allow_metrics=False,
        exit_timeout_secs=5,
        log_verbose=0,
    )
    # PyTriton guards some endpoints with a random token by default; leave `statistics`
    # open (read-only, loopback only) so a load generator can read server-side timings.
    protected = [e for e in DEFAULT_PROTECTED_ENDPOINTS if args.protect_statistics or e != "statistics"]
    security = TritonSecurityConfig(restricted_endpoints=protected)
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name="paraphrase",
            infer_func=paraphrase_fn,
            inputs=[Tensor(name="text", dtype=np.bytes_, shape=(-1, 1))],
            outputs=[
                Tensor(name="similarity", dtype=np.float32, shape=(-1,)),
                Tensor(name="embeddings", dtype=np.float32, shape=(-1, HIDDEN)),
            ],
            config=ModelConfig(max_batch_size=0, batching=False),
            strict=True,
        )
        if args.max_batch > 0:
            minilm_config = ModelConfig(
                max_batch_size=args.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.delay_us),
            )
            tensor_shape, out_shape = (-1,), (-1, HIDDEN)  # the batch dimension is implicit
        else:
            minilm_config = ModelConfig(max_batch_size=0, batching=False)
            tensor_shape, out_shape = (-1, -1), (-1, -1, HIDDEN)
        triton.bind(
            model_name="minilm",
            infer_func=minilm_fn if args.max_batch > 0 else _unbatched(model),
            inputs=[
                Tensor(name="input_ids", dtype=np.int64, shape=tensor_shape),
                Tensor(name="attention_mask", dtype=np.int64, shape=tensor_shape),
                Tensor(name="token_type_ids", dtype=np.int64, shape=tensor_shape),
            ],
            outputs=[Tensor(name="last_hidden_state", dtype=np.float32, shape=out_shape)],
            config=minilm_config,
            strict=True,
        )
        triton.run()  # starts serving in the background; we wait for a signal instead of serve()
        print(f"PYTRITON READY http=127.0.0.1:{args.http_port} grpc=127.0.0.1:{args.grpc_port} "
              f"pid={os.getpid()}", flush=True)
        while not stop.wait(1.0):
            if not triton.is_alive():
                print("pytriton_server: Triton is no longer alive", file=sys.stderr, flush=True)
                return 1
    print("PYTRITON STOPPED", flush=True)
    return 0


def _unbatched(model):
    def fn(requests):
        return [{"last_hidden_state": model(r["input_ids"], r["attention_mask"], r["token_type_ids"])}
                for r in requests]
    return fn


if __name__ == "__main__":
    sys.exit(main())
