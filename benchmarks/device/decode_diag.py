"""GPU diagnostic: milliseconds per decoding step of the transformers backend, by variant.

A randomly initialised model shaped like one of the local models (``config.json`` and
tokenizer of its export in ``DIR``; random weights never emit end-of-sequence, so every
reply runs its full length) decodes a batch of MMLU-like prompts through
:class:`goa.inference.hf_model.HFModel`. Printed as one JSON line per run:

- ``new``: ms/step the first time these batch shapes run in the process;
- ``again``: the same batch once more;
- ``profile``: the CUDA runtime calls and operators that took the most CPU time in a
  first run (``--profile``).

Variants are chosen by the environment (``PYTORCH_CUDA_ALLOC_CONF``,
``GOA_CUDA_RESERVE_GB``, ``GOA_CUDNN_ATTENTION``) and by ``--threads N``: N models decoding
at once from N threads of this process (the ms/step each saw), to compare with N
processes started side by side. Not a benchmark result: evidence for
``docs/gpu-evaluation.md``.

Usage: ``python benchmarks/device/decode_diag.py DIR --batch 64 --tokens 64 [--profile]
[--threads N] [--label NAME]``
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from goa.inference.hf_model import HFModel
from goa.inference.transformers_backend import configure_attention, reserve_gpu_memory
from goa.inference.types import ChatRequest, Message

QUESTION = (
    "The following is a multiple choice question about biology. Which organelle makes ATP? "
    "(A) ribosome (B) mitochondrion (C) nucleus (D) golgi apparatus. Think step by step and "
    "end with 'The answer is (X)'. Question number %d."
)


def build(directory: str, device: str) -> HFModel:
    tokenizer = AutoTokenizer.from_pretrained(directory)
    config = AutoConfig.from_pretrained(directory)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        network = AutoModelForCausalLM.from_config(config, dtype=dtype)
    reserve_gpu_memory(device)  # GOA_CUDA_RESERVE_GB, as load_model does
    configure_attention(device)  # cuDNN attention off unless GOA_CUDNN_ATTENTION=1
    return HFModel(network, tokenizer, name=os.path.basename(directory), max_batch=1024)


def requests(batch: int, tokens: int, offset: int = 0) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=(Message(role="user", content=QUESTION % (offset + i) + " x" * (i % 7)),),
            max_tokens=tokens,
            temperature=0.0,
        )
        for i in range(batch)
    ]


def ms_per_step(model: HFModel, batch: list[ChatRequest]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    steps, started = model.stats.steps, time.perf_counter()
    model.generate(batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return round(1000 * (time.perf_counter() - started) / max(1, model.stats.steps - steps), 1)


def profiled(model: HFModel, batch: list[ChatRequest]) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        model.generate(batch)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {"name": e.key[:60], "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1)}
        for e in rows[:25]
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    label = args.label or os.path.basename(args.directory)
    if args.threads:
        models = [build(args.directory, device) for _ in range(args.threads)]
        ms_per_step(models[0], requests(2, 4))
        seen: dict[int, float] = {}

        def run(index: int) -> None:
            seen[index] = ms_per_step(models[index], requests(args.batch, args.tokens, index))

        workers = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        print(json.dumps({"label": label, "threads": args.threads, "ms_step": seen}), flush=True)
        return
    model = build(args.directory, device)
    ms_per_step(model, requests(2, 4))  # kernels loaded, cuBLAS handles made
    result: dict[str, Any] = {"label": label, "batch": args.batch}
    batch = requests(args.batch, args.tokens)
    if args.profile:
        result["profile"] = profiled(model, batch)
        result["again"] = ms_per_step(model, batch)
    else:
        result["new"] = ms_per_step(model, batch)
        result["again"] = ms_per_step(model, batch)
        result["other"] = ms_per_step(model, requests(args.batch, args.tokens, 1000))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
