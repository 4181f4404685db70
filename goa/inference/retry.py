"""The retry policy of real backends: which failures to retry, and how long to wait.

A backend turns every failed attempt into an :class:`AttemptFailed` that says
whether another attempt may succeed (rate limits, 5xx, timeouts, dropped
connections) and, where the server said so, how long to wait (``Retry-After``).
:func:`make_retrying` builds the tenacity policy around that: exponential
backoff with jitter, the server's ``Retry-After`` when given (capped), and a
bounded number of attempts. The sleep function is a parameter, so tests can
record the waits instead of waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[["AttemptFailed", int, float], None]

BACKOFF_MULTIPLIER_S = 0.5
"""The first backoff wait (before jitter); it doubles with each retry."""
BACKOFF_MAX_S = 30.0
"""The longest backoff wait when the server gave no ``Retry-After``."""
BACKOFF_JITTER_S = 0.5
"""Up to this much random time is added to each backoff wait."""
RETRY_AFTER_CAP_S = 60.0
"""The longest wait a server's ``Retry-After`` can impose."""

RETRYABLE_STATUSES = frozenset({408, 429})
"""Retryable HTTP statuses besides every 5xx."""


class AttemptFailed(Exception):
    """One attempt failed.

    ``reason`` is already free of secrets. ``retry_after`` is the wait in seconds
    the server asked for, if it did.
    """

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        super().__init__(reason)


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP error status is worth another attempt (429, 408, 5xx)."""
    return status in RETRYABLE_STATUSES or status >= 500


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """The wait in seconds asked for by ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date; ``now`` (a Unix
    time) is for tests. Returns ``None`` when there is no usable header.
    """
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _should_retry(exc: BaseException) -> bool:
    return isinstance(exc, AttemptFailed) and exc.retryable


class _Wait:
    """The server's ``Retry-After`` (capped) if given, else exponential backoff with jitter."""

    def __init__(self) -> None:
        self._backoff = wait_exponential_jitter(
            multiplier=BACKOFF_MULTIPLIER_S, max=BACKOFF_MAX_S, jitter=BACKOFF_JITTER_S
        )

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, AttemptFailed) and exc.retry_after is not None:
            return min(exc.retry_after, RETRY_AFTER_CAP_S)
        return float(self._backoff(state))


def make_retrying(
    *, max_retries: int, sleep: Sleep | None = None, on_retry: OnRetry | None = None
) -> AsyncRetrying:
    """A tenacity policy: at most ``max_retries + 1`` attempts, retrying :class:`AttemptFailed`
    that are retryable, and re-raising the last failure when attempts run out.

    ``on_retry(failure, attempt_number, wait_s)`` is called before each wait.
    Each call needs its own copy (``policy.copy()``): the state of a run lives
    on the policy object.
    """
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, not {max_retries}")

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and isinstance(exc, AttemptFailed):
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            on_retry(exc, state.attempt_number, wait)

    return AsyncRetrying(
        sleep=sleep if sleep is not None else asyncio.sleep,
        stop=stop_after_attempt(max_retries + 1),
        wait=_Wait(),
        retry=retry_if_exception(_should_retry),
        before_sleep=before_sleep,
        reraise=True,
    )
