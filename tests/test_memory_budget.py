"""The memory check: parameter counts, KV cache arithmetic, and refusing what does not fit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from goa.errors import GoaError, ModelFileError, ModelTooLargeError
from goa.inference import memory_budget, transformers_backend
from goa.inference.hf_model import ServedModel
from goa.inference.memory_budget import (
    CUDA_CONTEXT_BYTES,
    GIB,
    Ledger,
    MemoryEstimate,
    estimate,
    kv_cache_bytes,
    parameter_count,
)
from goa.inference.transformers_backend import ModelSource, load_model, unload_models
from goa.testing.tiny_models import tiny_causal_lm

ARCHITECTURES: list[tuple[str, dict[str, Any]]] = [
    ("llama", {}),
    ("llama", {"tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True}),
    ("qwen2", {}),
    ("gemma3_text", {"num_hidden_layers": 7}),
    ("mixtral", {}),
    (
        "qwen2_moe",
        {
            "num_hidden_layers": 4,
            "num_experts": 4,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 96,
            "decoder_sparse_step": 2,
            "mlp_only_layers": [3],
        },
    ),
    ("olmoe", {"num_experts": 4}),
]


@pytest.mark.parametrize(("architecture", "config"), ARCHITECTURES)
def test_parameter_count_matches_the_built_model(architecture: str, config: dict[str, Any]) -> None:
    model = tiny_causal_lm(architecture, **config)
    built = sum(p.numel() for p in model.parameters())
    assert parameter_count(model.config) == built
    # the config.json dict gives the same count as the config object
    assert parameter_count(model.config.to_dict()) == built


def _llama_config(**overrides: Any) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "vocab_size": 1000,
        "hidden_size": 512,
        "intermediate_size": 1024,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        **overrides,
    }


def test_kv_cache_is_keys_and_values_of_every_layer_row_and_token() -> None:
    config = _llama_config()  # head_dim 512 / 8 = 64
    per_token = 2 * 4 * 2 * 64 * 2  # keys+values x layers x kv heads x head_dim x bf16
    assert kv_cache_bytes(config, dtype="bfloat16", max_batch=3, context_tokens=100) == (
        3 * 100 * per_token
    )
    assert kv_cache_bytes(config, dtype="float32", max_batch=3, context_tokens=100) == (
        2 * 3 * 100 * per_token
    )


def test_sliding_window_layers_hold_at_most_their_window() -> None:
    kinds = ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"]
    config = _llama_config(sliding_window=128, layer_types=kinds, head_dim=32)
    per_layer_token = 2 * 2 * 32 * 2
    expected = 5 * (3 * 128 + 1000) * per_layer_token
    assert kv_cache_bytes(config, dtype="bfloat16", max_batch=5, context_tokens=1000) == expected
    # a window wider than the context changes nothing
    assert kv_cache_bytes(config, dtype="bfloat16", max_batch=5, context_tokens=100) == (
        5 * 4 * 100 * per_layer_token
    )


def test_estimate_adds_weights_kv_cache_workspace_and_process() -> None:
    config = _llama_config()
    found = estimate(
        config,
        dtype="bfloat16",
        max_batch=8,
        context_tokens=512,
        process_overhead=CUDA_CONTEXT_BYTES,
    )
    assert found.parameters == parameter_count(config)
    assert found.weights == 2 * found.parameters
    assert found.kv_cache == kv_cache_bytes(
        config, dtype="bfloat16", max_batch=8, context_tokens=512
    )
    logits = 8 * 1000 * 4
    assert found.workspace == pytest.approx(0.1 * (found.weights + found.kv_cache) + logits, abs=1)
    assert found.total == found.weights + found.kv_cache + found.workspace + CUDA_CONTEXT_BYTES


def test_context_budget_is_capped_and_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOA_MEMORY_CONTEXT_TOKENS", raising=False)
    assert memory_budget.context_tokens_for(_llama_config()) == 2048
    assert memory_budget.context_tokens_for(_llama_config(max_position_embeddings=32768)) == 4096
    monkeypatch.setenv("GOA_MEMORY_CONTEXT_TOKENS", "8192")
    assert memory_budget.context_tokens_for(_llama_config()) == 8192
    monkeypatch.setenv("GOA_MEMORY_CONTEXT_TOKENS", "lots")
    with pytest.raises(GoaError, match="GOA_MEMORY_CONTEXT_TOKENS"):
        memory_budget.context_tokens_for(_llama_config())


def test_available_host_memory_is_positive() -> None:
    assert memory_budget.available("cpu") > 0


def _estimate(total_gib: float) -> MemoryEstimate:
    weights = int(total_gib * GIB)
    return MemoryEstimate(
        parameters=weights // 2,
        weights=weights,
        kv_cache=0,
        workspace=0,
        process=0,
        max_batch=1,
        context_tokens=1,
        dtype="bfloat16",
    )


def test_ledger_refuses_the_second_model_when_only_one_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory_budget, "available", lambda device: 10 * GIB)
    ledger = Ledger()
    ledger.admit("first", _estimate(6), "cuda:0")
    ledger.admit("first", _estimate(6), "cuda:0")  # the same key again replaces it
    assert ledger.reserved("cuda:0") == 6 * GIB
    with pytest.raises(
        ModelTooLargeError, match="promised to the models loaded before \\(first\\)"
    ):
        ledger.admit("second", _estimate(6), "cuda:0")
    ledger.admit("third", _estimate(6), "cuda:1")  # another device has its own budget
    ledger.release("cuda:0")
    ledger.admit("second", _estimate(6), "cuda:0")


def test_ledger_counts_what_others_took_since_the_first_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    free = [10 * GIB]
    monkeypatch.setattr(memory_budget, "available", lambda device: free[0])
    ledger = Ledger()
    ledger.admit("first", _estimate(2), "cpu")
    free[0] = 3 * GIB  # another process took memory (or the first model more than estimated)
    with pytest.raises(ModelTooLargeError):
        ledger.admit("second", _estimate(4), "cpu")


# --- the check in load_model ------------------------------------------------------------


@pytest.fixture
def unloaded() -> Iterator[None]:
    unload_models()
    yield
    unload_models()


def _config_only(directory: Path, **overrides: Any) -> Path:
    """A model directory with a config.json and no weights or tokenizer."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(_llama_config(**overrides)))
    return directory


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the weights were loaded although the model does not fit")


