"""Memory accounted before a model is loaded: a model that does not fit is refused.

Several agent models share one GPU. Before the transformers backend loads one
(:func:`goa.inference.transformers_backend.load_model`), :func:`reserve` reads
its config (``config.json``, or a GGUF file's header), estimates what it will
hold (:func:`estimate`) and compares that with what the device has free
(:func:`available`), less what the models this process loaded before were
promised (:class:`Ledger`). A model that does not fit is refused with a
:class:`~goa.errors.ModelTooLargeError` naming the model, the estimate broken
down and what to do, instead of an out-of-memory crash halfway through loading
or at the first large batch.

The estimate, in bytes:

- **weights**: the parameter count x the dtype's size (float32 4, bf16/fp16 2).
  From a Hugging Face config the count is computed (:func:`parameter_count`):
  embeddings, attention q/k/v/o (grouped-query: k and v have
  ``num_key_value_heads`` heads; q/k/v biases for Qwen2 and ``attention_bias``;
  q/k norms where the architecture has them), a gated MLP (3 matrices of
  ``hidden_size x intermediate_size``) or, in a mixture-of-experts layer, every
  expert (``num_local_experts`` or ``num_experts`` x 3 x ``hidden_size`` x
  ``moe_intermediate_size``, else ``intermediate_size``), the router, and the
  shared expert and its gate (Qwen2-MoE); the norms; the output head unless tied
  to the embeddings. From a GGUF file it is the sum of its tensors' element
  counts, which is what transformers dequantises (exact; the file size alone
  would undercount a 4-bit file about 4-8 times).
- **KV cache**: ``max_batch`` rows of ``context_tokens`` tokens, 2 (keys and
  values) x layers x ``num_key_value_heads`` x ``head_dim`` x the dtype's size
  per token; a sliding-window layer holds at most its window.
  ``context_tokens`` is ``GOA_MEMORY_CONTEXT_TOKENS`` when set, else the
  model's context capped at :data:`DEFAULT_CONTEXT_TOKENS` (4096): prompt plus
  reply of the longest row the check budgets for. Budgeting every row at a
  32k-token context would refuse four small models on an H200 that serve
  GoA's prompts comfortably; a batch that outgrows its memory at run time is
  still split and retried (:mod:`goa.inference.hf_model`).
- **workspace**: :data:`WORKSPACE_FRACTION` (10 %) of weights plus KV cache, for
  activations, attention and matmul workspaces and allocator fragmentation, plus
  one decoding step's logits in float32 (``max_batch x vocab_size x 4``). It is
  an allowance, not a bound: the prefill of long prompts in a large batch can
  need more, and then the batch is split at run time.
- **process**: :data:`CUDA_CONTEXT_BYTES` (512 MiB) when the model runs in a
  child process of its own on a GPU (:mod:`goa.inference.hf_process`): each
  process holds its own CUDA context there.

On any device but a CUDA GPU (the CPU), :func:`reserve` leaves the KV cache out,
so the check refuses what cannot even be loaded into host memory (weights and
workspace): CPU batches are bounded by time long before memory, and 64 rows of
4096 tokens in float32 (11 GiB of cache for SmolLM2-135M) would refuse small
models on ordinary machines.

What is free (:func:`available`): on a CUDA device, ``torch.cuda.mem_get_info``
plus what PyTorch's caching allocator of this process holds unused (a model
loaded here can reuse it); elsewhere, the host's available memory (psutil
when installed, else ``MemAvailable`` of ``/proc/meminfo``). Asking CUDA creates
this process's CUDA context on the device, so it is counted in what is free.

The running total (:class:`Ledger`, one per process, :data:`LEDGER`): the free
memory seen at the first model's check on a device is the baseline; a later
model must fit in the baseline less the estimates of the models loaded since,
and in what is free now (which sees other processes). Models loaded in child
processes are thus accounted before they allocate anything.
:func:`goa.inference.transformers_backend.unload_models` clears it. A model
whose config cannot be read is not checked (its loading then reports what is
wrong); a model whose load fails after the check keeps its reservation until
``unload_models`` (loading it again replaces it, it is not added twice). In a
model's child process, its own ``load_model`` checks once more, against what is
free when it starts (its siblings' actual use included).

``GOA_MEMORY_CHECK=0`` switches the check off.
"""

