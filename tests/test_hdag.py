"""The H-DAG model (trust.hdag) and the rule-based decomposer (trust.decompose)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trust.decompose import decompose
from trust.hdag import HDAG, HDAGError, HNode, Level


def _node(node_id: str, level: str, parent: str | None, depends_on: tuple[str, ...] = ()) -> HNode:
    return HNode(id=node_id, level=Level(level), text=node_id, parent=parent, depends_on=depends_on)


def _sample() -> HDAG:
    return HDAG(
        nodes=(
            _node("g", "goal", None),
            _node("s", "strategy", "g"),
            _node("t", "tactic", "s"),
            _node("a", "step", "t"),
            _node("a1", "operation", "a"),
            _node("b", "step", "t", ("a",)),
            _node("c", "step", "t", ("b",)),
            _node("c1", "operation", "c"),
        )
    )


def test_level_order() -> None:
    assert [level.depth for level in Level] == [0, 1, 2, 3, 4]
    assert Level.GOAL.depth < Level.OPERATION.depth


@pytest.mark.parametrize(
    ("nodes", "culprit", "words"),
    [
        (
            (_node("g", "goal", None), _node("g2", "goal", None)),
            "g2",
            "second goal",
        ),
        (
            (_node("g", "goal", None), _node("x", "step", "nowhere")),
            "x",
            "does not exist",
        ),
        (
            (_node("g", "goal", None), _node("s", "step", "g"), _node("t", "tactic", "s")),
            "t",
            "not deeper",
        ),
        (
            (_node("g", "goal", None), _node("s", "step", "g"), _node("u", "step", "g", ("s",))),
            None,
            None,
        ),
        (
            (
                _node("g", "goal", None),
                _node("a", "step", "g", ("b",)),
                _node("b", "step", "g"),
            ),
            "a",
            "does not come before",
        ),
        (
            (
                _node("g", "goal", None),
                _node("b", "operation", "a"),
                _node("a", "step", "g", ("b",)),
            ),
            "a",
            "cycle",
        ),
        ((_node("g", "goal", None), _node("g", "step", "g")), "g", "duplicate"),
        ((_node("g", "goal", None), _node("x", "step", None)), "x", "needs a parent"),
        ((_node("s", "strategy", None),), "<graph>", "no goal"),
    ],
)
def test_validation(nodes: tuple[HNode, ...], culprit: str | None, words: str | None) -> None:
    if culprit is None:
        HDAG(nodes=nodes)  # a valid control case
        return
    with pytest.raises(HDAGError) as info:
        HDAG(nodes=nodes)
    assert info.value.node == culprit
    assert repr(culprit) in str(info.value)
    assert words is not None
    assert words in str(info.value)


def test_cycle_names_both_nodes() -> None:
    with pytest.raises(HDAGError, match="cycle") as info:
        HDAG(
            nodes=(
                _node("g", "goal", None),
                _node("b", "operation", "a"),
                _node("a", "step", "g", ("b",)),
            )
        )
    assert "a -> b" in str(info.value) or "b -> a" in str(info.value)


def test_queries() -> None:
    dag = _sample()
    assert [n.id for n in dag.children("t")] == ["a", "b", "c"]
    assert [n.id for n in dag.ancestors("c1")] == ["c", "t", "s", "g"]
    assert dag.ancestors("g") == ()
    assert [n.id for n in dag.premises("c")] == ["a", "b"]
    assert [n.id for n in dag.premises("b")] == ["a"]
    assert dag.premises("a") == ()
    assert [n.id for n in dag.leaves()] == ["a1", "b", "c1"]
    assert dag.goal.id == "g"
    with pytest.raises(HDAGError, match="no such node"):
        dag.children("zzz")


def test_networkx_export() -> None:
    graph = _sample().to_networkx()
    assert graph.edges["t", "a"]["kind"] == "parent"
    assert graph.edges["a", "b"]["kind"] == "depends"
    assert graph.nodes["c1"]["level"] == "operation"
    assert graph.number_of_edges() == 7 + 2


def test_json_round_trip() -> None:
    dag = _sample()
    text = dag.to_json()
    assert json.loads(text)["nodes"][5]["depends_on"] == ["a"]
    again = HDAG.from_json(text)
    assert again == dag
    assert isinstance(again.nodes[5].depends_on, tuple)


def test_from_json_rejects_bad_input() -> None:
    with pytest.raises(HDAGError):
        HDAG.from_json("{not json")
    broken = json.loads(_sample().to_json())
    broken["nodes"][1]["level"] = "goal"
    broken["nodes"][1]["parent"] = None
    with pytest.raises(HDAGError, match="second goal") as info:
        HDAG.from_json(json.dumps(broken))
    assert info.value.node == "s"


NUMBERED = """Tom has 12 boxes of 4 apples and buys 2 more. How many does he have?
1. Each box has 4 apples, so 12 * 4 = 48.
2. He buys 2 more: 48 + 2 = 50.
Step 3: He gives away three quarters, 3/4 = 0.75, and keeps the rest.
"""


def test_decompose_numbered_arithmetic() -> None:
    dag = decompose(NUMBERED)
    levels = [(n.id, n.level.value) for n in dag.nodes]
    assert levels == [
        ("goal", "goal"),
        ("strategy", "strategy"),
        ("tactic", "tactic"),
        ("step1", "step"),
        ("step1.op1", "operation"),
        ("step2", "step"),
        ("step2.op1", "operation"),
        ("step3", "step"),
        ("step3.op1", "operation"),
    ]
    assert dag.goal.text.startswith("Tom has 12 boxes")
    assert dag.node("step1").text == "Each box has 4 apples, so 12 * 4 = 48."
    assert dag.node("step3").text.startswith("He gives away")
    ops = [n.text for n in dag.nodes if n.level is Level.OPERATION]
    assert ops == ["12 * 4 = 48", "48 + 2 = 50", "3/4 = 0.75"]
    assert dag.node("step2").depends_on == ("step1",)
    assert dag.node("step1").depends_on == ()
    assert dag.node("step3").depends_on == ()
    assert dag.node("step2.op1").parent == "step2"
    assert dag.to_networkx().edges["step1", "step2"]["kind"] == "depends"


def test_decompose_given_goal_and_chains() -> None:
    dag = decompose(
        ["A = (2 * 3) + 1 = 6 + 1 = 7.", "Then 7 * 10 = 70.", "Finally 70 - 7 = 63."],
        goal="Compute it",
    )
    assert dag.goal.text == "Compute it"
    assert dag.node("strategy").text == "A = (2 * 3) + 1 = 6 + 1 = 7."
    assert [n.text for n in dag.children("step1")] == ["(2 * 3) + 1 = 6 + 1", "6 + 1 = 7"]
    assert dag.node("step2").depends_on == ("step1",)
    assert dag.node("step3").depends_on == ("step1", "step2")
    assert [n.id for n in dag.premises("step3")] == ["step1", "step2"]


def test_decompose_blank_lines() -> None:
    text = "First we find the total.\nIt is 5 + 5 = 10.\n\nThen we halve it: 10 / 2 = 5."
    dag = decompose(text)
    steps = [n.text for n in dag.nodes if n.level is Level.STEP]
    assert steps == ["First we find the total.\nIt is 5 + 5 = 10.", "Then we halve it: 10 / 2 = 5."]
    assert dag.goal.text == "First we find the total."
    assert dag.node("step2").depends_on == ("step1",)


def test_decompose_sentences() -> None:
    dag = decompose("The price is 2.50 dollars. Three cost 3 * 2.5 = 7.5! Is 7.5 > 7? Yes.")
    steps = [n.text for n in dag.nodes if n.level is Level.STEP]
    assert steps == [
        "The price is 2.50 dollars.",
        "Three cost 3 * 2.5 = 7.5!",
        "Is 7.5 > 7?",
        "Yes.",
    ]
    assert dag.node("step3").depends_on == ("step2",)
    assert [n.text for n in dag.children("step2")] == ["3 * 2.5 = 7.5"]


def test_decompose_list_keeps_items() -> None:
    dag = decompose(["1. not a marker in a list item: 2 + 2 = 4", "  ", "4 * 4 = 16"])
    steps = [n for n in dag.nodes if n.level is Level.STEP]
    assert [n.text for n in steps] == ["1. not a marker in a list item: 2 + 2 = 4", "4 * 4 = 16"]
    assert steps[1].depends_on == ("step1",)


def test_decompose_empty_trace() -> None:
    with pytest.raises(HDAGError, match="no steps"):
        decompose("   ")


def test_decompose_big_bench_mistake(shared_data: Path) -> None:
    path = shared_data / "trust" / "big-bench-mistake" / "multistep_arithmetic.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    lines = path.read_text(encoding="utf-8").splitlines()[:20]
    assert len(lines) == 20
    for line in lines:
        record = json.loads(line)
        dag = decompose(record["steps"], goal=record["input"])
        HDAG.from_json(dag.to_json())  # valid, also after a round trip
        steps = [n for n in dag.nodes if n.level is Level.STEP]
        assert len(steps) == len(record["steps"])
        assert any(n.level is Level.OPERATION for n in dag.nodes)
        assert steps[-1].depends_on, "the final step uses earlier results"
