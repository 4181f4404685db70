"""From an OpenAI ``messages`` list to the one question a GoA run answers.

A GoA run answers one question (a string): the pipeline has no chat history.
The rule:

- The last message must be a ``user`` message: it is the question.
- With no earlier message the question is that message's text, unchanged (so
  the answer is the one ``goa ask`` gives).
- Earlier messages are folded into the question as context, in order: system
  and developer messages under ``Instructions:``, user and assistant turns under
  ``Conversation so far:`` (``User: ...`` / ``Assistant: ...``), then the last
  message under ``Question:``. Every agent sees that whole text.
- ``tool`` and ``function`` messages are refused (a pool has no tools); content
  given as a list of parts may only hold text parts, which are joined by
  newlines; an assistant message with no content is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from goa.serve.errors import ApiError, bad_request
from goa.serve.wire import WireMessage


def message_text(message: WireMessage, index: int) -> str:
    """The text of a message (text parts joined by newlines)."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part_index, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise bad_request(
                f"content parts of type {part.type!r} are not supported; only text",
                param=f"messages[{index}].content[{part_index}]",
            )
        texts.append(part.text)
    return "\n".join(texts)


def question_from(messages: Sequence[WireMessage], *, max_messages: int) -> str:
    """The question for GoA, or an :class:`ApiError` (400) saying what is wrong."""
    if not messages:
        raise bad_request("messages must not be empty", param="messages")
    if len(messages) > max_messages:
        raise ApiError(
            400,
            f"too many messages: {len(messages)} (this server takes at most {max_messages})",
            code="too_many_messages",
            param="messages",
        )
    for index, message in enumerate(messages):
        if message.role in ("tool", "function"):
            raise bad_request(
                f"{message.role} messages are not supported (a GoA pool has no tools)",
                param=f"messages[{index}].role",
            )
    last = len(messages) - 1
    if messages[last].role != "user":
        raise bad_request(
            "the last message must be a user message: it is the question GoA answers",
            param=f"messages[{last}].role",
        )
    question = message_text(messages[last], last).strip()
    if not question:
        raise bad_request("the question (the last user message) is empty", param="messages")
    if last == 0:
        return question
    instructions: list[str] = []
    turns: list[str] = []
    for index, message in enumerate(messages[:last]):
        text = message_text(message, index).strip()
        if not text:
            continue
        if message.role in ("system", "developer"):
            instructions.append(text)
        else:
            turns.append(f"{message.role.capitalize()}: {text}")
    parts = []
    if instructions:
        parts.append("Instructions:\n" + "\n\n".join(instructions))
    if turns:
        parts.append("Conversation so far:\n" + "\n\n".join(turns))
    if not parts:
        return question
    parts.append("Question:\n" + question)
    return "\n\n".join(parts)
