"""SIMULATED: does TRUST's commit-reveal stake vote stay correct, and pay honesty, under attack?

A Monte Carlo simulation that drives the real protocol code (:class:`trust.consensus.
ConsensusEngine` over a :class:`trust.stakes.StakeBook`): only the auditors are simulated.
Nothing here calls a model or a person; every figure it writes is labelled simulated.

Set-up per setting (adversary kind x adversary stake fraction x honest LLM accuracy):

* every piece has a hidden truth, ``valid`` or ``invalid`` with probability 1/2, and no
  computational check applies, so every piece goes to the stake vote;
* an LLM committee of ``--llm-committee`` auditors (stake ``llm_stake`` each) votes; a share
  ``f`` of them (rounded) is adversarial, so adversaries hold ``f`` of the LLM stake.  Honest
  LLM auditors abstain with probability ``llm_abstain`` and are otherwise right with
  probability ``p``;
* on escalation a human committee of ``--human-committee`` reviewers (stake ``human_stake``
  each, right with probability ``human_accuracy``) votes, a share ``f`` of them adversarial too;
* every honest auditor fails to reveal with probability ``miss_reveal`` (a crash), and pays the
  missing-reveal penalty;
* adversaries: a *flipper* forms an honest-quality opinion and votes the opposite; *colluders*
  know the truth and all vote against it (the strongest coordinated attack).

Metrics per setting: decision accuracy (an undecided piece counts as wrong), escalation and
undecided rates, mean profit per piece of an honest auditor (LLM and human tier apart and
together) and of an adversary, the measured match rates ``p`` (honest) and ``q`` (adversary)
with the final decision, and the stake conservation check (the book's total equals what was
deposited, and the per-account changes sum to zero).

Usage: ``.venv/bin/python -m benchmarks.audit_incentives [--pieces N] [--seed S]``; writes
``benchmarks/results/audit-incentives.json`` and ``benchmarks/results/audit-incentives.png``.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

from benchmarks.results_file import RESULTS_DIR, write_result
from trust.consensus import Ballot, ConsensusEngine, ConsensusParams, Decision
from trust.stakes import StakeBook
from trust.verdict import Vote

FRACTIONS_PCT: tuple[int, ...] = (0, 10, 20, 30, 40)
ACCURACIES: tuple[float, ...] = (0.8, 0.9)
REQUESTER = "requester"


class Adversary(StrEnum):
    """How adversarial auditors vote."""

    FLIPPER = "flipper"
    COLLUDER = "colluder"


@dataclass(frozen=True)
class SimConfig:
    """One setting's auditors and protocol parameters (amounts in stake units)."""

    pieces: int = 2_000
    llm_committee: int = 20
    human_committee: int = 10
    llm_accuracy: float = 0.85
    human_accuracy: float = 0.95
    llm_abstain: float = 0.05
    miss_reveal: float = 0.01
    llm_stake: int = 1_000
    human_stake: int = 5_000
    seed: int = 0
    params: ConsensusParams = field(default_factory=ConsensusParams)


@dataclass(frozen=True)
class SettingResult:
    """Simulated outcome of one setting (profits are stake units per auditor per piece)."""

    adversary: str
    fraction_pct: int
    llm_accuracy: float
    pieces: int
    adversaries_llm: int
    adversaries_human: int
    accuracy: float
    escalation_rate: float
    undecided_rate: float
    honest_profit: float
    honest_llm_profit: float
    honest_human_profit: float
    adversary_profit: float | None
    honest_match_rate: float
    adversary_match_rate: float | None
    conserved: bool
    stake_total_change: int


def _flip(vote: Vote) -> Vote:
    return Vote.INVALID if vote is Vote.VALID else Vote.VALID


