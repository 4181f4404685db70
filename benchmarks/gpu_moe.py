"""GPU: MoE decode throughput against the memory-bandwidth floor and transformers' ``generate``.

For random models shaped like OLMoE-1B-7B, Qwen1.5-MoE-A2.7B and one dense 7B
(Llama-2-7B), at batch sizes 1-256: decode tokens per second of goa's path
(:meth:`goa.inference.hf_model.HFModel.generate`) and of transformers' own batched
``generate``, each as a fraction of the memory-bandwidth floor measured in the same run.

Shapes (``SHAPES``: the public ``config.json`` values of each model; only what sets
the work per step):

- ``olmoe``: OLMoE-1B-7B (``allenai/OLMoE-1B-7B-0924``, ``olmoe``): 16 layers, hidden
  2048, 16 attention heads (16 KV heads, head 128), 64 experts of intermediate 1024,
  top-8, vocabulary 50304, untied embeddings (6.9 B parameters, 1.3 B active);
- ``qwen15moe``: Qwen1.5-MoE-A2.7B (``qwen2_moe``): 24 layers, hidden 2048, 16 heads
  (16 KV heads), 60 experts of intermediate 1408, top-4, a shared expert of
  intermediate 5632 (with its sigmoid gate), vocabulary 151936, untied (14.3 B, 2.7 B active);
- ``llama2_7b``: Llama-2-7B (``llama``), the dense 7B: 32 layers, hidden 4096, 32 heads
  and 32 KV heads (multi-head attention, so its KV cache is the largest of the
  classic 7Bs), intermediate 11008, vocabulary 32000, untied (6.7 B).

Weights are random, initialised on the device in bf16
(``with torch.device("cuda"): AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)``):
throughput does not depend on weight values, only on the shapes (the router of a
random model spreads tokens over experts roughly evenly, which the measured count
of experts hit shows). The rows of the output projection for the stop tokens are
zeroed, so greedy decoding never picks them (their logit is 0, below the maximum
of the other random logits) and every row of every batch decodes the full length
in both paths.

Measured, per model and batch size ``B`` (same model, same prompt tokens of
``--prompt-tokens`` P each, greedy, ``--new-tokens`` N new tokens per row):

- ``hf``: ``model.generate(input_ids, attention_mask, max_new_tokens=N,
  min_new_tokens=N, do_sample=False)`` with transformers' defaults (its experts
  implementation as ``from_config`` set it, cuDNN attention as torch has it, no hooks);
- ``goa``: :meth:`HFModel.generate` on :class:`~goa.inference.types.ChatRequest` s whose
  prompt (chat template of a byte-level tokenizer) encodes to exactly the same P
  tokens, as goa loads a model: :func:`~goa.inference.moe.set_experts_implementation`,
  :func:`~goa.inference.transformers_backend.configure_attention`, expert-load hooks;
- ``static``: the same with ``GOA_STATIC_DECODE`` on (:mod:`goa.inference.static_decode`:
  a static KV cache, and on a GPU each decoding step replayed as a CUDA graph; the graph
  is captured during the warm-up call; the expert-load hooks count prefill only there).
  When static decoding is refused or its capture fails, HFModel falls back to
  ``generate``, and the path is recorded under ``skipped``;
- ``compiled``: ``static`` with the step's forward through ``torch.compile``
  (``GOA_STATIC_COMPILE``: inductor fuses the small element-wise kernels a CUDA graph
  still runs one by one; compiled during the warm-up call), only for the models of
  ``--compile-models`` at the batch sizes of ``--compile-batches`` (each shape compiles).

The headline metrics (``roofline_fraction_b1``, ``roofline_fraction_b64``,
``speedup_vs_hf_b64``) are of goa's fastest path on the OLMoE shape.

Each path runs a warm-up of the same batch and prompt shape first (``WARMUP_TOKENS``
new tokens), then a prefill-only call (1 new token, time ``t1``) and the full call
(N new tokens, time ``tN``), synchronising the device around each. A decode step
takes ``(tN - t1) / (N - 1)`` (the prefill subtracted), tokens/s is ``B`` over that.

Floor of one decode step at batch ``B`` and context ``L`` (``L = P + N/2``, the mean
context over the decode steps):

- weights touched: every parameter except the routed experts and the input
  embedding, plus per MoE layer the expected number of distinct experts hit
  times one expert's parameters, plus ``B`` rows of the input embedding; for ``B``
  tokens each choosing ``k`` of ``E`` experts uniformly at random, an expert is
  missed by one token with probability ``1 - k/E``, so the expected number hit is
  ``E * (1 - (1 - k/E) ** B)`` (exact under uniform independent routing;
  :func:`expected_experts_hit`); the number measured in goa's run (``ExpertLoad``) is
  reported beside it, with the floor it gives (``floor_ms_measured_experts_*``);
- KV cache read: ``2 * layers * kv_heads * head_dim * L * B * bytes`` (keys and values);
- floor step time = (weight bytes + KV bytes) / copy bandwidth, the bandwidth of a
  device-to-device copy of a ``--copy-mib`` buffer measured in the same run (best of
  ``COPY_REPEATS``; bytes read + bytes written over the time);
- roofline fraction = floor step time / measured step time (1.0 = at the floor).

Out of memory at a batch size (``torch.cuda.OutOfMemoryError``) skips that path at
that batch size (recorded under ``skipped``) and continues. ``--budget-s`` stops
before a batch (or model) predicted not to finish in time; the result file is
rewritten after every batch, so a run cut short still leaves one.

Usage (on the GPU): ``python -m benchmarks.gpu_moe [--batches 1,8,64,256]
[--new-tokens 64] [--prompt-tokens 128] [--budget-s 480]``; writes
``benchmarks/results/gpu-moe.json`` (or ``--out DIR``). CPU smoke test:
``python -m benchmarks.gpu_moe --tiny --batches 1,2 --new-tokens 4 --out /tmp/x``
(``--tiny``: goa's tiny configs; ``--scale F``: the real shapes shrunk); without a
GPU the record is marked ``cpu_smoke`` and ``--out`` is required.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.results_file import gpu_name, machine, write_result

RESULT_NAME = "gpu-moe"
HEADLINE_MODEL = "olmoe"
WARMUP_TOKENS = 4
PATHS = ("hf", "goa", "static", "compiled")
"""transformers' ``generate`` (first: the others are goa's and are compared with it); goa's
default path; goa's path with ``GOA_STATIC_DECODE``; the same with ``GOA_STATIC_COMPILE``."""
PREFIX = {"hf": "hf_", "goa": "", "static": "static_", "compiled": "compiled_"}
"""Metric-name prefix of each path."""
COPY_REPEATS = 10

SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    # allenai/OLMoE-1B-7B-0924 config.json
    "olmoe": (
        "olmoe",
        {
            "vocab_size": 50304,
            "hidden_size": 2048,
            "intermediate_size": 1024,
            "num_hidden_layers": 16,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "num_experts": 64,
            "num_experts_per_tok": 8,
            "norm_topk_prob": False,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": False,
        },
    ),
    # meta-llama/Llama-2-7b-hf config.json
    "llama2_7b": (
        "llama",
        {
            "vocab_size": 32000,
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": False,
        },
    ),
    # Qwen/Qwen1.5-MoE-A2.7B config.json
    "qwen15moe": (
        "qwen2_moe",
        {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "moe_intermediate_size": 1408,
            "shared_expert_intermediate_size": 5632,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "num_experts": 60,
            "num_experts_per_tok": 4,
            "norm_topk_prob": False,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "use_sliding_window": False,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
        },
    ),
}
"""Model key -> (transformers model type, config values), in the order they run
(the slowest last, where a tight budget cuts it short)."""

TINY_VOCAB = 512
"""``--tiny``: :mod:`goa.testing.tiny_models`' shape (``TINY_SHAPE``, and ``TINY_MOE_CONFIGS``
for the MoE models) with a vocabulary of 512 rather than 263, so that it is not the
tokenizer's."""

_INTERMEDIATES = ("intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size")


# --- the floor --------------------------------------------------------------------------


def expected_experts_hit(experts: int, top_k: int, tokens: int) -> float:
    """Expected distinct experts hit in one MoE layer when each of ``tokens`` tokens
    picks ``top_k`` of ``experts`` uniformly at random: ``E * (1 - (1 - k/E) ** B)``."""
    if experts <= 0 or top_k <= 0 or tokens <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - min(top_k, experts) / experts) ** tokens)


@dataclass(frozen=True)
class WeightProfile:
    """Which parameters one decoding step reads."""

    always: int
    """Parameters every step reads: all but the routed experts and the input embedding."""
    moe_layers: int
    experts: int
    top_k: int
    per_expert: int
    """Parameters of one routed expert (in one layer)."""
    embedding_width: int
    """Hidden size when the input embedding is its own matrix (a step reads one row
    per token), 0 when it is tied to the output projection (counted in ``always``)."""
    bytes_per_parameter: int
    embedding: int = 0
    """Parameters of the input embedding when it is its own matrix."""

    @property
    def parameters(self) -> int:
        """All the model's parameters."""
        return self.always + self.moe_layers * self.experts * self.per_expert + self.embedding

    def experts_hit(self, batch: int) -> float:
        """Expected distinct experts hit per MoE layer in one step of ``batch`` tokens."""
        return expected_experts_hit(self.experts, self.top_k, batch)

    def bytes_touched(self, batch: int, experts_hit: float | None = None) -> float:
        """Weight bytes one decoding step of ``batch`` rows reads (``experts_hit``
        distinct experts per MoE layer; default: the expected number)."""
        hit = self.experts_hit(batch) if experts_hit is None else experts_hit
        parameters = (
            self.always + self.moe_layers * hit * self.per_expert + batch * self.embedding_width
        )
        return parameters * self.bytes_per_parameter


