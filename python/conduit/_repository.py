"""Registering components, models and pipelines: :class:`ModuleRepository`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from . import _native
from ._config import resolve_addr, resolve_api_key

__all__ = ["ModuleRepository", "Registered", "ModuleEntry"]

#: A module's content: its bytes, or the path of a file holding them.
BytesOrPath = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Registered:
    """What a ``register_*`` call stored."""

    #: Module name (in the key's tenant).
    name: str
    #: Its version (semver; immutable).
    version: str
    #: ``blake3:<hex>`` of the content.
    digest: str
    #: The reference that names exactly this module (``name@version``), for
    #: :class:`~conduit.Session` and KServe v2 clients.
    reference: str
    #: False when the same bytes were already registered under this version (a no-op).
    created: bool
    #: Its tags after the call (``latest`` included when it moved here).
    tags: Tuple[str, ...]


@dataclass(frozen=True)
class ModuleEntry:
    """One module version, as :meth:`ModuleRepository.list` returns it."""

    #: Module name.
    name: str
    #: Version.
    version: str
    #: ``"component"``, ``"model"`` or ``"pipeline"``.
    kind: str
    #: ``blake3:<hex>`` of the content.
    digest: str
    #: Tags pointing at this version.
    tags: Tuple[str, ...]
    #: Stored size in bytes.
    size: int


def _content(source: BytesOrPath) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return Path(source).read_bytes()


def _manifest(source: Union[str, "os.PathLike[str]"]) -> str:
    # A manifest always spans several lines (its [[steps]] tables); a one-line str is a
    # path.
    if isinstance(source, str) and "\n" in source:
        return source
    return Path(source).read_text(encoding="utf-8")


def _registered(d: Dict[str, Any]) -> Registered:
    return Registered(**{**d, "tags": tuple(d["tags"])})


class ModuleRepository:
    """The registry of a Conduit server: register components, ONNX models and pipelines,
    tag, list and delete them, in the namespace of the API key's tenant.

    ``addr`` is the registry's gRPC address (``host:port`` or ``http://host:port``;
    ``conduit dev`` serves it on its one gRPC address), default ``$CONDUIT_ADDR`` or
    ``127.0.0.1:7070``; ``api_key`` defaults to ``$CONDUIT_API_KEY`` (then
    ``./.conduit/admin.key``). Every call blocks until the registry answered and releases
    the GIL meanwhile.

    Raises :class:`~conduit.Unavailable` when the registry cannot be reached.
    """

    def __init__(self, addr: Optional[str] = None, api_key: Optional[str] = None) -> None:
        #: The address connected to.
        self.addr: str = resolve_addr(addr)
        self._native = _native.ModuleRepository(self.addr, resolve_api_key(api_key))

    def register_component(
        self, name: str, version: str, wasm: BytesOrPath, tags: Iterable[str] = ()
    ) -> Registered:
        """Uploads a WebAssembly component (its bytes, or the path of a ``.wasm`` file)
        as ``name@version`` with ``tags``.

        Raises :class:`~conduit.InvalidArgument` when it does not compile or does not
        export the ``conduit:compute`` processor, or the version holds other bytes.
        """
        return _registered(
            self._native.register_component(name, version, _content(wasm), list(tags))
        )

    def register_onnx(
        self,
        name: str,
        version: str,
        onnx: BytesOrPath,
        tags: Iterable[str] = (),
        *,
        max_batch_size: int = 0,
        max_queue_delay_us: int = 0,
        backend: str = "",
        device: str = "",
    ) -> Registered:
        """Uploads an ONNX model (its bytes, or the path of a ``.onnx`` file) as
        ``name@version`` with ``tags``.

        ``max_batch_size`` (rows per batch; 0: no dynamic batching) and
        ``max_queue_delay_us`` (the longest a request waits for a batch to fill) set
        dynamic batching; ``backend`` (``"ort"``, ``"tract"``, ``"remote"``; empty: the
        server's default) and ``device`` (``"cpu"``, ``"cuda:0"``…) pick the executor.

        Raises :class:`~conduit.InvalidArgument` when the model does not parse or load
        with that backend and device.
        """
        return _registered(
            self._native.register_onnx(
                name,
                version,
                _content(onnx),
                list(tags),
                max_batch_size,
                max_queue_delay_us,
                backend,
                device,
            )
        )

    def register_pipeline(
        self,
        name: str,
        version: str,
        manifest: Union[str, "os.PathLike[str]"],
        tags: Iterable[str] = (),
    ) -> Registered:
        """Registers a pipeline from its TOML manifest: the text itself (a str of several
        lines) or the path of the ``.toml`` file.

        Raises :class:`~conduit.InvalidArgument` when it does not parse or type-check
        against its steps (the message names the step and tensor), and
        :class:`~conduit.NotFound` when a step's module does not exist.
        """
        return _registered(
            self._native.register_pipeline(name, version, _manifest(manifest), list(tags))
        )

    def add_tag(self, reference: str, tag: str) -> None:
        """Points ``tag`` at the module ``reference`` names (moving it atomically if it
        pointed elsewhere)."""
        self._native.add_tag(reference, tag)

    def list(self, prefix: str = "") -> List[ModuleEntry]:
        """Every module version whose name starts with ``prefix``."""
        return [
            ModuleEntry(**{**d, "tags": tuple(d["tags"])}) for d in self._native.list(prefix)
        ]

    def delete(self, reference: str) -> None:
        """Deletes the module version ``reference`` names.

        Raises :class:`~conduit.InvalidArgument` (or ``PermissionDenied``) when a user
        tag or another module still references it, :class:`~conduit.NotFound` when there
        is none.
        """
        self._native.delete(reference)

    def __repr__(self) -> str:
        return f"ModuleRepository({self.addr!r})"