def simulate(
    adversary: Adversary, fraction_pct: int, config: SimConfig = SimConfig()
) -> SettingResult:
    """Run ``config.pieces`` audits through the real engine and measure them (seeded)."""
    rng = random.Random(f"{config.seed}/{adversary.value}/{fraction_pct}/{config.llm_accuracy}")
    n_adv_llm = round(config.llm_committee * fraction_pct / 100)
    n_adv_human = round(config.human_committee * fraction_pct / 100)
    llm = [f"llm{i}" for i in range(config.llm_committee)]
    humans = [f"human{i}" for i in range(config.human_committee)]
    adversaries = set(llm[:n_adv_llm]) | set(humans[:n_adv_human])
    book = StakeBook()
    fund = 10**15
    for account in (REQUESTER, *llm, *humans):
        book.open(account, fund)
    start = {a: book.balance(a) for a in book.accounts()}
    engine = ConsensusEngine(book, config.params)

    def salt() -> str:
        return rng.randbytes(16).hex()

    def ballots(
        members: Sequence[str], truth: Vote, accuracy: float, stake: int, abstain: float
    ) -> list[Ballot]:
        out: list[Ballot] = []
        for auditor in members:
            opinion = truth if rng.random() < accuracy else _flip(truth)
            if auditor in adversaries:
                vote = _flip(truth) if adversary is Adversary.COLLUDER else _flip(opinion)
                out.append(Ballot(auditor, vote, stake, salt()))
                continue
            vote = Vote.ABSTAIN if rng.random() < abstain else opinion
            reveal = rng.random() >= config.miss_reveal
            out.append(Ballot(auditor, vote, stake, salt(), reveal))
        return out

    correct = escalated = undecided = 0
    matches = {True: [0, 0], False: [0, 0]}  # honest?: [matching decisive votes, all]
    for n in range(config.pieces):
        truth = Vote.VALID if rng.random() < 0.5 else Vote.INVALID
        outcome = engine.audit(
            f"piece{n}",
            requester=REQUESTER,
            llm=ballots(llm, truth, config.llm_accuracy, config.llm_stake, config.llm_abstain),
            human=partial(ballots, humans, truth, config.human_accuracy, config.human_stake, 0.0),
        )
        correct += outcome.decision.value == truth.value
        escalated += outcome.escalated
        undecided += outcome.decision is Decision.UNDECIDED
        if outcome.decision is not Decision.UNDECIDED:
            for rnd in outcome.rounds:
                for auditor, vote in rnd.votes.items():
                    if vote is not Vote.ABSTAIN:
                        tally = matches[auditor not in adversaries]
                        tally[0] += vote.value == outcome.decision.value
                        tally[1] += 1
    book.check()
    delta = {a: book.balance(a) - start.get(a, 0) for a in book.accounts()}
    conserved = sum(delta.values()) == 0 and book.total() == book.deposited - book.withdrawn

    def per_piece(members: Sequence[str]) -> float:
        return sum(delta[a] for a in members) / len(members) / config.pieces if members else 0.0

    honest_llm = [a for a in llm if a not in adversaries]
    honest_human = [a for a in humans if a not in adversaries]
    bad = sorted(adversaries)
    return SettingResult(
        adversary=adversary.value,
        fraction_pct=fraction_pct,
        llm_accuracy=config.llm_accuracy,
        pieces=config.pieces,
        adversaries_llm=n_adv_llm,
        adversaries_human=n_adv_human,
        accuracy=correct / config.pieces,
        escalation_rate=escalated / config.pieces,
        undecided_rate=undecided / config.pieces,
        honest_profit=per_piece(honest_llm + honest_human),
        honest_llm_profit=per_piece(honest_llm),
        honest_human_profit=per_piece(honest_human),
        adversary_profit=per_piece(bad) if bad else None,
        honest_match_rate=matches[True][0] / max(matches[True][1], 1),
        adversary_match_rate=matches[False][0] / matches[False][1] if matches[False][1] else None,
        conserved=conserved,
        stake_total_change=book.total() - sum(start.values()),
    )


def _run(job: tuple[Adversary, int, SimConfig]) -> SettingResult:
    return simulate(*job)


def run_all(
    config: SimConfig,
    *,
    accuracies: Sequence[float] = ACCURACIES,
    fractions: Sequence[int] = FRACTIONS_PCT,
    workers: int = 1,
) -> list[SettingResult]:
    """Every adversary kind x fraction x honest LLM accuracy, in that order."""
    jobs = [
        (kind, pct, SimConfig(**{**_fields(config), "llm_accuracy": acc}))
        for acc in accuracies
        for kind in Adversary
        for pct in fractions
    ]
    if workers <= 1:
        return [_run(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_run, jobs))


def _fields(config: SimConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in SimConfig.__dataclass_fields__}


