#!/usr/bin/env python3
"""Ray Serve peer: the `paraphrase` pipeline as a deployment graph, plus bare `minilm`.

    bench/peers/.venv/bin/python bench/peers/ray_server.py --http-port 8300 [--grpc-port 8301]

One Serve application of four deployments, one replica each. MiniLM reserves all the CPUs
(num_cpus = --num-cpus) and drops the OMP_NUM_THREADS Ray gives it, so ONNX Runtime uses its
default intra-op pool as in Conduit and PyTriton; the others reserve none:

    Ingress ──► Tokenize ──► MiniLM (@serve.batch) ──► Pool
       └──────────────────► MiniLM   (for /minilm)

HTTP on 127.0.0.1:<http-port> (JSON; Ray Serve does not speak KServe over HTTP):
  POST /paraphrase  {"text": ["a", "b"]}  (or [["a"], ["b"]], the KServe [2, 1] layout)
                    → {"similarity": [s], "embeddings": [[384 floats], [384 floats]]}
  POST /minilm      {"input_ids": [[..]], "attention_mask": [[..]], "token_type_ids": [[..]]}
                    → last_hidden_state as raw little-endian FP32 bytes,
                      `content-type: application/octet-stream`, `x-shape: 2,128,384`;
                      `?format=json` → {"last_hidden_state": nested lists, "shape": [...]}
  GET  /-/healthz   Ray Serve's own health check.

KServe v2 gRPC on 127.0.0.1:<grpc-port> when given: Ray Serve's gRPC proxy with the
`inference.GRPCInferenceService` stubs that tritonclient ships; the Ingress implements
ModelInfer (models `paraphrase` and `minilm`, raw_input_contents / raw_output_contents only),
ServerLive, ServerReady and ModelReady. The same clients as for Triton and Conduit work.

MiniLM batches calls with @serve.batch: up to --max-batch-calls calls (4 × 2 rows = 8 rows,
Conduit's default) waiting at most --delay-us.

Prints `RAY READY http=… grpc=…` when the application is running. SIGTERM or SIGINT shuts
Serve and the Ray cluster this process started down (raylet, GCS, workers).
"""
import argparse
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
# Before `import ray`: no token auth on this throwaway local cluster, no usage report
# (the network is closed here), and workers import `paraphrase` from this folder.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# Ray starts its workers (so every Serve replica) at nice 15; on a machine shared with builds
# that would handicap Ray against Triton and Conduit, which run at nice 0.
os.environ["RAY_worker_niceness"] = "0"
os.environ["PYTHONPATH"] = HERE + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

GRPC_SERVICER = "tritonclient.grpc.service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"


