"""Mixture-of-experts models in the transformers backend (goa.inference.moe).

Tiny random MoE models of each architecture (goa.testing.tiny_models) and a tiny
dense llama: batched greedy replies equal one-at-a-time ones token for token,
stop strings and max_tokens hold, the experts run transformers' grouped (or
batched) matmuls rather than the per-expert loop, and expert load is counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from transformers.integrations import moe as hf_moe

from goa.errors import GoaError
from goa.inference import ChatRequest, moe
from goa.inference.hf_model import Generated, HFModel
from goa.inference.transformers_backend import TransformersBackend
from goa.testing.tiny_models import (
    TINY_MOE_CONFIGS,
    tiny_causal_lm,
    tiny_hf_model,
    tiny_moe_hf_model,
    tiny_moe_lm,
)

pytestmark = pytest.mark.allow_model_requests

MOE_ARCHITECTURES = list(TINY_MOE_CONFIGS)


def _run(backend: TransformersBackend, requests: list[ChatRequest]) -> list[Any]:
    async def go() -> list[Any]:
        return list(await asyncio.gather(*(backend.complete(r) for r in requests)))

    return asyncio.run(go())


def _record_tokens(model: HFModel) -> dict[int, list[int]]:
    """Spy on the worker: each request's generated tokens (up to its max_tokens,
    cut at the first end token), by the request's id()."""
    seen: dict[int, list[int]] = {}
    reply = model._reply

    def spy(
        tokens: list[int],
        request: ChatRequest,
        stops: Sequence[str],
        ended: set[int],
        prompt_tokens: int,
    ) -> Generated:
        kept = tokens[: request.max_tokens]
        cut = next((i for i, t in enumerate(kept) if t in ended), len(kept))
        seen[id(request)] = kept[:cut]
        return reply(tokens, request, stops, ended, prompt_tokens)

    model._reply = spy  # type: ignore[method-assign]
    return seen


@pytest.fixture(scope="module")
def mixtral() -> Iterator[HFModel]:
    model = tiny_moe_hf_model("tiny-mixtral", architecture="mixtral")
    yield model
    model.close()


# --- batched equals one at a time -------------------------------------------------------


@pytest.mark.parametrize("architecture", ["llama", *MOE_ARCHITECTURES])
def test_batched_greedy_equals_one_at_a_time(architecture: str) -> None:
    if architecture == "llama":
        model = tiny_hf_model("tiny-dense")
    else:
        model = tiny_moe_hf_model(f"tiny-{architecture}", architecture=architecture)
    try:
        tokens = _record_tokens(model)
        backend = TransformersBackend(model.name, loaded=model)
        requests = [
            ChatRequest.of(f"question {i} " + "xy" * (4 * i), max_tokens=16) for i in range(6)
        ]
        together = _run(backend, requests)
        assert model.stats.batches < len(requests)  # they shared batches
        batched = [tokens.pop(id(r)) for r in requests]
        alone = []
        for request in requests:
            reply = _run(backend, [request])[0]
            alone.append(tokens.pop(id(request)))
            assert reply.text == together[len(alone) - 1].text
            assert reply.usage == together[len(alone) - 1].usage
        # Left padding (padding rows are routed to experts too) must not change any
        # real token's greedy choice.
        assert batched == alone
        assert sum(len(t) for t in batched) > 3 * len(requests)  # not all stopped at once
        if architecture != "llama":
            assert model.expert_load is not None
            assert model.expert_summary()["forwards"] > 0
        else:
            assert model.expert_load is None
            assert model.expert_summary() == {}
    finally:
        model.close()


# --- stop strings and max_tokens ---------------------------------------------------------


def test_moe_reply_keeps_its_own_max_tokens(mixtral: HFModel) -> None:
    backend = TransformersBackend("tiny-mixtral", loaded=mixtral)
    requests = [ChatRequest.of("same prompt", max_tokens=n) for n in (3, 9, 17)]
    replies = _run(backend, requests)
    longest = replies[-1]
    for reply, request in zip(replies, requests, strict=True):
        assert reply.usage.completion_tokens <= request.max_tokens
        if reply.finish_reason == "length":
            assert reply.usage.completion_tokens == request.max_tokens
        assert longest.text.startswith(reply.text)
    assert replies[0].finish_reason == "length"  # 3 tokens: cut, not ended


