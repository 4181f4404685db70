"""On/off settings read from the environment (``GOA_MODEL_PROCESSES=0``, ...)."""

from __future__ import annotations

import os

from goa.errors import GoaError

_VALUES = {"1": True, "true": True, "yes": True, "on": True}
_VALUES.update({"0": False, "false": False, "no": False, "off": False})


def env_switch(variable: str, default: bool) -> bool:
    """``variable`` as a switch: 1/true/yes/on or 0/false/no/off (any case), ``default``
    when unset or empty; anything else is a :class:`~goa.errors.GoaError`."""
    raw = os.environ.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw not in _VALUES:
        raise GoaError(f"{variable} must be 1 or 0, not {raw!r}")
    return _VALUES[raw]


__all__ = ["env_switch"]
