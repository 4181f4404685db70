"""A Hugging Face causal LM with the worker thread that batches requests to it.

Batching. Each :class:`HFModel` has one worker thread and a queue. Requests from
any number of coroutines are queued; the worker takes the first one waiting
and everything else already queued (up to ``max_batch``), runs them as one
batch, and answers each. While a batch runs, new requests pile up and form the
next batch, so concurrent callers (an evaluation with many questions in
flight, the agents of one GoA stage) share the GPU without any timer. Within a
batch, requests are grouped by what ``generate`` needs to be the same:
greedy or sampled, the temperature, the stop strings and the JSON schema. Prompts are padded on
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
``json_schema`` is enforced with a grammar when xgrammar is installed
(:mod:`goa.inference.json_grammar`; requests with different schemas run in
different groups); without it callers validate the reply, as they do for every
backend.

Log-probabilities (:meth:`HFModel.score`) follow the conventions of
:mod:`goa.inference.likelihood`; they are batched like generation (left
padding, explicit positions) and only the scored positions are projected to
the vocabulary, one row at a time.

A request that cannot run (an empty continuation to score, a prompt longer than
the model's context) fails alone; the rest of its batch runs.

Padded tokens. A group's rows are sorted by prompt length and cut into batches
of at most ``max_batch_tokens`` padded tokens (rows x (longest prompt + largest
``max_tokens``); ``$GOA_MAX_BATCH_TOKENS``, default 524,288), so that a few long
prompts do not pad a whole batch to their length: one batch of 130 prompts of up
to 6,000 tokens is 780,000 padded tokens, the KV cache and attention of which ran
a GPU shared with other models out of memory. A row longer than the budget runs
alone.

A batch that runs out of GPU memory is split in halves and run again; a single
request that does not fit fails with a :class:`~goa.errors.ModelRequestError`.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from goa.errors import ModelRequestError
from goa.inference.json_grammar import (
    SchemaConstraint,
    grammar_available,
    grammar_wanted,
    schema_key,
)
from goa.inference.likelihood import TokenLogprob, shared_prefix
from goa.inference.moe import ExpertLoad, is_moe
from goa.inference.static_decode import TextStops
from goa.inference.switches import env_count, env_switch
from goa.inference.transcript import PLAIN_STOPS, plain_prompt
from goa.inference.types import ChatRequest, FinishReason, Message, Usage

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_BATCH_TOKENS = 524_288
SAMPLING = {"top_k": 40, "top_p": 0.95}


@dataclass(frozen=True)
class Generated:
    """One reply of a batch."""

    text: str
    usage: Usage
    finish: FinishReason


@dataclass
class Job:
    """A queued request: generation (``request``) or scoring (``messages``)."""

    done: Callable[[object], None]
    request: ChatRequest | None = None
    messages: tuple[Message, ...] = ()
    continuation: str = ""

    def group(self) -> tuple[object, ...]:
        if self.request is None:
            return ("score",)
        request = self.request
        schema = schema_key(request.json_schema)
        return ("generate", request.temperature > 0, request.temperature, request.stop, schema)


class ServedModel(Protocol):
    """What the backend needs of a loaded model: an :class:`HFModel` in this process,
    or one in a child process (:class:`goa.inference.hf_process.ModelProcess`)."""

    name: str
    load_s: float

    @property
    def stats(self) -> BatchStats: ...

    def submit(self, job: Job) -> None: ...

    def close(self) -> None: ...


@dataclass
class BatchStats:
    """How the worker batched: batches run and requests answered."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    splits: int = 0
    steps: int = 0
    """Generation steps run (new tokens per row of the longest reply, summed over batches)."""
    sizes: list[int] = field(default_factory=list)
    grammar_batches: int = 0
    """Batches decoded under a JSON-schema grammar (:mod:`goa.inference.json_grammar`)."""
    grammar_failures: int = 0
    """Constrained batches that failed inside the grammar and ran again unconstrained."""
    busy_s: float = 0.0
    """Seconds spent running batches (generation and scoring, failed attempts included)."""

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
        max_batch_tokens: int | None = None,
        load_s: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        tokens = max_batch_tokens if max_batch_tokens is not None else batch_token_budget()
        if tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, not {tokens}")
        self.max_batch_tokens = tokens
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
        self.grammar = grammar_wanted()
        """Whether ``json_schema`` is enforced (:mod:`goa.inference.json_grammar`); set off
        at the first schema when xgrammar does not import, so a model that never sees one
        never imports it."""
        self._constraint: SchemaConstraint | None = None
        # MoE (goa.inference.moe): token slots per expert per layer, for every forward pass
        self.expert_load = ExpertLoad.attach(self.model) if is_moe(self.model) else None
        # GOA_STATIC_DECODE (goa.inference.static_decode): greedy decoding with a static
        # cache and a CUDA graph; switched off for this model at its first failure.
        self.static_decode = env_switch("GOA_STATIC_DECODE", False)
        # GOA_STATIC_COMPILE: the static step's forward through torch.compile as well
        self.static_compile = env_switch("GOA_STATIC_COMPILE", False)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._worker = threading.Thread(
            target=self._work, name=f"goa-transformers-{name}", daemon=True
        )
        self._worker.start()

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def expert_summary(self) -> dict[str, float]:
        """MoE expert load so far (``forwards``, ``expert_imbalance``, ``experts_hit``:
        :class:`goa.inference.moe.LoadSnapshot`); empty for a dense model."""
        return {} if self.expert_load is None else self.expert_load.summary()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def close(self) -> None:
        """Stop the worker once the requests already queued are answered."""
        self._jobs.put(None)

    def join(self) -> None:
        """Wait until the worker has stopped (after :meth:`close`)."""
        self._worker.join()

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
            groups: dict[tuple[object, ...], list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.group(), []).append(job)
            for group in groups.values():
                self._run(group)
            if stopping:
                return

    def _run(self, jobs: list[Job]) -> None:
        """Run one group; a request that cannot run (an empty continuation, a prompt
        longer than the model's context) fails alone, the others still run."""
        ready: list[tuple[Job, list[int], int]] = []
        for job in jobs:
            try:
                ready.append((job, *self._row(job)))
            except ValueError as exc:
                job.done(ModelRequestError(f"transformers:{self.name}: {exc}"))
        for batch in self._by_padded_tokens(ready):
            try:
                results = self._split_on_oom(batch)
            except Exception as exc:  # torch raises many kinds; each caller gets the error
                error = ModelRequestError(f"transformers:{self.name}: {exc}")
                for job, _, _ in batch:
                    job.done(error)
                continue
            for (job, _, _), result in zip(batch, results, strict=True):
                job.done(result)

    def _by_padded_tokens(
        self, ready: list[tuple[Job, list[int], int]]
    ) -> list[list[tuple[Job, list[int], int]]]:
        """``ready`` sorted by prompt length (stable) and cut into batches of at most
        ``max_batch_tokens`` padded tokens (module docs); a longer row runs alone."""
        batches: list[list[tuple[Job, list[int], int]]] = []
        current: list[tuple[Job, list[int], int]] = []
        most_new = 0  # the largest max_tokens in ``current``
        for row in sorted(ready, key=lambda r: len(r[1])):
            job, tokens, _ = row
            new = job.request.max_tokens if job.request is not None else 0
            # rows are sorted: this row's prompt is the longest of the batch it joins
            width = len(tokens) + max(most_new, new)
            if current and width * (len(current) + 1) > self.max_batch_tokens:
                batches.append(current)
                current, most_new = [], 0
            current.append(row)
            most_new = max(most_new, new)
        if current:
            batches.append(current)
        return batches

    def _row(self, job: Job) -> tuple[list[int], int]:
        """A job's tokens and where what is scored starts (generation: the prompt's end)."""
        if job.request is None:
            return self.reply_tokens(job.messages, job.continuation)
        tokens = self.encode(self.prompt_text(job.request.messages))
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and len(tokens) >= int(limit):
            raise ValueError(f"the prompt has {len(tokens)} tokens; the model's context is {limit}")
        return tokens, len(tokens)

    def _split_on_oom(self, ready: list[tuple[Job, list[int], int]]) -> list[object]:
        import torch

        started = time.perf_counter()
        try:
            if ready[0][0].request is None:
                results: list[object] = list(self._score_rows([(t, s) for _, t, s in ready]))
            else:
                requests = [job.request for job, _, _ in ready if job.request is not None]
                results = list(self._generate_rows(requests, [t for _, t, _ in ready]))
        except torch.cuda.OutOfMemoryError:
            self.stats.busy_s += time.perf_counter() - started
            if len(ready) == 1:
                raise
            torch.cuda.empty_cache()
            self.stats.splits += 1
            half = len(ready) // 2
            return self._split_on_oom(ready[:half]) + self._split_on_oom(ready[half:])
        except BaseException:
            self.stats.busy_s += time.perf_counter() - started
            raise
        self.stats.busy_s += time.perf_counter() - started
        self.stats.add(len(ready))
        return results

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
        rows = [self.encode(self.prompt_text(r.messages)) for r in requests]
        return self._generate_rows(requests, rows)

    def _generate_rows(
        self, requests: Sequence[ChatRequest], rows: list[list[int]]
    ) -> list[Generated]:
        import torch
        from transformers import GenerationConfig

        tokenizer, first = self.tokenizer, requests[0]
        stops = [*first.stop, *(() if self.has_chat_template else PLAIN_STOPS)]
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
        width = encoded["input_ids"].shape[1]
        extra: dict[str, Any] = {}
        if stops:
            extra["stopping_criteria"] = [_StopOnText(tokenizer, stops, width)]
        config = GenerationConfig(**options)
        schema = first.json_schema if self.grammar else None
        if schema is not None and not grammar_available():
            self.grammar, schema = False, None
        output = None
        if self.static_decode and first.temperature <= 0 and schema is None:
            output = self._static_output(encoded, options, stops)  # GOA_STATIC_DECODE
        if output is None:
            output = self._generate_output(encoded, config, extra, schema)
        self.stats.steps += int(output.shape[1] - width)
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        ended = self._stop_ids()
        return [
            self._reply(
                output[row, width:].tolist(), request, stops, ended, int(prompt_lengths[row])
            )
            for row, request in enumerate(requests)
        ]

    def _generate_output(
        self, encoded: Any, config: Any, extra: dict[str, Any], schema: Any | None
    ) -> Any:
        """transformers' ``generate``, under the JSON grammar of ``schema`` when given; a
        grammar that fails answers unconstrained and stops constraining this model."""
        import torch

        try:
            if schema is not None:
                extra["logits_processor"] = [self._schema_constraint().processor(schema)]
            with torch.inference_mode():
                output = self.model.generate(**encoded, generation_config=config, **extra)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception:
            if schema is None:
                raise
            # The grammar failed (json_grammar's docs): answer unconstrained, stop constraining.
            self.grammar = False
            self.stats.grammar_failures += 1
            extra.pop("logits_processor", None)
            with torch.inference_mode():
                output = self.model.generate(**encoded, generation_config=config, **extra)
        else:
            self.stats.grammar_batches += int(schema is not None)
        return output

    def _static_output(
        self, encoded: Any, options: dict[str, Any], stops: Sequence[str]
    ) -> Any | None:
        """``generate``'s output by :func:`goa.inference.static_decode.static_generate`, or
        None where it cannot run (then the switch goes off for this model, logged once)."""
        import torch

        from goa.inference.static_decode import static_generate

        try:
            return static_generate(
                self.model,
                encoded["input_ids"],
                encoded["attention_mask"],
                max_new_tokens=int(options["max_new_tokens"]),
                eos_token_ids=list(options["eos_token_id"]),
                pad_token_id=int(options["pad_token_id"]),
                stop_check=TextStops(self.tokenizer, stops) if stops else None,
                compile_step=self.static_compile,
            )
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:  # refused, or the capture failed: generate from now on
            self.static_decode = False
            logging.getLogger(__name__).warning(
                "transformers:%s: static decoding off, using generate: %s", self.name, exc
            )
            return None

    def _schema_constraint(self) -> SchemaConstraint:
        if self._constraint is None:
            vocab = int(self.model.get_output_embeddings().weight.shape[0])
            self._constraint = SchemaConstraint(self.tokenizer, vocab)
        return self._constraint

    def _reply(
        self,
        tokens: list[int],
        request: ChatRequest,
        stops: Sequence[str],
        ended: set[int],
        prompt_tokens: int,
    ) -> Generated:
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
        return self._score_rows([self.reply_tokens(m, c) for m, c in items])

    def reply_tokens(self, messages: Sequence[Message], continuation: str) -> tuple[list[int], int]:
        """The tokens of context and continuation, and where the continuation starts."""
        context = self.reply_context(messages)
        prompt = self.encode(context)
        tokens = self.encode(context + continuation)
        start = shared_prefix(prompt, tokens)
        if start >= len(tokens):
            raise ValueError("the continuation is empty")
        return tokens, max(1, start)

    def _score_rows(self, rows: list[tuple[list[int], int]]) -> list[TokenLogprob]:
        import torch

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
            for row, (tokens, start) in enumerate(rows):
                # One row at a time is projected to the vocabulary: positions
                # width-scored-1 .. width-2 predict the continuation's tokens.
                scored = len(tokens) - start
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