from __future__ import annotations

import importlib
import math
import mmap
import os
import struct
import sys
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from goa.errors import GoaError, ModelTooLargeError
from goa.inference.switches import env_switch

GIB = 2**30
WORKSPACE_FRACTION = 0.10
"""The workspace allowance, as a fraction of weights plus KV cache (module docs)."""
CUDA_CONTEXT_BYTES = 512 * 2**20
"""A CUDA context with PyTorch's kernels loaded lazily: about 0.5 GiB per process."""
DEFAULT_CONTEXT_TOKENS = 4096
"""Tokens per row the KV cache is budgeted for, unless the model's context is shorter
or ``GOA_MEMORY_CONTEXT_TOKENS`` says otherwise."""

DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8}

_ADVICE = (
    "lower GOA_MAX_BATCH, budget a shorter context per row (GOA_MEMORY_CONTEXT_TOKENS), "
    "load fewer models at once, or use a GPU with more memory; "
    "GOA_MEMORY_CHECK=0 skips this check"
)
_HOST_ADVICE = (
    "load fewer models at once, a smaller model, or use a machine with more memory (or a GPU); "
    "GOA_MEMORY_CHECK=0 skips this check"
)


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


@dataclass(frozen=True)
class MemoryEstimate:
    """What a loaded model will hold on its device, in bytes (module docs)."""

    parameters: int
    weights: int
    kv_cache: int
    workspace: int
    process: int
    max_batch: int
    context_tokens: int
    dtype: str

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.workspace + self.process

    def describe(self) -> str:
        """``"about 3.10 GiB (weights ..., KV cache ..., workspace ...)"``."""
        parts = [
            f"weights {_gib(self.weights)} ({self.parameters / 1e9:.3g}B parameters "
            f"in {self.dtype})",
            f"KV cache {_gib(self.kv_cache)} ({self.max_batch} rows x {self.context_tokens} tokens)"
            if self.context_tokens
            else "KV cache not budgeted in host memory",
            f"workspace {_gib(self.workspace)}",
        ]
        if self.process:
            parts.append(f"CUDA context of its process {_gib(self.process)}")
        return f"about {_gib(self.total)} ({', '.join(parts)})"


# --- the parameter count -----------------------------------------------------------------


