"""Helpers for users' tests and ours: scripted models and a stand-in OpenAI server."""

from goa.inference.scripted import ScriptedBackend
from goa.testing.openai_stub import OpenAIStubServer

__all__ = ["OpenAIStubServer", "ScriptedBackend"]
