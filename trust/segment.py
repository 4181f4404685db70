"""Privacy segmentation: cut an H-DAG into the pieces auditors see, hand them out, measure leaks.

No auditor should see the whole trace.  A :class:`Segment` shows one auditable node and only
what is needed to judge it:

``nodes``
    The node to judge (a ``step`` or an ``operation``), first.  A step comes with its operation
    children: their text is part of the step's own text, so showing them leaks nothing more.
``premises``
    The nodes the judged node depends on (``depends_on``), by default the *direct* premises
    only (``premise_depth=1``): a step is judged on the assumption that its premises are
    right, and whether they are is the question of their own segments.  A larger depth follows
    the dependency edges further; ``None`` takes every transitive premise.  An operation's
    premises are its own ``depends_on`` (none, with the rule-based decomposer): an operation is
    a self-contained computation, and whether its inputs are right is asked of its step.
``goal``
    The goal node, included by default (``include_goal=True``): without the question an auditor
    cannot tell whether a step is relevant.  It is counted in the exposure like any other text,
    so every auditor who receives anything already sees ``len(goal) / total`` of the trace.

Strategy and tactic nodes are never shown (the rule-based decomposer copies the first step
into the strategy, so showing it would leak that step).

The measure
-----------
Caps and exposure use one unit: *characters of node text*, over the nodes a segment can show:
the goal (when goals are included), every step and every operation.  ``Segment.trace_chars`` is
that total for the whole trace; an auditor's exposure is the summed text length of the distinct
nodes it has seen, divided by it.  An operation's text usually repeats part of its step's text;
it is counted in both the numerator and the denominator, so the figure is a share of the
trace's nodes weighted by their length, never above 1.

Assignment and exposure
-----------------------
:func:`assign` gives each segment to ``replicas`` distinct auditors so that no auditor's
exposure exceeds ``per_auditor_cap`` (a fraction of ``trace_chars``).  Finding an assignment is
a bin-packing problem with overlapping items; it is solved greedily (largest segments first,
each to the auditors whose exposure grows least), retried with a few seeded shuffles.  The
result is deterministic for a given seed.  :class:`AssignmentError` is raised when no
assignment is found; its ``proven`` attribute says whether one provably cannot exist.

:func:`exposure` measures what one auditor, and the best coalition of ``coalition_size``
auditors, have seen.  The coalition figure is exact (all combinations are tried) while there are
at most :data:`EXACT_COALITION_LIMIT` combinations; beyond that the greedy maximum-coverage
coalition is reported, which sees at least ``1 - 1/e`` of what the best one sees, and
``coalition_upper`` is the upper bound that follows (also capped by the sum of the coalition's
largest single exposures).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from goa.errors import GoaError
from trust.hdag import HDAG, HNode, Level

__all__ = [
    "AUDITABLE_LEVELS",
    "EXACT_COALITION_LIMIT",
    "Assignment",
    "AssignmentError",
    "ExposureReport",
    "HasId",
    "Segment",
    "SegmentError",
    "assign",
    "exposure",
    "measured_chars",
    "segment",
]

AUDITABLE_LEVELS: tuple[Level, ...] = (Level.STEP, Level.OPERATION)
"""The levels that get segments of their own."""

EXACT_COALITION_LIMIT = 20_000
"""Up to this many auditor combinations the best coalition is found exactly."""

_RESTARTS = 16
"""Seeded reshuffles :func:`assign` tries after its first greedy pass fails."""


class SegmentError(GoaError):
    """A segmentation request is wrong (bad level, depth, cap or a foreign assignment)."""


class AssignmentError(SegmentError):
    """No assignment honours the cap.

    ``proven`` is True when none can exist (a segment alone is over the cap, too few auditors,
    or the total that must be seen does not fit); False when the greedy search found none
    although one might exist (raise the cap or add auditors).
    """

    def __init__(self, message: str, *, proven: bool) -> None:
        self.proven = proven
        super().__init__(message)


class HasId(Protocol):
    """Anything with an ``id`` (an auditor)."""

    @property
    def id(self) -> str: ...


class Segment(BaseModel):
    """One piece of a trace for one judgement: what to judge, its premises and the goal.

    ``id`` is the id of the judged node; ``nodes`` starts with that node (for a step, its
    operations follow); ``trace_chars`` is the measured size of the whole trace (see the module
    docstring), which makes caps relative to the trace without the H-DAG at hand.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    level: Level
    nodes: tuple[HNode, ...] = Field(min_length=1)
    premises: tuple[HNode, ...] = ()
    goal: HNode | None = None
    trace_chars: int = Field(ge=1)

    @property
    def target(self) -> HNode:
        """The node this segment asks about."""
        return self.nodes[0]

    @property
    def visible(self) -> tuple[HNode, ...]:
        """Every node the auditor sees: the goal, the premises, then the judged nodes."""
        head = (self.goal,) if self.goal is not None else ()
        return (*head, *self.premises, *self.nodes)

    @property
    def visible_ids(self) -> frozenset[str]:
        return frozenset(node.id for node in self.visible)

    @property
    def chars(self) -> int:
        """The measured characters this segment shows."""
        return sum(len(node.text) for node in self.visible)


