"""Model cards: schema, built-in cards, file:line errors, and card generation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from goa.card_generation import extract_json_object, generate_card
from goa.cards import (
    ModelCard,
    all_cards,
    builtin_cards,
    check_cards,
    dump_card,
    get_card,
    load_card,
    load_cards,
    parse_card,
    save_card,
)
from goa.errors import ConfigError, GoaError
from goa.inference import ScriptedBackend

LOCAL_IDS = {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
PAPER_REPOS = {
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-Coder-7B-Instruct",
    "mistralai/Mathstral-7B-v0.1",
    "ContactDoctor/Bio-Medical-Llama-3-8B",
    "instruction-pretrain/finance-Llama3-8B",
    "Equall/Saul-7B-Instruct-v1",
}

GOOD_CARD = """\
id: tiny
backend: llamacpp
model: smollm2-135m
description: A tiny model used only to test the card loader.
domains:
  - testing
license: MIT
context_window: 2048
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def card_dict(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": "tiny",
        "backend": "scripted",
        "model": "scripted",
        "description": "A tiny model used only to test the card schema.",
        "domains": ["testing"],
        "license": "MIT",
        "context_window": 2048,
    }
    data.update(changes)
    return data


# --- Built-in cards --------------------------------------------------------------


def test_every_builtin_card_validates() -> None:
    report = check_cards()
    assert report.errors == []
    cards = builtin_cards()
    assert len(report.ok) == len(cards) >= 20
    for item in report.ok:
        assert item.source == f"modelcards/{item.card.id}.yaml"


def test_builtin_local_cards_are_the_four_embedded_models() -> None:
    cards = builtin_cards()
    local = {cid for cid, card in cards.items() if card.backend == "llamacpp"}
    assert local == LOCAL_IDS
    for cid in LOCAL_IDS:
        card = cards[cid]
        assert card.model == cid
        assert card.is_local
        assert card.prices is not None
        assert (card.prices.input_per_mtok, card.prices.output_per_mtok) == (0, 0)
    assert cards["qwen2.5-coder-1.5b"].accuracy("mmlu") == pytest.approx(0.445)
    assert cards["gemma3-270m"].accuracy("mmlu") is None


def test_builtin_paper_and_api_cards() -> None:
    cards = builtin_cards().values()
    paper = [c for c in cards if c.model.startswith("hosted_vllm/")]
    assert {c.model.removeprefix("hosted_vllm/") for c in paper} == PAPER_REPOS
    assert all(c.api_base == "http://localhost:8000/v1" for c in paper)
    api = [c for c in cards if c.backend == "litellm" and c.api_key_env]
    assert len(api) >= 10
    for card in api:
        assert card.api_key_env is not None
        assert card.api_key_env.endswith("_API_KEY")
        if card.prices is not None:
            assert card.prices.as_of is not None


def test_profile_shows_description_not_name() -> None:
    card = get_card("qwen2.5-coder-1.5b")
    profile = card.profile()
    assert card.description in profile
    assert "Domains: code" in profile
    assert card.id not in profile.split("\n")[-1]
    assert card.model not in profile


def test_get_card_unknown_suggests_close_ids() -> None:
    with pytest.raises(GoaError, match="did you mean gpt-4o"):
        get_card("gpt4o")


# --- Schema ----------------------------------------------------------------------


def test_valid_card_loads(tmp_path: Path) -> None:
    card = load_card(write(tmp_path, "tiny.yaml", GOOD_CARD))
    assert card.id == "tiny"
    assert card.task_specialization == ()
    assert card.measured_accuracy == {}


