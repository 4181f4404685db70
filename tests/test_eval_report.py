"""``goa report``: accuracy, SE and 95% CI per method and group, merging, plots, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.report_cmd import report_command
from goa.eval.report import Report, ReportError, render_html, report
from goa.eval.runlog import LogRecord, RunLog

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("report")(report_command)

    @app.command("noop")
    def noop() -> None:  # a second command, so that "report" stays a subcommand
        """Nothing."""

    return app


def record(method: str, sample_id: str, correct: bool, **fields: object) -> LogRecord:
    base: dict[str, object] = {
        "run_id": "r1",
        "method": method,
        "dataset": "quiz",
        "sample_id": sample_id,
        "kind": "multiple_choice",
        "question": f"Question {sample_id}?",
        "gold": "A",
        "correct": correct,
        "no_answer": False,
        "calls": 3,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost_usd": 0.01,
        "latency_s": 1.5,
        "wall_s": 2.0,
        "timestamp": 1000.0,
    }
    base.update(fields)
    return LogRecord.model_validate(base)


def write_log(path: Path, records: list[LogRecord]) -> Path:
    with RunLog(path) as log:
        for r in records:
            log.append(r)
    return path


@pytest.fixture
def two_methods(tmp_path: Path) -> Path:
    """goa: 8 of 10 right (categories stem 4/5, humanities 4/5); single: 5 of 10."""
    records = []
    for i in range(10):
        category = "stem" if i < 5 else "humanities"
        subject = "physics" if i < 3 else ("math" if i < 5 else "history")
        records.append(record("goa", f"q{i}", i not in (0, 5), category=category, subject=subject))
    for i in range(10):
        records.append(
            record(
                "single",
                f"q{i}",
                i % 2 == 0,
                calls=1,
                prompt_tokens=40,
                completion_tokens=10,
                cost_usd=None if i == 3 else 0.002,
                no_answer=i == 1,
                category="stem" if i < 5 else "humanities",
                latency_s=0.5,
                wall_s=0.6,
            )
        )
    return write_log(tmp_path / "run.jsonl", records)


def test_accuracy_se_ci_and_spending(two_methods: Path) -> None:
    rep = report([two_methods])
    assert [m.method for m in rep.methods] == ["goa", "single"]
    goa = rep.method("goa")
    assert (goa.n, goa.correct) == (10, 8)
    assert goa.accuracy == pytest.approx(0.8)
    se = math.sqrt(0.8 * 0.2 / 10)
    assert goa.se == pytest.approx(se)
    assert goa.ci_low == pytest.approx(0.8 - 1.959963984540054 * se)
    assert goa.ci_high == pytest.approx(min(1.0, 0.8 + 1.959963984540054 * se))
    assert goa.calls_per_question == pytest.approx(3.0)
    assert goa.tokens_per_question == pytest.approx(120.0)
    assert goa.cost_usd == pytest.approx(0.1)
    assert goa.cost_per_question == pytest.approx(0.01)
    assert goa.mean_latency_s == pytest.approx(1.5)
    assert goa.mean_wall_s == pytest.approx(2.0)
    assert goa.no_answer == 0

    single = rep.method("single")
    assert single.accuracy == pytest.approx(0.5)
    assert single.se == pytest.approx(math.sqrt(0.25 / 10))
    assert single.ci_low == pytest.approx(0.5 - 1.959963984540054 * math.sqrt(0.025))
    assert single.cost_usd is None  # one call's cost is unknown
    assert single.cost_per_question is None
    assert single.no_answer == 1
    assert single.calls_per_question == pytest.approx(1.0)
    assert single.tokens_per_question == pytest.approx(50.0)
    assert rep.warnings == []


def test_breakdown_per_category_and_subject(two_methods: Path) -> None:
    goa = report([two_methods]).method("goa")
    cats = {b.name: b for b in goa.by_category}
    assert set(cats) == {"stem", "humanities"}
    assert (cats["stem"].n, cats["stem"].correct) == (5, 4)
    assert cats["stem"].accuracy == pytest.approx(0.8)
    assert cats["stem"].se == pytest.approx(math.sqrt(0.8 * 0.2 / 5))
    subjects = {b.name: (b.n, b.correct) for b in goa.by_subject}
    assert subjects == {"physics": (3, 2), "math": (2, 2), "history": (5, 4)}
    single = report([two_methods]).method("single")
    assert {b.name for b in single.by_subject} == {"(none)"}


def test_perfect_score_has_zero_se(tmp_path: Path) -> None:
    log = write_log(tmp_path / "p.jsonl", [record("m", f"q{i}", True) for i in range(4)])
    m = report([log]).method("m")
    assert (m.accuracy, m.se, m.ci_low, m.ci_high) == (1.0, 0.0, 1.0, 1.0)


def test_same_method_in_two_logs_is_merged_first_wins(tmp_path: Path) -> None:
    first = write_log(tmp_path / "a.jsonl", [record("goa", f"q{i}", True) for i in range(3)])
    second = write_log(
        tmp_path / "b.jsonl",
        [record("goa", "q2", False), record("goa", "q3", False), record("vote", "q0", True)],
    )
    rep = report([first, second])
    goa = rep.method("goa")
    assert (goa.n, goa.correct) == (4, 3)  # q2 from the first log (right), q3 new (wrong)
    assert rep.method("vote").n == 1
    assert len(rep.warnings) == 1
    assert "b.jsonl" in rep.warnings[0]
    assert "1 sample(s)" in rep.warnings[0]


def test_truncated_line_is_a_warning(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl", [record("goa", "q0", True), record("goa", "q1", False)])
    with log.open("ab") as f:
        f.write(b'{"run_id": "r1", "method": "go')  # a writer killed mid-line
    rep = report([log])
    assert rep.method("goa").n == 2
    assert any("line(s) 3" in w and "incomplete" in w for w in rep.warnings)


def test_missing_and_foreign_files_raise(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"nope\.jsonl: no such file"):
        report([tmp_path / "nope.jsonl"])
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(ReportError, match=r"other\.json: not a run log"):
        report([other])
    with pytest.raises(ReportError, match="not a file"):
        report([tmp_path])


def test_cli_table(two_methods: Path) -> None:
    result = runner.invoke(
        _app(), ["report", str(two_methods), "--by", "category"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "goa" in result.stdout
    assert "single" in result.stdout
    assert "0.800 +- 0.126" in result.stdout
    assert "humanities" in result.stdout
    assert "unknown" in result.stdout  # single's cost


def test_cli_json(two_methods: Path) -> None:
    result = runner.invoke(_app(), ["report", str(two_methods), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rep = Report.model_validate(data)
    assert rep.method("goa").accuracy == pytest.approx(0.8)
    assert data["methods"][1]["cost_usd"] is None
    assert data["methods"][0]["by_category"][0]["name"] == "humanities"


def test_cli_png_and_html(two_methods: Path, tmp_path: Path) -> None:
    png = tmp_path / "out.png"
    page = tmp_path / "out.html"
    result = runner.invoke(
        _app(), ["report", str(two_methods), "--plot", str(png), "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000
    text = page.read_text()
    assert "<img" in text
    assert "data:image/png;base64," in text
    assert "http://" not in text
    assert "https://" not in text  # self-contained
    assert "0.800 &plusmn; 0.126" in text


def test_html_escapes_method_names(tmp_path: Path) -> None:
    log = write_log(tmp_path / "x.jsonl", [record("<b>m</b>", "q0", True)])
    text = render_html(report([log]), png=PNG_MAGIC)
    assert "<b>m</b>" not in text
    assert "&lt;b&gt;m&lt;/b&gt;" in text


@pytest.mark.parametrize("name", ["missing.jsonl", "foreign.txt"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, name: str) -> None:
    (tmp_path / "foreign.txt").write_text("just some text\nand more\n")
    result = runner.invoke(_app(), ["report", str(tmp_path / name)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert name in lines[0]
    assert "Traceback" not in result.output


def test_cli_truncated_line_warns_on_stderr(tmp_path: Path) -> None:
    log = write_log(tmp_path / "t.jsonl", [record("goa", "q0", True)])
    with log.open("ab") as f:
        f.write(b'{"run_id": ')
    result = runner.invoke(_app(), ["report", str(log), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr
    assert "t.jsonl" in result.stderr
    assert json.loads(result.stdout)["methods"][0]["n"] == 1


def test_cli_unwritable_plot_is_one_line_exit_2(two_methods: Path, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "out.png"
    result = runner.invoke(_app(), ["report", str(two_methods), "--plot", str(target)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "out.png" in lines[0]