def weight_profile(model: Any) -> WeightProfile:
    """The :class:`WeightProfile` of a built model, from its parameters."""
    from goa.inference.moe import experts_modules, experts_per_token

    total = sum(p.numel() for p in model.parameters())  # tied weights counted once
    modules = [module for _, module in experts_modules(model)]
    expert_parameters = sum(p.numel() for m in modules for p in m.parameters())
    experts = int(modules[0].num_experts) if modules else 0
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding
    untied_embedding = 0 if tied else int(embedding.numel())
    return WeightProfile(
        always=int(total - expert_parameters - untied_embedding),
        moe_layers=len(modules),
        experts=experts,
        top_k=experts_per_token(model) if modules else 0,
        per_expert=expert_parameters // (len(modules) * experts) if modules else 0,
        embedding_width=0 if tied else int(embedding.shape[1]),
        bytes_per_parameter=int(embedding.element_size()),
        embedding=untied_embedding,
    )


def kv_bytes(config: Any, *, batch: int, context: int, bytes_per_value: int) -> int:
    """KV cache bytes one step reads: ``2 * layers * kv_heads * head_dim * L * B * bytes``."""
    from goa.inference.memory_budget import kv_cache_bytes

    dtype = {1: "int8", 2: "bfloat16", 4: "float32"}[bytes_per_value]
    return kv_cache_bytes(config, dtype=dtype, max_batch=batch, context_tokens=context)


def floor_ms(step_bytes: float, bandwidth: float) -> float:
    """Milliseconds to move ``step_bytes`` at ``bandwidth`` bytes/s."""
    return 1000.0 * step_bytes / bandwidth


def decode_ms(full_s: float, prefill_s: float, steps: int) -> float:
    """ms per decode step: ``(tN - t1) / (N - 1)``; the whole call over its steps when
    there is no decode step or the difference is not positive (timing noise)."""
    if steps > 1 and full_s > prefill_s:
        return 1000.0 * (full_s - prefill_s) / (steps - 1)
    return 1000.0 * full_s / max(1, steps)


# --- the device -------------------------------------------------------------------------


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text
    )


