"""Node sampling: which agents of the pool answer this question.

Selectors (each ranks the whole pool; the first ``k`` that fit the budget answer):

- ``llm`` (the paper's): the meta model reads the question and the numbered card
  profiles (descriptions only, never names) and lists the ``k`` best, best
  first. Repeats are dropped (the first mention counts) and out-of-range numbers
  ignored; a reply without exactly ``k`` valid, distinct picks is sent back with
  the problem, at most ``max_retries`` times. After that, the valid picks of the
  best reply are kept and the rest filled from the ``profile`` ranking; if the
  meta model never gave a usable pick (or its call failed), the ``profile``
  ranking is used alone. Either way a fallback is recorded.
- ``embedding``: cosine similarity between the question and each card's
  domains and specialisations (:meth:`ModelCard.expertise`), through
  :func:`goa.embedding.embed` (a local embedding model, no LLM call). Measured on
  the built-in cards, the small 4-bit e5 model puts the domain specialist first
  for medicine, law, mathematics and finance questions but not reliably for code.
  If embedding fails, the ``profile`` ranking is used (a recorded fallback).
- ``profile``: by measured accuracy from the cards (on the question's domain if
  one is given, else the mean of the card's measurements); cards with a
  measurement come first, best first; then the rest, largest first
  (``parameters_b``), then in pool order.
- ``all``: every card, in pool order (``k`` is ignored).

When the pool has no more than ``k`` cards, the ``llm`` selector makes no call:
every card answers, in ``profile`` order.

Adaptive k: the meta model rates the question's difficulty 1-3 and ``k``
becomes ``ceil(k * difficulty / 3)`` (at least 1), so ``k`` is the most agents a
hard question gets. An unusable rating after retries keeps the full ``k``.

Budget: an agent is skipped when its estimated cost, added to the agents
already chosen, would exceed ``budget_usd``; see :func:`estimate_cost`. An agent
whose price is unknown (a remote card without prices) is skipped too, since it
cannot be shown to fit. The meta model's own calls are not counted.
"""

from __future__ import annotations

import asyncio
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from goa import prompts
from goa.answer import Caller, ask_until_valid
from goa.cards import ModelCard
from goa.errors import GoaError
from goa.inference.types import Message
from goa.parsing import (
    DIFFICULTY_SCHEMA,
    Parsed,
    Selection,
    parse_difficulty,
    parse_selection,
    selection_schema,
)

SelectorName = Literal["llm", "embedding", "all", "profile"]
SELECTORS: tuple[SelectorName, ...] = ("llm", "embedding", "all", "profile")

CALLS_PER_AGENT = 4
"""Calls an agent makes in one round of paper GoA: answer, judge, forward, reverse."""
PROMPT_OVERHEAD_TOKENS = 200
"""Tokens of instructions around the question in each prompt (an estimate)."""
CHARS_PER_TOKEN = 4
"""Characters per token for the question (a rough English average)."""


@dataclass(frozen=True)
class Pick:
    """A card chosen (or ranked) by a selector, and why."""

    card: ModelCard
    reason: str


