"""The transformers backend: Hugging Face causal LMs in this process, batched.

``torch`` and ``transformers`` (the ``gpu`` extra) are imported only when a
model is loaded. A model comes from a local directory in the Hugging Face
layout, from a GGUF file (dequantised on loading: bf16 on a GPU, float32 on the
CPU), or, for the four embedded local models, from the same verified GGUF file
the llama.cpp backend runs (:mod:`goa.inference.local_models`). So the local
pool can run on a GPU unchanged: ``GOA_LOCAL_ENGINE=transformers`` makes
:func:`goa.inference.factory.backend_for_card` serve llama.cpp cards with this
backend (see there). With ``GOA_TRANSFORMERS_DIR`` set, an embedded model is
loaded from its Hugging Face export there instead, much faster
(:mod:`goa.inference.hf_export`).

Each model is loaded once per process (one lock per model; the models themselves
are built one at a time, since transformers changes process-wide state while it
builds one) and served by an :class:`~goa.inference.hf_model.HFModel`,
whose worker thread batches concurrent requests (see there for batching,
prompt format, sampling, log-probabilities and out-of-memory handling). On a GPU
each model runs in a child process of its own
(:class:`~goa.inference.hf_process.ModelProcess`), since models decoding from
threads of one interpreter take turns on its lock; ``GOA_MODEL_PROCESSES=0`` or
``1`` forces either way (:func:`use_processes`).

On a GPU, PyTorch's cuDNN attention is switched off for the process: it builds an
execution plan for every new sequence length, and decoding meets a new length at
every step. Measured on the project's H200 (``docs/gpu-evaluation.md``), a first
batch of 64 decoded at 115 ms per step with it (1.3 s of the 32 steps' time inside
cuDNN attention) and 30 ms the second time, once the plans were cached.
``GOA_CUDNN_ATTENTION=1`` keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goa.errors import GoaError, ModelFileError, ModelRequestError
from goa.inference import local_models, memory_budget, moe
from goa.inference.guard import check_model_request
from goa.inference.hf_export import find_export
from goa.inference.hf_model import (
    DEFAULT_MAX_BATCH,
    BatchStats,
    Generated,
    HFModel,
    Job,
    ServedModel,
)
from goa.inference.hf_process import ModelProcess, ProcessSpec
from goa.inference.likelihood import TokenLogprob
from goa.inference.switches import env_switch
from goa.inference.types import ChatRequest, Completion, Message

BACKEND_NAME = "transformers"


# --- loading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are: a Hugging Face directory, or a GGUF file in one."""

    directory: Path
    gguf_file: str | None = None

    @classmethod
    def of(cls, path: Path) -> ModelSource:
        if path.is_file() and path.suffix.lower() == ".gguf":
            return cls(path.parent, path.name)
        if path.is_dir():
            return cls(path)
        raise ModelFileError(f"{path}: neither a model directory nor a .gguf file")


_Key = tuple[str, str | None, str, str]
_loaded: dict[_Key, ServedModel] = {}
_key_locks: dict[_Key, threading.Lock] = {}
_loading = threading.Lock()
# transformers' from_pretrained sets torch's default dtype for the whole process while
# it builds a model: two models built at once in two threads left some of Gemma's
# tensors float32 inside a bf16 model on the GPU ("expected mat1 and mat2 to have the
# same dtype"). Models are therefore built one at a time.
_building = threading.Lock()


