"""A response cache in SQLite, shared by every backend.

The key is a SHA-256 over the backend kind, the model string and everything in
the request that can change the answer (messages, temperature, max_tokens,
seed, stop, json_schema). Tags are not part of the key: the same question asked for two
agents of the same model is one cached answer. A sampled request with no seed
(temperature > 0, seed None) is meant to differ each time and is never cached.

Several processes may write at once: the database runs in WAL mode with a busy
timeout, and a write is one ``INSERT OR REPLACE`` of an immutable value.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from goa.inference.backend import Backend
from goa.inference.streaming import complete_streaming
from goa.inference.types import ChatRequest, Completion, OnDelta

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""


def cache_key(backend: str, model: str, request: ChatRequest) -> str:
    """The cache key of a request to one model."""
    payload: dict[str, object] = {
        "backend": backend,
        "model": model,
        "messages": [[m.role, m.content] for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "stop": list(request.stop),
    }
    if request.json_schema is not None:
        payload["json_schema"] = request.json_schema
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cacheable(request: ChatRequest) -> bool:
    """Deterministic requests only: greedy decoding, or sampling with a fixed seed."""
    return request.temperature == 0.0 or request.seed is not None


class ResponseCache:
    """Completions stored by :func:`cache_key` in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT completion FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return Completion.model_validate_json(row[0])

    def put(self, key: str, completion: Completion) -> None:
        blob = completion.model_copy(update={"cached": False}).model_dump_json()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, backend, model, completion) "
                "VALUES (?, ?, ?, ?)",
                (key, completion.backend, completion.model, blob),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend:
    """Wraps a backend: answers from the cache when it can, stores what it fetches.

    A cached answer comes back with ``cached=True``, zero latency and zero cost
    (nothing was spent this time), and the tags of the new request.
    """

    def __init__(self, inner: Backend, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: ChatRequest) -> Completion:
        return await self._complete(request, None)

    async def complete_stream(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        """Streams from the inner backend; a cache hit arrives as one piece."""
        return await self._complete(request, on_delta)

    async def _complete(self, request: ChatRequest, on_delta: OnDelta | None) -> Completion:
        key = cache_key(self.inner.name, self.inner.model, request)
        if cacheable(request):
            hit = await asyncio.to_thread(self.cache.get, key)
            if hit is not None:
                if on_delta is not None and hit.text:
                    on_delta(hit.text)
                return hit.model_copy(
                    update={"cached": True, "latency_s": 0.0, "cost_usd": 0.0, "tags": request.tags}
                )
        if on_delta is None:
            completion = await self.inner.complete(request)
        else:
            completion = await complete_streaming(self.inner, request, on_delta)
        if cacheable(request) and completion.finish_reason != "error":
            await asyncio.to_thread(self.cache.put, key, completion)
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
