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

Judging by likelihood (``judge="likelihood"`` or ``"auto"``; beyond the paper,
whose judges are always prompted, ``judge="prompt"``, the default): a judge
whose backend gives log-probabilities
(:class:`~goa.inference.likelihood.LikelihoodBackend`) generates nothing. It is
shown the question alone (:data:`goa.prompts.GOA_LIKELIHOOD_PROMPT`) with its
reply started as ``Answer:``, and each peer answer is scored by the mean
log-probability per token the judge model gives that answer's *final answer*
(:func:`likelihood_candidate`) as the rest of the line. The judge's scores are
the softmax of those values over its peers, so they add up to 1 and there is
nothing to parse, retry or rescale. Why the final answer and not the whole
text: the likelihood of a reasoning text measures mostly how familiar its
wording is to the judge (its own style scores best), while the likelihood of
the final answer given the question is the judge's own belief in that answer,
the signal behind scoring multiple-choice letters from logits (on MMLU the local
Qwen2.5-Coder-1.5B scored 44.5% that way on 200 questions, against 31.7% on 60
questions of the calibration run when it generated its reasoning). It is
bounded (at most :data:`LIKELIHOOD_MAX_CHARS` characters) and costs one short
evaluation per distinct final answer: peers that agree get the same score and
share one call. The mean rather than the sum keeps multi-token answers from
losing to short ones; for one-token answers such as letters the softmax is
exactly the judge's probability of each peer's answer, renormalised over the
peers. A judge whose backend has no log-probabilities, or whose likelihood call
fails, is prompted instead; under ``"likelihood"`` both are recorded as
fallbacks, under ``"auto"`` only the failure is. :attr:`Edges.judges` records
how each judge that was asked scored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from goa import prompts
from goa.answer import Caller, ask_until_valid, run_all
from goa.errors import GoaError
from goa.inference.likelihood import LikelihoodBackend, TokenLogprob, softmax
from goa.inference.types import Message
from goa.parsing import extract_answer, parse_scores, scores_schema
from goa.result import Stage

if TYPE_CHECKING:  # networkx is imported only when a graph is built
    import networkx as nx

DEFAULT_THRESHOLD = 0.05
"""Agents with a normalised relevance at or below this are removed.

With three agents an even split gives each 0.33; 0.05 or less means the judges
all but unanimously found the answer worthless. Small judges are noisy (see
issue 3's calibration run), so the default removes only clear rejects.
"""


JudgeMode = Literal["prompt", "likelihood", "auto"]
"""How judges score: ``prompt`` (the paper), ``likelihood``, or ``auto`` (see the module notes)."""
JUDGE_MODES: tuple[JudgeMode, ...] = ("prompt", "likelihood", "auto")
JudgedBy = Literal["prompt", "likelihood"]
"""How one judge actually scored."""

LIKELIHOOD_MAX_CHARS = 200
"""The most characters of a peer's final answer a likelihood judge scores."""


@dataclass
class Edges:
    """The outcome of edge construction."""

    scores: dict[str, dict[str, float]]
    relevance: dict[str, float]
    ranking: list[str]
    removed: list[tuple[str, str]] = field(default_factory=list)
    uniform: bool = False
    """True when no judge gave usable scores and every agent got the same relevance."""
    judges: dict[str, JudgedBy] = field(default_factory=dict)
    """How each judge that was asked scored (judges with one peer are not asked)."""

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


# --- Judging by likelihood --------------------------------------------------------


@dataclass(frozen=True)
class LogprobReply:
    """The outcome of one log-probability call: the value, or why there is none."""

    value: TokenLogprob | None = None
    error: str | None = None


@runtime_checkable
class LikelihoodCaller(Caller, Protocol):
    """A :class:`~goa.answer.Caller` that can also reach its agents' log-probabilities."""

    async def likelihood_backend(self, agent: str) -> LikelihoodBackend | None:
        """``agent``'s backend if it gives log-probabilities, else None (raises
        :class:`~goa.errors.GoaError` if the backend cannot be made)."""
        ...

    async def logprob(
        self, agent: str, stage: Stage, messages: Sequence[Message], continuation: str
    ) -> LogprobReply:
        """One log-probability call, timed out, recorded, its failure returned as an error."""
        ...


