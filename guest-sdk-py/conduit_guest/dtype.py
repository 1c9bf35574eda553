"""Element types: the WIT `dtype` enum with its KServe v2 names and layouts."""

from wit_world.imports.types import Dtype as DataType

__all__ = ["DataType", "dtype_name", "parse_dtype"]

# Array typecodes of the fixed-size dtypes (the sizes hold on wasm32 and on
# 64-bit hosts alike: no `l`/`L`, whose size differs). FP16/BF16 are bit patterns.
_TYPECODE = {
    DataType.UINT8: "B",
    DataType.UINT16: "H",
    DataType.UINT32: "I",
    DataType.UINT64: "Q",
    DataType.INT8: "b",
    DataType.INT16: "h",
    DataType.INT32: "i",
    DataType.INT64: "q",
    DataType.FP16: "H",
    DataType.BF16: "H",
    DataType.FP32: "f",
    DataType.FP64: "d",
}

_SIZE = {dt: {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4, "i": 4, "f": 4}.get(tc, 8) for dt, tc in _TYPECODE.items()}
_SIZE[DataType.BOOL] = 1

_NAMES = {dt: dt.name for dt in DataType}
_BY_NAME = {name: dt for dt, name in _NAMES.items()}


def dtype_name(dtype):
    """The KServe v2 name of `dtype` (`"FP32"`, `"INT64"`, `"BYTES"`…)."""
    return _NAMES[dtype]


def parse_dtype(value):
    """`value` as a `DataType`: a `DataType` itself or its KServe v2 name (any case).

    Raises `ValueError` for an unknown name.
    """
    if isinstance(value, DataType):
        return value
    try:
        return _BY_NAME[str(value).upper()]
    except KeyError:
        raise ValueError(f"unknown dtype {value!r}; one of {', '.join(_BY_NAME)}") from None


def element_size(dtype):
    """Bytes per element of a fixed-size dtype; `None` for `BYTES`."""
    return _SIZE.get(dtype)


def typecode(dtype):
    """The `array` typecode holding `dtype`'s elements; `None` for `BOOL` and `BYTES`."""
    return _TYPECODE.get(dtype)