def measured_chars(hdag: HDAG, *, include_goal: bool = True) -> dict[str, int]:
    """Node id -> text length for the nodes that count in caps and exposure."""
    levels = {*AUDITABLE_LEVELS, Level.GOAL} if include_goal else set(AUDITABLE_LEVELS)
    return {node.id: len(node.text) for node in hdag.nodes if node.level in levels}


def _premises(hdag: HDAG, node: HNode, depth: int | None) -> tuple[HNode, ...]:
    if depth is None:
        return hdag.premises(node.id)
    seen: set[str] = set()
    frontier = list(node.depends_on)
    for _ in range(depth):
        following: list[str] = []
        for dep in frontier:
            if dep not in seen:
                seen.add(dep)
                following.extend(hdag.node(dep).depends_on)
        frontier = following
    return tuple(other for other in hdag.nodes if other.id in seen)


def segment(
    hdag: HDAG,
    *,
    levels: Iterable[Level] = AUDITABLE_LEVELS,
    premise_depth: int | None = 1,
    include_goal: bool = True,
) -> tuple[Segment, ...]:
    """One segment per node on ``levels`` (steps and operations by default), in node order.

    ``premise_depth`` is how far dependency edges are followed (1: direct premises; ``None``:
    all).  SegmentError for a level that is not auditable or a depth below 1.
    """
    wanted = set(levels)
    if not wanted or not wanted <= set(AUDITABLE_LEVELS):
        raise SegmentError(
            f"levels must be a non-empty subset of {[level.value for level in AUDITABLE_LEVELS]}"
        )
    if premise_depth is not None and premise_depth < 1:
        raise SegmentError(f"premise_depth must be at least 1 or None, not {premise_depth}")
    total = max(1, sum(measured_chars(hdag, include_goal=include_goal).values()))
    goal = hdag.goal if include_goal else None
    segments: list[Segment] = []
    for node in hdag.nodes:
        if node.level not in wanted:
            continue
        extra = hdag.children(node.id) if node.level is Level.STEP else ()
        judged = (node, *(child for child in extra if child.level is Level.OPERATION))
        segments.append(
            Segment(
                id=node.id,
                level=node.level,
                nodes=judged,
                premises=_premises(hdag, node, premise_depth),
                goal=goal,
                trace_chars=total,
            )
        )
    return tuple(segments)


