"""Log-probabilities of a given reply: the door to judging answers without parsing.

Some backends can say how likely a model finds a piece of text instead of only
generating text. :class:`LikelihoodBackend` is that ability: ``logprob(messages,
continuation)`` returns the log-probability (natural log) the model assigns to
``continuation`` as the start of the assistant's reply to ``messages``. Nothing
is generated and nothing has to be parsed, which is why GoA's judges can use it
(``GraphOfAgents(judge="likelihood")``, see :mod:`goa.edges`): small local
models that cannot be trusted to return valid JSON scores can still rank
answers by how probable they find them.

Conventions every implementation follows:

- The reply begins right after the model's generation prompt: the chat
  template's assistant header, or ``Assistant:`` in goa's plain transcript.
- When ``messages`` ends with an *assistant* message, that message is the part
  of the reply already written (a prefix): the continuation follows it directly
  and only the continuation is scored. A judge can so condition on ``Answer:``
  and score the answer alone.
- The continuation is split into tokens as the model would read the whole
  text; where the tokenizer merges the last characters of the prompt with the
  first of the continuation, the merged token counts as continuation.
- :class:`TokenLogprob` carries the sum, the mean per token (the
  length-normalised score, fair between answers of different lengths) and the
  per-token values.

:func:`likelihood_backend` finds the ability behind the wrappers goa puts
around backends (the response cache): log-probabilities are cheap,
deterministic and never cached. :func:`softmax` turns scores into shares of 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from goa.inference.backend import Backend
from goa.inference.cache import CachedBackend
from goa.inference.types import Message


class TokenLogprob(BaseModel):
    """The log-probability of a continuation: summed, per token and as a mean.

    ``total`` is the natural-log probability of the whole continuation, ``mean``
    is ``total / tokens``. ``prompt_tokens`` is the length of what it was
    conditioned on, and ``cost_usd`` what the call cost (``None``: unknown; local
    models report ``0.0``), for accounting.
    """

    model_config = ConfigDict(frozen=True)

    total: float = Field(le=0.0)
    mean: float = Field(le=0.0)
    tokens: int = Field(ge=1)
    token_logprobs: tuple[float, ...] = ()
    prompt_tokens: int = Field(default=0, ge=0)
    cost_usd: float | None = None

    @classmethod
    def of(
        cls, values: Sequence[float], *, prompt_tokens: int = 0, cost_usd: float | None = None
    ) -> TokenLogprob:
        """From the per-token log-probabilities (at least one)."""
        if not values:
            raise ValueError("a continuation has at least one token")
        clipped = tuple(min(0.0, float(v)) for v in values)  # float rounding above 0
        total = math.fsum(clipped)
        return cls(
            total=total,
            mean=total / len(clipped),
            tokens=len(clipped),
            token_logprobs=clipped,
            prompt_tokens=prompt_tokens,
            cost_usd=cost_usd,
        )


@runtime_checkable
class LikelihoodBackend(Protocol):
    """A backend that scores a given reply instead of generating one."""

    async def logprob(self, messages: Sequence[Message], continuation: str) -> TokenLogprob:
        """The log-probability of ``continuation`` as the assistant's reply to ``messages``
        (after a trailing assistant message, if there is one: see the module notes).

        Raises :class:`~goa.errors.GoaError` when the request cannot be made
        (real requests switched off, the text does not fit the context, an
        empty continuation).
        """
        ...


def likelihood_backend(backend: Backend) -> LikelihoodBackend | None:
    """``backend`` itself if it gives log-probabilities, or the one inside its cache
    wrapper; None if it has none."""
    if isinstance(backend, LikelihoodBackend):
        return backend
    if isinstance(backend, CachedBackend):
        return likelihood_backend(backend.inner)
    return None


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two token lists share: where a continuation's own
    tokens begin after the prompt's (see the conventions above)."""
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def softmax(values: Sequence[float]) -> list[float]:
    """``exp(v) / sum(exp(v))`` for each value, computed stably (shares of 1)."""
    if not values:
        return []
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    total = math.fsum(weights)
    return [w / total for w in weights]
