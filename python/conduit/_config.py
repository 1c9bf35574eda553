"""Where to connect and with which key, when the caller does not say."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ._errors import Unauthenticated

#: The address used when neither ``addr=`` nor ``CONDUIT_ADDR`` gives one: the gRPC
#: address of a ``conduit dev`` started with its defaults.
DEFAULT_ADDR = "127.0.0.1:7070"

# The file `conduit dev` keeps its admin key in, relative to where it was started
# (the CLI reads it too when CONDUIT_API_KEY is unset).
_DEV_KEY_FILE = Path(".conduit") / "admin.key"


def resolve_addr(addr: Optional[str]) -> str:
    """``addr``, else ``$CONDUIT_ADDR``, else :data:`DEFAULT_ADDR`."""
    return addr or os.environ.get("CONDUIT_ADDR") or DEFAULT_ADDR


def resolve_api_key(api_key: Optional[str]) -> str:
    """``api_key``, else ``$CONDUIT_API_KEY``, else ``./.conduit/admin.key`` (the key a
    ``conduit dev`` started in this directory keeps).

    Raises :class:`~conduit.Unauthenticated` when none of them gives a key.
    """
    if api_key:
        return api_key
    key = os.environ.get("CONDUIT_API_KEY")
    if key:
        return key
    try:
        key = _DEV_KEY_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        key = ""
    if key:
        return key
    raise Unauthenticated(
        "no API key: pass api_key=, set CONDUIT_API_KEY, or run from the directory "
        "`conduit dev` was started in (it keeps its key in .conduit/admin.key)"
    )
