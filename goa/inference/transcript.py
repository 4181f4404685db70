"""goa's plain-text transcript, for models whose files carry no chat template.

Both local backends (llama.cpp and transformers) prompt a model without a chat
template (such as Gemma-3-270M base) with the same text::

    {system prompt}

    User: {user message}

    Assistant: {assistant message}

    User: {user message}

    Assistant:

and stop generating at a new ``User:`` or ``Assistant:`` line
(:data:`PLAIN_STOPS`), so that a base model does not go on to write the next
turns of the dialogue itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from goa.inference.types import Message

PLAIN_STOPS = ("\nUser:", "\nAssistant:")


def plain_prompt(messages: Sequence[Message]) -> str:
    """goa's plain-text transcript for models without a chat template."""
    turns: list[str] = []
    for message in messages:
        if message.role == "system":
            turns.append(message.content.strip())
        else:
            speaker = "User" if message.role == "user" else "Assistant"
            turns.append(f"{speaker}: {message.content.strip()}")
    return "\n\n".join([*turns, "Assistant:"])
