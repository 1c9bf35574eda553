"""`py-pipeline`: a Python `pipeline`-world test component (built with
`--world pipeline`) that calls a model through the host.

Input `x` FP32 `[n]`. It runs the model named by parameter `model`
(default `adder`) on `a` = `x` (an input: passed as its handle) and `b` =
ones (made here: passed as data), returns the model's `sum` unread as `y`
(a handle again) and `z` = `sum` + 1, read and made here.
"""

from conduit_guest import DataType, Processor, Signature, Tensor, export, infer


class PyPipeline(Processor):
    def describe(self):
        return (
            Signature()
            .input("x", DataType.FP32, [-1])
            .output("y", DataType.FP32, [-1])
            .output("z", DataType.FP32, [-1])
        )

    def process(self, inputs, params):
        x = inputs.take("x")
        ones = Tensor.from_f32(x.shape, [1.0] * x.num_elements())
        out = infer(params.get_str("model", "adder"), {"a": x, "b": ones})
        total = out.take("sum")
        z = Tensor.from_f32(total.shape, [v + 1.0 for v in total.read_f32()])
        return {"y": total, "z": z}


export(PyPipeline)
