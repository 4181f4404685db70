"""Card generation: a language model reads a model's README and writes its card.

The model only writes the descriptive fields. How the model is reached
(``backend``, ``model``, ``api_base``, ``api_key_env``) comes from the caller,
and numbers the model could make up (``prices``, ``measured_accuracy``) are
dropped: a card's numbers must come from a person or a measurement. A reply
that is not valid JSON or not a valid card is sent back with the problems, up
to ``max_attempts`` times.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from goa import prompts
from goa.cards import CardBackend, ModelCard
from goa.errors import GoaError
from goa.inference.backend import Backend
from goa.inference.types import ChatRequest, Message, Tags

STAGE = "card-generation"
# Keys the writing model must not decide; the caller's values replace them.
_CALLER_KEYS = ("backend", "model", "api_base", "api_key_env")
_DROPPED_KEYS = ("prices", "measured_accuracy")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class CardReplyError(ValueError):
    """A reply that is not a valid card; ``feedback`` tells the model what to fix."""

    def __init__(self, feedback: str) -> None:
        self.feedback = feedback
        super().__init__(feedback)


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a reply, inside a code fence or not."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start = body.find("{")
    if start < 0:
        hint = " (a list is not a card)" if body.lstrip().startswith("[") else ""
        raise CardReplyError(f"the reply contains no JSON object{hint}; answer with one object.")
    try:
        value, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError as exc:
        raise CardReplyError(
            f"the reply is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    if not isinstance(value, dict):  # cannot happen from a "{", but keeps the type exact
        raise CardReplyError("the reply must be one JSON object.")
    return value


def _validation_feedback(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "card"
        lines.append(f"- {where}: {error['msg']}")
    return "\n".join(lines)


def card_from_reply(text: str, fixed: dict[str, Any]) -> ModelCard:
    """Validate a reply as a card, with the caller's ``fixed`` fields imposed."""
    data = extract_json_object(text)
    for key in (*_CALLER_KEYS, *_DROPPED_KEYS):
        data.pop(key, None)
    data.update(fixed)
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        raise CardReplyError(_validation_feedback(exc)) from None


def _readme_excerpt(readme_text: str, limit: int) -> str:
    if len(readme_text) <= limit:
        return readme_text
    return readme_text[:limit] + prompts.README_TRUNCATED_NOTE


def _first_messages(readme: str, model_string: str, card_backend: str) -> list[Message]:
    prompt = prompts.fill(
        prompts.CARD_WRITER_PROMPT,
        model_string=model_string,
        card_backend=card_backend,
        readme=readme,
    )
    return [
        Message(role="system", content=prompts.CARD_WRITER_SYSTEM),
        Message(role="user", content=prompt),
    ]


async def generate_card(
    readme_text: str,
    backend: Backend,
    *,
    model_string: str,
    card_backend: CardBackend = "litellm",
    max_attempts: int = 3,
    card_id: str | None = None,
    api_base: str | None = None,
    api_key_env: str | None = None,
    max_readme_chars: int = 12_000,
    max_tokens: int = 1024,
) -> ModelCard:
    """Ask the model behind ``backend`` to write the card of ``model_string``.

    ``card_id``, ``api_base`` and ``api_key_env``, when given, are imposed on the
    card. Raises :class:`GoaError` when no valid card came after ``max_attempts``.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if not readme_text.strip():
        raise GoaError("the README is empty; there is nothing to write a card from")
    fixed: dict[str, Any] = {"backend": card_backend, "model": model_string}
    optional = {"id": card_id, "api_base": api_base, "api_key_env": api_key_env}
    fixed.update({k: v for k, v in optional.items() if v is not None})
    readme = _readme_excerpt(readme_text, max_readme_chars)
    messages = _first_messages(readme, model_string, card_backend)
    problems = ""
    for _ in range(max_attempts):
        request = ChatRequest(
            messages=tuple(messages), max_tokens=max_tokens, tags=Tags(stage=STAGE)
        )
        reply = (await backend.complete(request)).text
        try:
            return card_from_reply(reply, fixed)
        except CardReplyError as exc:
            problems = exc.feedback
        retry = prompts.fill(prompts.CARD_WRITER_RETRY, problems=problems)
        messages += [Message(role="assistant", content=reply), Message(role="user", content=retry)]
    summary = " ".join(problems.split())
    raise GoaError(
        f"model {backend.model!r} wrote no valid card in {max_attempts} attempt"
        f"{'s' if max_attempts > 1 else ''}; last problem: {summary}"
    )
