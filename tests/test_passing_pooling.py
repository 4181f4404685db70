"""Forward and reverse message passing, pooling, and final-answer extraction."""

from __future__ import annotations

import asyncio

import pytest

from goa.parsing import all_agree, extract_answer, normalise_answer, unusable
from goa.passing import forward_pass, reverse_pass
from goa.pipeline import Run
from goa.pooling import max_pool, mean_messages, mean_pool
from goa.testing.agents import Agent, agent, make_goa
from tests.test_pipeline import QUESTION, answer

RANKING = ["b", "a", "c"]
RELEVANCE = {"b": 0.5, "a": 0.3, "c": 0.2}
CURRENT = {"b": answer("B"), "a": answer("A"), "c": answer("C")}


def setup() -> tuple[Run, dict[str, Agent]]:
    backends = {
        name: agent(
            name,
            CURRENT[name],
            forward=f"forward {name}\nAnswer: {name.upper()}",
            reverse=f"reverse {name}\nAnswer: {name.upper()}",
            pool="pooled\nAnswer: B",
        )
        for name in RANKING
    }
    return Run(make_goa(backends), QUESTION, None), backends


def last_prompt(backend: Agent) -> str:
    return backend.requests[-1].messages[-1].content


def test_forward_pass_shows_each_agent_the_more_relevant_answers() -> None:
    run, backends = setup()
    replies = asyncio.run(forward_pass(run, RANKING, CURRENT, RELEVANCE, round_=1))
    assert sorted(replies) == ["a", "c"]
    assert not backends["b"].requests  # the top agent hears from no one
    prompt_a = last_prompt(backends["a"])
    assert "Expert with relevance 0.50" in prompt_a
    assert "Option B" in prompt_a
    assert "Option C" not in prompt_a
    assert "Your earlier answer" in prompt_a
    assert "Option A" in prompt_a
    prompt_c = last_prompt(backends["c"])
    assert prompt_c.index("relevance 0.50") < prompt_c.index("relevance 0.30")
    assert backends["c"].requests[-1].tags.stage == "forward"
    assert all(r.round == 1 for r in run.records)


def test_reverse_pass_shows_each_target_the_less_relevant_answers() -> None:
    run, backends = setup()
    forwarded = {name: f"forward {name}" for name in RANKING}
    replies = asyncio.run(reverse_pass(run, RANKING, forwarded, RELEVANCE))
    assert sorted(replies) == ["a", "b"]  # default: all but the least relevant
    prompt_b = last_prompt(backends["b"])
    assert "forward a" in prompt_b
    assert "forward c" in prompt_b
    prompt_a = last_prompt(backends["a"])
    assert "forward c" in prompt_a
    assert "forward b\n" not in prompt_a.split("Refined answers")[1]
    assert not backends["c"].requests


def test_reverse_pass_of_only_the_top_agent() -> None:
    run, backends = setup()
    replies = asyncio.run(reverse_pass(run, RANKING, CURRENT, RELEVANCE, targets=["b"]))
    assert list(replies) == ["b"]
    assert replies["b"].text == "reverse b\nAnswer: B"
    assert sum(len(b.requests) for b in backends.values()) == 1


def test_a_lone_target_at_the_bottom_makes_no_call() -> None:
    run, _backends = setup()
    assert asyncio.run(reverse_pass(run, RANKING, CURRENT, RELEVANCE, targets=["c"])) == {}
    assert asyncio.run(forward_pass(run, ["b"], CURRENT, RELEVANCE)) == {}
    assert not run.records


def test_max_pooling_takes_the_top_agent() -> None:
    assert max_pool(RANKING, CURRENT) == ("b", answer("B"))


def test_mean_pooling_asks_the_meta_model_with_weights() -> None:
    run, backends = setup()
    messages = mean_messages(run, RANKING, CURRENT, RELEVANCE)
    prompt = messages[-1].content
    assert prompt.index("Option B") < prompt.index("Option A") < prompt.index("Option C")
    assert "Expert with relevance 0.20" in prompt
    assert run.answer_format in prompt
    reply = asyncio.run(mean_pool(run, "c", RANKING, CURRENT, RELEVANCE))
    assert reply.ok
    assert reply.answer == "B"
    assert backends["c"].requests[-1].tags.stage == "pool"


# --- Final answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Because.\nAnswer: B", "B"),
        ("**Answer:** (C)", "(C)"),
        ("Final answer: 42.", "42"),
        ("The final answer is: Paris", "Paris"),
        ("Answer: A\nOn reflection...\nAnswer: D", "D"),
        ("answer\uff1a B", "B"),  # a full-width colon
        ("No marker here, just B.", None),
        ("Answer:   ", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_agreement_compares_normalised_extracted_answers() -> None:
    assert all_agree(["B", "(b)", "**B**."])
    assert not all_agree(["B", "C"])
    assert not all_agree(["B", None])
    assert not all_agree(["B"])
    assert normalise_answer("  The  Answer ") == "the answer"


def test_unusable_replies() -> None:
    assert unusable("") == "empty reply"
    assert unusable(" \n") == "empty reply"
    assert unusable("?!") == "reply has no letters or digits"
    assert unusable("B") is None