def _forbid_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _never)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", _never)
    monkeypatch.setattr(transformers_backend, "ModelProcess", _never)


@pytest.mark.usefixtures("unloaded")
@pytest.mark.parametrize("processes", [False, True])
def test_an_oversized_model_is_refused_before_any_weight_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: bool
) -> None:
    monkeypatch.delenv("GOA_MEMORY_CHECK", raising=False)
    monkeypatch.delenv("GOA_MEMORY_CONTEXT_TOKENS", raising=False)
    directory = _config_only(tmp_path / "big")
    _forbid_loading(monkeypatch)
    monkeypatch.setattr(memory_budget, "available", lambda device: 1_000_000)
    with pytest.raises(ModelTooLargeError) as caught:
        load_model(
            ModelSource(directory),
            name="big-model",
            device="cuda:0",  # no GPU is touched: what is free comes from the stand-in
            dtype="bfloat16",
            max_batch=16,
            processes=processes,
        )
    message = str(caught.value)
    assert isinstance(caught.value, ModelFileError)
    assert "'big-model' does not fit on cuda:0" in message
    for part in ("weights", "KV cache", "16 rows x 2048 tokens", "workspace", "0.00 GiB is free"):
        assert part in message
    assert ("CUDA context of its process 0.50 GiB" in message) == processes
    for advice in ("GOA_MAX_BATCH", "GOA_MEMORY_CONTEXT_TOKENS", "fewer models", "more memory"):
        assert advice in message


@pytest.mark.usefixtures("unloaded")
def test_on_the_cpu_only_what_loads_must_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOA_MEMORY_CHECK", raising=False)
    directory = _config_only(tmp_path / "big")
    _forbid_loading(monkeypatch)
    monkeypatch.setattr(memory_budget, "available", lambda device: 1_000_000)
    with pytest.raises(ModelTooLargeError) as caught:
        load_model(ModelSource(directory), name="big-model", device="cpu", processes=False)
    message = str(caught.value)
    assert "'big-model' does not fit on cpu" in message
    assert "KV cache not budgeted in host memory" in message
    assert "GOA_MAX_BATCH" not in message
    assert "more memory" in message


@pytest.mark.usefixtures("unloaded")
def test_memory_check_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = _config_only(tmp_path / "big")
    monkeypatch.setattr(memory_budget, "available", lambda device: 1_000_000)
    monkeypatch.setenv("GOA_MEMORY_CHECK", "0")
    # now transformers tries to load it, and finds no weights
    with pytest.raises(ModelFileError) as caught:
        load_model(ModelSource(directory), name="big-model", device="cpu", processes=False)
    assert not isinstance(caught.value, ModelTooLargeError)
    monkeypatch.setenv("GOA_MEMORY_CHECK", "maybe")
    with pytest.raises(GoaError, match="GOA_MEMORY_CHECK must be 1 or 0"):
        memory_budget.check_enabled()


class _Served:
    """Stands in for a model process: nothing is spawned."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def submit(self, job: Any) -> None:
        raise AssertionError("no jobs here")

    def close(self) -> None:
        return None


@pytest.mark.usefixtures("unloaded")
def test_the_running_total_refuses_the_second_model_when_only_one_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOA_MEMORY_CHECK", raising=False)
    monkeypatch.delenv("GOA_MEMORY_CONTEXT_TOKENS", raising=False)
    first, second = _config_only(tmp_path / "a"), _config_only(tmp_path / "b")
    options: dict[str, Any] = {"device": "cuda", "dtype": "bfloat16", "max_batch": 4}
    one = memory_budget.model_estimate(
        first, None, dtype="bfloat16", max_batch=4, process_overhead=CUDA_CONTEXT_BYTES
    )
    assert one is not None
    monkeypatch.setattr(memory_budget, "available", lambda device: int(1.5 * one.total))
    monkeypatch.setattr(transformers_backend, "ModelProcess", _Served)

    served: ServedModel = load_model(ModelSource(first), name="a", processes=True, **options)
    assert isinstance(served, _Served)
    # loading the same model again costs nothing more
    assert load_model(ModelSource(first), name="a", processes=True, **options) is served
    with pytest.raises(ModelTooLargeError, match=r"'b' does not fit.*loaded before \(a\)"):
        load_model(ModelSource(second), name="b", processes=True, **options)
    unload_models()  # forgets the reservations too
    load_model(ModelSource(second), name="b", processes=True, **options)


def test_gguf_header_gives_the_tensors_and_the_config(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(1024)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_token_list(["a", "b", "c"])
    writer.add_tensor("token_embd.weight", np.zeros((3, 64), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    config, parameters = memory_budget.gguf_config(path)
    assert parameters == 3 * 64 + 64 * 64
    assert config["num_hidden_layers"] == 2
    assert config["num_key_value_heads"] == 2
    assert config["head_dim"] == 16
    assert config["vocab_size"] == 3
    assert config["max_position_embeddings"] == 1024
