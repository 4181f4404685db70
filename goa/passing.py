"""Message passing along the ranked graph.

Forward: every agent but the most relevant refines its current answer, given the
current answers of all MORE relevant agents (labelled with their relevance).
Reverse: each target refines its forward-pass answer given the forward-pass
answers of all LESS relevant agents. Within a pass the calls are independent and
run concurrently. The most relevant agent makes no forward call and the least
relevant no reverse call (they would have no one to hear from).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

from goa import prompts
from goa.answer import Caller, Reply, run_all
from goa.inference.types import Message


def _peers(
    agents: Sequence[str], answers: Mapping[str, str], relevance: Mapping[str, float]
) -> str:
    return "\n\n".join(
        prompts.fill(prompts.GOA_LABELLED_PEER, relevance=relevance.get(a, 0.0), text=answers[a])
        for a in agents
    )


def refine_messages(
    template: str,
    caller: Caller,
    own: str,
    peers: Sequence[str],
    answers: Mapping[str, str],
    relevance: Mapping[str, float],
) -> list[Message]:
    """A refinement request: the question, the agent's answer, its labelled peers."""
    prompt = prompts.fill(
        template,
        question=caller.question,
        own=own,
        peers=_peers(peers, answers, relevance),
        answer_format=caller.answer_format,
    )
    return [
        Message(role="system", content=prompts.GOA_ANSWER_SYSTEM),
        Message(role="user", content=prompt),
    ]


async def _refine(
    caller: Caller,
    stage: Literal["forward", "reverse"],
    plan: Sequence[tuple[str, list[Message]]],
    round_: int,
    stream_agent: str | None = None,
) -> dict[str, Reply]:
    def job(agent: str, messages: list[Message]) -> Callable[[], Awaitable[Reply]]:
        stream = agent == stream_agent
        return lambda: caller.call(agent, stage, messages, round=round_, stream=stream)

    replies = await run_all([job(a, m) for a, m in plan], sequential=caller.sequential)
    return {agent: reply for (agent, _), reply in zip(plan, replies, strict=True)}


async def forward_pass(
    caller: Caller,
    ranking: Sequence[str],
    answers: Mapping[str, str],
    relevance: Mapping[str, float],
    *,
    round_: int = 1,
) -> dict[str, Reply]:
    """Refined answers of every agent below the top, keyed by agent."""
    plan = [
        (
            agent,
            refine_messages(
                prompts.GOA_FORWARD_PROMPT, caller, answers[agent], ranking[:i], answers, relevance
            ),
        )
        for i, agent in enumerate(ranking)
        if i > 0
    ]
    return await _refine(caller, "forward", plan, round_)


async def reverse_pass(
    caller: Caller,
    ranking: Sequence[str],
    answers: Mapping[str, str],
    relevance: Mapping[str, float],
    *,
    targets: Sequence[str] | None = None,
    round_: int = 1,
    stream_agent: str | None = None,
) -> dict[str, Reply]:
    """Refined answers of ``targets`` (default: all but the last), keyed by agent.

    ``stream_agent``'s reply is streamed (it is the final answer under max pooling).
    """
    chosen = ranking[:-1] if targets is None else targets
    plan = []
    for agent in chosen:
        below = list(ranking[ranking.index(agent) + 1 :])
        if below:
            messages = refine_messages(
                prompts.GOA_REVERSE_PROMPT, caller, answers[agent], below, answers, relevance
            )
            plan.append((agent, messages))
    return await _refine(caller, "reverse", plan, round_, stream_agent)
