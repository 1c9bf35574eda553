"""Write Conduit components in Python.

A component subclasses `Processor` (its `describe` and `process`) and
registers it with `export`; componentize-py turns the module into a
WebAssembly component (`scripts/build-py-component.sh`, docs/components.md,
"Writing a component in Python")::

    from conduit_guest import DataType, Processor, Signature, Tensor, export

    class Scale(Processor):
        def describe(self):
            return (Signature()
                    .input("x", DataType.FP32, [-1])
                    .output("y", DataType.FP32, [-1]))

        def process(self, inputs, params):
            x = inputs.take("x")
            factor = params.get_float("factor", 2.0)
            return {"y": Tensor.from_f32(x.shape, [v * factor for v in x.read_f32()])}

    export(Scale)

Inputs are host-held tensors with their name, dtype and shape (`Tensor`);
typed reads copy their elements in as `array.array` (no numpy exists for
WASI). Outputs made with `Tensor.from_f32(...)` and friends are local data
returned with the result; an input returned as an output passes as a handle.
Failures are `Error` subclasses, each a WIT error case; any other exception
becomes `Internal`, never a trap. A component that calls `infer` is built for
the `pipeline` world; every other one is an `op`.
"""

from .dtype import DataType, dtype_name, parse_dtype
from .errors import Error, Internal, InvalidInput, NotFound, ResourceExhausted, Unsupported
from .io import Inputs, Outputs
from .log import debug, error, info, trace, warn
from .model import infer
from .params import Params
from .processor import Processor, export
from .signature import Signature, TensorSpec
from .tensor import Tensor

__all__ = [
    "DataType",
    "Error",
    "Inputs",
    "Internal",
    "InvalidInput",
    "NotFound",
    "Outputs",
    "Params",
    "Processor",
    "ResourceExhausted",
    "Signature",
    "Tensor",
    "TensorSpec",
    "Unsupported",
    "debug",
    "dtype_name",
    "error",
    "export",
    "infer",
    "info",
    "parse_dtype",
    "trace",
    "warn",
]
