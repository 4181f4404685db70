"""The hierarchical DAG (H-DAG) that TRUST audits a chain of thought on.

A reasoning trace is broken into nodes on five abstraction levels, from the most abstract to
the most concrete: ``goal`` (what is asked), ``strategy`` (the overall plan), ``tactic`` (a group
of steps that serve one purpose), ``step`` (one step of the trace) and ``operation`` (one
computation inside a step).  Two kinds of edges connect the nodes:

* the *parent* edge, one per node except the goal, points from a node to the more abstract node
  it refines.  A child's level must be strictly deeper than its parent's, but it may skip levels
  (an ``operation`` may hang directly under a ``tactic``);
* *dependency* edges (``depends_on``) name the earlier nodes whose results a node uses: its
  premises.  An auditor who judges a node must also see its premises.

Design
------
Nodes and the graph are frozen pydantic models, so an H-DAG is a value: it can be hashed into
TRUST's ledger, sent to auditors as JSON and read back unchanged.  The node order is part of the
value: it is the order of the trace, and a node may only depend on nodes that come before it.

Every H-DAG is validated when it is built (also when read from JSON); a broken one raises
:class:`HDAGError` naming the offending node and the problem.  The rules: ids are unique; there
is exactly one ``goal``, it is the root and has no parent; every other node has a parent that
exists and lies on a strictly shallower level; every dependency exists and comes earlier in the
node order; and the directed graph of parent edges (parent -> child) and dependency edges
(premise -> dependent) has no cycle, checked with networkx.  The cycle check is not redundant:
a node that depends on one of its own descendants closes a cycle even when every dependency
points backwards in the node order.

:meth:`HDAG.to_networkx` exports the same graph with an edge attribute ``kind`` (``"parent"``
or ``"depends"``).  A DiGraph holds one edge per ordered pair, so when a node also depends on
its own parent the edge keeps ``kind="parent"`` and gets ``depends=True``.
"""

from __future__ import annotations

from enum import StrEnum

import networkx as nx
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from goa.errors import GoaError

__all__ = ["HDAG", "LEVELS", "HDAGError", "HNode", "Level"]


class HDAGError(GoaError):
    """An H-DAG is malformed; ``node`` names the node at fault (or what is wrong as a whole)."""

    def __init__(self, node: str, problem: str) -> None:
        self.node = node
        self.problem = problem
        super().__init__(f"H-DAG node {node!r}: {problem}")


class Level(StrEnum):
    """The five abstraction levels, ordered from the most abstract (goal) to operation."""

    GOAL = "goal"
    STRATEGY = "strategy"
    TACTIC = "tactic"
    STEP = "step"
    OPERATION = "operation"

    @property
    def depth(self) -> int:
        """0 for goal, 4 for operation."""
        return LEVELS.index(self)


LEVELS: tuple[Level, ...] = tuple(Level)


class HNode(BaseModel):
    """One node: ``parent`` is the id of the node it refines (None only for the goal)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    level: Level
    text: str
    parent: str | None
    depends_on: tuple[str, ...] = ()


class HDAG(BaseModel):
    """A validated hierarchical DAG; ``nodes`` are in trace order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nodes: tuple[HNode, ...]

    @model_validator(mode="after")
    def _validate(self) -> HDAG:
        position: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            if node.id in position:
                raise HDAGError(node.id, "duplicate id")
            position[node.id] = index
        goals = [node.id for node in self.nodes if node.level is Level.GOAL]
        if not goals:
            raise HDAGError("<graph>", "there is no goal node")
        if len(goals) > 1:
            raise HDAGError(goals[1], f"a second goal (the first is {goals[0]!r})")
        by_id = {node.id: node for node in self.nodes}
        for index, node in enumerate(self.nodes):
            if node.level is Level.GOAL:
                if node.parent is not None:
                    raise HDAGError(node.id, "the goal is the root and cannot have a parent")
            elif node.parent is None:
                raise HDAGError(node.id, f"a {node.level.value} node needs a parent")
            else:
                parent = by_id.get(node.parent)
                if parent is None:
                    raise HDAGError(node.id, f"parent {node.parent!r} does not exist")
                if parent.level.depth >= node.level.depth:
                    raise HDAGError(
                        node.id,
                        f"level {node.level.value} is not deeper than its parent "
                        f"{parent.id!r} ({parent.level.value})",
                    )
            for dep in node.depends_on:
                if dep not in position:
                    raise HDAGError(node.id, f"dependency {dep!r} does not exist")
                if position[dep] >= index:
                    raise HDAGError(node.id, f"dependency {dep!r} does not come before it")
        graph = self._edge_graph()
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return self
        names = [str(edge[0]) for edge in cycle]
        raise HDAGError(names[0], "parent and dependency edges form a cycle: " + " -> ".join(names))

    def _edge_graph(self) -> nx.DiGraph[str]:
        graph: nx.DiGraph[str] = nx.DiGraph()
        for node in self.nodes:
            graph.add_node(node.id, level=node.level.value, text=node.text)
        for node in self.nodes:
            if node.parent is not None:
                graph.add_edge(node.parent, node.id, kind="parent")
        for node in self.nodes:
            for dep in node.depends_on:
                if graph.has_edge(dep, node.id):
                    graph.edges[dep, node.id]["depends"] = True
                else:
                    graph.add_edge(dep, node.id, kind="depends")
        return graph

    @property
    def _by_id(self) -> dict[str, HNode]:
        return {node.id: node for node in self.nodes}

    @property
    def goal(self) -> HNode:
        """The root node."""
        return next(node for node in self.nodes if node.level is Level.GOAL)

    def node(self, node_id: str) -> HNode:
        """The node with this id; HDAGError if there is none."""
        try:
            return self._by_id[node_id]
        except KeyError:
            raise HDAGError(node_id, "no such node") from None

    def children(self, node_id: str) -> tuple[HNode, ...]:
        """The nodes whose parent is ``node_id``, in node order."""
        self.node(node_id)
        return tuple(node for node in self.nodes if node.parent == node_id)

    def ancestors(self, node_id: str) -> tuple[HNode, ...]:
        """The chain of parents, nearest first, ending at the goal."""
        by_id = self._by_id
        chain: list[HNode] = []
        parent = self.node(node_id).parent
        while parent is not None:
            current = by_id[parent]
            chain.append(current)
            parent = current.parent
        return tuple(chain)

    def premises(self, node_id: str) -> tuple[HNode, ...]:
        """The transitive dependencies of a node (not itself), in node order."""
        by_id = self._by_id
        seen: set[str] = set()
        todo = list(self.node(node_id).depends_on)
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(by_id[dep].depends_on)
        return tuple(node for node in self.nodes if node.id in seen)

    def leaves(self) -> tuple[HNode, ...]:
        """The nodes without children, in node order."""
        parents = {node.parent for node in self.nodes}
        return tuple(node for node in self.nodes if node.id not in parents)

    def to_networkx(self) -> nx.DiGraph[str]:
        """A DiGraph: node attributes ``level`` and ``text``; edge attribute ``kind``.

        Parent edges run parent -> child, dependency edges premise -> dependent.
        """
        return self._edge_graph()

    def to_json(self) -> str:
        """The H-DAG as JSON (``{"nodes": [...]}``)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> HDAG:
        """Read JSON written by :meth:`to_json`; HDAGError if it is malformed or invalid."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            raise HDAGError("<json>", str(error)) from error
