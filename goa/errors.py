"""The one error family of the goa library.

Every error a user can act on derives from :class:`GoaError`; the CLI turns it
into a one-line message and exit code 2. Messages never contain API keys.
"""

from __future__ import annotations


class GoaError(Exception):
    """Base class: something the user can fix (bad input, missing file, refused model)."""


class ConfigError(GoaError):
    """A model card, pool or config file is wrong.

    ``location`` names the file and, where known, the line or field.
    """

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem}")


class ModelFileError(GoaError):
    """A local model file is missing, incomplete or fails its SHA-256 check."""


class ModelRequestError(GoaError):
    """A model request failed for good (after retries, or not retryable)."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        self.retryable = retryable
        self.status = status
        super().__init__(message)


class RealRequestsForbidden(GoaError):
    """A real model request was made where real requests are switched off (the test suite)."""


class ModelTooLargeError(ModelFileError):
    """A model does not fit in the memory left on its device (``goa.inference.memory_budget``)."""
