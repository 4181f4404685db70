"""DAAN's attribution method (``cig``): judge only the causal ancestors of the failure, each
with only the steps it draws on.

The design (ours: DAAN's algorithm is not public), and why:

1. **Failure anchor.** The last step that says something: trailing steps that are only
   ``TERMINATE`` (or empty) close a conversation and carry no content of their own.
2. **Candidates.** The anchor and its causal ancestors in the causal interaction graph
   (:func:`trust.cig.build_cig`, deterministic rules; an LLM edge linker can be passed in): a
   step with no path to the failure cannot have caused it. Tool outputs (``role == "tool"``)
   are not candidates: they report the execution of the step before them, and an error they
   show is that step's error.
3. **Questions, earliest candidate first.** The decisive error is the *earliest* mistake that
   led to the failure, so candidates are asked about in time order, and the first one the
   judge calls decisive is the answer (its agent is the responsible agent).
4. **What the judge sees.** For each candidate: the task (and the correct answer, in the "with
   ground truth" setting), the step, and only its *premises*: its parents in the graph, the
   steps it answers, quotes or takes values from
   (:func:`~trust.attribution_prompts.premise_step_prompt`). Step-by-step shows the whole log
   up to the step in question at every call; this is where the tokens are saved, and also what
   TRUST's segmentation does for audits (no judge needs the whole trace).
5. **No step called decisive.** The earliest candidate, flagged as a fallback: with no
   evidence, the root of the causal chain that reached the failure is the best guess for the
   earliest mistake (on Who&When the labelled step is the first substantive one far more often
   than the last).

At most ``max_calls`` questions are asked (retries included in the judge's own bound).
"""

from __future__ import annotations

import random

from trust.attribution import (
    METHODS,
    Attribution,
    AttributionMethod,
    Judge,
    Spend,
    ask_decisive,
    check_attributable,
)
from trust.attribution_prompts import premise_step_prompt
from trust.cig import CIG, build_cig
from trust.interaction_log import InteractionLog

CLOSING = {"terminate", ""}
"""Contents (lower case, without trailing punctuation) of steps that only close a log."""

DEFAULT_MAX_CALLS = 32


def failure_anchor(log: InteractionLog) -> int:
    """The index of the last step with content of its own (see the module docs)."""
    for index in range(len(log.steps) - 1, -1, -1):
        if log.steps[index].content.strip().rstrip(".!").lower() not in CLOSING:
            return index
    return len(log.steps) - 1


def candidates(log: InteractionLog, graph: CIG) -> list[int]:
    """The steps that may have caused the failure, earliest first (see the module docs)."""
    anchor = failure_anchor(log)
    found = sorted(i for i in {anchor, *graph.ancestors(anchor)} if log.steps[i].role != "tool")
    return found or [anchor]


async def cig_attribution(
    log: InteractionLog,
    judge: Judge,
    /,
    *,
    with_ground_truth: bool,
    seed: int | random.Random | None = None,
    graph: CIG | None = None,
    max_calls: int = DEFAULT_MAX_CALLS,
) -> Attribution:
    """Attribute ``log``'s failure along its causal interaction graph (module docs).
    ``graph`` is built with the deterministic rules when not given; ``seed`` is unused."""
    check_attributable(log)
    graph = graph if graph is not None else build_cig(log)
    spend = Spend()
    chain = candidates(log, graph)
    for index in chain:
        if spend.calls >= max_calls:
            spend.problems.append(f"stopped after {max_calls} calls")
            break
        prompt = premise_step_prompt(
            log,
            index,
            graph.parents(index),
            with_ground_truth=with_ground_truth,
            max_step_chars=judge.max_step_chars,
        )
        answer = await ask_decisive(judge, prompt, spend, log.id, "attribution-cig")
        if answer is not None and answer[0]:
            return spend.attribution("cig", log.steps[index].agent, index, answer[1])
    root = chain[0]
    reason = "no causal ancestor of the failure was judged decisive; the earliest one by default"
    return spend.attribution("cig", log.steps[root].agent, root, reason, fallback=True)


ALL_METHODS: dict[str, AttributionMethod] = {"cig": cig_attribution, **METHODS}
"""Every attribution method by name: ours (``cig``) first, then the Who&When baselines of
:data:`trust.attribution.METHODS` (what ``trust attribute --method`` and the benchmark offer)."""


__all__ = [
    "ALL_METHODS",
    "CLOSING",
    "DEFAULT_MAX_CALLS",
    "candidates",
    "cig_attribution",
    "failure_anchor",
]
