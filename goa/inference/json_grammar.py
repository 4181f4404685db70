"""JSON-schema-constrained decoding for the transformers backend, with xgrammar.

A request's ``json_schema`` asks for one JSON value matching the schema. llama.cpp
turns the schema into a grammar and samples only tokens the grammar allows; API
providers enforce it server-side. Without enforcement small local models mostly
write something else: on the project's H200, SmolLM2-135M and Gemma-3-270M gave no
parseable verdict for 98-100% of the BIG-Bench Mistake steps they were asked about
(``benchmarks/results/audit-bbm-llm.md``), while the same models under llama.cpp's
grammar always answer in the schema.

:class:`SchemaConstraint` compiles a schema once per model (xgrammar's
``GrammarCompiler`` over the model's tokenizer; no whitespace between JSON tokens,
so a model cannot pad its reply with blanks until ``max_tokens``) and gives a
logits processor for one ``generate`` call that masks, at every step and for every
row, the tokens the grammar does not allow (the end-of-sequence token once the value
is complete).

xgrammar is optional (``pip install xgrammar==0.2.9``; on a CPU-only machine
``--no-deps`` with ``apache-tvm-ffi``, since it lists triton, which only its CUDA
kernels use). Without it, or with ``GOA_JSON_GRAMMAR=0``, schemas are not enforced
and callers validate replies, as before. A constrained batch that fails inside
xgrammar is run again unconstrained and the model stops constraining (counted in
``BatchStats.grammar_failures``): a missing grammar must not lose answers.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from goa.inference.switches import env_switch

GRAMMAR_ENV = "GOA_JSON_GRAMMAR"


def grammar_wanted() -> bool:
    """``GOA_JSON_GRAMMAR`` (1 or 0; default 1)."""
    return env_switch(GRAMMAR_ENV, True)


def grammar_available() -> bool:
    """Whether xgrammar imports here."""
    try:
        import xgrammar  # noqa: F401
    except Exception:  # ImportError, or a native library that does not load here
        return False
    return True


def schema_key(schema: dict[str, Any] | None) -> str | None:
    """A canonical text of a schema (requests with equal keys can share a batch)."""
    return None if schema is None else json.dumps(schema, sort_keys=True, separators=(",", ":"))


class SchemaConstraint:
    """Compiled grammars for one model's tokenizer, one per schema, made on first use."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._compiler: Any = None
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()

    def processor(self, schema: dict[str, Any]) -> GrammarMask:
        """A fresh logits processor constraining every row of one ``generate`` call."""
        import xgrammar as xgr

        key = schema_key(schema)
        assert key is not None
        with self._lock:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self._tokenizer, vocab_size=self._vocab_size
                )
                self._compiler = xgr.GrammarCompiler(info)
            compiled = self._compiled.get(key)
            if compiled is None:
                compiled = self._compiler.compile_json_schema(key, any_whitespace=False)
                self._compiled[key] = compiled
        return GrammarMask(compiled, self._vocab_size)


class GrammarMask:
    """A logits processor for one ``generate`` call: one xgrammar matcher per row, fed the
    token the row chose at the previous step; the tokens its grammar does not allow next get
    ``-inf``. The mask is applied with plain torch operations (xgrammar's own CUDA path JIT-
    compiles a Triton kernel, which needs a C compiler the GPU machine may lack); a row whose
    value is complete is left to end on its end-of-sequence token."""

    def __init__(self, compiled: Any, vocab_size: int) -> None:
        self._compiled = compiled
        self._vocab_size = vocab_size
        self._matchers: list[Any] = []
        self._bitmask: Any = None
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch
        import xgrammar as xgr

        rows = int(input_ids.shape[0])
        if not self._matchers:
            self._matchers = [xgr.GrammarMatcher(self._compiled) for _ in range(rows)]
            self._bitmask = xgr.allocate_token_bitmask(rows, self._vocab_size)
        if self._started:
            chosen = input_ids[:, -1].tolist()
            for matcher, token in zip(self._matchers, chosen, strict=True):
                if not matcher.is_terminated():
                    matcher.accept_token(int(token))
        self._started = True
        for row, matcher in enumerate(self._matchers):
            if not matcher.is_terminated():
                matcher.fill_next_token_bitmask(self._bitmask, row)
        words = self._bitmask.to(scores.device)
        shifts = torch.arange(32, device=scores.device, dtype=words.dtype)
        allowed = ((words.unsqueeze(-1) >> shifts) & 1).bool().reshape(rows, -1)
        width = min(int(scores.shape[-1]), int(allowed.shape[-1]))
        masked = scores.clone()
        masked[:, :width] = masked[:, :width].masked_fill(~allowed[:, :width], float("-inf"))
        return masked


__all__ = [
    "GRAMMAR_ENV",
    "GrammarMask",
    "SchemaConstraint",
    "grammar_available",
    "grammar_wanted",
    "schema_key",
]
