"""The exceptions of the Conduit client: one class per error kind of the Rust client.

Every error the server or the client reports is a :class:`ConduitError`; its subclass
says what kind it is, so callers catch exactly what they can handle::

    try:
        out = module.run(text=texts)
    except conduit.InvalidArgument as e:   # wrong dtype, shape or name: fix the request
        print(e)
    except conduit.SessionExpired:         # the lease ran out (replay was off)
        ...

The native layer raises them through :func:`_from_kind`, so the mapping from the Rust
``ErrorKind`` to a class lives here, once.
"""

from __future__ import annotations

__all__ = [
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


class ConduitError(Exception):
    """Base class of every error the Conduit client raises.

    ``kind`` is the Rust client's ``ErrorKind`` name (``"InvalidArgument"``…) and
    ``message`` the server's or the client's explanation (also ``str(e)``).
    """

    #: The Rust client's ``ErrorKind`` this class stands for.
    kind: str = "Internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ConduitError, ValueError):
    """The request is wrong: an unknown input, a wrong datatype or shape, a bad parameter,
    a malformed reference or manifest. Nothing ran; the session is still usable."""

    kind = "InvalidArgument"


class NotFound(ConduitError, LookupError):
    """No such module, version, tag or session for this API key's tenant (another
    tenant's objects are not found either)."""

    kind = "NotFound"


class Unauthenticated(ConduitError):
    """The API key is missing, unknown or revoked."""

    kind = "Unauthenticated"


class PermissionDenied(ConduitError):
    """The API key is valid but may not do this (an admin-only call, say)."""

    kind = "PermissionDenied"


class ResourceExhausted(ConduitError):
    """A limit was reached: too many sessions or concurrent requests, session values over
    their byte budget, a request or response too large. Retry later or release values."""

    kind = "ResourceExhausted"


class Unavailable(ConduitError, ConnectionError):
    """The server (or the runner holding the session) could not be reached."""

    kind = "Unavailable"


class DeadlineExceeded(ConduitError, TimeoutError):
    """The call took longer than its deadline (the session's ``timeout_seconds``, or a
    server-side deadline)."""

    kind = "DeadlineExceeded"


class SessionClosed(ConduitError):
    """The session was closed (by :meth:`conduit.Session.close` or the ``with`` block's
    end); open a new one."""

    kind = "SessionClosed"


class SessionExpired(ConduitError):
    """The session's lease ran out and the runner dropped it with its values, and the
    session was opened with ``replay=False`` (with replay, the client reopens it and
    replays the calls instead)."""

    kind = "SessionExpired"


class ValueReleased(ConduitError):
    """The value was released by this client (:meth:`conduit.Value.release`) and cannot
    be fetched or passed to a module any more."""

    kind = "ValueReleased"


class ValueNotFound(ConduitError, LookupError):
    """The runner holds no such value in this session (dropped, or another session's or
    another tenant's)."""

    kind = "ValueNotFound"


class ReplayFailed(ConduitError):
    """The session was lost (lease expired, runner gone) and replaying its calls on a new
    session failed; the message says which call and why."""

    kind = "ReplayFailed"


class InternalError(ConduitError):
    """Anything else: a server bug, a component trap, a malformed answer."""

    kind = "Internal"


_BY_KIND: dict[str, type[ConduitError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgument,
        NotFound,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        SessionClosed,
        SessionExpired,
        ValueReleased,
        ValueNotFound,
        ReplayFailed,
        InternalError,
    )
}


def _from_kind(kind: str, message: str) -> ConduitError:
    """The exception for the Rust ``ErrorKind`` named ``kind`` (called by the native
    layer; an unknown kind is an :class:`InternalError`)."""
    return _BY_KIND.get(kind, InternalError)(message)
