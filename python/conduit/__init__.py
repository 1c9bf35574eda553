"""Conduit's Python client: register modules, open sessions, run pipelines, chain remote
values — over the Rust client (``conduit-client``), with numpy in and out.

::

    import conduit

    repo = conduit.ModuleRepository()          # $CONDUIT_ADDR (127.0.0.1:7070), $CONDUIT_API_KEY
    repo.register_component("tokenizer", "1.0.0", "bert_tokenizer.wasm")
    repo.register_onnx("minilm", "1.0.0", "model.onnx")
    repo.register_component("embedding-post", "1.0.0", "embedding_post.wasm")
    repo.register_pipeline("paraphrase", "1.0.0", "examples/pipelines/paraphrase.toml")

    with conduit.Session(modules=["paraphrase@1.0.0"]) as session:
        paraphrase = session.new_module("paraphrase@1.0.0")
        out = paraphrase.run(text=[["The company Conduit is based in the Bay Area"],
                                   ["Conduit's headquarters are situated in Mountain View"]])
        print(out["similarity"].numpy())   # [0.6965]

A run's outputs stay on the runner as :class:`Value` s until fetched (:meth:`Value.numpy`);
passing one to another run of the session chains the modules there, without the tensor
crossing the client. Errors are :class:`ConduitError` subclasses, one per kind.
:mod:`conduit.aio` is the same client for asyncio; :func:`local` starts a
``conduit dev`` to talk to. Guide: ``docs/python.md``.
"""

from ._errors import (
    ConduitError,
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ReplayFailed,
    ResourceExhausted,
    SessionClosed,
    SessionExpired,
    Unauthenticated,
    Unavailable,
    ValueNotFound,
    ValueReleased,
)
from ._config import DEFAULT_ADDR
from ._local import LocalServer, find_binary, local
from ._repository import ModuleEntry, ModuleRepository, Registered
from ._session import Module, ModuleInfo, RemoteId, Session, Stats, TensorSpec, Value
from ._tensors import DATATYPES, Tensor

__all__ = [
    "ModuleRepository",
    "Registered",
    "ModuleEntry",
    "Session",
    "Module",
    "ModuleInfo",
    "TensorSpec",
    "Value",
    "RemoteId",
    "Stats",
    "Tensor",
    "DATATYPES",
    "local",
    "LocalServer",
    "find_binary",
    "DEFAULT_ADDR",
    "ConduitError",
    "InvalidArgument",
    "NotFound",
    "Unauthenticated",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "DeadlineExceeded",
    "SessionClosed",
    "SessionExpired",
    "ValueReleased",
    "ValueNotFound",
    "ReplayFailed",
    "InternalError",
]

__version__ = "0.1.0"