@dataclass
class Sampling:
    """The outcome of node sampling."""

    picks: list[Pick]
    k: int
    difficulty: int | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(card id, reason) of agents passed over because of the budget."""


# --- Cost estimate and budget -----------------------------------------------------


def estimate_cost(card: ModelCard, *, question: str, k: int, max_tokens: int) -> float | None:
    """An upper estimate of what ``card`` costs as one of ``k`` agents, in USD.

    Every one of its :data:`CALLS_PER_AGENT` calls is assumed to write
    ``max_tokens`` tokens. Prompts hold the question (``len / 4`` tokens) plus
    :data:`PROMPT_OVERHEAD_TOKENS`; the judge prompt adds ``k - 1`` peer answers,
    the forward and reverse prompts its own answer and up to ``k - 1`` peers.
    Local models cost 0; a remote card without prices gives ``None`` (unknown).
    """
    if card.is_local:
        return 0.0
    if card.prices is None:
        return None
    base = math.ceil(len(question) / CHARS_PER_TOKEN) + PROMPT_OVERHEAD_TOKENS
    peers = (k - 1) * max_tokens
    prompt = CALLS_PER_AGENT * base + peers + 2 * (max_tokens + peers)
    completion = CALLS_PER_AGENT * max_tokens
    return card.prices.cost_usd(prompt, completion)


def within_budget(
    ranked: Sequence[Pick],
    k: int,
    budget_usd: float | None,
    estimate: Callable[[ModelCard], float | None],
) -> tuple[list[Pick], list[tuple[str, str]]]:
    """The first ``k`` picks that fit the budget, and those skipped on the way."""
    if budget_usd is None:
        return list(ranked[:k]), []
    chosen: list[Pick] = []
    skipped: list[tuple[str, str]] = []
    spent = 0.0
    for pick in ranked:
        if len(chosen) == k:
            break
        cost = estimate(pick.card)
        if cost is None:
            skipped.append((pick.card.id, "its price is unknown, so it cannot be kept in budget"))
        elif spent + cost > budget_usd:
            left = budget_usd - spent
            skipped.append(
                (pick.card.id, f"estimated ${cost:.6f} exceeds the ${left:.6f} left of the budget")
            )
        else:
            spent += cost
            chosen.append(Pick(pick.card, f"{pick.reason}; estimated ${cost:.6f}"))
    return chosen, skipped


# --- Rankings -------------------------------------------------------------------


def _measured(card: ModelCard, domain: str | None) -> tuple[float, str] | None:
    if domain is not None:
        accuracy = card.accuracy(domain)
        return (
            None
            if accuracy is None
            else (accuracy, f"measured accuracy {accuracy:.2f} on {domain}")
        )
    if not card.measured_accuracy:
        return None
    values = [m.accuracy for m in card.measured_accuracy.values()]
    mean = sum(values) / len(values)
    names = ", ".join(card.measured_accuracy)
    return mean, f"measured accuracy {mean:.2f} ({names})"


def profile_ranking(cards: Sequence[ModelCard], domain: str | None = None) -> list[Pick]:
    """Cards with a measured accuracy first (best first), then the rest by size."""
    scored: list[tuple[tuple[int, float, float, int], Pick]] = []
    for position, card in enumerate(cards):
        size = card.parameters_b or 0.0
        measured = _measured(card, domain)
        if measured is not None:
            accuracy, reason = measured
            key = (0, -accuracy, -size, position)
        else:
            key = (1, 0.0, -size, position)
            about = f"{card.parameters_b:g}B parameters" if card.parameters_b else "size unknown"
            reason = f"no measured accuracy; {about}"
        scored.append((key, Pick(card, f"profile: {reason}")))
    return [pick for _, pick in sorted(scored, key=lambda item: item[0])]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def embedding_ranking(cards: Sequence[ModelCard], question: str) -> list[Pick]:
    """Cards by cosine similarity between the question and their profile, highest first."""
    module = importlib.import_module("goa.embedding")
    embed: Callable[..., list[list[float]]] = module.embed
    # e5-style models embed a question and the documents it is matched to differently.
    queries = embed([question], kind="query")
    vectors = embed([card.expertise() for card in cards], kind="passage")
    if len(queries) != 1 or len(vectors) != len(cards):
        raise ValueError(f"embed returned {len(vectors)} vectors for {len(cards)} cards")
    query = queries[0]
    similarity = [(_cosine(query, v), i) for i, v in enumerate(vectors)]
    ranked = sorted(similarity, key=lambda item: (-item[0], item[1]))
    return [Pick(cards[i], f"embedding: cosine {score:.3f} to the question") for score, i in ranked]


def _selection_messages(question: str, cards: Sequence[ModelCard], k: int) -> list[Message]:
    profiles = "\n\n".join(
        prompts.fill(prompts.GOA_PROFILE_ENTRY, number=i + 1, profile=card.profile())
        for i, card in enumerate(cards)
    )
    prompt = prompts.fill(prompts.GOA_SELECT_PROMPT, question=question, profiles=profiles, k=k)
    return [
        Message(role="system", content=prompts.GOA_SELECT_SYSTEM),
        Message(role="user", content=prompt),
    ]


def _best_partial(parses: Sequence[Parsed[Selection]]) -> Selection | None:
    usable = [p.value for p in parses if p.value is not None and p.value.indices]
    return max(usable, key=lambda s: len(s.indices), default=None)


async def llm_ranking(
    caller: Caller,
    meta: str,
    cards: Sequence[ModelCard],
    k: int,
    *,
    domain: str | None = None,
) -> list[Pick]:
    """The meta model's ``k`` picks first, then the other cards in profile order."""
    messages = _selection_messages(caller.question, cards, k)
    outcome = await ask_until_valid(
        caller,
        meta,
        "select",
        messages,
        lambda text: parse_selection(text, candidates=len(cards), k=k),
        selection_schema(candidates=len(cards), k=k),
    )
    selection = outcome.value
    if selection is None:
        partial = _best_partial(outcome.parses)
        why = outcome.error or (outcome.parses[-1].problem if outcome.parses else "no reply")
        if partial is None:
            caller.note(
                "fallback",
                "select",
                f"meta model gave no usable pick ({why}); ranked by profile instead",
                agent=meta,
            )
            return profile_ranking(cards, domain)
        selection = Selection(partial.indices[:k], partial.reasons[:k])
        caller.note(
            "fallback",
            "select",
            f"meta model gave {len(selection.indices)} usable pick(s) of {k} ({why}); "
            "the rest filled by profile",
            agent=meta,
        )
    picks = [
        Pick(cards[i], f"meta model: {reason}" if reason else "meta model pick")
        for i, reason in zip(selection.indices, selection.reasons, strict=True)
    ]
    chosen = {pick.card.id for pick in picks}
    rest = [pick for pick in profile_ranking(cards, domain) if pick.card.id not in chosen]
    return picks + rest


