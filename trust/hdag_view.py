"""A rich tree view of an :class:`~trust.hdag.HDAG`.

:func:`hdag_tree` draws the parent edges as a tree (goal > strategy > tactic > step >
operation).  Each node shows its id, its text on one line, shortened, and for a node with
dependency edges the nodes it uses (``uses step1, step2``).  Optional verdicts, keyed by node
id, add a coloured marker: ``[valid]`` green, ``[invalid]`` red, ``[undecided]`` (and
``[abstain]``) yellow, anything else plain.  Trace text is never read as rich markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from rich.text import Text
from rich.tree import Tree

from trust.hdag import HDAG, HNode, Level

__all__ = ["LEVEL_STYLES", "VERDICT_STYLES", "hdag_tree", "shorten"]

LEVEL_STYLES: dict[Level, str] = {
    Level.GOAL: "bold magenta",
    Level.STRATEGY: "bold cyan",
    Level.TACTIC: "bold blue",
    Level.STEP: "bold",
    Level.OPERATION: "dim",
}
"""The style of each level's node ids."""

VERDICT_STYLES: dict[str, str] = {
    "valid": "bold green",
    "invalid": "bold red",
    "undecided": "bold yellow",
    "abstain": "bold yellow",
}
"""The style of each verdict marker (other verdicts are shown unstyled)."""


_USUAL_IDS: dict[Level, re.Pattern[str]] = {
    Level.GOAL: re.compile(r"goal"),
    Level.STRATEGY: re.compile(r"strategy\d*"),
    Level.TACTIC: re.compile(r"tactic\d*"),
    Level.STEP: re.compile(r"step\d+"),
    Level.OPERATION: re.compile(r"step\d+\.op\d+"),
}
"""Ids the decomposers give; a node with another id also shows its level."""


def shorten(text: str, limit: int = 80) -> str:
    """``text`` on one line (white space collapsed), cut to ``limit`` characters with ``...``."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: max(limit - 3, 1)].rstrip() + "..."


def _label(node: HNode, verdict: str | None, limit: int) -> Text:
    label = Text()
    label.append(node.id, style=LEVEL_STYLES[node.level])
    if not _USUAL_IDS[node.level].fullmatch(node.id):
        label.append(f" ({node.level.value})", style="dim")
    label.append("  ")
    label.append(shorten(node.text, limit))
    if node.depends_on:
        label.append("  ")
        label.append("uses " + ", ".join(node.depends_on), style="italic cyan")
    if verdict is not None:
        label.append("  ")
        label.append(f"[{verdict}]", style=VERDICT_STYLES.get(verdict, ""))
    return label


def hdag_tree(hdag: HDAG, verdicts: Mapping[str, str] | None = None, *, max_text: int = 80) -> Tree:
    """The H-DAG as a rich tree (see the module docstring).

    ``verdicts`` maps node ids to a verdict (``valid``, ``invalid``, ``undecided``...); ids
    that are not in the H-DAG are ignored.  ``max_text`` is the most characters of a node's
    text shown.
    """
    marks = dict(verdicts or {})
    children: dict[str, list[HNode]] = {}
    for node in hdag.nodes:
        if node.parent is not None:
            children.setdefault(node.parent, []).append(node)

    def grow(branch: Tree, parent: HNode) -> None:
        for child in children.get(parent.id, ()):
            grow(branch.add(_label(child, marks.get(child.id), max_text)), child)

    goal = hdag.goal
    tree = Tree(_label(goal, marks.get(goal.id), max_text), guide_style="dim")
    grow(tree, goal)
    return tree
