"""Every prompt template of the project, in one module.

Templates are plain strings with ``str.format`` placeholders (``{name}``); fill
them with :func:`fill`. Values are inserted verbatim, so braces inside a value
(a README, a JSON example) are safe; a literal brace in a template itself must
be doubled. Keeping all prompts here makes them easy to review, diff and audit.
"""

from __future__ import annotations


def fill(template: str, **values: object) -> str:
    """The template with its ``{name}`` placeholders replaced by ``values``."""
    return template.format(**values)


# --- Answering one question (goa.ask) ----------------------------------------------

ASK_SYSTEM = (
    "Answer the user's question correctly and concisely. Give the answer first, "
    "then only the reasoning needed to support it. If you are unsure, say so "
    "instead of guessing."
)


# --- Model card generation (goa.card_generation) ------------------------------

CARD_WRITER_SYSTEM = (
    "You write model cards for a router that picks which language model should "
    "answer a question. The router reads only the description fields, never the "
    "model's name, so the description must say plainly what the model does well "
    "and what it does badly. Be factual and sober: no marketing language, no "
    "claims the documentation does not support. You answer with one JSON object "
    "and nothing else."
)

CARD_WRITER_PROMPT = """\
Below is the documentation (README) of a language model. Write its model card.

Answer with a single JSON object with exactly these keys:
- "id": a short lowercase slug naming the model (letters, digits, and . _ - \
between them), for example "qwen2.5-7b-instruct".
- "description": two to five sentences on what the model is good at, what it is \
weak at, and any limits a caller should know (base model without chat \
template, small size, narrow domain, language coverage).
- "domains": a list of subject areas it is suited to, for example "general \
knowledge", "mathematics", "code", "medicine", "law", "finance".
- "task_specialization": a list of tasks it is tuned for, for example "chat", \
"code completion", "step-by-step math", "multiple-choice QA"; may be empty.
- "parameters_b": the parameter count in billions as a number, or null when \
the documentation does not say.
- "features": a list of special features, for example "tool calling", \
"long context", "vision input"; may be empty.
- "context_window": the context length in tokens, as an integer.
- "license": the license name as the documentation states it.

Do not add any other key. Do not invent benchmark scores or prices.
The card is for the model served as {model_string!r} through the \
{card_backend!r} backend.

README:
<<<
{readme}
>>>
"""

CARD_WRITER_RETRY = """\
That answer cannot be used as a model card:
{problems}

Answer again with one corrected JSON object and nothing else.
"""

README_TRUNCATED_NOTE = "\n[... the rest of the README was cut ...]"
