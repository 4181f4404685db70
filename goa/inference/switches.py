"""Settings read from the environment: on/off switches (``GOA_MODEL_PROCESSES=0``, ...)
and counts (``GOA_MAX_BATCH=256``, ...)."""

from __future__ import annotations

import os

from goa.errors import ConfigError, GoaError

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


def env_count(variable: str, default: int) -> int:
    """``variable`` as a whole number of 1 or more, ``default`` when unset or empty; anything
    else is a :class:`~goa.errors.ConfigError`."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(variable, f"must be a whole number of 1 or more, not {raw!r}")
    return int(raw)


__all__ = ["env_count", "env_switch"]