class Assignment(BaseModel):
    """Which auditors judge which segment.

    ``by_segment`` maps a segment id to its auditors' ids (``replicas`` of them, distinct);
    ``auditors`` lists every auditor offered, in the order given, including any left idle.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    segments: tuple[Segment, ...]
    auditors: tuple[str, ...]
    by_segment: dict[str, tuple[str, ...]]
    per_auditor_cap: float
    replicas: int
    seed: int

    def auditors_of(self, segment_id: str) -> tuple[str, ...]:
        """The auditors who judge this segment."""
        try:
            return self.by_segment[segment_id]
        except KeyError:
            raise SegmentError(f"no segment {segment_id!r} in this assignment") from None

    def segments_of(self, auditor: str) -> tuple[Segment, ...]:
        """The segments this auditor judges, in segment order."""
        return tuple(seg for seg in self.segments if auditor in self.by_segment[seg.id])

    def seen(self, auditor: str) -> frozenset[str]:
        """The ids of every node this auditor sees."""
        ids: set[str] = set()
        for seg in self.segments_of(auditor):
            ids |= seg.visible_ids
        return frozenset(ids)


def _auditor_ids(auditors: Sequence[str | HasId]) -> tuple[str, ...]:
    ids = tuple(item if isinstance(item, str) else item.id for item in auditors)
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise SegmentError(f"auditor ids must be distinct; repeated: {duplicates}")
    return ids


def _sizes(segments: Sequence[Segment]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for seg in segments:
        for node in seg.visible:
            if sizes.setdefault(node.id, len(node.text)) != len(node.text):
                raise SegmentError(f"node {node.id!r} has different texts in different segments")
    return sizes


def _check_possible(
    segments: Sequence[Segment], ids: Sequence[str], budget: int, replicas: int
) -> None:
    if replicas > len(ids):
        raise AssignmentError(
            f"{replicas} replicas need {replicas} distinct auditors; only {len(ids)} given",
            proven=True,
        )
    for seg in segments:
        if seg.chars > budget:
            raise AssignmentError(
                f"segment {seg.id!r} alone shows {seg.chars} of {seg.trace_chars} characters "
                f"({seg.chars / seg.trace_chars:.1%}), over the cap of {budget} characters",
                proven=True,
            )
    targets = {node.id: len(node.text) for seg in segments for node in seg.nodes}
    needed = replicas * sum(targets.values())
    if needed > budget * len(ids):
        raise AssignmentError(
            f"the judged nodes must be seen {replicas} times ({needed} characters in all), "
            f"more than {len(ids)} auditors can see under the cap ({budget} characters each)",
            proven=True,
        )


def _greedy(
    segments: Sequence[Segment],
    ids: Sequence[str],
    sizes: Mapping[str, int],
    budget: int,
    replicas: int,
    rank: Mapping[str, int],
) -> dict[str, tuple[str, ...]] | None:
    seen: dict[str, set[str]] = {auditor: set() for auditor in ids}
    load = dict.fromkeys(ids, 0)
    result: dict[str, tuple[str, ...]] = {}
    for seg in segments:
        visible = seg.visible_ids
        options: list[tuple[int, int, int, str]] = []
        for auditor in ids:
            extra = sum(sizes[node] for node in visible - seen[auditor])
            if load[auditor] + extra <= budget:
                options.append((extra, load[auditor], rank[auditor], auditor))
        if len(options) < replicas:
            return None
        chosen = [auditor for *_, auditor in sorted(options)[:replicas]]
        for auditor in chosen:
            load[auditor] += sum(sizes[node] for node in visible - seen[auditor])
            seen[auditor] |= visible
        result[seg.id] = tuple(sorted(chosen, key=ids.index))
    return result


def assign(
    segments: Sequence[Segment],
    auditors: Sequence[str | HasId],
    per_auditor_cap: float,
    replicas: int = 1,
    *,
    seed: int = 0,
) -> Assignment:
    """Give every segment to ``replicas`` distinct auditors, none over ``per_auditor_cap``.

    ``auditors`` are ids or objects with an ``id``.  ``per_auditor_cap`` is the largest share
    of the trace (measured characters, see the module docstring) one auditor may see, in
    (0, 1]; 1 means no cap.  The same inputs and seed always give the same assignment.
    AssignmentError when no assignment is found; SegmentError for bad arguments.
    """
    if not 0.0 < per_auditor_cap <= 1.0:
        raise SegmentError(f"per_auditor_cap must be in (0, 1], not {per_auditor_cap}")
    if replicas < 1:
        raise SegmentError(f"replicas must be at least 1, not {replicas}")
    ids = _auditor_ids(auditors)
    if not ids:
        raise SegmentError("no auditors given")
    if len({seg.id for seg in segments}) != len(segments):
        raise SegmentError("segment ids must be distinct")
    totals = {seg.trace_chars for seg in segments}
    if len(totals) > 1:
        raise SegmentError("the segments come from different traces (trace_chars differ)")
    chosen: dict[str, tuple[str, ...]] = {}
    if segments:
        budget = math.floor(per_auditor_cap * segments[0].trace_chars + 1e-9)
        _check_possible(segments, ids, budget, replicas)
        sizes = _sizes(segments)
        rng = random.Random(seed)
        order = sorted(segments, key=lambda seg: -seg.chars)
        shuffled = list(ids)
        rng.shuffle(shuffled)
        result: dict[str, tuple[str, ...]] | None = None
        for attempt in range(_RESTARTS + 1):
            if attempt:
                rng.shuffle(order)
                rng.shuffle(shuffled)
            rank = {auditor: index for index, auditor in enumerate(shuffled)}
            result = _greedy(order, ids, sizes, budget, replicas, rank)
            if result is not None:
                break
        if result is None:
            raise AssignmentError(
                f"no assignment of {len(segments)} segments x {replicas} replicas to "
                f"{len(ids)} auditors under a cap of {per_auditor_cap:.1%} "
                f"({budget} characters) was found; raise the cap or add auditors",
                proven=False,
            )
        chosen = result
    return Assignment(
        segments=tuple(segments),
        auditors=ids,
        by_segment={seg.id: chosen[seg.id] for seg in segments},
        per_auditor_cap=per_auditor_cap,
        replicas=replicas,
        seed=seed,
    )


class ExposureReport(BaseModel):
    """How much of a trace auditors have seen, as fractions of its measured characters.

    ``single`` is the largest exposure of one auditor (``single_auditor`` names it);
    ``coalition`` is what the coalition ``coalition_members`` of ``coalition_size`` auditors
    sees together: exact when ``exact``, else a greedy lower bound on the best coalition, which
    sees at most ``coalition_upper`` (equal to ``coalition`` when exact).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_chars: int
    goal_counted: bool
    per_auditor: dict[str, float]
    single: float
    single_auditor: str | None
    coalition_size: int
    coalition: float
    coalition_members: tuple[str, ...]
    coalition_upper: float
    exact: bool


