"""The same client for asyncio: every network call is a coroutine.

Each coroutine runs the blocking call of :mod:`conduit` in the event loop's default
thread pool (:func:`asyncio.to_thread`); the native layer releases the GIL for the
network wait, so many calls — runs of several sessions, fetches of several values —
proceed concurrently while the event loop stays free. A cancelled coroutine stops
waiting, but its call still completes in its thread (a run still runs; its values are
released when nothing references them).

Sessions and repositories are opened by awaiting them, or by ``async with``::

    import conduit.aio

    async def main():
        async with conduit.aio.Session(modules=["paraphrase"]) as session:
            paraphrase = await session.new_module("paraphrase")
            out = await paraphrase.run(text=[["A sentence."], ["Another one."]])
            print(await out["similarity"].numpy())

Values, modules and sessions of :mod:`conduit.aio` mirror :class:`conduit.Value`,
:class:`conduit.Module` and :class:`conduit.Session`; what needs no network (names,
shapes, :meth:`Session.stats`) stays synchronous.
"""

from __future__ import annotations

import asyncio
import functools
import os
from types import TracebackType
from typing import Any, Dict, Generator, Iterable, List, Mapping, Optional, Tuple, Type, Union

import numpy as np

from . import _repository, _session
from ._errors import ConduitError
from ._repository import BytesOrPath, ModuleEntry, Registered
from ._session import ModuleInfo, Param, Stats

__all__ = ["ModuleRepository", "Session", "Module", "Value"]


class Value:
    """A remote value (see :class:`conduit.Value`), with coroutine fetch and release."""

    __slots__ = ("sync",)

    def __init__(self, sync: _session.Value) -> None:
        #: The blocking :class:`conduit.Value` this wraps.
        self.sync = sync

    @property
    def name(self) -> str:
        """The output's name."""
        return self.sync.name

    @property
    def datatype(self) -> str:
        """KServe v2 datatype name."""
        return self.sync.datatype

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype :meth:`numpy` returns."""
        return self.sync.dtype

    @property
    def shape(self) -> Tuple[int, ...]:
        """Dimensions."""
        return self.sync.shape

    async def numpy(self) -> np.ndarray:
        """Fetches the value (once) as a numpy array; see :meth:`conduit.Value.numpy`."""
        return await asyncio.to_thread(self.sync.numpy)

    async def release(self) -> None:
        """Drops the value on the runner; see :meth:`conduit.Value.release`."""
        await asyncio.to_thread(self.sync.release)

    def __repr__(self) -> str:
        return repr(self.sync)


def _unwrap(obj: Any) -> Any:
    return obj.sync if isinstance(obj, Value) else obj


class Module:
    """A module pinned in a session (see :class:`conduit.Module`), with a coroutine
    :meth:`run`."""

    __slots__ = ("sync",)

    def __init__(self, sync: _session.Module) -> None:
        #: The blocking :class:`conduit.Module` this wraps.
        self.sync = sync

    @property
    def info(self) -> ModuleInfo:
        """What the session pinned: name, version, digest, kind and signature."""
        return self.sync.info

    async def run(
        self,
        inputs: Optional[Mapping[str, Any]] = None,
        /,
        *,
        parameters: Optional[Mapping[str, Param]] = None,
        fetch: Iterable[str] = (),
        **named: Any,
    ) -> Dict[str, Value]:
        """Runs the module; outputs as remote values. Arguments as for
        :meth:`conduit.Module.run`, where a :class:`Value` of :mod:`conduit.aio` stays
        on the runner too."""
        given = {k: _unwrap(v) for k, v in {**(inputs or {}), **named}.items()}
        out = await asyncio.to_thread(
            self.sync.run, given, parameters=parameters, fetch=tuple(fetch)
        )
        return {k: Value(v) for k, v in out.items()}

    def __repr__(self) -> str:
        return repr(self.sync)


class Session:
    """A session (see :class:`conduit.Session`); ``await Session(...)`` or
    ``async with Session(...) as s`` opens it. The arguments are those of
    :class:`conduit.Session`."""

    def __init__(
        self,
        addr: Optional[str] = None,
        modules: Iterable[str] = (),
        api_key: Optional[str] = None,
        lease_seconds: Optional[float] = None,
        replay: bool = True,
        heartbeat: bool = True,
        timeout_seconds: float = 60.0,
    ) -> None:
        self._connect = functools.partial(
            _session.Session,
            addr=addr,
            modules=list(modules),
            api_key=api_key,
            lease_seconds=lease_seconds,
            replay=replay,
            heartbeat=heartbeat,
            timeout_seconds=timeout_seconds,
        )
        self._sync: Optional[_session.Session] = None

    async def _open(self) -> "Session":
        if self._sync is None:
            self._sync = await asyncio.to_thread(self._connect)
        return self

    def __await__(self) -> Generator[Any, None, "Session"]:
        return self._open().__await__()

    @property
    def sync(self) -> _session.Session:
        """The blocking :class:`conduit.Session` this wraps (opened)."""
        if self._sync is None:
            raise RuntimeError("the session is not open yet: `await` it or use `async with`")
        return self._sync

    async def new_module(self, reference: str) -> Module:
        """The :class:`Module` for ``reference``, pinned into the session if needed."""
        return Module(await asyncio.to_thread(self.sync.new_module, reference))

    @property
    def id(self) -> str:
        """The session's id."""
        return self.sync.id

    @property
    def runner_address(self) -> str:
        """``host:port`` of the runner holding the session."""
        return self.sync.runner_address

    def stats(self) -> Stats:
        """Payload bytes sent and received, calls and replays, so far."""
        return self.sync.stats()

    async def close(self) -> None:
        """Closes the session; see :meth:`conduit.Session.close`."""
        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)

    async def __aenter__(self) -> "Session":
        return await self._open()

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            await self.close()
        except ConduitError:
            if exc is None:
                raise


