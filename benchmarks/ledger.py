"""TRUST ledger speed: batched appends, full verification of 1,000,000 entries, proof sizes.

Builds a ledger of ``--entries`` (default 1,000,000) verdict records in a temporary folder with
:meth:`trust.ledger.Ledger.append_many` (batches of ``--batch``), then

* ``appends_per_s``: records appended per second over the whole build (target >= 20,000);
* ``verify_1m_s``: median wall time of ``--verify-runs`` full :meth:`Ledger.verify` runs
  (target <= 5 s for 1,000,000 entries);
* ``proof_len_<n>`` / ``proof_verify_us_<n>`` for n = 10, 100, ..., 10**6: the number of hashes
  in an inclusion proof at tree size n (the mean over the sampled indexes, which grows as
  log2 n) and the median time of :func:`trust.merkle.verify_inclusion` for one proof.

Writes ``benchmarks/results/ledger.json`` and a plot ``benchmarks/results/ledger-proofs.png``.
Usage: ``.venv/bin/python -m benchmarks.ledger [--entries N] [--batch B] [--verify-runs R]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.results_file import RESULTS_DIR, write_result
from trust.ledger import Ledger
from trust.merkle import verify_inclusion

VERIFY_TARGET_S = 5.0
APPENDS_TARGET = 20_000
PROOFS_PER_SIZE = 200


def build(ledger: Ledger, entries: int, batch: int) -> float:
    """Append ``entries`` verdict records in batches; return the wall time."""
    start = time.perf_counter()
    for low in range(0, entries, batch):
        ledger.append_many(
            {"kind": "verdict", "i": i, "node": f"node-{i % 64}", "vote": "valid"}
            for i in range(low, min(entries, low + batch))
        )
    return time.perf_counter() - start


def proof_curve(ledger: Ledger, sizes: list[int]) -> dict[int, tuple[float, float]]:
    """For each size: (mean proof length, median verification time in microseconds)."""
    rng = random.Random(6962)
    curve = {}
    for n in sizes:
        root = ledger.root(n)
        lengths = []
        times = []
        for index in (rng.randrange(n) for _ in range(PROOFS_PER_SIZE)):
            proof = ledger.inclusion_proof(index, n)
            leaf = ledger.entry(index).leaf_hash
            start = time.perf_counter()
            verify_inclusion(index, n, leaf, proof, root)
            times.append(time.perf_counter() - start)
            lengths.append(len(proof))
        curve[n] = (statistics.mean(lengths), statistics.median(times) * 1e6)
    return curve


def plot(curve: dict[int, tuple[float, float]], path: Path) -> None:
    sizes = sorted(curve)
    fig, left = plt.subplots(figsize=(6.4, 4.0))
    left.plot(sizes, [curve[n][0] for n in sizes], "o-", color="tab:blue")
    left.set_xscale("log")
    left.set_xlabel("ledger size n (entries)")
    left.set_ylabel("inclusion proof length (hashes)", color="tab:blue")
    right = left.twinx()
    right.plot(sizes, [curve[n][1] for n in sizes], "s--", color="tab:orange")
    right.set_ylabel("proof verification time (µs, median)", color="tab:orange")
    right.set_ylim(bottom=0)
    left.set_title("TRUST ledger: inclusion proofs grow as log2 n")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--verify-runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Ledger(Path(folder) / "ledger.sqlite") as ledger:
        build_s = build(ledger, args.entries, args.batch)
        appends_per_s = args.entries / build_s
        print(f"appended {args.entries} records in {build_s:.1f} s: {appends_per_s:,.0f}/s")
        verify_times = []
        for _ in range(args.verify_runs):
            start = time.perf_counter()
            report = ledger.verify()
            verify_times.append(time.perf_counter() - start)
            if not report.ok:
                raise SystemExit(f"verify failed on a fresh ledger: {report.problem}")
        verify_s = statistics.median(verify_times)
        print(f"verify: {[round(t, 2) for t in verify_times]} s, median {verify_s:.2f} s")
        sizes = [10**k for k in range(1, 7) if 10**k <= args.entries]
        curve = proof_curve(ledger, sizes)
    metrics: dict[str, float | int] = {
        "entries": args.entries,
        "batch": args.batch,
        "verify_1m_s": round(verify_s, 3),
        "verify_runs": args.verify_runs,
        "appends_per_s": round(appends_per_s),
        "build_s": round(build_s, 2),
    }
    for n, (length, micros) in curve.items():
        metrics[f"proof_len_{n}"] = round(length, 2)
        metrics[f"proof_verify_us_{n}"] = round(micros, 2)
        print(f"n={n:>8}: proof {length:5.2f} hashes, verify {micros:6.1f} µs")
    full = args.entries == 1_000_000
    path = write_result(
        "ledger",
        metrics=metrics,
        goals={
            "verify_1m_s": {
                "target": f"<= {VERIFY_TARGET_S:g} s",
                "met": full and verify_s <= VERIFY_TARGET_S,
            },
            "appends_per_s": {
                "target": f">= {APPENDS_TARGET}",
                "met": appends_per_s >= APPENDS_TARGET,
            },
        },
        simulated=False,
        extra={
            "note": (
                "file-backed SQLite ledger (WAL, synchronous=FULL) in a temporary folder; "
                f"append_many in batches of {args.batch}; verify recomputes every leaf, chain "
                "and node hash; proof_len is the mean over "
                f"{PROOFS_PER_SIZE} random indexes per size"
            )
        },
    )
    plot(curve, RESULTS_DIR / "ledger-proofs.png")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
