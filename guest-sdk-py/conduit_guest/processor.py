"""The `Processor` base class and `export`, the glue to componentize-py's export.

componentize-py imports the app module when it BUILDS the component,
instantiates the module-level class named after the exported interface
(`Processor`) once, and snapshots the heap: the import, the SDK and the
user's `__init__` run at build time, not per instance or per call. `export`
puts that class into the calling module: an adapter that converts the WIT
values to the SDK's types and every exception to a WIT `error`.
"""

import os
import sys
from importlib.machinery import PathFinder

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import types as _wit

from . import log
from .errors import Error
from .io import Inputs, Outputs
from .params import Params
from .signature import Signature

__all__ = ["Processor", "export"]

# The longest traceback logged for an unexpected exception (the host caps log records too).
_MAX_TRACEBACK = 4096


class Processor:
    """What a component implements: its signature and its per-request work.

    Subclass it, override `describe` and `process`, and pass the class to
    `export`. The class is instantiated once, when the component is built
    (componentize-py snapshots the initialised heap): `__init__` is the place
    for tables to precompute, and it costs nothing per instance or call.
    """

    def __new__(cls, *args, **kwargs):
        # componentize-py instantiates the app module's `Processor` at build
        # time: when that is still this imported base class, `export` was not called.
        if cls is Processor:
            raise TypeError(
                "conduit_guest.Processor is a base class: subclass it and call "
                "`export(YourProcessor)` at the end of app.py"
            )
        return super().__new__(cls)

    def describe(self):
        """The tensors this component consumes and produces (a `Signature`).

        Called when the component is registered; must not depend on any request.
        """
        raise NotImplementedError(f"{type(self).__name__}.describe")

    def process(self, inputs, params):
        """Runs one request: `inputs` (`Inputs`) and `params` (`Params`) in, an
        `Outputs` (or a dict of name to `Tensor`) out.

        Raise an `Error` subclass (`InvalidInput`, `Unsupported`, `NotFound`,
        `ResourceExhausted`, `Internal`) to fail the request with that status;
        any other exception fails it as `Internal` with its type and text.
        """
        raise NotImplementedError(f"{type(self).__name__}.process")


# The frames of a traceback as `(file, line, function)`, read from the code
# objects. Never through `traceback.extract_tb`/`format_exception`: they read
# the source lines from files (linecache), and the sandbox has no filesystem,
# so the first file access traps the instance.
def _frames(tb):
    while tb is not None:
        code = tb.tb_frame.f_code
        yield os.path.basename(code.co_filename), tb.tb_lineno, code.co_name
        tb = tb.tb_next


def _exception_text(exc):
    """`Type: message (at file:line in function)` for an unexpected exception."""
    text = f"{type(exc).__name__}: {exc}"
    frames = list(_frames(exc.__traceback__))
    if frames:
        text += " (at {}:{} in {})".format(*frames[-1])
    return text


def _traceback_text(exc):
    """A traceback without source lines (see `_frames`), innermost call last."""
    lines = ["Traceback (most recent call last):"]
    lines += [f'  File "{f}", line {n}, in {name}' for f, n, name in _frames(exc.__traceback__)]
    lines.append(f"{type(exc).__name__}: {exc}")
    return "\n".join(lines)


def _seal_imports():
    """Stops imports from searching the filesystem, from the first call on.

    At run time the sandbox grants no filesystem, and the first file access
    (an import of a module that the build did not load) traps the instance.
    Without the path finder such an import raises `ModuleNotFoundError`
    instead: an `internal` error naming the module. Modules loaded at build
    time stay importable (from `sys.modules`), and so do built-in and frozen
    ones. Not done at build time (componentize-py imports more after creating
    the export), nor outside WebAssembly (the SDK's native tests).
    """
    if sys.platform == "wasi" and PathFinder in sys.meta_path:
        sys.meta_path.remove(PathFinder)
        sys.path_importer_cache.clear()


class _Export(_exports.Processor):
    """The class componentize-py instantiates: WIT values in, WIT values out."""

    _user_class = None

    def __init__(self):
        self._user = self._user_class()

    def describe(self):
        _seal_imports()
        sig = self._user.describe()
        if not isinstance(sig, Signature):
            raise TypeError(
                f"{type(self._user).__name__}.describe must return a Signature, "
                f"not {type(sig).__name__}"
            )
        return sig._to_wit()

    def process(self, inputs, params):
        # The WIT error is raised outside the `except` blocks, so that the
        # exception does not keep the failed call's frames (and the input
        # tensors' handles) alive through `__context__`.
        _seal_imports()
        handles = [t.tensor for t in inputs]
        try:
            outputs = self._user.process(Inputs._from_wit(inputs), Params._from_wit(params))
            returned = Outputs._coerce(outputs)._to_wit()
            _release(handles, returned)
            return returned
        except Error as e:
            err = e._to_wit()
        except Err as e:
            # A host call's error, raised through the raw bindings.
            err = e.value if isinstance(e.value, _WIT_ERRORS) else _wit.Error_Internal(repr(e.value))
        except BaseException as e:  # noqa: BLE001 - a Python bug must be an error, not a trap
            err = _wit.Error_Internal(_exception_text(e))
            try:
                log.error(_traceback_text(e)[-_MAX_TRACEBACK:])
            except BaseException:  # noqa: BLE001 - logging is best effort
                pass
        _release(handles, [])
        raise Err(err)


def _release(handles, returned):
    """Drops the input handles the call does not return, now.

    Left to the garbage collector, a handle caught in a reference cycle (a
    traceback, a closure) outlives the call; the host then counts it as kept
    past the call and does not reuse the instance (a fresh CPython instance
    costs milliseconds). Handles already dropped or moved are skipped.
    """
    kept = {
        id(v.value.value) for v in returned if isinstance(v.value, _wit.TensorValue_Handle)
    }
    for h in handles:
        if id(h) in kept:
            continue
        try:
            h.__exit__(None, None, None)
        except BaseException:  # noqa: BLE001 - already dropped, moved, or a stand-in
            pass


_WIT_ERRORS = (
    _wit.Error_InvalidInput,
    _wit.Error_Unsupported,
    _wit.Error_NotFound,
    _wit.Error_ResourceExhausted,
    _wit.Error_Internal,
)


def export(cls):
    """Exports `cls` (a `Processor` subclass) as this component's processor.

    Call it once, in the app module (the one named on the componentize-py
    command line), after the class: `export(MyOp)`, or use it as a class
    decorator. It defines the module-level name `Processor` that
    componentize-py looks for, so in that module `Processor` names the export
    afterwards. Returns `cls`.
    """
    if not (isinstance(cls, type) and callable(getattr(cls, "process", None))):
        raise TypeError(f"export expects a Processor subclass, got {cls!r}")
    adapter = type("Processor", (_Export,), {"_user_class": cls, "__module__": __name__})
    caller = sys._getframe(1).f_globals
    caller["Processor"] = adapter
    return cls
