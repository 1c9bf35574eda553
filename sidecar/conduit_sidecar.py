#!/usr/bin/env python3
"""A KServe v2 gRPC server for one model: Conduit's remote executor for runtimes it does not link.

    .venv/bin/python sidecar/conduit_sidecar.py --listen 127.0.0.1:8701 --name add \\
        --onnx testdata/fixtures/add.onnx
    .venv/bin/python sidecar/conduit_sidecar.py --listen 127.0.0.1:8701 --name net \\
        --torch-cuda models/net.py:make

It serves `inference.GRPCInferenceService` (proto/inference/grpc_service.proto; the stubs
are generated into sidecar/_gen/ on first start, see stubs.py): ServerLive, ServerReady,
ServerMetadata, ModelReady, ModelMetadata, ModelConfig, ModelStatistics, RepositoryIndex,
ModelInfer and ModelStreamInfer. Inputs come as `raw_input_contents` or typed `contents`;
outputs always go back as `raw_output_contents`. Errors: NOT_FOUND for another model name or
version, INVALID_ARGUMENT for a request that does not fit the model (unknown or missing
input, datatype, shape, byte count), INTERNAL when the runtime fails. ModelReady answers
ready=false, not an error, for a model it does not serve.

Once the model is loaded and the port bound, it prints `listening on HOST:PORT` (the real
port when given port 0) on stdout. SIGTERM or SIGINT: stop accepting calls, let running
ones finish (--grace seconds), exit 0. Exit 2 when the model or the port cannot be set up.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

import stubs
from backends import BackendError, OnnxBackend, TorchBackend
from stats import Stats
from tensors import TensorError, check_shape, datatype_of, from_contents, from_raw, to_raw

SERVER_NAME = "conduit-sidecar"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["model_configuration", "statistics"]


class RpcFail(Exception):
    """A call that ends with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class InferenceService:
    """The GRPCInferenceService methods, over one model and one backend.

    Mixed with the generated servicer base in `serve()`, whose methods answer UNIMPLEMENTED
    for the calls not defined here (repository load and unload).
    """

    def __init__(self, pb, config_pb, name: str, version: str, model, max_batch_size: int):
        self.pb, self.config_pb = pb, config_pb
        self.name, self.version, self.model = name, version, model
        self.max_batch_size = max_batch_size
        self.stats = Stats()
        self._inputs = {s.name: s for s in model.inputs}
        self._outputs = [s.name for s in model.outputs]

    # -- health and metadata ------------------------------------------------------------------

    def ServerLive(self, request, context):
        return self.pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return self.pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):
        ok = request.name == self.name and request.version in ("", self.version)
        return self.pb.ModelReadyResponse(ready=ok)

    def ServerMetadata(self, request, context):
        return self.pb.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS
        )

    def _check_model(self, name: str, version: str, context) -> None:
        if name != self.name:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown model '{name}'; this sidecar serves '{self.name}'",
            )
        if version not in ("", self.version):
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"model '{name}' has no version '{version}'; it serves version '{self.version}'",
            )

    def ModelMetadata(self, request, context):
        self._check_model(request.name, request.version, context)
        meta = self.pb.ModelMetadataResponse.TensorMetadata
        return self.pb.ModelMetadataResponse(
            name=self.name,
            versions=[self.version],
            platform=self.model.platform,
            inputs=[
                meta(name=s.name, datatype=s.datatype, shape=s.shape) for s in self.model.inputs
            ],
            outputs=[
                meta(name=s.name, datatype=s.datatype, shape=s.shape) for s in self.model.outputs
            ],
        )

    def ModelConfig(self, request, context):
        self._check_model(request.name, request.version, context)
        c = self.config_pb
        cut = 1 if self.max_batch_size > 0 else 0  # batching models state dims without the batch

        def dtype(datatype: str) -> int:
            return c.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")

        return self.pb.ModelConfigResponse(
            config=c.ModelConfig(
                name=self.name,
                platform=self.model.platform,
                backend=self.model.backend,
                max_batch_size=self.max_batch_size,
                input=[
                    c.ModelInput(name=s.name, data_type=dtype(s.datatype), dims=s.shape[cut:])
                    for s in self.model.inputs
                ],
                output=[
                    c.ModelOutput(name=s.name, data_type=dtype(s.datatype), dims=s.shape[cut:])
                    for s in self.model.outputs
                ],
                instance_group=[
                    c.ModelInstanceGroup(
                        name=self.name,
                        count=1,
                        kind=(
                            c.ModelInstanceGroup.KIND_GPU
                            if self.model.on_gpu
                            else c.ModelInstanceGroup.KIND_CPU
                        ),
                    )
                ],
            )
        )

    def ModelStatistics(self, request, context):
        if request.name:
            self._check_model(request.name, request.version, context)
        return self.pb.ModelStatisticsResponse(
            model_stats=[self.stats.to_proto(self.pb, self.name, self.version)]
        )

    def RepositoryIndex(self, request, context):
        index = self.pb.RepositoryIndexResponse.ModelIndex(
            name=self.name, version=self.version, state="READY"
        )
        return self.pb.RepositoryIndexResponse(models=[index])

    # -- inference ----------------------------------------------------------------------------

    def _decode(self, request) -> tuple[dict, list[str]]:
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise TensorError(
                f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; "
                "with raw contents every input needs one"
            )
        feeds = {}
        for i, tensor in enumerate(request.inputs):
            spec = self._inputs.get(tensor.name)
            if spec is None:
                raise TensorError(
                    f"unknown input '{tensor.name}'; the model's inputs are {sorted(self._inputs)}"
                )
            if tensor.name in feeds:
                raise TensorError(f"input '{tensor.name}' given twice")
            if tensor.datatype != spec.datatype:
                raise TensorError(
                    f"input '{tensor.name}': datatype {tensor.datatype!r}, the model wants {spec.datatype}"
                )
            shape = check_shape(spec, tensor.shape)
            if self.max_batch_size > 0 and shape[0] > self.max_batch_size:
                raise TensorError(
                    f"input '{tensor.name}': batch {shape[0]} exceeds max_batch_size {self.max_batch_size}"
                )
            if raw:
                if tensor.HasField("contents"):
                    raise TensorError(
                        f"input '{tensor.name}' has both contents and raw_input_contents"
                    )
                feeds[tensor.name] = from_raw(tensor.name, spec.datatype, shape, raw[i])
            else:
                feeds[tensor.name] = from_contents(
                    tensor.name, spec.datatype, shape, tensor.contents
                )
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise TensorError(f"missing inputs {missing}")
        names = [o.name for o in request.outputs] or self._outputs
        unknown = [n for n in names if n not in self._outputs]
        if unknown:
            raise TensorError(f"unknown outputs {unknown}; the model's outputs are {self._outputs}")
        return feeds, names

    def _infer(self, request, context):
        self._check_model(request.model_name, request.model_version, context)
        t0 = time.monotonic_ns()
        try:
            feeds, names = self._decode(request)
        except TensorError as e:
            self.stats.fail(time.monotonic_ns() - t0)
            raise RpcFail(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        t1 = time.monotonic_ns()
        try:
            outputs = self.model.run(feeds, names)
        except TensorError as e:
            self.stats.fail(time.monotonic_ns() - t0)
            raise RpcFail(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        except Exception as e:  # the runtime's own failure: report it, keep serving
            self.stats.fail(time.monotonic_ns() - t0)
            raise RpcFail(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}") from None
        t2 = time.monotonic_ns()
        tensor = self.pb.ModelInferResponse.InferOutputTensor
        response = self.pb.ModelInferResponse(
            model_name=self.name, model_version=self.version, id=request.id
        )
        for n in names:
            array = outputs[n]
            response.outputs.append(tensor(name=n, datatype=datatype_of(array), shape=array.shape))
            response.raw_output_contents.append(to_raw(array))
        t3 = time.monotonic_ns()
        first = next(iter(feeds.values()))
        batch = first.shape[0] if self.max_batch_size > 0 and first.ndim else 1
        self.stats.success(batch, t1 - t0, t2 - t1, t3 - t2)
        return response

    def ModelInfer(self, request, context):
        try:
            return self._infer(request, context)
        except RpcFail as e:
            context.abort(e.code, str(e))

    def ModelStreamInfer(self, request_iterator, context):
        for request in request_iterator:
            if request.model_name != self.name or request.model_version not in ("", self.version):
                msg = f"unknown model '{request.model_name}' version '{request.model_version}'"
                yield self.pb.ModelStreamInferResponse(error_message=msg)
                continue
            try:
                yield self.pb.ModelStreamInferResponse(infer_response=self._infer(request, context))
            except RpcFail as e:
                yield self.pb.ModelStreamInferResponse(error_message=str(e))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--listen", default="127.0.0.1:8001", help="HOST:PORT to bind (port 0: any free port)"
    )
    p.add_argument("--name", help="model name the sidecar answers to")
    p.add_argument("--version", default="1", help="model version it reports (default 1)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--onnx", metavar="PATH", help="ONNX model, run on onnxruntime CPU (default backend)"
    )
    src.add_argument(
        "--torch-cuda",
        metavar="PY_FILE:FACTORY",
        help="torch module from FACTORY(device), run on CUDA",
    )
    p.add_argument("--torch-device", default="cuda", help=argparse.SUPPRESS)  # tests without a GPU
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=0,
        help="report this max_batch_size in ModelConfig (every tensor's first dim must be -1)",
    )
    p.add_argument("--workers", type=int, default=8, help="gRPC worker threads")
    p.add_argument(
        "--ort-threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)"
    )
    p.add_argument("--grace", type=float, default=5.0, help="seconds running calls get on SIGTERM")
    p.add_argument("--gen-only", action="store_true", help="generate the Python stubs and exit")
    args = p.parse_args(argv)
    if not args.gen_only and (not args.name or not (args.onnx or args.torch_cuda)):
        p.error("--name and one of --onnx / --torch-cuda are required")
    return args


