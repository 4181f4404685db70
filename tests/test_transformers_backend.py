"""The transformers backend: batching, stopping, scoring, errors, and the engine switch.

Tiny randomly initialised models (goa.testing.tiny_models) stand in for real
weights: their replies are gibberish but deterministic under greedy decoding.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from goa.cards import ModelCard
from goa.errors import ConfigError, GoaError, ModelRequestError
from goa.inference import ChatRequest, Message
from goa.inference.factory import backend_for_card, local_engine
from goa.inference.hf_model import HFModel
from goa.inference.transcript import plain_prompt
from goa.inference.transformers_backend import TransformersBackend
from goa.testing.tiny_models import tiny_hf_model

pytestmark = pytest.mark.allow_model_requests


@pytest.fixture(scope="module")
def chat_model() -> Iterator[HFModel]:
    model = tiny_hf_model("tiny-chat", max_batch=64)
    yield model
    model.close()


@pytest.fixture(scope="module")
def base_model() -> Iterator[HFModel]:
    model = tiny_hf_model("tiny-base", chat_template=False)
    yield model
    model.close()


def _requests(n: int, **params: Any) -> list[ChatRequest]:
    return [ChatRequest.of("question " + "x" * (3 * i), **params) for i in range(n)]


def _run(backend: TransformersBackend, requests: list[ChatRequest]) -> list[Any]:
    async def go() -> list[Any]:
        return list(await asyncio.gather(*(backend.complete(r) for r in requests)))

    return asyncio.run(go())


def test_concurrent_requests_share_batches_and_match_one_by_one(chat_model: HFModel) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    requests = _requests(8, max_tokens=12)
    before = chat_model.stats.batches
    together = _run(backend, requests)
    assert chat_model.stats.batches - before < len(requests)  # batched, not one by one
    alone = [_run(backend, [r])[0] for r in requests]
    # Left padding must not change greedy replies of prompts of different lengths.
    assert [c.text for c in together] == [c.text for c in alone]
    assert [c.usage for c in together] == [c.usage for c in alone]
    for completion, request in zip(together, requests, strict=True):
        assert completion.backend == "transformers"
        assert completion.model == "tiny-chat"
        assert completion.cost_usd == 0.0
        assert completion.usage.prompt_tokens == len(
            chat_model.encode(chat_model.prompt_text(request.messages))
        )


def test_each_reply_keeps_its_own_max_tokens(chat_model: HFModel) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    requests = [ChatRequest.of("same prompt", max_tokens=n) for n in (3, 9, 17)]
    replies = _run(backend, requests)
    longest = replies[-1]
    for reply, request in zip(replies, requests, strict=True):
        assert reply.usage.completion_tokens <= request.max_tokens
        if reply.finish_reason == "length":
            assert reply.usage.completion_tokens == request.max_tokens
            assert longest.text.startswith(reply.text)


def test_stop_strings_cut_the_reply(chat_model: HFModel) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    free = _run(backend, [ChatRequest.of("stop here", max_tokens=24)])[0]
    assert len(free.text) >= 4
    stop = free.text[2:4]
    steps = chat_model.stats.steps
    cut = _run(backend, [ChatRequest.of("stop here", max_tokens=24, stop=(stop,))])[0]
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.usage.completion_tokens < free.usage.completion_tokens
    assert chat_model.stats.steps - steps < 24  # generation stopped at the stop string


def test_sampled_requests_run_apart_from_greedy_ones(chat_model: HFModel) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    greedy = ChatRequest.of("mixed", max_tokens=10)
    sampled = [ChatRequest.of("mixed", max_tokens=10, temperature=1.0, seed=s) for s in range(4)]
    replies = _run(backend, [greedy, *sampled])
    assert replies[0].text == _run(backend, [greedy])[0].text
    assert all(r.usage.completion_tokens <= 10 for r in replies)


def test_model_without_chat_template_gets_the_plain_transcript(base_model: HFModel) -> None:
    messages = (Message(role="system", content="Be brief."), Message(role="user", content="Hi"))
    assert base_model.prompt_text(messages) == plain_prompt(messages)
    ids = base_model.encode(base_model.prompt_text(messages))
    assert ids[0] == base_model.tokenizer.bos_token_id
    assert ids.count(base_model.tokenizer.bos_token_id) == 1
    backend = TransformersBackend("tiny-base", loaded=base_model)
    reply = _run(backend, [ChatRequest(messages=messages, max_tokens=16)])[0]
    assert "\nUser:" not in reply.text
    assert reply.text == reply.text.strip()


def _direct_logprob(model: HFModel, messages: list[Message], continuation: str) -> float:
    """The same quantity computed independently: one unpadded forward pass."""
    import torch

    context = model.reply_context(messages)
    prompt = model.encode(context)
    tokens = model.encode(context + continuation)
    start = next(
        (i for i, (a, b) in enumerate(zip(prompt, tokens, strict=False)) if a != b),
        min(len(prompt), len(tokens)),
    )
    with torch.inference_mode():
        logits = model.model(input_ids=torch.tensor([tokens])).logits[0]
    values = torch.log_softmax(logits.float(), dim=-1)
    return math.fsum(float(values[i - 1, tokens[i]]) for i in range(start, len(tokens)))


def test_logprobs_batched_equal_an_unpadded_forward_pass(chat_model: HFModel) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    cases = [
        ([Message(role="user", content="Which is right?" + "!" * i)], "Answer " + "B" * i)
        for i in range(1, 6)
    ]
    cases.append(
        (
            [Message(role="user", content="Q"), Message(role="assistant", content="Answer:")],
            " (C)",
        )
    )

    async def go() -> list[Any]:
        return list(await asyncio.gather(*(backend.logprob(m, c) for m, c in cases)))

    scored = asyncio.run(go())
    for (messages, continuation), result in zip(cases, scored, strict=True):
        assert result.total == pytest.approx(
            _direct_logprob(chat_model, messages, continuation), abs=1e-3
        )
        assert result.tokens == len(continuation.encode())  # one token per byte
        assert result.mean == pytest.approx(result.total / result.tokens)


def test_empty_continuation_is_an_error_for_that_caller_only(chat_model: HFModel) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    messages = [Message(role="user", content="Q")]
    with pytest.raises(ModelRequestError, match="continuation is empty"):
        asyncio.run(backend.logprob(messages, ""))
    assert asyncio.run(backend.logprob(messages, "A")).tokens == 1


def test_a_bad_request_fails_alone_and_its_batch_still_runs(chat_model: HFModel) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    messages = [Message(role="user", content="Q")]
    too_long = ChatRequest.of("x" * 5000, max_tokens=4)  # 4096 positions, 1 token per byte

    async def go() -> list[Any]:
        jobs = [
            backend.logprob(messages, ""),
            backend.logprob(messages, "A"),
            backend.complete(too_long),
            backend.complete(ChatRequest.of("fine", max_tokens=4)),
        ]
        return list(await asyncio.gather(*jobs, return_exceptions=True))

    empty, scored, long_prompt, fine = asyncio.run(go())
    assert isinstance(empty, ModelRequestError)
    assert "continuation is empty" in str(empty)
    assert scored.tokens == 1
    assert isinstance(long_prompt, ModelRequestError)
    assert "context is 4096" in str(long_prompt)
    assert fine.usage.completion_tokens > 0


def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on(
    chat_model: HFModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    original = HFModel._generate_rows
    calls = {"n": 0}

    def broken_once(self: HFModel, requests: Any, rows: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("device fell over")
        return original(self, requests, rows)

    monkeypatch.setattr(HFModel, "_generate_rows", broken_once)
    with pytest.raises(ModelRequestError, match="transformers:tiny-chat: device fell over"):
        _run(backend, [ChatRequest.of("first", max_tokens=4)])
    assert _run(backend, [ChatRequest.of("second", max_tokens=4)])[0].usage.completion_tokens > 0


def test_requests_are_refused_when_model_requests_are_forbidden(chat_model: HFModel) -> None:
    from goa.inference import forbid_model_requests

    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    forbid_model_requests(True)
    try:
        with pytest.raises(GoaError):
            _run(backend, [ChatRequest.of("no")])
    finally:
        forbid_model_requests(False)


def test_unknown_model_names_what_is_accepted() -> None:
    with pytest.raises(GoaError, match="neither an embedded local model"):
        TransformersBackend("no-such-model")


def _card(backend: str, model: str) -> ModelCard:
    return ModelCard(
        id="card",
        backend=backend,  # type: ignore[arg-type]
        model=model,
        description="A card used to test which backend the factory builds.",
        domains=("general knowledge",),
        context_window=2048,
        license="test",
    )


def test_local_engine_switch_serves_llamacpp_cards_with_transformers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = _card("llamacpp", "smollm2-135m")
    monkeypatch.delenv("GOA_LOCAL_ENGINE", raising=False)
    assert backend_for_card(card).name == "llamacpp"
    monkeypatch.setenv("GOA_LOCAL_ENGINE", "transformers")
    assert local_engine() == "transformers"
    backend = backend_for_card(card)
    assert isinstance(backend, TransformersBackend)
    assert backend.model == "smollm2-135m"
    monkeypatch.setenv("GOA_LOCAL_ENGINE", "vllm")
    with pytest.raises(ConfigError, match="unknown engine 'vllm'"):
        backend_for_card(card)


def test_transformers_cards_take_a_model_directory(tmp_path: Any) -> None:
    backend = backend_for_card(_card("transformers", str(tmp_path)))
    assert isinstance(backend, TransformersBackend)
    assert backend.model == str(tmp_path)


@pytest.mark.slow
def test_real_gguf_model_answers_through_transformers() -> None:
    """SmolLM2-135M, the embedded GGUF file, dequantised and run by transformers."""
    backend = TransformersBackend("smollm2-135m", max_batch=8)
    request = ChatRequest.of("What is 2 + 3? Answer with the number only.", max_tokens=12)
    replies = _run(backend, [request, request])
    assert "5" in replies[0].text
    assert replies[0].text == replies[1].text
    assert replies[0].finish_reason == "stop"
    scored = asyncio.run(
        backend.logprob([Message(role="user", content="What is 2 + 3?")], replies[0].text)
    )
    assert scored.mean > -3.0  # its own greedy reply is likely under the model


def test_rows_are_batched_by_length_within_the_padded_token_budget(chat_model: HFModel) -> None:
    from goa.inference.hf_model import Job

    def job(max_tokens: int) -> Job:
        return Job(done=lambda _: None, request=ChatRequest.of("q", max_tokens=max_tokens))

    lengths = [150, 5, 140, 10, 8, 400]
    ready = [(job(8), [1] * n, n) for n in lengths]
    ready.append((job(100), [1] * 20, 20))
    budget = 200
    saved = chat_model.max_batch_tokens
    chat_model.max_batch_tokens = budget
    try:
        batches = chat_model._by_padded_tokens(ready)
    finally:
        chat_model.max_batch_tokens = saved
    assert [[len(tokens) for _, tokens, _ in b] for b in batches] == [
        [5, 8, 10],  # 3 x (10 + 8) padded tokens
        [20],  # its 100 new tokens: (20 + 100) x 2 would exceed 200
        [140],
        [150],
        [400],  # longer than the budget: alone
    ]
    for batch in batches[:-1]:
        longest = max(len(tokens) for _, tokens, _ in batch)
        new = max(j.request.max_tokens for j, _, _ in batch if j.request is not None)
        assert len(batch) * (longest + new) <= budget
    assert sorted(id(r) for b in batches for r in b) == sorted(id(r) for r in ready)


def test_a_small_token_budget_changes_the_batches_not_the_replies(chat_model: HFModel) -> None:
    backend = TransformersBackend("tiny-chat", loaded=chat_model)
    requests = [ChatRequest.of("question " + "x" * n, max_tokens=8) for n in (90, 3, 60, 9, 1)]
    alone = [_run(backend, [r])[0].text for r in requests]
    saved = chat_model.max_batch_tokens
    chat_model.max_batch_tokens = 150
    try:
        together = [c.text for c in _run(backend, requests)]
    finally:
        chat_model.max_batch_tokens = saved
    assert together == alone


def test_the_padded_token_budget_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from goa.inference.hf_model import DEFAULT_MAX_BATCH_TOKENS, batch_token_budget

    monkeypatch.delenv("GOA_MAX_BATCH_TOKENS", raising=False)
    assert batch_token_budget() == DEFAULT_MAX_BATCH_TOKENS
    monkeypatch.setenv("GOA_MAX_BATCH_TOKENS", "65536")
    assert batch_token_budget() == 65536
    monkeypatch.setenv("GOA_MAX_BATCH_TOKENS", "0")
    with pytest.raises(ConfigError, match="GOA_MAX_BATCH_TOKENS"):
        batch_token_budget()


def test_max_batch_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from goa.inference.factory import max_batch

    monkeypatch.setenv("GOA_MAX_BATCH", "256")
    assert max_batch() == 256
    monkeypatch.setenv("GOA_MAX_BATCH", "lots")
    with pytest.raises(ConfigError, match="GOA_MAX_BATCH"):
        max_batch()


def test_find_export_accepts_only_an_export_of_the_registry_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from goa.inference import local_models
    from goa.inference.hf_export import MANIFEST, find_export

    monkeypatch.delenv("GOA_TRANSFORMERS_DIR", raising=False)
    assert find_export("smollm2-135m") is None
    monkeypatch.setenv("GOA_TRANSFORMERS_DIR", str(tmp_path))
    assert find_export("smollm2-135m") is None  # no folder for it
    folder = tmp_path / "smollm2-135m"
    folder.mkdir()
    sha = local_models.get_spec("smollm2-135m").sha256
    (folder / MANIFEST).write_text(json.dumps({"model": "smollm2-135m", "source_sha256": sha}))
    assert find_export("smollm2-135m") == folder
    (folder / MANIFEST).write_text(json.dumps({"model": "smollm2-135m", "source_sha256": "0" * 64}))
    with pytest.raises(GoaError, match="not of 'smollm2-135m'"):
        find_export("smollm2-135m")
    (folder / MANIFEST).write_text("not json")
    with pytest.raises(GoaError, match="not a goa export"):
        find_export("smollm2-135m")


@pytest.mark.slow
def test_exported_model_loads_from_its_folder_and_answers(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`goa models export` writes the HF layout; GOA_TRANSFORMERS_DIR makes the
    backend load it instead of parsing the GGUF file."""
    from typer.testing import CliRunner

    from cli.goa_app import app

    result = CliRunner().invoke(app, ["models", "export", "smollm2-135m", "--to", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "smollm2-135m"
    assert (folder / "model.safetensors").is_file()
    assert (folder / "goa-export.json").is_file()
    monkeypatch.setenv("GOA_TRANSFORMERS_DIR", str(tmp_path))
    backend = TransformersBackend("smollm2-135m", device="cpu", dtype="float32")
    loaded = backend.load()
    assert isinstance(loaded, HFModel)
    assert loaded.has_chat_template
    request = ChatRequest.of("What is 2 + 3? Answer with the number only.", max_tokens=12)
    assert "5" in _run(backend, [request])[0].text


def test_export_of_an_unknown_model_exits_2_without_traceback(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from cli.goa_app import app

    result = CliRunner().invoke(app, ["models", "export", "no-such-model", "--to", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.gpu
def test_on_a_gpu_the_backend_generates_batches_in_bf16() -> None:
    import torch

    from goa.inference.transformers_backend import default_device

    assert default_device() == "cuda"
    model = tiny_hf_model("tiny-gpu")
    model.model.to(device="cuda", dtype=torch.bfloat16)
    backend = TransformersBackend("tiny-gpu", loaded=model)
    requests = _requests(16, max_tokens=8)
    together = _run(backend, requests)
    assert all(c.usage.completion_tokens <= 8 for c in together)
    assert str(model.device).startswith("cuda")
    assert model.model.dtype == torch.bfloat16
    model.close()


def test_saved_weights_name_both_sides_of_a_tied_pair(tmp_path: Any) -> None:
    """Transformers 5.17 left whichever name of a tied pair an export lacked
    randomly initialised (SmolLM2 and Gemma scored 0 on the GPU): both are stored."""
    import torch
    from safetensors.torch import load_file

    from goa.inference.hf_export import _save
    from goa.testing.tiny_models import tiny_causal_lm

    model = tiny_causal_lm("llama", tie_word_embeddings=True)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    _save(model, tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert set(stored) == set(model.state_dict())
    assert torch.equal(stored["model.embed_tokens.weight"], model.lm_head.weight)
    assert torch.equal(stored["lm_head.weight"], model.lm_head.weight)


def test_gpu_memory_reservation_is_opt_in_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from goa.inference.transformers_backend import reserve_gpu_memory

    monkeypatch.delenv("GOA_CUDA_RESERVE_GB", raising=False)
    assert reserve_gpu_memory("cuda") == 0.0  # unset: nothing reserved, torch not touched
    monkeypatch.setenv("GOA_CUDA_RESERVE_GB", "8")
    assert reserve_gpu_memory("cpu") == 0.0
    monkeypatch.setenv("GOA_CUDA_RESERVE_GB", "lots")
    with pytest.raises(GoaError, match="GOA_CUDA_RESERVE_GB"):
        reserve_gpu_memory("cuda")
