"""The SDK's conversions and error mapping, against stand-in host handles."""

import importlib
import struct
from array import array

import pytest
from componentize_py_types import Err
from wit_world.imports import types as wit

import conduit_guest as cg
from conduit_guest import DataType, Tensor


class FakeHandle:
    """A host tensor: raw little-endian bytes."""

    def __init__(self, raw):
        self.raw = bytes(raw)
        self.reads = []

    def byte_size(self):
        return len(self.raw)

    def read_all_raw(self):
        self.reads.append("all")
        return self.raw

    def read_raw(self, offset, length):
        self.reads.append((offset, length))
        if offset + length > len(self.raw):
            raise Err(wit.Error_InvalidInput("range outside the tensor"))
        return self.raw[offset : offset + length]

    def share(self):
        return FakeHandle(self.raw)


def named(name, dtype, shape, raw):
    return wit.NamedTensor(name, dtype, list(shape), FakeHandle(raw))


def f32_input(name, shape, values):
    return named(name, DataType.FP32, shape, array("f", values).tobytes())


def test_typed_reads_and_metadata():
    t = Tensor._from_wit(f32_input("x", [2, 2], [1, 2, 3, 4]))
    assert (t.name, t.dtype, t.shape, t.num_elements(), t.byte_size()) == ("x", DataType.FP32, (2, 2), 4, 16)
    assert t.read_f32() == array("f", [1, 2, 3, 4])
    assert t.read_raw(4, 4) == struct.pack("<f", 2.0)
    with pytest.raises(cg.InvalidInput, match="expected a INT64 tensor, got FP32"):
        t.read_i64()
    with pytest.raises(cg.InvalidInput, match="range outside"):
        t.read_raw(12, 8)
    s = Tensor._from_wit(named("s", DataType.BYTES, [2], b"\x02\0\0\0hi\x03\0\0\0\xc3\xa9!"))
    assert s.to_strings() == ["hi", "é!"]
    bad = Tensor._from_wit(named("s", DataType.BYTES, [1], b"\x01\0\0\0\xff"))
    with pytest.raises(cg.InvalidInput, match="element 0 is not valid UTF-8"):
        bad.to_strings()


def test_local_tensors_lower_to_raw_and_handles_pass_through():
    out = cg.Outputs().add("y", Tensor.from_f32([2], [0.5, 1.5]))
    out["s"] = Tensor.from_strings([2], ["a", "bc"])
    out["b"] = Tensor.from_bool([3], [True, 0, 1])
    x = Tensor._from_wit(f32_input("x", [1], [7]))
    out["x"] = x
    out["x2"] = x
    values = {v.name: v.value for v in out._to_wit()}
    assert values["y"] == wit.TensorValue_Raw(wit.RawTensor(DataType.FP32, [2], array("f", [0.5, 1.5]).tobytes()))
    assert values["s"].value.raw == b"\x01\0\0\0a\x02\0\0\0bc"
    assert values["b"].value.raw == b"\x01\x00\x01"
    assert isinstance(values["x"], wit.TensorValue_Handle) and isinstance(values["x2"], wit.TensorValue_Handle)
    assert values["x"].value is not values["x2"].value, "a handle output twice is shared"
    with pytest.raises(cg.InvalidInput, match="3 elements do not fill shape"):
        Tensor.from_f32([2, 2], [1, 2, 3])
    with pytest.raises(TypeError, match="must be a conduit_guest.Tensor"):
        cg.Outputs({"y": [1.0]})
    r = Tensor.from_raw("BYTES", [2], b"\x01\0\0\0a\x00\0\0\0")
    assert r.read_byte_strings() == [b"a", b""]
    assert Tensor.from_i64([2, 2], range(4)).slice(1, 2).read_i64() == array("q", [2, 3])


def test_params():
    p = cg.Params._from_wit(
        [
            wit.Param("k", wit.ParamValue_Int64(3)),
            wit.Param("t", wit.ParamValue_Double(0.5)),
            wit.Param("s", wit.ParamValue_String(" 12 ")),
            wit.Param("flag", wit.ParamValue_String("true")),
            wit.Param("on", wit.ParamValue_Bool(False)),
        ]
    )
    assert p.get_int("k") == 3 and p.get_int("s") == 12 and p.get_int("absent", 9) == 9
    assert p.get_float("k") == 3.0 and p.get_float("t") == 0.5
    assert p.get_bool("flag") is True and p.get_bool("on") is False
    assert p.get_str("s") == " 12 " and p.get("t") == 0.5
    with pytest.raises(cg.InvalidInput, match="parameter `t` must be an integer"):
        p.get_int("t")
    with pytest.raises(cg.InvalidInput, match="parameter `on` must be a number"):
        p.get_float("on")
    with pytest.raises(cg.InvalidInput, match="missing parameter `nope`"):
        p.get_str("nope")


