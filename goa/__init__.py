"""goa: Graph-of-Agents. Several LLMs answer together as a graph.

The public API is re-exported here. Heavy libraries (litellm, llama.cpp, torch,
datasets) are imported only when a backend that needs them is used.
"""

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

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "CachedBackend",
    "ChatRequest",
    "Completion",
    "ConfigError",
    "GoaError",
    "Message",
    "ModelFileError",
    "ModelRequestError",
    "ResponseCache",
    "ScriptedBackend",
    "Tags",
    "Usage",
    "__version__",
    "allow_model_requests",
    "forbid_model_requests",
]
