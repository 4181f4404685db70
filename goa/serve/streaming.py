"""Streaming a GoA answer as OpenAI server-sent events.

The events: a chunk with the assistant role (at once, before the run starts),
content chunks with the final answer's text as the call that writes it streams
(:meth:`GraphOfAgents.arun`'s ``on_delta``), a chunk with ``finish_reason`` and
the ``goa`` extension, a usage chunk (no choices) when
``stream_options.include_usage`` is set, then ``data: [DONE]``. While the run
works on earlier stages a comment line (``: keep-alive``) goes out every
``keepalive_s`` so proxies keep the connection open.

The streamed text always adds up to the answer of the non-streaming response:
the pipeline strips the final reply's surrounding whitespace, so
:class:`AnswerStream` holds back leading and trailing whitespace; an answer that
was not streamed (early exit, a single agent left) is sent as one chunk at the
end. If the streamed call fails after some text went out and another agent's
answer becomes final, the stream cannot take the text back: it ends with an
error event instead (OpenAI clients raise it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import suppress
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from goa.inference.types import OnDelta
from goa.serve.errors import error_body
from goa.serve.limits import Ticket
from goa.serve.wire import chunk_object

logger = logging.getLogger("goa.serve")

DONE = "data: [DONE]\n\n"
KEEPALIVE = ": keep-alive\n\n"


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    return "data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False) + "\n\n"


class AnswerStream:
    """The streamed pieces, cut so that what is sent is a prefix of the stripped answer."""

    def __init__(self) -> None:
        self.sent = ""
        self._held = ""

    def feed(self, piece: str) -> str:
        """The text to send now for ``piece`` (trailing whitespace waits for more text)."""
        text = self._held + piece
        if not self.sent:
            text = text.lstrip()
        body = text.rstrip()
        self._held = text[len(body) :]
        self.sent += body
        return body

    def finish(self, answer: str) -> str | None:
        """What is left to send of ``answer``, or None if what was sent is not its prefix."""
        if not answer.startswith(self.sent):
            return None
        return answer[len(self.sent) :]


Outcome = tuple[dict[str, Any], str, str, dict[str, int]]
"""What a finished run gives the stream: (goa extension, answer, finish reason, usage)."""
RunFn = Callable[[OnDelta], Coroutine[Any, Any, Outcome]]


class RunFailed(Exception):
    """The run ended without an answer to send; ``body`` is the error event."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.body = body


async def events(
    run: RunFn,
    *,
    ticket: Ticket,
    base: dict[str, Any],
    include_usage: bool,
    keepalive_s: float,
) -> AsyncIterator[str]:
    """The events of one streamed completion (see the module docstring)."""
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    task: asyncio.Task[Outcome] | None = None
    try:
        yield sse(chunk_object(**base, delta={"role": "assistant", "content": ""}))
        async with ticket:
            task = asyncio.create_task(run(pieces.put_nowait))
            task.add_done_callback(lambda _: pieces.put_nowait(None))
            stream = AnswerStream()
            while True:
                try:
                    async with asyncio.timeout(keepalive_s):
                        piece = await pieces.get()
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if piece is None:
                    break
                if text := stream.feed(piece):
                    yield sse(chunk_object(**base, delta={"content": text}))
            try:
                goa, answer, finish_reason, usage = task.result()
            except RunFailed as failed:
                yield sse(failed.body)
                yield DONE
                return
            rest = stream.finish(answer)
            if rest is None:
                message = (
                    "the streamed reply failed after part of it was sent, and another agent's "
                    "answer became final; send the request again without streaming"
                )
                yield sse({**error_body(500, message, code="stream_diverged"), "goa": goa})
                yield DONE
                return
            if rest:
                yield sse(chunk_object(**base, delta={"content": rest}))
            yield sse(chunk_object(**base, delta={}, finish_reason=finish_reason, goa=goa))
            if include_usage:
                yield sse(chunk_object(**base, delta=None, usage=usage))
            yield DONE
    finally:
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
        ticket.release()


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that frees its gate ticket however it ends."""

    def __init__(self, content: AsyncIterator[str], ticket: Ticket) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._ticket.release()
