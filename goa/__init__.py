"""goa: Graph-of-Agents. Several LLMs answer together as a graph.

The public API is re-exported here. Heavy libraries (litellm, llama.cpp, torch,
datasets) are imported only when a backend that needs them is used.
"""

import os as _os

# litellm reads its price map from the network on import unless told otherwise;
# goa uses the copy inside the package. Set before anything can import litellm.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from goa.ask import aask, ask
from goa.cards import ModelCard, get_card
from goa.errors import ConfigError, GoaError, ModelFileError, ModelRequestError
from goa.inference import (
    Backend,
    CachedBackend,
    ChatRequest,
    Completion,
    Message,
    ResponseCache,
    ScriptedBackend,
    Tags,
    Usage,
    allow_model_requests,
    forbid_model_requests,
)
from goa.pipeline import GraphOfAgents
from goa.pools import Pool, load_pool
from goa.result import Event, Result

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "CachedBackend",
    "ChatRequest",
    "Completion",
    "ConfigError",
    "Event",
    "GoaError",
    "GraphOfAgents",
    "Message",
    "ModelCard",
    "ModelFileError",
    "ModelRequestError",
    "Pool",
    "ResponseCache",
    "Result",
    "ScriptedBackend",
    "Tags",
    "Usage",
    "__version__",
    "aask",
    "allow_model_requests",
    "ask",
    "forbid_model_requests",
    "get_card",
    "load_pool",
]
