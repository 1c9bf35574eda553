"""An embedded ``conduit dev`` for notebooks, scripts and tests: :func:`local`."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Dict, Iterable, List, Optional, Type, Union

__all__ = ["local", "LocalServer", "find_binary"]

_KEY_LINE = "export CONDUIT_API_KEY="
_KEY_FILE_LINE = "admin API key: in "
_GRPC_LINE = "registry (gRPC): "
_HTTP_LINE = "inference (KServe v2 HTTP): "


def find_binary(binary: Optional[Union[str, "os.PathLike[str]"]] = None) -> Path:
    """The ``conduit`` executable: ``binary``, else ``$CONDUIT_BIN``, else ``conduit`` on
    ``PATH``, else ``./target/release/conduit``, else ``$CARGO_TARGET_DIR/release/conduit``.

    A given ``binary`` or ``$CONDUIT_BIN`` must exist (no fallback past it). Raises
    :class:`FileNotFoundError` naming every place it looked.
    """
    for given, what in ((binary, "binary="), (os.environ.get("CONDUIT_BIN"), "CONDUIT_BIN=")):
        if given is not None and os.fspath(given):
            p = Path(os.fspath(given))
            if p.is_file() and os.access(p, os.X_OK):
                return p.resolve()
            raise FileNotFoundError(f"{what}{os.fspath(given)}: no such executable")
    tried: List[str] = []
    candidates: List[Optional[str]] = [
        shutil.which("conduit"),
        os.path.join("target", "release", "conduit"),
    ]
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidates.append(os.path.join(target, "release", "conduit"))
    for c in candidates:
        if not c:
            continue
        tried.append(c)
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return Path(c).resolve()
    raise FileNotFoundError(
        "no conduit binary: pass binary=, set CONDUIT_BIN, put `conduit` on PATH, or "
        "build it (`cargo build --release -p conduit`); tried: "
        + ", ".join(["PATH"] + tried)
    )


def _onnxruntime_library() -> Optional[str]:
    """``libonnxruntime.so`` of an installed ``onnxruntime`` wheel (the runner's default
    model backend loads it), found without importing the package."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        capi = Path(location) / "capi"
        libs = sorted(capi.glob("libonnxruntime.so*")) + sorted(capi.glob("libonnxruntime*.dylib"))
        libs = [p for p in libs if "providers" not in p.name]
        if libs:
            return str(libs[0])
    return None


