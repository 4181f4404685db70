"""TRUST: decentralised auditing of LLM reasoning (hierarchical DAGs, commit-reveal
consensus, a verifiable ledger, root-cause attribution). Built on goa's inference
adapter.

The names below load their module on first use, so ``import trust.ledger`` (or any other
submodule) stays as light as it was. The function ``llm_decompose`` is not among them: its
name is taken by its module, so it is ``trust.llm_decompose.llm_decompose``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trust.hdag_view import hdag_tree
    from trust.llm_decompose import (
        DecompositionError,
        LLMDecomposer,
        parse_decomposition,
    )

__all__: list[str] = [
    "DecompositionError",
    "LLMDecomposer",
    "hdag_tree",
    "parse_decomposition",
]

_HOMES = {
    "DecompositionError": "trust.llm_decompose",
    "LLMDecomposer": "trust.llm_decompose",
    "hdag_tree": "trust.hdag_view",
    "parse_decomposition": "trust.llm_decompose",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'trust' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
