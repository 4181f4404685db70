"""Greedy decoding with a static KV cache and, on a GPU, the decoding step replayed as a CUDA graph.

Why. ``model.generate`` decodes one token per step through Python: every step
builds an attention mask, grows a dynamic KV cache by concatenation, runs the
logits processors and stopping criteria and launches hundreds of small kernels,
one by one. On an H200 that per-step overhead, not memory bandwidth, bounds
decoding (a 1B-active-parameter MoE decodes at 25 ms per step where reading its
weights takes 0.6 ms). :func:`static_generate` removes it for greedy decoding:
fixed shapes everywhere, so the whole step can be captured once as a CUDA graph
and replayed with a single launch.

Design. For a left-padded batch of ``B`` prompts of width ``P``:

- the KV cache is a transformers ``StaticCache`` of ``L`` slots per row (``L``:
  ``P + max_new_tokens`` rounded up to a multiple of :data:`LENGTH_STEP`). Its
  layers write each step's keys and values at their own on-device counter (slot
  ``P``, ``P + 1``, ...), so nothing about the position lives on the host;
- prefill is one ordinary forward over the padded prompts (the 2-D padding mask,
  positions counted from each row's first real token, as ``generate`` does); its
  last logits give the first new token;
- each decoding step reads preallocated buffers: the token ids ``[B, 1]``, the
  positions ``[B, 1]``, the slot being written ``[1]`` and a 4-D attention mask
  ``[B, 1, 1, L]`` (boolean for ``sdpa``, additive for ``eager``). transformers
  passes a 4-D mask through untouched, so the step does no host work that
  depends on data. The step opens the mask at the slot it writes, runs the
  model (logits of the last position only), takes the argmax on the device,
  replaces it by the pad token in finished rows, marks rows that produced an
  end-of-sequence token as finished, writes the token to an output buffer
  ``[B, L]`` and into the input buffer for the next step, and advances the
  positions, the slot and the output column, all in place;
- the host asks whether every row has finished only every ``stop_check_every``
  steps (one synchronisation); steps run past the last row's end produce only
  pad tokens and are cut off, so the result equals ``generate``'s: the prompt
  columns, then the new tokens, rows that ended padded after their
  end-of-sequence token, as many columns as the longest row needed.

What is captured. On CUDA (``use_cuda_graph`` None means: when the model is on a
GPU) the step runs :data:`WARMUP_STEPS` times eagerly on a side stream (the state
they change is saved and restored), then once under ``torch.cuda.CUDAGraph``
capture; each later step is one ``replay()``. Everything the step does is in the
graph: the embedding, every layer (attention over all ``L`` slots, the mask
hiding the unused ones), the MoE routers and experts, the head, the argmax and
the bookkeeping. Prefill is not captured (its shape changes with every batch).
Capture uses ``capture_error_mode="thread_local"``, so other threads (other
models of the same process) may keep using the GPU meanwhile. On the CPU the
same step function runs without capture, so CPU tests exercise everything but
the capture itself.

Reuse and memory. A captured graph points at its cache and buffers, so they are
kept together (a runner) on the model object, keyed by ``(B, L)`` (``L``
bucketed, so batches of similar lengths share one graph) and reset for each
batch; at most :data:`MAX_RUNNERS` are kept, the oldest dropped before a new
one is made. A runner holds the KV cache, ``2 x layers x B x kv_heads x L x
head_dim`` values of the model's dtype: for an OLMoE-1B-7B-shaped model (16
layers, 16 KV heads of 128, bf16) 128 KiB per slot, so 17 GiB at ``B = 64, L =
2048``; for a dense 7B of 32 layers and 32 KV heads 512 KiB per slot. That is
what ``generate``'s dynamic cache reaches at the end of the same batch, but held
from the first step and kept between batches (:func:`release` frees it; an
out-of-memory error frees it too before it is raised). The graph's own memory
pool holds one step's activations (logits ``B x vocab`` and smaller), and the
output buffer ``B x L`` token ids.

Compiled steps. With ``compile_step=True`` the step calls the model through
``torch.compile(model.forward, dynamic=False)`` (made once per model and kept on
it): inductor fuses the small element-wise kernels of each layer (the norms, the
rotary embedding, the router's softmax and top-k) that the eager step launches one
by one (the step's own bookkeeping, a dozen kernels per step, stays eager). A CUDA
graph removes the launch cost but not the kernels: on an H200 the eager step of an
OLMoE-1B-7B shape at batch 1 took 4.3 ms against a 0.6 ms bandwidth floor, about 230
us per layer above it (by our estimate some 50-60 kernels of a few microseconds
each). The first step of each new ``(B, L)`` compiles (seconds to minutes; dynamo
recompiles per shape, and past its cache limit runs that shape eagerly); prefill is
not compiled. A compilation error is raised as :class:`StaticDecodeError` where it
happens during warm-up (on a GPU) and propagates from the first step otherwise;
HFModel then falls back to ``generate`` either way.

Limits.

- Greedy only, and only the processing greedy ``generate`` does by default:
  a model whose generation config asks for a logits processor that changes the
  argmax (repetition penalty, banned or suppressed tokens, a minimum length,
  ...) is refused (:func:`unsupported_reason`), as are attention
  implementations other than ``sdpa`` and ``eager`` (flash attention takes no
  4-D mask) and models whose cache is not all full-attention ``StaticLayer``
  (sliding windows, linear attention: Gemma 2/3, Qwen3-Next, ...).
- Stopping: end-of-sequence tokens are handled inside the step. Stop strings
  are not: they can be checked on the host every ``stop_check_every`` steps by
  ``stop_check`` (:class:`TextStops`), which marks rows finished up to
  ``stop_check_every - 1`` steps after ``generate``'s stopping criteria would,
  so a row's tokens after its stop string differ from ``generate``'s (which
  pads them); callers cut the text at the stop string either way (as
  ``HFModel._reply`` does). Without ``stop_check`` decoding of such a row goes
  on until end-of-sequence or ``max_new_tokens``.
- Anything in the step that synchronises with the host (a data-dependent
  shape: the ``eager`` experts loop of MoE models, a dynamic rotary scaling)
  makes the capture fail with an error; callers fall back to ``generate``.
  transformers' ``grouped_mm`` and ``batched_mm`` experts do not synchronise.
- Forward hooks of the experts modules (goa's :class:`~goa.inference.moe.ExpertLoad`)
  are detached while warming up and capturing, since the Python side of a hook
  does not run on replay: with a CUDA graph, expert load counts prefill passes
  only. So it does with a compiled step (dynamo would recompile the step for every
  count the hook keeps). Otherwise (CPU, not compiled) they count every step, as
  with ``generate``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

LENGTH_STEP = 256
"""Cache lengths are rounded up to a multiple of this, so that graphs are reused."""
MAX_RUNNERS = 1
"""Captured graphs (each with its KV cache) kept per model."""
WARMUP_STEPS = 3
"""Eager steps on a side stream before capture (allocator and kernel warm-up)."""
STOP_CHECK_EVERY = 8
"""Default number of steps between the host's checks for finished rows."""
TEXT_STOP_WINDOW = 24
"""Tokens at the end of each row that :class:`TextStops` decodes (16 + 8 steps)."""
_RUNNERS = "_goa_static_runners"
_COMPILED = "_goa_static_compiled_forward"
_MASKED_ATTENTION = ("sdpa", "eager")
_GREEDY_NEUTRAL: dict[str, tuple[object, ...]] = {
    # generation-config fields that change greedy decoding, with their neutral values
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "watermarking_config": (None,),
}