def build_app(max_batch_calls, delay_us, intra_threads, model_cpus, padding="max_length"):
    from fastapi import FastAPI, Request, Response
    from ray import serve
    from starlette.responses import JSONResponse

    from paraphrase import MiniLM, Tokenizer, embed_and_score, pad_rows

    light = {"ray_actor_options": {"num_cpus": 0}}

    @serve.deployment(**light)
    class Tokenize:
        def __init__(self):
            self.tok = Tokenizer(padding=padding)

        def __call__(self, texts):
            return self.tok(texts)

    @serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": model_cpus})
    class MiniLMModel:
        def __init__(self):
            # Ray sets OMP_NUM_THREADS to the actor's num_cpus (1 when it has none), and ONNX
            # Runtime takes an OMP_NUM_THREADS it finds as an explicit intra-op thread count
            # (no thread pinning). Without it, ORT's default applies, as in Conduit and PyTriton:
            # one thread per physical core, pinned.
            if intra_threads == 0:
                os.environ.pop("OMP_NUM_THREADS", None)
            self.model = MiniLM(intra_threads=intra_threads)
            self.run.set_max_batch_size(max_batch_calls)
            self.run.set_batch_wait_timeout_s(delay_us / 1e6)

        @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.0005)
        async def run(self, calls):
            rows = [c[0].shape[0] for c in calls]
            hidden = self.model(*(pad_rows([c[i] for c in calls]) for i in range(3)))
            out, start = [], 0
            for c, n in zip(calls, rows):
                out.append(hidden[start : start + n, : c[0].shape[1]])
                start += n
            return out

        async def __call__(self, input_ids, attention_mask, token_type_ids):
            return await self.run((input_ids, attention_mask, token_type_ids))

    @serve.deployment(**light)
    class Pool:
        def __call__(self, hidden, mask):
            return embed_and_score(hidden, mask)

    http = FastAPI()

    @serve.deployment(max_ongoing_requests=64, **light)
    @serve.ingress(http)
    class Ingress:
        def __init__(self, tokenize, model, pool):
            self.tokenize, self.model, self.pool = tokenize, model, pool

        async def _paraphrase(self, texts):
            ids, mask, types = await self.tokenize.remote(texts)
            hidden = await self.model.remote(ids, mask, types)
            return await self.pool.remote(hidden, mask)

        @http.post("/paraphrase")
        async def paraphrase(self, request: Request):
            body = await request.json()
            texts = [t[0] if isinstance(t, list) else t for t in body["text"]]
            emb, sims = await self._paraphrase(texts)
            return JSONResponse({"similarity": sims.tolist(), "embeddings": emb.tolist()})

        @http.post("/minilm")
        async def minilm(self, request: Request):
            body = await request.json()
            arrays = [np.asarray(body[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")]
            hidden = await self.model.remote(*arrays)
            if request.query_params.get("format") == "json":
                return JSONResponse({"last_hidden_state": hidden.tolist(), "shape": list(hidden.shape)})
            return Response(content=np.ascontiguousarray(hidden, dtype="<f4").tobytes(),
                            media_type="application/octet-stream",
                            headers={"x-shape": ",".join(map(str, hidden.shape))})

        # KServe v2 gRPC, through Ray Serve's gRPC proxy (method name = RPC name).
        def ServerLive(self, request):
            from tritonclient.grpc import service_pb2 as pb
            return pb.ServerLiveResponse(live=True)

        def ServerReady(self, request):
            from tritonclient.grpc import service_pb2 as pb
            return pb.ServerReadyResponse(ready=True)

        def ModelReady(self, request):
            from tritonclient.grpc import service_pb2 as pb
            return pb.ModelReadyResponse(ready=request.name in ("paraphrase", "minilm"))

        async def ModelInfer(self, request):
            from tritonclient.grpc import service_pb2 as pb
            inputs = {t.name: _decode(t, request.raw_input_contents[i]) for i, t in enumerate(request.inputs)}
            if request.model_name == "paraphrase":
                text = inputs["text"]
                emb, sims = await self._paraphrase([t for t in text.reshape(-1)])
                outs = {"similarity": sims, "embeddings": emb}
            elif request.model_name == "minilm":
                hidden = await self.model.remote(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
                outs = {"last_hidden_state": hidden}
            else:
                raise ValueError(f"unknown model {request.model_name!r}")
            wanted = [o.name for o in request.outputs] or list(outs)
            resp = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
            for name in wanted:
                arr = np.ascontiguousarray(outs[name], dtype="<f4")
                resp.outputs.add(name=name, datatype="FP32", shape=list(arr.shape))
                resp.raw_output_contents.append(arr.tobytes())
            return resp

    return Ingress.bind(Tokenize.bind(), MiniLMModel.bind(), Pool.bind())


def _decode(tensor, raw):
    """A KServe v2 raw input (BYTES: 4-byte little-endian length + bytes, each) → numpy."""
    shape = list(tensor.shape)
    if tensor.datatype == "BYTES":
        out, pos = [], 0
        while pos < len(raw):
            n = int.from_bytes(raw[pos : pos + 4], "little")
            out.append(raw[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return np.array(out, dtype=object).reshape(shape)
    dtypes = {"INT64": "<i8", "INT32": "<i4", "FP32": "<f4"}
    return np.frombuffer(raw, dtype=dtypes[tensor.datatype]).reshape(shape)


def _prune_sessions(temp_dir, keep):
    """Deletes Ray session dirs (logs, ~1.5 MB each) of drivers that are gone, but the newest `keep`."""
    import shutil

    names = sorted(n for n in os.listdir(temp_dir) if n.startswith("session_2"))
    for name in names[:-keep] if keep else names:
        pid = name.rsplit("_", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(temp_dir, name), ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--http-port", type=int, default=8300)
    ap.add_argument("--grpc-port", type=int, default=0, help="KServe v2 gRPC through Serve's gRPC proxy (0: off)")
    ap.add_argument("--max-batch-calls", type=int, default=4, help="minilm's @serve.batch size, in calls")
    ap.add_argument("--delay-us", type=int, default=500, help="minilm's @serve.batch wait")
    ap.add_argument("--intra-threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count())
    ap.add_argument("--padding", choices=("max_length", "longest"), default="max_length",
                    help="the tokenizer's: to 128 tokens, or to the request's longest text")
    ap.add_argument("--temp-dir", default=os.path.join(HERE, ".ray-tmp"),
                    help="Ray's session dir; keep it short (Unix socket paths ≤ 107 bytes)")
    args = ap.parse_args()

    import ray
    from ray import serve

    os.makedirs(args.temp_dir, exist_ok=True)
    _prune_sessions(args.temp_dir, keep=3)
    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=os.path.abspath(args.temp_dir),
        object_store_memory=256 * 1024 * 1024,
        logging_level="WARNING",
        log_to_driver=False,
    )
    # After ray.init, which installs handlers of its own.
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        grpc_options = None
        if args.grpc_port:
            grpc_options = {"port": args.grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]}
        serve.start(http_options={"host": "127.0.0.1", "port": args.http_port},
                    grpc_options=grpc_options, logging_config={"log_level": "WARNING"})
        model_cpus = args.intra_threads or args.num_cpus
        serve.run(build_app(args.max_batch_calls, args.delay_us, args.intra_threads, model_cpus, args.padding),
                  name="peers", route_prefix="/")
        grpc = f"127.0.0.1:{args.grpc_port}" if args.grpc_port else "off"
        print(f"RAY READY http=127.0.0.1:{args.http_port} grpc={grpc} pid={os.getpid()}", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    print("RAY STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
