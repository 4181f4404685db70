"""The causal interaction graph (CIG) of a multi-agent log: which steps a step depends on.

One node per step of an :class:`~trust.interaction_log.InteractionLog` (its index, with the
attributes ``agent``, ``role``, ``stage`` and ``text``, a one-line excerpt). An edge ``i -> j``
says that information flowed from step ``i`` into step ``j``: ``j`` answers, quotes, uses the
result of, or is conditioned on ``i``. Every edge goes forward in time (``i < j``), so the graph
is acyclic by construction (and :func:`build_cig` asserts it). An edge carries ``kind`` (the
strongest rule that found it, in the order of :data:`EDGE_KINDS`), ``evidence`` (the text that
rule matched), and ``kinds`` / ``evidences`` (every rule that found it, with its text).

**Rules** (deterministic, applied to every step ``j``, strongest first):

1. ``stated``: every index in ``Step.refs`` (a GoA refinement names the answers it read, a
   judge the answers it judged, a tool output the call it executed). *Why*: the log records
   it; nothing is more certain.
2. ``quote``: ``j`` shares a span of at least :data:`QUOTE_WORDS` consecutive words
   (``\\w+`` tokens, case-folded) with an earlier step; the edge goes from the *first* step
   that holds the span. *Why*: eight words in the same order do not recur by chance; copied
   code, restated findings and quoted passages are all information flow. Spans that occur in
   the task (``log.question``) are ignored: they come from the task, not from a step.
3. ``value``: ``j`` uses a distinctive value that first appeared in an earlier step; the edge
   goes from that *first* step (a value first seen in step 1 and repeated in 3 links ``1 -> 4``
   when 4 uses it, not ``3 -> 4``: 1 is where it came from, and 3 is on the path already when
   3 got it from 1). Distinctive values: a number with at least three significant digits
   (``737,015`` = ``737015``; ``35.00`` has two), a quoted string (``"..."``, ``'...'``,
   ```...```, 3 to 80 characters), a code identifier (``snake_case``, ``camelCase``), a URL, a
   domain name or a file name. Values that occur in the task are ignored. *Why*: numbers and
   names are what agents hand each other; a short number (``2``, ``10``) or an ordinary word
   recurs by chance, so those are not used.
4. ``mention``: ``j`` names another agent (its exact name, or with ``_`` read as a space) that
   has spoken before: ``j`` is conditioned on that agent's latest earlier step. *Why*: an agent
   that cites, thanks, answers or hands over to another by name has read what it said last.
5. ``reply``: ``j`` follows step ``j - 1`` of *another* agent in a conversation (a log without
   stages): ``j`` answers it. *Why*: in a turn-based group chat the speaker has just read the
   previous turn. A step that follows a step of its own agent is a continuation, not a reply.
6. ``llm``: edges an :class:`EdgeLinker` proposes for a step whose only incoming edge is a
   ``reply`` or that has none (the rules found nothing specific); only earlier steps the step
   could read are accepted.

**Scope.** A *tool output* (``role == "tool"``: it only executes the call before it) gets its
stated edges only: it reads nothing else. In a *staged* log (steps with a ``stage``: a GoA run)
the log records what each call read, and calls of one stage run concurrently, so adjacency means
nothing: there is no ``reply`` rule, and ``quote``, ``value``, ``mention`` and ``llm`` edges may
only come from the step's stated ancestors (what it could have seen). In a conversation (no
stages) every earlier message was broadcast to all, so every earlier step could have been read.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal, Protocol, get_args

import networkx as nx

from goa.errors import GoaError, ModelRequestError
from goa.inference.backend import Backend
from goa.inference.types import ChatRequest, Message, Tags
from goa.parsing import find_json
from trust.daan_prompts import LINK_SCHEMA, LINK_SYSTEM_PROMPT, link_prompt, link_retry_prompt
from trust.interaction_log import InteractionLog, Step
from trust.log_readers import LogFormatError, read_log

__all__ = [
    "CIG",
    "EDGE_KINDS",
    "QUOTE_WORDS",
    "EdgeKind",
    "EdgeLinker",
    "LLMEdgeLinker",
    "ProposedEdge",
    "abuild_cig",
    "build_cig",
    "distinctive_values",
    "main",
]

EdgeKind = Literal["stated", "quote", "value", "mention", "reply", "llm"]
EDGE_KINDS: tuple[EdgeKind, ...] = get_args(EdgeKind)
"""The edge kinds, strongest first (an edge's ``kind`` is the strongest rule that found it)."""

QUOTE_WORDS = 8
"""The shortest shared span of consecutive words that counts as a quote."""

TEXT_CHARS = 160
"""A node's ``text`` attribute: the step's content on one line, cut to this many characters."""

_EVIDENCE_CHARS = 200
_CIG_FORMAT = "daan-cig/1"

# --- Distinctive values -------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s<>\"'`()\[\]{}]+", re.IGNORECASE)
_FILE_EXT = (
    "py|ipynb|json|jsonl|jsonld|csv|tsv|xlsx|xls|txt|pdf|png|jpe?g|gif|svg|mp3|mp4|wav|mov|"
    "html?|xml|md|docx?|pptx?|zip|tar|gz|pdb|yaml|yml|sql|db|sqlite|js|java|cpp"
)
_FILE = re.compile(rf"(?<![\w.-])[\w-]+(?:\.[\w-]+)*\.(?:{_FILE_EXT})(?![\w-])", re.IGNORECASE)
_DOMAIN = re.compile(
    r"(?<![\w.@-])(?:[a-z0-9-]+\.)+(?:com|org|gov|edu|net|io|int|mil)(?![\w-])",
    re.IGNORECASE,
)
_QUOTED = (
    re.compile(r'"([^"\n]{3,80})"'),
    re.compile(r"(?<![\w'])'([^'\n]{3,80})'(?![\w'])"),
    re.compile(r"`([^`\n]{3,80})`"),
    re.compile(r"\u201c([^\u201d\n]{3,80})\u201d"),
)
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]{3,}(?![\w])")
_SNAKE = re.compile(r"[A-Za-z0-9]_[A-Za-z0-9]")
_CAMEL = re.compile(r"[a-z][A-Z]")
_NUMBER = re.compile(
    r"(?<![\w.,])(?<!\w-)(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w]|\.\d|,\d{3}|-\w)"
)
_DATE = re.compile(r"(?<![\w-])\d{4}-\d{2}-\d{2}(?![\w-])")
_WORD = re.compile(r"\w+")