class ModuleRepository:
    """The registry (see :class:`conduit.ModuleRepository`) with coroutine methods;
    ``await ModuleRepository(...)`` or ``async with`` connects."""

    def __init__(self, addr: Optional[str] = None, api_key: Optional[str] = None) -> None:
        self._connect = functools.partial(
            _repository.ModuleRepository, addr=addr, api_key=api_key
        )
        self._sync: Optional[_repository.ModuleRepository] = None

    async def _open(self) -> "ModuleRepository":
        if self._sync is None:
            self._sync = await asyncio.to_thread(self._connect)
        return self

    def __await__(self) -> Generator[Any, None, "ModuleRepository"]:
        return self._open().__await__()

    async def __aenter__(self) -> "ModuleRepository":
        return await self._open()

    async def __aexit__(self, *exc: Any) -> None:
        return None

    @property
    def sync(self) -> _repository.ModuleRepository:
        """The blocking :class:`conduit.ModuleRepository` this wraps (connected)."""
        if self._sync is None:
            raise RuntimeError("the repository is not connected yet: `await` it first")
        return self._sync

    async def register_component(
        self, name: str, version: str, wasm: BytesOrPath, tags: Iterable[str] = ()
    ) -> Registered:
        """See :meth:`conduit.ModuleRepository.register_component`."""
        return await asyncio.to_thread(self.sync.register_component, name, version, wasm, tags)

    async def register_onnx(
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
        """See :meth:`conduit.ModuleRepository.register_onnx`."""
        return await asyncio.to_thread(
            lambda: self.sync.register_onnx(
                name,
                version,
                onnx,
                tags,
                max_batch_size=max_batch_size,
                max_queue_delay_us=max_queue_delay_us,
                backend=backend,
                device=device,
            )
        )

    async def register_pipeline(
        self,
        name: str,
        version: str,
        manifest: Union[str, "os.PathLike[str]"],
        tags: Iterable[str] = (),
    ) -> Registered:
        """See :meth:`conduit.ModuleRepository.register_pipeline`."""
        return await asyncio.to_thread(self.sync.register_pipeline, name, version, manifest, tags)

    async def add_tag(self, reference: str, tag: str) -> None:
        """See :meth:`conduit.ModuleRepository.add_tag`."""
        await asyncio.to_thread(self.sync.add_tag, reference, tag)

    async def list(self, prefix: str = "") -> List[ModuleEntry]:
        """See :meth:`conduit.ModuleRepository.list`."""
        return await asyncio.to_thread(self.sync.list, prefix)

    async def delete(self, reference: str) -> None:
        """See :meth:`conduit.ModuleRepository.delete`."""
        await asyncio.to_thread(self.sync.delete, reference)