# --- Adaptive k -------------------------------------------------------------------


def k_for_difficulty(k: int, difficulty: int) -> int:
    """``ceil(k * difficulty / 3)``, at least 1: k=3 gives 1, 2, 3 agents."""
    return max(1, math.ceil(k * difficulty / 3))


async def rate_difficulty(caller: Caller, meta: str) -> int | None:
    """The meta model's difficulty rating (1-3), or None if it gave none usable."""
    prompt = prompts.fill(prompts.GOA_DIFFICULTY_PROMPT, question=caller.question)
    outcome = await ask_until_valid(
        caller,
        meta,
        "difficulty",
        [Message(role="user", content=prompt)],
        parse_difficulty,
        DIFFICULTY_SCHEMA,
    )
    if outcome.value is None:
        why = outcome.error or (outcome.parses[-1].problem if outcome.parses else "no reply")
        caller.note(
            "fallback",
            "difficulty",
            f"no usable difficulty rating ({why}); keeping the full k",
            agent=meta,
        )
    return outcome.value


# --- Node sampling --------------------------------------------------------------


async def _ranking(
    caller: Caller,
    cards: Sequence[ModelCard],
    selector: SelectorName,
    meta: str,
    k: int,
    domain: str | None,
) -> list[Pick]:
    if selector == "all":
        return [Pick(card, "selector 'all': every agent of the pool") for card in cards]
    if selector == "profile":
        return profile_ranking(cards, domain)
    if selector == "embedding":
        try:
            # Off the event loop: a local embedding model may load and run for a while.
            return await asyncio.to_thread(embedding_ranking, cards, caller.question)
        except (GoaError, ImportError, OSError, ValueError) as exc:
            caller.note(
                "fallback",
                "select",
                f"embedding selector failed ({exc}); ranked by profile instead",
            )
            return profile_ranking(cards, domain)
    if len(cards) <= k:  # every agent answers anyway: no need to ask the meta model
        return [
            Pick(pick.card, f"the pool has no more than k={k} agents; {pick.reason}")
            for pick in profile_ranking(cards, domain)
        ]
    return await llm_ranking(caller, meta, cards, k, domain=domain)


async def sample_nodes(
    caller: Caller,
    cards: Sequence[ModelCard],
    *,
    k: int,
    selector: SelectorName,
    meta: str,
    adaptive_k: bool = False,
    budget_usd: float | None = None,
    domain: str | None = None,
    max_tokens: int = 512,
) -> Sampling:
    """Choose the agents for this question (see the module docstring for the rules)."""
    wanted = len(cards) if selector == "all" else min(k, len(cards))

    async def ranking() -> list[Pick]:
        return await _ranking(caller, cards, selector, meta, wanted, domain)

    async def difficulty() -> int | None:
        return await rate_difficulty(caller, meta) if adaptive_k else None

    if caller.sequential:
        rating = await difficulty()
        ranked_list = await ranking()
    else:
        rating, ranked_list = await asyncio.gather(difficulty(), ranking())
    if rating is not None:
        wanted = min(wanted, k_for_difficulty(wanted, rating))

    def estimate(card: ModelCard) -> float | None:
        return estimate_cost(card, question=caller.question, k=wanted, max_tokens=max_tokens)

    picks, skipped = within_budget(ranked_list, wanted, budget_usd, estimate)
    return Sampling(picks=picks, k=wanted, difficulty=rating, skipped=skipped)
