#!/usr/bin/env python3
"""Small ONNX fixtures for the host crate's ONNX metadata parser.

Usage (from the repo root; `make fixtures` runs it in .venv):

    .venv/bin/python scripts/make_fixtures.py [OUT_DIR]    # default testdata/fixtures

Writes three files to OUT_DIR, byte-for-byte the same on every run:

- add.onnx          input `x` FLOAT ["batch", 4]; output `y` = x + a constant
                    initializer `bias` of shape [4]. Opset 17.
- identity_i64.onnx input `ids` INT64 ["batch", "seq"]; output `ids_out` via Identity.
- garbage.onnx      4 KiB of seeded random bytes that are NOT a valid ModelProto.

Each model passes onnx.checker.check_model; the garbage is checked to fail to parse.
"""
import os
import sys

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# The IR version that goes with opset 17, so older runtimes load the fixtures too
# (helper.make_model would otherwise stamp the newest IR the package knows).
IR_VERSION = 8
PRODUCER = "conduit-make-fixtures"
GARBAGE_SEED = 20240917
GARBAGE_LEN = 4096


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def add_model() -> onnx.ModelProto:
    bias = numpy_helper.from_array(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["y"], name="add")],
        "add",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[bias],
    )
    return _model(graph)


def identity_i64_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["ids_out"], name="identity")],
        "identity_i64",
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        outputs=[helper.make_tensor_value_info("ids_out", TensorProto.INT64, ["batch", "seq"])],
    )
    return _model(graph)


def garbage() -> bytes:
    data = np.random.default_rng(GARBAGE_SEED).bytes(GARBAGE_LEN)
    try:
        onnx.ModelProto().ParseFromString(data)
    except DecodeError:
        return data
    raise SystemExit("garbage.onnx parsed as a ModelProto; pick another GARBAGE_SEED")


def main() -> int:
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "testdata/fixtures"
    os.makedirs(out_dir, exist_ok=True)
    files = {
        "add.onnx": add_model().SerializeToString(deterministic=True),
        "identity_i64.onnx": identity_i64_model().SerializeToString(deterministic=True),
        "garbage.onnx": garbage(),
    }
    for name, data in files.items():
        path = os.path.join(out_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
