"""Mixture-of-experts models in the transformers backend: which experts kernel, and expert load.

Which architectures. transformers (5.x) stores the experts of Mixtral, Qwen2-MoE,
Qwen3-MoE, OLMoE and DeepSeek-V2/V3 (and most other MoE models) as 3-D weight
tensors in one ``...Experts`` module per layer, decorated with
``transformers.integrations.moe.use_experts_implementation``. Its forward takes
``(hidden_states, top_k_index, top_k_weights)`` from the layer's router (the
``gate`` module) and dispatches on ``config._experts_implementation``:

- ``eager``: the modelling file's own loop over the experts that received a
  token (one matmul pair per expert, a Python loop and a sync per layer);
- ``batched_mm``: every (token, expert) slot gathers its expert's weights and
  runs one ``torch.bmm``: no loop, but the gathered weights take
  slots x expert-size memory, so it suits decoding and small batches;
- ``grouped_mm``: slots sorted by expert and one ``torch.nn.functional.grouped_mm``
  per projection (no loop, no weight copies). transformers picks it by default;
  where torch has no kernel for the device and dtype (CUDA before compute
  capability 8.0; CPU before torch 2.9; under ``torch.compile`` other than bf16)
  transformers silently falls back to a Python loop over experts.

:func:`choose_experts_implementation` therefore picks ``grouped_mm`` only where
a probe shows the real kernel runs for that device and dtype, else
``batched_mm``; ``eager`` only when asked for. ``GOA_EXPERTS_IMPL``
(``eager``, ``batched_mm`` or ``grouped_mm``) overrides the choice.

Expert load. :class:`ExpertLoad` hooks each experts module and counts, for every
forward pass (a prefill or one decoding step of a batch), how many token slots
each expert received in each layer (``tokens x top_k`` slots per layer and
pass; padding rows of a left-padded batch are routed and computed too, so they
count). Counting stays on the device (a ``scatter_add_`` of ones, which unlike
``torch.bincount`` on CUDA needs no host sync to size its output); tensors are
copied to the host only in :meth:`ExpertLoad.snapshot`.

Batching. These routers choose each token's experts from that token's hidden
state alone, and transformers' experts have no capacity limit, so the padding
rows of a left-padded batch (routed and computed like any row) cannot change a
real token's experts or output. A batched pass still differs from one row alone
by float rounding, since matmuls of other shapes sum in another order: about
2e-7 in the logits of the tiny float32 models of ``tests/test_moe.py``, as much
as for a dense model; greedy replies there are equal token for token, but a
near-tie (in the next token, or between two experts' router scores) could flip.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from goa.errors import GoaError

EXPERTS_IMPLEMENTATIONS = ("eager", "batched_mm", "grouped_mm")
ENV_VARIABLE = "GOA_EXPERTS_IMPL"

_EXPERT_COUNT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
# ``top_k`` last: older configs carried a generation ``top_k`` (default 50) too.
_TOP_K_FIELDS = ("num_experts_per_tok", "moe_topk", "num_selected_experts", "top_k")


# --- config --------------------------------------------------------------------------


def _text_config(model_or_config: Any) -> Any:
    config = getattr(model_or_config, "config", model_or_config)
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        try:
            return get_text_config()
        except (TypeError, ValueError):
            return config
    return config


def _first_int(config: Any, fields: tuple[str, ...]) -> int:
    for name in fields:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def expert_count(model_or_config: Any) -> int:
    """Routed experts per MoE layer from the config (``num_local_experts``,
    ``num_experts``, ``n_routed_experts``), 0 for a dense model."""
    return _first_int(_text_config(model_or_config), _EXPERT_COUNT_FIELDS)


def experts_per_token(model_or_config: Any) -> int:
    """Experts each token is routed to (``num_experts_per_tok``), 0 for a dense model."""
    if not expert_count(model_or_config):
        return 0
    return _first_int(_text_config(model_or_config), _TOP_K_FIELDS)


def is_moe(model_or_config: Any) -> bool:
    """Whether a model (or its config) routes tokens to experts: its config names
    more than one expert, or (a model) it has an experts module."""
    if expert_count(model_or_config) > 1:
        return True
    modules = getattr(model_or_config, "named_modules", None)
    return callable(modules) and any(True for _ in experts_modules(model_or_config))


def experts_modules(model: Any) -> Iterator[tuple[str, Any]]:
    """``(name, module)`` of each experts module of transformers' experts interface
    (one per MoE layer; dense layers and shared experts have none).

    Recognised by what ``use_experts_implementation`` sets on every instance in all
    transformers 5 releases seen (5.17 and 5.20: ``is_concatenated`` and ``has_gate``;
    ``_is_expert_parallel`` came later) beside the class's own ``num_experts``."""
    for name, module in model.named_modules():
        if all(hasattr(module, a) for a in ("num_experts", "is_concatenated", "has_gate")):
            yield name, module


