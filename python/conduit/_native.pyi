"""Type stubs of ``conduit._native``, the pyo3 layer over the Rust client.

Internal: the public API is the pure-Python package (``conduit``), which converts
tensors and wraps these classes. Every method that talks to a server releases the GIL
and raises the ``conduit`` exception of the error's kind.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

#: One input: a remote value, a raw value id, or (datatype, shape, data) with data
#: ``bytes`` (shared) or a C-contiguous uint8 buffer (copied once).
_Input = Union["Value", int, Tuple[str, Sequence[int], Any]]

class Buffer:
    """A received tensor payload, read-only, exposed through the buffer protocol."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

class ModuleRepository:
    """A connection to a registry."""

    def __init__(self, addr: str, api_key: str) -> None: ...
    def register_component(
        self, name: str, version: str, wasm: bytes, tags: List[str]
    ) -> Dict[str, Any]: ...
    def register_onnx(
        self,
        name: str,
        version: str,
        onnx: bytes,
        tags: List[str],
        max_batch_size: int,
        max_queue_delay_us: int,
        backend: str,
        device: str,
    ) -> Dict[str, Any]: ...
    def register_pipeline(
        self, name: str, version: str, manifest: str, tags: List[str]
    ) -> Dict[str, Any]: ...
    def add_tag(self, reference: str, tag: str) -> None: ...
    def list(self, prefix: str) -> List[Dict[str, Any]]: ...
    def delete(self, reference: str) -> None: ...

class Session:
    """A session on one runner."""

    def __init__(
        self,
        addr: str,
        api_key: str,
        modules: List[str],
        lease_ms: Optional[int],
        heartbeat: bool,
        replay: bool,
        timeout_s: float,
    ) -> None: ...
    def module(self, reference: str) -> Module: ...
    @property
    def id(self) -> str: ...
    @property
    def runner_address(self) -> str: ...
    @property
    def runner_id(self) -> str: ...
    def stats(self) -> Dict[str, int]: ...
    def close(self) -> None: ...

class Module:
    """A module pinned in a session."""

    @property
    def info(self) -> Dict[str, Any]: ...
    def run(
        self,
        inputs: List[Tuple[str, _Input]],
        parameters: Dict[str, Union[bool, int, float, str]],
        fetch: List[str],
    ) -> List[Tuple[str, Value]]: ...

class Value:
    """An output kept on the runner."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> List[int]: ...
    @property
    def id(self) -> Optional[int]: ...
    def fetch(self) -> Tuple[str, List[int], Buffer]: ...
    def release(self) -> None: ...
