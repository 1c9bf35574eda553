"""Fixtures: one real `conduit dev` for the whole run, with the paraphrase modules and a
small ONNX model registered once.

Inputs (as `make test` passes them; the defaults fit a `make components build
onnx-model fixtures` tree):

- ``CONDUIT_BIN``: the ``conduit`` binary (default: see ``conduit.find_binary``);
- ``WASM_DIR``: the built components (default ``$CARGO_TARGET_DIR/wasm32-wasip2/release``);
- ``MODEL``: all-MiniLM-L6-v2 as ONNX (default ``testdata/minilm/model.onnx``);
- ``FIXTURES``: the small ONNX fixtures (default ``testdata/fixtures``).

Relative paths are taken from the current directory, else from the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

import conduit

REPO = Path(__file__).resolve().parents[2]
PARAPHRASE_TOML = REPO / "examples" / "pipelines" / "paraphrase.toml"

# The README's sentences: a paraphrase pair and an unrelated one.
A = "The company Conduit is based in the Bay Area"
B = "Conduit's headquarters are situated in Mountain View"
C = "Grandmother's apple pie needs more cinnamon"

# add.onnx: y = x + BIAS, x FP32 [batch, 4].
BIAS = (1.0, 2.0, 3.0, 4.0)


def _path(env: str, default: str) -> Path:
    value = os.environ.get(env) or default
    p = Path(value)
    if not p.is_absolute() and not p.exists():
        p = REPO / p
    if not p.exists():
        raise FileNotFoundError(
            f"{env}={value}: not found (build it: `make components build onnx-model fixtures`)"
        )
    return p.resolve()


@pytest.fixture(scope="session")
def wasm_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR") or "target"
    return _path("WASM_DIR", os.path.join(target, "wasm32-wasip2", "release"))


@pytest.fixture(scope="session")
def model_path() -> Path:
    return _path("MODEL", "testdata/minilm/model.onnx")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _path("FIXTURES", "testdata/fixtures")


@pytest.fixture(scope="session")
def server() -> Iterator[conduit.LocalServer]:
    with conduit.local(os.environ.get("CONDUIT_BIN") or None, startup_timeout=60) as s:
        yield s


@pytest.fixture(scope="session")
def repo(server: conduit.LocalServer) -> conduit.ModuleRepository:
    return conduit.ModuleRepository(server.addr, server.api_key)


def register_modules(
    repo: conduit.ModuleRepository, wasm_dir: Path, model_path: Path, fixtures_dir: Path
) -> Dict[str, conduit.Registered]:
    """Registers tokenizer, minilm, embedding-post and the paraphrase pipeline (as `make
    demo` registers them), and add@1.0.0 (add.onnx), through `repo`."""
    return {
        "tokenizer": repo.register_component(
            "tokenizer", "1.0.0", wasm_dir / "bert_tokenizer.wasm"
        ),
        "minilm": repo.register_onnx("minilm", "1.0.0", model_path),
        "embedding-post": repo.register_component(
            "embedding-post", "1.0.0", wasm_dir / "embedding_post.wasm"
        ),
        "paraphrase": repo.register_pipeline("paraphrase", "1.0.0", PARAPHRASE_TOML),
        "add": repo.register_onnx("add", "1.0.0", fixtures_dir / "add.onnx"),
    }


@pytest.fixture(scope="session")
def registered(
    repo: conduit.ModuleRepository, wasm_dir: Path, model_path: Path, fixtures_dir: Path
) -> Dict[str, conduit.Registered]:
    """The modules of `register_modules`, registered once on the server."""
    return register_modules(repo, wasm_dir, model_path, fixtures_dir)


@pytest.fixture
def open_session(
    server: conduit.LocalServer, registered: Dict[str, conduit.Registered]
) -> Iterator[Callable[..., conduit.Session]]:
    """Opens sessions on the server (keyword arguments of `conduit.Session`), closing
    them all at the test's end."""
    opened: List[conduit.Session] = []

    def open_(**kwargs) -> conduit.Session:
        kwargs.setdefault("addr", server.addr)
        kwargs.setdefault("api_key", server.api_key)
        s = conduit.Session(**kwargs)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        try:
            s.close()
        except conduit.ConduitError:
            pass