def _number_key(surface: str) -> str | None:
    plain = surface.replace(",", "")
    whole, _, fraction = plain.partition(".")
    fraction = fraction.rstrip("0")
    whole = whole.lstrip("0") or "0"
    canonical = f"{whole}.{fraction}" if fraction else whole
    significant = (whole if whole != "0" else "") + fraction
    if whole == "0":
        significant = significant.lstrip("0")
    return canonical if len(significant) >= 3 else None


def distinctive_values(text: str, *, exclude_names: Iterable[str] = ()) -> dict[str, str]:
    """The distinctive values of ``text`` (see rule 3), as key -> the first surface form.

    Keys are normalised (``num:737015``, ``str:street address``, ``id:file_path``,
    ``url:...``, ``file:data.xlsx``), so ``737,015`` and ``737015`` are one value.
    ``exclude_names`` (agent names) are not counted as identifiers.
    """
    names = set(exclude_names)
    found: dict[str, str] = {}

    def add(key: str, surface: str) -> None:
        found.setdefault(key, surface)

    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?'\"")
        add("url:" + url.lower().rstrip("/"), url)
    for match in _FILE.finditer(text):
        add("file:" + match.group(0).lower(), match.group(0))
    for match in _DOMAIN.finditer(text):
        add("file:" + match.group(0).lower(), match.group(0))
    for pattern in _QUOTED:
        for match in pattern.finditer(text):
            inner = match.group(1).strip().rstrip(".,;:!?")
            if len(inner) >= 3 and re.search(r"[A-Za-z]", inner) and inner not in names:
                add("str:" + " ".join(inner.lower().split()), match.group(0))
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word in names or not (_SNAKE.search(word) or _CAMEL.search(word)):
            continue
        if word.startswith("__") and word.endswith("__"):
            continue
        add("id:" + word, word)
    for match in _DATE.finditer(text):
        add("date:" + match.group(0), match.group(0))
    for match in _NUMBER.finditer(text):
        key = _number_key(match.group(0))
        if key is not None:
            add("num:" + key, match.group(0))
    return found


