"""Sessions, modules and remote values: :class:`Session`, :class:`Module`, :class:`Value`."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

import numpy as np

from . import _native
from ._config import resolve_addr, resolve_api_key
from ._errors import ConduitError
from ._tensors import from_wire, numpy_dtype, to_wire

__all__ = ["Session", "Module", "Value", "RemoteId", "ModuleInfo", "TensorSpec", "Stats"]

#: A request parameter's value (KServe v2 parameters: bool, int, float or str).
Param = Union[bool, int, float, str]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a module's signature."""

    #: Tensor name.
    name: str
    #: KServe v2 datatype name (``"FP32"``, ``"BYTES"``…).
    datatype: str
    #: Dimensions; ``-1`` is any size.
    shape: Tuple[int, ...]


@dataclass(frozen=True)
class ModuleInfo:
    """What a session pinned for a module reference."""

    #: The reference as given to the session (what it runs under).
    reference: str
    #: Module name.
    name: str
    #: Version that runs.
    version: str
    #: ``blake3:<hex>``: exactly what runs, pinned for the session's life.
    digest: str
    #: ``"component"``, ``"model"`` or ``"pipeline"``.
    kind: str
    #: Input signature.
    inputs: Tuple[TensorSpec, ...]
    #: Output signature.
    outputs: Tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Stats:
    """What a session's client has done so far."""

    #: Tensor payload bytes sent by this client (inputs given as arrays; remote values
    #: passed along cost nothing).
    bytes_sent: int
    #: Tensor payload bytes received by this client (fetched values).
    bytes_received: int
    #: Module runs.
    calls: int
    #: Calls replayed on a new session after the previous one was lost.
    replays: int


@dataclass(frozen=True)
class RemoteId:
    """A value id on the session's runner, passed as an input as it is: for values this
    client did not produce (it cannot be replayed; prefer :class:`Value`). The runner
    answers :class:`~conduit.ValueNotFound` for an id its session does not hold."""

    #: The runner's value id.
    id: int


