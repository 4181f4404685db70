"""Reports over run logs: accuracy with its uncertainty, and spending, per method.

:func:`report` reads one or more run logs (see :mod:`goa.eval.runlog`) and gives,
for each method, the accuracy with its standard error sqrt(p(1-p)/n) and the
normal-approximation 95% interval (as :func:`goa.eval.runner.accuracy_stats`),
the samples without an answer, calls, tokens, cost and latency per question, and
the same accuracy figures per category and per subject.

Several logs may be given: the same method in two logs is merged by sample id,
the first line of a sample winning (later ones are counted in the warnings).

:func:`render_tables` builds rich tables; :func:`write_png` and :func:`write_html`
draw the methods' accuracy with 95% error bars beside their calls per question
(matplotlib, imported only when drawing). The HTML page is self-contained: the
PNG is embedded as base64 next to a plain table of the numbers.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from goa.errors import GoaError
from goa.eval.runlog import LogRecord, read_log
from goa.eval.runner import accuracy_stats

if TYPE_CHECKING:
    from rich.table import Table

By = Literal["category", "subject"]
UNKNOWN_GROUP = "(none)"
"""The group of samples without a category (or subject)."""


class ReportError(GoaError):
    """A file given to ``goa report`` is missing or not a run log."""


class Breakdown(BaseModel):
    """Accuracy over one category or subject."""

    name: str
    n: int
    correct: int
    accuracy: float
    se: float
    ci_low: float
    ci_high: float


class MethodReport(BaseModel):
    """One method over all its samples in the given logs."""

    method: str
    datasets: list[str]
    n: int
    correct: int
    accuracy: float
    se: float
    """Standard error of the accuracy, sqrt(p(1-p)/n)."""
    ci_low: float
    ci_high: float
    """Normal-approximation 95% interval, p +- 1.96 se, clipped to [0, 1]."""
    no_answer: int
    errors: int
    """Samples whose line records at least one error."""
    calls_per_question: float
    tokens_per_question: float
    prompt_tokens_per_question: float
    completion_tokens_per_question: float
    cost_usd: float | None
    """Total cost; None when the cost of any call is unknown."""
    cost_per_question: float | None
    mean_wall_s: float
    """Mean wall time of a sample (the method's answer and the check)."""
    mean_latency_s: float
    """Mean of the per-sample summed call latency."""
    by_category: list[Breakdown] = Field(default_factory=list)
    by_subject: list[Breakdown] = Field(default_factory=list)


class Report(BaseModel):
    """What :func:`report` found in the logs."""

    files: list[str]
    methods: list[MethodReport]
    warnings: list[str] = Field(default_factory=list)
    """Lines skipped or merged away, one note per file and kind."""

    def method(self, name: str) -> MethodReport:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(name)


def _breakdown(records: Sequence[LogRecord], by: By) -> list[Breakdown]:
    groups: dict[str, list[LogRecord]] = {}
    for r in records:
        key = (r.category if by == "category" else r.subject) or UNKNOWN_GROUP
        groups.setdefault(key, []).append(r)
    rows = []
    for name in sorted(groups):
        rows_of = groups[name]
        correct = sum(r.correct for r in rows_of)
        acc, se, low, high = accuracy_stats(correct, len(rows_of))
        rows.append(
            Breakdown(
                name=name,
                n=len(rows_of),
                correct=correct,
                accuracy=acc,
                se=se,
                ci_low=low,
                ci_high=high,
            )
        )
    return rows


def method_report(method: str, records: Sequence[LogRecord]) -> MethodReport:
    """The :class:`MethodReport` of ``records`` (all of one method)."""
    n = len(records)
    correct = sum(r.correct for r in records)
    acc, se, low, high = accuracy_stats(correct, n)
    cost: float | None = 0.0
    for r in records:
        cost = None if cost is None or r.cost_usd is None else cost + r.cost_usd

    def mean(values: Iterable[float]) -> float:
        return sum(values) / n if n else 0.0

    return MethodReport(
        method=method,
        datasets=list(dict.fromkeys(r.dataset for r in records)),
        n=n,
        correct=correct,
        accuracy=acc,
        se=se,
        ci_low=low,
        ci_high=high,
        no_answer=sum(r.no_answer for r in records),
        errors=sum(bool(r.errors) for r in records),
        calls_per_question=mean(r.calls for r in records),
        tokens_per_question=mean(r.tokens for r in records),
        prompt_tokens_per_question=mean(r.prompt_tokens for r in records),
        completion_tokens_per_question=mean(r.completion_tokens for r in records),
        cost_usd=cost,
        cost_per_question=None if cost is None or not n else cost / n,
        mean_wall_s=mean(r.wall_s for r in records),
        mean_latency_s=mean(r.latency_s for r in records),
        by_category=_breakdown(records, "category"),
        by_subject=_breakdown(records, "subject"),
    )


def report(paths: Sequence[Path]) -> Report:
    """The report over the run logs ``paths``, methods in order of first appearance.

    Raises :class:`ReportError` naming the file when one is missing, unreadable,
    or holds no readable log line. Skipped lines and merged duplicates become
    :attr:`Report.warnings`.
    """
    if not paths:
        raise ReportError("no run log given")
    warnings: list[str] = []
    by_method: dict[str, dict[str, LogRecord]] = {}
    for path in paths:
        if not path.exists():
            raise ReportError(f"{path}: no such file")
        if not path.is_file():
            raise ReportError(f"{path}: not a file")
        try:
            contents = read_log(path)
        except OSError as exc:
            raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if not contents.records:
            raise ReportError(f"{path}: not a run log (no readable log line)")
        warnings.extend(f"{path}: {note}" for note in contents.problems())
        merged = 0
        for record in contents.records:
            samples = by_method.setdefault(record.method, {})
            if record.sample_id in samples:
                merged += 1
                continue
            samples[record.sample_id] = record
        if merged:
            warnings.append(
                f"{path}: {merged} sample(s) already in an earlier log for the same method;"
                " kept the earlier line"
            )
    methods = [method_report(m, list(samples.values())) for m, samples in by_method.items()]
    return Report(files=[str(p) for p in paths], methods=methods, warnings=warnings)


# --- rendering --------------------------------------------------------------------------


def _cost(value: float | None, digits: int = 4) -> str:
    return "unknown" if value is None else f"${value:.{digits}f}"


def render_tables(rep: Report, by: By | None = None) -> list[Table]:
    """Accuracy per method, spending per method, then (with ``by``) accuracy per group.

    Two narrow tables rather than one wide one, so that each fits an 80-column terminal.
    """
    from rich.table import Table

    table = Table(title="Accuracy per method")
    spending = Table(title="Spending per method (per question)")
    for header in ("method", "n", "accuracy +- SE", "95% CI", "no answer"):
        table.add_column(header, no_wrap=True, justify="left" if header == "method" else "right")
    for header in ("method", "calls", "tokens", "cost", "total", "wall", "latency"):
        spending.add_column(header, no_wrap=True, justify="left" if header == "method" else "right")
    for m in rep.methods:
        table.add_row(
            m.method,
            str(m.n),
            f"{m.accuracy:.3f} +- {m.se:.3f}",
            f"[{m.ci_low:.3f}, {m.ci_high:.3f}]",
            str(m.no_answer),
        )
        spending.add_row(
            m.method,
            f"{m.calls_per_question:.2f}",
            f"{m.tokens_per_question:.0f}",
            _cost(m.cost_per_question, 5),
            _cost(m.cost_usd),
            f"{m.mean_wall_s:.2f}s",
            f"{m.mean_latency_s:.2f}s",
        )
    tables = [table, spending]
    if by is not None:
        for m in rep.methods:
            sub = Table(by, "n", "accuracy +- SE", "95% CI", title=f"{m.method} by {by}")
            for b in m.by_category if by == "category" else m.by_subject:
                sub.add_row(
                    b.name,
                    str(b.n),
                    f"{b.accuracy:.3f} +- {b.se:.3f}",
                    f"[{b.ci_low:.3f}, {b.ci_high:.3f}]",
                )
            tables.append(sub)
    return tables


def plot_png(rep: Report) -> bytes:
    """A PNG: accuracy with 95% error bars (left) and calls per question (right)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = [m.method for m in rep.methods]
    xs = list(range(len(names)))
    acc = [m.accuracy for m in rep.methods]
    below = [m.accuracy - m.ci_low for m in rep.methods]
    above = [m.ci_high - m.accuracy for m in rep.methods]
    width = max(8.0, 1.2 * len(names) + 4.0)
    fig = Figure(figsize=(width, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.bar(xs, acc, color="#4c72b0", yerr=[below, above], capsize=6)
    left.set_ylim(0.0, 1.15)  # room for the labels above a bar near 1
    left.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    left.set_ylabel("accuracy")
    left.set_title("Accuracy (95% interval)")
    for x, m in zip(xs, rep.methods, strict=True):
        left.annotate(
            f"{m.accuracy:.3f}\nn={m.n}",
            (x, m.ci_high),
            ha="center",
            va="bottom",
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=8,
        )
    right.bar(xs, [m.calls_per_question for m in rep.methods], color="#dd8452")
    right.set_ylabel("calls per question")
    right.set_title("Calls per question")
    for axis in (left, right):
        axis.set_xticks(xs, names, rotation=20, ha="right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_png(rep: Report, path: Path) -> None:
    """Write :func:`plot_png` to ``path``."""
    path.write_bytes(plot_png(rep))


def render_html(rep: Report, png: bytes | None = None) -> str:
    """A self-contained HTML page: the plot (embedded) and the numbers."""
    image = base64.b64encode(png if png is not None else plot_png(rep)).decode("ascii")
    esc = html.escape
    rows = "".join(
        "<tr>"
        f"<td>{esc(m.method)}</td><td>{m.n}</td>"
        f"<td>{m.accuracy:.3f} &plusmn; {m.se:.3f}</td>"
        f"<td>[{m.ci_low:.3f}, {m.ci_high:.3f}]</td><td>{m.no_answer}</td>"
        f"<td>{m.calls_per_question:.2f}</td><td>{m.tokens_per_question:.0f}</td>"
        f"<td>{esc(_cost(m.cost_usd))}</td><td>{m.mean_wall_s:.2f}</td>"
        f"<td>{m.mean_latency_s:.2f}</td>"
        "</tr>"
        for m in rep.methods
    )
    files = ", ".join(esc(f) for f in rep.files)
    warnings = "".join(f"<li>{esc(w)}</li>" for w in rep.warnings)
    notes = f"<ul class='warn'>{warnings}</ul>" if warnings else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>goa report</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child{text-align:left}.warn{color:#a40}"
        "</style></head><body>"
        f"<h1>goa report</h1><p>Run logs: {files}</p>{notes}"
        f"<img alt='accuracy and calls per method' src='data:image/png;base64,{image}'>"
        "<table><tr><th>method</th><th>n</th><th>accuracy &plusmn; SE</th><th>95% CI</th>"
        "<th>no answer</th><th>calls/q</th><th>tokens/q</th><th>cost</th>"
        "<th>wall/q (s)</th><th>latency/q (s)</th></tr>"
        f"{rows}</table></body></html>\n"
    )


def write_html(rep: Report, path: Path, png: bytes | None = None) -> None:
    """Write :func:`render_html` to ``path``."""
    path.write_text(render_html(rep, png), encoding="utf-8")


__all__ = [
    "Breakdown",
    "By",
    "MethodReport",
    "Report",
    "ReportError",
    "method_report",
    "plot_png",
    "render_html",
    "render_tables",
    "report",
    "write_html",
    "write_png",
]
