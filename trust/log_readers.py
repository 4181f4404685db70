"""Readers for multi-agent logs: Who&When cases and GoA run results, into one
:class:`~trust.interaction_log.InteractionLog`.

**Who&When** (one JSON object per case: ``question``, ``ground_truth``, ``history``,
``mistake_agent``, ``mistake_step``, ``mistake_reason``, ``system_prompt``...). Each
``history`` message becomes one step, in order, so ``Step.index`` is the index Who&When's
``mistake_step`` uses. The agent is the message's ``name``, else its ``role``. A *tool output*
(a message of ``Computer_terminal``, or any message that starts with ``exitcode:``) is the
result of executing the code of the message before it: it gets ``role="tool"`` and
``refs=(i - 1,)``. Other messages keep the log's ``role`` and state no refs (a group chat says
nothing explicit about who read what; :mod:`trust.cig` infers it). ``mistake_step`` is a string
holding an integer; it must lie in ``0 <= step < len(history)``. A case without
``mistake_agent`` and ``mistake_step`` (a log to attribute for real) has no label.

**GoA** (a :class:`goa.result.Result`, its ``model_dump`` dict, or a JSON file of it). Each
``CallRecord`` of ``responses`` becomes one step, in order (failed calls too, so ``Step.index``
is the position in ``responses``; a failed call's content is ``[call failed: ...]``). The result
records which answers every call read only through the pipeline's rules, so the reader replays
them (:mod:`goa.pipeline`, :mod:`goa.passing`, :mod:`goa.edges`, :mod:`goa.pooling`), taking
the calls stage by stage (a stage's calls are concurrent: all read the answers as they stood
when the stage began):

- ``select``, ``difficulty`` and ``answer`` calls read only the question: no refs.
- A ``score`` (judge) call refs the current answer of every other agent that answered.
- A ``forward`` call refs the agent's own current answer and those of every agent ranked above
  it; a ``reverse`` call its own and those of every agent ranked below it (the ranking is
  ``Result.ranking``, less the agents dropped by failed calls since).
- A ``pool`` (mean pooling) call refs the current answers of every ranked agent. Under max
  pooling there is no pooling call: the final answer is the top agent's last answer step.
- A retry (``attempt > 0``) also refs the same agent's previous call of that stage, which it
  continues in the same conversation.

An answer-stage call that failed (an error, or no text) drops its agent, as the pipeline does.

**Errors.** Malformed input raises :class:`LogFormatError` (a :class:`~goa.errors.GoaError`,
which the CLI reports on one line with exit code 2), naming the file, the position (a JSON path
such as ``history[3].content``, or ``line:col`` for invalid JSON) and the problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from goa.errors import GoaError
from goa.result import ANSWER_STAGES, CallRecord, Result
from trust.interaction_log import InteractionLog, Label, Step

__all__ = [
    "TOOL_AGENTS",
    "LogFormatError",
    "json_path",
    "read_goa_result",
    "read_log",
    "read_who_and_when",
    "read_who_and_when_dir",
]

TOOL_AGENTS: frozenset[str] = frozenset({"Computer_terminal"})
"""Agents of Who&When whose messages are the output of executing the previous message's code."""

_TOOL_OUTPUT = re.compile(r"\s*exitcode:\s*-?\d+")


class LogFormatError(GoaError):
    """A log that cannot be read: ``file``, ``position`` (a JSON path or ``line:col``, or None
    when the whole file is at fault) and ``problem``."""

    def __init__(self, file: str, position: str | None, problem: str) -> None:
        self.file = file
        self.position = position
        self.problem = problem
        where = file if position is None else f"{file}: {position}"
        super().__init__(f"{where}: {problem}")


def json_path(parts: Sequence[str | int]) -> str:
    """``("history", 3, "content")`` -> ``history[3].content``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


# --- Loading JSON -------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LogFormatError(name, None, "no such file") from None
    except IsADirectoryError:
        raise LogFormatError(name, None, "is a folder, not a log file") from None
    except UnicodeDecodeError as exc:
        raise LogFormatError(name, f"byte {exc.start}", "not UTF-8 text") from None
    except OSError as exc:
        raise LogFormatError(name, None, f"cannot read it ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LogFormatError(
            name, f"{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}"
        ) from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- Who&When -----------------------------------------------------------------------------


class _Reader:
    """Typed access to one JSON document, every problem a :class:`LogFormatError`."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: Sequence[str | int], problem: str) -> LogFormatError:
        return LogFormatError(self.file, json_path(path), problem)

    def required(self, obj: Mapping[str, Any], key: str, path: Sequence[str | int]) -> str:
        value = self.string(obj, key, path, required=True)
        assert value is not None
        return value

    def string(
        self, obj: Mapping[str, Any], key: str, path: Sequence[str | int], *, required: bool
    ) -> str | None:
        if key not in obj or obj[key] is None:
            if required:
                raise self.fail([*path, key], "missing (a string is required)")
            return None
        value = obj[key]
        if not isinstance(value, str):
            raise self.fail([*path, key], f"must be a string, not {_kind(value)}")
        return value


