"""Request parameters (KServe v2 `parameters`) with typed getters and defaults."""

from wit_world.imports import types as _wit

from .errors import InvalidInput

__all__ = ["Params"]

_REQUIRED = object()

_KINDS = (
    (_wit.ParamValue_Bool, "bool"),
    (_wit.ParamValue_Int64, "int"),
    (_wit.ParamValue_Uint64, "int"),
    (_wit.ParamValue_Double, "float"),
    (_wit.ParamValue_String, "str"),
)


class Params:
    """The parameters of one request.

    Each getter returns the value converted to its type, or `default` when the
    parameter is absent; without a default an absent parameter is an
    `InvalidInput` error. A value of the wrong type is an `InvalidInput` error
    naming the parameter.
    """

    __slots__ = ("_values",)

    def __init__(self, values=None):
        # name -> (kind, value), kind one of "bool", "int", "float", "str".
        self._values = {}
        for name, value in (values or {}).items():
            kind = type(value).__name__
            if kind not in ("bool", "int", "float", "str"):
                raise TypeError(f"parameter `{name}`: unsupported type {kind}")
            self._values[name] = (kind, value)

    @classmethod
    def _from_wit(cls, params):
        p = cls()
        for param in params:
            for wit_cls, kind in _KINDS:
                if isinstance(param.value, wit_cls):
                    p._values[param.name] = (kind, param.value.value)
                    break
        return p

    def get(self, name, default=None):
        """The value of `name` as sent (bool, int, float or str), or `default`."""
        entry = self._values.get(name)
        return default if entry is None else entry[1]

    def __contains__(self, name):
        return name in self._values

    def __len__(self):
        return len(self._values)

    def names(self):
        """The names of the parameters sent."""
        return list(self._values)

    def _lookup(self, name, default):
        entry = self._values.get(name)
        if entry is None and default is _REQUIRED:
            raise InvalidInput(f"missing parameter `{name}`")
        return entry

    def get_int(self, name, default=_REQUIRED):
        """`name` as an int (strings holding an integer are accepted)."""
        entry = self._lookup(name, default)
        if entry is None:
            return default
        kind, value = entry
        if kind == "int":
            return value
        if kind == "str":
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise InvalidInput(f"parameter `{name}` must be an integer")

    def get_float(self, name, default=_REQUIRED):
        """`name` as a float (integers and numeric strings are accepted)."""
        entry = self._lookup(name, default)
        if entry is None:
            return default
        kind, value = entry
        if kind in ("float", "int"):
            return float(value)
        if kind == "str":
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise InvalidInput(f"parameter `{name}` must be a number")

    def get_bool(self, name, default=_REQUIRED):
        """`name` as a bool (the strings `"true"` and `"false"` are accepted)."""
        entry = self._lookup(name, default)
        if entry is None:
            return default
        kind, value = entry
        if kind == "bool":
            return value
        if kind == "str" and value.strip() in ("true", "false"):
            return value.strip() == "true"
        raise InvalidInput(f"parameter `{name}` must be a boolean")

    def get_str(self, name, default=_REQUIRED):
        """`name` as a string."""
        entry = self._lookup(name, default)
        if entry is None:
            return default
        kind, value = entry
        if kind == "str":
            return value
        raise InvalidInput(f"parameter `{name}` must be a string")

    def __repr__(self):
        return f"Params({ {n: v for n, (_, v) in self._values.items()}!r})"
