#!/usr/bin/env python3
"""Smoke test of the sidecar: a real server process, a real gRPC client, numbers checked.

    make fixtures sidecar
    .venv/bin/python sidecar/smoke_test.py [FIXTURES_DIR]     # default testdata/fixtures

Starts conduit_sidecar.py on add.onnx (x FP32 [batch, 4] -> y = x + bias) and on
identity_i64.onnx (ids INT64 [batch, seq], --max-batch-size 8) on free ports, calls them
through the stubs generated from proto/inference/grpc_service.proto, compares every output
with onnxruntime run directly, checks the error codes, then stops both with SIGTERM and
expects exit status 0. Exits 1 on the first failed check.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import stubs  # noqa: E402

pb, config_pb, pb_grpc = stubs.load()
checks = 0


def check(cond: bool, what: str) -> None:
    global checks
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    checks += 1


def start(*args: str) -> tuple[subprocess.Popen, str]:
    """Starts a sidecar and waits for its `listening on HOST:PORT` line."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "conduit_sidecar.py"), "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        sys.exit("FAIL: the sidecar printed nothing within 60 s")
    check(line.startswith("listening on 127.0.0.1:"), f"ready line, got {line!r}")
    return proc, line.split()[-1]


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(timeout=30) == 0, f"exit status 0 after SIGTERM, got {proc.returncode}")


def code_of(call, request) -> grpc.StatusCode | None:
    try:
        call(request)
    except grpc.RpcError as e:
        return e.code()
    return None


def infer_request(model: str, name: str, datatype: str, array: np.ndarray, raw: bool = True):
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=array.shape)
    req = pb.ModelInferRequest(model_name=model, id="req-1", inputs=[tensor])
    if raw:
        req.raw_input_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    return req


def output(resp, i: int, dtype) -> np.ndarray:
    out = resp.outputs[i]
    return np.frombuffer(
        resp.raw_output_contents[i], dtype=np.dtype(dtype).newbyteorder("<")
    ).reshape(out.shape)


def smoke_add(fixtures: Path) -> None:
    path = fixtures / "add.onnx"
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    proc, addr = start("--name", "add", "--onnx", str(path))
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(addr))
        check(stub.ServerLive(pb.ServerLiveRequest()).live, "ServerLive")
        check(stub.ServerReady(pb.ServerReadyRequest()).ready, "ServerReady")
        check(stub.ModelReady(pb.ModelReadyRequest(name="add")).ready, "ModelReady add")
        check(
            not stub.ModelReady(pb.ModelReadyRequest(name="other")).ready,
            "ModelReady other = false",
        )
        meta = stub.ServerMetadata(pb.ServerMetadataRequest())
        check(
            meta.name == "conduit-sidecar" and "model_configuration" in meta.extensions,
            f"ServerMetadata {meta}",
        )

        m = stub.ModelMetadata(pb.ModelMetadataRequest(name="add"))
        check(m.platform == "onnxruntime_onnx" and list(m.versions) == ["1"], f"ModelMetadata {m}")
        check(
            [(t.name, t.datatype, list(t.shape)) for t in m.inputs] == [("x", "FP32", [-1, 4])],
            f"inputs {m.inputs}",
        )
        check(
            [(t.name, t.datatype, list(t.shape)) for t in m.outputs] == [("y", "FP32", [-1, 4])],
            f"outputs {m.outputs}",
        )
        check(
            code_of(stub.ModelMetadata, pb.ModelMetadataRequest(name="nope"))
            == grpc.StatusCode.NOT_FOUND,
            "ModelMetadata of another model is NOT_FOUND",
        )

        rng = np.random.default_rng(7)
        for batch in (1, 3, 64):
            x = rng.standard_normal((batch, 4), dtype=np.float32)
            want = reference.run(None, {"x": x})[0]
            resp = stub.ModelInfer(infer_request("add", "x", "FP32", x))
            check(
                resp.model_name == "add" and resp.id == "req-1",
                "response names the model and echoes the id",
            )
            check(
                len(resp.outputs) == 1
                and resp.outputs[0].name == "y"
                and resp.outputs[0].datatype == "FP32"
                and list(resp.outputs[0].shape) == [batch, 4],
                f"output tensor {resp.outputs}",
            )
            check(
                np.array_equal(output(resp, 0, np.float32), want),
                f"raw infer batch {batch} equals onnxruntime",
            )
            check(np.allclose(want - x, [1, 2, 3, 4]), "y = x + bias")

        x = rng.standard_normal((2, 4), dtype=np.float32)
        req = infer_request("add", "x", "FP32", x, raw=False)
        req.inputs[0].contents.fp32_contents.extend(x.reshape(-1).tolist())
        resp = stub.ModelInfer(req)
        check(
            np.array_equal(output(resp, 0, np.float32), reference.run(None, {"x": x})[0]),
            "typed fp32_contents infer equals onnxruntime",
        )

        bad = {
            "unknown input": infer_request("add", "z", "FP32", x),
            "wrong datatype": infer_request("add", "x", "FP64", x.astype(np.float64)),
            "wrong shape": infer_request("add", "x", "FP32", np.zeros((2, 5), np.float32)),
            "wrong rank": infer_request("add", "x", "FP32", np.zeros((8,), np.float32)),
        }
        short = infer_request("add", "x", "FP32", x)
        short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
        bad["short raw contents"] = short
        bad["no inputs"] = pb.ModelInferRequest(model_name="add")
        for what, req in bad.items():
            check(
                code_of(stub.ModelInfer, req) == grpc.StatusCode.INVALID_ARGUMENT,
                f"{what} is INVALID_ARGUMENT",
            )
        check(
            code_of(stub.ModelInfer, infer_request("nope", "x", "FP32", x))
            == grpc.StatusCode.NOT_FOUND,
            "infer on another model is NOT_FOUND",
        )
        req = infer_request("add", "x", "FP32", x)
        req.model_version = "7"
        check(
            code_of(stub.ModelInfer, req) == grpc.StatusCode.NOT_FOUND,
            "infer on another version is NOT_FOUND",
        )

        streamed = list(
            stub.ModelStreamInfer(
                iter([infer_request("add", "x", "FP32", x), bad["unknown input"]])
            )
        )
        check(
            len(streamed) == 2
            and not streamed[0].error_message
            and np.array_equal(
                output(streamed[0].infer_response, 0, np.float32), reference.run(None, {"x": x})[0]
            )
            and "unknown input" in streamed[1].error_message,
            f"ModelStreamInfer {streamed}",
        )

        cfg = stub.ModelConfig(pb.ModelConfigRequest(name="add")).config
        check(
            cfg.name == "add"
            and cfg.max_batch_size == 0
            and cfg.input[0].data_type == config_pb.TYPE_FP32
            and list(cfg.input[0].dims) == [-1, 4],
            f"ModelConfig {cfg}",
        )
        st = stub.ModelStatistics(pb.ModelStatisticsRequest(name="add")).model_stats[0]
        check(
            st.execution_count == 5
            and st.inference_stats.success.count == 5
            and st.inference_stats.fail.count == len(bad) + 1,
            f"ModelStatistics {st}",
        )
        idx = stub.RepositoryIndex(pb.RepositoryIndexRequest())
        check(
            [(i.name, i.state) for i in idx.models] == [("add", "READY")], f"RepositoryIndex {idx}"
        )
        check(
            code_of(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="add"))
            == grpc.StatusCode.UNIMPLEMENTED,
            "RepositoryModelLoad is UNIMPLEMENTED",
        )
    finally:
        if proc.poll() is None:
            stop(proc)


