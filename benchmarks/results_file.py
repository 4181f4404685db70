"""Writes a benchmark's result file in the project's one format.

``{"benchmark", "command", "date", "machine", "simulated", "metrics", "goals"}``
where each goal is ``{"target": text, "met": bool}``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """A one-line description of the machine the benchmark ran on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}; {os.cpu_count()} cores; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def gpu_name() -> str | None:
    """The first CUDA GPU's name, or None (no torch, or no GPU)."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


def write_result(
    name: str,
    *,
    metrics: dict[str, float | int],
    goals: dict[str, dict[str, Any]],
    simulated: bool,
    extra: dict[str, Any] | None = None,
    command: str | None = None,
    machine_text: str | None = None,
    directory: Path | None = None,
) -> Path:
    """Write ``NAME.json`` into ``directory`` (default ``benchmarks/results/``) and return
    its path."""
    record: dict[str, Any] = {
        "benchmark": name,
        "command": command or "python -m " + shlex.join([_module_name(), *sys.argv[1:]]),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_text or machine(),
        "simulated": simulated,
        "metrics": metrics,
        "goals": goals,
    }
    if extra:
        record.update(extra)
    directory = directory or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def _module_name() -> str:
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def engine_label(backend: str) -> str:
    """The engine that answers a card's requests, as recorded beside what they produced
    (votes, attributions): ``llamacpp`` (a grammar enforces JSON schemas),
    ``transformers+grammar`` (xgrammar enforces them) or ``transformers`` (nothing does:
    the GPU run of 2026-11-29; set ``GOA_JSON_GRAMMAR=0`` to replay its votes), or the
    card's backend."""
    from goa.inference.factory import local_engine
    from goa.inference.json_grammar import grammar_available, grammar_wanted

    engine = local_engine() if backend == "llamacpp" else backend
    if engine == "transformers" and grammar_wanted() and grammar_available():
        return "transformers+grammar"
    return engine


def transformers_batching() -> dict[str, Any]:
    """How the transformers backend batched in this process, per loaded model (batches,
    requests, mean and largest batch, out-of-memory splits, batches under a JSON grammar and
    grammar failures, seconds spent running batches, load time); empty when that backend
    was not used."""
    if "goa.inference.transformers_backend" not in sys.modules:
        return {}
    from goa.inference.transformers_backend import loaded_models

    return {
        m.name: {
            "batches": m.stats.batches,
            "requests": m.stats.requests,
            "mean_batch": round(m.stats.mean, 1),
            "largest_batch": m.stats.largest,
            "oom_splits": m.stats.splits,
            "grammar_batches": m.stats.grammar_batches,
            "grammar_failures": m.stats.grammar_failures,
            "busy_s": round(m.stats.busy_s, 1),
            "load_s": round(m.load_s, 1),
        }
        for m in loaded_models()
    }