log = logging.getLogger(__name__)


class StaticDecodeError(RuntimeError):
    """The static path cannot decode for this model (refused, or the capture failed);
    the caller should use ``generate``."""


def unsupported_reason(model: Any) -> str | None:
    """Why :func:`static_generate` refuses ``model`` (module docs), or None."""
    attention = _attention(model)
    if attention not in _MASKED_ATTENTION:
        return f"attention implementation {attention!r} takes no 4-D mask"
    generation = getattr(model, "generation_config", None)
    for name, neutral in _GREEDY_NEUTRAL.items():
        value = getattr(generation, name, None)
        if value not in neutral and value != []:
            return f"generation config sets {name}={value!r}"
    return None


def _attention(model: Any) -> str:
    """The model's attention implementation (transformers' default when unset: eager)."""
    return getattr(model.config, "_attn_implementation", None) or "eager"


def release(model: Any) -> None:
    """Drop the captured graphs and KV caches kept on ``model``."""
    runners = getattr(model, _RUNNERS, None)
    if runners is not None:
        runners.clear()


def captured_graphs(model: Any) -> int:
    """How many CUDA graphs of decoding steps ``model`` keeps now (0 on a CPU)."""
    runners = getattr(model, _RUNNERS, None) or {}
    return sum(1 for runner in runners.values() if runner.graph is not None)


