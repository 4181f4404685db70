"""Whether a card's model can be used here and now, without making a request.

- llama.cpp cards: the GGUF file is downloaded (``goa models pull`` fetches it,
  and first use does too).
- litellm cards with ``api_key_env``: that environment variable is set (its value
  is never read out or shown).
- litellm cards with an ``api_base`` and no key: a server you run; whether it is
  up is not checked here.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from goa.cards import ModelCard


class Availability(BaseModel):
    """``ready`` is a yes/no; ``detail`` says what it rests on, for people."""

    card: str
    backend: str
    model: str
    ready: bool
    detail: str


def availability(card: ModelCard) -> Availability:
    """What is known, offline, about whether ``card`` can answer."""
    ready, detail = _check(card)
    return Availability(
        card=card.id, backend=card.backend, model=card.model, ready=ready, detail=detail
    )


def _check(card: ModelCard) -> tuple[bool, str]:
    if card.backend == "llamacpp":
        return _local_file(card.model)
    if card.backend == "transformers":
        return _transformers_ready(card.model)
    if card.backend == "litellm":
        if card.api_key_env:
            if os.environ.get(card.api_key_env):
                return True, f"key present in ${card.api_key_env}"
            return False, f"no key: set ${card.api_key_env}"
        if card.api_base:
            return True, f"server at {card.api_base} (not checked)"
        return True, "no key needed"
    return False, f"the {card.backend} backend cannot be built from a card yet"


def _transformers_ready(model: str) -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return False, "transformers is not installed (goa's `gpu` extra)"
    from goa.inference import local_models

    if model in local_models.LOCAL_MODELS:
        return _local_file(model)
    if Path(model).exists():
        return True, f"model files at {model}"
    return False, f"no model directory or .gguf file at {model}"


def _local_file(model: str) -> tuple[bool, str]:
    """Whether an embedded model's GGUF file has been pulled."""
    from goa.inference import local_models

    if local_models.is_present(model):
        return True, f"file present: {local_models.model_path(model)}"
    return False, f"file not downloaded yet (goa models pull {model})"