# --- Words and quotes ---------------------------------------------------------------------


def _words(text: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(text))


def _shingles(words: Sequence[re.Match[str]]) -> list[tuple[str, ...]]:
    lowered = [w.group(0).lower() for w in words]
    return [tuple(lowered[p : p + QUOTE_WORDS]) for p in range(len(lowered) - QUOTE_WORDS + 1)]


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


# --- The graph ----------------------------------------------------------------------------


@dataclass
class CIG:
    """A causal interaction graph: ``graph`` (a networkx DiGraph over step indices) of log
    ``log_id``. Build one with :func:`build_cig`."""

    graph: nx.DiGraph[int]
    log_id: str
    source: str = ""

    def edges_of_kind(self, kind: EdgeKind) -> list[tuple[int, int]]:
        """The edges a rule of ``kind`` found (whether or not it is their strongest kind)."""
        return sorted(
            (i, j) for i, j, data in self.graph.edges(data=True) if kind in data.get("kinds", ())
        )

    def parents(self, step: int) -> list[int]:
        """The steps with an edge into ``step``, latest first."""
        self._check(step)
        return sorted(self.graph.predecessors(step), reverse=True)

    def ancestors(self, step: int) -> list[int]:
        """Every causal ancestor of ``step``: nearest first by graph distance (fewest edges),
        then the most recent first."""
        self._check(step)
        distance = {step: 0}
        queue = deque([step])
        while queue:
            node = queue.popleft()
            for parent in self.graph.predecessors(node):
                if parent not in distance:
                    distance[parent] = distance[node] + 1
                    queue.append(parent)
        del distance[step]
        return sorted(distance, key=lambda n: (distance[n], -n))

    def _check(self, step: int) -> None:
        if step not in self.graph:
            raise ValueError(f"step {step} is not in the graph of log {self.log_id!r}")

    def to_json(self) -> dict[str, Any]:
        """The graph as a JSON-ready dict (``from_json`` reads it back)."""
        nodes = [{"index": n, **self.graph.nodes[n]} for n in sorted(self.graph.nodes)]
        edges = [
            {
                "source": i,
                "target": j,
                "kind": data["kind"],
                "evidence": data["evidence"],
                "kinds": list(data["kinds"]),
                "evidences": dict(data["evidences"]),
            }
            for i, j, data in sorted(self.graph.edges(data=True))
        ]
        return {
            "format": _CIG_FORMAT,
            "log_id": self.log_id,
            "source": self.source,
            "nodes": nodes,
            "edges": edges,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CIG:
        """A graph from :meth:`to_json`'s dict; a malformed one raises :class:`LogFormatError`."""
        where = "(CIG JSON)"
        if not isinstance(data, Mapping) or data.get("format") != _CIG_FORMAT:
            raise LogFormatError(where, "format", f"not a CIG: expected {_CIG_FORMAT!r}")
        graph: nx.DiGraph[int] = nx.DiGraph()
        try:
            for k, node in enumerate(data["nodes"]):
                index = node["index"]
                if not isinstance(index, int) or isinstance(index, bool):
                    raise LogFormatError(where, f"nodes[{k}].index", "must be an integer")
                attrs = {key: node.get(key) for key in ("agent", "role", "stage", "text")}
                graph.add_node(index, **attrs)
            for k, edge in enumerate(data["edges"]):
                i, j = edge["source"], edge["target"]
                if i not in graph or j not in graph:
                    raise LogFormatError(where, f"edges[{k}]", f"{i} -> {j} names no node")
                if not i < j:
                    raise LogFormatError(where, f"edges[{k}]", f"{i} -> {j} goes back in time")
                kinds = list(edge.get("kinds") or [edge["kind"]])
                if edge["kind"] not in EDGE_KINDS or any(x not in EDGE_KINDS for x in kinds):
                    raise LogFormatError(where, f"edges[{k}].kind", f"unknown kind in {kinds}")
                graph.add_edge(
                    i,
                    j,
                    kind=edge["kind"],
                    evidence=str(edge.get("evidence", "")),
                    kinds=kinds,
                    evidences=dict(edge.get("evidences") or {edge["kind"]: edge["evidence"]}),
                )
        except (KeyError, TypeError) as exc:
            raise LogFormatError(
                where, None, f"malformed CIG ({type(exc).__name__}: {exc})"
            ) from None
        return cls(
            graph=graph, log_id=str(data.get("log_id", "")), source=str(data.get("source", ""))
        )

    def summary(self) -> dict[str, Any]:
        """Counts: nodes, edges, and edges per kind (an edge counts under each of its kinds)."""
        return {
            "log_id": self.log_id,
            "nodes": self.graph.number_of_nodes(),
            "edges": self.graph.number_of_edges(),
            "by_kind": {kind: len(self.edges_of_kind(kind)) for kind in EDGE_KINDS},
        }


# --- Building -----------------------------------------------------------------------------


@dataclass
class _Builder:
    log: InteractionLog
    graph: nx.DiGraph[int] = field(default_factory=nx.DiGraph)

    def add(self, i: int, j: int, kind: EdgeKind, evidence: str) -> None:
        assert 0 <= i < j < len(self.log.steps), f"edge {i} -> {j} does not go forward"
        evidence = _one_line(evidence, _EVIDENCE_CHARS)
        if self.graph.has_edge(i, j):
            data = self.graph.edges[i, j]
            if kind not in data["kinds"]:
                data["kinds"].append(kind)
                data["kinds"].sort(key=EDGE_KINDS.index)
                data["evidences"][kind] = evidence
                data["kind"] = data["kinds"][0]
                data["evidence"] = data["evidences"][data["kind"]]
            return
        self.graph.add_edge(
            i, j, kind=kind, evidence=evidence, kinds=[kind], evidences={kind: evidence}
        )


def _staged(step: Step) -> bool:
    return step.stage is not None


def _stated_ancestors(steps: Sequence[Step], index: int) -> set[int]:
    seen: set[int] = set()
    stack = list(steps[index].refs)
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            stack.extend(steps[i].refs)
    return seen


def _visible(steps: Sequence[Step], index: int) -> list[int]:
    """The earlier steps ``index`` could have read (see Scope in the module notes)."""
    if _staged(steps[index]):
        return sorted(_stated_ancestors(steps, index))
    return list(range(index))


def _name_pattern(name: str) -> re.Pattern[str] | None:
    if len(name.strip()) < 3:
        return None
    forms = {re.escape(name)}
    if "_" in name:
        forms.add(re.escape(name.replace("_", " ")))
    return re.compile(r"(?<![\w])(?:" + "|".join(sorted(forms)) + r")(?![\w])")


def _deterministic(log: InteractionLog) -> _Builder:
    steps = log.steps
    for position, step in enumerate(steps):
        if step.index != position:
            raise GoaError(f"log {log.id!r}: step {position} has index {step.index}")
        for ref in step.refs:
            if not 0 <= ref < position:
                raise GoaError(
                    f"log {log.id!r}: step {position} refs step {ref}, which is not earlier"
                )
    builder = _Builder(log)
    for step in steps:
        builder.graph.add_node(
            step.index,
            agent=step.agent,
            role=step.role,
            stage=step.stage,
            text=_one_line(step.content, TEXT_CHARS),
        )
    names = log.agent_names()
    patterns = {name: p for name in names if (p := _name_pattern(name)) is not None}
    question_values = set(distinctive_values(log.question, exclude_names=names))
    question_shingles = set(_shingles(_words(log.question)))
    first_value: dict[str, list[int]] = {}
    shingle_steps: dict[tuple[str, ...], list[int]] = {}

    for step in steps:
        j = step.index
        words = _words(step.content)
        shingles = _shingles(words)
        values = distinctive_values(step.content, exclude_names=names)
        for ref in step.refs:
            builder.add(ref, j, "stated", f"the log states that step {j} uses step {ref}")
        if step.role != "tool":
            visible = _visible(steps, j)
            seen = set(visible)
            _quotes(
                builder, j, step.content, words, shingles, shingle_steps, seen, question_shingles
            )
            _values(builder, j, values, first_value, seen, question_values)
            _mentions(builder, step, patterns, steps, seen)
            previous = steps[j - 1] if j > 0 else None
            if previous is not None and not _staged(step) and previous.agent != step.agent:
                builder.add(j - 1, j, "reply", f"{step.agent} speaks right after {previous.agent}")
        for shingle in shingles:
            holders = shingle_steps.setdefault(shingle, [])
            if not holders or holders[-1] != j:
                holders.append(j)
        for key in values:
            first_value.setdefault(key, []).append(j)
    return builder


def _quotes(
    builder: _Builder,
    j: int,
    content: str,
    words: Sequence[re.Match[str]],
    shingles: Sequence[tuple[str, ...]],
    shingle_steps: Mapping[tuple[str, ...], list[int]],
    visible: set[int],
    excluded: set[tuple[str, ...]],
) -> None:
    positions: dict[int, list[int]] = {}
    for p, shingle in enumerate(shingles):
        if shingle in excluded:
            continue
        source = next((i for i in shingle_steps.get(shingle, ()) if i in visible), None)
        if source is not None:
            positions.setdefault(source, []).append(p)
    for source, found in sorted(positions.items()):
        best_start, best_end, start = found[0], found[0], found[0]
        for prev, p in pairwise(found):
            if p != prev + 1:
                start = p
            if p - start > best_end - best_start:
                best_start, best_end = start, p
        span = content[words[best_start].start() : words[best_end + QUOTE_WORDS - 1].end()]
        builder.add(source, j, "quote", span)


def _values(
    builder: _Builder,
    j: int,
    values: Mapping[str, str],
    first_value: Mapping[str, list[int]],
    visible: set[int],
    excluded: set[str],
) -> None:
    by_source: dict[int, list[str]] = {}
    for key, surface in values.items():
        if key in excluded:
            continue
        source = next((i for i in first_value.get(key, ()) if i in visible), None)
        if source is not None:
            by_source.setdefault(source, []).append(surface)
    for source, surfaces in sorted(by_source.items()):
        builder.add(source, j, "value", "; ".join(surfaces))


def _mentions(
    builder: _Builder,
    step: Step,
    patterns: Mapping[str, re.Pattern[str]],
    steps: Sequence[Step],
    visible: set[int],
) -> None:
    for name, pattern in patterns.items():
        if name == step.agent:
            continue
        match = pattern.search(step.content)
        if match is None:
            continue
        latest = next(
            (i for i in range(step.index - 1, -1, -1) if steps[i].agent == name),
            None,
        )
        if latest is not None and latest in visible:
            context = step.content[max(0, match.start() - 60) : match.end() + 60]
            builder.add(latest, step.index, "mention", context)


# --- The LLM linker -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProposedEdge:
    """An edge a linker proposes into the step it was asked about: from ``source``."""

    source: int
    evidence: str = ""


class EdgeLinker(Protocol):
    """Proposes the sources of one step among ``candidates`` (earlier steps it could read)."""

    async def propose(
        self, log: InteractionLog, step: int, candidates: Sequence[int]
    ) -> Sequence[ProposedEdge]: ...


def parse_links(text: str, allowed: Iterable[int]) -> tuple[list[ProposedEdge], list[int], str]:
    """A linker reply: (accepted edges, rejected sources, problem). ``problem`` is empty when the
    reply could be read; sources outside ``allowed`` are rejected, not a problem."""
    value = find_json(text)
    if not isinstance(value, dict):
        return [], [], "no JSON object found in the reply"
    items = value.get("edges")
    if not isinstance(items, list):
        return [], [], 'the JSON object has no "edges" list'
    allowed_set = set(allowed)
    accepted: list[ProposedEdge] = []
    rejected: list[int] = []
    for n, item in enumerate(items):
        source = item.get("source") if isinstance(item, dict) else None
        if isinstance(source, str) and source.strip().isdigit():
            source = int(source.strip())
        if not isinstance(source, int) or isinstance(source, bool):
            return [], [], f'edges[{n}] has no integer "source"'
        evidence = item.get("evidence", "") if isinstance(item, dict) else ""
        if source in allowed_set:
            if all(e.source != source for e in accepted):
                accepted.append(ProposedEdge(source, str(evidence)))
        else:
            rejected.append(source)
    return accepted, rejected, ""


class LLMEdgeLinker:
    """Asks a model (any goa :class:`~goa.inference.backend.Backend`) which earlier steps a step
    depends on, with :func:`~trust.daan_prompts.link_prompt`. An unreadable reply is answered
    with :func:`~trust.daan_prompts.link_retry_prompt` in the same conversation, at most
    ``max_retries`` times; then, or when the request fails for good, it proposes nothing (the
    reason is kept in :attr:`failures`). Sources that are not among the candidates (a later
    step, the step itself, one it could not read) are dropped and kept in :attr:`rejected`.
    ``calls`` counts the requests made."""

    def __init__(self, backend: Backend, max_retries: int = 1, *, max_tokens: int = 400) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be at least 0")
        self.backend = backend
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.calls = 0
        self.rejected: list[tuple[str, int, int]] = []
        """(log id, step, rejected source) of every proposal dropped."""
        self.failures: list[tuple[str, int, str]] = []
        """(log id, step, why) of every step for which no usable reply came."""

    async def propose(
        self, log: InteractionLog, step: int, candidates: Sequence[int]
    ) -> list[ProposedEdge]:
        messages = [
            Message(role="system", content=LINK_SYSTEM_PROMPT),
            Message(role="user", content=link_prompt(log, step, candidates)),
        ]
        problem = "no reply"
        for _ in range(self.max_retries + 1):
            self.calls += 1
            request = ChatRequest(
                messages=tuple(messages),
                temperature=0.0,
                max_tokens=self.max_tokens,
                json_schema=LINK_SCHEMA,
                tags=Tags(agent="daan-linker", stage="daan-cig", question=f"{log.id}#{step}"),
            )
            try:
                completion = await self.backend.complete(request)
            except ModelRequestError as error:
                self.failures.append((log.id, step, f"model request failed: {error}"))
                return []
            accepted, rejected, problem = parse_links(completion.text, candidates)
            if not problem:
                self.rejected.extend((log.id, step, source) for source in rejected)
                return accepted
            messages.append(Message(role="assistant", content=completion.text))
            messages.append(Message(role="user", content=link_retry_prompt(problem, candidates)))
        self.failures.append((log.id, step, f"no usable reply: {problem}"))
        return []


async def _link(builder: _Builder, linker: EdgeLinker) -> None:
    steps = builder.log.steps
    for step in steps:
        j = step.index
        if step.role == "tool":
            continue
        incoming = [builder.graph.edges[i, j]["kinds"] for i in builder.graph.predecessors(j)]
        if any(kinds != ["reply"] for kinds in incoming):
            continue
        candidates = _visible(steps, j)
        if not candidates:
            continue
        allowed = set(candidates)
        for edge in await linker.propose(builder.log, j, candidates):
            if edge.source in allowed:
                builder.add(edge.source, j, "llm", edge.evidence or "proposed by the linker")


def _finish(builder: _Builder) -> CIG:
    graph = builder.graph
    assert all(i < j for i, j in graph.edges), "a CIG edge goes back in time"
    assert nx.is_directed_acyclic_graph(graph), "a CIG has a cycle"
    return CIG(graph=graph, log_id=builder.log.id, source=builder.log.source)


async def abuild_cig(log: InteractionLog, *, linker: EdgeLinker | None = None) -> CIG:
    """The CIG of ``log`` (see the module notes), with ``linker``'s edges if one is given."""
    builder = _deterministic(log)
    if linker is not None:
        await _link(builder, linker)
    return _finish(builder)


def build_cig(log: InteractionLog, *, linker: EdgeLinker | None = None) -> CIG:
    """The CIG of ``log``; with a ``linker`` it runs :func:`abuild_cig` in a new event loop
    (inside a running loop, await :func:`abuild_cig` instead)."""
    if linker is None:
        return _finish(_deterministic(log))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(abuild_cig(log, linker=linker))
    raise GoaError("build_cig with a linker cannot run inside an event loop: await abuild_cig")


# --- Command line -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trust.cig LOG... [--json]``: read each log (Who&When or GoA result), build
    its CIG and print a summary (or the graph as JSON). Exit code 2, with one line on stderr,
    when a log cannot be read."""
    import json

    parser = argparse.ArgumentParser(prog="python -m trust.cig", description=main.__doc__)
    parser.add_argument("logs", nargs="+", help="log files (Who&When case or GoA result JSON)")
    parser.add_argument("--json", action="store_true", help="print each graph as JSON")
    args = parser.parse_args(argv)
    for path in args.logs:
        try:
            cig = build_cig(read_log(path))
        except GoaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(cig.to_json() if args.json else cig.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
