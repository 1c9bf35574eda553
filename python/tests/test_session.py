"""Sessions against a real `conduit dev`: the paraphrase pipeline from Python, numpy in
and out, new modules, closing."""

from __future__ import annotations

import numpy as np
import pytest

import conduit
from conftest import A, B, BIAS, C


def pair(first: str, second: str) -> list:
    return [[first], [second]]


def test_paraphrase_pipeline_scores_the_pair_above_the_unrelated_one(open_session, registered):
    with open_session(modules=["paraphrase@1.0.0"]) as session:
        assert session.id and session.runner_id == ""
        paraphrase = session.new_module("paraphrase@1.0.0")
        info = paraphrase.info
        assert info.kind == "pipeline" and info.name == "paraphrase" and info.version == "1.0.0"
        assert info.digest == registered["paraphrase"].digest
        assert [(s.name, s.datatype) for s in info.inputs] == [("text", "BYTES")]
        assert {s.name for s in info.outputs} == {"similarity", "truncated_tokens", "embeddings"}

        out = paraphrase.run(text=pair(A, B))
        sim = out["similarity"]
        assert (sim.name, sim.datatype, sim.shape, sim.dtype) == (
            "similarity", "FP32", (1,), np.dtype("<f4"))
        close = float(sim.numpy()[0])
        unrelated = float(paraphrase.run(text=pair(A, C))["similarity"].numpy()[0])
        assert close - unrelated > 0.3, (close, unrelated)
        assert 0.6 < close < 0.8, close  # the README's 0.6965

        emb = out["embeddings"].numpy()
        assert emb.shape == (2, 384) and emb.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(float(emb[0] @ emb[1]), close, atol=1e-5)


def test_the_same_request_over_tritonclient_gives_the_same_similarity(
    open_session, server, registered
):
    grpcclient = pytest.importorskip("tritonclient.grpc")
    with open_session(modules=["paraphrase@1.0.0"]) as session:
        ours = session.new_module("paraphrase@1.0.0").run(text=pair(A, B))["similarity"].numpy()

    client = grpcclient.InferenceServerClient(server.addr)
    text = grpcclient.InferInput("text", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array([[A.encode()], [B.encode()]], dtype=object))
    reply = client.infer(
        "paraphrase", [text], model_version="1.0.0",
        headers={"authorization": f"Bearer {server.api_key}"},
    )
    np.testing.assert_allclose(ours, reply.as_numpy("similarity"), rtol=0, atol=1e-6)


def test_numpy_in_and_out(open_session):
    with open_session(modules=["add@1.0.0"]) as session:
        add = session.new_module("add@1.0.0")
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        y = add.run(x=x)["y"].numpy()
        np.testing.assert_array_equal(y, x + np.array(BIAS, dtype=np.float32))
        # Zero copy out: a read-only view over the received buffer.
        assert not y.flags.writeable and not y.flags.owndata

        # A non-contiguous view, a big-endian array: sent as their values.
        strided = np.arange(8, dtype=np.float32).reshape(4, 2).T
        np.testing.assert_array_equal(add.run(x=strided)["y"].numpy(), strided + BIAS)
        big = x.astype(">f4")
        np.testing.assert_array_equal(add.run(x=big)["y"].numpy(), x + BIAS)

        # Python lists take the module's declared datatype (FP32), ints included.
        np.testing.assert_array_equal(
            add.run(x=[[1, 2, 3, 4]])["y"].numpy(), [[2.0, 4.0, 6.0, 8.0]]
        )
        # The mapping form, for names that are not identifiers.
        assert add.run({"x": [[0.5, 0.5, 0.5, 0.5]]})["y"].shape == (1, 4)
        # Inputs are snapshotted: changing the array after the call changes nothing.
        z = np.zeros((1, 4), dtype=np.float32)
        out = add.run(x=z)["y"]
        z += 100
        np.testing.assert_array_equal(out.numpy(), [BIAS])
        # np.asarray works on a value.
        np.testing.assert_array_equal(np.asarray(out), [BIAS])

        # `fetch` brings outputs back with the answer: numpy() then costs nothing.
        before = session.stats()
        y = add.run(x=x, fetch=["y"])["y"]
        assert session.stats().bytes_received == before.bytes_received + x.nbytes
        np.testing.assert_array_equal(y.numpy(), x + BIAS)
        assert session.stats().bytes_received == before.bytes_received + x.nbytes

        with pytest.raises(conduit.InvalidArgument):
            add.run(x=x, parameters={"op": [1, 2]})  # parameters are bool, int, float, str


def test_bytes_in_as_str_bytes_and_numpy(open_session):
    with open_session(modules=["tokenizer@1.0.0"]) as session:
        tok = session.new_module("tokenizer@1.0.0")
        params = {"max_length": 16, "padding": "longest"}
        as_str = tok.run(text=[[A]], parameters=params)["input_ids"].numpy()
        as_bytes = tok.run(text=[[A.encode()]], parameters=params)["input_ids"].numpy()
        as_numpy = tok.run(text=np.array([[A]]), parameters=params)["input_ids"].numpy()
        as_raw = tok.run(
            text=conduit.Tensor("BYTES", (1, 1), len(A).to_bytes(4, "little") + A.encode()),
            parameters=params,
        )["input_ids"].numpy()
        assert as_str.dtype == np.int64 and as_str.shape[0] == 1
        assert as_str[0, 0] == 101  # [CLS]
        for other in (as_bytes, as_numpy, as_raw):
            np.testing.assert_array_equal(as_str, other)


def test_new_module_pins_a_module_into_an_open_session(open_session, registered):
    with open_session() as session:
        add = session.new_module("add")  # the `latest` tag, resolved once, pinned
        assert add.info.version == "1.0.0" and add.info.digest == registered["add"].digest
        assert add.run(x=np.zeros((1, 4), np.float32))["y"].numpy().tolist() == [list(BIAS)]
        with pytest.raises(conduit.NotFound):
            session.new_module("no-such-module@1.0.0")


def test_opening_with_an_unknown_module_is_not_found(server, registered):
    with pytest.raises(conduit.NotFound):
        conduit.Session(server.addr, ["no-such-module"], api_key=server.api_key)


def test_a_closed_session_refuses_calls(open_session):
    session = open_session(modules=["add@1.0.0"])
    add = session.new_module("add@1.0.0")
    out = add.run(x=np.zeros((1, 4), np.float32))["y"]
    fetched = add.run(x=np.ones((1, 4), np.float32))["y"]
    before = fetched.numpy()
    session.close()
    session.close()  # harmless
    with pytest.raises(conduit.SessionClosed):
        add.run(x=np.zeros((1, 4), np.float32))
    with pytest.raises(conduit.SessionClosed):
        out.numpy()
    # What was fetched stays readable.
    np.testing.assert_array_equal(fetched.numpy(), before)


def test_defaults_come_from_the_environment(monkeypatch, server, registered):
    monkeypatch.setenv("CONDUIT_ADDR", server.addr)
    monkeypatch.setenv("CONDUIT_API_KEY", server.api_key)
    with conduit.Session(modules=["add@1.0.0"]) as session:
        assert session.addr == server.addr
    assert any(e.name == "add" for e in conduit.ModuleRepository().list("add"))
    monkeypatch.delenv("CONDUIT_API_KEY")
    monkeypatch.chdir(server.data_dir.parent)  # no .conduit/admin.key here
    with pytest.raises(conduit.Unauthenticated):
        conduit.Session(modules=["add@1.0.0"])
