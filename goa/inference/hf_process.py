"""A transformers model served from a child process of its own.

Decoding with transformers is bound by Python: every step launches hundreds of
small GPU kernels from the interpreter. Several models decoding from threads of
one process share one interpreter lock, so they take turns: measured on the
project's H200 (``docs/gpu-evaluation.md``), four Qwen2.5-1.5B-shaped models
decoding batches of 64 from four threads took 165-169 ms per step each, four
processes doing the same 28-31 ms. :class:`ModelProcess` therefore runs one
:class:`~goa.inference.hf_model.HFModel` (batching worker included) in a
``spawn``-ed child process and offers the same ``submit``/``close``/``stats``
as the model itself; the backend uses it on a GPU (see
:func:`goa.inference.transformers_backend.use_processes`).

The protocol over the pipe: the parent sends ``(id, request, messages,
continuation)`` per job (``None`` to stop); the child answers ``(id, result,
stats)``, where ``result`` is a :class:`~goa.inference.hf_model.Generated`, a
:class:`~goa.inference.likelihood.TokenLogprob` or an exception, and ``stats``
the child's batch counters then. A child that dies (killed, out of host memory)
fails every job still waiting with a :class:`~goa.errors.ModelRequestError`
instead of leaving its callers waiting forever; one whose parent dies sees the
pipe close and exits.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import threading
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from typing import Any

from goa.errors import ModelFileError, ModelRequestError
from goa.inference.hf_model import BatchStats, HFModel, Job

_Counters = dict[str, Any]
"""The child's :class:`BatchStats` by field name, but the list of batch sizes."""


@dataclass(frozen=True)
class ProcessSpec:
    """What the child loads: the arguments of
    :func:`goa.inference.transformers_backend.load_model`."""

    directory: str
    gguf_file: str | None
    name: str
    device: str | None
    dtype: str | None
    max_batch: int


def _counters(stats: BatchStats) -> _Counters:
    # not the sizes list: it grows with every batch, and the parent keeps none
    return {f.name: getattr(stats, f.name) for f in fields(stats) if f.name != "sizes"}


def _serve(conn: Connection, spec: ProcessSpec) -> None:
    """The child: load the model, then answer jobs until told to stop or orphaned."""
    from pathlib import Path

    from goa.inference.transformers_backend import ModelSource, load_model

    try:
        model = load_model(
            ModelSource(Path(spec.directory), spec.gguf_file),
            name=spec.name,
            device=spec.device,
            dtype=spec.dtype,
            max_batch=spec.max_batch,
            processes=False,
        )
        assert isinstance(model, HFModel)
    except Exception as exc:  # the parent re-raises it
        conn.send(("error", exc))
        return
    conn.send(("ready", model.load_s))
    sending = threading.Lock()

    def answer(job_id: int) -> Any:
        def done(result: object) -> None:
            with sending:
                conn.send((job_id, result, _counters(model.stats)))

        return done

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if message is None:
            break
        job_id, request, messages, continuation = message
        model.submit(
            Job(done=answer(job_id), request=request, messages=messages, continuation=continuation)
        )
    model.close()
    model.join()


class ModelProcess:
    """An :class:`~goa.inference.hf_model.HFModel` in a child process, with its interface:
    ``submit(job)`` (``job.done`` is called from a reader thread of this process),
    ``close()``, ``stats``, ``name``, ``load_s``.

    Construction starts the child and waits until the model is loaded; a model that
    cannot load raises the child's error here.
    """

    def __init__(self, spec: ProcessSpec) -> None:
        self.name = spec.name
        self.max_batch = spec.max_batch
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, spec), name=f"goa-transformers-{spec.name}", daemon=True
        )
        self._process.start()
        child.close()
        try:
            status, value = self._conn.recv()
        except EOFError:
            self._process.join()
            raise ModelFileError(
                f"transformers:{spec.name}: the model's process exited while loading "
                f"(exit code {self._process.exitcode})"
            ) from None
        if status == "error":
            self._process.join()
            raise value
        self.load_s = float(value)
        self._counters: _Counters = _counters(BatchStats())
        self._pending: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False
        self._reader = threading.Thread(
            target=self._read, name=f"goa-transformers-{spec.name}-replies", daemon=True
        )
        self._reader.start()

    @property
    def stats(self) -> BatchStats:
        """The child's batch counters as of its latest reply (no batch sizes list)."""
        return BatchStats(**self._counters)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                job.done(ModelRequestError(f"transformers:{self.name}: the model was closed"))
                return
            job_id = next(self._ids)
            self._pending[job_id] = job
            try:
                self._conn.send((job_id, job.request, job.messages, job.continuation))
            except (OSError, ValueError) as exc:
                del self._pending[job_id]
                job.done(ModelRequestError(f"transformers:{self.name}: {exc}"))

    def close(self) -> None:
        """Stop the child once the jobs already sent are answered."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(None)

    def _read(self) -> None:
        while True:
            try:
                job_id, result, counters = self._conn.recv()
            except (EOFError, OSError):
                break
            self._counters = counters
            with self._lock:
                job = self._pending.pop(job_id, None)
            if job is not None:
                job.done(result)
        self._process.join()
        with self._lock:
            orphans, self._pending = list(self._pending.values()), {}
            self._closed = True
        error = ModelRequestError(
            f"transformers:{self.name}: the model's process exited "
            f"(exit code {self._process.exitcode})"
        )
        for job in orphans:
            job.done(error)


__all__ = ["ModelProcess", "ProcessSpec"]
