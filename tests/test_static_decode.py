"""Static-cache greedy decoding (goa.inference.static_decode) against ``model.generate``.

Tiny random models (goa.testing.tiny_models) on the CPU run the same step as the
GPU minus the CUDA-graph capture; the capture itself is tested on a GPU only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from goa.inference import ChatRequest, static_decode
from goa.inference.hf_model import HFModel
from goa.inference.static_decode import (
    StaticDecodeError,
    TextStops,
    cache_length,
    static_generate,
    unsupported_reason,
)
from goa.testing.tiny_models import tiny_causal_lm, tiny_hf_model, tiny_moe_lm, tiny_tokenizer

pytestmark = pytest.mark.allow_model_requests

PAD = 0
PROMPTS = [[1, 5, 9, 20, 30, 40, 50, 60, 70], [1, 7], [1, 8, 9, 100, 101], [1, 3, 4]]
MAX_NEW = 20


def _model(architecture: str, **config: Any) -> Any:
    if architecture in ("mixtral", "olmoe"):
        return tiny_moe_lm(architecture, vocab_size=len(tiny_tokenizer()), **config)
    return tiny_causal_lm(architecture, vocab_size=len(tiny_tokenizer()), **config)


def _batch(device: str = "cpu") -> dict[str, Any]:
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"
    encoded = tokenizer.pad({"input_ids": PROMPTS}, padding=True, return_tensors="pt")
    return {key: value.to(device) for key, value in encoded.items()}


def _generate(model: Any, batch: dict[str, Any], eos: list[int], new: int = MAX_NEW) -> Any:
    with torch.inference_mode():
        return model.generate(
            **batch, do_sample=False, max_new_tokens=new, pad_token_id=PAD, eos_token_id=eos
        )


def _static(model: Any, batch: dict[str, Any], eos: list[int], **options: Any) -> Any:
    options.setdefault("max_new_tokens", MAX_NEW)
    return static_generate(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        eos_token_ids=eos,
        pad_token_id=PAD,
        **options,
    )


def _early_eos(model: Any, batch: dict[str, Any]) -> int:
    """A token that ends some rows of the greedy continuation early, but not all."""
    width = batch["input_ids"].shape[1]
    free = _generate(model, batch, [PAD])[:, width:]
    for token in free[1, :6].tolist():
        rows = [token in row[: MAX_NEW - 2] for row in free.tolist()]
        if any(rows) and not all(rows):
            return int(token)
    raise AssertionError("no token ends some rows but not all")


@pytest.fixture(scope="module", params=["llama", "mixtral", "olmoe"])
def model(request: pytest.FixtureRequest) -> Any:
    return _model(request.param)


@pytest.fixture(scope="module")
def llama() -> Any:
    return _model("llama")


def test_equals_generate_without_eos(model: Any) -> None:
    batch = _batch()
    expected = _generate(model, batch, [PAD])
    got = _static(model, batch, [PAD])
    assert got.shape == expected.shape == (len(PROMPTS), batch["input_ids"].shape[1] + MAX_NEW)
    assert torch.equal(got, expected)


def test_equals_generate_when_some_rows_end_early(model: Any) -> None:
    batch = _batch()
    eos = [PAD, _early_eos(model, batch)]
    expected = _generate(model, batch, eos)
    got = _static(model, batch, eos)
    assert torch.equal(got, expected)
    width = batch["input_ids"].shape[1]
    padded = (got[:, width:] == PAD).any(dim=1)
    assert padded.any()
    assert not padded.all()


@pytest.mark.parametrize("every", [1, 3, 64])
def test_stop_check_interval_does_not_change_the_output(llama: Any, every: int) -> None:
    batch = _batch()
    eos = [PAD, _early_eos(llama, batch)]
    expected = _generate(llama, batch, eos)
    assert torch.equal(_static(llama, batch, eos, stop_check_every=every), expected)


def test_every_row_ending_trims_the_columns(llama: Any) -> None:
    batch = _batch()
    width = batch["input_ids"].shape[1]
    first = _generate(llama, batch, [PAD])[:, width + 2].tolist()  # each row's third token
    eos = sorted({PAD, *first})
    expected = _generate(llama, batch, eos)
    got = _static(llama, batch, eos)
    assert got.shape[1] <= width + 3
    assert torch.equal(got, expected)


def test_max_new_tokens_one_and_odd_lengths(llama: Any) -> None:
    batch = _batch()
    for new in (1, 2, 9):
        expected = _generate(llama, batch, [PAD], new)
        assert torch.equal(_static(llama, batch, [PAD], max_new_tokens=new), expected)


def test_eager_attention_uses_an_additive_mask() -> None:
    model = _model("llama")
    model.set_attn_implementation("eager")
    batch = _batch()
    expected = _generate(model, batch, [PAD])
    assert torch.equal(_static(model, batch, [PAD]), expected)
    runner = next(iter(model._goa_static_runners.values()))
    assert runner.mask.dtype == torch.float32


def test_runners_are_kept_per_shape_and_reset(llama: Any) -> None:
    batch = _batch()
    static_decode.release(llama)
    first = _static(llama, batch, [PAD])
    runners = llama._goa_static_runners
    width = batch["input_ids"].shape[1]
    assert list(runners) == [(len(PROMPTS), cache_length(width, 20), False, False)]
    kept = next(iter(runners.values()))
    assert torch.equal(_static(llama, batch, [PAD]), first)  # same runner, reset
    assert next(iter(runners.values())) is kept
    one = {key: value[:1] for key, value in batch.items()}
    assert torch.equal(_static(llama, one, [PAD]), _generate(llama, one, [PAD]))
    assert len(runners) == static_decode.MAX_RUNNERS
    static_decode.release(llama)
    assert not runners


def test_compiled_step_equals_generate() -> None:
    """The step's forward through torch.compile (inductor, on the CPU here) decodes the
    same tokens, rows ending early included; the compiled forward is made once."""
    model = _model("olmoe")
    batch = _batch()
    eos = [PAD, _early_eos(model, batch)]
    expected = _generate(model, batch, eos)
    assert torch.equal(_static(model, batch, eos, compile_step=True), expected)
    forward = static_decode.compiled_forward(model)
    runner = next(iter(model._goa_static_runners.values()))
    assert runner.forward is forward
    assert next(iter(model._goa_static_runners))[3] is True
    assert torch.equal(_static(model, batch, eos, compile_step=True), expected)


def test_cache_length_is_bucketed() -> None:
    assert cache_length(10, 20) == 256
    assert cache_length(200, 56) == 256
    assert cache_length(200, 57) == 512


def test_text_stops_finish_rows_on_the_host(llama: Any) -> None:
    batch = _batch()
    width = batch["input_ids"].shape[1]
    free = _generate(llama, batch, [PAD])[:, width:]
    tokenizer = tiny_tokenizer()
    stop = tokenizer.decode(free[0, 3:5].tolist())  # row 0 says it after 5 tokens
    got = _static(llama, batch, [PAD], stop_check=TextStops(tokenizer, [stop]), stop_check_every=4)
    reply = tokenizer.decode(got[0, width:].tolist(), skip_special_tokens=True)
    assert stop in reply
    # Row 0 was finished at the first check after its stop string: padding follows.
    assert got[0, width + 8 :].eq(PAD).all()
    assert torch.equal(got[0, width : width + 5], free[0, :5])


def test_refused_models_raise() -> None:
    model = _model("llama")
    model.generation_config.repetition_penalty = 1.3
    assert "repetition_penalty" in str(unsupported_reason(model))
    with pytest.raises(StaticDecodeError, match="repetition_penalty"):
        _static(model, _batch(), [PAD])
    model.generation_config.repetition_penalty = 1.0
    assert unsupported_reason(model) is None
    model.config._attn_implementation = "flash_attention_2"
    assert "4-D mask" in str(unsupported_reason(model))


def test_sliding_window_layers_are_refused() -> None:
    model = _model("mistral", sliding_window=4, layer_types=["sliding_attention"] * 2)
    with pytest.raises(StaticDecodeError, match="full attention"):
        _static(model, _batch(), [PAD])


# --- HFModel with GOA_STATIC_DECODE ---------------------------------------------------


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of static_generate (HFModel imports it at each batch)."""
    calls: list[int] = []
    original: Callable[..., Any] = static_decode.static_generate

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(static_decode, "static_generate", wrapper)
    return calls


