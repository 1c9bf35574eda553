"""Remote values against a real `conduit dev`: chaining without crossing the client,
release, other sessions' and tenants' values, bad inputs, leases and replay."""

from __future__ import annotations

import time

import numpy as np
import pytest

import conduit
from conftest import A, B, BIAS

# The paraphrase pipeline's tokenizer parameters (examples/pipelines/paraphrase.toml).
TOKENIZE = {"max_length": 256, "padding": "longest"}
STEPS = ["tokenizer@1.0.0", "minilm@1.0.0", "embedding-post@1.0.0", "paraphrase@1.0.0"]


def bytes_tensor_size(*texts: str) -> int:
    return sum(4 + len(t.encode()) for t in texts)


def test_a_chain_of_modules_moves_only_the_text_in_and_the_score_out(open_session):
    with open_session(modules=STEPS) as session:
        tokenizer, minilm, post, paraphrase = (session.new_module(r) for r in STEPS)

        tok = tokenizer.run(text=[[A], [B]], parameters=TOKENIZE)
        enc = minilm.run(
            input_ids=tok["input_ids"],
            attention_mask=tok["attention_mask"],
            token_type_ids=tok["token_type_ids"],
        )
        assert enc["last_hidden_state"].shape[::2] == (2, 384)
        out = post.run(
            last_hidden_state=enc["last_hidden_state"], attention_mask=tok["attention_mask"]
        )
        chained = out["similarity"].numpy()

        stats = session.stats()
        assert stats.calls == 3 and stats.replays == 0
        # Only the text went in and the one FP32 score came out: the token ids, the
        # 2 x seq x 384 hidden states and the embeddings stayed on the runner.
        assert stats.bytes_sent == bytes_tensor_size(A, B)
        assert stats.bytes_received == chained.nbytes == 4

        whole = paraphrase.run(text=[[A], [B]])["similarity"].numpy()
        np.testing.assert_array_equal(chained, whole)


def test_a_released_value_cannot_be_used_again(open_session):
    with open_session(modules=["add@1.0.0"]) as session:
        add = session.new_module("add@1.0.0")
        y = add.run(x=np.zeros((1, 4), np.float32))["y"]
        y.release()
        y.release()  # harmless
        with pytest.raises(conduit.ValueReleased):
            y.numpy()
        with pytest.raises(conduit.ValueReleased):
            add.run(x=y)
        # The session goes on.
        np.testing.assert_array_equal(add.run(x=[[0, 0, 0, 0]])["y"].numpy(), [BIAS])


def test_a_value_of_another_session_or_tenant_is_not_found(open_session, server, fixtures_dir):
    ours = open_session(modules=["add@1.0.0"])
    value = ours.new_module("add@1.0.0").run(x=np.zeros((1, 4), np.float32))["y"]
    assert value.id is not None

    # The Value object itself belongs to its session: refused before sending.
    other = open_session(modules=["add@1.0.0"])
    with pytest.raises(conduit.InvalidArgument):
        other.new_module("add@1.0.0").run(x=value)
    # Its raw id means nothing in another session of the same tenant…
    with pytest.raises(conduit.ValueNotFound):
        other.new_module("add@1.0.0").run(x=conduit.RemoteId(value.id))

    # …nor in another tenant's session, which cannot see the first tenant's modules.
    acme_key = server.create_tenant("acme-values")
    acme_repo = conduit.ModuleRepository(server.addr, acme_key)
    acme_repo.register_onnx("add", "1.0.0", fixtures_dir / "add.onnx")
    with pytest.raises((conduit.NotFound, conduit.PermissionDenied)):
        conduit.Session(server.addr, ["default/add@1.0.0"], api_key=acme_key)
    acme = open_session(modules=["add@1.0.0"], api_key=acme_key)
    with pytest.raises((conduit.ValueNotFound, conduit.NotFound)):
        acme.new_module("add@1.0.0").run(x=conduit.RemoteId(value.id))
    # The owner's value is untouched.
    np.testing.assert_array_equal(value.numpy(), [BIAS])


