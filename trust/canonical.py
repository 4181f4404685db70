"""One byte string per JSON value: the encoding the ledger hashes.

A ledger entry is hashed, so the same record must always give the same bytes, whoever wrote
it and however its dict happened to be ordered.  :func:`canonical_json` fixes every free choice
of a JSON encoder:

* object keys are sorted (by code point, which is what Python's string order is);
* no whitespace at all: separators are ``,`` and ``:``;
* text is UTF-8 with non-ASCII characters written as themselves, not as ``\\u`` escapes
  (only the characters JSON requires to be escaped are escaped);
* numbers are written the way Python's :func:`repr` writes them (the shortest form that reads
  back to the same float); ``NaN`` and the infinities have no JSON form and are refused.

Only JSON's own types are accepted, checked before encoding so that nothing is converted
silently: ``dict`` with ``str`` keys, ``list`` (a ``tuple`` is taken as an array too), ``str``,
``int``, ``float``, ``bool`` and ``None``.  A dict with a non-string key (which :mod:`json`
would quietly turn into a string) or any other type raises :class:`TypeError`; a non-finite
float, or a string that is not valid Unicode (a lone surrogate), raises :class:`ValueError`.

This is a deterministic encoding for this project, not an implementation of RFC 8785 (JCS):
floats follow Python's ``repr`` and keys sort by code point rather than by UTF-16 unit.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["canonical_json"]

_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
)
_SCALARS = (str, int, type(None))  # bool is an int


def canonical_json(obj: Any) -> bytes:
    """The canonical UTF-8 JSON encoding of ``obj`` (see the module docstring)."""
    _check(obj, "$")
    try:
        return _ENCODER.encode(obj).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"a string is not valid Unicode: {exc.reason}") from None


def _check(value: Any, where: str) -> None:
    """Raise unless ``value`` is built from JSON types only; ``where`` locates it for messages."""
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} has no JSON form")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: object key {key!r} is not a string")
            if not isinstance(item, _SCALARS):
                _check(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if not isinstance(item, _SCALARS):
                _check(item, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(value).__name__} is not a JSON type")
