"""Calling models from a `pipeline`-world component."""

from componentize_py_types import Err

from .errors import Error, Unsupported
from .io import Inputs, Outputs

__all__ = ["infer"]

# Imported when the component is built (componentize-py runs the imports then):
# at request time an import that finds nothing searches the filesystem, which
# the sandbox does not grant (a trap).
try:
    from wit_world.imports import model as _model
except ImportError:  # an `op`-world component: no `model` import
    _model = None


def infer(name, inputs):
    """Runs the model `name` (`name`, `name@version`, `name:tag` or a digest) on
    `inputs` (an `Outputs` or a dict of name to `Tensor`) and returns its
    outputs as `Inputs` (take them by name).

    Input tensors that came from the host pass as handles (no copy; they stay
    usable afterwards, e.g. as outputs); local tensors are sent as data. Only components built for the `pipeline` world
    can call this (`scripts/build-py-component.sh --world pipeline`).

    Raises the host's `Error`: `NotFound` for an unknown model, `InvalidInput`
    for tensors that do not match its signature, `ResourceExhausted` when its
    queue is full; `Unsupported` in an `op`-world component.
    """
    if _model is None:
        raise Unsupported(
            "infer needs the `pipeline` world: build this component with --world pipeline"
        )
    values = Outputs._coerce(inputs)._to_wit(keep_handles=True)
    try:
        outputs = _model.infer(name, values)
    except Err as e:
        raise Error._from_wit(e.value) from None
    return Inputs._from_wit(outputs)
