"""The transformers backend: Hugging Face causal LMs in this process, batched.

``torch`` and ``transformers`` (the ``gpu`` extra) are imported only when a
model is loaded. A model comes from a local directory in the Hugging Face
layout, from a GGUF file (dequantised on loading: bf16 on a GPU, float32 on the
CPU), or, for the four embedded local models, from the same verified GGUF file
the llama.cpp backend runs (:mod:`goa.inference.local_models`). So the local
pool can run on a GPU unchanged: ``GOA_LOCAL_ENGINE=transformers`` makes
:func:`goa.inference.factory.backend_for_card` serve llama.cpp cards with this
backend (see there).

Batching. Each loaded model has one worker thread and a queue. Requests from
any number of coroutines are queued; the worker takes the first one waiting
and everything else already queued (up to ``max_batch``), runs them as one
batch, and answers each. While a batch runs, new requests pile up and form the
next batch, so concurrent callers (an evaluation with many questions in
flight, the agents of one GoA stage) share the GPU without any timer. Within a
batch, requests are grouped by what ``generate`` needs to be the same:
greedy or sampled, the temperature and the stop strings. Prompts are padded on
the left; ``max_new_tokens`` is the largest ``max_tokens`` of the group, and each
reply is then cut to its own ``max_tokens``, at the end-of-sequence token and at
its first stop string.

Prompt format: the tokenizer's chat template where it has one; otherwise goa's
plain transcript with its stop lines (:mod:`goa.inference.transcript`), as the
llama.cpp backend does, always after the model's BOS token (Gemma's tokenizer,
as transformers converts it from GGUF, does not add it, and Gemma without it
writes gibberish).

Sampling (``temperature > 0``) uses top-k 40 and top-p 0.95, llama.cpp's
defaults. The random generator is seeded from the seeds of the batch's
requests, so a sampled reply depends on the batch it ran in: reproducible for
the same requests in the same order, not across different batchings.
``json_schema`` is not enforced (no grammar): callers validate the reply, as
they do for every backend.

Log-probabilities (:meth:`TransformersBackend.logprob`) follow the conventions
of :mod:`goa.inference.likelihood`; they are batched like generation (left
padding, explicit positions) and only the scored positions are projected to
the vocabulary, a few rows at a time.

A batch that runs out of GPU memory is split in halves and run again; a single
request that does not fit fails with a :class:`~goa.errors.ModelRequestError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goa.errors import ModelFileError, ModelRequestError
from goa.inference import local_models
from goa.inference.guard import check_model_request
from goa.inference.likelihood import TokenLogprob
from goa.inference.transcript import PLAIN_STOPS, plain_prompt
from goa.inference.types import ChatRequest, Completion, FinishReason, Message, Usage

BACKEND_NAME = "transformers"
DEFAULT_MAX_BATCH = 64
SCORE_ROWS = 8
"""Rows whose scored positions are projected to the vocabulary at once (bounds
the logits tensor: 8 rows of 256 positions of Qwen's 151,936 logits are 1.2 GB
in float32)."""
SAMPLING = {"top_k": 40, "top_p": 0.95}


@dataclass(frozen=True)
class Generated:
    """One reply of a batch."""

    text: str
    usage: Usage
    finish: FinishReason


@dataclass
class _Job:
    """A queued request: generation (``request``) or scoring (``messages``)."""

    done: Callable[[object], None]
    request: ChatRequest | None = None
    messages: tuple[Message, ...] = ()
    continuation: str = ""

    def group(self) -> tuple[object, ...]:
        if self.request is None:
            return ("score",)
        request = self.request
        return ("generate", request.temperature > 0, request.temperature, request.stop)


@dataclass
class BatchStats:
    """How the worker batched: batches run and requests answered."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    splits: int = 0
    sizes: list[int] = field(default_factory=list)

    def add(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.largest = max(self.largest, size)
        if len(self.sizes) < 10_000:
            self.sizes.append(size)

    @property
    def mean(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class HFModel:
    """A loaded causal LM, its tokenizer, and the worker thread that batches requests."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        max_batch: int = DEFAULT_MAX_BATCH,
        load_s: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_batch = max_batch
        self.load_s = load_s
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.stats = BatchStats()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker = threading.Thread(
            target=self._work, name=f"goa-transformers-{name}", daemon=True
        )
        self._worker.start()

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def submit(self, job: _Job) -> None:
        self._jobs.put(job)

    def close(self) -> None:
        """Stop the worker once the requests already queued are answered."""
        self._jobs.put(None)

    # --- the worker ------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            jobs, stopping = [first], False
            while len(jobs) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            groups: dict[tuple[object, ...], list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.group(), []).append(job)
            for group in groups.values():
                self._run(group)
            if stopping:
                return

    def _run(self, jobs: list[_Job]) -> None:
        try:
            results = self._split_on_oom(jobs)
        except Exception as exc:  # torch raises many kinds; each caller gets the error
            error = ModelRequestError(f"transformers:{self.name}: {exc}")
            for job in jobs:
                job.done(error)
            return
        for job, result in zip(jobs, results, strict=True):
            job.done(result)

    def _split_on_oom(self, jobs: list[_Job]) -> list[object]:
        import torch

        try:
            self.stats.add(len(jobs))
            if jobs[0].request is None:
                return list(self.score([(j.messages, j.continuation) for j in jobs]))
            return list(self.generate([j.request for j in jobs if j.request is not None]))
        except torch.cuda.OutOfMemoryError:
            if len(jobs) == 1:
                raise
            torch.cuda.empty_cache()
            self.stats.splits += 1
            half = len(jobs) // 2
            return self._split_on_oom(jobs[:half]) + self._split_on_oom(jobs[half:])

    # --- prompts ---------------------------------------------------------------------

    def prompt_text(self, messages: Sequence[Message]) -> str:
        """The text generation continues: chat template with its assistant header,
        or the plain transcript."""
        if not self.has_chat_template:
            return plain_prompt(messages)
        turns = [{"role": m.role, "content": m.content} for m in messages]
        return str(
            self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        )

    def reply_context(self, messages: Sequence[Message]) -> str:
        """What a reply to ``messages`` follows, a trailing assistant message included."""
        history, start = list(messages), ""
        if history and history[-1].role == "assistant":
            start = history.pop().content
        if not history:
            raise ValueError("no messages before the reply")
        if not self.has_chat_template:
            return f"{plain_prompt(history)} {start}"
        return self.prompt_text(history) + start

    def encode(self, text: str) -> list[int]:
        """The tokens of a prompt: a chat template's text carries its own special
        tokens; the plain transcript starts with the model's BOS token, which some
        tokenizers (Gemma's, converted from GGUF) do not add themselves."""
        ids = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        bos = self.tokenizer.bos_token_id
        if not self.has_chat_template and bos is not None:
            ids.insert(0, int(bos))
        return ids

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def _stop_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        return {int(i) for i in ids if i is not None}

    # --- generation ------------------------------------------------------------------

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generated]:
        """One batch of requests that share temperature and stop strings."""
        import torch
        from transformers import GenerationConfig

        tokenizer, first = self.tokenizer, requests[0]
        stops = [*first.stop, *(() if self.has_chat_template else PLAIN_STOPS)]
        rows = [self.encode(self.prompt_text(r.messages)) for r in requests]
        encoded = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt").to(
            self.device
        )
        options: dict[str, Any] = {
            "max_new_tokens": max(r.max_tokens for r in requests),
            "do_sample": first.temperature > 0,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": sorted(self._stop_ids()),
        }
        if first.temperature > 0:
            options.update(temperature=first.temperature, **SAMPLING)
            torch.manual_seed(_batch_seed(requests))
        extra: dict[str, Any] = {}
        if stops:
            options["stop_strings"] = stops
            extra["tokenizer"] = tokenizer
        with torch.inference_mode():
            output = self.model.generate(
                **encoded, generation_config=GenerationConfig(**options), **extra
            )
        width = encoded["input_ids"].shape[1]
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        return [
            self._reply(output[row, width:].tolist(), request, stops, int(prompt_lengths[row]))
            for row, request in enumerate(requests)
        ]

    def _reply(
        self, tokens: list[int], request: ChatRequest, stops: Sequence[str], prompt_tokens: int
    ) -> Generated:
        ended = self._stop_ids()
        tokens = tokens[: request.max_tokens]
        stopped = False
        for index, token in enumerate(tokens):
            if token in ended:
                tokens, stopped = tokens[:index], True
                break
        text = str(self.tokenizer.decode(tokens, skip_special_tokens=True))
        completion_tokens = len(tokens)
        cuts = [text.find(stop) for stop in stops if stop in text]
        if cuts:
            text, stopped = text[: min(cuts)], True
            completion_tokens = self._count(text)
        if not self.has_chat_template:
            text = text.strip()
        finish: FinishReason = (
            "stop" if stopped else "length" if len(tokens) >= request.max_tokens else "unknown"
        )
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=max(0, completion_tokens))
        return Generated(text, usage, finish)

    # --- log-probabilities -----------------------------------------------------------

    def score(self, items: Sequence[tuple[Sequence[Message], str]]) -> list[TokenLogprob]:
        """Log-probabilities of each continuation after its messages, in one batch."""
        import torch

        rows: list[tuple[list[int], int]] = []
        for messages, continuation in items:
            context = self.reply_context(messages)
            prompt = self.encode(context)
            tokens = self.encode(context + continuation)
            start = _shared_prefix(prompt, tokens)
            if start >= len(tokens):
                raise ValueError("the continuation is empty")
            rows.append((tokens, max(1, start)))
        width = max(len(tokens) for tokens, _ in rows)
        pad = int(self.tokenizer.pad_token_id)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (tokens, _) in enumerate(rows):
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        device = self.device
        results: list[TokenLogprob] = []
        with torch.inference_mode():
            hidden = self._hidden(ids.to(device), mask.to(device), positions.to(device))
            for first in range(0, len(rows), SCORE_ROWS):
                chunk = rows[first : first + SCORE_ROWS]
                for offset, (tokens, start) in enumerate(chunk):
                    row = first + offset
                    scored = len(tokens) - start
                    # Positions width-scored-1 .. width-2 predict the continuation tokens.
                    states = hidden[row, width - scored - 1 : width - 1]
                    logits = self._logits(states).float()
                    values = torch.log_softmax(logits, dim=-1)
                    target = torch.tensor(tokens[start:], device=device)
                    picked = values.gather(1, target[:, None])[:, 0].tolist()
                    results.append(TokenLogprob.of(picked, prompt_tokens=start, cost_usd=0.0))
        return results

    def _hidden(self, ids: Any, mask: Any, positions: Any) -> Any:
        """The final hidden states (after the last norm) of the base model."""
        output = self.model.base_model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False
        )
        return output.last_hidden_state

    def _logits(self, states: Any) -> Any:
        """The model's own head on some final hidden states (with Gemma's soft cap)."""
        logits = self.model.get_output_embeddings()(states)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            import torch

            logits = torch.tanh(logits / cap) * cap
        return logits


