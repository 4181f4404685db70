"""The transformers backend enforces a request's JSON schema with a grammar (xgrammar):
even a random model answers with JSON that matches; a failing grammar loses no answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("xgrammar")

from goa.inference import ChatRequest
from goa.inference.hf_model import HFModel
from goa.inference.json_grammar import SchemaConstraint
from goa.inference.transformers_backend import TransformersBackend
from goa.testing.tiny_models import tiny_hf_model

pytestmark = pytest.mark.allow_model_requests

VERDICT = {
    "type": "object",
    "properties": {
        "vote": {"type": "string", "enum": ["valid", "invalid", "abstain"]},
        "confidence": {"type": "number"},
    },
    "required": ["vote", "confidence"],
    "additionalProperties": False,
}


def _ask(model: HFModel, requests: list[ChatRequest]) -> list[str]:
    backend = TransformersBackend(model.name, loaded=model)

    async def go() -> list[str]:
        return [c.text for c in await asyncio.gather(*(backend.complete(r) for r in requests))]

    return asyncio.run(go())


def test_a_random_model_answers_with_json_matching_the_schema() -> None:
    model = tiny_hf_model("tiny-json")
    try:
        requests = [
            ChatRequest.of(f"Judge step {i}.", max_tokens=60, json_schema=VERDICT) for i in range(3)
        ]
        for text in _ask(model, requests):
            data = json.loads(text)
            assert set(data) == {"vote", "confidence"}
            assert data["vote"] in ("valid", "invalid", "abstain")
            assert isinstance(data["confidence"], int | float)
        assert model.stats.grammar_batches >= 1
        # without a schema the same model writes whatever it likes
        (free,) = _ask(model, [ChatRequest.of("Judge step 0.", max_tokens=20)])
        with pytest.raises(json.JSONDecodeError):
            json.loads(free)
    finally:
        model.close()


def test_grammar_off_leaves_the_reply_unconstrained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOA_JSON_GRAMMAR", "0")
    model = tiny_hf_model("tiny-json-off")
    try:
        assert not model.grammar
        (text,) = _ask(model, [ChatRequest.of("Judge.", max_tokens=20, json_schema=VERDICT)])
        assert model.stats.grammar_batches == 0
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    finally:
        model.close()


def test_a_failing_grammar_answers_unconstrained_and_stops_constraining(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: SchemaConstraint, schema: dict[str, Any]) -> Any:
        def processor(input_ids: Any, scores: Any) -> Any:
            raise RuntimeError("grammar engine failed")

        return processor

    monkeypatch.setattr(SchemaConstraint, "processor", broken)
    model = tiny_hf_model("tiny-json-broken")
    try:
        (text,) = _ask(model, [ChatRequest.of("Judge.", max_tokens=8, json_schema=VERDICT)])
        assert isinstance(text, str)
        assert model.stats.grammar_failures == 1
        assert not model.grammar
    finally:
        model.close()


def test_a_grammar_that_cannot_be_built_loses_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    def unbuildable(self: SchemaConstraint, schema: dict[str, Any]) -> Any:
        raise OSError("libxgrammar.so: cannot open shared object file")

    monkeypatch.setattr(SchemaConstraint, "processor", unbuildable)
    model = tiny_hf_model("tiny-json-unbuildable")
    try:
        (text,) = _ask(model, [ChatRequest.of("Judge.", max_tokens=8, json_schema=VERDICT)])
        assert isinstance(text, str)
        assert model.stats.grammar_failures == 1
    finally:
        model.close()