def default_device() -> str:
    """``cuda`` when PyTorch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_reserved: set[str] = set()


def reserve_gpu_memory(device: str) -> float:
    """Hand PyTorch's caching allocator ``GOA_CUDA_RESERVE_GB`` GiB of ``device``
    at once, the first time a model loads there; the GiB reserved (0: unset, a
    CPU device, or done before).

    Decoding with a growing KV cache asks for slightly larger blocks at every
    step; each one the allocator has not cached yet is a ``cudaMalloc``. One large
    block, freed at once, stays cached and is split for all later requests, as
    serving engines reserve their memory up front. Measured on the project's
    virtualised H200: decoding steps took 67-164 ms for batch shapes not seen
    before and 20-25 ms when the same shapes ran again, but reserving 80 GiB did
    not speed up the evaluation there (``docs/gpu-evaluation.md``), so new
    allocations were not the cause of that slowness.
    """
    raw = os.environ.get("GOA_CUDA_RESERVE_GB", "").strip()
    if not raw or not device.startswith("cuda"):
        return 0.0
    try:
        gib = float(raw)
    except ValueError:
        raise GoaError(f"GOA_CUDA_RESERVE_GB must be a number of GiB, not {raw!r}") from None
    with _loading:
        if gib <= 0 or device in _reserved:
            return 0.0
        _reserved.add(device)
    import torch

    block = torch.empty(int(gib * 2**30), dtype=torch.uint8, device=device)
    del block
    return gib


def use_processes(device: str) -> bool:
    """Whether models on ``device`` run in child processes: ``GOA_MODEL_PROCESSES``
    (1 or 0) when set, else on a GPU only (a CPU is busy enough with one model)."""
    return env_switch("GOA_MODEL_PROCESSES", device.startswith("cuda"))


def configure_attention(device: str) -> None:
    """Switch off cuDNN attention on a GPU unless ``GOA_CUDNN_ATTENTION=1`` (module docs)."""
    if device.startswith("cuda") and not env_switch("GOA_CUDNN_ATTENTION", False):
        import torch

        torch.backends.cuda.enable_cudnn_sdp(False)


def load_model(
    source: ModelSource,
    *,
    name: str,
    device: str | None = None,
    dtype: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    processes: bool | None = None,
) -> ServedModel:
    """The process-wide instance for ``source`` on ``device`` in ``dtype``, loading it the
    first time: an :class:`HFModel` here, or a :class:`ModelProcess` when ``processes``
    (default: :func:`use_processes`). One copy of the weights per (source, device, dtype):
    a later call gets the instance the first one built, whatever ``max_batch`` and
    ``processes`` it passes."""
    try:
        with _loading:  # transformers' lazy module is not safe to resolve from many threads
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ModelRequestError(
            "transformers is not installed: install goa's `gpu` extra (torch, transformers)"
        ) from None
    device = device or default_device()
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    key = (str(source.directory.resolve()), source.gguf_file, device, dtype)
    with _loading:  # one lock per model: a model loads once, whoever asks first
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        model = _loaded.get(key)
        if model is not None:
            return model
        # memory check (goa.inference.memory_budget): refuse a model that does not fit, before
        # loading it or spawning its process; counts the models this process loaded before.
        child = use_processes(device) if processes is None else processes
        memory_budget.reserve(key, source, name, device, dtype, max_batch, child)
        if child:
            spec = ProcessSpec(
                str(source.directory), source.gguf_file, name, device, dtype, max_batch
            )
            served: ServedModel = ModelProcess(spec)
            with _loading:
                _loaded[key] = served
            return served
        start = time.perf_counter()
        options: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        configure_attention(device)
        try:
            with _building:
                tokenizer = AutoTokenizer.from_pretrained(source.directory, **options)
                network = AutoModelForCausalLM.from_pretrained(
                    source.directory, dtype=getattr(torch, dtype), **options
                ).to(device)
                # MoE (goa.inference.moe): grouped/batched expert matmuls, GOA_EXPERTS_IMPL
                moe.set_experts_implementation(network)
            reserve_gpu_memory(device)
        except (OSError, ValueError, KeyError) as exc:
            where = source.directory / (source.gguf_file or "")
            raise ModelFileError(f"{where}: transformers could not load it: {exc}") from None
        model = HFModel(
            network,
            tokenizer,
            name=name,
            max_batch=max_batch,
            load_s=time.perf_counter() - start,
        )
        with _loading:
            _loaded[key] = model
        return model


def loaded_models() -> list[ServedModel]:
    """The models this process holds now."""
    with _loading:
        return list(_loaded.values())


def unload_models() -> None:
    """Stop every worker and forget every loaded model."""
    with _loading:
        for model in _loaded.values():
            model.close()
        _loaded.clear()
    memory_budget.release_all()  # memory check: forget the unloaded models' reservations


class TransformersBackend:
    """A causal LM through transformers, batched across concurrent requests.

    ``model`` is a registry id of :data:`goa.inference.local_models.LOCAL_MODELS`
    (its verified GGUF file, pulled on first use), or any name together with
    ``path`` (a Hugging Face model directory or a ``.gguf`` file), or a directory
    path itself. ``loaded`` serves an :class:`HFModel` built elsewhere (tests and
    benchmarks build small random models); ``processes`` runs the model in a child
    process (default: :func:`use_processes`). Local calls cost nothing:
    ``cost_usd`` is ``0.0``; ``latency_s`` includes waiting for the batch.
    """

    def __init__(
        self,
        model: str,
        *,
        path: Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        loaded: ServedModel | None = None,
        processes: bool | None = None,
    ) -> None:
        self._model = model
        self._loaded = loaded
        self._path = path
        if loaded is None and path is None and model not in local_models.LOCAL_MODELS:
            if not Path(model).exists():
                raise ModelFileError(
                    f"{model!r} is neither an embedded local model "
                    f"({', '.join(local_models.LOCAL_MODELS)}) nor a model directory or "
                    ".gguf file"
                )
            self._path = Path(model)
        self._device = device
        self._dtype = dtype
        self._max_batch = max_batch
        self._processes = processes

    @property
    def name(self) -> str:
        return BACKEND_NAME

    @property
    def model(self) -> str:
        return self._model

    def load(self) -> ServedModel:
        """Load the model now (it is otherwise loaded on the first request)."""
        if self._loaded is None:
            path = self._path or find_export(self._model) or local_models.ensure_model(self._model)
            if self._path is not None and self._model in local_models.LOCAL_MODELS:
                local_models.check_model_file(path, local_models.get_spec(self._model))
            self._loaded = load_model(
                ModelSource.of(path),
                name=self._model,
                device=self._device,
                dtype=self._dtype,
                max_batch=self._max_batch,
                processes=self._processes,
            )
        return self._loaded

    async def complete(self, request: ChatRequest) -> Completion:
        check_model_request(BACKEND_NAME, self._model)
        start = time.perf_counter()
        loaded = self._loaded if self._loaded is not None else await asyncio.to_thread(self.load)
        result = await _submitted(loaded, Job(done=_noop, request=request))
        assert isinstance(result, Generated)
        return Completion(
            text=result.text,
            usage=result.usage,
            cost_usd=0.0,
            latency_s=time.perf_counter() - start,
            finish_reason=result.finish,
            backend=BACKEND_NAME,
            model=self._model,
            tags=request.tags,
        )

    async def logprob(self, messages: Sequence[Message], continuation: str) -> TokenLogprob:
        """The log-probability of ``continuation`` as the assistant's reply to
        ``messages`` (see :mod:`goa.inference.likelihood`), batched with other
        scoring requests to the same model."""
        check_model_request(BACKEND_NAME, self._model)
        if not messages:
            raise ModelRequestError(f"transformers:{self._model}: no messages to condition on")
        loaded = self._loaded if self._loaded is not None else await asyncio.to_thread(self.load)
        job = Job(done=_noop, messages=tuple(messages), continuation=continuation)
        result = await _submitted(loaded, job)
        assert isinstance(result, TokenLogprob)
        return result

    async def aclose(self) -> None:
        """Nothing to release: loaded models are shared by the process."""
        return None


def _noop(_: object) -> None:
    return None


async def _submitted(loaded: ServedModel, job: Job) -> object:
    """Queue ``job`` on the model's worker and wait for its answer."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(result: object) -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    def done(result: object) -> None:
        # RuntimeError: the caller's event loop is gone, so nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result)

    job.done = done
    loaded.submit(job)
    return await future


__all__ = [
    "BACKEND_NAME",
    "BatchStats",
    "Generated",
    "HFModel",
    "ModelProcess",
    "ModelSource",
    "ServedModel",
    "TransformersBackend",
    "configure_attention",
    "default_device",
    "load_model",
    "loaded_models",
    "unload_models",
    "use_processes",
]
