"""Smoke tests of the (simulated) audit-incentive benchmark, on few pieces."""

from __future__ import annotations

from dataclasses import replace

from benchmarks.audit_incentives import (
    Adversary,
    SettingResult,
    SimConfig,
    goals,
    metrics,
    run_all,
    simulate,
)

SMALL = SimConfig(pieces=60, seed=3)


def test_simulation_without_adversaries_is_accurate_and_pays_honesty() -> None:
    result = simulate(Adversary.COLLUDER, 0, SMALL)
    assert result.pieces == 60
    assert result.adversaries_llm == result.adversaries_human == 0
    assert result.adversary_profit is None
    assert result.accuracy >= 0.95
    assert result.honest_profit > 0
    assert result.conserved
    assert result.stake_total_change == 0


def test_colluders_lose_money_and_are_counted() -> None:
    result = simulate(Adversary.COLLUDER, 30, SMALL)
    assert (result.adversaries_llm, result.adversaries_human) == (6, 3)
    assert result.adversary_profit is not None
    assert result.adversary_profit < 0
    assert result.adversary_match_rate is not None
    assert result.adversary_match_rate < 0.5
    assert result.escalation_rate > 0  # a 30% bloc pushes pieces to the human tier
    assert result.conserved


def test_simulation_is_seeded() -> None:
    first = simulate(Adversary.FLIPPER, 20, SMALL)
    assert simulate(Adversary.FLIPPER, 20, SMALL) == first
    assert simulate(Adversary.FLIPPER, 20, replace(SMALL, seed=4)) != first


def test_goals_and_metrics_are_computed_from_results() -> None:
    results: list[SettingResult] = run_all(
        replace(SMALL, pieces=20), accuracies=(0.9,), fractions=(0, 30)
    )
    assert [(r.adversary, r.fraction_pct) for r in results] == [
        ("flipper", 0),
        ("flipper", 30),
        ("colluder", 0),
        ("colluder", 30),
    ]
    checked = goals(results)
    assert set(checked) == {
        "accuracy_at_30pct_within_2_points",
        "honest_profit_positive",
        "adversary_profit_negative",
        "stake_conserved",
    }
    assert checked["stake_conserved"]["met"] is True
    flat = metrics(results)
    assert flat["colluder_p90_f0_accuracy"] == round(results[2].accuracy, 4)
    # a made-up accuracy collapse must fail the accuracy goal
    broken = [replace(r, accuracy=0.5) if r.fraction_pct == 30 else r for r in results]
    assert goals(broken)["accuracy_at_30pct_within_2_points"]["met"] is False
    losing = [replace(r, honest_profit=-1.0) for r in results]
    assert goals(losing)["honest_profit_positive"]["met"] is False
