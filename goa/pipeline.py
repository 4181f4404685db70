"""GraphOfAgents: the whole pipeline, from a question to a :class:`~goa.result.Result`.

Stages (paper GoA): node sampling -> initial answers -> edge construction ->
forward passing -> reverse passing (``rounds`` times) -> pooling. Calls within a
stage are independent and run concurrently (``sequential=True`` makes the same
calls one at a time, as the reference code does).

Failure rules:

- A call that raises a :class:`~goa.errors.GoaError` (a failed request, a model
  that cannot be loaded), runs past ``timeout_s`` or, in an answer stage,
  returns nothing usable (empty, no letters or digits) fails. An agent whose
  answer, forward or reverse call fails is dropped from the graph with the
  reason recorded; the run goes on while one agent remains.
- One agent left (after answering, or after the threshold): its answer is final.
- None left: ``answered`` is False, ``answer`` is None, and ``reason`` names what
  went wrong. No answer is ever made up.
- Mean pooling that fails falls back on max pooling (recorded).

Call count for paper GoA with ``k`` agents that all answer and pass the
threshold, one round: 1 selection + k answers + k judges (none when k = 2: a
judge with one peer has nothing to weigh) + (k - 1) forward + reverse calls
(1 with max pooling, k - 1 with mean) + pooling (0 with max, 1 with mean). For
k = 3 that is 10 calls with max pooling and 12 with mean pooling. With
``judge="likelihood"`` the judges generate nothing: each makes one
log-probability call per distinct peer answer instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from goa import prompts
from goa.agent_backends import AgentBackends
from goa.answer import Reply, initial_answers
from goa.cards import ModelCard, get_card
from goa.edges import (
    DEFAULT_THRESHOLD,
    JUDGE_MODES,
    Edges,
    JudgeMode,
    LogprobReply,
    build_edges,
    build_graph,
)
from goa.errors import GoaError
from goa.inference.backend import Backend
from goa.inference.likelihood import LikelihoodBackend, TokenLogprob, likelihood_backend
from goa.inference.types import ChatRequest, Message, OnDelta, Tags, Usage
from goa.parsing import all_agree, extract_answer, majority_answer, normalise_answer
from goa.passing import forward_pass, reverse_pass
from goa.pooling import Pooling, max_pool, mean_pool
from goa.pools import Pool, load_pool
from goa.result import (
    ANSWER_STAGES,
    STAGES,
    CallRecord,
    Event,
    EventKind,
    Incident,
    IncidentKind,
    Removal,
    Result,
    Selected,
    Stage,
    StageSummary,
    Totals,
)
from goa.select import SELECTORS, Sampling, SelectorName, sample_nodes

OnEvent = Callable[[Event], None]
EarlyExit = bool | Literal["all", "majority"]
"""When GoA stops after the initial answers: never (False), when all agree (True or
"all"), or when more than half agree ("majority")."""


def question_id(question: str) -> str:
    """A short, stable id of a question (the first 12 hex digits of its SHA-256)."""
    return hashlib.sha256(question.encode("utf-8")).hexdigest()[:12]


def largest_card(cards: Sequence[ModelCard]) -> ModelCard:
    """The card with the most parameters (unknown counts as 0; ties: pool order)."""
    return max(cards, key=lambda card: card.parameters_b or 0.0)


@dataclass
class _State:
    """What the stages have decided so far."""

    sampling: Sampling | None = None
    answered: list[str] = field(default_factory=list)
    """Agents that gave an initial answer, in selection order."""
    current: dict[str, str] = field(default_factory=dict)
    """Each live agent's latest answer."""
    edges: Edges | None = None
    ranking: list[str] = field(default_factory=list)
    """Live agents, most relevant first (selection order before edges)."""
    answer: str | None = None
    final_agent: str | None = None
    reason: str = ""
    early_exit: bool = False


