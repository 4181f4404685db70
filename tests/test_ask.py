"""``goa ask`` and ``goa.ask``: every option, bad input, and a run on the real local models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.goa_app import app
from goa import ask, paths
from goa.ask import pool_for
from goa.cards import ModelCard
from goa.errors import ConfigError, ModelRequestError
from goa.inference import factory
from goa.inference.backend import Backend
from goa.testing.agents import Agent, Hanging, agent, judge_by

runner = CliRunner()

CARD = """\
id: {id}
backend: scripted
model: {id}
description: A scripted agent for the goa ask tests, number {size}.
domains: [testing]
parameters_b: {size}
context_window: 4096
license: MIT
"""


def letter(x: str) -> str:
    return f"I think it is {x}.\nAnswer: {x}"


@pytest.fixture
def agents() -> dict[str, Agent]:
    judge = judge_by({"B": 6, "A": 3, "C": 1})
    return {
        "a": agent("a", letter("A"), score=judge),
        "b": agent("b", letter("B"), score=judge, reverse="On reflection B.\nAnswer: B"),
        "c": agent(
            "c",
            letter("C"),
            score=judge,
            select='{"selected": [1, 2, 3], "reasons": ["x", "y", "z"]}',
            pool="Weighing them all: B.\nAnswer: B",
        ),
    }


@pytest.fixture
def pool(agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch) -> str:
    """A user pool 'trio' of scripted cards a, b, c (c the largest: the meta model)."""
    config = paths.config_path()
    cards = config.parent / "cards"
    cards.mkdir(parents=True)
    for size, card_id in enumerate(agents, 1):
        (cards / f"{card_id}.yaml").write_text(CARD.format(id=card_id, size=size))
    config.write_text('card_dirs = ["cards"]\n\n[pools.trio]\ncards = ["a", "b", "c"]\n')

    def backend_for(card: ModelCard, *, cache: Any = False) -> Backend:
        return agents[card.id]

    monkeypatch.setattr(factory, "backend_for_card", backend_for)
    return "trio"


def invoke(*args: str, stdin: str | None = None) -> Any:
    return runner.invoke(app, ["ask", *args], input=stdin)


def test_python_api_runs_graph_of_agents(pool: str) -> None:
    result = ask("Which is it?", pool=pool)
    assert result.answered
    assert result.final_answer == "B"
    assert result.ranking[0] == "b"


def test_stdout_carries_only_the_answer(pool: str, agents: dict[str, Agent]) -> None:
    result = invoke("Which is it?", "--pool", pool)
    assert result.exit_code == 0, result.output
    assert result.stdout == "On reflection B.\nAnswer: B\n"
    # k=3 of 3 agents: no selection call; 3 answers, 3 judges, 2 forward, 1 reverse
    assert sum(len(b.requests) for b in agents.values()) == 9


def test_json_has_the_answer_and_the_graph(pool: str) -> None:
    result = invoke("Which is it?", "--pool", pool, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answer"] == "On reflection B.\nAnswer: B"
    assert {node["id"] for node in data["graph"]["nodes"]} == {"a", "b", "c"}
    assert data["graph"]["directed"] is True


def test_question_from_stdin(pool: str, agents: dict[str, Agent]) -> None:
    result = invoke("-", "--pool", pool, stdin="Read me from stdin?\n")
    assert result.exit_code == 0, result.output
    assert "Read me from stdin?" in agents["a"].requests[-1].messages[-1].content


def test_models_narrow_the_pool(pool: str, agents: dict[str, Agent]) -> None:
    result = invoke("Q?", "--pool", pool, "-m", "a", "-m", "b", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(s["agent"] for s in json.loads(result.stdout)["selected"]) == ["a", "b"]
    assert pool_for(pool, ["b"]).ids == ("b",)


def test_one_model_answers_alone(pool: str, agents: dict[str, Agent]) -> None:
    result = invoke("Q?", "--pool", pool, "-m", "a")
    assert result.exit_code == 0, result.output
    assert result.stdout == letter("A") + "\n"
    assert len(agents["a"].requests) == 1


def test_k_pooling_selector_and_early_exit(pool: str, agents: dict[str, Agent]) -> None:
    result = invoke("Q?", "--pool", pool, "-k", "2", "--selector", "profile", "--json")
    data = json.loads(result.stdout)
    assert (data["selector"], data["k"]) == ("profile", 2)
    assert [s["agent"] for s in data["selected"]] == ["c", "b"]  # the largest first
    every = json.loads(
        invoke("Q?", "--pool", pool, "-k", "2", "--selector", "all", "--json").stdout
    )
    assert len(every["selected"]) == 3
    mean = json.loads(invoke("Q?", "--pool", pool, "--pooling", "mean", "--json").stdout)
    assert mean["pooling"] == "mean"
    assert mean["answer"] == "Weighing them all: B.\nAnswer: B"


def test_early_exit_when_all_agree(monkeypatch: pytest.MonkeyPatch, pool: str) -> None:
    same = {name: agent(name, letter("A")) for name in ("a", "b", "c")}
    same["c"].stages["select"] = '{"selected": [1, 2, 3]}'
    monkeypatch.setattr(factory, "backend_for_card", lambda card, cache=False: same[card.id])
    data = json.loads(invoke("Q?", "--pool", pool, "--early-exit", "--json").stdout)
    assert data["early_exit"] is True
    assert sum(len(b.requests) for b in same.values()) == 3  # no selection call, 3 answers


def test_verbose_tree_and_usage_go_to_stderr(pool: str) -> None:
    result = invoke("Q?", "--pool", pool, "-v", "--usage")
    assert result.exit_code == 0, result.output
    assert result.stdout == "On reflection B.\nAnswer: B\n"
    assert "ranking (most relevant first)" in result.stderr
    assert "1. b" in result.stderr
    assert "usage" in result.stderr
    assert "total" in result.stderr


def test_no_answer_exits_1_and_says_why(monkeypatch: pytest.MonkeyPatch, pool: str) -> None:
    down = {name: Agent(name, answer=ModelRequestError(f"{name} is down")) for name in "abc"}
    down["c"].stages["select"] = '{"selected": [1, 2, 3]}'
    monkeypatch.setattr(factory, "backend_for_card", lambda card, cache=False: down[card.id])
    result = invoke("Q?", "--pool", pool)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("no answer:")
    assert "a is down" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Q?", "--pool", "trio", "-m", "nosuch"], "error: --model nosuch: no such card"),
        (["   "], "error: the question is empty"),
        (["Q?", "--pool", "nope"], "error: "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(pool: str, args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_option_values_exit_2(pool: str) -> None:
    for args in (["-k", "0"], ["--pooling", "median"], ["--selector", "dice"]):
        result = invoke("Q?", "--pool", pool, *args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output


def test_unknown_model_in_python_api(pool: str) -> None:
    with pytest.raises(ConfigError, match="no such card"):
        pool_for(pool, ["nosuch"])


@pytest.mark.slow
@pytest.mark.allow_model_requests
def test_graph_of_agents_on_the_real_local_models() -> None:
    result = invoke("What is 2 + 3?", "--max-tokens", "24", "--json", "--structured")
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    assert data["answered"] is (result.exit_code == 0)
    if data["answered"]:
        assert data["answer"].strip()
    else:
        assert data["reason"]
    assert data["totals"]["calls"] >= 2
    assert data["graph"]["nodes"]


def test_generation_options_reach_every_call(pool: str, agents: dict[str, Agent]) -> None:
    args = ["--max-tokens", "7", "--temperature", "0.3", "--rounds", "2", "--json"]
    data = json.loads(invoke("Q?", "--pool", pool, *args).stdout)
    assert data["rounds"] == 2
    requests = [r for b in agents.values() for r in b.requests]
    assert {(r.max_tokens, r.temperature) for r in requests} == {(7, 0.3)}


def test_meta_structured_and_cache(
    pool: str, agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    agents["a"].stages["select"] = '{"selected": [2, 3]}'
    cached: list[bool] = []

    def backend_for(card: ModelCard, *, cache: Any = False) -> Backend:
        cached.append(cache)
        return agents[card.id]

    monkeypatch.setattr(factory, "backend_for_card", backend_for)
    args = ["-k", "2", "--meta", "a", "--structured", "--cache", "--json"]
    data = json.loads(invoke("Q?", "--pool", pool, *args).stdout)
    assert [s["agent"] for s in data["selected"]] == ["b", "c"]
    assert agents["a"].n("select") == 1  # the meta model chose
    select = agents["a"].requests[0]
    assert select.json_schema is not None  # structured output was asked for
    assert set(cached) == {True}


def test_adaptive_k(pool: str, agents: dict[str, Agent]) -> None:
    agents["c"].stages["difficulty"] = '{"difficulty": 1}'
    data = json.loads(invoke("Q?", "--pool", pool, "--adaptive-k", "--json").stdout)
    assert data["difficulty"] == 1
    assert data["k"] == 1
    assert len(data["selected"]) == 1


def test_timeout_drops_a_hanging_agent(
    pool: str, agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    hanging = Hanging("a")
    monkeypatch.setattr(
        factory,
        "backend_for_card",
        lambda card, cache=False: hanging if card.id == "a" else agents[card.id],
    )
    result = invoke("Q?", "--pool", pool, "--timeout", "0.05", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answered"] is True
    assert any(r["agent"] == "a" for r in data["removed"])


def test_budget_skips_agents_without_known_prices(pool: str) -> None:
    result = invoke("Q?", "--pool", pool, "--budget", "0.01", "--json")
    data = json.loads(result.stdout)
    assert {r["agent"] for r in data["removed"]} == {"a", "b", "c"}
    assert data["answered"] is False
    assert result.exit_code == 1


def test_judge_option_reaches_the_pipeline(pool: str) -> None:
    data = json.loads(invoke("Q?", "--pool", pool, "--judge", "auto", "--json").stdout)
    assert set(data["judges"].values()) == {"prompt"}  # scripted agents give no logprobs
    assert invoke("Q?", "--pool", pool, "--judge", "coin").exit_code == 2


def test_audit_checks_the_answer_reasoning_and_records_it(
    monkeypatch: pytest.MonkeyPatch, pool: str, agents: dict[str, Agent]
) -> None:
    from trust import auditors
    from trust.ledger import Ledger

    monkeypatch.setattr(auditors, "backend_for_card", lambda card, **_: agents[card.id])
    judge = judge_by({"B": 6, "A": 3, "C": 1})
    verdict = {"trust-audit": '{"vote": "valid", "confidence": 0.8, "reason": "follows"}'}
    agents["a"] = agent("a", letter("A"), score=judge, **verdict)
    reasoning = "Two experts say B.\nSo 2 + 2 = 5 votes.\nAnswer: B"
    agents["b"] = agent("b", letter("B"), score=judge, reverse=reasoning, **verdict)
    agents["c"] = agent(
        "c",
        letter("C"),
        score=judge,
        select='{"selected": [1, 2, 3], "reasons": ["x", "y", "z"]}',
        **verdict,
    )
    result = invoke("Which is it?", "--pool", pool, "--audit", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["final_answer"] == "B"
    audit = data["audit"]
    assert audit["verdict"] == "invalid"
    faulty = next(s for s in audit["steps"] if s["step"] == audit["first_faulty_step"])
    assert faulty["tier"] == "computational"
    with Ledger(Ledger.default_path()) as ledger:
        assert ledger.verify().ok
        assert ledger.entry(audit["ledger_entries"][-1]).record["kind"] == "audit"
    text = invoke("Which is it?", "--pool", pool, "--audit")
    assert text.exit_code == 0, text.output
    assert text.stdout.strip().endswith("B")
    assert "audit: invalid" in text.stderr
