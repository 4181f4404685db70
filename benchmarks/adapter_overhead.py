"""What goa's litellm backend adds to a direct ``litellm.acompletion`` call (target <= 1 ms).

Both paths call the same stand-in OpenAI-compatible server on loopback
(:class:`goa.testing.OpenAIStubServer`, which answers instantly), with the same
litellm settings, one call at a time. Calls alternate in blocks between the two
paths so that drift in the machine's load hits both alike. The overhead is the
difference of the medians. The model is a stub: no model runs, so the figure is
pure adapter and transport time. A second figure, ``adapter_code_us``, times
goa's backend alone with ``litellm.acompletion`` replaced by a function that
returns a response recorded from the server: the adapter's own code per call.
Usage: ``.venv/bin/python -m benchmarks.adapter_overhead [--calls N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from benchmarks.results_file import write_result
from goa.inference import ChatRequest, allow_model_requests
from goa.inference.litellm_backend import LiteLLMBackend, _load_litellm
from goa.testing import OpenAIStubServer

TARGET_MS = 1.0
BLOCK = 25


async def run(calls: int, base_url: str) -> tuple[list[float], list[float]]:
    """Per-call wall times (s) of the direct path and of goa's backend."""
    litellm = _load_litellm()
    backend = LiteLLMBackend("openai/stub", api_base=base_url, api_key_env="GOA_BENCH_KEY")
    request = ChatRequest.of("What is 2+2?", max_tokens=16)
    params: dict[str, Any] = {
        "model": "openai/stub",
        "api_base": base_url,
        "api_key": os.environ["GOA_BENCH_KEY"],
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "temperature": 0.0,
        "max_tokens": 16,
        "num_retries": 0,
        "max_retries": 0,
    }
    for _ in range(BLOCK):  # warm both paths: imports, connection pools, caches
        await litellm.acompletion(**params)
        await backend.complete(request)
    direct: list[float] = []
    ours: list[float] = []
    while len(direct) < calls:
        for _ in range(BLOCK):
            start = time.perf_counter()
            await litellm.acompletion(**params)
            direct.append(time.perf_counter() - start)
        for _ in range(BLOCK):
            start = time.perf_counter()
            await backend.complete(request)
            ours.append(time.perf_counter() - start)
    await backend.aclose()
    return direct, ours


async def adapter_code_time(calls: int, base_url: str) -> float:
    """Median seconds per call of goa's backend around a litellm that answers at once."""
    litellm = _load_litellm()
    backend = LiteLLMBackend("openai/stub", api_base=base_url, api_key_env="GOA_BENCH_KEY")
    request = ChatRequest.of("What is 2+2?", max_tokens=16)
    recorded = await litellm.acompletion(
        model="openai/stub",
        api_base=base_url,
        api_key=os.environ["GOA_BENCH_KEY"],
        messages=[{"role": "user", "content": "What is 2+2?"}],
    )
    real = litellm.acompletion

    async def instant(**_: Any) -> Any:
        return recorded

    litellm.acompletion = instant
    try:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            await backend.complete(request)
            times.append(time.perf_counter() - start)
    finally:
        litellm.acompletion = real
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("GOA_BENCH_KEY", "stub-key-not-secret")
    with OpenAIStubServer("4") as server, allow_model_requests():
        direct, ours = asyncio.run(run(args.calls, server.base_url))
        code_s = asyncio.run(adapter_code_time(args.calls, server.base_url))
    direct_ms = statistics.median(direct) * 1e3
    ours_ms = statistics.median(ours) * 1e3
    overhead = ours_ms - direct_ms
    path = write_result(
        "adapter-overhead",
        metrics={
            "overhead_ms": round(overhead, 3),
            "direct_median_ms": round(direct_ms, 3),
            "goa_median_ms": round(ours_ms, 3),
            "direct_p90_ms": round(statistics.quantiles(direct, n=10)[-1] * 1e3, 3),
            "goa_p90_ms": round(statistics.quantiles(ours, n=10)[-1] * 1e3, 3),
            "adapter_code_us": round(code_s * 1e6, 1),
            "calls_per_path": len(direct),
        },
        goals={"overhead_ms": {"target": f"<= {TARGET_MS} ms", "met": overhead <= TARGET_MS}},
        simulated=False,
        extra={
            "note": "stand-in OpenAI-compatible server on loopback (no model): "
            "adapter and transport time only"
        },
    )
    print(
        f"direct {direct_ms:.3f} ms, goa {ours_ms:.3f} ms, overhead {overhead:.3f} ms, "
        f"adapter code {code_s * 1e6:.1f} us -> {path}"
    )


if __name__ == "__main__":
    main()