def smoke_int64(fixtures: Path) -> None:
    path = fixtures / "identity_i64.onnx"
    proc, addr = start("--name", "ids", "--onnx", str(path), "--max-batch-size", "8")
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(addr))
        cfg = stub.ModelConfig(pb.ModelConfigRequest(name="ids")).config
        check(
            cfg.max_batch_size == 8
            and list(cfg.input[0].dims) == [-1]
            and cfg.input[0].data_type == config_pb.TYPE_INT64,
            f"batching ModelConfig {cfg}",
        )
        ids = np.array([[101, 2023, -5, 2**40], [0, 1, 2, 3]], dtype=np.int64)
        resp = stub.ModelInfer(infer_request("ids", "ids", "INT64", ids))
        check(
            resp.outputs[0].datatype == "INT64" and np.array_equal(output(resp, 0, np.int64), ids),
            "INT64 raw round trip",
        )
        req = infer_request("ids", "ids", "INT64", ids, raw=False)
        req.inputs[0].contents.int64_contents.extend(ids.reshape(-1).tolist())
        check(
            np.array_equal(output(stub.ModelInfer(req), 0, np.int64), ids), "INT64 typed round trip"
        )
        big = np.zeros((9, 2), np.int64)
        check(
            code_of(stub.ModelInfer, infer_request("ids", "ids", "INT64", big))
            == grpc.StatusCode.INVALID_ARGUMENT,
            "batch over max_batch_size is INVALID_ARGUMENT",
        )
        st = stub.ModelStatistics(pb.ModelStatisticsRequest()).model_stats[0]
        check(
            st.inference_count == 4 and [b.batch_size for b in st.batch_stats] == [2],
            f"batch statistics {st}",
        )
    finally:
        if proc.poll() is None:
            stop(proc)


def main() -> int:
    fixtures = Path(sys.argv[1] if len(sys.argv) > 1 else "testdata/fixtures")
    if not (fixtures / "add.onnx").exists():
        print(f"{fixtures}/add.onnx is missing: run `make fixtures`", file=sys.stderr)
        return 1
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    smoke_add(fixtures)
    smoke_int64(fixtures)
    print(f"sidecar smoke: {checks} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
