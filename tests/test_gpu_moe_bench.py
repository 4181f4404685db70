"""benchmarks.gpu_moe on the CPU: the floor's arithmetic, the result record, out of
memory at one batch size, and the time budget (tiny models, batches 1 and 2)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks import gpu_moe  # noqa: E402
from goa.inference.memory_budget import parameter_count  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Two OpenMP threads on two shared cores make batch-2 steps 50x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _options(out: Path, **changes: Any) -> gpu_moe.Options:
    settings: dict[str, Any] = {
        "models": ["olmoe"],
        "batches": [1, 2],
        "new_tokens": 3,
        "prompt_tokens": 16,
        "budget_s": 600.0,
        "tiny": True,
        "device": "cpu",
        "copy_mib": 4,
        "out": out,
        "command": "test",
    }
    settings.update(changes)
    return gpu_moe.Options(**settings)


def _record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record


# --- arithmetic ---------------------------------------------------------------------------


def test_expected_experts_hit_by_hand() -> None:
    assert gpu_moe.expected_experts_hit(64, 8, 1) == pytest.approx(8.0)
    # 64 * (1 - (56/64)^2) = 64 - 49
    assert gpu_moe.expected_experts_hit(64, 8, 2) == pytest.approx(15.0)
    assert gpu_moe.expected_experts_hit(4, 2, 2) == pytest.approx(3.0)
    assert gpu_moe.expected_experts_hit(60, 4, 1) == pytest.approx(4.0)
    assert gpu_moe.expected_experts_hit(8, 8, 5) == pytest.approx(8.0)
    assert gpu_moe.expected_experts_hit(64, 8, 64) == pytest.approx(64 * (1 - (7 / 8) ** 64))
    assert gpu_moe.expected_experts_hit(0, 0, 7) == 0.0
    assert gpu_moe.expected_experts_hit(64, 8, 0) == 0.0


def test_weight_bytes_by_hand() -> None:
    profile = gpu_moe.WeightProfile(
        always=1000,
        moe_layers=2,
        experts=4,
        top_k=2,
        per_expert=100,
        embedding_width=8,
        bytes_per_parameter=2,
        embedding=80,
    )
    assert profile.parameters == 1000 + 2 * 4 * 100 + 80
    # batch 1: 2 experts per layer, one embedding row
    assert profile.bytes_touched(1) == pytest.approx(2 * (1000 + 2 * 2 * 100 + 8))
    # batch 2: 4 * (1 - (1/2)^2) = 3 experts per layer, two rows
    assert profile.bytes_touched(2) == pytest.approx(2 * (1000 + 2 * 3 * 100 + 16))
    # the measured count in place of the expected one
    assert profile.bytes_touched(2, experts_hit=4) == pytest.approx(2 * (1000 + 800 + 16))
    dense = gpu_moe.WeightProfile(1000, 0, 0, 0, 0, 0, 2)
    assert dense.bytes_touched(64) == 2000


def test_kv_bytes_floor_and_step_time_by_hand() -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        "llama", num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2
    )
    # 2 (K and V) * 2 layers * 2 KV heads * 16 wide * 10 tokens * 3 rows * 2 bytes
    assert gpu_moe.kv_bytes(config, batch=3, context=10, bytes_per_value=2) == 7680
    assert gpu_moe.floor_ms(4.2e9, 4.2e12) == pytest.approx(1.0)
    assert gpu_moe.decode_ms(1.0, 0.1, 10) == pytest.approx(100.0)
    assert gpu_moe.decode_ms(1.0, 2.0, 10) == pytest.approx(100.0)  # noise: whole call
    assert gpu_moe.decode_ms(0.5, 0.1, 1) == pytest.approx(500.0)


def test_real_shapes_match_the_public_models_and_the_issue_floor() -> None:
    """Built on the meta device (no memory): parameter counts of the real models, and
    the issue's OLMoE floor at batch 64 (13.6 GB of weights, 3.3 ms at 4.2 TB/s)."""
    billions = {"olmoe": 6.92, "qwen15moe": 14.32, "llama2_7b": 6.74}
    for key, expected in billions.items():
        model_type, settings = gpu_moe.model_settings(key)
        model = gpu_moe.build_model(model_type, settings, "meta", torch.bfloat16)
        profile = gpu_moe.weight_profile(model)
        total = sum(p.numel() for p in model.parameters())
        assert profile.parameters == total == parameter_count(model.config)
        assert total / 1e9 == pytest.approx(expected, abs=0.01)
        if key == "olmoe":
            assert (profile.moe_layers, profile.experts, profile.top_k) == (16, 64, 8)
            assert profile.per_expert == 3 * 2048 * 1024
            weights_b64 = profile.bytes_touched(64)
            assert weights_b64 / 1e9 == pytest.approx(13.63, abs=0.01)
            assert gpu_moe.floor_ms(weights_b64, 4.2e12) == pytest.approx(3.25, abs=0.01)
            # batch 1: non-expert weights + 8 experts per layer, about 2.36 GB
            assert profile.bytes_touched(1) / 1e9 == pytest.approx(2.358, abs=0.001)


