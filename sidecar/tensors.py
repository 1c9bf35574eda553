"""KServe v2 tensors <-> numpy arrays: datatype names, raw little-endian bytes, typed contents.

Raw layout (`raw_input_contents` / `raw_output_contents`): elements in row-major order,
little-endian, packed; BOOL is one byte per element; a BYTES element is a 4-byte
little-endian length followed by that many bytes. Every decoding failure raises
`TensorError`, which the server answers INVALID_ARGUMENT.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import prod

import numpy as np

try:  # onnx depends on ml_dtypes; without it BF16 tensors are refused.
    from ml_dtypes import bfloat16 as _BF16
except ImportError:  # pragma: no cover
    _BF16 = None


class TensorError(ValueError):
    """A tensor the request describes inconsistently (type, shape, byte count)."""


# KServe datatype name -> numpy dtype (object for BYTES).
NUMPY = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
if _BF16 is not None:
    NUMPY["BF16"] = np.dtype(_BF16)

# numpy dtype -> KServe datatype name (str and bytes arrays are BYTES).
KSERVE = {v: k for k, v in NUMPY.items()}

# The `InferTensorContents` list that carries each datatype (FP16 and BF16 have none).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


@dataclass(frozen=True)
class TensorSpec:
    """A model tensor as ModelMetadata states it: -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def datatype_of(array: np.ndarray) -> str:
    """The KServe datatype name of a numpy array; raises TensorError for other dtypes."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return KSERVE[array.dtype.newbyteorder("=")]
    except KeyError:
        raise TensorError(f"numpy dtype {array.dtype} has no KServe datatype") from None


def check_shape(spec: TensorSpec, shape: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """Checks a request shape against the model's; returns it as a tuple."""
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"input '{spec.name}': shape {list(shape)} has a negative dimension")
    if len(shape) != len(spec.shape) or any(m >= 0 and m != d for m, d in zip(spec.shape, shape)):
        raise TensorError(
            f"input '{spec.name}': shape {list(shape)} does not match the model's "
            f"{list(spec.shape)} (-1 = any size)"
        )
    return shape


def _split_bytes(buf: bytes, count: int, name: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(buf):
            raise TensorError(
                f"input '{name}': raw BYTES content ends inside element {i} of {count}"
            )
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + n > len(buf):
            raise TensorError(
                f"input '{name}': raw BYTES element {i} runs past the end of the content"
            )
        out[i] = bytes(buf[pos : pos + n])
        pos += n
    if pos != len(buf):
        raise TensorError(
            f"input '{name}': {len(buf) - pos} bytes left after {count} BYTES elements"
        )
    return out


def from_raw(name: str, datatype: str, shape: tuple[int, ...], buf: bytes) -> np.ndarray:
    """Decodes one entry of `raw_input_contents`."""
    count = prod(shape)
    if datatype == "BYTES":
        return _split_bytes(buf, count, name).reshape(shape)
    dtype = NUMPY[datatype]
    want = count * dtype.itemsize
    if len(buf) != want:
        raise TensorError(
            f"input '{name}': {len(buf)} raw bytes, but {datatype} {list(shape)} needs {want}"
        )
    return (
        np.frombuffer(buf, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
    )


def from_contents(name: str, datatype: str, shape: tuple[int, ...], contents) -> np.ndarray:
    """Decodes the typed `contents` of one input tensor."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise TensorError(
            f"input '{name}': {datatype} has no typed contents; send raw_input_contents"
        )
    for other in set(CONTENTS_FIELD.values()) - {field}:
        if len(getattr(contents, other)):
            raise TensorError(f"input '{name}': {datatype} data must be in {field}, not {other}")
    values = getattr(contents, field)
    count = prod(shape)
    if len(values) != count:
        raise TensorError(
            f"input '{name}': {len(values)} elements in {field}, but shape {list(shape)} holds {count}"
        )
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    dtype = NUMPY[datatype]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if count and (min(values) < info.min or max(values) > info.max):
            raise TensorError(f"input '{name}': a value in {field} does not fit {datatype}")
    return np.asarray(values, dtype=dtype).reshape(shape)


def to_raw(array: np.ndarray) -> bytes:
    """Encodes one output array for `raw_output_contents`."""
    if array.dtype.kind in "OSU":
        parts = []
        for item in array.reshape(-1):
            b = item.encode() if isinstance(item, str) else bytes(item)
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
