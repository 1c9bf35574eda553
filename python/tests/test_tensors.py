"""The tensor conversions of the pure-Python layer (no server needed): numpy and Python
data to KServe v2 raw form and back."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import conduit
from conduit._tensors import from_wire, to_wire


def payload(data) -> bytes:
    return bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data


def test_numeric_arrays_keep_their_dtype_little_endian():
    for dtype, name in [
        (np.bool_, "BOOL"), (np.uint8, "UINT8"), (np.uint16, "UINT16"), (np.uint32, "UINT32"),
        (np.uint64, "UINT64"), (np.int8, "INT8"), (np.int16, "INT16"), (np.int32, "INT32"),
        (np.int64, "INT64"), (np.float16, "FP16"), (np.float32, "FP32"), (np.float64, "FP64"),
    ]:
        a = np.arange(6).reshape(2, 3).astype(dtype)
        datatype, shape, data = to_wire("x", a, None)
        assert (datatype, shape) == (name, [2, 3])
        assert payload(data) == a.astype(a.dtype.newbyteorder("<")).tobytes()
        back = from_wire(datatype, shape, payload(data))
        np.testing.assert_array_equal(back, a)
    big = np.array([1.5, -2.0], dtype=">f8")
    assert payload(to_wire("x", big, None)[2]) == struct.pack("<2d", 1.5, -2.0)


def test_python_data_takes_the_declared_datatype_when_it_fits():
    assert to_wire("x", [[1, 2]], "FP32")[0] == "FP32"
    assert to_wire("x", [[1, 2]], "INT32")[0] == "INT32"
    assert to_wire("x", [1.5], "INT64")[0] == "FP64", "no silent truncation"
    assert to_wire("x", [300], "UINT8")[0] == "INT64", "no silent wrap-around"
    assert to_wire("x", [True], None)[0] == "BOOL"
    assert to_wire("x", 7, None)[:2] == ("INT64", [])
    # A numpy array is sent as it is, whatever is declared.
    assert to_wire("x", np.ones(2, np.float64), "FP32")[0] == "FP64"


def test_strings_and_bytes_become_bytes_tensors():
    datatype, shape, data = to_wire("t", [["héllo"], [b"\x00\xff"]], None)
    assert (datatype, shape) == ("BYTES", [2, 1])
    assert data == struct.pack("<I", 6) + "héllo".encode() + struct.pack("<I", 2) + b"\x00\xff"
    back = from_wire("BYTES", shape, data)
    assert back.dtype == object and back.tolist() == [["héllo".encode()], [b"\x00\xff"]]
    assert to_wire("t", "one", None)[:2] == ("BYTES", [])
    assert to_wire("t", np.array(["a", "bc"]), None)[2] == b"\x01\0\0\0a\x02\0\0\0bc"
    with pytest.raises(conduit.InvalidArgument):
        to_wire("t", np.array(["a", 3], dtype=object), None)


def test_unsupported_or_malformed_data_is_invalid():
    with pytest.raises(conduit.InvalidArgument):
        to_wire("x", np.ones(2, np.complex64), None)
    with pytest.raises(conduit.InvalidArgument):
        to_wire("x", [[1, 2], [3]], None)
    with pytest.raises(conduit.InvalidArgument):
        from_wire("BYTES", [2], struct.pack("<I", 1) + b"a" + struct.pack("<I", 9) + b"b")
    with pytest.raises(conduit.InvalidArgument):
        from_wire("FP99", [1], b"\0\0\0\0")


def test_raw_tensors_pass_through():
    t = conduit.Tensor("BF16", (2,), b"\x80\x3f\x00\x40")
    assert to_wire("x", t, "FP32") == ("BF16", [2], b"\x80\x3f\x00\x40")
    assert from_wire("BF16", [2], t.data).dtype == np.uint16


def test_numeric_output_is_a_read_only_view():
    buf = np.arange(4, dtype="<i4").tobytes()
    a = from_wire("INT32", [2, 2], buf)
    assert a.tolist() == [[0, 1], [2, 3]] and not a.flags.writeable
    assert from_wire("FP32", [0, 4], b"").shape == (0, 4)


def test_errors_are_typed_by_kind():
    from conduit._errors import _from_kind

    for kind, cls in [
        ("InvalidArgument", conduit.InvalidArgument),
        ("SessionExpired", conduit.SessionExpired),
        ("ValueReleased", conduit.ValueReleased),
        ("Internal", conduit.InternalError),
        ("SomethingNew", conduit.InternalError),
    ]:
        e = _from_kind(kind, "why")
        assert type(e) is cls and isinstance(e, conduit.ConduitError) and str(e) == "why"
    assert issubclass(conduit.DeadlineExceeded, TimeoutError)
    assert issubclass(conduit.InvalidArgument, ValueError)