def cache_length(prompt_width: int, max_new_tokens: int) -> int:
    """Slots of the static cache for a batch: prompt plus new tokens, rounded up."""
    needed = prompt_width + max_new_tokens
    return -(-needed // LENGTH_STEP) * LENGTH_STEP


def static_generate(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    stop_check_every: int = STOP_CHECK_EVERY,
    use_cuda_graph: bool | None = None,
    stop_check: Callable[[Any], Any] | None = None,
    compile_step: bool = False,
) -> Any:
    """Greedy decoding of a left-padded batch, as ``model.generate(do_sample=False)``
    returns it (module docs). ``stop_check`` gets the new tokens so far ``[B, n]``
    every ``stop_check_every`` steps and returns which rows to finish (a bool
    tensor ``[B]``); ``compile_step`` runs the step's forward through
    ``torch.compile`` (module docs). Raises :class:`StaticDecodeError` when the model is refused or
    the capture fails; ``torch.cuda.OutOfMemoryError`` after releasing the graphs."""
    import torch

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
    if stop_check_every < 1:
        raise ValueError(f"stop_check_every must be at least 1, not {stop_check_every}")
    reason = unsupported_reason(model)
    if reason is not None:
        raise StaticDecodeError(reason)
    graph = input_ids.device.type == "cuda" if use_cuda_graph is None else use_cuda_graph
    batch, width = (int(n) for n in input_ids.shape)
    try:
        with torch.inference_mode():
            length = cache_length(width, max_new_tokens)
            runner = _runner(model, batch, length, graph, compile_step)
            runner.prefill(input_ids, attention_mask, eos_token_ids, pad_token_id)
            if graph and runner.graph is None and max_new_tokens > 1:
                runner.capture()
            columns = _decode(runner, max_new_tokens, stop_check_every, stop_check)
            return torch.cat([input_ids, runner.result(columns)], dim=1)
    except torch.cuda.OutOfMemoryError:
        release(model)
        raise


def _decode(
    runner: _Runner, max_new_tokens: int, every: int, stop_check: Callable[[Any], Any] | None
) -> int:
    """Run steps until every row finished or ``max_new_tokens``; the columns written."""
    columns = 1  # prefill wrote the first new token
    while columns < max_new_tokens:
        steps = min(every, max_new_tokens - columns)
        for _ in range(steps):
            runner.run_step()
        columns += steps
        if stop_check is not None:
            runner.finish(stop_check(runner.out[:, :columns]))
        if bool(runner.finished.all()):
            break
    return columns


def _runner(model: Any, batch: int, length: int, graph: bool, compiled: bool) -> _Runner:
    """The kept runner for ``(batch, length, graph, compiled)``, or a new one (older ones
    dropped)."""
    runners: OrderedDict[tuple[int, int, bool, bool], _Runner] | None = getattr(
        model, _RUNNERS, None
    )
    if runners is None:
        runners = OrderedDict()
        setattr(model, _RUNNERS, runners)
    key = (batch, length, graph, compiled)
    if key in runners:
        runners.move_to_end(key)
        return runners[key]
    while len(runners) >= MAX_RUNNERS:
        runners.popitem(last=False)  # free the old cache before allocating a new one
    runner = _Runner(model, batch, length, compiled_forward(model) if compiled else model)
    runners[key] = runner
    return runner


def compiled_forward(model: Any) -> Any:
    """``torch.compile(model.forward, dynamic=False)``, made once and kept on ``model``."""
    import torch

    forward = getattr(model, _COMPILED, None)
    if forward is None:
        forward = torch.compile(model.forward, dynamic=False)
        setattr(model, _COMPILED, forward)
    return forward


class _Runner:
    """A static cache, the step's buffers and (once captured) the CUDA graph of the step."""

    def __init__(self, model: Any, batch: int, length: int, forward: Any) -> None:
        import torch
        from transformers import StaticCache
        from transformers.cache_utils import StaticLayer

        self.model, self.batch, self.length = model, batch, length
        self.forward = forward
        """What a step calls: the model, or its compiled forward."""
        parameter = next(model.parameters())
        device, dtype = parameter.device, parameter.dtype
        self.cache = StaticCache(config=model.config, max_cache_len=length)
        kinds = {type(layer).__name__ for layer in self.cache.layers}
        if any(type(layer) is not StaticLayer for layer in self.cache.layers):
            raise StaticDecodeError(f"cache layers {sorted(kinds)} are not all full attention")
        attention = _attention(model)
        if attention == "sdpa":
            self.mask = torch.zeros((batch, 1, 1, length), dtype=torch.bool, device=device)
            self.allow: float | bool = True
        else:  # eager: added to the scores
            self.mask = torch.zeros((batch, 1, 1, length), dtype=dtype, device=device)
            self.allow = 0.0
        self.hide: float | bool = False if attention == "sdpa" else torch.finfo(dtype).min
        long = {"dtype": torch.long, "device": device}
        self.ids = torch.zeros((batch, 1), **long)
        self.positions = torch.zeros((batch, 1), **long)
        self.slot = torch.zeros((1,), **long)
        self.column = torch.zeros((1,), **long)
        self.pad = torch.zeros((1,), **long)
        self.out = torch.zeros((batch, length), **long)
        self.ended = torch.zeros((batch,), **long)
        self.finished = torch.zeros((batch,), dtype=torch.bool, device=device)
        vocab = int(model.get_output_embeddings().weight.shape[0])
        self.eos = torch.zeros((vocab,), dtype=torch.bool, device=device)
        self.graph: Any = None

    # --- per batch -------------------------------------------------------------------

    def prefill(
        self, input_ids: Any, attention_mask: Any, eos_token_ids: Sequence[int], pad: int
    ) -> None:
        """Reset the state, run the prompts and take the first new token."""
        import torch

        width = int(input_ids.shape[1])
        self.cache.reset()
        self.eos.zero_()
        ids = [i for i in eos_token_ids if 0 <= i < self.eos.shape[0]]
        if ids:
            self.eos[torch.tensor(ids, device=self.eos.device)] = True
        self.pad.fill_(pad)
        self.out.fill_(pad)
        self.ended.fill_(self.length)
        self.finished.zero_()
        self.column.zero_()
        self.slot.fill_(width)
        mask = attention_mask.to(torch.long)
        positions = mask.cumsum(dim=1) - 1
        positions.masked_fill_(mask == 0, 1)  # as generate does
        self.positions.copy_(mask.sum(dim=1, keepdim=True))
        self.mask.fill_(self.hide)
        self.mask[:, 0, 0, :width].masked_fill_(mask.bool(), self.allow)
        logits = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        self._advance(logits[:, -1])

    def result(self, columns: int) -> Any:
        """The new tokens: as many columns as the longest row needed (at most ``columns``)."""
        last = int(self.ended.max())
        return self.out[:, : min(columns, last + 1)].clone()

    def finish(self, rows: Any) -> None:
        """Mark ``rows`` (bool ``[B]``) finished after the last column written."""
        import torch

        rows = rows.to(self.finished.device) & ~self.finished
        self.ended.copy_(torch.where(rows, self.column - 1, self.ended))
        self.finished |= rows

    # --- the step --------------------------------------------------------------------

    def step(self) -> None:
        """One decoding step on the buffers (what the CUDA graph captures)."""
        self.mask.index_fill_(3, self.slot, self.allow)
        logits = self.forward(
            input_ids=self.ids,
            attention_mask=self.mask,
            position_ids=self.positions,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        self._advance(logits[:, -1])
        self.slot += 1
        self.positions += 1

    def _advance(self, logits: Any) -> None:
        """Greedy token from the last logits ``[B, V]`` and the finished rows' bookkeeping."""
        import torch

        token = torch.where(self.finished, self.pad, logits.argmax(dim=-1))
        ended = self.finished | self.eos[token]
        self.ended.copy_(torch.where(ended & ~self.finished, self.column, self.ended))
        self.finished.copy_(ended)
        self.out.index_copy_(1, self.column, token[:, None])
        self.ids.copy_(token[:, None])
        self.column += 1

    def run_step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif self.forward is not self.model:  # compiled, not captured (module docs)
            with _experts_hooks_detached(self.model):
                self.step()
        else:
            self.step()

    def capture(self) -> None:
        """Warm the step up on a side stream and capture it; the state is restored."""
        import torch

        saved = self._state()
        try:
            with _experts_hooks_detached(self.model):
                stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(WARMUP_STEPS):
                        self.step()
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    self.step()
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            release(self.model)
            raise StaticDecodeError(f"CUDA graph capture failed: {exc}") from exc
        self._restore(saved)
        self.graph = graph

    def _state(self) -> list[tuple[Any, Any]]:
        """Copies of everything a step changes (the cache's contents past the current
        slot excepted: the mask hides them until a step writes them again)."""
        tensors = [self.mask, self.ids, self.positions, self.slot, self.column]
        tensors += [self.out, self.ended, self.finished]
        tensors += [layer.cumulative_length for layer in self.cache.layers]
        return [(tensor, tensor.clone()) for tensor in tensors]

    @staticmethod
    def _restore(saved: list[tuple[Any, Any]]) -> None:
        for tensor, copy in saved:
            tensor.copy_(copy)


@contextmanager
def _experts_hooks_detached(model: Any) -> Iterator[None]:
    """The forward hooks of ``model``'s experts modules removed for a while (module docs)."""
    from goa.inference.moe import experts_modules

    stashed = []
    for _, module in experts_modules(model):
        stashed.append((module, module._forward_pre_hooks, module._forward_hooks))
        module._forward_pre_hooks = OrderedDict()
        module._forward_hooks = OrderedDict()
    try:
        yield
    finally:
        for module, pre_hooks, hooks in stashed:
            module._forward_pre_hooks, module._forward_hooks = pre_hooks, hooks


class TextStops:
    """A ``stop_check`` for :func:`static_generate`: finishes the rows whose last
    ``window`` new tokens contain one of ``stops`` once decoded (module docs)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], window: int = TEXT_STOP_WINDOW):
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.window = window

    def __call__(self, generated: Any) -> Any:
        import torch

        tails = generated[:, -self.window :].tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        done = [any(stop in text for stop in self.stops) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=generated.device)


__all__ = [
    "LENGTH_STEP",
    "MAX_RUNNERS",
    "StaticDecodeError",
    "TextStops",
    "cache_length",
    "captured_graphs",
    "compiled_forward",
    "release",
    "static_generate",
    "unsupported_reason",
]
