"""The SIMULATED agent pool on real MMLU questions (every figure here is simulated)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence

import pytest

from goa import prompts
from goa.errors import GoaError
from goa.eval.datasets import Sample, load_dataset
from goa.eval.formatting import question_text
from goa.inference.types import ChatRequest, Tags
from goa.pipeline import GraphOfAgents
from goa.testing.simulated import (
    SimAgentSpec,
    SimulatedAgent,
    answer_key,
    default_specs,
    simulated_pool,
)


def mmlu(limit: int, *, categories: Sequence[str] = (), seed: int = 7) -> list[Sample]:
    try:
        return load_dataset("mmlu", limit=limit, categories=categories, seed=seed)
    except GoaError as exc:  # the shared data folder is missing
        pytest.skip(f"MMLU samples unavailable: {exc}")


def ask(agent: SimulatedAgent, prompt: str, stage: str) -> str:
    request = ChatRequest.of(prompt, tags=Tags(agent=agent.spec.id, stage=stage))
    return asyncio.run(agent.complete(request)).text


def letter(text: str) -> str:
    return text.rsplit("Answer: ", 1)[-1].strip()


def test_same_seed_same_answers_other_seed_differs() -> None:
    samples = mmlu(60)
    runs = []
    for seed in (0, 0, 1):
        _, agents = simulated_pool(samples, seed=seed)
        agent = agents["sim-generalist"]
        runs.append([letter(ask(agent, question_text(s), "answer")) for s in samples])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("agent_id", ["sim-stem-expert", "sim-weak-generalist"])
def test_empirical_accuracy_matches_the_spec(agent_id: str) -> None:
    samples = mmlu(300)
    _, agents = simulated_pool(samples, seed=3)
    agent = agents[agent_id]
    key = answer_key(samples)
    expected = [agent.spec.accuracy_for(key[s.question]) for s in samples]
    right = [letter(ask(agent, question_text(s), "answer")) == s.gold for s in samples]
    mean = sum(expected) / len(expected)
    observed = sum(right) / len(right)
    se = math.sqrt(mean * (1 - mean) / len(samples))
    assert abs(observed - mean) <= 3 * se, (observed, mean, se)


def test_wrong_answers_are_valid_other_letters() -> None:
    samples = mmlu(100)
    _, agents = simulated_pool(samples)
    for sample in samples:
        got = letter(ask(agents["sim-weak-generalist"], question_text(sample), "answer"))
        assert got in sample.letters


def test_judge_scores_sum_to_one_and_favour_its_belief() -> None:
    samples = mmlu(1)
    spec = SimAgentSpec("judge", default_accuracy=1.0, judge_noise=0.0)
    judge = SimulatedAgent(spec, answer_key(samples))
    sample = samples[0]
    wrong = next(x for x in sample.letters if x != sample.gold)
    answers = "\n\n".join(
        prompts.fill(prompts.GOA_PEER_ENTRY, number=i + 1, text=f"<<<\nwhy\nAnswer: {x}\n>>>")
        for i, x in enumerate([wrong, sample.gold, wrong])
    )
    prompt = prompts.fill(
        prompts.GOA_SCORE_PROMPT,
        question=question_text(sample),
        answers=answers,
        count=3,
        example="0.5, 0.3, 0.2",
    )
    scores = json.loads(ask(judge, prompt, "score"))["scores"]
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert scores[1] > scores[0] == pytest.approx(scores[2])


def refine_prompt(sample: Sample, own: str, peers: Sequence[tuple[float, str]]) -> str:
    labelled = "\n\n".join(
        prompts.fill(prompts.GOA_LABELLED_PEER, relevance=r, text=f"peer\nAnswer: {x}")
        for r, x in peers
    )
    return prompts.fill(
        prompts.GOA_FORWARD_PROMPT,
        question=question_text(sample),
        own=f"mine\nAnswer: {own}",
        peers=labelled,
        answer_format="",
    )


def test_refinement_rules() -> None:
    samples = mmlu(1)
    sample, key = samples[0], answer_key(samples)
    peers = [(0.5, "C"), (0.3, "D"), (0.1, "D")]
    prompt = refine_prompt(sample, "A", peers)

    def refined(rule: str, accuracy: float) -> str:
        spec = SimAgentSpec("r", default_accuracy=accuracy, refine_rule=rule)  # type: ignore[arg-type]
        return letter(ask(SimulatedAgent(spec, key), prompt, "forward"))

    assert refined("keep", 0.0) == "A"
    assert refined("majority", 1.0) == "C"  # C 0.5 > D 0.4 > own A (mean 0.3)
    assert refined("confidence", 1.0) == "A"  # sure of itself: keeps
    assert refined("confidence", 0.0) == "C"  # unsure: the peers' weighted majority


def test_llm_selector_picks_the_stem_expert() -> None:
    """Simulated: the meta model (select_skill 0.9) picks the STEM expert for STEM."""
    samples = mmlu(60, categories=["stem"])
    pool, agents = simulated_pool(samples)
    goa = GraphOfAgents(pool, backends=agents, selector="llm")
    picked = [goa.run(question_text(s)).selected for s in samples]
    share = sum("sim-stem-expert" in [p.agent for p in row] for row in picked) / len(samples)
    assert share > 0.7, share


def test_max_pooling_beats_the_weak_generalist() -> None:
    """Simulated: GoA (max pooling) over the pool beats its weakest member alone."""
    samples = mmlu(150)
    pool, agents = simulated_pool(samples)
    goa = GraphOfAgents(pool, backends=agents, pooling="max")
    goa_right = sum(goa.run(question_text(s)).final_answer == s.gold for s in samples)
    weak = agents["sim-weak-generalist"]
    alone = sum(letter(ask(weak, question_text(s), "answer")) == s.gold for s in samples)
    assert goa_right > alone + 0.1 * len(samples), (goa_right, alone)


def test_faults_are_recorded_and_the_run_goes_on() -> None:
    samples = mmlu(20)
    specs = [
        SimAgentSpec(
            s.id,
            s.accuracy,
            default_accuracy=s.default_accuracy,
            domains=s.domains,
            parameters_b=s.parameters_b,
            fault_rate=0.5 if "expert" in s.id else 0.0,
        )
        for s in default_specs()
    ]
    pool, agents = simulated_pool(samples, specs=specs)
    goa = GraphOfAgents(pool, backends=agents)
    results = [goa.run(question_text(s)) for s in samples]
    assert sum(a.faults for a in agents.values()) > 0
    errors = [i for r in results for i in r.incidents if i.kind in ("error", "dropped", "retry")]
    assert errors
    assert sum(r.answered for r in results) >= 0.8 * len(samples)


def test_cards_reflect_the_specs() -> None:
    pool, _ = simulated_pool(mmlu(5))
    card = next(c for c in pool.cards if c.id == "sim-stem-expert")
    assert card.accuracy("stem") == 0.85
    assert card.backend == "scripted"
    assert max(pool.cards, key=lambda c: c.parameters_b or 0.0).id == "sim-generalist"


def test_latency_is_simulated_by_sleeping() -> None:
    samples = mmlu(1)
    agent = SimulatedAgent(SimAgentSpec("slow", latency_s=0.05), answer_key(samples))
    request = ChatRequest.of(question_text(samples[0]), tags=Tags(stage="answer"))
    completion = asyncio.run(agent.complete(request))
    assert completion.latency_s == 0.05
