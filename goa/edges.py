"""Edge construction: agents judge each other, and the judgements become a ranked graph.

Each agent that answered scores the *other* agents' answers (correctness,
coherence and relevance, judged together), one score per answer, the scores
adding up to 1. Replies are validated and sent back with the problem at most
``max_retries`` times; scores that only fail to add up to 1 are rescaled once the
retries are spent (a recorded fallback); a judge that still has no usable
scores, or whose call failed, is dropped as a judge (its answer stays).

A judge with exactly one peer is not asked: under the sum-to-1 rule its only
possible score is 1, so the call would change nothing.

Relevance: the mean score each agent received, normalised so that all agents'
relevance adds up to 1. An agent no working judge scored gets the mean of the
others (neutral). If no judge worked at all, every agent gets ``1 / n`` and the
selection order stands. Ties keep the selection order. Agents whose relevance is
at or below the threshold (default :data:`DEFAULT_THRESHOLD`) are removed, but
never the most relevant one.

The graph is a networkx DiGraph (networkx is imported only then) with an edge
from every agent to every less relevant one, weighted by the source's relevance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from goa import prompts
from goa.answer import Caller, ask_until_valid, run_all
from goa.inference.types import Message
from goa.parsing import parse_scores, scores_schema

if TYPE_CHECKING:  # networkx is imported only when a graph is built
    import networkx as nx

DEFAULT_THRESHOLD = 0.05
"""Agents with a normalised relevance at or below this are removed.

With three agents an even split gives each 0.33; 0.05 or less means the judges
all but unanimously found the answer worthless. Small judges are noisy (see
issue 3's calibration run), so the default removes only clear rejects.
"""


@dataclass
class Edges:
    """The outcome of edge construction."""

    scores: dict[str, dict[str, float]]
    relevance: dict[str, float]
    ranking: list[str]
    removed: list[tuple[str, str]] = field(default_factory=list)
    uniform: bool = False
    """True when no judge gave usable scores and every agent got the same relevance."""

    def graph(self) -> nx.DiGraph[str]:
        return build_graph(self.ranking, self.relevance)


def even_split(count: int) -> list[float]:
    """``count`` shares of 1 with two decimals, the last one taking the rounding."""
    share = round(1 / count, 2)
    return [share] * (count - 1) + [round(1 - share * (count - 1), 2)]


def score_messages(question: str, peer_answers: Sequence[str]) -> list[Message]:
    """The request asking one judge to score ``peer_answers``."""
    count = len(peer_answers)
    answers = "\n\n".join(
        prompts.fill(prompts.GOA_PEER_ENTRY, number=i + 1, text=f"<<<\n{text}\n>>>")
        for i, text in enumerate(peer_answers)
    )
    example = ", ".join(f"{share:.2f}" for share in even_split(count))
    prompt = prompts.fill(
        prompts.GOA_SCORE_PROMPT, question=question, answers=answers, count=count, example=example
    )
    return [
        Message(role="system", content=prompts.GOA_SCORE_SYSTEM),
        Message(role="user", content=prompt),
    ]


async def judge(caller: Caller, agent: str, answers: Mapping[str, str]) -> dict[str, float] | None:
    """``agent``'s scores of the other answers (summing to 1), or None if it failed."""
    peers = [other for other in answers if other != agent]
    if not peers:
        return None
    if len(peers) == 1:
        return {peers[0]: 1.0}
    messages = score_messages(caller.question, [answers[p] for p in peers])
    outcome = await ask_until_valid(
        caller,
        agent,
        "score",
        messages,
        lambda text: parse_scores(text, count=len(peers)),
        scores_schema(len(peers)),
    )
    if outcome.value is not None:
        return dict(zip(peers, outcome.value.values, strict=True))
    last = outcome.parses[-1] if outcome.parses else None
    if last is not None and last.value is not None:
        caller.note(
            "fallback", "score", f"scores rescaled to add up to 1 ({last.problem})", agent=agent
        )
        return dict(zip(peers, last.value.rescaled().values, strict=True))
    why = outcome.error or (last.problem if last is not None else "no reply")
    caller.note("fallback", "score", f"dropped as a judge: {why}", agent=agent)
    return None


def rank(
    scores: Mapping[str, Mapping[str, float]],
    agents: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
) -> Edges:
    """Relevance, ranking and removals from a score matrix (judge -> judged -> score)."""
    received: dict[str, list[float]] = {agent: [] for agent in agents}
    for row in scores.values():
        for target, score in row.items():
            if target in received:
                received[target].append(score)
    means = {agent: sum(v) / len(v) for agent, v in received.items() if v}
    plain = {judge_: dict(row) for judge_, row in scores.items()}
    total_received = sum(means.values())
    if not means or total_received <= 0:
        relevance = {agent: 1 / len(agents) for agent in agents}
        return Edges(plain, relevance, list(agents), uniform=True)
    neutral = total_received / len(means)
    for agent in agents:
        means.setdefault(agent, neutral)
    total = sum(means.values())
    relevance = {agent: means[agent] / total for agent in agents}
    position = {agent: i for i, agent in enumerate(agents)}
    order = sorted(agents, key=lambda a: (-relevance[a], position[a]))
    removed = [
        (agent, f"relevance {relevance[agent]:.3f} is at or below the threshold {threshold:g}")
        for agent in order[1:]
        if relevance[agent] <= threshold
    ]
    gone = {agent for agent, _ in removed}
    return Edges(plain, relevance, [a for a in order if a not in gone], removed)


def build_graph(
    ranking: Sequence[str], relevance: Mapping[str, float], *, connect: bool = True
) -> nx.DiGraph[str]:
    """Nodes in rank order; unless not ``connect``, an edge to every less relevant agent."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    for position, agent in enumerate(ranking):
        graph.add_node(agent, rank=position + 1, relevance=relevance.get(agent))
    for i, source in enumerate(ranking if connect else ()):
        for target in ranking[i + 1 :]:
            graph.add_edge(source, target, weight=relevance.get(source, 0.0))
    return graph


async def build_edges(
    caller: Caller, answers: Mapping[str, str], threshold: float = DEFAULT_THRESHOLD
) -> Edges:
    """Every agent judges the others, concurrently; then :func:`rank`."""
    agents = list(answers)

    def job(agent: str) -> Callable[[], Awaitable[dict[str, float] | None]]:
        return lambda: judge(caller, agent, answers)

    rows = await run_all([job(agent) for agent in agents], sequential=caller.sequential)
    scores = {agent: row for agent, row in zip(agents, rows, strict=True) if row is not None}
    edges = rank(scores, agents, threshold)
    if edges.uniform and len(agents) > 1:
        caller.note(
            "fallback",
            "score",
            "no judge gave usable scores; all agents ranked equal, in selection order",
        )
    return edges
