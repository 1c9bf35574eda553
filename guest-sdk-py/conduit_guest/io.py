"""Named tensor collections: what `process` receives (`Inputs`) and returns (`Outputs`)."""

from wit_world.imports import types as _wit

from .errors import InvalidInput
from .tensor import Tensor

__all__ = ["Inputs", "Outputs"]


class Inputs:
    """Named tensors handed to a component: a request's inputs, or a model's outputs.

    Take each tensor by name with `take`; the name, dtype and shape of every
    tensor are known without a host call.
    """

    __slots__ = ("_tensors",)

    def __init__(self, tensors=()):
        self._tensors = {t.name: t for t in tensors}

    @classmethod
    def _from_wit(cls, named_tensors):
        return cls(Tensor._from_wit(n) for n in named_tensors)

    def take(self, name):
        """Removes and returns the tensor called `name`.

        Raises `InvalidInput` naming the tensor (and those present) when it is absent.
        """
        try:
            return self._tensors.pop(name)
        except KeyError:
            present = ", ".join(f"`{n}`" for n in self._tensors) or "none"
            raise InvalidInput(f"missing input tensor `{name}` (present: {present})") from None

    def get(self, name, default=None):
        """The tensor called `name` (left in place), or `default`."""
        return self._tensors.get(name, default)

    def names(self):
        """The names of the tensors not yet taken, in request order."""
        return list(self._tensors)

    def items(self):
        """`(name, tensor)` pairs of the tensors not yet taken."""
        return list(self._tensors.items())

    def __contains__(self, name):
        return name in self._tensors

    def __len__(self):
        return len(self._tensors)

    def __iter__(self):
        return iter(list(self._tensors))

    def __repr__(self):
        return f"Inputs({list(self._tensors.values())!r})"


class Outputs:
    """Named tensors a component returns from `process` (or passes to `infer`).

    >>> from conduit_guest import Outputs, Tensor
    >>> out = Outputs().add("y", Tensor.from_f32([2], [1.0, 2.0]))
    >>> out["z"] = Tensor.from_i64([1], [7])
    >>> out.names()
    ['y', 'z']

    `process` may also return a plain `dict` of name to `Tensor`.
    """

    __slots__ = ("_tensors",)

    def __init__(self, tensors=None):
        self._tensors = {}
        if tensors is not None:
            pairs = tensors.items() if hasattr(tensors, "items") else tensors
            for name, tensor in pairs:
                self[name] = tensor

    def add(self, name, tensor):
        """Adds (or replaces) the output `name`; returns `self` for chaining."""
        self[name] = tensor
        return self

    def __setitem__(self, name, tensor):
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"output `{name}` must be a conduit_guest.Tensor, not {type(tensor).__name__} "
                "(make one with Tensor.from_f32(shape, data) and the like)"
            )
        self._tensors[str(name)] = tensor

    def __getitem__(self, name):
        return self._tensors[name]

    def __contains__(self, name):
        return name in self._tensors

    def __len__(self):
        return len(self._tensors)

    def names(self):
        """The output names, in insertion order."""
        return list(self._tensors)

    def __repr__(self):
        return f"Outputs({self._tensors!r})"

    @classmethod
    def _coerce(cls, value):
        """`value` (an `Outputs`, a dict or `(name, tensor)` pairs) as `Outputs`."""
        if isinstance(value, Outputs):
            return value
        if value is None:
            raise TypeError("process returned None: return an Outputs or a dict of Tensors")
        return cls(value)

    def _to_wit(self, keep_handles=False):
        """The WIT `named-value` list. A handle moves to the host when passed, so
        one passed twice is shared for the second use, and with `keep_handles`
        (a call that returns, like `infer`) every one is shared: the caller's
        tensors stay usable."""
        seen = set()
        values = []
        for name, tensor in self._tensors.items():
            if tensor._handle is not None:
                if keep_handles or id(tensor._handle) in seen:
                    tensor = tensor.share()
                seen.add(id(tensor._handle))
            values.append(_wit.NamedValue(name, tensor._to_wit()))
        return values
