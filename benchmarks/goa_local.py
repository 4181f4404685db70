"""Graph-of-Agents on the real embedded local models (llama.cpp, CPU): wall time and calls.

Runs paper-style GoA (pool ``local``, k=3, max pooling, LLM selector) on the
first ``--questions`` MMLU questions of the Graph-of-Agents dev sample
(``../shared/data/benchmarks/dev/MMLU_sampled_dev.json``) in three settings:
``free`` (the paper: free-text replies, prompted judges), ``structured``
(schema-constrained JSON for the selector and the judges) and ``likelihood``
(judges score answers by log-probability), and records per run: wall time, calls, tokens, the
retries and fallbacks of each stage, and whether the extracted answer letter is
right. Models are loaded before timing starts. The figures come from real
models; with one or two questions they show cost and robustness, not accuracy.
Usage: ``.venv/bin/python -m benchmarks.goa_local [--questions N] [--max-tokens N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.results_file import write_result
from goa import GraphOfAgents, allow_model_requests
from goa.inference.llamacpp_backend import LlamaCppBackend
from goa.inference.local_models import LOCAL_MODELS
from goa.result import Result

DATA = Path(__file__).resolve().parents[2] / "shared/data/benchmarks/dev/MMLU_sampled_dev.json"
ANSWER_FORMAT = (
    "Finish with a last line of the form 'Answer: X' where X is one letter A, B, C or D."
)


SETTINGS: dict[str, dict[str, Any]] = {
    "free": {"structured": False, "judge": "prompt"},
    "structured": {"structured": True, "judge": "prompt"},
    "likelihood": {"structured": False, "judge": "likelihood"},
}


def run_one(question: dict[str, Any], *, setting: str, max_tokens: int) -> dict[str, Any]:
    goa = GraphOfAgents(
        pool="local",
        k=3,
        pooling="max",
        answer_format=ANSWER_FORMAT,
        max_tokens=max_tokens,
        **SETTINGS[setting],
    )
    result: Result = goa.run(question["question"])
    letter = (result.final_answer or "").strip().strip("().").upper()[:1]
    return {
        "setting": setting,
        "wall_s": round(result.wall_s, 2),
        "calls": result.totals.calls,
        "prompt_tokens": result.totals.prompt_tokens,
        "completion_tokens": result.totals.completion_tokens,
        "answered": result.answered,
        "answer_letter": letter or None,
        "gold": question["gold_answer"],
        "correct": letter == question["gold_answer"],
        "selected": [s.agent for s in result.selected],
        "ranking": result.ranking,
        "stages": {
            name: {
                "wall_s": round(stage.wall_s, 2),
                "calls": stage.totals.calls,
                "retries": stage.retries,
                "fallbacks": stage.fallbacks,
                "errors": stage.errors,
            }
            for name, stage in result.stages.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    questions = json.loads(DATA.read_text(encoding="utf-8"))[: args.questions]
    runs: list[dict[str, Any]] = []
    with allow_model_requests():
        for model_id in LOCAL_MODELS:  # load every model first: timing excludes loading
            LlamaCppBackend(model_id).load()
        for question in questions:
            for setting in SETTINGS:
                run = run_one(question, setting=setting, max_tokens=args.max_tokens)
                runs.append(run)
                print(json.dumps(run))
    metrics: dict[str, float | int] = {}
    for label in SETTINGS:
        mine = [r for r in runs if r["setting"] == label]
        metrics[f"wall_s_{label}"] = round(statistics.median(r["wall_s"] for r in mine), 2)
        metrics[f"calls_{label}"] = statistics.median(r["calls"] for r in mine)
        metrics[f"retries_{label}"] = sum(s["retries"] for r in mine for s in r["stages"].values())
        metrics[f"fallbacks_{label}"] = sum(
            s["fallbacks"] for r in mine for s in r["stages"].values()
        )
        metrics[f"correct_{label}"] = sum(r["correct"] for r in mine)
    metrics["questions"] = len(questions)
    path = write_result(
        "goa-local",
        metrics=metrics,
        goals={},
        simulated=False,
        extra={
            "settings": {"pool": "local", "k": 3, "pooling": "max", "max_tokens": args.max_tokens},
            "runs": runs,
            "note": "real GGUF models through llama.cpp on the CPU; a handful of questions "
            "measures time, calls and robustness, not accuracy",
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
