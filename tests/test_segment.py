"""Privacy segmentation (trust.segment): segments, assignment under a cap, exposure."""

from __future__ import annotations

import pytest

import trust.segment as segment_module
from trust.hdag import HDAG, HNode, Level
from trust.segment import (
    Assignment,
    AssignmentError,
    Segment,
    SegmentError,
    assign,
    exposure,
    measured_chars,
    segment,
)

# Text lengths are chosen so that the measured trace is exactly 100 characters:
# goal 10, s1 20, s1.o1 10, s2 20, s3 30, s4 10 (strategy and tactic are not measured).
_TEXTS = {
    "g": "G" * 10,
    "plan": "a plan that is never shown",
    "all": "all steps",
    "s1": "1" * 20,
    "s1.o1": "o" * 10,
    "s2": "2" * 20,
    "s3": "3" * 30,
    "s4": "4" * 10,
}


def _node(node_id: str, level: Level, parent: str | None, deps: tuple[str, ...] = ()) -> HNode:
    return HNode(id=node_id, level=level, text=_TEXTS[node_id], parent=parent, depends_on=deps)


def _trace() -> HDAG:
    return HDAG(
        nodes=(
            _node("g", Level.GOAL, None),
            _node("plan", Level.STRATEGY, "g"),
            _node("all", Level.TACTIC, "plan"),
            _node("s1", Level.STEP, "all"),
            _node("s1.o1", Level.OPERATION, "s1"),
            _node("s2", Level.STEP, "all", ("s1",)),
            _node("s3", Level.STEP, "all", ("s2",)),
            _node("s4", Level.STEP, "all", ("s1", "s3")),
        )
    )


def _by_id(segments: tuple[Segment, ...]) -> dict[str, Segment]:
    return {seg.id: seg for seg in segments}


def _ids(nodes: tuple[HNode, ...]) -> list[str]:
    return [node.id for node in nodes]


def test_measured_chars() -> None:
    sizes = measured_chars(_trace())
    assert sizes == {"g": 10, "s1": 20, "s1.o1": 10, "s2": 20, "s3": 30, "s4": 10}
    assert sum(measured_chars(_trace(), include_goal=False).values()) == 90


def test_segments_carry_exactly_their_direct_premises() -> None:
    segments = segment(_trace())
    assert [seg.id for seg in segments] == ["s1", "s1.o1", "s2", "s3", "s4"]
    seg = _by_id(segments)
    assert _ids(seg["s1"].nodes) == ["s1", "s1.o1"]  # a step comes with its operations
    assert _ids(seg["s1"].premises) == []
    assert _ids(seg["s1.o1"].nodes) == ["s1.o1"]
    assert _ids(seg["s2"].premises) == ["s1"]
    assert _ids(seg["s3"].premises) == ["s2"]  # not s1: direct premises only
    assert _ids(seg["s4"].premises) == ["s1", "s3"]
    for one in segments:
        assert one.goal is not None
        assert one.goal.id == "g"
        assert one.trace_chars == 100
        assert {"plan", "all"}.isdisjoint(one.visible_ids)
    assert [seg[name].chars for name in ("s1", "s1.o1", "s2", "s3", "s4")] == [40, 20, 50, 60, 70]
    assert seg["s3"].visible_ids == {"g", "s2", "s3"}


def test_premise_depth_and_goal_options() -> None:
    seg = _by_id(segment(_trace(), premise_depth=None))
    assert _ids(seg["s3"].premises) == ["s1", "s2"]
    assert _ids(seg["s4"].premises) == ["s1", "s2", "s3"]
    seg = _by_id(segment(_trace(), premise_depth=2))
    assert _ids(seg["s3"].premises) == ["s1", "s2"]
    without_goal = segment(_trace(), include_goal=False, levels=[Level.STEP])
    assert [one.id for one in without_goal] == ["s1", "s2", "s3", "s4"]
    assert all(one.goal is None and one.trace_chars == 90 for one in without_goal)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"levels": [Level.GOAL]}, "levels"),
        ({"levels": []}, "levels"),
        ({"premise_depth": 0}, "premise_depth"),
    ],
)
def test_segment_rejects_bad_options(options: dict[str, object], words: str) -> None:
    with pytest.raises(SegmentError, match=words):
        segment(_trace(), **options)  # type: ignore[arg-type]


def _load(assignment: Assignment, auditor: str) -> int:
    return sum(measured_chars(_trace())[node] for node in assignment.seen(auditor))


def test_assign_honours_the_cap_and_replicas() -> None:
    segments = segment(_trace())
    auditors = [f"a{i}" for i in range(6)]
    assignment = assign(segments, auditors, per_auditor_cap=0.7, replicas=2, seed=3)
    for seg in segments:
        chosen = assignment.auditors_of(seg.id)
        assert len(chosen) == 2
        assert len(set(chosen)) == 2
        for auditor in chosen:
            assert seg in assignment.segments_of(auditor)
    for auditor in auditors:
        assert _load(assignment, auditor) <= 70
    report = exposure(_trace(), assignment, coalition_size=1)
    assert report.single <= 0.7
    assert report.coalition == pytest.approx(report.single)


