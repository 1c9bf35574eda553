"""The signature a component states in `describe`."""

from wit_world.imports import types as _wit

from .dtype import dtype_name, parse_dtype

__all__ = ["Signature", "TensorSpec"]


class TensorSpec:
    """One declared input or output: name, dtype and shape (`-1` is dynamic)."""

    __slots__ = ("name", "dtype", "shape")

    def __init__(self, name, dtype, shape):
        self.name = str(name)
        self.dtype = parse_dtype(dtype)
        self.shape = tuple(int(d) for d in shape)
        for d in self.shape:
            if d < -1:
                raise ValueError(f"tensor `{self.name}`: dimension {d} (use -1 for a dynamic one)")

    def __eq__(self, other):
        return isinstance(other, TensorSpec) and (self.name, self.dtype, self.shape) == (
            other.name,
            other.dtype,
            other.shape,
        )

    def __repr__(self):
        return f"TensorSpec({self.name!r}, {dtype_name(self.dtype)}, {list(self.shape)})"

    def _to_wit(self):
        return _wit.TensorSpec(self.name, self.dtype, list(self.shape))


class Signature:
    """Builder for the tensors a component consumes and produces.

    >>> from conduit_guest import DataType, Signature
    >>> sig = (Signature()
    ...        .input("text", DataType.BYTES, [-1])
    ...        .output("input_ids", "INT64", [-1, -1]))
    >>> sig.inputs[0].name, sig.outputs[0].dtype == DataType.INT64
    ('text', True)
    """

    __slots__ = ("inputs", "outputs")

    def __init__(self):
        #: Declared inputs, in order.
        self.inputs = []
        #: Declared outputs, in order.
        self.outputs = []

    def input(self, name, dtype, shape):
        """Declares an input (`dtype` a `DataType` or its name); returns `self`."""
        self.inputs.append(TensorSpec(name, dtype, shape))
        return self

    def output(self, name, dtype, shape):
        """Declares an output (`dtype` a `DataType` or its name); returns `self`."""
        self.outputs.append(TensorSpec(name, dtype, shape))
        return self

    def __eq__(self, other):
        return isinstance(other, Signature) and (self.inputs, self.outputs) == (
            other.inputs,
            other.outputs,
        )

    def __repr__(self):
        return f"Signature(inputs={self.inputs!r}, outputs={self.outputs!r})"

    def _to_wit(self):
        return _wit.Signature(
            [s._to_wit() for s in self.inputs], [s._to_wit() for s in self.outputs]
        )
