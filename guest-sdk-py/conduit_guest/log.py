"""Logging into the host's log, attributed to the component (with a size cap per call).

`print` works too (the host captures guest stdout and stderr into its log),
but these carry a level.
"""

from wit_world.imports.logging import Level as _Level
from wit_world.imports.logging import log as _log

__all__ = ["trace", "debug", "info", "warn", "error"]


def trace(message):
    """Logs `message` at trace level."""
    _log(_Level.TRACE, str(message))


def debug(message):
    """Logs `message` at debug level."""
    _log(_Level.DEBUG, str(message))


def info(message):
    """Logs `message` at info level."""
    _log(_Level.INFO, str(message))


def warn(message):
    """Logs `message` at warn level."""
    _log(_Level.WARN, str(message))


def error(message):
    """Logs `message` at error level."""
    _log(_Level.ERROR, str(message))
