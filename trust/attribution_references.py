"""Judge-free reference points for the attribution evaluation: what a log's shape alone gives.

Neither asks a model, so both cost zero tokens. They are not methods one would deploy; they
measure how much a judge adds over the position of a step in the log, which on Who&When is a
strong signal (the labelled decisive step is often the first substantive one).

``graph_root`` (:func:`graph_root_attribution`)
    ``cig`` without its judge (an ablation of :mod:`trust.attribution_cig`): the earliest of
    the failure's causal candidates (:func:`trust.attribution_cig.candidates`), which is the
    answer ``cig`` falls back on when its judge calls no candidate decisive.
``first_step`` (:func:`first_step_attribution`)
    The first step that is not a tool's output, and its agent: no graph at all.

:data:`REFERENCE_METHODS` holds both, with the signature of
:class:`~trust.attribution.AttributionMethod`; :data:`EVERY_METHOD` adds them to ``cig`` and the
Who&When baselines (what ``trust attribute --method`` and ``benchmarks.daan_whowhen`` offer),
and :data:`JUDGE_FREE` names the methods that need no judge (these two and ``random``).
"""

from __future__ import annotations

import random

from trust.attribution import Attribution, AttributionMethod, Judge, check_attributable
from trust.attribution_cig import ALL_METHODS, candidates
from trust.cig import CIG, build_cig
from trust.interaction_log import InteractionLog


async def graph_root_attribution(
    log: InteractionLog,
    judge: Judge | None = None,
    /,
    *,
    with_ground_truth: bool,
    seed: int | random.Random | None = None,
    graph: CIG | None = None,
) -> Attribution:
    """The earliest causal candidate of the failure (``graph`` built by the deterministic
    rules when not given). The judge, ``with_ground_truth`` and ``seed`` are not used."""
    check_attributable(log)
    root = candidates(log, graph if graph is not None else build_cig(log))[0]
    reason = "the earliest causal ancestor of the failure (cig without a judge)"
    return Attribution(method="graph_root", agent=log.steps[root].agent, step=root, reason=reason)


async def first_step_attribution(
    log: InteractionLog,
    judge: Judge | None = None,
    /,
    *,
    with_ground_truth: bool,
    seed: int | random.Random | None = None,
) -> Attribution:
    """The first step that is not a tool's output (the first step when all are). The judge,
    ``with_ground_truth`` and ``seed`` are not used."""
    check_attributable(log)
    first = next((i for i, step in enumerate(log.steps) if step.role != "tool"), 0)
    reason = "the first step that is not a tool's output"
    return Attribution(method="first_step", agent=log.steps[first].agent, step=first, reason=reason)


REFERENCE_METHODS: dict[str, AttributionMethod] = {
    "graph_root": graph_root_attribution,
    "first_step": first_step_attribution,
}
"""The judge-free reference points by name (the benchmark runs them after the baselines)."""

EVERY_METHOD: dict[str, AttributionMethod] = {**ALL_METHODS, **REFERENCE_METHODS}
"""Ours (``cig``), the Who&When baselines, then the reference points, by name."""

JUDGE_FREE: frozenset[str] = frozenset({"random", *REFERENCE_METHODS})
"""The methods that ask no model."""


__all__ = [
    "EVERY_METHOD",
    "JUDGE_FREE",
    "REFERENCE_METHODS",
    "first_step_attribution",
    "graph_root_attribution",
]