def _hf(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[HFModel]:
    monkeypatch.setenv("GOA_STATIC_DECODE", "1")
    model = tiny_hf_model(**options)
    assert model.static_decode
    yield model
    model.close()


@pytest.fixture(params=[("llama", True), ("llama", False), ("olmoe", True)])
def hf(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[HFModel]:
    architecture, chat = request.param
    if architecture == "olmoe":
        from goa.testing.tiny_models import tiny_moe_hf_model

        monkeypatch.setenv("GOA_STATIC_DECODE", "1")
        model = tiny_moe_hf_model(architecture="olmoe", chat_template=chat)
        assert model.static_decode
        yield model
        model.close()
    else:
        yield from _hf(monkeypatch, architecture=architecture, chat_template=chat)


def _requests(**params: Any) -> list[ChatRequest]:
    sizes = [3, 17, 9, 30]
    return [
        ChatRequest.of("question " + "x" * (4 * i), max_tokens=n, **params)
        for i, n in enumerate(sizes)
    ]


def test_hf_model_replies_equal_generate(hf: HFModel, counted: list[int]) -> None:
    requests = _requests()
    static = hf.generate(requests)
    assert counted == [1]
    assert hf.static_decode
    hf.static_decode = False
    plain = hf.generate(requests)
    assert counted == [1]
    assert static == plain


def test_hf_model_stop_strings_match_generate(
    monkeypatch: pytest.MonkeyPatch, counted: list[int]
) -> None:
    for model in _hf(monkeypatch):
        plain_model = HFModel(model.model, model.tokenizer, name="plain")
        plain_model.static_decode = False
        free = plain_model.generate(_requests())
        stops = tuple({reply.text[2:4] for reply in free if len(reply.text) > 4})
        requests = _requests(stop=stops)
        static = model.generate(requests)
        assert counted == [1]
        plain = plain_model.generate(requests)
        assert static == plain
        assert any(reply.finish == "stop" for reply in static)
        plain_model.close()


def test_hf_model_sampling_uses_generate(
    monkeypatch: pytest.MonkeyPatch, counted: list[int]
) -> None:
    for model in _hf(monkeypatch):
        replies = model.generate(_requests(temperature=0.8, seed=1))
        assert counted == []
        assert model.static_decode
        assert len(replies) == 4


def test_hf_model_falls_back_and_switches_off(
    monkeypatch: pytest.MonkeyPatch, counted: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    for model in _hf(monkeypatch):
        expected = model.generate(_requests()[:1])  # static
        model.model.generation_config.repetition_penalty = 1.5  # refused from now on
        plain = HFModel(model.model, model.tokenizer, name="plain")
        plain.static_decode = False
        with caplog.at_level("WARNING"):
            replies = model.generate(_requests())
            again = model.generate(_requests())
        assert not model.static_decode
        assert counted == [1, 1]
        assert replies == again == plain.generate(_requests())
        assert sum("static decoding off" in r.message for r in caplog.records) == 1
        assert expected  # the first batch ran the static path
        plain.close()


def test_switch_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOA_STATIC_DECODE", raising=False)
    monkeypatch.delenv("GOA_STATIC_COMPILE", raising=False)
    model = tiny_hf_model()
    assert model.static_decode is False
    assert model.static_compile is False
    model.close()


def test_compile_switch_reaches_static_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []
    original: Callable[..., Any] = static_decode.static_generate

    def wrapper(*args: Any, compile_step: bool = False, **kwargs: Any) -> Any:
        asked.append(compile_step)
        return original(*args, **kwargs)  # uncompiled: the switch is what is tested here

    monkeypatch.setattr(static_decode, "static_generate", wrapper)
    monkeypatch.setenv("GOA_STATIC_COMPILE", "1")
    for model in _hf(monkeypatch):
        assert model.static_compile
        model.generate(_requests()[:2])
        model.static_compile = False
        model.generate(_requests()[:2])
    assert asked == [True, False]


# --- CUDA graphs ---------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("architecture", ["llama", "mixtral", "olmoe"])
def test_cuda_graph_equals_the_uncaptured_step(architecture: str) -> None:
    """MoE models in bf16, as goa loads them on a GPU: torch's grouped_mm in float32 copies
    from the host, which a CUDA graph cannot capture (the backend then falls back to
    generate). The dense model in float32 is also held to generate token for token."""
    from goa.inference.moe import set_experts_implementation

    moe = architecture != "llama"
    model = _model(architecture).to("cuda", torch.bfloat16 if moe else torch.float32)
    set_experts_implementation(model)
    batch = _batch("cuda")
    eos = [PAD, _early_eos(model, batch)]
    eager = _static(model, batch, eos, use_cuda_graph=False)
    captured = _static(model, batch, eos, use_cuda_graph=True)
    runner = next(iter(model._goa_static_runners.values()))
    assert runner.graph is not None
    assert torch.equal(captured, eager)
    assert torch.equal(_static(model, batch, eos, use_cuda_graph=True), eager)  # replayed again
    if not moe:
        assert torch.equal(captured, _generate(model, batch, eos))


@pytest.mark.gpu
def test_cuda_graph_of_the_compiled_step_equals_the_compiled_step() -> None:
    """In bf16, as goa runs MoE models on a GPU (transformers' compiled grouped_mm wants it).
    Against the compiled step without capture: the same kernels, so the same tokens (the
    compiled step against generate is tested on the CPU, in float32)."""
    from goa.inference.moe import set_experts_implementation

    model = _model("olmoe").to("cuda", torch.bfloat16)
    set_experts_implementation(model)
    batch = _batch("cuda")
    eos = [PAD, _early_eos(model, batch)]
    uncaptured = _static(model, batch, eos, use_cuda_graph=False, compile_step=True)
    captured = _static(model, batch, eos, use_cuda_graph=True, compile_step=True)
    assert next(iter(model._goa_static_runners.values())).graph is not None
    assert torch.equal(captured, uncaptured)


def test_experts_hooks_are_detached_only_inside() -> None:
    from goa.inference.moe import ExpertLoad, experts_modules

    model = _model("olmoe")
    load = ExpertLoad.attach(model)
    modules = [module for _, module in experts_modules(model)]
    assert modules
    assert all(module._forward_pre_hooks for module in modules)
    with static_decode._experts_hooks_detached(model):
        assert not any(module._forward_pre_hooks for module in modules)
        _static(model, _batch(), [PAD], max_new_tokens=2)
    assert load.snapshot().layers[0].forwards == 0
    assert all(module._forward_pre_hooks for module in modules)
    _static(model, _batch(), [PAD], max_new_tokens=3)  # no capture on the CPU: every pass counts
    assert load.snapshot().layers[0].forwards == 3