def likelihood_candidate(answer: str) -> str:
    """What a likelihood judge scores of an answer: its final answer (the last
    ``Answer:`` line), else its last non-empty line, cut to
    :data:`LIKELIHOOD_MAX_CHARS` characters."""
    found = extract_answer(answer)
    if found is None:
        lines = [line.strip() for line in answer.splitlines() if line.strip()]
        found = lines[-1] if lines else answer.strip()
    return found[:LIKELIHOOD_MAX_CHARS].strip()


def likelihood_messages(question: str, answer_format: str) -> list[Message]:
    """The request a likelihood judge reads, its reply started as ``Answer:``."""
    prompt = prompts.fill(
        prompts.GOA_LIKELIHOOD_PROMPT, question=question, answer_format=answer_format
    )
    return [
        Message(role="system", content=prompts.GOA_LIKELIHOOD_SYSTEM),
        Message(role="user", content=prompt),
        Message(role="assistant", content=prompts.GOA_LIKELIHOOD_PREFIX),
    ]


async def likelihood_judge(
    caller: LikelihoodCaller, agent: str, answers: Mapping[str, str]
) -> dict[str, float] | None:
    """``agent``'s scores of the other answers by likelihood (a softmax over the
    peers of the mean log-probability of each final answer), or None if a call
    failed (the caller recorded the error). Calls run one after the other: they
    share one model, and the question stays in its cache."""
    peers = [other for other in answers if other != agent]
    messages = likelihood_messages(caller.question, caller.answer_format)
    candidates = {peer: likelihood_candidate(answers[peer]) for peer in peers}
    means: dict[str, float] = {}
    for text in dict.fromkeys(candidates.values()):
        reply = await caller.logprob(agent, "score", messages, f" {text}")
        if reply.value is None:
            return None
        means[text] = reply.value.mean
    shares = softmax([means[candidates[peer]] for peer in peers])
    return dict(zip(peers, shares, strict=True))


async def judge_in_mode(
    caller: Caller, agent: str, answers: Mapping[str, str], mode: JudgeMode = "prompt"
) -> tuple[dict[str, float] | None, JudgedBy | None]:
    """``agent``'s scores of the other answers and how it scored (None when it was
    not asked: one peer or none), judging by likelihood where ``mode`` asks for it
    and the backend allows it, else by prompt (see the module notes)."""
    peers = [other for other in answers if other != agent]
    if mode == "prompt" or len(peers) < 2:
        return await judge(caller, agent, answers), "prompt" if len(peers) >= 2 else None
    backend: LikelihoodBackend | None = None
    unavailable = "the caller cannot reach log-probabilities"
    likely = caller if isinstance(caller, LikelihoodCaller) else None
    if likely is not None:
        try:
            backend = await likely.likelihood_backend(agent)
            unavailable = "its backend gives no log-probabilities"
        except GoaError as exc:
            unavailable = f"{type(exc).__name__}: {exc}"
    if likely is None or backend is None:
        if mode == "likelihood":
            caller.note("fallback", "score", f"judged by prompt: {unavailable}", agent=agent)
        return await judge(caller, agent, answers), "prompt"
    row = await likelihood_judge(likely, agent, answers)
    if row is not None:
        return row, "likelihood"
    caller.note("fallback", "score", "judged by prompt: the likelihood call failed", agent=agent)
    return await judge(caller, agent, answers), "prompt"


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
    caller: Caller,
    answers: Mapping[str, str],
    threshold: float = DEFAULT_THRESHOLD,
    judge_mode: JudgeMode = "prompt",
) -> Edges:
    """Every agent judges the others, concurrently (by prompt or by likelihood, as
    ``judge_mode`` says); then :func:`rank`."""
    agents = list(answers)

    def job(agent: str) -> Callable[[], Awaitable[tuple[dict[str, float] | None, JudgedBy | None]]]:
        return lambda: judge_in_mode(caller, agent, answers, judge_mode)

    outcomes = await run_all([job(agent) for agent in agents], sequential=caller.sequential)
    scores = {
        agent: row for agent, (row, _) in zip(agents, outcomes, strict=True) if row is not None
    }
    edges = rank(scores, agents, threshold)
    edges.judges = {
        agent: how for agent, (_, how) in zip(agents, outcomes, strict=True) if how is not None
    }
    if edges.uniform and len(agents) > 1:
        caller.note(
            "fallback",
            "score",
            "no judge gave usable scores; all agents ranked equal, in selection order",
        )
    return edges
