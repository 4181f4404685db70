"""From a model card to a ready backend: the one place that knows every backend kind.

Local engine. Cards of the embedded local models name the llama.cpp backend,
which runs on the CPU. ``GOA_LOCAL_ENGINE=transformers`` serves those same cards
(the same verified GGUF files) with the transformers backend instead, batched
on a GPU when there is one; ``llamacpp`` (the default) keeps llama.cpp. Cards
that name ``transformers`` always get the transformers backend.
``GOA_MAX_BATCH`` sets how many requests that backend runs as one batch per
model (default 64; larger batches pay off on a large GPU).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from goa import paths
from goa.errors import ConfigError
from goa.inference.backend import Backend
from goa.inference.cache import CachedBackend, ResponseCache
from goa.inference.switches import env_count

if TYPE_CHECKING:
    from goa.cards import ModelCard


def backend_for_card(card: ModelCard, *, cache: ResponseCache | bool = False) -> Backend:
    """The backend that serves ``card``, optionally behind the response cache.

    ``cache=True`` uses the shared cache in the user data directory; a
    :class:`ResponseCache` uses that one; ``False`` (the default) uses none.
    """
    backend = _bare_backend(card)
    if cache is False:
        return backend
    store = ResponseCache(paths.cache_path()) if cache is True else cache
    return CachedBackend(backend, store)


def _bare_backend(card: ModelCard) -> Backend:
    if card.backend == "litellm":
        from goa.inference.litellm_backend import LiteLLMBackend

        prices = card.prices
        return LiteLLMBackend(
            card.model,
            api_base=card.api_base,
            api_key_env=card.api_key_env,
            input_price_per_mtok=prices.input_per_mtok if prices else None,
            output_price_per_mtok=prices.output_per_mtok if prices else None,
        )
    if card.backend == "transformers" or (
        card.backend == "llamacpp" and local_engine() == "transformers"
    ):
        from goa.inference.transformers_backend import TransformersBackend

        return TransformersBackend(card.model, max_batch=max_batch())
    if card.backend == "llamacpp":
        from goa.inference.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(card.model)
    raise ConfigError(
        f"card {card.id!r} (backend)",
        f"the {card.backend!r} backend cannot be built from a card yet",
    )


LOCAL_ENGINES = ("llamacpp", "transformers")


def local_engine() -> str:
    """The engine for llama.cpp cards: ``$GOA_LOCAL_ENGINE``, default ``llamacpp``."""
    engine = os.environ.get("GOA_LOCAL_ENGINE", "").strip() or "llamacpp"
    if engine not in LOCAL_ENGINES:
        raise ConfigError(
            "GOA_LOCAL_ENGINE", f"unknown engine {engine!r}; known: {', '.join(LOCAL_ENGINES)}"
        )
    return engine


def max_batch() -> int:
    """Requests per batch of the transformers backend: ``$GOA_MAX_BATCH``, default 64."""
    from goa.inference.hf_model import DEFAULT_MAX_BATCH

    return env_count("GOA_MAX_BATCH", DEFAULT_MAX_BATCH)
