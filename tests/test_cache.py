"""The SQLite response cache: keys, hits, what is never cached, concurrent writers."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

from goa.inference import CachedBackend, ChatRequest, Completion, ResponseCache, ScriptedBackend
from goa.inference.cache import cache_key
from goa.inference.types import Tags


def test_key_depends_on_everything_that_changes_the_answer_but_not_tags() -> None:
    base = ChatRequest.of("q", temperature=0.0, max_tokens=10)
    key = cache_key("litellm", "m", base)
    assert key == cache_key("litellm", "m", base.model_copy(update={"tags": Tags(agent="x")}))
    variants = [
        cache_key("llamacpp", "m", base),
        cache_key("litellm", "m2", base),
        cache_key("litellm", "m", ChatRequest.of("q2", max_tokens=10)),
        cache_key("litellm", "m", base.model_copy(update={"max_tokens": 11})),
        cache_key("litellm", "m", base.model_copy(update={"seed": 1})),
        cache_key("litellm", "m", base.model_copy(update={"stop": ("\n",)})),
        cache_key("litellm", "m", base.model_copy(update={"temperature": 0.5})),
    ]
    assert len({key, *variants}) == len(variants) + 1


def test_second_identical_request_is_served_from_cache(tmp_path: Path) -> None:
    inner = ScriptedBackend(["fresh", "again"], cost_per_call=0.002)
    backend = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite"))

    async def go() -> tuple[Completion, Completion]:
        first = await backend.complete(ChatRequest.of("q", tags=Tags(agent="a")))
        second = await backend.complete(ChatRequest.of("q", tags=Tags(agent="b")))
        return first, second

    first, second = asyncio.run(go())
    assert (first.text, first.cached, first.cost_usd) == ("fresh", False, 0.002)
    assert (second.text, second.cached, second.cost_usd) == ("fresh", True, 0.0)
    assert second.tags.agent == "b"
    assert len(inner.requests) == 1


def test_cache_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    asyncio.run(
        CachedBackend(ScriptedBackend(["one"]), ResponseCache(path)).complete(ChatRequest.of("q"))
    )
    again = ScriptedBackend(["two"])
    hit = asyncio.run(CachedBackend(again, ResponseCache(path)).complete(ChatRequest.of("q")))
    assert (hit.text, hit.cached, again.requests) == ("one", True, [])


def test_unseeded_sampling_is_never_cached(tmp_path: Path) -> None:
    inner = ScriptedBackend(["a", "b", "c"])
    backend = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite"))
    sampled = ChatRequest.of("q", temperature=0.7)
    seeded = ChatRequest.of("q", temperature=0.7, seed=3)

    async def go() -> list[str]:
        return [
            (await backend.complete(sampled)).text,
            (await backend.complete(sampled)).text,
            (await backend.complete(seeded)).text,
            (await backend.complete(seeded)).text,
        ]

    assert asyncio.run(go()) == ["a", "b", "c", "c"]


def _write_many(path: str, worker: int) -> None:
    cache = ResponseCache(path)
    for i in range(200):
        completion = Completion(text=f"{worker}-{i}", backend="scripted", model="m")
        cache.put(f"{worker}-{i}", completion)
    cache.close()


def test_concurrent_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    ResponseCache(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    cache = ResponseCache(path)
    assert len(cache) == 800
    hit = cache.get("3-199")
    assert hit is not None
    assert hit.text == "3-199"