def serve(args: argparse.Namespace) -> int:
    pb, config_pb, pb_grpc = stubs.load()
    if args.torch_cuda:
        model = TorchBackend(args.torch_cuda, args.torch_device)
    else:
        model = OnnxBackend(args.onnx, args.ort_threads)
    if args.max_batch_size > 0:
        fixed = [s.name for s in model.inputs + model.outputs if not s.shape or s.shape[0] != -1]
        if fixed:
            raise BackendError(
                f"--max-batch-size needs a variable first dimension; {fixed} have none"
            )

    service_cls = type("Service", (InferenceService, pb_grpc.GRPCInferenceServiceServicer), {})
    service = service_cls(pb, config_pb, args.name, args.version, model, args.max_batch_size)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="infer"),
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    host, _, _ = args.listen.rpartition(":")
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        raise BackendError(f"cannot listen on {args.listen}: {e}") from e
    if not port:
        raise BackendError(f"cannot listen on {args.listen}")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"listening on {host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(args.grace).wait()
    print(f"{SERVER_NAME}: stopped", file=sys.stderr, flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.gen_only:
            print(f"stubs in {stubs.generate()}")
            return 0
        return serve(args)
    except (BackendError, stubs.StubError) as e:
        print(f"{SERVER_NAME}: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
