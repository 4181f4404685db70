"""Node sampling: the llm, embedding, profile and all selectors, adaptive k, budget."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Sequence

import pytest

from goa.cards import ModelCard
from goa.errors import GoaError, ModelRequestError
from goa.parsing import parse_selection
from goa.pipeline import GraphOfAgents, Run
from goa.pools import Pool
from goa.select import (
    Pick,
    Sampling,
    SelectorName,
    estimate_cost,
    k_for_difficulty,
    profile_ranking,
    sample_nodes,
    within_budget,
)
from goa.testing.agents import Agent, StageReply, agent
from goa.testing.agents import scripted_card as card
from tests.test_pipeline import QUESTION, answer

NAMES = ("a", "b", "c", "d", "m")


def setup(
    select: StageReply = '{"selected": [1, 2, 3]}',
    *,
    cards: Sequence[ModelCard] | None = None,
    difficulty: StageReply = '{"difficulty": 3}',
    max_retries: int = 2,
) -> tuple[Run, Agent, list[ModelCard]]:
    """A run over a pool of five cards; m (the largest) is the meta model."""
    pool_cards = list(cards) if cards is not None else [card(n, size=1.0) for n in NAMES[:4]]
    pool_cards.append(card("m", size=9.0))
    meta = agent("m", answer("A"), select=select, difficulty=difficulty)
    backends = {c.id: agent(c.id, answer("A")) for c in pool_cards if c.id != "m"}
    goa = GraphOfAgents(
        Pool("t", tuple(pool_cards)), backends={**backends, "m": meta}, max_retries=max_retries
    )
    return Run(goa, QUESTION, None), meta, pool_cards


def sample(
    run: Run,
    cards: Sequence[ModelCard],
    *,
    k: int = 3,
    selector: SelectorName = "llm",
    **options: object,
) -> Sampling:
    return asyncio.run(
        sample_nodes(run, cards, k=k, selector=selector, meta="m", **options)  # type: ignore[arg-type]
    )


def ids(picks: Sequence[Pick]) -> list[str]:
    return [pick.card.id for pick in picks]


# --- llm selector ------------------------------------------------------------------


def test_meta_model_picks_in_order_with_reasons() -> None:
    run, meta, cards = setup('{"selected": [4, 2, 1], "reasons": ["maths", "code", "broad"]}')
    sampling = sample(run, cards)
    assert ids(sampling.picks) == ["d", "b", "a"]
    assert [p.reason for p in sampling.picks] == [
        "meta model: maths",
        "meta model: code",
        "meta model: broad",
    ]
    assert len(meta.requests) == 1
    assert not run.incidents


def test_the_selector_reads_profiles_by_number_never_names() -> None:
    named = [card(n, size=1.0) for n in ("alpha-model", "beta-model", "gamma-model")]
    run, meta, cards = setup(cards=named)
    sample(run, cards)
    prompt = meta.requests[0].messages[-1].content
    assert "Candidate 1:" in prompt
    assert "Candidate 4:" in prompt
    for pool_card in cards:
        assert pool_card.profile() in prompt
    for name in ("alpha-model", "beta-model", "gamma-model"):
        assert name not in prompt
    assert meta.requests[0].tags.stage == "select"


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("I would pick the first three.", "no JSON object"),
        ('{"selected": [1, 2]}', "exactly 3 different candidates, not 2"),
        ('{"selected": [1, 2, 9]}', "9 is not a candidate number"),
        ('{"selected": [1, 1, 2]}', "listed more than once"),
        ('{"selected": [0, 1, 2]}', "0 is not a candidate number"),
        ('{"selected": [1, 2, 3, 4]}', "not 4"),
    ],
)
def test_bad_selections_are_retried_with_feedback(bad: str, problem: str) -> None:
    run, meta, cards = setup([bad, '{"selected": [3, 2, 1]}'])
    sampling = sample(run, cards)
    assert ids(sampling.picks) == ["c", "b", "a"]
    assert len(meta.requests) == 2
    retry = meta.requests[1].messages
    assert retry[-2].role == "assistant"
    assert retry[-2].content == bad
    assert problem in retry[-1].content
    assert [i.kind for i in run.incidents] == ["retry"]
    assert problem in run.incidents[0].message


def test_a_partial_selection_is_filled_from_the_profile_ranking() -> None:
    sized = [card("a", size=1.0), card("b", size=4.0), card("c", size=2.0), card("d", size=3.0)]
    run, meta, cards = setup(["[3]", "[3, 3]", "nothing"], cards=sized)
    sampling = sample(run, cards)
    # c from the meta model, then the largest others by size: m (the meta), b.
    assert ids(sampling.picks) == ["c", "m", "b"]
    assert len(meta.requests) == 3
    kinds = [i.kind for i in run.incidents]
    assert kinds == ["retry", "retry", "fallback"]
    assert "1 usable pick(s) of 3" in run.incidents[-1].message
    assert sampling.picks[1].reason.startswith("profile:")


def test_unusable_selections_fall_back_on_the_profile_ranking() -> None:
    run, meta, cards = setup("garbage", max_retries=1)
    sampling = sample(run, cards)
    assert ids(sampling.picks) == ["m", "a", "b"]
    assert len(meta.requests) == 2
    assert run.incidents[-1].kind == "fallback"
    assert "no usable pick" in run.incidents[-1].message


def test_a_failing_meta_model_falls_back_without_retrying() -> None:
    run, meta, cards = setup(ModelRequestError("meta is down"))
    sampling = sample(run, cards)
    assert len(sampling.picks) == 3
    assert len(meta.requests) == 1
    assert [i.kind for i in run.incidents] == ["error", "fallback"]


def test_selection_parsing_is_forgiving_about_form() -> None:
    fenced = 'Here you go:\n```json\n{"selected": ["2", "Candidate 3", 1]}\n```'
    assert parse_selection(fenced, candidates=4, k=3).value is not None
    objects = '[{"index": 2, "reason": "r2"}, {"index": 4, "reason": "r4"}]'
    parsed = parse_selection(objects, candidates=4, k=2)
    assert parsed.ok
    assert parsed.value is not None
    assert parsed.value.indices == (1, 3)
    assert parsed.value.reasons == ("r2", "r4")
    single_quotes = "{'selected': [1, 2]}"
    assert parse_selection(single_quotes, candidates=4, k=2).ok


def test_k_is_capped_by_the_pool_size() -> None:
    run, _, cards = setup('{"selected": [1, 2, 3, 4, 5]}')
    sampling = sample(run, cards, k=10)
    assert sampling.k == 5
    assert len(sampling.picks) == 5


# --- Other selectors ---------------------------------------------------------------


def test_all_selector_takes_every_card_without_calls() -> None:
    run, meta, cards = setup()
    sampling = sample(run, cards, k=2, selector="all")
    assert ids(sampling.picks) == ["a", "b", "c", "d", "m"]
    assert not meta.requests


def test_profile_selector_ranks_by_measured_accuracy_then_size() -> None:
    cards = [
        card("a", size=1.0, accuracy={"mmlu": 0.4, "gsm8k": 0.2}),
        card("b", size=5.0),
        card("c", size=0.5, accuracy={"mmlu": 0.6}),
        card("d", size=2.0),
    ]
    by_mmlu = profile_ranking(cards, "mmlu")
    assert ids(by_mmlu) == ["c", "a", "b", "d"]
    assert by_mmlu[0].reason == "profile: measured accuracy 0.60 on mmlu"
    assert ids(profile_ranking(cards, "gsm8k")) == ["a", "b", "d", "c"]
    # Without a domain, the mean of each card's measurements counts (a: 0.3).
    assert ids(profile_ranking(cards)) == ["c", "a", "b", "d"]

    run, meta, _ = setup(cards=cards)
    sampling = sample(run, cards, selector="profile", domain="gsm8k")
    assert ids(sampling.picks) == ["a", "b", "d"]
    assert not meta.requests


def _fake_embedding(
    monkeypatch: pytest.MonkeyPatch, vectors: dict[str, list[float]]
) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def embed(texts: Sequence[str], kind: str = "query") -> list[list[float]]:
        seen.extend((kind, text) for text in texts)
        found = [[v for key, v in vectors.items() if key in text] for text in texts]
        assert all(found), f"no fake vector for {texts}"
        return [matches[0] for matches in found]

    module = types.ModuleType("goa.embedding")
    module.embed = embed  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "goa.embedding", module)
    return seen


def test_embedding_selector_ranks_by_cosine_without_llm_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _fake_embedding(
        monkeypatch,
        {
            "Which option": [1.0, 0.0],
            "Expert in alpha": [0.0, 1.0],
            "Expert in beta": [0.6, 0.8],
            "Expert in gamma": [0.8, 0.6],
        },
    )
    cards = [card("a", domains=["alpha"]), card("bbbbb", domains=["beta"])]
    run, meta, _ = setup(cards=cards)
    sampling = sample(run, [*cards, card("ccccc", domains=["gamma"])], k=2, selector="embedding")
    assert ids(sampling.picks) == ["ccccc", "bbbbb"]
    assert sampling.picks[0].reason == "embedding: cosine 0.800 to the question"
    assert seen[0] == ("query", QUESTION)
    assert {kind for kind, _ in seen[1:]} == {"passage"}  # cards are documents, not queries
    assert not meta.requests


def test_embedding_failure_falls_back_on_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    def embed(texts: Sequence[str], kind: str = "query") -> list[list[float]]:
        raise OSError("no embedding model")

    module = types.ModuleType("goa.embedding")
    module.embed = embed  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "goa.embedding", module)
    run, _, cards = setup()
    sampling = sample(run, cards, selector="embedding")
    assert ids(sampling.picks) == ["m", "a", "b"]
    assert run.incidents[-1].kind == "fallback"


# --- Adaptive k ------------------------------------------------------------------


def test_k_follows_difficulty() -> None:
    assert [k_for_difficulty(3, d) for d in (1, 2, 3)] == [1, 2, 3]
    assert [k_for_difficulty(5, d) for d in (1, 2, 3)] == [2, 4, 5]
    assert k_for_difficulty(1, 1) == 1


def test_adaptive_k_takes_the_best_picks_for_an_easy_question() -> None:
    run, meta, cards = setup('{"selected": [2, 1, 3]}', difficulty='{"difficulty": 1}')
    sampling = sample(run, cards, adaptive_k=True)
    assert sampling.difficulty == 1
    assert sampling.k == 1
    assert ids(sampling.picks) == ["b"]
    assert meta.n("difficulty") == 1
    assert meta.n("select") == 1


def test_an_unusable_difficulty_keeps_the_full_k() -> None:
    run, meta, cards = setup(difficulty=["very hard", "4", "hard"])
    sampling = sample(run, cards, adaptive_k=True)
    assert sampling.difficulty is None
    assert sampling.k == 3
    assert meta.n("difficulty") == 3
    assert run.incidents[-1].kind == "fallback"
    assert run.incidents[-1].stage == "difficulty"


def test_adaptive_k_with_the_embedding_free_profile_selector_still_asks_difficulty() -> None:
    run, meta, cards = setup(difficulty="2")
    sampling = sample(run, cards, selector="profile", adaptive_k=True)
    assert sampling.k == 2
    assert meta.n("select") == 0
    assert meta.n("difficulty") == 1


# --- Budget ------------------------------------------------------------------------


def test_cost_estimate() -> None:
    priced = card("p", prices=(1.0, 2.0))
    question = "x" * 400  # 100 tokens
    cost = estimate_cost(priced, question=question, k=3, max_tokens=100)
    # prompt: 4 * (100 + 200) + 200 (judge: 2 peers) + 2 * (100 own + 200 peers) = 2000
    # completion: 4 * 100 = 400
    assert cost == pytest.approx((2000 * 1.0 + 400 * 2.0) / 1e6)
    local = card("l", backend="llamacpp")
    assert estimate_cost(local, question=question, k=3, max_tokens=100) == 0.0
    assert estimate_cost(card("u"), question=question, k=3, max_tokens=100) is None


def test_budget_skips_agents_that_would_exceed_it() -> None:
    cards = [
        card("dear", prices=(100.0, 100.0)),
        card("cheap", prices=(0.01, 0.01)),
        card("unknown"),
        card("local", backend="llamacpp"),
    ]
    ranked = [Pick(c, "ranked") for c in cards]

    def estimate(c: ModelCard) -> float | None:
        return estimate_cost(c, question=QUESTION, k=2, max_tokens=64)

    chosen, skipped = within_budget(ranked, 2, 0.01, estimate)
    assert ids(chosen) == ["cheap", "local"]
    assert [s[0] for s in skipped] == ["dear", "unknown"]
    assert "exceeds" in skipped[0][1]
    assert "unknown" in skipped[1][1]
    assert "estimated $" in chosen[0].reason
    assert within_budget(ranked, 2, None, estimate)[0] == ranked[:2]


def test_budget_applies_in_the_pipeline() -> None:
    cards = [card("a", prices=(500.0, 500.0)), card("b", prices=(0.0, 0.0)), card("m", size=9.0)]
    backends = {
        "a": agent("a", answer("A")),
        "b": agent("b", answer("B")),
        "m": agent("m", answer("C"), select='{"selected": [1, 2]}'),
    }
    goa = GraphOfAgents(Pool("t", tuple(cards)), backends=backends, k=2, budget_usd=0.001)
    result = goa.run(QUESTION)
    assert [s.agent for s in result.selected] == ["b"]
    assert {r.agent for r in result.removed} == {"a", "m"}
    assert all(r.stage == "select" for r in result.removed)
    assert result.final_agent == "b"
    assert not backends["a"].requests


def test_nothing_within_budget_means_no_answer() -> None:
    cards = [card("a", prices=(500.0, 500.0)), card("m", size=9.0, prices=(500.0, 500.0))]
    backends = {"a": agent("a", answer("A")), "m": agent("m", answer("C"), select="[1, 2]")}
    result = GraphOfAgents(Pool("t", tuple(cards)), backends=backends, k=2, budget_usd=0.0).run(
        QUESTION
    )
    assert not result.answered
    assert result.answer is None
    assert "budget" in result.reason


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "specialist"),
    [
        ("Which drug is first-line treatment for hypertension?", "bio-medical-llama-3-8b"),
        ("Is this contract clause enforceable under US law?", "saul-7b-instruct"),
        ("How do rising interest rates affect bond yields?", "finance-llama3-8b"),
    ],
)
def test_real_embedding_selector_finds_the_specialist(question: str, specialist: str) -> None:
    """The real local embedding model (no LLM call) ranks the built-in cards."""
    from goa.pools import load_pool
    from goa.select import embedding_ranking

    cards = [*load_pool("goa-paper").cards, *load_pool("api").cards]
    try:
        picks = embedding_ranking(cards, question)
    except GoaError as exc:  # a machine without AVX2, or without PyPI
        pytest.skip(str(exc))
    assert picks[0].card.id == specialist