def test_assign_is_deterministic_given_a_seed() -> None:
    segments = segment(_trace())
    auditors = [f"a{i}" for i in range(6)]
    first = assign(segments, auditors, 0.7, 2, seed=11)
    assert assign(segments, auditors, 0.7, 2, seed=11) == first
    other = assign(segments, auditors, 0.7, 2, seed=12)
    assert all(_load(other, auditor) <= 70 for auditor in auditors)


def test_assign_accepts_objects_with_an_id() -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.id = name

    assignment = assign(segment(_trace()), [Named("x"), Named("y")], 1.0, 2)
    assert assignment.auditors == ("x", "y")
    assert assignment.by_segment["s4"] == ("x", "y")


def test_a_segment_over_the_cap_is_impossible() -> None:
    with pytest.raises(AssignmentError, match="'s4' alone shows 70") as caught:
        assign(segment(_trace()), ["a", "b", "c", "d"], per_auditor_cap=0.69)
    assert caught.value.proven


def test_too_few_auditors_for_the_replicas() -> None:
    with pytest.raises(AssignmentError, match="3 distinct auditors") as caught:
        assign(segment(_trace()), ["a", "b"], per_auditor_cap=1.0, replicas=3)
    assert caught.value.proven


def test_total_load_over_all_caps_is_impossible() -> None:
    # The judged nodes add up to 90 characters; twice that is more than 2 x 70.
    with pytest.raises(AssignmentError, match="seen 2 times") as caught:
        assign(segment(_trace()), ["a", "b"], per_auditor_cap=0.7, replicas=2)
    assert caught.value.proven


def test_greedy_failure_is_reported_as_not_proven() -> None:
    # Three disjoint 40-character segments (goal excluded), two auditors with room for 60
    # each: the total (120) fits under the caps, but any auditor with two segments holds 80.
    texts = {"a": "A" * 40, "b": "B" * 40, "c": "C" * 40}
    nodes = [HNode(id="g", level=Level.GOAL, text="?", parent=None)]
    nodes += [HNode(id=k, level=Level.STEP, text=v, parent="g") for k, v in texts.items()]
    segments = segment(HDAG(nodes=tuple(nodes)), include_goal=False)
    with pytest.raises(AssignmentError, match="raise the cap or add auditors") as caught:
        assign(segments, ["x", "y"], per_auditor_cap=0.5)
    assert not caught.value.proven


@pytest.mark.parametrize(
    ("cap", "replicas", "auditors", "words"),
    [
        (0.0, 1, ["a"], "per_auditor_cap"),
        (1.5, 1, ["a"], "per_auditor_cap"),
        (0.5, 0, ["a"], "replicas"),
        (0.5, 1, [], "no auditors"),
        (0.5, 1, ["a", "a"], "distinct"),
    ],
)
def test_assign_rejects_bad_arguments(
    cap: float, replicas: int, auditors: list[str], words: str
) -> None:
    with pytest.raises(SegmentError, match=words):
        assign(segment(_trace()), auditors, cap, replicas)


def _hand_assignment() -> Assignment:
    seg = _by_id(segment(_trace()))
    return Assignment(
        segments=(seg["s1"], seg["s1.o1"], seg["s2"], seg["s3"]),
        auditors=("A", "B", "C"),
        by_segment={"s1": ("A",), "s2": ("A",), "s3": ("B",), "s1.o1": ("C",)},
        per_auditor_cap=1.0,
        replicas=1,
        seed=0,
    )


def test_exposure_by_hand() -> None:
    # A sees g, s1, s1.o1, s2 = 60; B sees g, s2, s3 = 60; C sees g, s1.o1 = 20 (of 100).
    report = exposure(_trace(), _hand_assignment(), coalition_size=2)
    assert report.total_chars == 100
    assert report.goal_counted
    assert report.per_auditor == pytest.approx({"A": 0.6, "B": 0.6, "C": 0.2})
    assert report.single == pytest.approx(0.6)
    assert report.single_auditor == "A"
    # A + B see everything but s4: 90; A + C = 60; B + C = g, s1.o1, s2, s3 = 70.
    assert report.coalition == pytest.approx(0.9)
    assert set(report.coalition_members) == {"A", "B"}
    assert report.exact
    assert report.coalition_upper == report.coalition
    everyone = exposure(_trace(), _hand_assignment(), coalition_size=5)
    assert everyone.coalition == pytest.approx(0.9)
    assert len(everyone.coalition_members) == 3


def test_exposure_greedy_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_module, "EXACT_COALITION_LIMIT", 0)
    report = exposure(_trace(), _hand_assignment(), coalition_size=2)
    assert not report.exact
    assert report.coalition == pytest.approx(0.9)  # greedy: A (60), then B (+30)
    # min(1, 0.9 / (1 - 1/e) = 1.42, 0.6 + 0.6 = 1.2) = 1
    assert report.coalition_upper == pytest.approx(1.0)
    single = exposure(_trace(), _hand_assignment(), coalition_size=1)
    assert single.coalition_upper == pytest.approx(0.6)  # bounded by the largest single


def test_exposure_rejects_a_foreign_assignment_and_bad_size() -> None:
    other = HDAG(nodes=(HNode(id="g", level=Level.GOAL, text="G" * 10, parent=None),))
    with pytest.raises(SegmentError, match="does not measure"):
        exposure(other, _hand_assignment())
    with pytest.raises(SegmentError, match="coalition_size"):
        exposure(_trace(), _hand_assignment(), coalition_size=0)