# --- the experts implementation ------------------------------------------------------


def _dtype_of(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise GoaError(f"not a torch dtype: {dtype!r}")
    return value


@functools.cache
def _grouped_mm_runs(device: str, dtype_name: str) -> bool:
    """Whether ``grouped_mm`` runs as one kernel on ``device`` for ``dtype_name``
    and gives the per-group matmuls' result, and transformers would call it there
    rather than its per-expert fallback loop."""
    import torch

    grouped = getattr(torch.nn.functional, "grouped_mm", None) or getattr(
        torch, "_grouped_mm", None
    )
    if grouped is None:
        return False
    dtype = getattr(torch, dtype_name)
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(12, 32, generator=generator).to(device=device, dtype=dtype)
        w = torch.randn(3, 32, 16, generator=generator).to(device=device, dtype=dtype)
        offs = torch.tensor([4, 4, 12], dtype=torch.int32, device=device)
        out = grouped(x, w, offs=offs)
        reference = torch.cat([x[:4] @ w[0], x[4:] @ w[2]])
        if not torch.allclose(out.float(), reference.float(), rtol=2e-2, atol=2e-2):
            return False
        from transformers.integrations import moe

        can_use = getattr(moe, "_can_use_grouped_mm", None)
        return bool(can_use(x, w, offs)) if callable(can_use) else True
    except (RuntimeError, NotImplementedError, TypeError, ValueError, ImportError):
        return False


def choose_experts_implementation(device: Any = "cpu", dtype: Any = "float32") -> str:
    """The experts implementation for MoE layers on ``device`` in ``dtype``:
    ``GOA_EXPERTS_IMPL`` when set, else ``grouped_mm`` where its kernel runs
    there (probed once per device and dtype), else ``batched_mm``."""
    raw = os.environ.get(ENV_VARIABLE, "").strip().lower()
    if raw:
        if raw not in EXPERTS_IMPLEMENTATIONS:
            raise GoaError(
                f"{ENV_VARIABLE} must be one of {', '.join(EXPERTS_IMPLEMENTATIONS)}, not {raw!r}"
            )
        return raw
    import torch

    name = str(_dtype_of(dtype)).removeprefix("torch.")
    where = str(torch.device(device))
    return "grouped_mm" if _grouped_mm_runs(where, name) else "batched_mm"


def experts_implementation(model: Any) -> str | None:
    """The experts implementation a loaded model runs (None for a dense model)."""
    if not is_moe(model):
        return None
    value = getattr(_text_config(model), "_experts_implementation", None)
    return str(value) if value is not None else None


def set_experts_implementation(model: Any, implementation: str | None = None) -> str | None:
    """Switch a loaded MoE model's experts to ``implementation`` (default:
    :func:`choose_experts_implementation` for its device and dtype); returns the
    implementation set; None for a dense model, or an MoE model whose experts do
    not go through transformers' experts interface (they keep their own code)."""
    if not hasattr(model, "set_experts_implementation") or not any(
        True for _ in experts_modules(model)
    ):
        return None
    if implementation is None:
        parameter = next(model.parameters())
        implementation = choose_experts_implementation(parameter.device, parameter.dtype)
    if implementation not in EXPERTS_IMPLEMENTATIONS:
        raise GoaError(
            f"experts implementation must be one of {', '.join(EXPERTS_IMPLEMENTATIONS)}, "
            f"not {implementation!r}"
        )
    model.set_experts_implementation(implementation)
    return implementation


# --- expert load ---------------------------------------------------------------------


@dataclass(frozen=True)
class LayerLoad:
    """One MoE layer's load: token slots per expert, over the forward passes seen."""

    name: str
    counts: tuple[int, ...]
    """Token slots each expert received, summed over all forward passes."""
    forwards: int
    slots: int
    """Token slots routed in all (``tokens x top_k`` per forward pass)."""
    mean_imbalance: float
    """Mean over forward passes of max/mean slots per expert (1.0: perfectly even)."""
    mean_experts_hit: float
    """Mean over forward passes of the fraction of experts that got any slot."""
    recent: tuple[tuple[int, ...], ...] = ()
    """Slots per expert in each of the latest forward passes (oldest first)."""

    @property
    def imbalance(self) -> float:
        """max/mean of :attr:`counts`: the load imbalance summed over all passes."""
        total = sum(self.counts)
        return max(self.counts) * len(self.counts) / total if total else 0.0

    @property
    def experts_hit(self) -> float:
        """Fraction of experts that received any slot in any forward pass."""
        return sum(1 for c in self.counts if c) / len(self.counts) if self.counts else 0.0


@dataclass(frozen=True)
class LoadSnapshot:
    """Every MoE layer's load at one moment (:meth:`ExpertLoad.snapshot`)."""

    layers: tuple[LayerLoad, ...]

    @property
    def forwards(self) -> int:
        return max((layer.forwards for layer in self.layers), default=0)

    @property
    def imbalance(self) -> float:
        """Per-pass max/mean load, averaged over passes and layers."""
        seen = [layer.mean_imbalance for layer in self.layers if layer.forwards]
        return sum(seen) / len(seen) if seen else 0.0

    @property
    def experts_hit(self) -> float:
        """Per-pass fraction of experts hit, averaged over passes and layers."""
        seen = [layer.mean_experts_hit for layer in self.layers if layer.forwards]
        return sum(seen) / len(seen) if seen else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "forwards": float(self.forwards),
            "expert_imbalance": self.imbalance,
            "experts_hit": self.experts_hit,
        }