class Run:
    """One question's run: the :class:`~goa.answer.Caller` the stages use, and its records."""

    def __init__(
        self,
        goa: GraphOfAgents,
        question: str,
        on_event: OnEvent | None,
        on_delta: OnDelta | None = None,
    ) -> None:
        self.goa = goa
        self.on_delta = on_delta
        self._question = question
        self.question_id = question_id(question)
        self.on_event = on_event
        self.records: list[CallRecord] = []
        self.incidents: list[Incident] = []
        self.removed: list[Removal] = []
        self.stage_wall: dict[Stage, float] = {}
        self.round: int | None = None
        self.state = _State()
        self.backends = AgentBackends(
            goa.card, goa.backends, cache=goa.cache, progress=goa.progress
        )
        self._t0 = time.perf_counter()

    # --- The Caller protocol -------------------------------------------------------

    @property
    def question(self) -> str:
        return self._question

    @property
    def answer_format(self) -> str:
        return self.goa.answer_format

    @property
    def max_retries(self) -> int:
        return self.goa.max_retries

    @property
    def sequential(self) -> bool:
        return self.goa.sequential

    async def call(
        self,
        agent: str,
        stage: Stage,
        messages: Sequence[Message],
        *,
        round: int | None = None,
        attempt: int = 0,
        json_schema: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> Reply:
        started = self.elapsed()
        request = ChatRequest(
            messages=tuple(messages),
            temperature=self.goa.temperature,
            max_tokens=self.goa.max_tokens,
            json_schema=json_schema if self.goa.structured else None,
            tags=Tags(agent=agent, stage=stage, question=self.question_id),
        )
        outcome = await self.backends.call(
            agent,
            request,
            timeout_s=self.goa.timeout_s,
            is_answer=stage in ANSWER_STAGES,
            on_delta=self.on_delta if stream else None,
        )
        self.records.append(
            outcome.record(
                agent=agent,
                stage=stage,
                round=round,
                attempt=attempt,
                started_s=started,
                cost_usd=self.backends.cost(agent, outcome.completion),
            )
        )
        text, answer, error = outcome.text, outcome.answer, outcome.error
        if error is not None:
            self.note("error", stage, error, agent=agent)
            return Reply(agent=agent, text=text, answer=answer, error=error)
        if stage in ANSWER_STAGES:
            self.emit("agent_answered", stage=stage, agent=agent, message=answer or "")
        return Reply(agent=agent, text=text, answer=answer)

    async def likelihood_backend(self, agent: str) -> LikelihoodBackend | None:
        """``agent``'s backend if it gives log-probabilities (the likelihood judge)."""
        return likelihood_backend(await self.backends.get(agent))

    async def logprob(
        self, agent: str, stage: Stage, messages: Sequence[Message], continuation: str
    ) -> LogprobReply:
        """One log-probability call, with the timeout, recorded like :meth:`call`."""
        started = self.elapsed()
        value: TokenLogprob | None = None
        error: str | None = None
        clock = time.perf_counter()
        try:
            backend = await self.likelihood_backend(agent)
            if backend is None:
                raise GoaError(f"the backend of {agent!r} gives no log-probabilities")
            clock = time.perf_counter()
            async with asyncio.timeout(self.goa.timeout_s):
                value = await backend.logprob(messages, continuation)
        except TimeoutError:
            error = f"timed out after {self.goa.timeout_s:g} s"
        except GoaError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - clock
        self.records.append(
            CallRecord(
                agent=agent,
                stage=stage,
                text=None
                if value is None
                else f"likelihood: mean log-probability {value.mean:.4f} over {value.tokens} "
                f"tokens of {continuation!r}",
                usage=None
                if value is None
                else Usage(prompt_tokens=value.prompt_tokens + value.tokens),
                cost_usd=value.cost_usd if value is not None else self.backends.cost(agent, None),
                latency_s=latency,
                started_s=started,
                error=error,
            )
        )
        if error is not None:
            self.note("error", stage, error, agent=agent)
        return LogprobReply(value=value, error=error)

    def note(
        self, kind: IncidentKind, stage: Stage, message: str, *, agent: str | None = None
    ) -> None:
        round_ = self.round if stage in ("forward", "reverse") else None
        incident = Incident(kind=kind, stage=stage, agent=agent, round=round_, message=message)
        self.incidents.append(incident)
        self.emit(kind, stage=stage, agent=agent, message=message)

    # --- Helpers -------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def emit(
        self,
        kind: EventKind,
        *,
        stage: Stage | None = None,
        agent: str | None = None,
        message: str = "",
        result: Result | None = None,
    ) -> None:
        if self.on_event is None:
            return
        round_ = self.round if stage in ("forward", "reverse") else None
        self.on_event(
            Event(
                kind=kind,
                stage=stage,
                agent=agent,
                round=round_,
                message=message,
                elapsed_s=self.elapsed(),
                result=result,
            )
        )

    def drop(self, agent: str, stage: Stage, reason: str) -> None:
        """Take ``agent`` out of the run, with the reason."""
        self.removed.append(Removal(agent=agent, stage=stage, reason=reason))
        self.note("dropped", stage, reason, agent=agent)
        self.state.current.pop(agent, None)
        if agent in self.state.ranking:
            self.state.ranking.remove(agent)

    @contextmanager
    def stage(self, name: Stage) -> Iterator[None]:
        self.emit("stage_started", stage=name)
        start = time.perf_counter()
        try:
            yield
        finally:
            wall = time.perf_counter() - start
            self.stage_wall[name] = self.stage_wall.get(name, 0.0) + wall
            self.emit("stage_finished", stage=name, message=f"{wall:.3f} s")

    async def aclose(self) -> None:
        """Close the backends this run created (never those the caller passed in)."""
        await self.backends.aclose()