def test_scaled_shapes_keep_routing_and_head_width() -> None:
    model_type, settings = gpu_moe.model_settings("olmoe", scale=0.125)
    assert model_type == "olmoe"
    assert settings["num_hidden_layers"] == 2
    assert settings["hidden_size"] == 2 * 128 == settings["num_attention_heads"] * 128
    assert (settings["num_experts"], settings["num_experts_per_tok"]) == (64, 8)
    _, tiny = gpu_moe.model_settings("qwen15moe", tiny=True)
    assert tiny["hidden_size"] == 64
    assert tiny["num_experts"] == 8


# --- runs -----------------------------------------------------------------------------


def test_record_has_the_metrics(tmp_path: Path) -> None:
    path = gpu_moe.run_benchmark(_options(tmp_path, models=["olmoe", "llama2_7b"]))
    assert path == tmp_path / "gpu-moe.json"
    record = _record(path)
    assert record["benchmark"] == "gpu-moe"
    assert record["simulated"] is False
    assert record["cpu_smoke"] is True
    assert "cpu_smoke" in record["note"]
    assert record["skipped"] == []
    assert record["stopped_early"] is False
    metrics = record["metrics"]
    assert metrics["copy_bandwidth_gb_s"] > 0
    for key in ("olmoe", "llama2_7b"):
        for batch in (1, 2):
            suffix = f"{key}_b{batch}"
            assert metrics[f"floor_ms_{suffix}"] > 0
            assert metrics[f"weight_gb_{suffix}"] > 0
            for name in ("tok_s", "ms_step", "roofline_fraction", "steps"):
                assert metrics[f"{name}_{suffix}"] > 0, name
                assert metrics[f"hf_{name}_{suffix}"] > 0, name
                assert metrics[f"static_{name}_{suffix}"] > 0, name
            assert metrics[f"speedup_vs_hf_{suffix}"] > 0
            assert metrics[f"static_speedup_vs_hf_{suffix}"] > 0
            steps = {metrics[f"{p}steps_{suffix}"] for p in ("", "hf_", "static_")}
            assert steps == {3}
            fraction = metrics[f"floor_ms_{suffix}"] / metrics[f"ms_step_{suffix}"]
            assert metrics[f"roofline_fraction_{suffix}"] == pytest.approx(fraction, rel=0.01)
    assert metrics["experts_hit_expected_olmoe_b1"] == 2
    assert metrics["experts_hit_expected_olmoe_b2"] == pytest.approx(3.5)
    assert 1 <= metrics["experts_hit_measured_olmoe_b2"] <= 4
    assert metrics["experts_hit_measured_olmoe_b1"] == 2  # top-2 of one token
    assert "experts_hit_expected_llama2_7b_b1" not in metrics
    assert metrics["floor_ms_measured_experts_olmoe_b1"] == pytest.approx(
        metrics["floor_ms_olmoe_b1"], rel=0.01
    )
    # the compiled static step: only the headline model, only --compile-batches (1 and 64)
    assert metrics["compiled_steps_olmoe_b1"] == 3
    assert metrics["compiled_speedup_vs_hf_olmoe_b1"] > 0
    assert not [name for name in metrics if name.startswith("compiled_") and "_b2" in name]
    assert not [name for name in metrics if name.startswith("compiled_") and "llama" in name]
    assert record["models"]["olmoe"]["compile_s"]["1"] > 0
    assert record["models"]["olmoe"]["compiled_graph"] == {"1": False}  # no capture on a CPU
    # headline: the OLMoE shape's batch 1 (batch 64 was not run), goa's fastest path
    assert metrics["roofline_fraction_b1"] == max(
        metrics[f"{prefix}roofline_fraction_olmoe_b1"] for prefix in ("", "static_", "compiled_")
    )
    assert "roofline_fraction_b64" not in metrics
    assert set(record["goals"]) == {"P6_roofline_b64", "P6_roofline_b1"}
    assert record["goals"]["P6_roofline_b64"]["met"] is False
    assert record["models"]["olmoe"]["experts"] == 8
    assert record["models"]["olmoe"]["static_graph"] == {"1": False, "2": False}  # no GPU