class _LayerCounter:
    """Device-side running counts of one experts module."""

    def __init__(self, name: str, num_experts: int, keep: int) -> None:
        self.name = name
        self.num_experts = num_experts
        self.recent: deque[Any] = deque(maxlen=keep)
        self.clear()

    def clear(self) -> None:
        self.totals: Any = None
        self.imbalance: Any = None
        self.hit: Any = None
        self.forwards = 0
        self.slots = 0
        self.recent.clear()

    def add(self, top_k_index: Any) -> None:
        import torch

        experts = self.num_experts
        index = top_k_index.reshape(-1).to(torch.long).clamp(0, experts)
        counts = torch.zeros(experts + 1, dtype=torch.long, device=index.device)
        counts.scatter_add_(0, index, torch.ones_like(index))
        counts = counts[:experts]  # slot ``experts`` holds expert-parallel sentinels
        slots = index.numel()
        if self.totals is None:
            zero = torch.zeros((), dtype=torch.float32, device=index.device)
            self.totals, self.imbalance, self.hit = torch.zeros_like(counts), zero, zero.clone()
        self.totals += counts
        if slots:
            self.imbalance += counts.max().float() * (experts / slots)
            self.hit += (counts > 0).sum().float() / experts
        self.forwards += 1
        self.slots += slots
        if self.recent.maxlen:
            self.recent.append(counts)

    def read(self) -> LayerLoad:
        if self.totals is None:
            return LayerLoad(self.name, (0,) * self.num_experts, 0, 0, 0.0, 0.0)
        passes = max(1, self.forwards)
        return LayerLoad(
            name=self.name,
            counts=tuple(int(c) for c in self.totals.tolist()),
            forwards=self.forwards,
            slots=self.slots,
            mean_imbalance=float(self.imbalance.item()) / passes,
            mean_experts_hit=float(self.hit.item()) / passes,
            recent=tuple(tuple(int(c) for c in step.tolist()) for step in self.recent),
        )


class ExpertLoad:
    """Counts token slots per expert per MoE layer for every forward pass of a model.

    ``ExpertLoad.attach(model)`` hooks each experts module (the router's choice,
    ``top_k_index``, is the module's second input); :meth:`detach` removes the
    hooks; :meth:`snapshot` copies the counts to the host; :meth:`reset` zeroes
    them. ``keep`` passes' per-expert counts are kept per layer for inspection.
    """

    def __init__(self, keep: int = 64) -> None:
        self._keep = keep
        self._counters: dict[str, _LayerCounter] = {}
        self._handles: list[Any] = []
        self._lock = threading.Lock()

    @classmethod
    def attach(cls, model: Any, *, keep: int = 64) -> ExpertLoad:
        load = cls(keep=keep)
        for name, module in experts_modules(model):
            counter = _LayerCounter(name, int(module.num_experts), keep)
            load._counters[name] = counter
            load._handles.append(
                module.register_forward_pre_hook(load._hook(counter), with_kwargs=True)
            )
        return load

    def _hook(self, counter: _LayerCounter) -> Any:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            index = args[1] if len(args) > 1 else kwargs.get("top_k_index")
            if index is None:
                return
            import torch

            # Counts are inference tensors, whatever the grad mode of the pass.
            with self._lock, torch.inference_mode():
                counter.add(index.detach())

        return hook

    @property
    def layers(self) -> list[str]:
        return list(self._counters)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self) -> None:
        with self._lock:
            for counter in self._counters.values():
                counter.clear()

    def snapshot(self) -> LoadSnapshot:
        with self._lock:
            return LoadSnapshot(tuple(counter.read() for counter in self._counters.values()))

    def summary(self) -> dict[str, float]:
        return self.snapshot().summary()


__all__ = [
    "ENV_VARIABLE",
    "EXPERTS_IMPLEMENTATIONS",
    "ExpertLoad",
    "LayerLoad",
    "LoadSnapshot",
    "choose_experts_implementation",
    "expert_count",
    "experts_implementation",
    "experts_modules",
    "experts_per_token",
    "is_moe",
    "set_experts_implementation",
]
