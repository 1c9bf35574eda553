"""conduit.local(): starting and stopping an embedded `conduit dev`."""

from __future__ import annotations

import os

import pytest

import conduit


def test_local_serves_then_stops_and_cleans_up(tmp_path):
    data = tmp_path / "data"
    with conduit.local(data_dir=data) as server:
        assert server.running
        host, port = server.addr.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert server.http_addr.startswith("http://127.0.0.1:")
        assert server.api_key.startswith("cdk_")
        assert conduit.ModuleRepository(server.addr, server.api_key).list() == []
        pid = server.process.pid
    assert not server.running and server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # harmless

    # A second start on the same data directory reads the admin key it kept.
    with conduit.local(data_dir=data) as again:
        assert again.api_key == server.api_key
        conduit.ModuleRepository(again.addr, again.api_key).list()


def test_a_scratch_data_directory_is_removed_at_stop():
    server = conduit.local()
    scratch = server.data_dir.parent
    assert scratch.is_dir()
    server.stop()
    assert not scratch.exists()


def test_without_a_binary_the_error_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.delenv("CONDUIT_BIN", raising=False)
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        conduit.find_binary()
    assert "CONDUIT_BIN" in str(e.value)
    with pytest.raises(FileNotFoundError):
        conduit.local(binary=tmp_path / "nope")
