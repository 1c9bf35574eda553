"""ModuleRepository against a real `conduit dev`: register, tag, list, delete, errors."""

from __future__ import annotations

import pytest

import conduit
from conftest import PARAPHRASE_TOML


def test_register_component_from_a_path_then_the_same_bytes(repo, wasm_dir):
    path = wasm_dir / "embedding_post.wasm"
    first = repo.register_component("reg-post", "1.0.0", path, tags=["prod"])
    assert first.name == "reg-post" and first.version == "1.0.0"
    assert first.reference == "reg-post@1.0.0"
    assert first.digest.startswith("blake3:") and len(first.digest) == len("blake3:") + 64
    assert first.created
    assert "prod" in first.tags and "latest" in first.tags

    again = repo.register_component("reg-post", "1.0.0", path.read_bytes())
    assert not again.created, "the same bytes under the same version are a no-op"
    assert again.digest == first.digest


def test_register_component_refuses_what_is_not_a_component(repo):
    with pytest.raises(conduit.InvalidArgument):
        repo.register_component("reg-junk", "1.0.0", b"\0asm not really")


def test_a_version_is_immutable(repo, wasm_dir):
    repo.register_component("reg-immutable", "1.0.0", wasm_dir / "embedding_post.wasm")
    with pytest.raises(conduit.InvalidArgument) as e:
        repo.register_component("reg-immutable", "1.0.0", wasm_dir / "softmax_topk.wasm")
    assert "immutable" in str(e.value)


def test_register_onnx_with_batching_options(repo, fixtures_dir):
    r = repo.register_onnx(
        "reg-add", "1.0.0", fixtures_dir / "add.onnx", max_batch_size=8, max_queue_delay_us=500
    )
    assert r.created and r.reference == "reg-add@1.0.0"
    with pytest.raises(conduit.InvalidArgument):
        repo.register_onnx("reg-garbage", "1.0.0", fixtures_dir / "garbage.onnx")


def test_register_pipeline_from_a_path_and_from_text(repo, registered):
    from_path = repo.register_pipeline("reg-paraphrase", "1.0.0", PARAPHRASE_TOML)
    assert from_path.created
    # The text itself, under another version: the same manifest, the same content.
    from_text = repo.register_pipeline(
        "reg-paraphrase", "1.0.1", PARAPHRASE_TOML.read_text(encoding="utf-8")
    )
    assert from_text.created and from_text.digest == from_path.digest

    broken = PARAPHRASE_TOML.read_text(encoding="utf-8").replace(
        'from = "post.similarity"', 'from = "post.no_such_output"'
    )
    with pytest.raises(conduit.InvalidArgument) as e:
        repo.register_pipeline("reg-broken", "1.0.0", broken)
    assert "no_such_output" in str(e.value)


def test_tag_list_and_delete(repo, fixtures_dir):
    repo.register_onnx("reg-tagged", "1.0.0", fixtures_dir / "add.onnx")
    repo.register_onnx("reg-tagged", "1.1.0", fixtures_dir / "identity_i64.onnx")
    repo.add_tag("reg-tagged@1.0.0", "stable")

    entries = {(e.name, e.version): e for e in repo.list("reg-tagged")}
    assert set(entries) == {("reg-tagged", "1.0.0"), ("reg-tagged", "1.1.0")}
    old, new = entries[("reg-tagged", "1.0.0")], entries[("reg-tagged", "1.1.0")]
    assert old.kind == new.kind == "model"
    assert "stable" in old.tags and "latest" in new.tags
    assert old.size > 0 and old.digest.startswith("blake3:")
    assert all(e.name.startswith("reg-tagged") for e in repo.list("reg-tagged"))

    # The tag moves atomically.
    repo.add_tag("reg-tagged@1.1.0", "stable")
    entries = {e.version: e for e in repo.list("reg-tagged")}
    assert "stable" in entries["1.1.0"].tags and "stable" not in entries["1.0.0"].tags

    # A version a user tag points at is kept until the tag moves.
    with pytest.raises(conduit.InvalidArgument):
        repo.delete("reg-tagged@1.1.0")
    repo.delete("reg-tagged@1.0.0")
    assert [e.version for e in repo.list("reg-tagged")] == ["1.1.0"]
    with pytest.raises(conduit.NotFound):
        repo.delete("reg-tagged@1.0.0")


def test_a_bad_key_is_unauthenticated(server):
    with pytest.raises(conduit.Unauthenticated):
        conduit.ModuleRepository(server.addr, "cdk_not_a_key").list()


def test_nothing_listening_is_unavailable():
    # Port 9 (discard) on loopback: nothing serves gRPC there.
    with pytest.raises(conduit.Unavailable):
        conduit.ModuleRepository("127.0.0.1:9", "cdk_whatever").list()
