"""A switch that forbids real model requests (the test suite turns it on).

Real backends (litellm, llama.cpp, transformers) call :func:`check_model_request`
before every request; the scripted backend never does. The switch is on when
:func:`forbid_model_requests` turned it on, or when the environment variable
``GOA_FORBID_MODEL_REQUESTS`` is ``1`` (so that subprocesses started by tests
obey it too). :func:`allow_model_requests` lifts it for one block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from goa.errors import RealRequestsForbidden

ENV_VAR = "GOA_FORBID_MODEL_REQUESTS"

_forbidden = False
_allowed_here: ContextVar[bool] = ContextVar("goa_allow_model_requests", default=False)


def forbid_model_requests(forbid: bool = True) -> None:
    """Turn the switch on (or off, with ``False``) for this process."""
    global _forbidden
    _forbidden = forbid


def model_requests_forbidden() -> bool:
    """Whether a real request made here and now would be refused."""
    if _allowed_here.get():
        return False
    return _forbidden or os.environ.get(ENV_VAR, "") == "1"


@contextmanager
def allow_model_requests() -> Iterator[None]:
    """Allow real requests inside this block (and tasks started from it)."""
    token = _allowed_here.set(True)
    try:
        yield
    finally:
        _allowed_here.reset(token)


def check_model_request(backend: str, model: str) -> None:
    """Raise :class:`RealRequestsForbidden` if real requests are switched off."""
    if model_requests_forbidden():
        raise RealRequestsForbidden(
            f"real model request to {backend}:{model} refused: real requests are switched off "
            f"(tests: mark the test with @pytest.mark.allow_model_requests; "
            f"elsewhere: unset {ENV_VAR})"
        )
