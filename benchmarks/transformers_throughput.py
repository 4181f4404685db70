"""REAL models: tokens per second of the transformers backend, by batch size.

Each embedded local model (loaded from its Hugging Face export when
``GOA_TRANSFORMERS_DIR`` is set, else from its GGUF file) answers a batch of
MMLU questions (the first ``B`` of the Graph-of-Agents sample, seeded shuffle)
with at most ``--max-tokens`` new tokens, greedy, through
:meth:`~goa.inference.hf_model.HFModel.generate` (one ``generate`` call per
batch). Reported per model and batch size: new tokens per second (the tokens
the replies kept, over the wall time) and milliseconds per decoding step (wall
time over the steps of the longest reply). Then every model at once, each from
its own thread with the largest batch: the combined tokens per second, which
shows what running several models in one Python process costs.

Each batch is timed twice: by the backend's default path (transformers'
``generate``) and with static decoding (``GOA_STATIC_DECODE``,
:mod:`goa.inference.static_decode`: a static cache, on a GPU each step a CUDA
graph), metrics ``static_*``; for a model static decoding refuses (Gemma-3's
sliding-window layers) or whose capture fails, ``static_fallback_<model>`` is 1
and no ``static_*`` figure is recorded from then on (those calls ran ``generate``).

Usage: ``GOA_TRANSFORMERS_DIR=... python -m benchmarks.transformers_throughput
[--batches 1,64,256] [--max-tokens 128]``. Writes
``benchmarks/results/transformers-throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.results_file import RESULTS_DIR, gpu_name, machine, write_result
from goa.eval.datasets import load_dataset
from goa.eval.formatting import answer_format, question_text
from goa.inference.hf_model import HFModel
from goa.inference.static_decode import release
from goa.inference.transformers_backend import TransformersBackend
from goa.inference.types import ChatRequest

MODELS = ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def requests(n: int, max_tokens: int) -> list[ChatRequest]:
    samples = load_dataset("mmlu", limit=n, seed=0)
    return [
        ChatRequest.of(f"{question_text(s)}\n\n{answer_format(s)}", max_tokens=max_tokens)
        for s in samples
    ]


def timed(model: HFModel, batch: list[ChatRequest]) -> tuple[float, int, int]:
    """(seconds, new tokens kept, decoding steps) of one generate call."""
    steps = model.stats.steps
    started = time.perf_counter()
    replies = model.generate(batch)
    seconds = time.perf_counter() - started
    return seconds, sum(r.usage.completion_tokens for r in replies), model.stats.steps - steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    names = args.models.split(",")
    sizes = [int(b) for b in args.batches.split(",")]
    pool = requests(max(sizes), args.max_tokens)
    metrics: dict[str, float | int] = {}
    loaded: dict[str, HFModel] = {}
    for name in names:
        started = time.perf_counter()
        # In this process (no child process per model): generate is timed directly.
        model = TransformersBackend(name, max_batch=max(sizes), processes=False).load()
        assert isinstance(model, HFModel)
        loaded[name] = model
        metrics[f"load_s_{name}"] = round(time.perf_counter() - started, 1)
        timed(loaded[name], pool[:1])  # warm-up
        for size in sizes:
            for prefix in ("", "static_"):
                if prefix and metrics.get(f"static_fallback_{name}"):
                    continue  # static decoding fell back once: every later call would too
                model.static_decode = prefix == "static_"
                if model.static_decode:
                    timed(model, pool[:size])  # captures the step's graph for this shape
                seconds, tokens, steps = timed(model, pool[:size])
                if prefix and not model.static_decode:  # refused, or the capture failed
                    metrics[f"static_fallback_{name}"] = 1
                    continue  # that call ran generate: not a static figure
                tok_s, ms_step = tokens / seconds, 1000 * seconds / max(1, steps)
                metrics[f"{prefix}tok_s_{name}_b{size}"] = round(tok_s, 1)
                metrics[f"{prefix}ms_step_{name}_b{size}"] = round(ms_step, 1)
                print(
                    f"{name} batch {size}{' static' if prefix else ''}: "
                    f"{tok_s:,.0f} tok/s, {ms_step:.1f} ms/step",
                    flush=True,
                )
        model.static_decode = False
        release(model.model)
    results: dict[str, tuple[float, int, int]] = {}

    def run(name: str) -> None:
        results[name] = timed(loaded[name], pool[: max(sizes)])

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    metrics["tok_s_all_models_at_once"] = round(sum(r[1] for r in results.values()) / wall, 1)
    print(f"all at once: {metrics['tok_s_all_models_at_once']:,.0f} tok/s", flush=True)
    gpu = gpu_name()
    extra: dict[str, Any] = {
        "note": (
            "REAL models (not simulated), greedy, MMLU prompts; tokens are the new tokens "
            "the replies kept. ms_step is wall time over decoding steps of the longest reply. "
            "static_ metrics: the same batches with GOA_STATIC_DECODE (static cache, CUDA "
            "graph on a GPU), after one untimed call of the same shape."
        ),
        "max_tokens": args.max_tokens,
    }
    write_result(
        "transformers-throughput",
        metrics=metrics,
        goals={},
        simulated=False,
        command="python -m benchmarks.transformers_throughput " + " ".join(sys.argv[1:]),
        machine_text=machine() + (f"; GPU {gpu}" if gpu else ""),
        extra=extra,
        directory=args.out,
    )


if __name__ == "__main__":
    main()
