"""``goa ask`` and ``goa.ask``: the question reaches the chosen agent through the factory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.goa_app import app
from goa import ask, load_pool, paths
from goa.ask import choose_agent
from goa.errors import ConfigError
from goa.testing import OpenAIStubServer

runner = CliRunner()

CARD = """\
id: {id}
backend: litellm
model: openai/{id}
api_base: {base}
api_key_env: GOA_TEST_STUB_KEY
description: A stand-in model served by a stub server on loopback for tests.
domains: [testing]
task_specialization: [echo]
parameters_b: {size}
context_window: 4096
license: MIT
"""


@pytest.fixture
def stub() -> Iterator[OpenAIStubServer]:
    def reply(body: dict[str, Any]) -> str:
        return f"{body['model']} says: {body['messages'][-1]['content']}"

    with OpenAIStubServer(reply) as server:
        yield server


@pytest.fixture
def stub_pool(stub: OpenAIStubServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user pool of two stub-served cards, the larger one 'big'."""
    monkeypatch.setenv("GOA_TEST_STUB_KEY", "stub-key-not-secret")
    config = paths.config_path()
    cards = config.parent / "cards"
    cards.mkdir(parents=True)
    for card_id, size in (("small", 1), ("big", 7)):
        text = CARD.format(id=card_id, base=stub.base_url, size=size)
        (cards / f"{card_id}.yaml").write_text(text)
    config.write_text('card_dirs = ["cards"]\n\n[pools.stubs]\ncards = ["small", "big"]\n')
    return "stubs"


def test_the_largest_agent_answers_by_default(stub_pool: str) -> None:
    assert choose_agent(load_pool(stub_pool)).id == "big"
    assert choose_agent(load_pool("local")).id == "qwen2.5-coder-1.5b"


@pytest.mark.allow_model_requests
def test_ask_goes_through_the_card_backend(stub_pool: str, stub: OpenAIStubServer) -> None:
    answer = ask("What is 2+2?", pool=stub_pool, max_tokens=16)
    assert answer.agent == "big"
    assert answer.answer == "big says: What is 2+2?"
    assert answer.completion.backend == "litellm"
    assert answer.completion.usage.completion_tokens == 5
    assert answer.completion.cost_usd is None  # a model litellm does not know, no card prices
    assert stub.requests[0]["max_tokens"] == 16
    assert stub.requests[0]["messages"][0]["role"] == "system"


@pytest.mark.allow_model_requests
def test_cli_json_output(stub_pool: str) -> None:
    result = runner.invoke(app, ["ask", "hello", "--pool", stub_pool, "--agent", "small", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["agent"] == "small"
    assert data["answer"] == "small says: hello"
    assert data["completion"]["tags"] == {"agent": "small", "stage": "answer", "question": None}


def test_unknown_agent_is_a_one_line_error(stub_pool: str) -> None:
    with pytest.raises(ConfigError, match="no agent 'nosuch'"):
        ask("hi", pool=stub_pool, agent="nosuch")
    result = runner.invoke(app, ["ask", "hi", "--pool", stub_pool, "--agent", "nosuch"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: pool 'stubs': no agent 'nosuch' (agents: small, big)")


def test_real_requests_are_refused_without_permission(stub_pool: str) -> None:
    result = runner.invoke(app, ["ask", "hi", "--pool", stub_pool])
    assert result.exit_code == 2
    assert "real requests are switched off" in result.stderr


def test_unknown_pool_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "hi", "--pool", "nope"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.allow_model_requests
def test_ask_a_real_local_model() -> None:
    result = runner.invoke(
        app,
        ["ask", "What is the capital of France?", "--agent", "smollm2-135m", "--max-tokens", "24"],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert "smollm2-135m" in result.stderr