def _stop(process: "subprocess.Popen[bytes]", scratch: Optional[str], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


class LocalServer:
    """A running ``conduit dev`` started by :func:`local`: registry, runner and sessions
    on one gRPC address, KServe v2 HTTP beside it.

    Use it as a context manager (the server stops at the block's end) or call
    :meth:`stop`; it is also stopped when the handle is garbage-collected or the
    interpreter exits.
    """

    def __init__(
        self,
        process: "subprocess.Popen[bytes]",
        binary: Path,
        data_dir: Path,
        log_path: Path,
        addr: str,
        http_addr: str,
        api_key: str,
        scratch: Optional[str],
    ) -> None:
        #: The server process.
        self.process = process
        #: The ``conduit`` executable it runs.
        self.binary = binary
        #: Its data directory (registry blobs, metadata, caches).
        self.data_dir = data_dir
        #: Where its stdout and stderr go.
        self.log_path = log_path
        #: ``host:port`` of its gRPC address: registry, KServe v2 gRPC and sessions —
        #: what :class:`~conduit.ModuleRepository` and :class:`~conduit.Session` take.
        self.addr = addr
        #: ``http://host:port`` of its KServe v2 HTTP address (and ``/metrics``).
        self.http_addr = http_addr
        #: The admin tenant's API key.
        self.api_key = api_key
        self._finalizer = weakref.finalize(self, _stop, process, scratch, 10.0)

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self.process.poll() is None

    def log(self) -> str:
        """What the server has printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def create_tenant(self, name: str) -> str:
        """Creates tenant ``name`` (``conduit tenant create``, with the admin key) and
        returns its API key.

        Raises :class:`RuntimeError` with the CLI's message when it fails.
        """
        out = subprocess.run(
            [str(self.binary), "tenant", "create", name],
            env={**os.environ, "CONDUIT_REGISTRY": f"http://{self.addr}",
                 "CONDUIT_API_KEY": self.api_key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = [l.strip() for l in out.stdout.splitlines() if l.strip()]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"conduit tenant create {name}: {out.stderr.strip() or out.stdout}")
        return lines[-1]

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL after ``timeout`` seconds) and removes
        the scratch data directory if :func:`local` made one. Stopping twice is
        harmless."""
        detached = self._finalizer.detach()
        if detached is not None:
            _, scratch, _ = detached[2]
            _stop(self.process, scratch, timeout)

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<conduit.LocalServer {self.addr} ({state}, pid {self.process.pid})>"


def local(
    binary: Optional[Union[str, "os.PathLike[str]"]] = None,
    data_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    *,
    args: Iterable[str] = (),
    env: Optional[Dict[str, str]] = None,
    startup_timeout: float = 60.0,
) -> LocalServer:
    """Starts ``conduit dev`` on ``127.0.0.1`` (ports chosen by the system) and returns
    once it serves, with its address and admin key::

        with conduit.local() as server:
            repo = conduit.ModuleRepository(server.addr, server.api_key)
            ...

    ``binary``: see :func:`find_binary`. ``data_dir``: where the server keeps its
    registry (default: a scratch directory, removed at stop; a given one is kept, and a
    second start on it reads the admin key from its ``admin.key``). ``args``: more
    ``conduit dev`` options (``--limits FILE``…). ``env``: the server's environment
    (default: this process's; ``ORT_DYLIB_PATH`` is set to an installed ``onnxruntime``
    wheel's library when absent, so ONNX models load).

    Raises :class:`FileNotFoundError` without a binary, :class:`RuntimeError` with the
    server's log when it exits during startup, :class:`TimeoutError` when it does not
    print its address within ``startup_timeout`` seconds (it is stopped then).
    """
    exe = find_binary(binary)
    scratch = None
    if data_dir is None:
        scratch = tempfile.mkdtemp(prefix="conduit-local-")
        root = Path(scratch)
        data = root / "data"
    else:
        data = Path(data_dir)
        data.mkdir(parents=True, exist_ok=True)
        root = data
    log_path = root / "dev.log"
    child_env = dict(os.environ if env is None else env)
    if not child_env.get("ORT_DYLIB_PATH"):
        lib = _onnxruntime_library()
        if lib:
            child_env["ORT_DYLIB_PATH"] = lib
    cmd = [
        str(exe), "dev", "--data-dir", str(data),
        "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", *args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env
        )
    try:
        addr, http, key = _wait_ready(process, log_path, data, startup_timeout)
    except BaseException:
        _stop(process, scratch, 5.0)
        raise
    return LocalServer(process, exe, data, log_path, addr, http, key, scratch)


def _wait_ready(
    process: "subprocess.Popen[bytes]", log_path: Path, data: Path, timeout: float
) -> "tuple[str, str, str]":
    deadline = time.monotonic() + timeout
    text = ""
    while True:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        addr = http = key = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(_GRPC_LINE):
                addr = line[len(_GRPC_LINE):].removeprefix("http://")
            elif line.startswith(_HTTP_LINE):
                http = line[len(_HTTP_LINE):]
            elif line.startswith(_KEY_LINE):
                key = line[len(_KEY_LINE):]
            elif line.startswith(_KEY_FILE_LINE):
                key = Path(line[len(_KEY_FILE_LINE):]).read_text(encoding="utf-8").strip()
        if addr and http and key:
            return addr, http, key
        if process.poll() is not None:
            raise RuntimeError(
                f"conduit dev exited with status {process.returncode} during startup:\n{text}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"conduit dev printed no address and key within {timeout:g} s:\n{text}"
            )
        time.sleep(0.05)