def _spec(d: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(d["name"], d["datatype"], tuple(d["shape"]))


class Value:
    """An output of a module run, held by the runner until fetched or released.

    Passing a ``Value`` as an input of another run of the same session chains the
    modules on the runner: the tensor does not cross the client. :meth:`numpy` fetches
    it (once; later calls return the same array).

    ``name``, ``datatype``, ``dtype`` and ``shape`` are known without fetching.
    """

    __slots__ = ("_native", "_array", "_module")

    def __init__(self, native: "_native.Value", module: "Module") -> None:
        self._native = native
        self._array: Optional[np.ndarray] = None
        # A value keeps its session open (the Rust value does not).
        self._module = module

    @property
    def name(self) -> str:
        """The output's name."""
        return self._native.name

    @property
    def datatype(self) -> str:
        """KServe v2 datatype name (``"FP32"``, ``"BYTES"``…)."""
        return self._native.datatype

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype :meth:`numpy` returns (``object`` for ``BYTES``, ``uint16`` raw
        bits for ``BF16``)."""
        return numpy_dtype(self._native.datatype)

    @property
    def shape(self) -> Tuple[int, ...]:
        """Dimensions."""
        return tuple(self._native.shape)

    @property
    def id(self) -> Optional[int]:
        """The runner's id of this value in its session (for logs, debugging and
        :class:`RemoteId`); ``None`` while it is not on the current runner (released, or
        not yet recomputed after a replay)."""
        return self._native.id

    def numpy(self) -> np.ndarray:
        """The value's tensor as a numpy array: fetched from the runner on the first
        call (releasing the GIL meanwhile), then kept.

        A numeric array is a read-only view over the received bytes (``.copy()`` it to
        write); ``BYTES`` is an object array of ``bytes``.

        Raises :class:`~conduit.ValueReleased` after :meth:`release`,
        :class:`~conduit.SessionExpired` or :class:`~conduit.ReplayFailed` when the
        session is lost.
        """
        if self._array is None:
            datatype, shape, buf = self._native.fetch()
            self._array = from_wire(datatype, shape, buf)
        return self._array

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        arr = self.numpy()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def release(self) -> None:
        """Drops the value on the runner now (it also goes when the last reference to it
        is gone, or with the session). Releasing twice is harmless; fetching or passing
        it afterwards raises :class:`~conduit.ValueReleased`. An array already returned
        by :meth:`numpy` stays valid."""
        self._native.release()

    def __repr__(self) -> str:
        return f"<conduit.Value {self.name} {self.datatype} {list(self.shape)}>"


class Module:
    """A module (component, model or pipeline) pinned in a session; get one from
    :meth:`Session.new_module`."""

    __slots__ = ("_native", "info", "_declared", "_session")

    def __init__(self, native: "_native.Module", session: "Session") -> None:
        self._native = native
        self._session = session
        d = native.info
        #: What the session pinned: name, version, digest, kind and signature.
        self.info: ModuleInfo = ModuleInfo(
            reference=d["reference"],
            name=d["name"],
            version=d["version"],
            digest=d["digest"],
            kind=d["kind"],
            inputs=tuple(_spec(s) for s in d["inputs"]),
            outputs=tuple(_spec(s) for s in d["outputs"]),
        )
        self._declared = {s.name: s.datatype for s in self.info.inputs}

    @property
    def reference(self) -> str:
        """The reference the session runs this module under."""
        return self.info.reference

    def run(
        self,
        inputs: Optional[Mapping[str, Any]] = None,
        /,
        *,
        parameters: Optional[Mapping[str, Param]] = None,
        fetch: Iterable[str] = (),
        **named: Any,
    ) -> Dict[str, Value]:
        """Runs the module on the runner; returns its outputs by name, as remote
        :class:`Value` s (nothing is fetched until asked, except the outputs named in
        ``fetch``, which come back with the answer: their :meth:`Value.numpy` costs no
        round trip).

        Inputs are given as keywords (``module.run(text=[["a"], ["b"]])``) or as one
        mapping (for names that are not Python identifiers, or ``parameters`` and
        ``fetch``). Each is a numpy array, Python data (lists, scalars, str, bytes), a
        :class:`~conduit.Tensor`, a :class:`Value` of this session, which stays on the
        runner, or a :class:`RemoteId`. ``parameters`` are the
        request's KServe v2 parameters (``"step.name"`` addresses a pipeline step).
        Blocks until the runner answered, releasing the GIL meanwhile.

        Raises :class:`~conduit.InvalidArgument` when an input is missing, unknown or of
        the wrong datatype or shape (the session stays usable);
        :class:`~conduit.ValueReleased` for a released value;
        :class:`~conduit.SessionExpired` when the lease ran out and replay is off.
        """
        given: Dict[str, Any] = dict(inputs or {})
        given.update(named)
        wire: List[Tuple[str, Any]] = []
        for name, obj in given.items():
            if isinstance(obj, Value):
                wire.append((name, obj._native))
            elif isinstance(obj, RemoteId):
                wire.append((name, int(obj.id)))
            else:
                wire.append((name, to_wire(name, obj, self._declared.get(name))))
        outputs = self._native.run(wire, dict(parameters or {}), list(fetch))
        return {name: Value(v, self) for name, v in outputs}

    def __repr__(self) -> str:
        i = self.info
        return f"<conduit.Module {i.reference} ({i.kind} {i.name}@{i.version} {i.digest})>"


class Session:
    """A session on one runner: the modules it pinned, the values its runs produced.

    Opening resolves each reference in ``modules`` once and pins its digest (a tag moved
    later does not change what runs); :meth:`new_module` pins more. The runner keeps the
    session ``lease_seconds`` after its last call (default and cap: the server's, 60 s
    unless configured); ``heartbeat=True`` renews it in the background while the session
    is open. With ``replay=True`` (the default) the client logs the calls since the
    values it last fetched and, when the session is lost (lease expired, runner gone),
    opens a new one on the same digests and replays them: the caller sees the same
    results, and :meth:`stats` counts the replays. With ``replay=False`` it raises
    :class:`~conduit.SessionExpired` instead.

    ``addr``: the gRPC address of ``conduit dev`` or of a cluster's gateway (default
    ``$CONDUIT_ADDR``, else ``127.0.0.1:7070``); ``api_key`` defaults to
    ``$CONDUIT_API_KEY``. ``timeout_seconds`` bounds every call.

    Use it as a context manager (``with conduit.Session(...) as s:``), which closes it,
    or call :meth:`close`. Raises :class:`~conduit.NotFound` when a module does not
    exist, :class:`~conduit.Unavailable` when the server cannot be reached.
    """

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
        #: The address the session was opened at.
        self.addr: str = resolve_addr(addr)
        lease_ms = None if lease_seconds is None else max(1, round(lease_seconds * 1000))
        self._native = _native.Session(
            self.addr,
            resolve_api_key(api_key),
            list(modules),
            lease_ms,
            heartbeat,
            replay,
            float(timeout_seconds),
        )

    def new_module(self, reference: str) -> Module:
        """The :class:`Module` for ``reference`` (``name``, ``name@version``,
        ``name:tag``, ``name@blake3:<hex>``), pinning it into the session if it was not
        among the modules it was opened with."""
        return Module(self._native.module(reference), self)

    @property
    def id(self) -> str:
        """The session's id (the current one: a replay opens a new session)."""
        return self._native.id

    @property
    def runner_address(self) -> str:
        """``host:port`` of the runner holding the session."""
        return self._native.runner_address

    @property
    def runner_id(self) -> str:
        """The runner's id (empty for ``conduit dev``)."""
        return self._native.runner_id

    def stats(self) -> Stats:
        """Payload bytes sent and received, calls and replays, so far."""
        return Stats(**self._native.stats())

    def close(self) -> None:
        """Closes the session: the runner drops it and every value it holds. Closing
        twice is harmless; any later call raises :class:`~conduit.SessionClosed`."""
        self._native.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is None:
            self.close()
            return
        try:  # the block's own error is the one to see
            self.close()
        except ConduitError:
            pass

    def __repr__(self) -> str:
        return f"<conduit.Session {self.id} at {self.runner_address or self.addr}>"