STOP_WINDOW = 16
"""Tokens at the end of each reply decoded to look for stop strings while generating."""


class _StopOnText:
    """Marks a row finished once the end of its reply contains a stop string.

    transformers' own ``stop_strings`` preprocesses the whole vocabulary on every
    ``generate`` call (11 s for Gemma's 262,144 tokens on this project's CPU, all
    of it holding the GIL); this decodes only the last :data:`STOP_WINDOW` tokens
    of each row per step (:class:`~goa.inference.static_decode.TextStops`, which
    static decoding uses too). Replies are cut at the stop string afterwards either way.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], width: int) -> None:
        self.width = width
        self.tails = TextStops(tokenizer, stops, window=STOP_WINDOW)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return self.tails(input_ids[:, self.width :])


def batch_token_budget() -> int:
    """Padded tokens per batch: ``$GOA_MAX_BATCH_TOKENS``, default
    :data:`DEFAULT_MAX_BATCH_TOKENS` (module docs)."""
    return env_count("GOA_MAX_BATCH_TOKENS", DEFAULT_MAX_BATCH_TOKENS)


def _batch_seed(requests: Sequence[ChatRequest]) -> int:
    text = ",".join(str(r.seed) for r in requests)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


__all__ = ["DEFAULT_MAX_BATCH", "BatchStats", "Generated", "HFModel", "Job", "ServedModel"]
