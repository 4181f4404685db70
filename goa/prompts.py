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


# --- Graph of Agents (goa.select, goa.answer, goa.edges, goa.passing, goa.pooling) ---
#
# Agents are never named to each other or to the meta model: the selector reads
# card profiles by number, and peers' answers are labelled by their relevance.

GOA_RETRY = """\
Your reply could not be used: {problem}

Reply again, following the requested format exactly.
"""

GOA_SELECT_SYSTEM = (
    "You assemble a small panel of language models to answer a question together. "
    "You know each candidate only by a numbered profile describing its strengths "
    "and weaknesses. You reply with one JSON object and nothing else."
)

GOA_SELECT_PROMPT = """\
Question to be answered:
<<<
{question}
>>>

Candidate models:
{profiles}

Pick the {k} candidates most likely to answer this question well. Judge first \
by how closely a candidate's domains match the subject of the question, then by \
whether it is specialised in this kind of task. When the question needs broad \
knowledge or reasoning, keep a capable general-purpose model among your picks.

Reply with exactly one JSON object of this form, listing {k} different \
candidate numbers, best first, each with a short reason:
{{"selected": [3, 1], "reasons": ["why 3", "why 1"]}}
"""

GOA_PROFILE_ENTRY = "Candidate {number}:\n{profile}"

GOA_DIFFICULTY_PROMPT = """\
How hard is this question for a language model?
<<<
{question}
>>>

Rate it 1 (easy: a fact or a one-step task), 2 (moderate: a few steps or \
specialist knowledge) or 3 (hard: long reasoning, or expert knowledge where \
models often err). Reply with one JSON object and nothing else, for example:
{{"difficulty": 2}}
"""

GOA_DEFAULT_ANSWER_FORMAT = "Finish with a last line of the form 'Answer: <your final answer>'."

GOA_ANSWER_SYSTEM = (
    "You are one of several experts answering the same question. Think briefly "
    "and concretely, then commit to a final answer."
)

GOA_ANSWER_PROMPT = """\
{question}

Give short reasoning, then your final answer. {answer_format}
"""

GOA_SCORE_SYSTEM = (
    "You review other experts' answers to a question and judge how good each one "
    "is. You reply with one JSON object and nothing else."
)

GOA_SCORE_PROMPT = """\
Question:
<<<
{question}
>>>

Answers from other experts:
{answers}

Judge each answer on three things together: is it correct, is its reasoning \
coherent, and does it address what was asked. Share one point between the \
answers: give each a score from 0 to 1 so that the {count} scores add up to \
exactly 1, more for a better answer.

Reply with exactly one JSON object holding the {count} scores in the order of \
the answers, for example:
{{"scores": [{example}]}}
"""

GOA_PEER_ENTRY = "Answer {number}:\n{text}"

GOA_FORWARD_PROMPT = """\
Question:
<<<
{question}
>>>

Your earlier answer:
<<<
{own}
>>>

Answers from experts whom reviewers judged MORE relevant to this question \
than you (relevance is a share of 1 across all experts):
{peers}

Weigh their reasoning against yours. Adopt what is better and correct what is \
wrong, yet keep your own view where you are confident it is right. Give short \
reasoning, then your final answer. {answer_format}
"""

GOA_REVERSE_PROMPT = """\
Question:
<<<
{question}
>>>

Your current answer:
<<<
{own}
>>>

Refined answers from experts whom reviewers judged LESS relevant to this \
question than you (relevance is a share of 1 across all experts):
{peers}

They may have spotted something you missed, or they may be wrong. Check their \
points and improve your answer only where they are right. Give short reasoning, \
then your final answer. {answer_format}
"""

GOA_LABELLED_PEER = "Expert with relevance {relevance:.2f}:\n<<<\n{text}\n>>>"

GOA_POOL_SYSTEM = "You combine several experts' answers to one question into a single best answer."

GOA_POOL_PROMPT = """\
Question:
<<<
{question}
>>>

Final answers from a panel of experts, most relevant first (relevance is a \
share of 1; give more weight to the more relevant experts, but prefer correct \
reasoning over mere majority):
{answers}

Write the single best answer to the question. Give short reasoning, then the \
final answer. {answer_format}
"""

# --- Judging by likelihood (goa.edges, judge="likelihood") ------------------------
#
# No text is generated: the judge model reads this request, its reply is taken
# to start with GOA_LIKELIHOOD_PREFIX, and each peer's final answer is scored by
# how probable the judge finds it as the rest of that line.

GOA_LIKELIHOOD_SYSTEM = (
    "You are an expert. You answer the question directly with your final answer, "
    "without any reasoning."
)

GOA_LIKELIHOOD_PROMPT = """\
{question}

Reply with your final answer line only. {answer_format}
"""

GOA_LIKELIHOOD_PREFIX = "Answer:"


# --- Baselines (goa.baselines) ------------------------------------------------------
#
# The methods GoA is compared with: one model alone, majority vote,
# Mixture-of-Agents and Self-MoA. As in GoA, models are never told which model
# wrote a response they read.

BASELINE_ANSWER_SYSTEM = (
    "You are an expert answering a question. Reason briefly and to the point, "
    "then commit to one final answer."
)

BASELINE_ANSWER_PROMPT = """\
{question}

Give short reasoning, then your final answer. {answer_format}
"""

MOA_RESPONSE_ENTRY = "Response {number}:\n<<<\n{text}\n>>>"

MOA_REFINE_SYSTEM = (
    "You answer a question with the help of earlier responses to it. Those "
    "responses may be wrong, so check them rather than trust them."
)

MOA_REFINE_PROMPT = """\
Question:
<<<
{question}
>>>

Responses written to this question in an earlier round:
{responses}

Use these responses as supporting material: keep what holds up, fix what is \
wrong, and add what is missing. Then write your own answer to the question. \
Give short reasoning, then your final answer. {answer_format}
"""

MOA_AGGREGATE_SYSTEM = (
    "You merge several candidate responses to one question into a single answer "
    "that is better than each of them."
)

MOA_AGGREGATE_PROMPT = """\
Question:
<<<
{question}
>>>

Candidate responses:
{responses}

Evaluate the candidates critically: some may be wrong or biased, and the most \
frequent answer is not always the right one. Write one accurate, coherent \
answer to the question. Give short reasoning, then your final answer. \
{answer_format}
"""
