"""Reading multi-agent logs: Who&When cases, GoA results, format detection, malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from goa.errors import GoaError
from goa.result import CallRecord, Result
from goa.testing.agents import agent, judge_by, make_goa
from trust.interaction_log import InteractionLog
from trust.log_readers import (
    LogFormatError,
    json_path,
    read_goa_result,
    read_log,
    read_who_and_when,
    read_who_and_when_dir,
)

WHO_AND_WHEN = Path(__file__).resolve().parents[1].parent / (
    "shared/data/trust/who-and-when/algorithm-generated"
)
needs_data = pytest.mark.skipif(not WHO_AND_WHEN.is_dir(), reason="Who&When data not present")


def case(**changes: Any) -> dict[str, Any]:
    """A small Who&When case: a planner, a coder, the terminal running the code, a checker."""
    data: dict[str, Any] = {
        "question": "How many even street numbers are in the list 12, 15, 18?",
        "ground_truth": "2",
        "history": [
            {"role": "assistant", "name": "Planner_Expert", "content": "Plan: count them."},
            {"role": "user", "name": "Coder_Expert", "content": "```python\nprint(2)\n```"},
            {"role": "user", "name": "Computer_terminal", "content": "exitcode: 0\nCode output: 2"},
            {"role": "user", "name": "Checker_Expert", "content": "The count is 2. TERMINATE"},
        ],
        "mistake_agent": "Coder_Expert",
        "mistake_step": "1",
        "mistake_reason": "It guessed.",
        "system_prompt": {
            "Planner_Expert": "You plan.",
            "Coder_Expert": "You code.",
            "Checker_Expert": "You check.",
        },
        "is_correct": False,
        "level": 1,
        "question_ID": "q-1",
    }
    data.update(changes)
    return data


def write(folder: Path, name: str, data: Any) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


# --- Who&When -----------------------------------------------------------------------------


def test_who_and_when_case_becomes_steps_agents_and_label(tmp_path: Path) -> None:
    log = read_who_and_when(write(tmp_path, "17.json", case()))

    assert log.id == "17"
    assert log.source == "who-and-when"
    assert log.ground_truth == "2"
    assert [s.agent for s in log.steps] == [
        "Planner_Expert",
        "Coder_Expert",
        "Computer_terminal",
        "Checker_Expert",
    ]
    assert [s.index for s in log.steps] == [0, 1, 2, 3]
    assert set(log.agents) == {"Planner_Expert", "Coder_Expert", "Checker_Expert"}
    assert log.label is not None
    assert (log.label.agent, log.label.step, log.label.reason) == ("Coder_Expert", 1, "It guessed.")


def test_tool_output_refs_the_call_it_executed(tmp_path: Path) -> None:
    log = read_who_and_when(write(tmp_path, "1.json", case()))

    terminal = log.steps[2]
    assert terminal.role == "tool"
    assert terminal.refs == (1,)
    assert all(s.refs == () for s in (log.steps[0], log.steps[1], log.steps[3]))
    assert log.steps[1].role == "user"


def test_exitcode_message_of_an_unnamed_tool_is_a_tool_output(tmp_path: Path) -> None:
    history = case()["history"]
    history[2] = {"role": "user", "name": "Sandbox", "content": "exitcode: 1 (execution failed)"}
    log = read_who_and_when(write(tmp_path, "1.json", case(history=history)))

    assert log.steps[2].role == "tool"
    assert log.steps[2].refs == (1,)


def test_agent_falls_back_on_role_and_missing_label_is_none(tmp_path: Path) -> None:
    data = case(history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    del data["mistake_agent"], data["mistake_step"]
    log = read_who_and_when(write(tmp_path, "3.json", data))

    assert [s.agent for s in log.steps] == ["user", "assistant"]
    assert log.label is None


def test_folder_is_read_in_numeric_order(tmp_path: Path) -> None:
    for name in ("10.json", "2.json", "1.json"):
        write(tmp_path, name, case())
    write(tmp_path, "notes.txt", "not a log")

    assert [log.id for log in read_who_and_when_dir(tmp_path)] == ["1", "2", "10"]


def test_empty_or_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match=r"holds no \.json log"):
        read_who_and_when_dir(tmp_path)
    with pytest.raises(LogFormatError, match="no such folder"):
        read_who_and_when_dir(tmp_path / "nope")


# --- Malformed Who&When -------------------------------------------------------------------


def _bad_history_content() -> dict[str, Any]:
    data = case()
    data["history"][3]["content"] = None
    return data


def _bad_message() -> dict[str, Any]:
    data = case()
    data["history"][1] = "just a string"
    return data


@pytest.mark.parametrize(
    ("data", "position", "problem"),
    [
        (_bad_history_content(), "history[3].content", "missing"),
        (_bad_message(), "history[1]", "a message is a JSON object"),
        (case(history="no"), "history", "must be a list"),
        (case(history=[]), "history", "is empty"),
        (case(mistake_step="two"), "mistake_step", "is not an integer: 'two'"),
        (case(mistake_step="4"), "mistake_step", "4 is out of range: history has 4 messages"),
        (case(mistake_step="-1"), "mistake_step", "-1 is out of range"),
        (case(mistake_agent=None), "mistake_agent", "missing, but mistake_step is given"),
        (case(system_prompt={"A": 3}), "system_prompt.A", "must be a string, not a number"),
        (case(question=["?"]), "question", "must be a string, not a list"),
        ([case()], "(top level)", "a Who&When case is a JSON object, not a list"),
    ],
)
def test_malformed_case_names_file_position_and_problem(
    tmp_path: Path, data: Any, position: str, problem: str
) -> None:
    path = write(tmp_path, "9.json", data)
    with pytest.raises(LogFormatError) as caught:
        read_who_and_when(path)

    error = caught.value
    assert isinstance(error, GoaError)
    assert error.file == str(path)
    assert error.position == position
    assert problem in error.problem
    assert str(error).startswith(f"{path}: {position}: ")


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "5.json", '{\n  "question": "q",\n  "history": [,]\n}')
    with pytest.raises(LogFormatError) as caught:
        read_who_and_when(path)

    assert caught.value.position == "3:15"
    assert "invalid JSON" in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_a_log_format_error(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="no such file"):
        read_who_and_when(tmp_path / "absent.json")


def test_json_path() -> None:
    assert json_path(("history", 3, "content")) == "history[3].content"
    assert json_path(("responses", 0)) == "responses[0]"
    assert json_path(()) == "(top level)"


# --- Real Who&When data -------------------------------------------------------------------


@needs_data
def test_every_real_who_and_when_case_reads_with_a_label_in_range() -> None:
    logs = read_who_and_when_dir(WHO_AND_WHEN)

    assert len(logs) == 126
    assert [log.id for log in logs] == [str(n) for n in range(1, 127)]
    for log in logs:
        raw = json.loads((WHO_AND_WHEN / f"{log.id}.json").read_text(encoding="utf-8"))
        assert len(log.steps) == len(raw["history"])
        assert log.label is not None
        assert 0 <= log.label.step < len(log.steps)
        assert log.label.step == int(raw["mistake_step"])
        assert log.label.agent == raw["mistake_agent"]
        for step in log.steps:
            assert all(0 <= ref < step.index for ref in step.refs)
            if step.agent == "Computer_terminal":
                assert step.role == "tool"
                assert step.refs == (step.index - 1,)


# --- GoA results --------------------------------------------------------------------------

QUESTION = "Which option is right? A, B or C?"


def _answer(letter: str) -> str:
    return f"Option {letter} fits best.\nAnswer: {letter}"


def _run(pooling: str = "max") -> Result:
    """Agents a, b, c and meta m; judges favour B, then A, then C: ranking b, a, c."""
    judge = judge_by({"B": 6, "A": 3, "C": 1, "D": 1})
    backends = {
        "a": agent(
            "a", _answer("A"), score=judge, forward="fwd a\nAnswer: A", reverse="rev a\nAnswer: A"
        ),
        "b": agent("b", _answer("B"), score=judge, reverse="rev b\nAnswer: B"),
        "c": agent("c", _answer("C"), score=judge, forward="fwd c\nAnswer: B"),
        "m": agent(
            "m",
            _answer("D"),
            score=judge,
            select='{"selected": [1, 2, 3]}',
            pool="pooled\nAnswer: B",
        ),
    }
    return make_goa(backends, sizes={"m": 7.0}, pooling=pooling).run(QUESTION)


def _step(log: InteractionLog, agent_: str, stage: str) -> int:
    found = [s.index for s in log.steps if s.agent == agent_ and s.stage == stage]
    assert len(found) == 1, (agent_, stage, found)
    return found[0]


def test_goa_result_refs_follow_the_pipeline_max_pooling() -> None:
    result = _run("max")
    assert result.ranking == ["b", "a", "c"]
    log = read_goa_result(result)

    assert log.source == "goa"
    assert log.label is None
    assert log.final_answer == "B"
    assert len(log.steps) == len(result.responses)
    ans = {x: _step(log, x, "answer") for x in "abc"}
    assert log.steps[_step(log, "m", "select")].refs == ()
    assert all(log.steps[i].refs == () for i in ans.values())
    # A judge read every other answer.
    for judge in "abc":
        assert log.steps[_step(log, judge, "score")].refs == tuple(
            sorted(ans[x] for x in "abc" if x != judge)
        )
    # Forward: a (rank 2) read its own answer and b's; c (rank 3) its own, b's and a's.
    assert log.steps[_step(log, "a", "forward")].refs == tuple(sorted((ans["a"], ans["b"])))
    assert log.steps[_step(log, "c", "forward")].refs == tuple(sorted(ans.values()))
    # Reverse (max pooling: the top agent only): b's own answer and the forward answers below.
    fwd_a, fwd_c = _step(log, "a", "forward"), _step(log, "c", "forward")
    assert log.steps[_step(log, "b", "reverse")].refs == tuple(sorted((ans["b"], fwd_a, fwd_c)))


def test_goa_result_mean_pooling_pool_refs_what_it_pooled() -> None:
    log = read_goa_result(_run("mean"))

    rev_b, rev_a = _step(log, "b", "reverse"), _step(log, "a", "reverse")
    fwd_c = _step(log, "c", "forward")
    assert log.steps[rev_a].refs == tuple(sorted((_step(log, "a", "forward"), fwd_c)))
    assert log.steps[_step(log, "m", "pool")].refs == tuple(sorted((rev_b, rev_a, fwd_c)))
    assert log.final_answer == "B"


def test_goa_result_from_dict_and_file_and_read_log(tmp_path: Path) -> None:
    result = _run()
    from_model = read_goa_result(result)
    data = result.model_dump(mode="json")
    from_dict = read_goa_result(data)
    path = write(tmp_path, "run-7.json", data)

    assert from_dict.steps == from_model.steps
    assert read_goa_result(path).id == "run-7"
    assert read_log(path).steps == from_model.steps
    assert read_log(path).source == "goa"


def _record(agent_: str, stage: str, text: str | None = "x\nAnswer: A", **more: Any) -> CallRecord:
    return CallRecord.model_validate({"agent": agent_, "stage": stage, "text": text, **more})


def _result(records: list[CallRecord], ranking: list[str]) -> Result:
    return Result(
        question="q?",
        question_id="abc",
        answer="x",
        answered=True,
        reason="test",
        pooling="max",
        selector="meta",
        k=3,
        responses=records,
        ranking=ranking,
    )


def test_goa_retry_refs_its_previous_attempt_and_failed_agents_drop_out() -> None:
    records = [
        _record("a", "answer"),  # 0
        _record("b", "answer"),  # 1
        _record("c", "answer", text=None, error="timeout"),  # 2: c is dropped
        _record("a", "score", text="junk"),  # 3
        _record("a", "score", text='{"scores": [1]}', attempt=1),  # 4
        _record("b", "forward", round=1, text=None, error="boom"),  # 5: b drops out
        _record("a", "reverse", round=1),  # 6: nobody below a any more
    ]
    log = read_goa_result(_result(records, ["a", "b"]))

    assert log.steps[2].content == "[call failed: timeout]"
    assert log.steps[3].refs == (1,)  # the judge a read b's answer (c had none)
    assert log.steps[4].refs == (1, 3)  # the retry also continues attempt 0
    assert log.steps[5].refs == (0, 1)  # b's own answer and a's (ranked above)
    assert log.steps[6].refs == (0,)  # only its own answer: b was dropped


def test_malformed_goa_result_names_the_json_path(tmp_path: Path) -> None:
    data = _run().model_dump(mode="json")
    data["responses"][2]["stage"] = "dance"
    path = write(tmp_path, "bad.json", data)

    with pytest.raises(LogFormatError) as caught:
        read_goa_result(path)
    assert caught.value.position == "responses[2].stage"
    assert str(path) in str(caught.value)
    with pytest.raises(LogFormatError, match=r"\(GoA result\): responses\[2\]\.stage"):
        read_goa_result(data)


def test_read_log_detects_who_and_when_and_rejects_unknown(tmp_path: Path) -> None:
    assert read_log(write(tmp_path, "4.json", case())).source == "who-and-when"
    with pytest.raises(LogFormatError, match="not a known log format"):
        read_log(write(tmp_path, "x.json", {"steps": []}))
    with pytest.raises(LogFormatError, match="not a known log format"):
        read_log(write(tmp_path, "y.json", [1, 2]))
