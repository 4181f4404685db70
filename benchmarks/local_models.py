"""Tokens per second of each embedded local model on this machine (llama.cpp, CPU).

For each model: pull and verify it if missing, load it (timed), then answer the
same prompt ``--runs`` times greedily with at most ``--max-tokens`` new tokens.
Speed is completion tokens over the wall time of the call (prompt processing
included), the median over runs; the model is loaded before timing starts.
Each model is measured with goa's default thread count (metrics
``tokens_per_s_<id>``) and with one thread (``tokens_per_s_<id>_1thread``).
Usage: ``.venv/bin/python -m benchmarks.local_models [--runs N] [--max-tokens N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from benchmarks.results_file import write_result
from goa.inference import ChatRequest, allow_model_requests
from goa.inference.llamacpp_backend import LlamaCppBackend, default_threads, unload_models
from goa.inference.local_models import LOCAL_MODELS, ensure_model

PROMPT = "Explain in a detailed paragraph how a hash table works and why lookups are fast."


def measure(model_id: str, *, threads: int, runs: int, max_tokens: int) -> dict[str, float]:
    """Load time, median tokens per second and median completion length of one model."""
    ensure_model(model_id, progress=True)
    backend = LlamaCppBackend(model_id, n_threads=threads)
    start = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - start
    speeds, lengths = [], []
    request = ChatRequest.of(PROMPT, max_tokens=max_tokens, temperature=0.0)
    for _ in range(runs):
        completion = asyncio.run(backend.complete(request))
        tokens = completion.usage.completion_tokens
        speeds.append(tokens / completion.latency_s)
        lengths.append(tokens)
    unload_models()
    return {
        "load_s": round(load_s, 3),
        "tokens_per_s": round(statistics.median(speeds), 2),
        "completion_tokens": statistics.median(lengths),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    metrics: dict[str, float | int] = {}
    table: dict[str, dict[str, dict[str, float]]] = {}
    default = default_threads()
    settings = {"": default, "_1thread": 1} if default != 1 else {"": 1}
    with allow_model_requests():
        for model_id in LOCAL_MODELS:
            table[model_id] = {}
            for suffix, threads in settings.items():
                result = measure(
                    model_id, threads=threads, runs=args.runs, max_tokens=args.max_tokens
                )
                table[model_id][f"{threads} threads"] = result
                metrics[f"tokens_per_s_{model_id}{suffix}"] = result["tokens_per_s"]
                metrics[f"load_s_{model_id}{suffix}"] = result["load_s"]
                print(f"{model_id}, {threads} threads: {result}")
    path = write_result(
        "local-models",
        metrics=metrics,
        goals={},
        simulated=False,
        extra={
            "settings": {
                "default_threads": default,
                "runs": args.runs,
                "max_tokens": args.max_tokens,
                "prompt": PROMPT,
            },
            "models": table,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