def test_wrong_type_names_file_line_and_field(tmp_path: Path) -> None:
    text = GOOD_CARD.replace("context_window: 2048", "context_window: lots")
    path = write(tmp_path, "tiny.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_card(path)
    assert caught.value.location.endswith("tiny.yaml:8 (context_window)")
    assert "valid integer" in caught.value.problem


def test_nested_error_points_at_the_nested_line(tmp_path: Path) -> None:
    text = GOOD_CARD + "prices:\n  input_per_mtok: 1\n  output_per_mtok: -3\n"
    with pytest.raises(ConfigError) as caught:
        load_card(write(tmp_path, "tiny.yaml", text))
    assert caught.value.location.endswith("tiny.yaml:11 (prices.output_per_mtok)")
    assert "greater than or equal to 0" in caught.value.problem


def test_list_item_error_points_at_the_item(tmp_path: Path) -> None:
    text = GOOD_CARD.replace("  - testing\n", "  - testing\n  - [not, a, string]\n")
    with pytest.raises(ConfigError) as caught:
        load_card(write(tmp_path, "tiny.yaml", text))
    assert caught.value.location.endswith("tiny.yaml:7 (domains[1])")


def test_missing_field_is_reported(tmp_path: Path) -> None:
    text = GOOD_CARD.replace("license: MIT\n", "")
    with pytest.raises(ConfigError) as caught:
        load_card(write(tmp_path, "tiny.yaml", text))
    assert caught.value.location.endswith("tiny.yaml:1 (license)")
    assert caught.value.problem == "Field required"


def test_several_errors_in_one_message(tmp_path: Path) -> None:
    text = GOOD_CARD.replace("backend: llamacpp", "backend: ollama").replace("2048", "-1")
    with pytest.raises(ConfigError) as caught:
        load_card(write(tmp_path, "tiny.yaml", text))
    message = str(caught.value)
    assert "tiny.yaml:2 (backend)" in message
    assert "also line 8 (context_window)" in message
    assert "\n" not in message


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    text = GOOD_CARD.replace("license: MIT", "license: [MIT")
    with pytest.raises(ConfigError) as caught:
        load_card(write(tmp_path, "tiny.yaml", text))
    assert caught.value.location.endswith("tiny.yaml:8")
    assert "YAML syntax error" in caught.value.problem


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    text = GOOD_CARD + "context_windw: 4096\n"
    with pytest.raises(ConfigError) as caught:
        load_card(write(tmp_path, "tiny.yaml", text))
    assert caught.value.location.endswith("tiny.yaml:9 (context_windw)")
    assert "Extra inputs are not permitted" in caught.value.problem


def test_repeated_yaml_key_is_rejected(tmp_path: Path) -> None:
    text = GOOD_CARD + "license: Apache-2.0\n"
    with pytest.raises(ConfigError, match=r"tiny\.yaml:9 \(license\): this field appears twice"):
        load_card(write(tmp_path, "tiny.yaml", text))


def test_empty_or_non_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty"):
        load_card(write(tmp_path, "a.yaml", ""))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_card(write(tmp_path, "b.yaml", "- just\n- a list\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_card(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "value",
    ["sk-proj-abc123DEF456ghi789JKL", "gsk_0123456789abcdef", "AIzaSyA1b2C3d4E5f6G7h8I9j0"],
)
def test_literal_key_in_api_key_env_is_rejected(tmp_path: Path, value: str) -> None:
    text = GOOD_CARD + f"api_key_env: {value}\n"
    with pytest.raises(ConfigError) as caught:
        load_card(write(tmp_path, "tiny.yaml", text))
    assert caught.value.location.endswith("tiny.yaml:9 (api_key_env)")
    assert "looks like an API key" in caught.value.problem
    assert value not in str(caught.value)


def test_api_key_env_must_be_an_env_var_name() -> None:
    assert ModelCard.model_validate(card_dict(api_key_env="OPENAI_API_KEY")).api_key_env
    with pytest.raises(ValueError, match="environment variable name"):
        ModelCard.model_validate(card_dict(api_key_env="openai key"))


def test_api_base_must_be_a_plain_url() -> None:
    assert ModelCard.model_validate(card_dict(api_base="http://localhost:8000/v1")).api_base
    with pytest.raises(ValueError, match="http"):
        ModelCard.model_validate(card_dict(api_base="localhost:8000"))
    with pytest.raises(ValueError, match="credentials"):
        ModelCard.model_validate(card_dict(api_base="https://user:pw@example.com/v1"))


def test_id_must_be_a_slug() -> None:
    with pytest.raises(ValueError, match="id"):
        ModelCard.model_validate(card_dict(id="My Model"))


def test_measured_accuracy_shorthand_and_range() -> None:
    card = ModelCard.model_validate(
        card_dict(measured_accuracy={"mmlu": 0.5, "gsm8k": {"accuracy": 0.3, "source": "us"}})
    )
    assert card.accuracy("mmlu") == 0.5
    assert card.measured_accuracy["gsm8k"].source == "us"
    with pytest.raises(ValueError, match="less than or equal to 1"):
        ModelCard.model_validate(card_dict(measured_accuracy={"mmlu": 44.5}))


def test_prices_cost() -> None:
    card = ModelCard.model_validate(
        card_dict(prices={"input_per_mtok": 2.5, "output_per_mtok": 10, "as_of": "2025-10-15"})
    )
    assert card.prices is not None
    assert card.prices.cost_usd(1_000_000, 500_000) == pytest.approx(7.5)


# --- Folders, duplicates, saving ------------------------------------------------


def test_load_cards_requires_file_name_to_match_id(tmp_path: Path) -> None:
    write(tmp_path, "other.yaml", GOOD_CARD)
    with pytest.raises(ConfigError) as caught:
        load_cards(tmp_path)
    assert caught.value.location.endswith("other.yaml:1 (id)")
    assert "does not match the file name" in caught.value.problem


def test_duplicate_id_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "tiny.yaml", GOOD_CARD)
    write(tmp_path, "tiny.yml", GOOD_CARD)
    with pytest.raises(ConfigError, match=r"tiny\.yml:1 \(id\): duplicate card id 'tiny'"):
        load_cards(tmp_path)


def test_user_card_may_not_reuse_a_builtin_id(tmp_path: Path) -> None:
    write(tmp_path, "gpt-4o.yaml", GOOD_CARD.replace("id: tiny", "id: gpt-4o"))
    with pytest.raises(ConfigError) as caught:
        all_cards([tmp_path])
    assert "duplicate card id 'gpt-4o'" in caught.value.problem
    assert "modelcards/gpt-4o.yaml" in caught.value.problem


def test_check_cards_reports_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "tiny.yaml", GOOD_CARD)
    write(tmp_path, "bad.yaml", "id: bad\n")
    write(tmp_path, "worse.yaml", "id: [\n")
    report = check_cards([tmp_path])
    assert [item.card.id for item in report.ok] == ["tiny"]
    assert len(report.errors) == 2