def copy_bandwidth(device: str, nbytes: int, repeats: int = COPY_REPEATS) -> float:
    """Bytes/s of a device-to-device copy of ``nbytes`` (read + written), best of ``repeats``."""
    import torch

    source = torch.ones(nbytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        if device.startswith("cuda"):
            cuda: Any = torch.cuda  # its Event is untyped
            start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
            start.record()
            target.copy_(source)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1000.0
        else:
            started = time.perf_counter()
            target.copy_(source)
            seconds = time.perf_counter() - started
        best = min(best, seconds)
    del source, target
    free_memory(device)
    return 2 * nbytes / best


# --- models -----------------------------------------------------------------------------


def model_settings(
    key: str, *, tiny: bool = False, scale: float = 1.0
) -> tuple[str, dict[str, Any]]:
    """(model type, config values) of ``key``: the real shape, goa's tiny shape
    (``tiny``), or the real shape shrunk by ``scale`` (layers, heads, hidden and
    intermediate sizes, vocabulary; expert count, top-k and head width kept)."""
    model_type, real = SHAPES[key]
    if tiny:
        from goa.testing.tiny_models import TINY_MOE_CONFIGS, TINY_SHAPE

        base = {"vocab_size": TINY_VOCAB, **TINY_SHAPE}
        return model_type, {**base, **TINY_MOE_CONFIGS.get(model_type, {})}
    settings = dict(real)
    if scale != 1.0:
        heads = int(real["num_attention_heads"])
        width = int(real["hidden_size"]) // heads
        scaled_heads = max(1, round(heads * scale))
        group = heads // int(real["num_key_value_heads"])
        scaled_heads = max(group, scaled_heads - scaled_heads % group)
        settings.update(
            num_hidden_layers=max(1, round(int(real["num_hidden_layers"]) * scale)),
            num_attention_heads=scaled_heads,
            num_key_value_heads=scaled_heads // group,
            hidden_size=scaled_heads * width,
            head_dim=width,
            vocab_size=max(512, round(int(real["vocab_size"]) * scale)),
        )
        for name in _INTERMEDIATES:
            if name in real:
                settings[name] = max(16, 16 * round(int(real[name]) * scale / 16))
    return model_type, settings


def build_model(model_type: str, settings: dict[str, Any], device: str, dtype: Any) -> Any:
    """A causal LM of random weights, initialised directly on ``device``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def never_emit(model: Any, token_ids: Sequence[int]) -> None:
    """Zero the output projection's rows (and biases) of ``token_ids``: their logit is
    then 0, below the largest of the other random logits, so greedy never picks them."""
    import torch

    head = model.get_output_embeddings()
    with torch.no_grad():
        for token in token_ids:
            head.weight[token].zero_()
            if getattr(head, "bias", None) is not None:
                head.bias[token] = 0


# --- the two paths ----------------------------------------------------------------------


@dataclass
class Sides:
    """Switches the model between transformers' defaults and goa's setup."""

    model: Any
    device: str
    hf_experts: str | None
    hf_cudnn: bool | None
    goa: Any = None
    goa_experts: str | None = None

    def as_hf(self) -> None:
        import torch

        if self.goa is not None and self.goa.expert_load is not None:
            self.goa.expert_load.detach()
        if self.hf_experts is not None and hasattr(self.model, "set_experts_implementation"):
            self.model.set_experts_implementation(self.hf_experts)
        if self.hf_cudnn is not None:
            torch.backends.cuda.enable_cudnn_sdp(self.hf_cudnn)

    def as_goa(self) -> None:
        from goa.inference.moe import ExpertLoad, is_moe, set_experts_implementation
        from goa.inference.transformers_backend import configure_attention

        configure_attention(self.device)
        self.goa_experts = set_experts_implementation(self.model)
        if self.goa is not None and is_moe(self.model):
            if self.goa.expert_load is not None:
                self.goa.expert_load.detach()
            self.goa.expert_load = ExpertLoad.attach(self.model)


def cudnn_sdp_enabled() -> bool | None:
    import torch

    check = getattr(torch.backends.cuda, "cudnn_sdp_enabled", None)
    return bool(check()) if callable(check) else None


def _hf_generate(model: Any, ids: Any, mask: Any, new_tokens: int, *, stop_ids: list[int]) -> int:
    """transformers' own batched greedy ``generate``, every row ``new_tokens`` long;
    returns the steps run."""
    import torch
    from transformers import GenerationConfig

    options = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=stop_ids[0],
        eos_token_id=stop_ids,
    )
    with torch.inference_mode():
        output = model.generate(input_ids=ids, attention_mask=mask, generation_config=options)
    return int(output.shape[1] - ids.shape[1])


def _goa_generate(goa: Any, requests: Sequence[Any], new_tokens: int) -> int:
    """goa's path: :meth:`HFModel.generate` of ``requests`` at ``new_tokens``; the steps run."""
    batch = [request.model_copy(update={"max_tokens": new_tokens}) for request in requests]
    steps = int(goa.stats.steps)
    goa.generate(batch)
    return int(goa.stats.steps) - steps


def requests_of_length(
    goa: Any, batch: int, prompt_tokens: int
) -> tuple[list[Any], list[list[int]]]:
    """``batch`` requests whose prompts encode to exactly ``prompt_tokens`` tokens in
    goa (byte-level tokenizer), and those tokens."""
    from goa.inference.types import ChatRequest

    requests: list[Any] = []
    rows: list[list[int]] = []
    for row in range(batch):
        stem = f"{row:06d} "
        overhead = len(goa.encode(goa.prompt_text(ChatRequest.of(stem).messages))) - len(stem)
        content = (stem + "abcdefghij" * (prompt_tokens // 10 + 1))[: prompt_tokens - overhead]
        request = ChatRequest.of(content, max_tokens=1, temperature=0.0)
        tokens = goa.encode(goa.prompt_text(request.messages))
        if len(tokens) != prompt_tokens:
            raise ValueError(f"prompt of {len(tokens)} tokens, not {prompt_tokens}")
        requests.append(request)
        rows.append(tokens)
    return requests, rows


@dataclass
class Timing:
    ms_step: float
    steps: int
    full_s: float
    prefill_s: float


def timed_path(
    run: Callable[[int], int],
    device: str,
    new_tokens: int,
    *,
    before_full: Callable[[], None] | None = None,
) -> Timing:
    """Warm-up, prefill-only call and full call of one path (``run(n)`` decodes ``n``
    tokens per row and returns the steps run; ``before_full`` runs untimed before the
    full call)."""
    run(min(WARMUP_TOKENS, new_tokens))
    synchronize(device)
    started = time.perf_counter()
    run(1)
    synchronize(device)
    prefill_s = time.perf_counter() - started
    if before_full is not None:
        before_full()
    synchronize(device)
    started = time.perf_counter()
    steps = run(new_tokens)
    synchronize(device)
    full_s = time.perf_counter() - started
    return Timing(decode_ms(full_s, prefill_s, steps), steps, full_s, prefill_s)


def measured_experts_hit(goa: Any) -> float | None:
    """Mean distinct experts hit per MoE layer and decode step in goa's last run
    (its prefill pass left out), from :class:`~goa.inference.moe.ExpertLoad`."""
    if goa.expert_load is None:
        return None
    hits: list[int] = []
    for layer in goa.expert_load.snapshot().layers:
        passes = list(layer.recent)
        if layer.forwards <= len(passes):
            passes = passes[1:]  # the first pass of the call is the prefill
        hits.extend(sum(1 for count in counts if count) for counts in passes)
    return sum(hits) / len(hits) if hits else None


# --- the run ----------------------------------------------------------------------------


@dataclass
class Options:
    models: list[str] = field(default_factory=lambda: list(SHAPES))
    batches: list[int] = field(default_factory=lambda: [1, 8, 64, 256])
    new_tokens: int = 64
    prompt_tokens: int = 128
    budget_s: float = 480.0
    sweep_batch: int = 64
    compile_models: list[str] = field(default_factory=lambda: [HEADLINE_MODEL])
    compile_batches: list[int] = field(default_factory=lambda: [1, 64])
    tiny: bool = False
    scale: float = 1.0
    device: str = ""
    dtype: str = ""
    copy_mib: int = 0
    out: Path | None = None
    command: str | None = None

    @property
    def kv_context(self) -> int:
        """Tokens of KV cache a decoding step reads, on average over the steps."""
        return self.prompt_tokens + self.new_tokens // 2


@dataclass
class Run:
    """What one run measured so far, and writes."""

    options: Options
    device: str
    dtype_name: str
    started: float
    bandwidth: float = 0.0
    metrics: dict[str, float | int] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopped_early: bool = False
    first_batch_s: float = 0.0
    """Seconds the latest model took to build and run its first batch size."""

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def remaining(self) -> float:
        return self.options.budget_s - self.elapsed()

    def skip(self, model: str, batch: int | None, path: str, reason: str) -> None:
        self.skipped.append({"model": model, "batch": batch, "path": path, "reason": reason})
        where = f"{model}" + (f" batch {batch}" if batch is not None else "")
        print(f"skipped {where} ({path}): {reason}", flush=True)

    @property
    def smoke(self) -> bool:
        return not self.device.startswith("cuda") or self.options.tiny or self.options.scale != 1


def goals(metrics: dict[str, float | int]) -> dict[str, dict[str, Any]]:
    def met(name: str, target: float) -> bool:
        value = metrics.get(name)
        return value is not None and float(value) >= target

    return {
        "P6_roofline_b64": {
            "target": ">= 0.5 of the memory-bandwidth floor at batch 64 (OLMoE-1B-7B shape)",
            "met": met("roofline_fraction_b64", 0.5),
        },
        "P6_roofline_b1": {
            "target": ">= 0.2 of the memory-bandwidth floor at batch 1 (OLMoE-1B-7B shape)",
            "met": met("roofline_fraction_b1", 0.2),
        },
    }


def write(run: Run) -> Path:
    options = run.options
    metrics = dict(run.metrics)
    # the headline: goa's fastest path (default, static or compiled) on the headline model
    goa_prefixes = [PREFIX[path] for path in PATHS[1:]]
    for batch, name in ((64, "b64"), (1, "b1")):
        fractions = [
            metrics.get(f"{prefix}roofline_fraction_{HEADLINE_MODEL}_b{batch}")
            for prefix in goa_prefixes
        ]
        values = [float(v) for v in fractions if v is not None]
        if values:
            metrics[f"roofline_fraction_{name}"] = max(values)
    speedups = [
        metrics.get(f"{prefix}speedup_vs_hf_{HEADLINE_MODEL}_b64") for prefix in goa_prefixes
    ]
    if any(v is not None for v in speedups):
        metrics["speedup_vs_hf_b64"] = max(float(v) for v in speedups if v is not None)
    notes = [
        "Random weights (initialised on the device): decode throughput does not depend on "
        "weight values, only on the shapes; the stop tokens' output rows are zeroed so every "
        "row decodes the full length.",
        "tok_s = batch / decode step; ms_step = (t(N new tokens) - t(1 new token)) / (N - 1), "
        "the prefill subtracted; roofline_fraction = floor_ms / ms_step; metrics without "
        "a prefix are goa's path (HFModel.generate), static_ ones the same with "
        "GOA_STATIC_DECODE (a static cache and, on a GPU, each decoding step replayed as a "
        "CUDA graph), compiled_ ones static_ with the step's forward through torch.compile "
        "(GOA_STATIC_COMPILE), hf_ ones transformers' generate; the headline "
        "roofline_fraction_b1/_b64 and speedup_vs_hf_b64 are of goa's fastest path on the "
        "OLMoE shape.",
        "floor: (weights touched + KV cache read) / copy bandwidth; weights touched = all "
        "parameters but the routed experts and input embedding, + per MoE layer "
        "E*(1-(1-k/E)^B) experts (expected distinct experts hit by B tokens routed "
        "uniformly to top-k of E), + B embedding rows; KV = 2*layers*kv_heads*head_dim*L*B "
        "bytes-per-value with L = prompt + new_tokens/2.",
    ]
    if run.smoke:
        notes.append(
            "cpu_smoke: not the benchmark (no GPU, or shrunk shapes): it only checks the "
            "script runs; its numbers say nothing about the H200."
        )
    gpu = gpu_name() if run.device.startswith("cuda") else None
    extra: dict[str, Any] = {
        "note": " ".join(notes),
        "cpu_smoke": run.smoke,
        "device": run.device,
        "dtype": run.dtype_name,
        "batches": options.batches,
        "new_tokens": options.new_tokens,
        "prompt_tokens": options.prompt_tokens,
        "context_tokens_for_kv": options.kv_context,
        "budget_s": options.budget_s,
        "elapsed_s": round(run.elapsed(), 1),
        "stopped_early": run.stopped_early,
        "models": run.models,
        "skipped": run.skipped,
    }
    return write_result(
        RESULT_NAME,
        metrics=metrics,
        goals=goals(metrics),
        simulated=False,
        extra=extra,
        command=options.command,
        machine_text=machine() + (f"; GPU {gpu}" if gpu else ""),
        directory=options.out,
    )


def _sig(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits."""
    return float(f"{value:.{digits}g}")


def measure_batch(
    run: Run, key: str, batch: int, model: Any, sides: Sides, profile: WeightProfile
) -> None:
    """Both paths at one batch size; metrics into ``run``."""
    options, device = run.options, run.device
    goa = sides.goa
    requests, rows = requests_of_length(goa, batch, options.prompt_tokens)
    stop_ids = sorted(goa._stop_ids())
    timings: dict[str, Timing] = {}
    hit_measured: float | None = None
    for path in PATHS:
        try:
            if path == "hf":
                import torch

                sides.as_hf()
                ids = torch.tensor(rows, dtype=torch.long, device=device)
                mask = torch.ones_like(ids)
                timings[path] = timed_path(
                    functools.partial(_hf_generate, model, ids, mask, stop_ids=stop_ids),
                    device,
                    options.new_tokens,
                )
                del ids, mask
            elif path in ("static", "compiled"):
                compiled = path == "compiled"
                if compiled and (
                    key not in options.compile_models or batch not in options.compile_batches
                ):
                    continue
                timing = _static_timing(
                    sides, requests, device, options.new_tokens, run, key, compiled=compiled
                )
                if timing is None:
                    run.skip(key, batch, path, "static decoding refused or failed (see the log)")
                else:
                    timings[path] = timing
            else:
                sides.as_goa()
                load = goa.expert_load
                timings[path] = timed_path(
                    functools.partial(_goa_generate, goa, requests),
                    device,
                    options.new_tokens,
                    before_full=load.reset if load is not None else None,
                )
                hit_measured = measured_experts_hit(goa)
        except Exception as exc:
            reason = "out of memory" if is_oom(exc) else f"error: {type(exc).__name__}: {exc}"
            if not is_oom(exc):
                traceback.print_exc()
            run.skip(key, batch, path, reason[:500])
        finally:
            free_memory(device)
    weights = profile.bytes_touched(batch)
    kv = step_kv_bytes(run, model, profile, batch)
    floor = floor_ms(weights + kv, run.bandwidth)
    m, suffix = run.metrics, f"{key}_b{batch}"
    m[f"floor_ms_{suffix}"] = _sig(floor)
    m[f"weight_gb_{suffix}"] = _sig(weights / 1e9)
    m[f"kv_gb_{suffix}"] = _sig(kv / 1e9)
    if profile.moe_layers:
        m[f"experts_hit_expected_{suffix}"] = round(profile.experts_hit(batch), 2)
        if hit_measured is not None:
            m[f"experts_hit_measured_{suffix}"] = _sig(hit_measured)
            # the floor with the experts goa's run really hit (rows that decode the same
            # token route alike, so a random model can hit fewer than expected)
            measured_bytes = profile.bytes_touched(batch, experts_hit=hit_measured) + kv
            m[f"floor_ms_measured_experts_{suffix}"] = _sig(floor_ms(measured_bytes, run.bandwidth))
    for path, timing in timings.items():
        prefix = PREFIX[path]
        m[f"{prefix}ms_step_{suffix}"] = _sig(timing.ms_step)
        m[f"{prefix}tok_s_{suffix}"] = round(1000.0 * batch / timing.ms_step, 1)
        m[f"{prefix}roofline_fraction_{suffix}"] = _sig(floor / timing.ms_step)
        m[f"{prefix}steps_{suffix}"] = timing.steps
        m[f"{prefix}prefill_s_{suffix}"] = _sig(timing.prefill_s)
    for path in PATHS[1:]:  # goa's paths against transformers' generate
        if "hf" in timings and path in timings:
            m[f"{PREFIX[path]}speedup_vs_hf_{suffix}"] = _sig(
                timings["hf"].ms_step / timings[path].ms_step
            )
    shown = ", ".join(
        f"{path} {t.ms_step:.2f} ms/step ({floor / t.ms_step:.1%} of floor)"
        for path, t in timings.items()
    )
    print(f"{key} batch {batch}: floor {floor:.3f} ms; {shown or 'nothing measured'}", flush=True)


def _static_timing(
    sides: Sides,
    requests: Sequence[Any],
    device: str,
    new_tokens: int,
    run: Run,
    key: str,
    *,
    compiled: bool = False,
) -> Any:
    """goa's path with ``GOA_STATIC_DECODE`` on (:mod:`goa.inference.static_decode`: a static
    cache and, on a GPU, the step as a CUDA graph; ``compiled``: its forward through
    ``torch.compile`` as well); None when the model fell back to ``generate`` (refused, or
    the capture failed: HFModel logs why). Records in the model's entry whether the timed
    call replayed a captured graph (``static_graph`` or ``compiled_graph``, by batch) and,
    when compiled, the seconds of the warm-up call that compiled (``compile_s``)."""
    from goa.inference.static_decode import captured_graphs, release

    goa = sides.goa
    sides.as_goa()
    goa.static_decode, goa.static_compile = True, compiled
    started = time.perf_counter()
    try:
        timing = timed_path(functools.partial(_goa_generate, goa, requests), device, new_tokens)
        entry = run.models[key]
        graphs = entry.setdefault("compiled_graph" if compiled else "static_graph", {})
        graphs[str(len(requests))] = captured_graphs(goa.model) > 0
        if compiled:
            warmup_s = time.perf_counter() - started - timing.full_s - timing.prefill_s
            entry.setdefault("compile_s", {})[str(len(requests))] = round(warmup_s, 1)
        return timing if goa.static_decode else None
    finally:
        goa.static_decode, goa.static_compile = False, False
        release(goa.model)


def step_kv_bytes(run: Run, model: Any, profile: WeightProfile, batch: int) -> int:
    """KV-cache bytes one decoding step of ``batch`` rows reads (at the mean context)."""
    return kv_bytes(
        model.config,
        batch=batch,
        context=run.options.kv_context,
        bytes_per_value=profile.bytes_per_parameter,
    )


def sweep_kernels(
    run: Run, key: str, batch: int, model: Any, sides: Sides, profile: WeightProfile
) -> None:
    """goa's path at ``batch`` with each experts implementation
    (:data:`~goa.inference.moe.EXPERTS_IMPLEMENTATIONS`): which kernel the MoE time is in,
    and whether goa's choice is the fastest here. Metrics ``ms_step_<key>_b<batch>_<impl>``;
    the model is left with goa's choice."""
    from goa.inference.moe import EXPERTS_IMPLEMENTATIONS, set_experts_implementation

    options, goa = run.options, sides.goa
    requests, _ = requests_of_length(goa, batch, options.prompt_tokens)
    floor = floor_ms(
        profile.bytes_touched(batch) + step_kv_bytes(run, model, profile, batch), run.bandwidth
    )
    sides.as_goa()
    chosen = sides.goa_experts
    try:
        for impl in EXPERTS_IMPLEMENTATIONS:
            if run.remaining() < 30:
                run.skip(key, batch, f"goa-{impl}", "budget")
                continue
            set_experts_implementation(model, impl)
            try:
                timing = timed_path(
                    functools.partial(_goa_generate, goa, requests), run.device, options.new_tokens
                )
            except Exception as exc:
                reason = "out of memory" if is_oom(exc) else f"error: {type(exc).__name__}: {exc}"
                run.skip(key, batch, f"goa-{impl}", reason[:500])
                continue
            finally:
                free_memory(run.device)
            run.metrics[f"ms_step_{key}_b{batch}_{impl}"] = _sig(timing.ms_step)
            run.metrics[f"roofline_fraction_{key}_b{batch}_{impl}"] = _sig(floor / timing.ms_step)
            print(f"{key} batch {batch} experts {impl}: {timing.ms_step:.2f} ms/step", flush=True)
    finally:
        set_experts_implementation(model, chosen)


def measure_model(run: Run, key: str, dtype: Any) -> None:
    from goa.inference.hf_model import HFModel
    from goa.inference.memory_budget import parameter_count
    from goa.inference.moe import is_moe
    from goa.inference.transformers_backend import reserve_gpu_memory
    from goa.testing.tiny_models import tiny_tokenizer

    options, device = run.options, run.device
    model_type, settings = model_settings(key, tiny=options.tiny, scale=options.scale)
    started, model_started = time.perf_counter(), run.elapsed()
    model = build_model(model_type, settings, device, dtype)
    reserve_gpu_memory(device)  # GOA_CUDA_RESERVE_GB, as goa's load_model does
    tokenizer = tiny_tokenizer(chat_template=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    never_emit(model, sorted({int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)}))
    hf_experts = getattr(model.config, "_experts_implementation", None)
    sides = Sides(model, device, hf_experts if is_moe(model) else None, cudnn_sdp_enabled())
    goa = HFModel(model, tokenizer, name=key, max_batch=max(options.batches))
    sides.goa = goa
    profile = weight_profile(model)
    build_s = time.perf_counter() - started
    run.models[key] = {
        "model_type": model_type,
        "config": settings,
        "parameters": profile.parameters,
        "parameter_count_from_config": parameter_count(model.config),
        "moe_layers": profile.moe_layers,
        "experts": profile.experts,
        "top_k": profile.top_k,
        "parameters_per_expert": profile.per_expert,
        "build_s": round(build_s, 1),
        "hf_experts_implementation": hf_experts,
    }
    print(
        f"{key}: {profile.parameters / 1e6:,.1f} M parameters, built in {build_s:.1f} s", flush=True
    )
    last: tuple[int, float] | None = None
    try:
        for batch in options.batches:
            if last is not None:
                previous_batch, previous_s = last
                predicted = previous_s * max(1.0, (batch / previous_batch) ** 0.5)
            else:
                predicted = 0.0
            if run.remaining() <= predicted:
                run.stopped_early = True
                run.skip(
                    key,
                    batch,
                    "both",
                    f"budget: {run.remaining():.0f} s left, about {predicted:.0f} s needed",
                )
                continue
            batch_started = run.elapsed()
            measure_batch(run, key, batch, model, sides, profile)
            last = (batch, run.elapsed() - batch_started)
            if batch == options.batches[0]:
                run.first_batch_s = run.elapsed() - model_started
            run.models[key]["goa_experts_implementation"] = sides.goa_experts
            write(run)
        if profile.moe_layers and options.sweep_batch in options.batches:
            sweep_kernels(run, key, options.sweep_batch, model, sides, profile)
            write(run)
    finally:
        goa.close()
        goa.join()
        if goa.expert_load is not None:
            goa.expert_load.detach()
        sides.as_hf()
        del goa, sides, model
        free_memory(device)


def run_benchmark(options: Options) -> Path:
    """Measure every model at every batch size (within the budget); write and return
    the result file."""
    import torch

    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = options.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    dtype = getattr(torch, dtype_name)
    run = Run(options, device, dtype_name, time.perf_counter())
    copy_mib = options.copy_mib or (2048 if device.startswith("cuda") else 64)
    run.bandwidth = copy_bandwidth(device, copy_mib * 2**20)
    run.metrics["copy_bandwidth_gb_s"] = round(run.bandwidth / 1e9, 1)
    print(f"{device}: copy bandwidth {run.bandwidth / 1e9:,.1f} GB/s", flush=True)
    write(run)
    for key in options.models:
        # the last model's build and first batch predict this one's (none: no estimate)
        if run.remaining() <= run.first_batch_s:
            run.stopped_early = True
            run.skip(key, None, "both", f"budget: {max(0.0, run.remaining()):.0f} s left")
            continue
        try:
            measure_model(run, key, dtype)
        except Exception as exc:
            reason = "out of memory" if is_oom(exc) else f"error: {type(exc).__name__}: {exc}"
            if not is_oom(exc):
                traceback.print_exc()
            run.skip(key, None, "both", reason[:500])
            free_memory(device)
        write(run)
    return write(run)


def parse(argv: Sequence[str] | None = None) -> Options:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", default=",".join(SHAPES), help=f"of {', '.join(SHAPES)}")
    parser.add_argument("--batches", default="1,8,64,256")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument(
        "--sweep-batch",
        type=int,
        default=64,
        help="MoE models: goa's path at this batch size with every experts kernel (0: none)",
    )
    parser.add_argument(
        "--compile-models",
        default=HEADLINE_MODEL,
        help="models also timed with the compiled static step ('' for none)",
    )
    parser.add_argument(
        "--compile-batches", default="1,64", help="batch sizes of the compiled static step"
    )
    parser.add_argument("--tiny", action="store_true", help="goa's tiny configs (CPU tests)")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the real shapes")
    parser.add_argument("--device", default="", help="default: cuda if there is one, else cpu")
    parser.add_argument("--dtype", default="", help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--copy-mib", type=int, default=0, help="default: 2048 on cuda, 64 on cpu")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in SHAPES]
    if unknown:
        parser.error(f"unknown models {unknown}: choose from {', '.join(SHAPES)}")
    compile_models = [m for m in args.compile_models.split(",") if m]
    if set(compile_models) - set(SHAPES):
        parser.error(f"--compile-models: choose from {', '.join(SHAPES)}")
    batches = [int(b) for b in args.batches.split(",") if b]
    if not batches or min(batches) < 1:
        parser.error("--batches: positive integers")
    if args.new_tokens < 2 or args.prompt_tokens < 16:
        parser.error("--new-tokens at least 2, --prompt-tokens at least 16")
    if not 0 < args.scale <= 1:
        parser.error("--scale: in (0, 1]")
    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if args.out is None and (not cuda or args.tiny or args.scale != 1):
        parser.error(
            "without a GPU (or with --tiny/--scale) give --out: a smoke run "
            "does not write into benchmarks/results"
        )
    return Options(
        models=models,
        batches=batches,
        new_tokens=args.new_tokens,
        prompt_tokens=args.prompt_tokens,
        budget_s=args.budget_s,
        sweep_batch=args.sweep_batch,
        compile_models=compile_models,
        compile_batches=[int(b) for b in args.compile_batches.split(",") if b],
        tiny=args.tiny,
        scale=args.scale,
        device=args.device,
        dtype=args.dtype,
        copy_mib=args.copy_mib,
        out=args.out,
        command="python -m benchmarks.gpu_moe " + " ".join(sys.argv[1:] if argv is None else argv),
    )


def main(argv: Sequence[str] | None = None) -> None:
    path = run_benchmark(parse(argv))
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
