"""Admission and limits: the concurrency gate, the request body cap, the bearer token.

:class:`Gate` lets ``max_concurrency`` GoA runs go at once and up to
``max_queue`` more wait for a slot; a request beyond that is refused at once
with 503 and ``Retry-After`` (never queued without bound). While the server
drains for shutdown the gate admits nothing new; :attr:`Gate.idle` tells the
server when the last admitted request has finished.
"""

from __future__ import annotations

import asyncio
import hmac
from types import TracebackType

from starlette.requests import Request

from goa.serve.errors import ApiError


class Ticket:
    """One admitted request: wait for a slot with ``async with``; released once."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._running = False
        self._done = False

    async def __aenter__(self) -> Ticket:
        await self._gate.slots.acquire()
        self._running = True
        self._gate.queued -= 1
        self._gate.running += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Free the slot (or the place in the queue); later calls do nothing."""
        if self._done:
            return
        self._done = True
        if self._running:
            self._gate.running -= 1
            self._gate.slots.release()
        else:
            self._gate.queued -= 1


class Gate:
    """At most ``max_concurrency`` runs at once and ``max_queue`` waiting."""

    def __init__(self, max_concurrency: int, max_queue: int, *, retry_after_s: int = 1) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if max_queue < 0:
            raise ValueError(f"max_queue cannot be negative, not {max_queue}")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.retry_after_s = max(1, retry_after_s)
        self.slots = asyncio.Semaphore(max_concurrency)
        self.running = 0
        self.queued = 0
        self.draining = False
        self.refused = 0

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.queued == 0

    def admit(self) -> Ticket:
        """A ticket for one more request, or 503 when the gate is full or draining."""
        if self.draining:
            raise shutting_down(self.retry_after_s)
        if self.running + self.queued >= self.max_concurrency + self.max_queue:
            self.refused += 1
            raise ApiError(
                503,
                f"the server is saturated ({self.running} GoA runs in progress, "
                f"{self.queued} waiting); retry after {self.retry_after_s} s",
                code="server_saturated",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.queued += 1
        return Ticket(self)


def shutting_down(retry_after_s: int) -> ApiError:
    return ApiError(
        503,
        "the server is shutting down; send the request again (to another instance)",
        code="shutting_down",
        headers={"Retry-After": str(retry_after_s), "Connection": "close"},
    )


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes",
        code="request_too_large",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 once it is known to be over ``limit`` bytes.

    A body over the limit is still read (and dropped) up to a bound, so that the
    client, still sending, gets the 413 rather than a reset connection.
    """
    declared = request.headers.get("content-length", "")
    size = 0
    chunks: list[bytes] = []
    over = declared.isdigit() and int(declared) > limit
    drain_limit = max(4 * limit, 1 << 20)
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            over = True
        if over:
            chunks.clear()
            if size > drain_limit:
                break
        else:
            chunks.append(chunk)
    if over:
        raise too_large(limit)
    return b"".join(chunks)


def token_matches(header: str | None, token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` names ``token`` (constant-time)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))