def _is_tool_output(agent: str, content: str) -> bool:
    return agent in TOOL_AGENTS or _TOOL_OUTPUT.match(content) is not None


def who_and_when_from_data(data: Any, *, file: str, log_id: str) -> InteractionLog:
    """An :class:`InteractionLog` from a parsed Who&When case (``file`` names it in errors)."""
    r = _Reader(file)
    if not isinstance(data, dict):
        raise r.fail([], f"a Who&When case is a JSON object, not {_kind(data)}")
    question = r.required(data, "question", [])
    history = data.get("history")
    if not isinstance(history, list):
        problem = "missing" if history is None else f"must be a list, not {_kind(history)}"
        raise r.fail(["history"], problem)
    if not history:
        raise r.fail(["history"], "is empty: a log needs at least one message")
    steps: list[Step] = []
    for i, message in enumerate(history):
        if not isinstance(message, dict):
            raise r.fail(["history", i], f"a message is a JSON object, not {_kind(message)}")
        role = r.required(message, "role", ["history", i])
        content = r.required(message, "content", ["history", i])
        name = r.string(message, "name", ["history", i], required=False)
        agent = name.strip() if name is not None and name.strip() else role
        if not agent.strip():
            raise r.fail(["history", i, "role"], "is empty and the message has no name")
        tool = i > 0 and _is_tool_output(agent, content)
        steps.append(
            Step(
                index=i,
                agent=agent,
                role="tool" if tool else role,
                content=content,
                refs=(i - 1,) if tool else (),
            )
        )

    agents: dict[str, str] = {}
    prompts = data.get("system_prompt")
    if prompts is not None:
        if not isinstance(prompts, dict):
            raise r.fail(["system_prompt"], f"must be an object, not {_kind(prompts)}")
        for agent, prompt in prompts.items():
            if not isinstance(prompt, str):
                raise r.fail(["system_prompt", agent], f"must be a string, not {_kind(prompt)}")
            agents[agent] = prompt

    truth = data.get("ground_truth")
    if truth is not None and (isinstance(truth, bool) or not isinstance(truth, str | int | float)):
        raise r.fail(["ground_truth"], f"must be a string or a number, not {_kind(truth)}")
    ground_truth = None if truth is None else str(truth)

    return InteractionLog(
        id=log_id,
        source="who-and-when",
        question=question,
        steps=tuple(steps),
        agents=agents,
        ground_truth=ground_truth,
        label=_label(r, data, len(steps)),
    )


def _label(r: _Reader, data: Mapping[str, Any], steps: int) -> Label | None:
    agent = r.string(data, "mistake_agent", [], required=False)
    raw = data.get("mistake_step")
    if raw == "":
        raw = None
    if (agent is None or not agent.strip()) and raw is None:
        return None
    if agent is None or not agent.strip():
        raise r.fail(["mistake_agent"], "missing, but mistake_step is given")
    if raw is None:
        raise r.fail(["mistake_step"], "missing, but mistake_agent is given")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise r.fail(["mistake_step"], f"must be an integer in a string, not {_kind(raw)}")
    try:
        step = int(raw.strip()) if isinstance(raw, str) else raw
    except ValueError:
        raise r.fail(["mistake_step"], f"is not an integer: {raw!r}") from None
    if not 0 <= step < steps:
        raise r.fail(
            ["mistake_step"],
            f"{step} is out of range: history has {steps} messages (0 to {steps - 1})",
        )
    reason = r.string(data, "mistake_reason", [], required=False) or ""
    return Label(agent=agent.strip(), step=step, reason=reason)


def read_who_and_when(path: str | Path) -> InteractionLog:
    """One Who&When case file; its id is the file's stem (``12.json`` -> ``"12"``)."""
    file = Path(path)
    return who_and_when_from_data(_load_json(file), file=str(file), log_id=file.stem)


def _stem_key(path: Path) -> tuple[int, int, str]:
    stem = path.stem
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def read_who_and_when_dir(folder: str | Path) -> list[InteractionLog]:
    """Every ``*.json`` case of a folder, sorted numerically by stem (then the others by name)."""
    where = Path(folder)
    if not where.is_dir():
        raise LogFormatError(str(where), None, "no such folder")
    files = sorted(where.glob("*.json"), key=_stem_key)
    if not files:
        raise LogFormatError(str(where), None, "holds no .json log")
    return [read_who_and_when(file) for file in files]


# --- GoA results --------------------------------------------------------------------------


