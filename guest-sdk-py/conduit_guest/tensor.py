"""Tensors: host-held inputs read on demand, and local outputs returned inline.

An input `Tensor` wraps the host's handle together with the name, dtype and
shape the host sent along, so those cost no call. Its elements cross into
the component only when read (`read_f32()`, `read_raw(offset, length)`…),
and typed reads return `array.array` (no numpy exists for WASI).

`Tensor.from_f32(shape, data)` and the other constructors make a LOCAL
tensor: no host call; its bytes are returned with `process`'s result
(`tensor-value.raw`) and checked by the host there. Returning an input
tensor returns its handle: no copy at all.
"""

from array import array
from math import prod

from componentize_py_types import Err
from wit_world.imports import types as _wit

from .dtype import DataType, dtype_name, element_size, parse_dtype, typecode
from .errors import Error, InvalidInput

__all__ = ["Tensor"]


def _host(call, *args):
    """Runs a fallible host call, raising the SDK's `Error` on failure."""
    try:
        return call(*args)
    except Err as e:
        raise Error._from_wit(e.value) from None


def _check_shape(shape):
    shape = tuple(int(d) for d in shape)
    for d in shape:
        if d < 0:
            raise InvalidInput(f"shape {list(shape)} has a negative dimension")
    return shape


class Tensor:
    """A tensor: an input (or model output) held by the host, or local data to return.

    Attributes `name`, `dtype` and `shape` are known without a host call.
    """

    __slots__ = ("name", "_dtype", "_shape", "_handle", "_data")

    def __init__(self):
        raise TypeError("use Tensor.from_f32(...) and the other constructors, or an input")

    @classmethod
    def _new(cls, name, dtype, shape, handle, data):
        t = object.__new__(cls)
        t.name = name
        t._dtype = dtype
        t._shape = shape
        t._handle = handle
        t._data = data
        return t

    @classmethod
    def _from_wit(cls, named):
        """Wraps a WIT `named-tensor` (a request input or a model output)."""
        return cls._new(named.name, named.dtype, tuple(named.shape), named.tensor, None)

    # -- metadata ---------------------------------------------------------

    @property
    def dtype(self):
        """The element type (a `DataType`)."""
        return self._dtype

    @property
    def shape(self):
        """The dimensions, a tuple of ints."""
        return self._shape

    @property
    def is_local(self):
        """Whether this tensor's data lives in the component (made by a constructor)."""
        return self._handle is None

    def num_elements(self):
        """The number of elements (the product of the shape)."""
        return prod(self._shape)

    def byte_size(self):
        """The size of the raw KServe v2 representation, in bytes.

        Costs a host call only for a `BYTES` input.
        """
        size = element_size(self._dtype)
        if size is not None:
            return size * prod(self._shape)
        if self._handle is not None:
            return self._handle.byte_size()
        return sum(4 + len(item) for item in self._data)

    def __repr__(self):
        where = "local" if self._handle is None else "host"
        return f"Tensor({self.name!r}, {dtype_name(self._dtype)}, {list(self._shape)}, {where})"

    # -- reading ----------------------------------------------------------

    def read_raw(self, offset=0, length=None):
        """Copies `length` raw little-endian bytes starting at byte `offset`
        (to the end when `length` is None) into the component, as `bytes`,
        in the KServe v2 layout (`BYTES`: each element length-prefixed).

        Reading just the rows you need is the cheap path for large inputs.
        Raises `InvalidInput` when the range is outside the tensor.
        """
        if length is None:
            if offset == 0 and self._handle is not None:
                return self._handle.read_all_raw()  # one host call, even for BYTES
            length = self.byte_size() - offset
        if offset < 0 or length < 0:
            raise InvalidInput(f"read_raw({offset}, {length}): negative offset or length")
        if self._handle is not None:
            return _host(self._handle.read_raw, offset, length)
        raw = self._local_raw()
        if offset + length > len(raw):
            raise InvalidInput(
                f"read_raw({offset}, {length}) is outside the tensor's {len(raw)} bytes"
            )
        return raw[offset : offset + length]

    def _typed(self, expected, code):
        if self._dtype not in expected:
            names = " or ".join(dtype_name(d) for d in expected)
            raise InvalidInput(
                f"tensor `{self.name}`: expected a {names} tensor, got {dtype_name(self._dtype)}"
                if self.name
                else f"expected a {names} tensor, got {dtype_name(self._dtype)}"
            )
        if self._handle is None:
            return array(code, self._data)
        out = array(code)
        out.frombytes(self.read_raw())
        return out

    def read_f32(self):
        """The elements of an `FP32` tensor as `array('f')`."""
        return self._typed((DataType.FP32,), "f")

    def read_f64(self):
        """The elements of an `FP64` tensor as `array('d')`."""
        return self._typed((DataType.FP64,), "d")

    def read_i8(self):
        """The elements of an `INT8` tensor as `array('b')`."""
        return self._typed((DataType.INT8,), "b")

    def read_i16(self):
        """The elements of an `INT16` tensor as `array('h')`."""
        return self._typed((DataType.INT16,), "h")

    def read_i32(self):
        """The elements of an `INT32` tensor as `array('i')`."""
        return self._typed((DataType.INT32,), "i")

    def read_i64(self):
        """The elements of an `INT64` tensor as `array('q')`."""
        return self._typed((DataType.INT64,), "q")

    def read_u8(self):
        """The elements of a `UINT8` tensor as `array('B')`."""
        return self._typed((DataType.UINT8,), "B")

    def read_u16(self):
        """The elements of a `UINT16` tensor as `array('H')`."""
        return self._typed((DataType.UINT16,), "H")

    def read_u32(self):
        """The elements of a `UINT32` tensor as `array('I')`."""
        return self._typed((DataType.UINT32,), "I")

    def read_u64(self):
        """The elements of a `UINT64` tensor as `array('Q')`."""
        return self._typed((DataType.UINT64,), "Q")

    def read_f16_bits(self):
        """The 16-bit patterns of an `FP16` or `BF16` tensor as `array('H')`."""
        return self._typed((DataType.FP16, DataType.BF16), "H")

    def read_bool(self):
        """The elements of a `BOOL` tensor as a list of bools."""
        return [b != 0 for b in self._typed((DataType.BOOL,), "B")]

    def read_byte_strings(self):
        """The elements of a `BYTES` tensor as a list of `bytes`."""
        if self._dtype != DataType.BYTES:
            raise InvalidInput(f"expected a BYTES tensor, got {dtype_name(self._dtype)}")
        if self._handle is None:
            return list(self._data)
        return _split_bytes(self.read_raw(), Error.internal)

    def to_strings(self):
        """The elements of a `BYTES` tensor as UTF-8 strings.

        Raises `InvalidInput` when an element is not valid UTF-8.
        """
        out = []
        for i, item in enumerate(self.read_byte_strings()):
            try:
                out.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"element {i} is not valid UTF-8") from None
        return out

    def read(self):
        """All elements, typed by dtype: an `array` for numbers (bit patterns for
        FP16/BF16), a list of bools for `BOOL`, a list of `bytes` for `BYTES`."""
        if self._dtype == DataType.BYTES:
            return self.read_byte_strings()
        if self._dtype == DataType.BOOL:
            return self.read_bool()
        return self._typed((self._dtype,), typecode(self._dtype))

    # -- zero-copy views --------------------------------------------------

    def slice(self, start, end):
        """Rows `[start, end)` along the first dimension.

        For an input this is a new host handle sharing its storage (no copy).
        """
        if self._handle is not None:
            h = _host(self._handle.slice, start, end)
            shape = (end - start,) + self._shape[1:]
            return Tensor._new(self.name, self._dtype, shape, h, None)
        if not self._shape or not 0 <= start <= end <= self._shape[0]:
            raise InvalidInput(f"slice({start}, {end}) is outside shape {list(self._shape)}")
        row = prod(self._shape[1:])
        shape = (end - start,) + self._shape[1:]
        return Tensor._new(None, self._dtype, shape, None, self._data[start * row : end * row])

    def reshape(self, shape):
        """The same elements under another shape (for an input: a new host handle, no copy)."""
        shape = _check_shape(shape)
        if prod(shape) != prod(self._shape):
            raise InvalidInput(f"cannot reshape {list(self._shape)} to {list(shape)}")
        if self._handle is not None:
            return Tensor._new(self.name, self._dtype, shape, _host(self._handle.reshape, list(shape)), None)
        return Tensor._new(None, self._dtype, shape, None, self._data)

    def share(self):
        """A second tensor over the same data (to output one input twice)."""
        if self._handle is not None:
            return Tensor._new(self.name, self._dtype, self._shape, self._handle.share(), None)
        return Tensor._new(None, self._dtype, self._shape, None, self._data)

    # -- local tensors ----------------------------------------------------

    @classmethod
    def _local(cls, dtype, shape, data):
        shape = _check_shape(shape)
        n = prod(shape)
        if len(data) != n:
            raise InvalidInput(
                f"{len(data)} elements do not fill shape {list(shape)} ({n} elements)"
            )
        return cls._new(None, dtype, shape, None, data)

    @classmethod
    def _numeric(cls, dtype, shape, data):
        code = typecode(dtype)
        if not (isinstance(data, array) and data.typecode == code):
            data = array(code, data)
        return cls._local(dtype, shape, data)

    @classmethod
    def from_f32(cls, shape, data):
        """A local `FP32` tensor of `shape` from `data` (an `array('f')`, kept as is,
        or any iterable of floats), row-major. No host call.

        Raises `InvalidInput` when the element count does not fill `shape`.
        """
        return cls._numeric(DataType.FP32, shape, data)

    @classmethod
    def from_f64(cls, shape, data):
        """A local `FP64` tensor (see `from_f32`)."""
        return cls._numeric(DataType.FP64, shape, data)

    @classmethod
    def from_i8(cls, shape, data):
        """A local `INT8` tensor (see `from_f32`)."""
        return cls._numeric(DataType.INT8, shape, data)

    @classmethod
    def from_i16(cls, shape, data):
        """A local `INT16` tensor (see `from_f32`)."""
        return cls._numeric(DataType.INT16, shape, data)

    @classmethod
    def from_i32(cls, shape, data):
        """A local `INT32` tensor (see `from_f32`)."""
        return cls._numeric(DataType.INT32, shape, data)

    @classmethod
    def from_i64(cls, shape, data):
        """A local `INT64` tensor (see `from_f32`)."""
        return cls._numeric(DataType.INT64, shape, data)

    @classmethod
    def from_u8(cls, shape, data):
        """A local `UINT8` tensor (see `from_f32`)."""
        return cls._numeric(DataType.UINT8, shape, data)

    @classmethod
    def from_u16(cls, shape, data):
        """A local `UINT16` tensor (see `from_f32`)."""
        return cls._numeric(DataType.UINT16, shape, data)

    @classmethod
    def from_u32(cls, shape, data):
        """A local `UINT32` tensor (see `from_f32`)."""
        return cls._numeric(DataType.UINT32, shape, data)

    @classmethod
    def from_u64(cls, shape, data):
        """A local `UINT64` tensor (see `from_f32`)."""
        return cls._numeric(DataType.UINT64, shape, data)

    @classmethod
    def from_f16_bits(cls, shape, data, bf16=False):
        """A local `FP16` (or, with `bf16=True`, `BF16`) tensor from 16-bit patterns."""
        return cls._numeric(DataType.BF16 if bf16 else DataType.FP16, shape, data)

    @classmethod
    def from_bool(cls, shape, data):
        """A local `BOOL` tensor from an iterable of truth values."""
        return cls._local(DataType.BOOL, shape, array("B", (1 if v else 0 for v in data)))

    @classmethod
    def from_byte_strings(cls, shape, items):
        """A local `BYTES` tensor from an iterable of `bytes`-like items."""
        return cls._local(DataType.BYTES, shape, [bytes(i) for i in items])

    @classmethod
    def from_strings(cls, shape, strings):
        """A local `BYTES` tensor holding `strings` encoded as UTF-8."""
        return cls._local(DataType.BYTES, shape, [str(s).encode("utf-8") for s in strings])

    @classmethod
    def from_raw(cls, dtype, shape, raw):
        """A local tensor from raw little-endian bytes in the KServe v2 layout
        (for `BYTES`, each element is a 4-byte little-endian length then its bytes).

        Raises `InvalidInput` when the byte count does not match `shape`.
        """
        dtype = parse_dtype(dtype)
        raw = bytes(raw)
        if dtype == DataType.BYTES:
            return cls._local(dtype, shape, _split_bytes(raw, InvalidInput))
        code = typecode(dtype) or "B"
        data = array(code)
        if len(raw) % data.itemsize:
            raise InvalidInput(f"{len(raw)} bytes are not a whole number of {dtype_name(dtype)} elements")
        data.frombytes(raw)
        return cls._local(dtype, shape, data)

    def _local_raw(self):
        if self._dtype == DataType.BYTES:
            return b"".join(len(i).to_bytes(4, "little") + i for i in self._data)
        # wasm32 is little-endian: the array's bytes are the KServe v2 layout.
        return self._data.tobytes()

    def _to_wit(self):
        """This tensor as a WIT `tensor-value`: its handle, or its data as `raw`."""
        if self._handle is not None:
            return _wit.TensorValue_Handle(self._handle)
        return _wit.TensorValue_Raw(_wit.RawTensor(self._dtype, list(self._shape), self._local_raw()))


def _split_bytes(raw, error):
    """The items of raw KServe v2 `BYTES` data (4-byte little-endian length, then
    the bytes); `error(message)` is raised for malformed data."""
    items, pos, end = [], 0, len(raw)
    while pos < end:
        if pos + 4 > end:
            raise error("malformed BYTES data: a length prefix is cut off")
        n = int.from_bytes(raw[pos : pos + 4], "little")
        pos += 4
        if pos + n > end:
            raise error("malformed BYTES data: an element runs past the end")
        items.append(raw[pos : pos + n])
        pos += n
    return items