def test_moe_stop_strings_cut_the_reply(mixtral: HFModel) -> None:
    backend = TransformersBackend("tiny-mixtral", loaded=mixtral)
    free = _run(backend, [ChatRequest.of("stop here", max_tokens=24)])[0]
    assert len(free.text) >= 4
    stop = free.text[2:4]
    steps = mixtral.stats.steps
    cut = _run(backend, [ChatRequest.of("stop here", max_tokens=24, stop=(stop,))])[0]
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.usage.completion_tokens < free.usage.completion_tokens
    assert mixtral.stats.steps - steps < 24  # generation stopped at the stop string


# --- which experts implementation runs -----------------------------------------------------


def test_chosen_implementation_is_not_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(moe.ENV_VARIABLE, raising=False)
    choice = moe.choose_experts_implementation("cpu", torch.float32)
    assert choice in ("grouped_mm", "batched_mm")
    # torch >= 2.9 has a CPU grouped_mm kernel, and it works in float32.
    if hasattr(torch.nn.functional, "grouped_mm"):
        assert choice == "grouped_mm"
    assert moe.choose_experts_implementation("cpu", "bfloat16") in ("grouped_mm", "batched_mm")


def _spy(monkeypatch: pytest.MonkeyPatch, implementation: str) -> list[int]:
    """Count calls of the experts forward registered for ``implementation``."""
    calls: list[int] = []
    original: Callable[..., Any] = hf_moe.ExpertsInterface._global_mapping[implementation]

    def spy(module: Any, hidden: Any, index: Any, weights: Any) -> Any:
        calls.append(int(index.shape[0]))
        return original(module, hidden, index, weights)

    monkeypatch.setitem(hf_moe.ExpertsInterface._global_mapping, implementation, spy)
    return calls