def _shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _batch_seed(requests: Sequence[ChatRequest]) -> int:
    text = ",".join(str(r.seed) for r in requests)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


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
_loaded: dict[_Key, HFModel] = {}
_key_locks: dict[_Key, threading.Lock] = {}
_loading = threading.Lock()


def default_device() -> str:
    """``cuda`` when PyTorch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    source: ModelSource,
    *,
    name: str,
    device: str | None = None,
    dtype: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> HFModel:
    """The process-wide instance for ``source`` on ``device``, loading it the first time."""
    try:
        import torch
        import transformers
    except ImportError:
        raise ModelRequestError(
            "transformers is not installed: install goa's `gpu` extra (torch, transformers)"
        ) from None
    device = device or default_device()
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    key = (str(source.directory.resolve()), source.gguf_file, device, dtype)
    with _loading:  # one lock per model: different models load at the same time
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        model = _loaded.get(key)
        if model is not None:
            return model
        start = time.perf_counter()
        options: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source.directory, **options)
            network = transformers.AutoModelForCausalLM.from_pretrained(
                source.directory, dtype=getattr(torch, dtype), **options
            ).to(device)
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


def loaded_models() -> list[HFModel]:
    """The models this process holds now."""
    with _loading:
        return list(_loaded.values())


def unload_models() -> None:
    """Stop every worker and forget every loaded model."""
    with _loading:
        for model in _loaded.values():
            model.close()
        _loaded.clear()


class TransformersBackend:
    """A causal LM through transformers, batched across concurrent requests.

    ``model`` is a registry id of :data:`goa.inference.local_models.LOCAL_MODELS`
    (its verified GGUF file, pulled on first use), or any name together with
    ``path`` (a Hugging Face model directory or a ``.gguf`` file), or a directory
    path itself. ``loaded`` serves an :class:`HFModel` built elsewhere (tests and
    benchmarks build small random models). Local calls cost nothing:
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
        loaded: HFModel | None = None,
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

    @property
    def name(self) -> str:
        return BACKEND_NAME

    @property
    def model(self) -> str:
        return self._model

    def load(self) -> HFModel:
        """Load the model now (it is otherwise loaded on the first request)."""
        if self._loaded is None:
            path = self._path or local_models.ensure_model(self._model)
            if self._path is not None and self._model in local_models.LOCAL_MODELS:
                local_models.check_model_file(path, local_models.get_spec(self._model))
            self._loaded = load_model(
                ModelSource.of(path),
                name=self._model,
                device=self._device,
                dtype=self._dtype,
                max_batch=self._max_batch,
            )
        return self._loaded

    async def complete(self, request: ChatRequest) -> Completion:
        check_model_request(BACKEND_NAME, self._model)
        start = time.perf_counter()
        loaded = self._loaded if self._loaded is not None else await asyncio.to_thread(self.load)
        result = await _submitted(loaded, _Job(done=_noop, request=request))
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
        job = _Job(done=_noop, messages=tuple(messages), continuation=continuation)
        result = await _submitted(loaded, job)
        assert isinstance(result, TokenLogprob)
        return result

    async def aclose(self) -> None:
        """Nothing to release: loaded models are shared by the process."""
        return None


def _noop(_: object) -> None:
    return None


async def _submitted(loaded: HFModel, job: _Job) -> object:
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
    "ModelSource",
    "TransformersBackend",
    "default_device",
    "load_model",
    "loaded_models",
    "unload_models",
]
