"""Errors a component raises instead of returning outputs.

Each class is one case of the WIT `error` variant and reaches the caller as
its own status (INVALID_ARGUMENT, UNIMPLEMENTED, NOT_FOUND,
RESOURCE_EXHAUSTED, INTERNAL). Any other exception escaping `process`
becomes `Internal` with the exception's type and text: a Python bug is an
error response, never a trap.
"""

from wit_world.imports import types as _wit

__all__ = ["Error", "InvalidInput", "Unsupported", "NotFound", "ResourceExhausted", "Internal"]


class Error(Exception):
    """A structured component error; raise one of its subclasses.

    The factory methods mirror the Rust SDK: `raise Error.invalid_input("…")`
    is `raise InvalidInput("…")`.
    """

    #: The WIT case name.
    kind = "internal"

    def __init__(self, message):
        super().__init__(str(message))
        #: The human-readable message sent to the caller.
        self.message = str(message)

    def __str__(self):
        return self.message

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r})"

    @staticmethod
    def invalid_input(message):
        """An `InvalidInput` error: the request's tensors or parameters are wrong."""
        return InvalidInput(message)

    @staticmethod
    def unsupported(message):
        """An `Unsupported` error: well-formed, but not supported by this component."""
        return Unsupported(message)

    @staticmethod
    def not_found(message):
        """A `NotFound` error: a referenced tensor, parameter or model does not exist."""
        return NotFound(message)

    @staticmethod
    def resource_exhausted(message):
        """A `ResourceExhausted` error: a limit was reached; retrying later may succeed."""
        return ResourceExhausted(message)

    @staticmethod
    def internal(message):
        """An `Internal` error: anything else (a bug, an unexpected state)."""
        return Internal(message)

    def _to_wit(self):
        return _TO_WIT[type(self).kind](self.message)

    @staticmethod
    def _from_wit(err):
        """The SDK exception for a WIT `error` value (a host call's failure)."""
        for cls, wit_cls in _PAIRS:
            if isinstance(err, wit_cls):
                return cls(err.value)
        return Internal(f"unexpected error value from the host: {err!r}")


class InvalidInput(Error):
    """The request's tensors or parameters are wrong (name, dtype, shape, value)."""

    kind = "invalid-input"


class Unsupported(Error):
    """The request is well-formed but asks for something not supported."""

    kind = "unsupported"


class NotFound(Error):
    """A referenced tensor, parameter or model does not exist."""

    kind = "not-found"


class ResourceExhausted(Error):
    """A limit was reached (size, queue, quota); retrying later may succeed."""

    kind = "resource-exhausted"


class Internal(Error):
    """Anything else: a bug or an unexpected state."""

    kind = "internal"


_PAIRS = (
    (InvalidInput, _wit.Error_InvalidInput),
    (Unsupported, _wit.Error_Unsupported),
    (NotFound, _wit.Error_NotFound),
    (ResourceExhausted, _wit.Error_ResourceExhausted),
    (Internal, _wit.Error_Internal),
)
_TO_WIT = {cls.kind: wit_cls for cls, wit_cls in _PAIRS}