def _result_from_data(data: Any, file: str) -> Result:
    if not isinstance(data, dict):
        raise LogFormatError(file, None, f"a GoA result is a JSON object, not {_kind(data)}")
    try:
        return Result.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        problem = str(first["msg"]) + (f" (and {more} more problems)" if more else "")
        raise LogFormatError(file, json_path(first["loc"]), problem) from None


def _ok(record: CallRecord) -> bool:
    return record.error is None and record.text is not None


def _content(record: CallRecord) -> str:
    if record.text is not None:
        return record.text
    return f"[call failed: {record.error or 'no reply'}]"


def _goa_refs(result: Result) -> list[tuple[int, ...]]:
    """The answers each call read, replayed from the pipeline's rules (see the module notes)."""
    records = result.responses
    refs: list[tuple[int, ...]] = [() for _ in records]
    current: dict[str, int] = {}
    """Each live agent's latest answer step."""
    ranking: list[str] = []
    ranked = False
    start = 0
    while start < len(records):
        stage, round_ = records[start].stage, records[start].round
        end = start
        while end < len(records) and (records[end].stage, records[end].round) == (stage, round_):
            end += 1
        if stage in ("forward", "reverse", "pool") and not ranked:
            ranking = [a for a in result.ranking if a in current]
            ranked = True
        snapshot = dict(current)
        for i in range(start, end):
            record = records[i]
            read: list[int] = []
            if stage == "score":
                read = [step for agent, step in snapshot.items() if agent != record.agent]
            elif stage in ("forward", "reverse"):
                read = [snapshot[record.agent]] if record.agent in snapshot else []
                if record.agent in ranking:
                    pos = ranking.index(record.agent)
                    peers = ranking[:pos] if stage == "forward" else ranking[pos + 1 :]
                    read += [snapshot[a] for a in peers if a in snapshot]
            elif stage == "pool":
                read = [snapshot[a] for a in ranking if a in snapshot]
            if record.attempt > 0:
                previous = next(
                    (
                        j
                        for j in range(i - 1, -1, -1)
                        if records[j].agent == record.agent and records[j].stage == stage
                    ),
                    None,
                )
                if previous is not None:
                    read.append(previous)
            refs[i] = tuple(sorted(set(read)))
        for i in range(start, end):
            record = records[i]
            if record.stage not in ANSWER_STAGES or record.stage == "pool":
                continue
            if _ok(record):
                current[record.agent] = i
            else:
                current.pop(record.agent, None)
                if record.agent in ranking:
                    ranking.remove(record.agent)
        start = end
    return refs


def goa_from_result(result: Result, *, log_id: str | None = None) -> InteractionLog:
    """An :class:`InteractionLog` from a GoA :class:`~goa.result.Result` (no label)."""
    refs = _goa_refs(result)
    steps = tuple(
        Step(
            index=i,
            agent=record.agent,
            role="assistant",
            content=_content(record),
            stage=record.stage,
            refs=refs[i],
        )
        for i, record in enumerate(result.responses)
    )
    agents: dict[str, str] = {s.agent: f"selected: {s.reason}" for s in result.selected}
    for record in result.responses:
        if record.agent not in agents:
            agents[record.agent] = (
                "meta model" if record.stage in ("select", "difficulty", "pool") else "GoA agent"
            )
    return InteractionLog(
        id=log_id or result.question_id,
        source="goa",
        question=result.question,
        steps=steps,
        agents=agents,
        final_answer=result.final_answer if result.final_answer is not None else result.answer,
    )


def read_goa_result(result: Result | Mapping[str, Any] | str | Path) -> InteractionLog:
    """The interaction of a GoA run: a :class:`~goa.result.Result`, its JSON dict
    (``model_dump(mode="json")``) or a JSON file of it (the log id is the file's stem)."""
    if isinstance(result, Result):
        return goa_from_result(result)
    if isinstance(result, Mapping):
        return goa_from_result(_result_from_data(dict(result), "(GoA result)"))
    file = Path(result)
    parsed = _result_from_data(_load_json(file), str(file))
    return goa_from_result(parsed, log_id=file.stem)


# --- Either -------------------------------------------------------------------------------


def read_log(path: str | Path) -> InteractionLog:
    """A log file of either format: a Who&When case (a JSON object with ``history``) or a
    GoA result (a JSON object with ``responses``)."""
    file = Path(path)
    data = _load_json(file)
    if isinstance(data, dict) and "history" in data:
        return who_and_when_from_data(data, file=str(file), log_id=file.stem)
    if isinstance(data, dict) and "responses" in data:
        return goa_from_result(_result_from_data(data, str(file)), log_id=file.stem)
    found = f"an object with keys {sorted(data)[:8]}" if isinstance(data, dict) else _kind(data)
    raise LogFormatError(
        str(file),
        None,
        "not a known log format: expected a Who&When case (a JSON object with 'history') "
        f"or a GoA result (a JSON object with 'responses'), found {found}",
    )