def test_out_of_memory_skips_one_batch_and_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = gpu_moe._hf_generate
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(gpu_moe, "_hf_generate", flaky)
    record = _record(gpu_moe.run_benchmark(_options(tmp_path)))
    assert record["skipped"] == [
        {"model": "olmoe", "batch": 1, "path": "hf", "reason": "out of memory"}
    ]
    metrics = record["metrics"]
    assert "hf_ms_step_olmoe_b1" not in metrics
    assert "speedup_vs_hf_olmoe_b1" not in metrics
    assert metrics["ms_step_olmoe_b1"] > 0  # goa's path still ran at batch 1
    assert metrics["hf_ms_step_olmoe_b2"] > 0  # and both at batch 2
    assert metrics["speedup_vs_hf_olmoe_b2"] > 0


def test_is_oom() -> None:
    assert gpu_moe.is_oom(torch.cuda.OutOfMemoryError("x"))
    assert gpu_moe.is_oom(RuntimeError("CUDA error: out of memory"))
    assert not gpu_moe.is_oom(RuntimeError("shape mismatch"))
    assert not gpu_moe.is_oom(ValueError("out of memory"))


def test_budget_stops_and_still_writes(tmp_path: Path) -> None:
    record = _record(gpu_moe.run_benchmark(_options(tmp_path, budget_s=0.0)))
    assert record["stopped_early"] is True
    assert [s["model"] for s in record["skipped"]] == ["olmoe"]
    assert record["skipped"][0]["reason"].startswith("budget")
    assert list(record["metrics"]) == ["copy_bandwidth_gb_s"]
    assert record["goals"]["P6_roofline_b1"]["met"] is False


def test_budget_stops_between_batch_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second batch size is predicted to outrun what is left: skipped, file written."""
    clock = {"now": 0.0}
    real_measure = gpu_moe.measure_batch

    def slow_measure(run: gpu_moe.Run, *args: Any) -> None:
        real_measure(run, *args)
        clock["now"] += 100.0  # each batch size "takes" 100 s

    monkeypatch.setattr(gpu_moe, "measure_batch", slow_measure)
    options = _options(tmp_path, budget_s=150.0)
    monkeypatch.setattr(gpu_moe.Run, "elapsed", lambda self: clock["now"])
    record = _record(gpu_moe.run_benchmark(options))
    assert record["stopped_early"] is True
    assert record["skipped"][0]["batch"] == 2
    assert record["skipped"][0]["reason"].startswith("budget")
    assert "ms_step_olmoe_b1" in record["metrics"]
    assert "ms_step_olmoe_b2" not in record["metrics"]


def test_cli_without_gpu_needs_out(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gpu_moe.parse(["--tiny", "--device", "cpu"])
    assert "--out" in capsys.readouterr().err
    options = gpu_moe.parse(["--tiny", "--device", "cpu", "--out", "/tmp/x", "--batches", "1,2"])
    assert options.batches == [1, 2]
    assert options.models == list(gpu_moe.SHAPES)
    assert math.isclose(options.budget_s, 480.0)
    assert options.compile_models == ["olmoe"]
    assert options.compile_batches == [1, 64]


def test_cli_compile_options(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--tiny", "--device", "cpu", "--out", "/tmp/x"]
    options = gpu_moe.parse([*base, "--compile-models", "", "--compile-batches", "8"])
    assert options.compile_models == []
    assert options.compile_batches == [8]
    with pytest.raises(SystemExit):
        gpu_moe.parse([*base, "--compile-models", "mixtral"])
    assert "--compile-models" in capsys.readouterr().err
