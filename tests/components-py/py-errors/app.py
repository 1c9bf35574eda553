"""`py-errors`: a Python test component for the failure paths of the SDK and host.

Input `x` FP32 `[n]`; parameter `mode` picks what `process` does:
- `ok` (default): `y = 2x` (a local output), `x` back (a passed-through
  handle) and `calls`, how many calls this instance has served (warm reuse);
- `invalid`: raises `InvalidInput`;
- `raise`: divides by zero (an unexpected Python exception → `internal`);
- `alloc`: allocates `bytes` bytes (the sandbox memory limit);
- `import`: imports a module the build did not load (no filesystem at run time).
"""

from conduit_guest import DataType, InvalidInput, Processor, Signature, Tensor, export, info


class PyErrors(Processor):
    def __init__(self):
        # Runs at build time (componentize-py snapshots the heap): every
        # instance starts from this state.
        self.calls = 0

    def describe(self):
        return (
            Signature()
            .input("x", DataType.FP32, [-1])
            .output("y", DataType.FP32, [-1])
            .output("x", DataType.FP32, [-1])
            .output("calls", DataType.INT64, [1])
        )

    def process(self, inputs, params):
        self.calls += 1
        x = inputs.take("x")
        mode = params.get_str("mode", "ok")
        if mode == "invalid":
            raise InvalidInput(f"mode `invalid` refuses x of shape {list(x.shape)}")
        if mode == "raise":
            return {"y": Tensor.from_f32([1], [x.num_elements() / 0])}
        if mode == "import":
            import colorsys  # noqa: F401 - not loaded at build time

        if mode == "alloc":
            hoard = bytearray(params.get_int("bytes"))
            info(f"allocated {len(hoard)} bytes")
        y = Tensor.from_f32(x.shape, [2 * v for v in x.read_f32()])
        return {"y": y, "x": x, "calls": Tensor.from_i64([1], [self.calls])}


export(PyErrors)