class GraphOfAgents:
    """Several models answering one question together, as in the Graph-of-Agents paper.

    ``pool``: a :class:`~goa.pools.Pool`, a pool name, or None for the default pool.
    ``backends`` maps card ids to ready backends (tests pass scripted ones); other
    agents get theirs from :func:`goa.inference.factory.backend_for_card`, built
    only when the agent is first called, so only selected local models are
    fetched. ``meta`` is the card id of the meta model (selection, difficulty,
    mean pooling); default: the pool's largest card. ``threshold``: agents with a
    normalised relevance at or below it are removed (see :mod:`goa.edges`).
    ``answer_format`` is the instruction for the final answer line (default:
    ``Answer: <your final answer>``). ``timeout_s`` bounds each call.
    ``budget_usd`` bounds the agents' estimated cost (see :mod:`goa.select`).
    ``structured`` asks for schema-constrained JSON from the selector, the
    difficulty rating and the judges where the backend can enforce it (llama.cpp
    grammars, ``response_format``); replies are validated either way.
    ``judge``: how judges score, ``prompt`` (the paper: a JSON reply),
    ``likelihood`` (by the log-probability of each peer's final answer where the
    judge's backend gives log-probabilities, else by prompt, recorded as a
    fallback) or ``auto`` (the same, without the fallback note); see
    :mod:`goa.edges`.
    ``early_exit`` stops after the initial answers when all agents give the same
    final answer (``True`` or ``"all"``), or when more than half of them do
    (``"majority"``: the most relevant agent of that majority answers); no judge
    and no message passing run then.
    ``progress`` shows download progress when a local model is fetched.
    """

    def __init__(
        self,
        pool: Pool | str | None = None,
        *,
        k: int = 3,
        selector: SelectorName = "llm",
        adaptive_k: bool = False,
        pooling: Pooling = "max",
        rounds: int = 1,
        early_exit: EarlyExit = False,
        meta: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        answer_format: str | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        sequential: bool = False,
        max_retries: int = 2,
        timeout_s: float | None = None,
        budget_usd: float | None = None,
        cache: bool = False,
        backends: Mapping[str, Backend] | None = None,
        structured: bool = False,
        progress: bool = False,
        judge: JudgeMode = "prompt",
    ) -> None:
        _check_options(
            k, selector, pooling, rounds, threshold, max_tokens, max_retries, timeout_s, budget_usd
        )
        if judge not in JUDGE_MODES:
            raise GoaError(f"judge must be one of {', '.join(JUDGE_MODES)}, not {judge!r}")
        self.pool = pool if isinstance(pool, Pool) else load_pool(pool)
        if not self.pool.cards:
            raise GoaError(f"pool {self.pool.name!r} has no cards")
        self.k = k
        self.selector: SelectorName = selector
        self.adaptive_k = adaptive_k
        self.pooling: Pooling = pooling
        self.rounds = rounds
        if early_exit not in (False, True, "all", "majority"):
            raise GoaError(
                f"early_exit must be False, True, 'all' or 'majority', not {early_exit!r}"
            )
        self.early_exit: EarlyExit = early_exit
        self.threshold = threshold
        self.answer_format = answer_format or prompts.GOA_DEFAULT_ANSWER_FORMAT
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.sequential = sequential
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.budget_usd = budget_usd
        self.cache = cache
        self.backends: dict[str, Backend] = dict(backends or {})
        self.structured = structured
        self.progress = progress
        self.judge: JudgeMode = judge
        self._cards = {card.id: card for card in self.pool.cards}
        self.meta_card = self._meta_card(meta)

    def _meta_card(self, meta: str | None) -> ModelCard:
        if meta is None:
            return largest_card(self.pool.cards)
        card = self._cards.get(meta) or get_card(meta)
        self._cards.setdefault(card.id, card)
        return card

    def card(self, agent: str) -> ModelCard | None:
        """The card of a pool agent or of the meta model."""
        return self._cards.get(agent)

    # --- Entry points --------------------------------------------------------------

    def run(
        self,
        question: str,
        *,
        on_event: OnEvent | None = None,
        on_delta: OnDelta | None = None,
        domain: str | None = None,
    ) -> Result:
        """The synchronous form of :meth:`arun` (same options)."""
        return asyncio.run(self.arun(question, on_event=on_event, on_delta=on_delta, domain=domain))

    async def stream(self, question: str, *, domain: str | None = None) -> AsyncIterator[Event]:
        """The run's events as they happen; the last is ``final``, carrying the result."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        task = asyncio.create_task(self.arun(question, on_event=queue.put_nowait, domain=domain))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            task.result()
        finally:
            if not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    async def arun(
        self,
        question: str,
        *,
        on_event: OnEvent | None = None,
        on_delta: OnDelta | None = None,
        domain: str | None = None,
    ) -> Result:
        """Answer ``question`` with the graph.

        ``on_event`` receives progress events. ``on_delta`` receives the text of
        the call that produces the final answer as it is generated: the
        synthesis under mean pooling, the top agent's last reverse pass under
        max pooling. An answer that already exists when the final stage is
        reached (early exit, a single agent) is not streamed, and if the
        streamed call fails the result falls back on another answer, so
        ``Result.answer`` is always the authority. ``domain`` (e.g. ``"mmlu"``)
        lets the ``profile`` selector use the cards' accuracy on that domain.
        """
        if not question.strip():
            raise GoaError("the question is empty")
        run = Run(self, question, on_event, on_delta)
        try:
            await self._stages(run, domain)
        finally:
            await run.aclose()
        result = self._result(run)
        run.emit("final", message=result.reason, result=result)
        return result

    # --- Stages --------------------------------------------------------------------

    async def _stages(self, run: Run, domain: str | None) -> None:
        state = run.state
        if not await self._select(run, domain):
            return
        if not await self._answer(run):
            return
        if self.early_exit and self._agree(run):
            return
        if not await self._edges(run):
            return
        for round_ in range(1, self.rounds + 1):
            await self._pass(run, round_)
            if not state.ranking:
                _no_answer(run, "every agent failed during message passing")
                return
        await self._pool(run)

    async def _select(self, run: Run, domain: str | None) -> bool:
        with run.stage("select"):
            sampling = await sample_nodes(
                run,
                self.pool.cards,
                k=self.k,
                selector=self.selector,
                meta=self.meta_card.id,
                adaptive_k=self.adaptive_k,
                budget_usd=self.budget_usd,
                domain=domain,
                max_tokens=self.max_tokens,
            )
        run.state.sampling = sampling
        for agent, reason in sampling.skipped:
            run.removed.append(Removal(agent=agent, stage="select", reason=reason))
        if not sampling.picks:
            _no_answer(run, "no agent was selected (none fits the budget)")
            return False
        return True

    async def _answer(self, run: Run) -> bool:
        state = run.state
        assert state.sampling is not None
        agents = [pick.card.id for pick in state.sampling.picks]
        with run.stage("answer"):
            replies = await initial_answers(run, agents)
        for reply in replies:
            if reply.ok and reply.text is not None:
                state.answered.append(reply.agent)
                state.current[reply.agent] = reply.text
            else:
                run.drop(reply.agent, "answer", f"no initial answer: {reply.error}")
        state.ranking = list(state.answered)
        if not state.ranking:
            failures = "; ".join(f"{r.agent}: {r.error}" for r in replies)
            _no_answer(run, f"no agent could answer ({failures})")
            return False
        if len(state.ranking) == 1:
            _final(run, state.ranking[0], "only one agent answered; its answer is final")
            return False
        return True

    def _agree(self, run: Run) -> bool:
        """Early exit after the answers: all agents agree (``True``/``"all"``), or more
        than half of them do (``"majority"``: the most relevant of those answers)."""
        state = run.state
        extracted = [extract_answer(state.current[a]) for a in state.ranking]
        if self.early_exit == "majority":
            agreed = majority_answer(extracted)
            if agreed is None:
                return False
            votes = [a for a in extracted if a is not None and normalise_answer(a) == agreed]
            winner = next(
                agent
                for agent, answer in zip(state.ranking, extracted, strict=True)
                if answer is not None and normalise_answer(answer) == agreed
            )
            reason = (
                f"early exit: {len(votes)} of {len(extracted)} agents gave the same final "
                f"answer ({votes[0]})"
            )
        else:
            if not all_agree(extracted):
                return False
            winner = state.ranking[0]
            reason = (
                f"early exit: all {len(extracted)} agents gave the same final answer "
                f"({extracted[0]})"
            )
        state.early_exit = True
        _final(run, winner, reason)
        return True

    async def _edges(self, run: Run) -> bool:
        state = run.state
        with run.stage("score"):
            edges = await build_edges(run, dict(state.current), self.threshold, self.judge)
        state.edges = edges
        for agent, reason in edges.removed:
            run.drop(agent, "score", reason)
        state.ranking = list(edges.ranking)
        if len(state.ranking) == 1:
            _final(
                run, state.ranking[0], "only one agent passed the threshold; its answer is final"
            )
            return False
        return True

    async def _pass(self, run: Run, round_: int) -> None:
        state = run.state
        relevance = state.edges.relevance if state.edges is not None else {}
        run.round = round_
        with run.stage("forward"):
            replies = await forward_pass(
                run, list(state.ranking), dict(state.current), relevance, round_=round_
            )
        self._apply(run, "forward", replies)
        last = round_ == self.rounds
        targets = state.ranking[:1] if self.pooling == "max" and last else state.ranking[:-1]
        with run.stage("reverse"):
            replies = await reverse_pass(
                run,
                list(state.ranking),
                dict(state.current),
                relevance,
                targets=list(targets),
                round_=round_,
                stream_agent=state.ranking[0] if self.pooling == "max" and last else None,
            )
        self._apply(run, "reverse", replies)
        run.round = None

    def _apply(self, run: Run, stage: Stage, replies: Mapping[str, Reply]) -> None:
        for agent, reply in replies.items():
            if reply.ok and reply.text is not None:
                run.state.current[agent] = reply.text
            else:
                run.drop(agent, stage, f"{stage} pass failed: {reply.error}")

    async def _pool(self, run: Run) -> None:
        state = run.state
        relevance = state.edges.relevance if state.edges is not None else {}
        if len(state.ranking) == 1:
            _final(run, state.ranking[0], "only one agent is left; its answer is final")
            return
        if self.pooling == "max":
            top, _ = max_pool(state.ranking, state.current)
            _final(run, top, "max pooling: the most relevant remaining agent's final answer")
            return
        with run.stage("pool"):
            reply = await mean_pool(run, self.meta_card.id, state.ranking, state.current, relevance)
        if reply.ok and reply.text is not None:
            state.answer = reply.text.strip()
            state.final_agent = self.meta_card.id
            state.reason = "mean pooling: the meta model's synthesis of the final answers"
            return
        top, _ = max_pool(state.ranking, state.current)
        message = f"mean pooling failed ({reply.error}); used max pooling instead"
        run.note("fallback", "pool", message, agent=self.meta_card.id)
        _final(run, top, message)

    # --- The result ----------------------------------------------------------------

    def _result(self, run: Run) -> Result:
        state = run.state
        sampling = state.sampling
        answer = state.answer
        return Result(
            question=run.question,
            question_id=run.question_id,
            answer=answer,
            final_answer=extract_answer(answer) if answer is not None else None,
            answered=answer is not None,
            reason=state.reason,
            final_agent=state.final_agent,
            pooling=self.pooling,
            selector=self.selector,
            k=sampling.k if sampling is not None else self.k,
            difficulty=sampling.difficulty if sampling is not None else None,
            selected=[Selected(agent=p.card.id, reason=p.reason) for p in sampling.picks]
            if sampling is not None
            else [],
            responses=list(run.records),
            scores=state.edges.scores if state.edges is not None else {},
            judges=state.edges.judges if state.edges is not None else {},
            relevance=state.edges.relevance if state.edges is not None else {},
            ranking=state.edges.ranking if state.edges is not None else list(state.answered),
            removed=list(run.removed),
            graph=_graph(run),
            incidents=list(run.incidents),
            stages=_stage_summaries(run),
            agents=_agent_totals(run.records),
            totals=Totals.of(run.records),
            early_exit=state.early_exit,
            rounds=self.rounds,
            wall_s=run.elapsed(),
        )


def _check_options(
    k: int,
    selector: str,
    pooling: str,
    rounds: int,
    threshold: float,
    max_tokens: int,
    max_retries: int,
    timeout_s: float | None,
    budget_usd: float | None,
) -> None:
    problems = []
    if k < 1:
        problems.append(f"k must be at least 1, not {k}")
    if selector not in SELECTORS:
        problems.append(f"selector must be one of {', '.join(SELECTORS)}, not {selector!r}")
    if pooling not in ("max", "mean"):
        problems.append(f"pooling must be 'max' or 'mean', not {pooling!r}")
    if rounds < 0:
        problems.append(f"rounds cannot be negative, not {rounds}")
    if not 0.0 <= threshold < 1.0:
        problems.append(f"threshold must be in [0, 1), not {threshold}")
    if max_tokens < 1:
        problems.append(f"max_tokens must be at least 1, not {max_tokens}")
    if max_retries < 0:
        problems.append(f"max_retries cannot be negative, not {max_retries}")
    if timeout_s is not None and timeout_s <= 0:
        problems.append(f"timeout_s must be positive, not {timeout_s}")
    if budget_usd is not None and budget_usd < 0:
        problems.append(f"budget_usd cannot be negative, not {budget_usd}")
    if problems:
        raise GoaError("; ".join(problems))


def _final(run: Run, agent: str, reason: str) -> None:
    state = run.state
    state.answer = state.current[agent].strip()
    state.final_agent = agent
    state.reason = reason


def _no_answer(run: Run, reason: str) -> None:
    state = run.state
    state.answer = None
    state.final_agent = None
    state.reason = reason


def _graph(run: Run) -> dict[str, Any]:
    import networkx as nx

    state = run.state
    if state.edges is not None:
        graph = build_graph(state.edges.ranking, state.edges.relevance)
    else:
        graph = build_graph(state.answered, {}, connect=False)
    dropped = {r.agent: r.stage for r in run.removed}
    for agent in graph.nodes:
        graph.nodes[agent]["final"] = agent == state.final_agent
        graph.nodes[agent]["dropped"] = agent in dropped
        if agent in dropped:
            graph.nodes[agent]["dropped_at"] = dropped[agent]
    data: dict[str, Any] = nx.node_link_data(graph, edges="edges")
    return data


def _stage_summaries(run: Run) -> dict[str, StageSummary]:
    summaries: dict[str, StageSummary] = {}
    for stage in STAGES:
        records = [r for r in run.records if r.stage == stage]
        incidents = [i for i in run.incidents if i.stage == stage]
        if not records and stage not in run.stage_wall:
            continue
        # The difficulty rating runs inside the select stage, beside the selection
        # call: its own wall time is the span of its calls.
        span = (
            sum(r.latency_s for r in records)
            if run.goa.sequential
            else max((r.latency_s for r in records), default=0.0)
        )
        summaries[stage] = StageSummary(
            stage=stage,
            wall_s=run.stage_wall.get(stage, span),
            totals=Totals.of(records),
            retries=sum(1 for i in incidents if i.kind == "retry"),
            fallbacks=sum(1 for i in incidents if i.kind == "fallback"),
            errors=sum(1 for i in incidents if i.kind == "error"),
            dropped=sum(1 for i in incidents if i.kind == "dropped"),
        )
    return summaries


def _agent_totals(records: Sequence[CallRecord]) -> dict[str, Totals]:
    agents = list(dict.fromkeys(r.agent for r in records))
    return {agent: Totals.of(r for r in records if r.agent == agent) for agent in agents}