class Boom(cg.Processor):
    def describe(self):
        return cg.Signature().input("x", "FP32", [-1]).output("y", DataType.FP32, [-1])

    def process(self, inputs, params):
        x = inputs.take("x")
        mode = params.get_str("mode", "ok")
        if mode == "invalid":
            raise cg.InvalidInput("bad x")
        if mode == "zero":
            return {"y": Tensor.from_f32(x.shape, [1 / 0])}
        if mode == "read-past":
            x.read_raw(0, 1 << 20)
        if mode == "none":
            return None
        return {"y": x}


def run(adapter, mode, inputs=None):
    inputs = inputs if inputs is not None else [f32_input("x", [1], [2])]
    return adapter.process(inputs, [wit.Param("mode", wit.ParamValue_String(mode))])


def test_export_maps_every_failure_to_a_wit_error():
    g = {"Boom": Boom}
    exec("from conduit_guest import export\nexport(Boom)", g)
    adapter = g["Processor"]()
    sig = adapter.describe()
    assert sig.inputs == [wit.TensorSpec("x", DataType.FP32, [-1])]
    (y,) = run(adapter, "ok")
    assert y.name == "y" and isinstance(y.value, wit.TensorValue_Handle)
    cases = {
        "invalid": wit.Error_InvalidInput("bad x"),
        "read-past": wit.Error_InvalidInput("range outside the tensor"),
    }
    for mode, expected in cases.items():
        with pytest.raises(Err) as e:
            run(adapter, mode)
        assert e.value.value == expected
    with pytest.raises(Err) as e:
        run(adapter, "zero")
    assert isinstance(e.value.value, wit.Error_Internal)
    assert e.value.value.value.startswith("ZeroDivisionError: division by zero (at test_sdk.py:")
    with pytest.raises(Err) as e:
        run(adapter, "none")
    assert "process returned None" in e.value.value.value
    with pytest.raises(Err) as e:
        run(adapter, "ok", inputs=[])
    assert e.value.value == wit.Error_InvalidInput("missing input tensor `x` (present: none)")


def test_infer_maps_host_errors_and_keeps_handles(monkeypatch):
    import wit_world.imports.model as model

    x = Tensor._from_wit(f32_input("x", [1], [7]))

    def fake_infer(name, values):
        assert name == "m@1" and values[0].name == "a"
        assert values[1].value.value is not x._handle, "the caller keeps its handle"
        raise Err(wit.Error_NotFound("no model m@1"))

    monkeypatch.setattr(model, "infer", fake_infer)
    with pytest.raises(cg.NotFound, match="no model m@1"):
        cg.infer("m@1", {"a": Tensor.from_f32([1], [1]), "x": x})


def test_embedding_post_reads_only_unmasked_rows_and_checks_the_batch():
    app = importlib.import_module("app")
    adapter = app.Processor()
    batch, seq, dim = 2, 4, 3
    hidden_values = [float(i % 7) - 3 for i in range(batch * seq * dim)]
    hidden = f32_input("last_hidden_state", [batch, seq, dim], hidden_values)
    mask = named("attention_mask", DataType.INT64, [batch, seq], array("q", [1, 1, 0, 0, 1, 0, 1, 0]).tobytes())
    out = {v.name: v.value.value for v in adapter.process([hidden, mask], [])}
    emb = array("f")
    emb.frombytes(out["embeddings"].raw)
    assert out["embeddings"].shape == [2, 3] and out["similarity"].shape == [1]
    assert hidden.tensor.reads == [(0, 24), (48, 36)], "only the unmasked spans are read"
    from pooling import embed_and_score

    mv = memoryview(array("f", hidden_values))
    want, sims = embed_and_score(lambda b, lo, hi: mv[(b * seq + lo) * dim : (b * seq + hi) * dim], [1, 1, 0, 0, 1, 0, 1, 0], 2, 4, 3)
    assert emb == want
    odd = f32_input("last_hidden_state", [1, seq, dim], hidden_values[: seq * dim])
    odd_mask = named("attention_mask", DataType.INT64, [1, seq], array("q", [1] * seq).tobytes())
    with pytest.raises(Err) as e:
        adapter.process([odd, odd_mask], [])
    assert e.value.value == wit.Error_InvalidInput(
        "similarity scores rows in pairs (0·1, 2·3, …): send a positive even number of sentences, got 1"
    )


def test_pooling_doctests():
    import doctest

    import pooling

    assert doctest.testmod(pooling).failed == 0
