"""The sidecar's model backends: ONNX Runtime on CPU, and a PyTorch module on CUDA.

A backend states its tensors (`inputs`, `outputs`: TensorSpec lists) and runs one request:
`run(feeds, names) -> {name: array}`, with numpy arrays in and out.

The torch backend loads `FILE.py:FACTORY`. The factory is called with the device string
and returns `(module, inputs, outputs)`, where inputs and outputs are lists of
`(name, datatype, shape)` such as `("x", "FP32", [-1, 4])`. The module is called with the
inputs as positional tensors in that order and returns one tensor, a tuple or list in the
order of `outputs`, or a dict keyed by output name:

    def make(device):
        net = torch.nn.Linear(4, 2).to(device).eval()
        return net, [("x", "FP32", [-1, 4])], [("y", "FP32", [-1, 2])]
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from tensors import NUMPY, TensorError, TensorSpec

# ONNX Runtime's type strings -> KServe datatype names.
_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
    "tensor(bfloat16)": "BF16",
}


class BackendError(RuntimeError):
    """The model could not be loaded (bad file, missing package, no device)."""


def _ort_spec(arg) -> TensorSpec:
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        raise BackendError(f"tensor '{arg.name}' has type {arg.type}, which KServe v2 cannot carry")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape)


class OnnxBackend:
    """An ONNX model on ONNX Runtime's CPU execution provider (sessions are thread-safe)."""

    platform = "onnxruntime_onnx"
    backend = "onnxruntime"
    on_gpu = False

    def __init__(self, path: str, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError(f"onnxruntime is not installed ({e}); run `make venv`") from e
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"cannot load {path} in onnxruntime: {e}") from e
        self.inputs = [_ort_spec(a) for a in self._session.get_inputs()]
        self.outputs = [_ort_spec(a) for a in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        for spec in self.inputs:  # ONNX Runtime wants str, not bytes, for string tensors
            if spec.datatype == "BYTES":
                try:
                    feeds[spec.name] = np.vectorize(
                        lambda b: b.decode("utf-8") if isinstance(b, bytes) else b, otypes=[object]
                    )(feeds[spec.name])
                except UnicodeDecodeError as e:
                    raise TensorError(
                        f"input '{spec.name}': BYTES element is not UTF-8: {e}"
                    ) from e
        return dict(zip(names, self._session.run(names, feeds)))


class TorchBackend:
    """A PyTorch module from `FILE.py:FACTORY` on one device (CUDA by default)."""

    platform = "pytorch_libtorch"
    backend = "pytorch"

    def __init__(self, target: str, device: str = "cuda"):
        try:
            import torch
        except ImportError as e:
            raise BackendError(
                "--torch-cuda needs PyTorch, which is not installed in this Python "
                f"({e}); install a CUDA build of torch into the venv"
            ) from e
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"--torch-cuda: torch {torch.__version__} sees no CUDA device")
        file, sep, factory = target.rpartition(":")
        if not sep or not file or not factory:
            raise BackendError(f"--torch-cuda wants PY_FILE:FACTORY, got '{target}'")
        spec = importlib.util.spec_from_file_location(f"conduit_torch_{Path(file).stem}", file)
        if spec is None or spec.loader is None or not Path(file).is_file():
            raise BackendError(f"--torch-cuda: cannot load Python file {file}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        make = getattr(module, factory, None)
        if not callable(make):
            raise BackendError(f"--torch-cuda: {file} has no callable '{factory}'")
        try:
            net, inputs, outputs = make(device)
        except (TypeError, ValueError) as e:
            raise BackendError(
                f"--torch-cuda: {factory}(device) must return (module, inputs, outputs): {e}"
            ) from e
        self.inputs = [self._spec(t) for t in inputs]
        self.outputs = [self._spec(t) for t in outputs]
        self._torch, self._net, self._device = torch, net, torch.device(device)
        self.on_gpu = device.startswith("cuda")
        # One model on one device: requests take turns (CUDA work is queued on one stream anyway).
        self._lock = threading.Lock()

    @staticmethod
    def _spec(t) -> TensorSpec:
        name, datatype, shape = t
        if datatype not in NUMPY:
            raise BackendError(f"tensor '{name}': unknown KServe datatype {datatype}")
        if datatype == "BYTES":
            raise BackendError(f"tensor '{name}': BYTES tensors cannot be torch tensors")
        return TensorSpec(str(name), datatype, tuple(int(d) for d in shape))

    def _to_torch(self, array: np.ndarray):
        if array.dtype == NUMPY.get("BF16"):
            t = self._torch.from_numpy(array.view(np.int16)).view(self._torch.bfloat16)
        else:
            if not array.flags.writeable:  # torch wants writable memory (raw inputs are views)
                array = array.copy()
            t = self._torch.from_numpy(np.ascontiguousarray(array))
        return t.to(self._device, non_blocking=True)

    def _to_numpy(self, t) -> np.ndarray:
        t = t.detach()
        if t.dtype == self._torch.bfloat16:
            return t.view(self._torch.int16).cpu().numpy().view(NUMPY["BF16"])
        return t.cpu().numpy()

    def run(self, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        with self._lock, self._torch.inference_mode():
            args = [self._to_torch(feeds[spec.name]) for spec in self.inputs]
            out = self._net(*args)
            if isinstance(out, dict):
                got = dict(out)
            elif isinstance(out, (tuple, list)):
                got = {spec.name: t for spec, t in zip(self.outputs, out)}
            else:
                got = {self.outputs[0].name: out}
            missing = [n for n in names if n not in got]
            if missing:
                raise RuntimeError(f"the torch module returned no output {missing}")
            return {n: self._to_numpy(got[n]) for n in names}
