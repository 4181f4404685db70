"""The ``goa`` extension field: the graph and every agent's part in the answer.

OpenAI clients keep unknown fields (``response.model_extra["goa"]`` with the
official client), so a GoA response carries, beside the answer, what led to it:
the selected agents, the score matrix, the ranking and relevance, the graph in
networkx node-link form, each agent's latest answer and its tokens, cost and
latency, and the run's own wall time (``run_s``, measured in the server around
the pipeline call; the client's latency minus ``run_s`` is the server's overhead).
"""

from __future__ import annotations

from typing import Any

from goa.result import ANSWER_STAGES, CallRecord, Result


def final_finish_reason(result: Result) -> str:
    """``length`` when the call that gave the final answer hit its token limit, else ``stop``."""
    for record in reversed(result.responses):
        if record.agent == result.final_agent and record.stage in ANSWER_STAGES and record.ok:
            return "length" if record.finish_reason == "length" else "stop"
    return "stop"


def _latest_answers(responses: list[CallRecord]) -> dict[str, CallRecord]:
    latest: dict[str, CallRecord] = {}
    for record in responses:
        if record.stage in ANSWER_STAGES and record.ok and record.text is not None:
            latest[record.agent] = record
    return latest


def goa_extension(result: Result, *, pool: str, run_s: float) -> dict[str, Any]:
    """The ``goa`` field of a completion (and of a stream's last choice chunk)."""
    latest = _latest_answers(result.responses)
    removed = {r.agent: f"{r.stage}: {r.reason}" for r in result.removed}
    agents: dict[str, Any] = {}
    for agent, totals in result.agents.items():
        record = latest.get(agent)
        agents[agent] = {
            "answer": record.text if record is not None else None,
            "final_answer": record.answer if record is not None else None,
            "stage": record.stage if record is not None else None,
            "relevance": result.relevance.get(agent),
            "removed": removed.get(agent),
            "calls": totals.calls,
            "failed_calls": totals.failed_calls,
            "prompt_tokens": totals.prompt_tokens,
            "completion_tokens": totals.completion_tokens,
            "cost_usd": totals.cost_usd,
            "latency_s": round(totals.latency_s, 6),
        }
    totals = result.totals
    return {
        "pool": pool,
        "question_id": result.question_id,
        "answered": result.answered,
        "reason": result.reason,
        "final_agent": result.final_agent,
        "final_answer": result.final_answer,
        "selected": [s.model_dump() for s in result.selected],
        "ranking": list(result.ranking),
        "relevance": dict(result.relevance),
        "scores": result.scores,
        "graph": result.graph,
        "agents": agents,
        "removed": [r.model_dump() for r in result.removed],
        "incidents": [i.model_dump() for i in result.incidents],
        "early_exit": result.early_exit,
        "calls": totals.calls,
        "failed_calls": totals.failed_calls,
        "cached_calls": sum(1 for r in result.responses if r.cached),
        "cost_usd": totals.cost_usd,
        "calls_latency_s": round(totals.latency_s, 6),
        "wall_s": round(result.wall_s, 6),
        "run_s": round(run_s, 6),
    }
