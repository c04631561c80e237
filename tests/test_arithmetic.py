"""Arithmetic drills: right by construction, in the teacher's notation, and a checker that finds the
equations in any chain and tells right from wrong."""

from __future__ import annotations

from collections import Counter

import pytest

from vlthinker.config import load_config
from vlthinker.model.arithmetic import (
    DRILL_INSTRUCTION,
    FORMS,
    drills,
    equation_accuracy,
    equations,
    evaluate,
)


def test_drills_are_deterministic_per_seed_and_split_and_every_equation_is_right():
    first = drills(300, seed=3)
    assert first == drills(300, seed=3)
    assert first != drills(300, seed=4)
    assert first != drills(300, seed=3, split="heldout")
    correct, total = equation_accuracy([completion for _, completion in first])
    assert total >= 300 * 3 and correct == total
    for prompt, completion in first:
        shown = prompt.split("\n")
        assert shown[0] == DRILL_INSTRUCTION and 3 <= len(shown) - 1 <= 6
        # each expression is restated in order: a running sum by its first link, the others verbatim
        cursor = 0
        for expression in shown[1:]:
            terms = expression.split(" + ")
            start = " + ".join(terms[:2]) if len(terms) > 2 else expression
            cursor = completion.index(start, cursor)
        assert completion.endswith(".")


def test_drills_cover_every_form():
    texts = [completion for _, completion in drills(400, seed=0)]
    found = Counter()
    for text in texts:
        for left, _ in equations(text):
            if "(" in left:
                found["perimeter"] += 1
            elif "×" in left:
                found["mul"] += 1
            elif left.startswith("-") or left.endswith(" 12"):
                found["wrap or clock"] += 1
            elif " - " in left:
                found["sub"] += 1
            else:
                found["add"] += 1
    assert set(FORMS) >= {"add", "sub", "mul", "running", "perimeter", "wrap"}
    assert all(found[name] > 20 for name in ("perimeter", "mul", "sub", "add", "wrap or clock")), found


def test_equations_are_found_link_by_link_and_wrong_ones_counted():
    text = (
        "Perimeter = 2 × (width + height) = 2 × (2 + 6) = 2 × 8 = 16. Going back 7 hours: 2 - 7 = -5, "
        "so I add 12: -5 + 12 = 7. Adding: 7 + 6 = 13; then 13 + 8 = 21. Row 3, column 2 is red at 3:00."
    )
    assert equations(text) == [
        ("2 × (2 + 6)", "2 × 8"),
        ("2 × 8", "16"),
        ("2 - 7", "-5"),
        ("-5 + 12", "7"),
        ("7 + 6", "13"),
        ("13 + 8", "21"),
    ]
    assert equation_accuracy([text]) == (6, 6)
    assert equation_accuracy(["Area = 6 × 2 = 1.", "5 × 3 = 15 and 4 + 4 = 9"]) == (1, 3)
    assert equation_accuracy(["no arithmetic here, row 1 = top"]) == (0, 0)
    # a model writes anything: leading zeros (a clock's minutes) are numbers, not a crash
    assert equation_accuracy(["At 3:05 - 2 = 3, and 07 + 1 = 08."]) == (2, 2)


def test_evaluate_reads_only_arithmetic():
    assert evaluate("2 × (3 + 4)") == 14 and evaluate("-5 + 12") == 7
    with pytest.raises(ValueError, match="not an arithmetic expression"):
        evaluate("__import__('os')")


def test_the_offline_teachers_chains_use_the_drills_notation():
    """The checker reads the teacher's equations, so the drills' notation is the chains' notation."""
    from vlthinker.model.pretrain import clean_teacher, synthetic_items, verified_solution

    config = load_config(None)
    teacher = clean_teacher(0, "focused")
    texts = [verified_solution(record, teacher) for record, _ in synthetic_items(config, 120, 7, "train")]
    correct, total = equation_accuracy(texts)
    assert total >= 40 and correct == total