def test_a_wrong_input_is_invalid_and_the_session_goes_on(open_session):
    with open_session(modules=["add@1.0.0", "tokenizer@1.0.0"]) as session:
        add = session.new_module("add@1.0.0")
        first = add.run(x=np.ones((1, 4), np.float32))["y"]
        wrong = [
            dict(x=np.ones((1, 4), np.int64)),  # INT64 where FP32 is declared
            dict(x=np.ones((1, 5), np.float32)),  # 5 where the model has 4
            dict(),  # x missing
            dict(x=np.ones((1, 4), np.float32), extra=np.ones(1, np.float32)),
        ]
        for inputs in wrong:
            with pytest.raises(conduit.InvalidArgument) as e:
                add.run(**inputs)
            assert isinstance(e.value, ValueError)  # InvalidArgument is a ValueError too
        # A number where the tokenizer takes text.
        with pytest.raises(conduit.InvalidArgument):
            session.new_module("tokenizer@1.0.0").run(text=np.array([[1.5]]))
        # Refused on the client: no KServe v2 datatype for complex numbers.
        with pytest.raises(conduit.InvalidArgument):
            add.run(x=np.ones((1, 4), np.complex64))
        # Same session, its earlier value and new runs intact.
        np.testing.assert_array_equal(first.numpy(), [np.add(1, BIAS)])
        np.testing.assert_array_equal(add.run(x=np.zeros((1, 4), np.float32))["y"].numpy(), [BIAS])
        assert session.stats().replays == 0


# Short, but long enough that heartbeats (every third of it) keep it on a busy machine.
LEASE = 1.0


def lapse() -> None:
    """Sleeps well past LEASE (the runner drops a session its lease after the last call)."""
    time.sleep(LEASE * 2.5)


def test_an_expired_lease_without_replay_is_session_expired(open_session):
    session = open_session(
        modules=["add@1.0.0"], lease_seconds=LEASE, heartbeat=False, replay=False
    )
    add = session.new_module("add@1.0.0")
    y = add.run(x=np.zeros((1, 4), np.float32))["y"]
    lapse()
    with pytest.raises(conduit.SessionExpired):
        y.numpy()
    with pytest.raises(conduit.SessionExpired):
        add.run(x=np.zeros((1, 4), np.float32))


def test_an_expired_lease_with_replay_gives_the_same_results(open_session):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)

    def chain(session):
        add = session.new_module("add@1.0.0")
        once = add.run(x=x)["y"]
        lapse()  # the runner drops the session and `once` with it
        twice = add.run(x=once)["y"]  # replays the first call, then runs this one
        lapse()
        return once, twice.numpy()

    with open_session(
        modules=["add@1.0.0"], lease_seconds=LEASE, heartbeat=False, replay=True
    ) as session:
        first_id = session.id
        once, twice = chain(session)
        np.testing.assert_array_equal(twice, x + 2 * np.array(BIAS, np.float32))
        np.testing.assert_array_equal(once.numpy(), x + BIAS)
        assert session.stats().replays >= 2 and session.id != first_id

    # The heavier chain, tokenizer → MiniLM → post, after a lapse: the same bits.
    with open_session(modules=STEPS, lease_seconds=LEASE, heartbeat=False) as session:
        tokenizer, minilm, post, paraphrase = (session.new_module(r) for r in STEPS)
        expected = paraphrase.run(text=[[A], [B]])["similarity"].numpy()
        tok = tokenizer.run(text=[[A], [B]], parameters=TOKENIZE)
        lapse()
        enc = minilm.run(
            input_ids=tok["input_ids"],
            attention_mask=tok["attention_mask"],
            token_type_ids=tok["token_type_ids"],
        )
        lapse()
        sim = post.run(
            last_hidden_state=enc["last_hidden_state"], attention_mask=tok["attention_mask"]
        )["similarity"].numpy()
        np.testing.assert_array_equal(sim, expected)
        assert session.stats().replays >= 2


def test_heartbeats_keep_a_short_lease_alive(open_session):
    session = open_session(modules=["add@1.0.0"], lease_seconds=LEASE, heartbeat=True, replay=False)
    y = session.new_module("add@1.0.0").run(x=np.zeros((1, 4), np.float32))["y"]
    lapse()
    np.testing.assert_array_equal(y.numpy(), [BIAS])
    assert session.stats().replays == 0