@pytest.mark.parametrize("architecture", MOE_ARCHITECTURES)
def test_experts_run_the_chosen_kernel(architecture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(moe.ENV_VARIABLE, raising=False)
    model = tiny_moe_lm(architecture)
    chosen = moe.experts_implementation(model)
    assert chosen == moe.choose_experts_implementation("cpu", "float32") != "eager"
    layers = len(list(moe.experts_modules(model)))
    assert layers >= 2
    calls = _spy(monkeypatch, chosen)
    kernels: list[int] = []
    if chosen == "grouped_mm":  # the real kernel, not transformers' per-expert fallback loop
        grouped = torch.nn.functional.grouped_mm

        def counted(*args: Any, **kwargs: Any) -> Any:
            kernels.append(1)
            return grouped(*args, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "grouped_mm", counted)
    with torch.inference_mode():
        model(torch.randint(7, 263, (3, 5)))
    assert calls == [15] * layers
    if chosen == "grouped_mm":
        assert len(kernels) == 2 * layers  # up (gate_up) and down projections


def test_environment_overrides_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(moe.ENV_VARIABLE, "batched_mm")
    assert moe.choose_experts_implementation("cpu", "float32") == "batched_mm"
    model = tiny_moe_lm("qwen3_moe")
    assert moe.experts_implementation(model) == "batched_mm"
    monkeypatch.setenv(moe.ENV_VARIABLE, "EAGER")
    assert moe.set_experts_implementation(model) == "eager"
    assert moe.experts_implementation(model) == "eager"
    monkeypatch.setenv(moe.ENV_VARIABLE, "loop")
    with pytest.raises(GoaError, match="GOA_EXPERTS_IMPL"):
        moe.choose_experts_implementation("cpu", "float32")


def test_dense_models_are_left_alone() -> None:
    dense = tiny_causal_lm("llama")
    assert not moe.is_moe(dense)
    assert moe.expert_count(dense) == moe.experts_per_token(dense) == 0
    assert moe.set_experts_implementation(dense, "grouped_mm") is None
    assert moe.experts_implementation(dense) is None
    load = moe.ExpertLoad.attach(dense)
    assert load.layers == []
    assert load.snapshot().summary()["forwards"] == 0.0


def test_experts_modules_are_found_without_the_newer_attributes() -> None:
    """transformers 5.17's decorator sets no ``_is_expert_parallel`` (5.20's does): the
    experts of such a model are still found, hooked and switched (on the H200 they were
    not, and the MoE benchmark counted every expert as touched at batch 1)."""
    model = tiny_moe_lm("olmoe")
    found = [name for name, _ in moe.experts_modules(model)]
    assert len(found) == model.config.num_hidden_layers
    for _, module in moe.experts_modules(model):
        module.__dict__.pop("_is_expert_parallel", None)
    assert [name for name, _ in moe.experts_modules(model)] == found
    assert moe.set_experts_implementation(model, "batched_mm") == "batched_mm"
    assert moe.ExpertLoad.attach(model).layers == found


@pytest.mark.parametrize("architecture", MOE_ARCHITECTURES)
def test_config_fields(architecture: str) -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model(architecture, **TINY_MOE_CONFIGS[architecture])
    assert moe.is_moe(config)
    assert moe.expert_count(config) == 8
    assert moe.experts_per_token(config) == 2


# --- eager and grouped agree --------------------------------------------------------------


@pytest.mark.parametrize("architecture", MOE_ARCHITECTURES)
def test_loop_and_kernels_give_the_same_outputs(architecture: str) -> None:
    model = tiny_moe_lm(architecture, seed=3)
    ids = torch.randint(7, 263, (2, 9), generator=torch.Generator().manual_seed(1))
    logits: dict[str, Any] = {}
    greedy: dict[str, list[list[int]]] = {}
    for implementation in ("eager", "batched_mm", "grouped_mm"):
        assert moe.set_experts_implementation(model, implementation) == implementation
        with torch.inference_mode():
            logits[implementation] = model(ids).logits
            out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
        greedy[implementation] = out[:, ids.shape[1] :].tolist()
    for implementation in ("batched_mm", "grouped_mm"):
        torch.testing.assert_close(logits[implementation], logits["eager"], rtol=1e-5, atol=1e-5)
        assert greedy[implementation] == greedy["eager"]


# --- expert load --------------------------------------------------------------------------


def test_expert_load_counts_every_slot() -> None:
    model = tiny_moe_lm("mixtral")
    load = moe.ExpertLoad.attach(model, keep=8)
    assert load.layers == ["model.layers.0.mlp.experts", "model.layers.1.mlp.experts"]
    generator = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        first = model(torch.randint(7, 263, (3, 7), generator=generator), output_router_logits=True)
        model(torch.randint(7, 263, (2, 1), generator=generator))
    snapshot = load.snapshot()
    assert snapshot.forwards == 2
    for layer, router_logits in zip(snapshot.layers, first.router_logits, strict=True):
        assert layer.forwards == 2
        assert [sum(step) for step in layer.recent] == [3 * 7 * 2, 2 * 1 * 2]  # tokens x top_k
        assert layer.slots == sum(layer.counts) == 46
        assert list(layer.counts) == [a + b for a, b in zip(*layer.recent, strict=True)]
        # The same choice as the router's own (softmax, top 2) in the first pass.
        chosen = torch.topk(router_logits.softmax(-1), 2, dim=-1).indices
        assert list(layer.recent[0]) == torch.bincount(chosen.flatten(), minlength=8).tolist()
        assert layer.mean_imbalance >= 1.0
        assert layer.imbalance >= 1.0
        assert 0.0 < layer.mean_experts_hit <= 1.0
        assert 0.0 < layer.experts_hit <= 1.0
    summary = snapshot.summary()
    assert set(summary) == {"forwards", "expert_imbalance", "experts_hit"}
    assert summary["expert_imbalance"] >= 1.0
    with torch.no_grad():  # counted outside inference mode too
        model(torch.randint(7, 263, (1, 3), generator=generator))
    assert load.snapshot().forwards == 3
    load.reset()
    assert load.snapshot().forwards == 0
    load.detach()
    with torch.inference_mode():
        model(torch.randint(7, 263, (1, 4)))
    assert load.snapshot().forwards == 0


def test_hf_model_measures_load_while_generating(mixtral: HFModel) -> None:
    assert mixtral.expert_load is not None
    mixtral.expert_load.reset()
    backend = TransformersBackend("tiny-mixtral", loaded=mixtral)
    _run(backend, [ChatRequest.of("load " * n, max_tokens=5) for n in (1, 4)])
    snapshot = mixtral.expert_load.snapshot()
    assert snapshot.forwards >= 2  # a prefill and decoding steps
    for layer in snapshot.layers:
        assert all(sum(step) % 2 == 0 for step in layer.recent)  # tokens x top_k(2)
        assert layer.slots == sum(layer.counts)
    assert mixtral.expert_summary()["experts_hit"] > 0.0


def test_load_model_sets_the_experts_implementation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goa.inference.transformers_backend import ModelSource, load_model, unload_models
    from goa.testing.tiny_models import tiny_tokenizer

    tiny_moe_lm("qwen2_moe").save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    monkeypatch.setenv(moe.ENV_VARIABLE, "batched_mm")  # not transformers' default
    loaded = load_model(ModelSource.of(tmp_path), name="saved-moe", device="cpu", processes=False)
    try:
        assert isinstance(loaded, HFModel)
        assert moe.experts_implementation(loaded.model) == "batched_mm"
        assert loaded.expert_load is not None
        assert len(loaded.expert_load.layers) == 2
    finally:
        unload_models()
