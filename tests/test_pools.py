"""Pools: the built-in ones, and user pools from config.toml with file:line errors.

conftest points GOA_CONFIG_DIR at a fresh temporary folder for every test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from goa import paths
from goa.errors import ConfigError, GoaError
from goa.pools import (
    DEFAULT_POOL,
    default_pool_name,
    find_line,
    list_pools,
    load_config,
    load_pool,
    user_card_dirs,
)

USER_CARD = """\
id: my-model
backend: litellm
model: hosted_vllm/me/my-model
api_base: http://localhost:9000/v1
description: A model of my own, served on my machine, good at nothing in particular.
domains: [general knowledge]
license: MIT
context_window: 4096
"""


def write_config(text: str) -> Path:
    path = paths.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_local_pool_is_the_default_and_has_the_four_models() -> None:
    pool = load_pool()
    assert pool.name == DEFAULT_POOL == "local" == default_pool_name()
    assert pool.builtin
    assert set(pool.ids) == {
        "smollm2-135m",
        "gemma3-270m",
        "qwen2.5-coder-0.5b",
        "qwen2.5-coder-1.5b",
    }
    assert all(card.backend == "llamacpp" for card in pool.cards)


def test_builtin_pools() -> None:
    pools = {pool.name: pool for pool in list_pools()}
    assert list(pools) == ["local", "goa-paper", "api"]
    assert len(pools["goa-paper"]) == 6
    assert all(c.model.startswith("hosted_vllm/") for c in pools["goa-paper"].cards)
    assert len(pools["api"]) >= 10
    assert all(c.api_key_env for c in pools["api"].cards)


def test_no_config_file_is_an_empty_config() -> None:
    config = load_config()
    assert not config.exists
    assert config.pools == {}
    assert user_card_dirs() == ()


def test_user_pool_and_default_from_toml() -> None:
    write_config(
        'default_pool = "mine"\n'
        "\n"
        "[pools.mine]\n"
        'description = "cheap and local"\n'
        'cards = ["gpt-4o-mini", "qwen2.5-coder-1.5b"]\n'
    )
    pool = load_pool()
    assert pool.name == "mine"
    assert pool.ids == ("gpt-4o-mini", "qwen2.5-coder-1.5b")
    assert pool.description == "cheap and local"
    assert not pool.builtin
    assert default_pool_name() == "mine"
    assert [p.name for p in list_pools()] == ["local", "goa-paper", "api", "mine"]
    assert load_pool("local").name == "local"


def test_user_card_dirs_relative_to_the_config(tmp_path: Path) -> None:
    config = write_config('card_dirs = ["cards"]\n\n[pools.own]\ncards = ["my-model", "gpt-4o"]\n')
    cards = config.parent / "cards"
    cards.mkdir()
    (cards / "my-model.yaml").write_text(USER_CARD, encoding="utf-8")
    assert user_card_dirs() == (cards,)
    pool = load_pool("own")
    assert pool.cards[0].api_base == "http://localhost:9000/v1"


def test_other_sections_are_left_alone() -> None:
    write_config('[cache]\nenabled = true\n\n[pools.mine]\ncards = ["gpt-4o"]\n')
    assert load_pool("mine").ids == ("gpt-4o",)


def test_bad_toml_names_file_and_line() -> None:
    path = write_config('default_pool = "local"\n\n[pools.mine]\ncards = ["gpt-4o",\n  oops\n]\n')
    with pytest.raises(ConfigError) as caught:
        load_pool()
    assert caught.value.location == f"{path}:5"
    assert caught.value.problem.startswith("TOML syntax error: ")
    assert "(at line" not in caught.value.problem


def test_unknown_card_id_in_a_pool_names_its_line() -> None:
    path = write_config(
        "[pools.first]\n"
        'cards = ["gpt-4o"]\n'
        "\n"
        "[pools.mine]\n"
        "cards = [\n"
        '  "gpt-4o",\n'
        '  "gpt-4o-mimi",\n'
        "]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_pool("mine")
    assert caught.value.location == f"{path}:7 (pools.mine.cards)"
    assert "unknown model card 'gpt-4o-mimi'" in caught.value.problem
    assert "did you mean gpt-4o-mini" in caught.value.problem


def test_unknown_default_pool_names_its_line() -> None:
    path = write_config('# my settings\ndefault_pool = "nope"\n')
    with pytest.raises(ConfigError) as caught:
        load_pool()
    assert caught.value.location == f"{path}:2 (default_pool)"
    assert "unknown pool 'nope'" in caught.value.problem


def test_wrong_shape_in_config_names_its_line() -> None:
    path = write_config('[pools.mine]\ncards = ["gpt-4o"]\nmodels = ["x"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert caught.value.location == f"{path}:3 (pools.mine.models)"
    assert "Extra inputs are not permitted" in caught.value.problem


def test_empty_pool_is_rejected() -> None:
    path = write_config("[pools.mine]\ncards = []\n")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert caught.value.location == f"{path}:2 (pools.mine.cards)"


def test_builtin_pool_names_are_reserved() -> None:
    path = write_config('\n[pools.local]\ncards = ["gpt-4o"]\n')
    with pytest.raises(ConfigError, match="built-in pool") as caught:
        load_config()
    assert caught.value.location == f"{path}:2 (pools.local)"


def test_missing_card_dir_names_its_line() -> None:
    path = write_config('default_pool = "local"\ncard_dirs = [\n  "nowhere",\n]\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert caught.value.location == f"{path}:3 (card_dirs)"
    assert "'nowhere' is not a directory" in caught.value.problem


def test_unknown_pool_name() -> None:
    with pytest.raises(GoaError, match="unknown pool 'nope'; known pools: local, goa-paper, api"):
        load_pool("nope")


def test_find_line() -> None:
    text = '[pools.a]\ncards = ["x"]\n[pools.b]\ncards = ["x-1", "x"]\n'
    assert find_line(text, ["pools", "b", "cards"], "x") == 4
    assert find_line(text, ["pools", "a"], "x") == 2
    assert find_line(text, ["absent"]) is None