def _weight(nodes: frozenset[str], sizes: Mapping[str, int]) -> int:
    return sum(sizes[node] for node in nodes)


def _best_coalition(
    seen: Mapping[str, frozenset[str]], sizes: Mapping[str, int], size: int
) -> tuple[int, tuple[str, ...], bool]:
    names = list(seen)
    if math.comb(len(names), size) <= EXACT_COALITION_LIMIT:
        best: tuple[int, tuple[str, ...]] = (-1, ())
        for group in combinations(names, size):
            union = frozenset().union(*(seen[name] for name in group))
            value = _weight(union, sizes)
            if value > best[0]:
                best = (value, group)
        return best[0], best[1], True
    chosen: list[str] = []
    covered: frozenset[str] = frozenset()
    for _ in range(size):
        left = [name for name in names if name not in chosen]
        pick = max(left, key=lambda name: _weight(seen[name] - covered, sizes))
        chosen.append(pick)
        covered |= seen[pick]
    return _weight(covered, sizes), tuple(chosen), False


def exposure(hdag: HDAG, assignment: Assignment, coalition_size: int = 2) -> ExposureReport:
    """Measure what single auditors and the best coalition of ``coalition_size`` have seen.

    Fractions are of the measured characters of ``hdag`` (goal counted when the segments show
    it).  A coalition larger than the number of auditors is taken as all of them.
    SegmentError when the assignment shows nodes ``hdag`` does not have, or the size is < 1.
    """
    if coalition_size < 1:
        raise SegmentError(f"coalition_size must be at least 1, not {coalition_size}")
    goal_counted = any(seg.goal is not None for seg in assignment.segments)
    sizes = measured_chars(hdag, include_goal=goal_counted)
    total = max(1, sum(sizes.values()))
    seen: dict[str, frozenset[str]] = {}
    for auditor in assignment.auditors:
        ids = assignment.seen(auditor)
        unknown = ids - sizes.keys()
        if unknown:
            raise SegmentError(
                f"the assignment shows nodes that this H-DAG does not measure: {sorted(unknown)}"
            )
        seen[auditor] = ids
    per_auditor = {name: _weight(ids, sizes) / total for name, ids in seen.items()}
    single_auditor = max(per_auditor, key=lambda name: per_auditor[name], default=None)
    single = per_auditor[single_auditor] if single_auditor is not None else 0.0
    size = min(coalition_size, len(seen))
    members: tuple[str, ...] = ()
    if size == 0:
        value, exact = 0, True
    else:
        value, members, exact = _best_coalition(seen, sizes, size)
    coalition = value / total
    if exact:
        upper = coalition
    else:
        largest = sum(sorted(per_auditor.values(), reverse=True)[:size])
        upper = min(1.0, coalition / (1.0 - 1.0 / math.e), largest)
    return ExposureReport(
        total_chars=total,
        goal_counted=goal_counted,
        per_auditor=per_auditor,
        single=single,
        single_auditor=single_auditor,
        coalition_size=coalition_size,
        coalition=coalition,
        coalition_members=members,
        coalition_upper=upper,
        exact=exact,
    )