def goals(results: Sequence[SettingResult]) -> dict[str, dict[str, Any]]:
    """The benchmark's goals, checked on ``results``."""
    by_key = {(r.adversary, r.llm_accuracy, r.fraction_pct): r for r in results}
    drops = [
        by_key[(k, a, 0)].accuracy - by_key[(k, a, 30)].accuracy
        for (k, a, pct) in by_key
        if pct == 30 and (k, a, 0) in by_key
    ]
    upto40 = [r for r in results if r.fraction_pct <= 40]
    return {
        "accuracy_at_30pct_within_2_points": {
            "target": "decision accuracy at 30% adversarial stake is within 2 points of 0% "
            "(every adversary kind and honest accuracy; simulated)",
            "met": bool(drops) and max(drops) <= 0.02,
            "worst_drop_points": round(100 * max(drops), 2) if drops else None,
        },
        "honest_profit_positive": {
            "target": "mean honest profit per piece > 0 at every fraction up to 40% (simulated)",
            "met": all(r.honest_profit > 0 for r in upto40),
        },
        "adversary_profit_negative": {
            "target": "mean adversary profit per piece < 0 at every fraction 10-40% (simulated)",
            "met": all(r.adversary_profit is None or r.adversary_profit < 0 for r in upto40),
        },
        "stake_conserved": {
            "target": "stake is conserved exactly in every setting",
            "met": all(r.conserved for r in results),
        },
    }


def metrics(results: Sequence[SettingResult]) -> dict[str, float | int]:
    """Flat metrics for the result file: ``<kind>_p<acc>_f<pct>_<name>``."""
    out: dict[str, float | int] = {}
    for r in results:
        key = f"{r.adversary}_p{round(r.llm_accuracy * 100)}_f{r.fraction_pct}"
        out[f"{key}_accuracy"] = round(r.accuracy, 4)
        out[f"{key}_escalation_rate"] = round(r.escalation_rate, 4)
        out[f"{key}_honest_profit"] = round(r.honest_profit, 2)
        if r.adversary_profit is not None:
            out[f"{key}_adversary_profit"] = round(r.adversary_profit, 2)
    return out


def plot(results: Sequence[SettingResult], path: str) -> None:
    """Accuracy and profits against adversary fraction, one line per kind and accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[tuple[str, float], list[SettingResult]] = {}
    for r in results:
        series.setdefault((r.adversary, r.llm_accuracy), []).append(r)
    for (kind, acc), rows in series.items():
        rows.sort(key=lambda r: r.fraction_pct)
        xs = [r.fraction_pct for r in rows]
        label = f"{kind}, p={acc:g}"
        ax1.plot(xs, [100 * r.accuracy for r in rows], marker="o", label=label)
        ax2.plot(xs, [r.honest_profit for r in rows], marker="o", label=f"honest ({label})")
        adv = [(r.fraction_pct, r.adversary_profit) for r in rows if r.adversary_profit]
        ax2.plot(
            [x for x, _ in adv], [y for _, y in adv], marker="x", ls="--", label=f"adv ({label})"
        )
    ax1.set(
        xlabel="adversarial stake (%)", ylabel="decision accuracy (%)", title="Accuracy (SIMULATED)"
    )
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set(
        xlabel="adversarial stake (%)",
        ylabel="profit per auditor per piece (units)",
        title="Profit (SIMULATED)",
    )
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=6)
    fig.suptitle("TRUST commit-reveal stake vote: Monte Carlo simulation, not real auditors")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pieces", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llm-committee", type=int, default=20)
    parser.add_argument("--human-committee", type=int, default=10)
    parser.add_argument("--human-accuracy", type=float, default=0.95)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    config = SimConfig(
        pieces=args.pieces,
        seed=args.seed,
        llm_committee=args.llm_committee,
        human_committee=args.human_committee,
        human_accuracy=args.human_accuracy,
    )
    started = time.perf_counter()
    results = run_all(config, workers=args.workers)
    wall = time.perf_counter() - started
    for r in results:
        adv = "-" if r.adversary_profit is None else f"{r.adversary_profit:9.1f}"
        print(
            f"{r.adversary:8s} p={r.llm_accuracy:.2f} f={r.fraction_pct:2d}%  "
            f"acc={100 * r.accuracy:6.2f}%  esc={100 * r.escalation_rate:5.1f}%  "
            f"honest={r.honest_profit:8.1f}  adversary={adv}  conserved={r.conserved}"
        )
    checked = goals(results)
    params = config.params
    m = metrics(results)
    m["wall_s"] = round(wall, 1)
    write_result(
        "audit-incentives",
        metrics=m,
        goals=checked,
        simulated=True,
        extra={
            "note": "SIMULATED auditors (Monte Carlo) driving the real trust.consensus and "
            "trust.stakes code; no model or person was asked",
            "config": {**_fields(config), "params": asdict(params), "accuracies": ACCURACIES},
            "settings": [asdict(r) for r in results],
        },
    )
    png = RESULTS_DIR / "audit-incentives.png"
    plot(results, str(png))
    print(f"{wall:.1f} s; goals: " + ", ".join(f"{k}={v['met']}" for k, v in checked.items()))


if __name__ == "__main__":
    main()
