"""The shared inference adapter: one async protocol, several backends."""

from goa.inference.backend import Backend
from goa.inference.cache import CachedBackend, ResponseCache, cache_key
from goa.inference.guard import allow_model_requests, check_model_request, forbid_model_requests
from goa.inference.scripted import ScriptedBackend
from goa.inference.types import ChatRequest, Completion, Message, Tags, Usage

__all__ = [
    "Backend",
    "CachedBackend",
    "ChatRequest",
    "Completion",
    "Message",
    "ResponseCache",
    "ScriptedBackend",
    "Tags",
    "Usage",
    "allow_model_requests",
    "cache_key",
    "check_model_request",
    "forbid_model_requests",
]
