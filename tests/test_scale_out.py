"""The scale-out configuration of docs/scale-out.md, run as written against a stand-in.

vLLM cannot run here: the card and the pool are read from the page, the card's
``api_base`` points at llama.cpp's OpenAI-compatible server on loopback (SmolLM2-135M),
and a GoA question goes through the pool to a reply.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from goa.ask import ask
from goa.pools import load_pool
from tests.test_litellm_live_server import ALIAS, server  # noqa: F401  (the stand-in fixture)

pytest.importorskip("llama_cpp", reason="llama-cpp-python (the 'local' extra) is not installed")

pytestmark = [pytest.mark.allow_model_requests, pytest.mark.slow]

PAGE = Path(__file__).resolve().parents[1] / "docs" / "scale-out.md"


def _block(language: str) -> str:
    text = PAGE.read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, f"docs/scale-out.md should have one {language} block"
    return str(blocks[0])


@pytest.fixture
def configured(
    server: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """The page's card (pointed at the stand-in) in a card folder, and its config.toml."""
    card: dict[str, Any] = yaml.safe_load(_block("yaml"))
    card["api_base"] = server
    card["model"] = f"hosted_vllm/{ALIAS}"
    cards = tmp_path / "goa-cards"
    cards.mkdir()
    (cards / f"{card['id']}.yaml").write_text(yaml.safe_dump(card), encoding="utf-8")
    config = _block("toml").replace('"~/goa-cards"', f'"{cards.as_posix()}"')
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    monkeypatch.setenv("GOA_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv(card["api_key_env"], "sk-stand-in")
    return {"card": card, "pools": tomllib.loads(config)["pools"]}


def test_the_pages_pool_loads_with_the_served_card(configured: dict[str, Any]) -> None:
    (name,) = configured["pools"]
    pool = load_pool(name)
    assert [c.id for c in pool.cards] == configured["pools"][name]["cards"]
    served = next(c for c in pool.cards if c.id == configured["card"]["id"])
    assert served.backend == "litellm"
    assert served.api_base == configured["card"]["api_base"]


def test_a_goa_question_reaches_the_served_model_through_the_pool(
    configured: dict[str, Any],
) -> None:
    (name,) = configured["pools"]
    served = configured["card"]["id"]
    result = ask(
        "What is the capital of France? Answer with one word.",
        pool=name,
        models=[served, "smollm2-135m"],
        k=2,
        selector="all",
        max_tokens=48,
    )
    agents = {record.agent for record in result.responses if record.error is None}
    assert served in agents  # the stand-in answered as the vLLM-served model
    assert result.answered
    assert result.answer
