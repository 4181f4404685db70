"""How a :class:`~goa.eval.datasets.Sample` is put to the models.

:func:`question_text` is the question as the models read it; :func:`answer_format`
is the instruction for the final answer line that the checker then reads. For
multiple choice the instruction names the letters the question really has, so
that a five-option question accepts E and a four-option one does not.
"""

from __future__ import annotations

import re

from goa.eval.datasets import Sample

_CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def options_text(sample: Sample) -> str:
    """The options of a multiple-choice question, one ``(A) ...`` line each."""
    return "\n".join(
        f"({letter}) {choice}"
        for letter, choice in zip(sample.letters, sample.choices or [], strict=True)
    )


def question_text(sample: Sample) -> str:
    """The question as the models read it.

    Multiple choice: the question and its options as ``(A) ...`` lines; a sample
    from the Graph-of-Agents files keeps its original text
    (``meta["goa_question"]``), so that the paper's prompts are reproduced exactly.
    Math: the problem. Code: the function to complete (the HumanEval prompt).
    """
    if sample.kind == "multiple_choice":
        original = sample.meta.get("goa_question")
        if isinstance(original, str) and original.strip():
            return original
        return f"{sample.question.rstrip()}\n\n{options_text(sample)}"
    if sample.kind == "code":
        assert sample.code is not None  # guaranteed by Sample's validation
        own = sample.question.strip()
        intro = "Complete the following Python function."
        if own and own != sample.code.prompt.strip():
            intro = own
        return f"{intro}\n\n```python\n{sample.code.prompt}```"
    return sample.question


def answer_format(sample: Sample) -> str:
    """The instruction for the final answer that the checker of ``sample`` reads."""
    if sample.kind == "multiple_choice":
        letters = sample.letters
        listed = ", ".join(letters[:-1]) + f" or {letters[-1]}"
        return (
            f"Finish with a last line of the form 'Answer: X' where X is one of {listed} "
            "(the letter only)."
        )
    if sample.kind == "math":
        return (
            "Put your final answer in \\boxed{...} and finish with a last line of the "
            "form 'Answer: <your final answer>' (a number or a simplified LaTeX expression)."
        )
    return (
        "Give the complete function (signature and body, with any imports it needs) "
        "in one ```python code block; the last code block of your reply is run "
        "against hidden tests."
    )


def extract_code(text: str) -> str | None:
    """The last fenced code block of a reply (python, py or unlabelled), or None."""
    blocks = _CODE_BLOCK.findall(text)
    for block in reversed(blocks):
        if block.strip():
            return str(block)
    return None


__all__ = ["answer_format", "extract_code", "options_text", "question_text"]
