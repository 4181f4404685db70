"""The baseline methods with scripted agents: call counts, answers, failures, records."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from goa.baselines import (
    GoAMethod,
    MajorityVote,
    MixtureOfAgents,
    SelfMoA,
    SingleModel,
    random_goa,
)
from goa.errors import GoaError, ModelRequestError
from goa.eval.method import Method, MethodOutcome
from goa.inference.scripted import Reply, ScriptedBackend
from goa.inference.types import ChatRequest
from goa.pipeline import question_id
from goa.pools import Pool
from goa.result import Totals
from goa.testing.agents import Agent, Hanging, agent, calls, make_goa, scripted_card

QUESTION = "Which option is right? A, B or C?"
FORMAT = "End with the line 'Answer: X', X being one letter."


def answer(letter: str, who: str = "") -> str:
    return f"Option {letter} fits best {who}.\nAnswer: {letter}"


def solve(method: Method, question: str = QUESTION) -> MethodOutcome:
    return asyncio.run(method.solve(question, answer_format=FORMAT))


def prompt_of(request: ChatRequest) -> str:
    return request.messages[-1].content


def check_records(outcome: MethodOutcome, backends: Mapping[str, ScriptedBackend]) -> None:
    """Every request was recorded, tagged with its agent and the question id."""
    assert len(outcome.responses) == calls(backends)
    assert outcome.totals == Totals.of(outcome.responses)
    assert outcome.extra["call_stages"]
    assert len(outcome.extra["call_stages"]) == len(outcome.responses)
    for name, backend in backends.items():
        for request in backend.requests:
            assert request.tags.agent == name
            assert request.tags.question == question_id(QUESTION)


# --- Single model ------------------------------------------------------------------


def test_single_model_one_call() -> None:
    backends = {"a": Agent("a", answer=answer("B"))}
    outcome = solve(SingleModel("a", backends=backends))
    assert isinstance(SingleModel("a", backends=backends), Method)
    assert outcome.method == "single:a"
    assert outcome.answered
    assert outcome.answer == answer("B")
    assert calls(backends) == 1
    record = outcome.responses[0]
    assert (record.agent, record.stage, record.answer) == ("a", "answer", "B")
    assert outcome.totals.calls == 1
    assert outcome.totals.cost_usd == 0.0
    assert FORMAT in prompt_of(backends["a"].requests[0])
    assert QUESTION in prompt_of(backends["a"].requests[0])
    check_records(outcome, backends)


def test_single_model_failure_is_unanswered() -> None:
    backends = {"a": Agent("a", answer=ModelRequestError("down"))}
    outcome = solve(SingleModel("a", backends=backends))
    assert not outcome.answered
    assert outcome.answer is None
    assert "down" in outcome.reason
    assert outcome.totals.failed_calls == 1
    assert outcome.responses[0].error is not None
    assert [i.kind for i in outcome.incidents] == ["error"]


def test_unusable_reply_and_timeout_fail() -> None:
    empty = solve(SingleModel("a", backends={"a": Agent("a", answer="  ")}))
    assert not empty.answered
    assert "empty reply" in empty.reason
    hanging = solve(SingleModel("h", backends={"h": Hanging("h")}, timeout_s=0.01))
    assert not hanging.answered
    assert "timed out" in hanging.reason


def test_unknown_cost_makes_total_cost_none() -> None:
    backends = {
        "a": ScriptedBackend(lambda _: answer("A"), model="a", cost_per_call=None),
        "b": ScriptedBackend(lambda _: answer("A"), model="b", cost_per_call=0.5),
    }
    outcome = solve(MajorityVote(["a", "b"], backends=backends))
    assert outcome.totals.cost_usd is None
    assert outcome.totals.calls == 2
    known = solve(MajorityVote(["b"], backends=backends))
    assert known.totals.cost_usd == 0.5


# --- Mixture-of-Agents -------------------------------------------------------------


def moa_agents() -> dict[str, Agent]:
    return {
        name: Agent(
            name,
            answer=answer(letter, f"by {name}"),
            refine=answer("B", f"refined by {name}"),
            aggregate="Synthesis of the responses.\nAnswer: B",
        )
        for name, letter in (("a", "A"), ("b", "B"), ("c", "C"))
    }


def test_moa_calls_and_answer() -> None:
    backends = moa_agents()
    outcome = solve(MixtureOfAgents(["a", "b", "c"], "a", layers=2, backends=backends))
    assert calls(backends) == 3 + 3 + 1
    assert outcome.answered
    assert outcome.answer == "Synthesis of the responses.\nAnswer: B"
    assert outcome.extra["call_stages"].count("answer") == 3
    assert outcome.extra["call_stages"].count("refine") == 3
    assert outcome.extra["call_stages"][-1] == "aggregate"
    assert [r.stage for r in outcome.responses].count("forward") == 3
    assert outcome.responses[-1].stage == "pool"
    assert outcome.responses[-1].agent == "a"
    assert all(r.round == 2 for r in outcome.responses if r.stage == "forward")
    # Each refiner saw all three first-layer answers; the aggregator all three refinements.
    for name in "abc":
        refine = next(r for r in backends[name].requests if r.tags.stage == "refine")
        for other in "abc":
            assert f"by {other}" in prompt_of(refine)
        assert FORMAT in prompt_of(refine)
    aggregate = next(r for r in backends["a"].requests if r.tags.stage == "aggregate")
    for other in "abc":
        assert f"refined by {other}" in prompt_of(aggregate)
    assert FORMAT in prompt_of(aggregate)
    check_records(outcome, backends)


def test_moa_layers_configurable() -> None:
    one = moa_agents()
    assert solve(MixtureOfAgents(["a", "b"], "c", layers=1, backends=one)).answered
    assert calls(one) == 2 + 1
    assert one["c"].n("aggregate") == 1
    three = moa_agents()
    solve(MixtureOfAgents(["a", "b", "c"], "b", layers=3, backends=three))
    assert calls(three) == 3 * 3 + 1


def test_moa_failed_proposer_dropped() -> None:
    backends = moa_agents()
    backends["b"] = Agent("b", answer=ModelRequestError("b is down"))
    outcome = solve(MixtureOfAgents(["a", "b", "c"], "a", backends=backends))
    assert outcome.answered
    assert calls(backends) == 3 + 2 + 1
    dropped = [i for i in outcome.incidents if i.kind == "dropped"]
    assert [(i.agent, i.stage) for i in dropped] == [("b", "answer")]
    assert outcome.totals.failed_calls == 1


def test_moa_nothing_answered() -> None:
    backends = {n: Agent(n, answer=ModelRequestError(f"{n} down")) for n in "ab"}
    outcome = solve(MixtureOfAgents(["a", "b"], "a", backends=backends))
    assert not outcome.answered
    assert outcome.answer is None
    assert "no proposer could answer" in outcome.reason
    assert calls(backends) == 2


def test_moa_aggregator_failure_falls_back() -> None:
    backends = moa_agents()
    backends["c"] = Agent(
        "c", answer=answer("C"), refine=answer("C"), aggregate=ModelRequestError("x")
    )
    outcome = solve(MixtureOfAgents(["a", "b"], "c", backends=backends))
    assert outcome.answered
    assert outcome.answer == answer("B", "refined by a")
    assert [i.kind for i in outcome.incidents][-1] == "fallback"


def test_moa_rejects_bad_options() -> None:
    with pytest.raises(GoaError):
        MixtureOfAgents(["a", "a"], "b")
    with pytest.raises(GoaError):
        MixtureOfAgents([], "b")
    with pytest.raises(GoaError):
        MixtureOfAgents(["a"], "b", layers=0)


# --- Self-MoA ----------------------------------------------------------------------


def test_self_moa_samples_with_distinct_seeds() -> None:
    def sample(request: ChatRequest) -> str:
        return answer("A", f"sample {request.seed}")

    backends = {"m": Agent("m", answer=sample, aggregate="Merged.\nAnswer: A")}
    outcome = solve(SelfMoA("m", samples=4, backends=backends))
    assert calls(backends) == 4 + 1
    requests = backends["m"].requests
    samples = [r for r in requests if r.tags.stage == "answer"]
    assert sorted(r.seed for r in samples if r.seed is not None) == [0, 1, 2, 3]
    assert all(r.temperature == 0.7 for r in samples)
    aggregate = next(r for r in requests if r.tags.stage == "aggregate")
    assert aggregate.temperature == 0.0
    for seed in range(4):
        assert f"sample {seed}" in prompt_of(aggregate)
    assert outcome.answered
    assert outcome.answer == "Merged.\nAnswer: A"
    check_records(outcome, backends)


def test_self_moa_other_aggregator_and_failed_sample() -> None:
    replies: list[Reply] = [answer("A"), ModelRequestError("oops"), answer("A")]
    backends = {"m": Agent("m", answer=replies), "z": Agent("z", aggregate="Z.\nAnswer: A")}
    outcome = solve(SelfMoA("m", samples=3, aggregator="z", backends=backends))
    assert calls(backends) == 3 + 1
    assert backends["z"].n("aggregate") == 1
    assert outcome.answered
    assert outcome.extra["final_agent"] == "z"
    assert [i.kind for i in outcome.incidents] == ["error", "dropped"]
    assert len(outcome.extra["usable_seeds"]) == 2


# --- Majority vote -----------------------------------------------------------------


def test_majority_vote_plurality() -> None:
    backends = {
        "a": Agent("a", answer=answer("A", "by a")),
        "b": Agent("b", answer=answer("b", "by b")),
        "c": Agent("c", answer="I think (B).\nAnswer: **B**"),
        "d": Agent("d", answer="No idea at all"),
    }
    outcome = solve(MajorityVote(["a", "b", "c", "d"], backends=backends))
    assert calls(backends) == 4
    assert outcome.answered
    assert outcome.answer == answer("b", "by b")
    assert outcome.extra["votes"] == {"a": 1, "b": 2}
    assert outcome.extra["final_agent"] == "b"
    assert outcome.extra["ballots"]["d"] is None
    check_records(outcome, backends)


def test_majority_vote_tie_goes_to_earliest_agent() -> None:
    def make() -> dict[str, Agent]:
        return {
            "a": Agent("a", answer=answer("A")),
            "b": Agent("b", answer=answer("B")),
            "c": Agent("c", answer=answer("B")),
            "d": Agent("d", answer=answer("A")),
        }

    first = solve(MajorityVote(["a", "b", "c", "d"], backends=make()))
    assert first.extra["winner"] == "a"
    assert first.extra["final_agent"] == "a"
    second = solve(MajorityVote(["b", "a", "c", "d"], backends=make()))
    assert second.extra["winner"] == "b"
    assert second.extra["final_agent"] == "b"


def test_majority_vote_failed_agent_dropped_and_no_votes() -> None:
    backends = {"a": Agent("a", answer=ModelRequestError("down")), "b": Agent("b", answer="hmm")}
    outcome = solve(MajorityVote(["a", "b"], backends=backends))
    assert not outcome.answered
    assert outcome.reason == "no agent gave an extractable final answer"
    assert [(i.kind, i.agent) for i in outcome.incidents] == [("error", "a"), ("dropped", "a")]
    nobody = {"a": Agent("a", answer=ModelRequestError("down"))}
    assert "no agent could answer" in solve(MajorityVote(["a"], backends=nobody)).reason


# --- GoA ---------------------------------------------------------------------------


def test_goa_method_passes_answer_format_without_mutating() -> None:
    backends = {n: agent(n, answer("A")) for n in "ab"}
    graph = make_goa(backends, selector="all", early_exit=True)
    before = graph.answer_format
    method = GoAMethod(graph)
    outcome = solve(method)
    assert outcome.method == "goa"
    assert outcome.answered
    assert outcome.answer == answer("A")
    assert graph.answer_format == before
    for backend in backends.values():
        assert FORMAT in prompt_of(backend.requests[0])
    assert len(outcome.responses) == calls(backends) == 2


def test_goa_method_concurrent_formats() -> None:
    backends = {n: agent(n, lambda r: answer("A", prompt_of(r)[-12:])) for n in "ab"}
    method = GoAMethod(make_goa(backends, selector="all", early_exit=True))

    async def both() -> list[MethodOutcome]:
        return list(
            await asyncio.gather(
                method.solve(QUESTION, answer_format="FORMAT-ONE"),
                method.solve(QUESTION + " (2)", answer_format="FORMAT-TWO"),
            )
        )

    one, two = asyncio.run(both())
    assert "FORMAT-ONE" in (one.answer or "")
    assert "FORMAT-TWO" in (two.answer or "")


def test_random_goa_draws_k_agents_per_question() -> None:
    names = "abcde"
    backends = {n: agent(n, answer("A")) for n in names}
    pool = Pool("test", tuple(scripted_card(n) for n in names))
    method = random_goa(pool, 2, seed=7, backends=backends, early_exit=True)
    assert method.name == "goa-random"
    outcome = solve(method)
    assert outcome.answered
    assert len(outcome.extra["selected"]) == 2
    assert calls(backends) == 2
    again = solve(random_goa(pool, 2, seed=7, backends=backends, early_exit=True))
    assert again.extra["selected"] == outcome.extra["selected"]
    drawn = {tuple(c.id for c in method.draw(f"question {i}").cards) for i in range(20)}
    assert len(drawn) > 1
    with pytest.raises(GoaError):
        random_goa(pool, 6)