def test_dump_and_save_round_trip(tmp_path: Path) -> None:
    card = get_card("gpt-4o")
    assert parse_card(dump_card(card), "x").card == card
    path = save_card(card, tmp_path / "gpt-4o.yaml")
    assert load_card(path) == card
    with pytest.raises(GoaError, match="already exists"):
        save_card(card, path)


# --- Card generation ---------------------------------------------------------------

README = "# Tiny-Chat 1B\nA 1.1B chat model for English. Context: 4096 tokens. License: MIT."
GENERATED = {
    "id": "tiny-chat-1b",
    "description": "A 1.1 billion parameter English chat model; weak at math and code.",
    "domains": ["general chat"],
    "task_specialization": ["chat"],
    "parameters_b": 1.1,
    "features": [],
    "context_window": 4096,
    "license": "MIT",
}


def generate(
    backend: ScriptedBackend,
    *,
    max_attempts: int = 3,
    card_id: str | None = None,
    api_key_env: str | None = None,
) -> ModelCard:
    work = generate_card(
        README,
        backend,
        model_string="openai/tiny-chat",
        max_attempts=max_attempts,
        card_id=card_id,
        api_key_env=api_key_env,
    )
    return asyncio.run(work)


def test_generation_retries_invalid_json_with_feedback() -> None:
    backend = ScriptedBackend(["{'id': 'not json'", json.dumps(GENERATED)])
    card = generate(backend)
    assert card.id == "tiny-chat-1b"
    assert card.backend == "litellm"
    assert card.model == "openai/tiny-chat"
    assert len(backend.requests) == 2
    retry = backend.requests[1].messages
    assert retry[-2].role == "assistant"
    assert retry[-2].content == "{'id': 'not json'"
    assert retry[-1].role == "user"
    assert "not valid JSON" in retry[-1].content
    assert README in backend.requests[0].messages[1].content
    assert backend.requests[0].tags.stage == "card-generation"


def test_generation_feeds_back_validation_errors() -> None:
    bad = dict(GENERATED, context_window="4k")
    del bad["license"]
    backend = ScriptedBackend([json.dumps(bad), f"```json\n{json.dumps(GENERATED)}\n```"])
    card = generate(backend)
    feedback = backend.requests[1].messages[-1].content
    assert "- context_window: Input should be a valid integer" in feedback
    assert "- license: Field required" in feedback
    assert card.context_window == 4096


def test_generation_imposes_caller_fields_and_drops_invented_numbers() -> None:
    invented = dict(
        GENERATED,
        backend="llamacpp",
        model="something-else",
        api_key_env="sk-live-abcdefghijklmnopqrstuvwxyz123456",
        prices={"input_per_mtok": 1, "output_per_mtok": 1},
        measured_accuracy={"mmlu": 0.9},
    )
    backend = ScriptedBackend([json.dumps(invented)])
    card = generate(backend, card_id="mine", api_key_env="TINY_API_KEY")
    assert (card.id, card.backend, card.model) == ("mine", "litellm", "openai/tiny-chat")
    assert card.api_key_env == "TINY_API_KEY"
    assert card.prices is None
    assert card.measured_accuracy == {}


def test_generation_gives_up_after_max_attempts() -> None:
    backend = ScriptedBackend(["no json here", "[1, 2]"])
    with pytest.raises(GoaError, match=r"in 2 attempts; last problem: .*a list is not a card"):
        generate(backend, max_attempts=2)
    assert len(backend.requests) == 2


def test_generation_cuts_a_long_readme() -> None:
    backend = ScriptedBackend([json.dumps(GENERATED)])
    asyncio.run(
        generate_card(
            "x" * 50, backend, model_string="m", card_backend="litellm", max_readme_chars=10
        )
    )
    prompt = backend.requests[0].messages[1].content
    assert "x" * 10 in prompt
    assert "x" * 11 not in prompt
    assert "cut" in prompt


def test_extract_json_object_variants() -> None:
    assert extract_json_object('Here it is: {"a": 1} done') == {"a": 1}
    assert extract_json_object('```json\n{"a": {"b": 2}}\n```') == {"a": {"b": 2}}