def _get(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        value = config.get(name, default)
    else:
        value = getattr(config, name, default)
    return default if value is None else value


def _text_config(config: Any) -> Any:
    """The language model's part of a multimodal config (``text_config``), else the config."""
    inner = _get(config, "text_config")
    return inner if inner is not None and _get(inner, "hidden_size") else config


def head_dim(config: Any) -> int:
    """Per-head width: ``head_dim`` when the config sets it, else hidden / heads."""
    return int(_get(config, "head_dim") or _get(config, "hidden_size") // _num_heads(config))


def _num_heads(config: Any) -> int:
    return int(_get(config, "num_attention_heads"))


def _kv_heads(config: Any) -> int:
    return int(_get(config, "num_key_value_heads") or _num_heads(config))


def _experts(config: Any) -> int:
    return int(_get(config, "num_local_experts") or _get(config, "num_experts") or 0)


def _sparse_layer(config: Any, layer: int) -> bool:
    """Whether ``layer`` is a mixture-of-experts layer (Qwen-MoE: ``mlp_only_layers``
    and ``decoder_sparse_step``; every layer elsewhere)."""
    if _experts(config) == 0 or layer in (_get(config, "mlp_only_layers") or []):
        return False
    step = int(_get(config, "decoder_sparse_step", 1) or 1)
    return (layer + 1) % step == 0


def parameter_count(config: Any) -> int:
    """The parameters of a decoder-only causal LM with this Hugging Face config
    (a ``PretrainedConfig`` or its ``config.json`` dict; module docs for the formula).

    Exact for llama, qwen2, gemma3_text, mixtral, qwen2_moe and olmoe (checked
    against the models transformers builds, in ``tests/test_memory_budget.py``);
    for other decoder-only transformers with a gated MLP it is within the norms
    and biases it does not know about (well under 1 %).
    """
    config = _text_config(config)
    model_type = str(_get(config, "model_type", ""))
    hidden = int(_get(config, "hidden_size"))
    vocab = int(_get(config, "vocab_size"))
    layers = int(_get(config, "num_hidden_layers"))
    heads, kv_heads, width = _num_heads(config), _kv_heads(config), head_dim(config)

    q_out, kv_out = heads * width, kv_heads * width
    attention = hidden * q_out + 2 * hidden * kv_out + q_out * hidden
    bias = bool(_get(config, "attention_bias", False))
    if bias or _get(config, "qkv_bias", False) or model_type in ("qwen2", "qwen2_vl"):
        attention += q_out + 2 * kv_out
    if bias:
        attention += hidden
    if model_type in ("olmoe", "olmo2"):  # q/k norms over all heads
        attention += q_out + kv_out
    elif model_type.startswith(("gemma3", "qwen3")):  # q/k norms over one head
        attention += 2 * width
    norms = 4 * hidden if model_type.startswith(("gemma2", "gemma3")) else 2 * hidden

    dense_mlp = 3 * hidden * int(_get(config, "intermediate_size"))
    if _get(config, "mlp_bias", False):
        dense_mlp += 2 * int(_get(config, "intermediate_size")) + hidden
    experts = _experts(config)
    expert_size = int(_get(config, "moe_intermediate_size") or _get(config, "intermediate_size"))
    sparse_mlp = experts * 3 * hidden * expert_size + hidden * experts  # experts, router
    shared = int(_get(config, "shared_expert_intermediate_size", 0) or 0)
    if shared:
        sparse_mlp += 3 * hidden * shared + hidden  # the shared expert and its gate

    total = vocab * hidden + hidden  # embeddings, final norm
    for layer in range(layers):
        mlp = sparse_mlp if _sparse_layer(config, layer) else dense_mlp
        total += attention + norms + mlp
    if not _get(config, "tie_word_embeddings", True):
        total += vocab * hidden
    return total


# --- the estimate -------------------------------------------------------------------------


def dtype_bytes(dtype: str) -> int:
    name = dtype.removeprefix("torch.")
    if name not in DTYPE_BYTES:
        raise GoaError(f"unknown dtype {dtype!r}: expected one of {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[name]


def kv_cache_bytes(config: Any, *, dtype: str, max_batch: int, context_tokens: int) -> int:
    """Keys and values of ``max_batch`` rows of ``context_tokens`` tokens (module docs).

    A layer whose ``layer_types`` entry is ``sliding_attention`` (or every layer,
    where the config sets ``sliding_window`` without ``layer_types`` and without
    ``use_sliding_window=False``) holds at most ``sliding_window`` tokens; layers of
    other kinds than attention (``conv``, ``linear_attention``) hold none here.
    """
    config = _text_config(config)
    layers = int(_get(config, "num_hidden_layers"))
    window = int(_get(config, "sliding_window", 0) or 0)
    kinds = _get(config, "layer_types")
    if not kinds:
        sliding = window and _get(config, "use_sliding_window", True)
        kinds = ["sliding_attention" if sliding else "full_attention"] * layers
    per_token = 2 * _kv_heads(config) * head_dim(config) * dtype_bytes(dtype)
    tokens = 0
    for kind in kinds:
        if kind == "full_attention":
            tokens += context_tokens
        elif kind in ("sliding_attention", "chunked_attention"):
            tokens += min(context_tokens, window) if window else context_tokens
    return max_batch * tokens * per_token


def context_tokens_for(config: Any) -> int:
    """Tokens per row to budget: ``GOA_MEMORY_CONTEXT_TOKENS``, else the model's
    context capped at :data:`DEFAULT_CONTEXT_TOKENS`."""
    raw = os.environ.get("GOA_MEMORY_CONTEXT_TOKENS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise GoaError(
                f"GOA_MEMORY_CONTEXT_TOKENS must be a whole number of tokens, not {raw!r}"
            )
        return value
    limit = int(_get(_text_config(config), "max_position_embeddings", 0) or 0)
    return min(limit, DEFAULT_CONTEXT_TOKENS) if limit > 0 else DEFAULT_CONTEXT_TOKENS


def estimate(
    config: Any,
    *,
    dtype: str,
    max_batch: int,
    context_tokens: int,
    parameters: int | None = None,
    process_overhead: int = 0,
) -> MemoryEstimate:
    """What a model with this config holds when loaded in ``dtype`` and serving
    ``max_batch`` rows of ``context_tokens`` tokens (module docs for the rules).

    ``parameters`` overrides the count computed from the config (a GGUF file's
    tensors); ``process_overhead`` adds bytes per process (a child's CUDA context).
    """
    count = parameter_count(config) if parameters is None else parameters
    weights = count * dtype_bytes(dtype)
    kv = kv_cache_bytes(config, dtype=dtype, max_batch=max_batch, context_tokens=context_tokens)
    logits = max_batch * int(_get(_text_config(config), "vocab_size", 0)) * 4
    workspace = math.ceil(WORKSPACE_FRACTION * (weights + kv)) + logits
    return MemoryEstimate(
        parameters=count,
        weights=weights,
        kv_cache=kv,
        workspace=workspace,
        process=process_overhead,
        max_batch=max_batch,
        context_tokens=context_tokens,
        dtype=dtype.removeprefix("torch."),
    )


# --- GGUF headers -------------------------------------------------------------------------

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALARS.update({10: "<Q", 11: "<q", 12: "<d"})
_STRING, _ARRAY = 8, 9
# llama.cpp architecture names whose transformers model type differs
_GGUF_MODEL_TYPES = {"gemma3": "gemma3_text", "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe"}


def read_gguf_header(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """A GGUF file's metadata (string arrays such as the vocabulary become their
    length) and its tensors' shapes, read from the header without the tensor data:
    a fraction of a second, where transformers' ``AutoConfig`` parses the whole
    vocabulary (7-26 s for the embedded local models)."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as blob:
        if blob[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, tensors, count = struct.unpack_from("<IQQ", blob, 4)
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        pos = 24

        def string(at: int) -> tuple[str, int]:
            (length,) = struct.unpack_from("<Q", blob, at)
            return blob[at + 8 : at + 8 + length].decode("utf-8", "replace"), at + 8 + length

        def value(kind: int, at: int) -> tuple[Any, int]:
            if kind in _SCALARS:
                return struct.unpack_from(_SCALARS[kind], blob, at)[0], at + struct.calcsize(
                    _SCALARS[kind]
                )
            if kind == _STRING:
                return string(at)
            if kind != _ARRAY:
                raise ValueError(f"{path}: unknown GGUF value type {kind}")
            inner, length = struct.unpack_from("<IQ", blob, at)
            at += 12
            if inner in _SCALARS:
                size = struct.calcsize(_SCALARS[inner])
                items = struct.unpack_from(f"<{length}{_SCALARS[inner][1]}", blob, at)
                return list(items), at + length * size
            for _ in range(length):  # strings (or nested arrays): only counted
                _, at = value(inner, at)
            return length, at

        metadata: dict[str, Any] = {}
        for _ in range(count):
            key, pos = string(pos)
            (kind,) = struct.unpack_from("<I", blob, pos)
            metadata[key], pos = value(kind, pos + 4)
        shapes: dict[str, tuple[int, ...]] = {}
        for _ in range(tensors):
            name, pos = string(pos)
            (dims,) = struct.unpack_from("<I", blob, pos)
            shapes[name] = tuple(struct.unpack_from(f"<{dims}Q", blob, pos + 4))
            pos += 4 + 8 * dims + 12  # dimensions, then ggml type (4) and offset (8)
    return metadata, shapes


def gguf_config(path: Path) -> tuple[dict[str, Any], int]:
    """A config dict in transformers' names, enough for :func:`estimate`, and the
    parameter count, from a GGUF file's header."""
    metadata, shapes = read_gguf_header(path)
    arch = str(metadata["general.architecture"])

    def key(name: str, default: Any = None) -> Any:
        return metadata.get(f"{arch}.{name}", default)

    layers = int(key("block_count"))
    heads = key("attention.head_count")
    heads = max(heads) if isinstance(heads, list) else int(heads)
    kv_heads = key("attention.head_count_kv", heads)
    kv_heads = max(kv_heads) if isinstance(kv_heads, list) else int(kv_heads)
    hidden = int(key("embedding_length"))
    key_length = int(key("attention.key_length", hidden // heads))
    value_length = int(key("attention.value_length", key_length))
    vocab = metadata.get("tokenizer.ggml.tokens", key("vocab_size", 0))
    config: dict[str, Any] = {
        "model_type": _GGUF_MODEL_TYPES.get(arch, arch),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": (key_length + value_length) // 2,
        "hidden_size": hidden,
        "vocab_size": int(vocab) if not isinstance(vocab, list) else len(vocab),
        "max_position_embeddings": int(key("context_length", 0)),
    }
    window = key("attention.sliding_window")
    if window:
        config["sliding_window"] = int(window)
        config["layer_types"] = _gguf_layer_types(config, key("attention.sliding_window_pattern"))
    parameters = sum(math.prod(shape) for shape in shapes.values())
    return config, parameters


def _gguf_layer_types(config: dict[str, Any], pattern: Any) -> list[str] | None:
    """Which layers slide: the file's ``sliding_window_pattern`` (one flag per layer)
    when it has one, else what the transformers config of that model type builds."""
    layers = int(config["num_hidden_layers"])
    if isinstance(pattern, list) and len(pattern) == layers:
        return ["sliding_attention" if flag else "full_attention" for flag in pattern]
    try:
        from transformers import AutoConfig

        built = AutoConfig.for_model(
            config["model_type"], num_hidden_layers=layers, sliding_window=config["sliding_window"]
        )
    except (ImportError, ValueError, KeyError, TypeError):
        return None
    kinds = getattr(built, "layer_types", None)
    return list(kinds) if kinds else None


def model_estimate(
    directory: Path,
    gguf_file: str | None,
    *,
    dtype: str,
    max_batch: int,
    process_overhead: int = 0,
    kv_cache: bool = True,
) -> MemoryEstimate | None:
    """The estimate for a model directory or a GGUF file in it (without a KV cache
    unless ``kv_cache``); ``None`` when its config cannot be read (then its loading
    says what is wrong)."""
    try:
        if gguf_file:
            config, parameters = gguf_config(directory / gguf_file)
        else:
            from transformers import AutoConfig

            config, parameters = AutoConfig.from_pretrained(directory), None
        return estimate(
            config,
            dtype=dtype,
            max_batch=max_batch,
            context_tokens=context_tokens_for(config) if kv_cache else 0,
            parameters=parameters,
            process_overhead=process_overhead,
        )
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


# --- the device ---------------------------------------------------------------------------


def _host_available() -> int:
    try:
        psutil: Any = importlib.import_module("psutil")
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return sys.maxsize  # unknown: nothing is refused


def available(device: str) -> int:
    """Bytes free for a new model on ``device`` (module docs): on CUDA, the device's
    free memory plus this process's cached, unused allocator blocks; else the host's
    available memory."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free) + int(cached)
    return _host_available()


def check_enabled() -> bool:
    """``GOA_MEMORY_CHECK``: 1 (default) or 0."""
    return env_switch("GOA_MEMORY_CHECK", True)


def check_fits(
    name: str,
    estimate: MemoryEstimate,
    device: str,
    *,
    already_reserved: int = 0,
    free: int | None = None,
    others: tuple[str, ...] = (),
) -> None:
    """Raise :class:`~goa.errors.ModelTooLargeError` unless ``estimate`` fits in
    ``free`` (default: :func:`available`) less ``already_reserved`` (promised to
    ``others``, the models loaded before)."""
    free = available(device) if free is None else free
    room = free - already_reserved
    if estimate.total <= room:
        return
    if already_reserved:
        promised = (
            f"{_gib(room)} of {_gib(free)} is left there, {_gib(already_reserved)} being "
            f"promised to the models loaded before ({', '.join(others) or 'unnamed'})"
        )
    else:
        promised = f"{_gib(free)} is free there"
    raise ModelTooLargeError(
        f"model {name!r} does not fit on {device}: it needs {estimate.describe()}, "
        f"but {promised}. To fit it: {_ADVICE if estimate.context_tokens else _HOST_ADVICE}."
    )


def _device_key(device: str) -> str:
    return "cuda:0" if device == "cuda" else device


class Ledger:
    """The models this process has admitted, by device, and each device's baseline
    (module docs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._baseline: dict[str, int] = {}
        self._admitted: dict[str, dict[Hashable, tuple[str, MemoryEstimate]]] = {}

    def reserved(self, device: str) -> int:
        with self._lock:
            entries = self._admitted.get(_device_key(device), {})
            return sum(estimate.total for _, estimate in entries.values())

    def admit(
        self, name: str, estimate: MemoryEstimate, device: str, *, key: Hashable = None
    ) -> None:
        """Check ``estimate`` against ``device`` and the models admitted before, then
        record it under ``key`` (default: ``name``; admitting a key again replaces it)."""
        where = _device_key(device)
        key = name if key is None else key
        with self._lock:
            entries = self._admitted.setdefault(where, {})
            before = {k: v for k, v in entries.items() if k != key}
            free = available(device)
            baseline = self._baseline.setdefault(where, free)
            reserved = sum(e.total for _, e in before.values())
            check_fits(
                name,
                estimate,
                device,
                already_reserved=reserved,
                free=min(baseline, free + reserved),
                others=tuple(n for n, _ in before.values()),
            )
            entries[key] = (name, estimate)

    def release(self, device: str | None = None) -> None:
        """Forget the models admitted on ``device`` (default: every device)."""
        with self._lock:
            for where in [_device_key(device)] if device else list(self._admitted):
                self._admitted.pop(where, None)
                self._baseline.pop(where, None)


LEDGER = Ledger()
"""This process's running total, used by :func:`reserve`."""


class _Source(Protocol):
    @property
    def directory(self) -> Path: ...
    @property
    def gguf_file(self) -> str | None: ...


def reserve(
    key: Hashable,
    source: _Source,
    name: str,
    device: str,
    dtype: str,
    max_batch: int,
    child_process: bool,
) -> MemoryEstimate | None:
    """The check :func:`~goa.inference.transformers_backend.load_model` makes before
    loading (or spawning the process that loads) a model: estimate the model at
    ``source`` (a :class:`~goa.inference.transformers_backend.ModelSource`), refuse it
    with :class:`~goa.errors.ModelTooLargeError` if it does not fit beside the models
    this process admitted before, else record it in :data:`LEDGER` under ``key``.
    ``None``: the check is off (``GOA_MEMORY_CHECK=0``) or the config could not be read."""
    if not check_enabled():
        return None
    overhead = CUDA_CONTEXT_BYTES if child_process and device.startswith("cuda") else 0
    found = model_estimate(
        source.directory,
        source.gguf_file,
        dtype=dtype,
        max_batch=max_batch,
        process_overhead=overhead,
        kv_cache=device.startswith("cuda"),
    )
    if found is not None:
        LEDGER.admit(name, found, device, key=key)
    return found


def release_all() -> None:
    """Forget every admitted model (:func:`~goa.inference.transformers_backend.unload_models`)."""
    LEDGER.release()


__all__ = [
    "CUDA_CONTEXT_BYTES",
    "DEFAULT_CONTEXT_TOKENS",
    "LEDGER",
    "WORKSPACE_FRACTION",
    "Ledger",
    "MemoryEstimate",
    "available",
    "check_enabled",
    "check_fits",
    "context_tokens_for",
    "estimate",
    "gguf_config",
    "kv_cache_bytes",
    "model_estimate",
    "parameter_count",
    "read_gguf_header",
    "release_all",
    "reserve",
]
