"""Answer checking: multiple-choice letters and math equivalence (math-verify)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from goa.eval.checking import (
    Check,
    check_math,
    check_multiple_choice,
    extract_choice,
    extract_math,
)

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"

# (model output, number of options, expected letter or None)
CHOICES: list[tuple[str, int, str | None]] = [
    ("Answer: B", 4, "B"),
    ("Answer: b", 4, "B"),
    ("Answer: B.", 4, "B"),
    ("**Answer:** **C**", 4, "C"),
    ("The answer is (D).", 4, "D"),
    ("the answer is (c)", 4, "C"),
    ("Let me think step by step.\nThe final answer is: (A)", 4, "A"),
    ("So the correct option is B because the others are wrong.", 4, "B"),
    ("The correct answer is option C.", 4, "C"),
    ("The answer is B) Enlightenment revolutions", 4, "B"),
    ('{"answer": "B"}', 4, "B"),
    ('```json\n{"reasoning": "...", "answer": "(C)"}\n```', 4, "C"),
    ("{'answer': 'd'}", 4, "D"),
    ("Therefore the answer is $\\boxed{B}$.", 4, "B"),
    ("\\boxed{\\text{C}}", 4, "C"),
    ("\\boxed{(A)}", 4, "A"),
    ("Comparing the options, D fits best.\n(B)", 4, "B"),
    ("Reasoning...\n**(C)**", 4, "C"),
    ("Reasoning...\nA", 4, "A"),
    # The last candidate line wins.
    ("At first the answer is A.\nOn reflection, the answer is C.", 4, "C"),
    ("Answer: A\nWait, that is wrong.\nAnswer: D", 4, "D"),
    # Beyond the options the question has.
    ("Answer: E", 4, None),
    ("The answer is (J)", 4, None),
    ("Answer: A\nAnswer: F", 5, None),
    # MMLU-Pro: ten options A-J.
    ("The answer is (J)", 10, "J"),
    ("Answer: G", 10, "G"),
    ("Answer: I", 10, "I"),
    ("the answer is (i).", 10, "I"),
    ("Answer: K", 10, None),
    # Ambiguous or absent: no answer, never a guess.
    ("I don't know.", 4, None),
    ("", 4, None),
    ("The answer is A or C.", 4, None),
    ("Answer: A, C", 4, None),
    ("Answer: B/D", 4, None),
    ("Answer: I think it might be B", 4, None),
    ("Answer: I'm not sure, maybe B", 10, None),
    ("The answer is a bit unclear; none of the options fit.", 4, None),
    ("Answer: none of the above", 4, None),
    ("The answer is 42.", 4, None),
    ("Options A and B both look plausible.", 4, None),
    ("\\boxed{42}", 4, None),
]


@pytest.mark.parametrize(("text", "n_options", "expected"), CHOICES)
def test_extract_choice(text: str, n_options: int, expected: str | None) -> None:
    assert extract_choice(text, n_options) == expected


def test_extract_choice_rejects_impossible_option_counts() -> None:
    with pytest.raises(ValueError, match="n_options"):
        extract_choice("Answer: A", 0)
    with pytest.raises(ValueError, match="n_options"):
        extract_choice("Answer: A", 27)


def test_check_multiple_choice() -> None:
    assert check_multiple_choice("The answer is (B).", "B", 4) == Check(
        correct=True, extracted="B", no_answer=False
    )
    assert check_multiple_choice("Answer: c", "b", 4) == Check(
        correct=False, extracted="C", no_answer=False
    )
    assert check_multiple_choice("I don't know", "B", 4) == Check(
        correct=False, extracted=None, no_answer=True
    )
    assert check_multiple_choice("Answer: E", "A", 4) == Check(
        correct=False, extracted=None, no_answer=True
    )


def test_real_mmlu_pro_golds() -> None:
    rows = json.loads((BENCHMARKS / "dev" / "MMLU_Pro_sampled_dev.json").read_text())
    for row in rows:
        gold = row["gold_answer"]
        assert check_multiple_choice(f"The answer is ({gold})", gold, 10).correct
        other = "A" if gold != "A" else "B"
        assert not check_multiple_choice(f"The answer is ({other})", gold, 10).correct


# --- Math ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is $\\boxed{5}$.", "5"),
        ("\\boxed{\\frac{\\sqrt{3}}{3}}", "\\frac{\\sqrt{3}}{3}"),
        ("First \\boxed{1}, then correcting: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("Work...\nAnswer: 42", "42"),
        ("Work...\nFinal answer: $\\frac{7}{4}$.", "\\frac{7}{4}"),
        ("I could not solve it.", None),
        ("\\boxed{}", None),
        ("\\boxed{\\frac{1}{2}", None),
    ],
)
def test_extract_math(text: str, expected: str | None) -> None:
    assert extract_math(text) == expected


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
        ("\\frac{\\sqrt2}{2}", "\\frac{\\sqrt{2}}{2}"),
        ("(-2, 1)", "(-2,1)"),
        ("[0, \\infty)", "[0,\\infty)"),
        ("58500", "58,500"),
        ("58,500", "58500"),
        ("7, 5, 3", "3, 5, 7"),
        ("x = 5", "x=5"),
        ("2(k+1)", "2k+2"),
        ("137.5", "137 \\frac{1}{2}"),
        ("2i + 1", "1+2i"),
        ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\text{Evelyn}", "\\text{Evelyn}"),
    ],
)
def test_equivalent_forms(answer: str, gold: str) -> None:
    check = check_math(f"The answer is $\\boxed{{{answer}}}$.", gold)
    assert check == Check(correct=True, extracted=answer, no_answer=False)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("0.51", "\\frac{1}{2}"),
        ("[-2, 1]", "(-2,1)"),
        ("3, 5", "3, 5, 7"),
        ("\\sqrt{3}", "\\frac{\\sqrt{3}}{3}"),
        ("\\text{Bob}", "\\text{Evelyn}"),
    ],
)
def test_different_values(answer: str, gold: str) -> None:
    check = check_math(f"\\boxed{{{answer}}}", gold)
    assert not check.correct
    assert not check.no_answer


@pytest.mark.parametrize(
    ("text", "gold", "correct"),
    [
        ("\\boxed{33}", 33, True),
        ("\\boxed{033}", 33, True),
        ("Answer: 809", 809, True),
        ("\\boxed{1,000}", 1000, True),
        ("\\boxed{34}", 33, False),
    ],
)
def test_aime_integer_golds(text: str, gold: int, correct: bool) -> None:
    assert check_math(text, gold).correct is correct


def test_no_math_answer() -> None:
    assert check_math("I'm not sure how to finish this.", "10") == Check(
        correct=False, extracted=None, no_answer=True
    )


def test_real_math_golds_match_themselves_and_not_a_wrong_value() -> None:
    rows = json.loads((BENCHMARKS / "dev" / "MATH_dev.json").read_text())
    for row in rows[:25]:
        gold = row["gold_answer"]
        assert check_math(f"So the answer is $\\boxed{{{gold}}}$.", gold).correct, gold
        assert not check_math("\\boxed{123456789}", gold).correct, gold


def test_real_aime_golds() -> None:
    rows = json.loads((BENCHMARKS / "test" / "AIME24_test.json").read_text())
    for row in rows:
        gold = row["gold_answer"]
        assert check_math(f"\\boxed{{{gold}}}", gold).correct
        assert not check_math(f"\\boxed{{{gold + 1}}}", gold).correct


def test_math_off_the_main_thread() -> None:
    results: list[Check] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(check_math("\\boxed{0.5}", "\\frac{1}{2}"))
            results.append(check_math("\\boxed{0.6}", "\\frac{1}{2}"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert not errors
    assert [r.correct for r in results] == [True, False]


def test_importing_the_module_does_not_import_math_verify() -> None:
    code = "import sys, goa.eval.checking; print('math_verify' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
