"""Tensors across the client boundary: numpy arrays and Python data in, numpy arrays out.

On the wire a tensor is KServe v2's raw form: a datatype name (``"FP32"``…), a shape and
the elements, little-endian, row-major; a ``BYTES`` element is a 4-byte little-endian
length followed by its bytes.

In: a numpy array keeps its dtype (the server checks it against the module's signature);
Python lists and scalars take the datatype the module declares for that input when the
values fit it (ints into ``INT32``, floats into ``FP32``…), else numpy's own choice; str and
bytes become ``BYTES`` (str as UTF-8). The payload is copied once, into an immutable
buffer the client may replay later: mutating the array after the call changes nothing.

Out: a numeric tensor is a read-only numpy view over the buffer the client received (no
copy); ``BYTES`` is an object array of ``bytes``. ``BF16`` comes out as ``uint16`` raw bits
(numpy has no bfloat16).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._errors import InvalidArgument

__all__ = ["Tensor", "DATATYPES", "numpy_dtype"]

#: KServe v2 datatype → numpy dtype (little-endian). ``BYTES`` is an object array.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

# numpy (kind, itemsize) → KServe v2 datatype; BF16 is never inferred.
_BY_KIND = {
    ("b", 1): "BOOL",
    ("u", 1): "UINT8",
    ("u", 2): "UINT16",
    ("u", 4): "UINT32",
    ("u", 8): "UINT64",
    ("i", 1): "INT8",
    ("i", 2): "INT16",
    ("i", 4): "INT32",
    ("i", 8): "INT64",
    ("f", 2): "FP16",
    ("f", 4): "FP32",
    ("f", 8): "FP64",
}

_LEN = struct.Struct("<I")


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype of a KServe v2 datatype (``object`` for ``BYTES``)."""
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise InvalidArgument(f"unknown datatype {datatype!r}") from None


@dataclass(frozen=True)
class Tensor:
    """A tensor already in KServe v2 raw form, sent as it is: for datatypes numpy lacks
    (``BF16``) or payloads encoded elsewhere.

    ``data`` holds the elements little-endian and row-major; a ``BYTES`` element is a
    4-byte little-endian length and its bytes. The server checks that it matches
    ``datatype`` and ``shape``.
    """

    #: KServe v2 datatype name: ``"FP32"``, ``"INT64"``, ``"BYTES"``…
    datatype: str
    #: Dimensions.
    shape: Tuple[int, ...]
    #: The raw elements.
    data: bytes


# What the native layer takes for one input: a remote value, or (datatype, shape, data)
# where data is `bytes` (shared, no copy) or a C-contiguous uint8 buffer (copied once).
Wire = Tuple[str, List[int], Any]


def to_wire(name: str, obj: Any, declared: Optional[str]) -> Wire:
    """One input as (datatype, shape, data); ``declared`` is the module's datatype for it."""
    if isinstance(obj, Tensor):
        return (obj.datatype, [int(d) for d in obj.shape], bytes(obj.data))
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
    else:
        arr = _from_python(name, obj, declared)
    return _array_to_wire(name, arr)


def _from_python(name: str, obj: Any, declared: Optional[str]) -> np.ndarray:
    if isinstance(obj, (str, bytes, bytearray, memoryview)):
        out = np.empty((), dtype=object)
        out[()] = obj
        return out
    try:
        arr = np.asarray(obj)
    except ValueError as e:  # ragged nesting, or str and bytes mixed
        if not isinstance(e, UnicodeError):
            raise InvalidArgument(f"input `{name}`: not a rectangular array: {e}") from None
        arr = None
    if arr is None or arr.dtype.kind in "USO":
        # Keep str and bytes elements as they are (numpy would turn bytes into str).
        try:
            arr = np.array(obj, dtype=object)
        except ValueError as e:
            raise InvalidArgument(f"input `{name}`: not a rectangular array: {e}") from None
        if any(isinstance(e, (list, tuple)) for e in arr.reshape(-1)):
            raise InvalidArgument(f"input `{name}`: not a rectangular array")
        return arr
    target = DATATYPES.get(declared or "")
    if target is None or target.kind not in "biuf" or arr.dtype == target:
        return arr
    if _fits(arr, target):
        return arr.astype(target)
    return arr  # the server says what it expected


def _fits(arr: np.ndarray, target: np.dtype) -> bool:
    """Whether Python-given numbers convert to ``target`` without changing value."""
    src = arr.dtype.kind
    if target.kind == "f":
        return src in "biuf"
    if target.kind in "iu" and src in "biu":
        if arr.size == 0:
            return True
        info = np.iinfo(target)
        return bool(arr.min() >= info.min and arr.max() <= info.max)
    if target.kind == "b" and src == "b":
        return True
    return False


def _array_to_wire(name: str, arr: np.ndarray) -> Wire:
    shape = [int(d) for d in arr.shape]
    if arr.dtype.kind in "USO":
        return ("BYTES", shape, _encode_bytes(name, arr))
    datatype = _BY_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if datatype is None:
        raise InvalidArgument(
            f"input `{name}`: numpy dtype {arr.dtype} has no KServe v2 datatype "
            "(use bool, (u)int8-64, float16/32/64, str/bytes, or conduit.Tensor)"
        )
    little = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
    arr = np.ascontiguousarray(arr, dtype=little)
    return (datatype, shape, arr.reshape(-1).view(np.uint8))


def _encode_bytes(name: str, arr: np.ndarray) -> bytes:
    parts = []
    for element in arr.reshape(-1):
        if isinstance(element, str):
            b = element.encode("utf-8")
        elif isinstance(element, (bytes, bytearray, memoryview)):
            b = bytes(element)
        else:
            raise InvalidArgument(
                f"input `{name}`: a BYTES tensor holds str or bytes, "
                f"got an element of type {type(element).__name__}"
            )
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def from_wire(datatype: str, shape: Sequence[int], buf: Any) -> np.ndarray:
    """A numpy array over a received tensor's buffer (no copy, read-only, for numeric
    datatypes; an object array of ``bytes`` for ``BYTES``)."""
    shape = tuple(int(d) for d in shape)
    if datatype == "BYTES":
        return _decode_bytes(shape, memoryview(buf))
    dtype = numpy_dtype(datatype)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _decode_bytes(shape: Tuple[int, ...], view: memoryview) -> np.ndarray:
    count = 1
    for d in shape:
        count *= d
    out = np.empty(count, dtype=object)
    pos = 0
    end = len(view)
    for i in range(count):
        if pos + 4 > end:
            raise InvalidArgument("malformed BYTES tensor: truncated element length")
        (n,) = _LEN.unpack_from(view, pos)
        pos += 4
        if pos + n > end:
            raise InvalidArgument("malformed BYTES tensor: element runs past the end")
        out[i] = bytes(view[pos : pos + n])
        pos += n
    return out.reshape(shape)


InputLike = Union[np.ndarray, Tensor, Sequence[Any], str, bytes, int, float, bool]
