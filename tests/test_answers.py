"""Answer judging: extraction, strict format, grading rules, reward shapes, timeouts and threads."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from vlthinker.answers import (
    MAX_ANSWER_CHARS,
    accuracy_reward,
    extract_answer,
    format_ok,
    format_reward,
    grade,
    grade_response,
)

ABCD = ["3", "4", "5", "6"]
MARGIN_S = 0.6  # seconds a timed-out grade() may take beyond its timeout_s
COLORS = ["red", "green", "blue", "yellow"]
YES_NO = ["Yes", "No"]
SURDS = ["1/2", "\\frac{\\sqrt{2}}{2}", "\\sqrt{3}", "2"]
UNITS = ["5 cm", "5 m", "50 cm", "0.5 m"]

# (prediction, ground truth, choices, keyword arguments, expected)
GRADE_CASES = [
    # integers
    ("5", "5", None, {}, True),
    ("5.0", "5", None, {}, True),
    ("+5", "5", None, {}, True),
    ("1,000", "1000", None, {}, True),
    ("1000", "1,000", None, {}, True),
    ("005", "5", None, {}, True),
    ("5", "50", None, {}, False),
    ("50", "5", None, {}, False),
    ("-5", "5", None, {}, False),
    ("5", "-5", None, {}, False),
    ("6", "5", None, {}, False),
    ("1,000", "100", None, {}, False),
    ("1000000", "1000001", None, {}, False),
    ("1e3", "1000", None, {}, True),
    ("$5$", "5", None, {}, True),
    ("\\boxed{5}", "5", None, {}, True),
    ("5.", "5", None, {}, True),
    ("three", "3", None, {}, True),
    ("Twelve", "12", None, {}, True),
    ("four", "3", None, {}, False),
    ("$12", "12", None, {}, True),
    # decimals
    ("0.5", "0.05", None, {}, False),
    ("0.05", "0.5", None, {}, False),
    ("2.50", "2.5", None, {}, True),
    (".5", "0.5", None, {}, True),
    ("-0.5", "-.5", None, {}, True),
    ("2.5", "2.6", None, {}, False),
    ("3.1415927", "3.14159265", None, {}, True),  # relative tolerance 1e-6
    ("3.1416", "3.14159265", None, {}, False),
    # MathVista precision / answer types
    ("1.23", "1.2", None, {"precision": 1}, True),
    ("1.26", "1.2", None, {"precision": 1}, False),
    ("1.25", "1.2", None, {"precision": 2}, False),
    ("1.249", "1.2", None, {"precision": 1}, True),
    ("1.3", "1.2", None, {"precision": 1}, False),
    ("0.667", "0.67", None, {"precision": 2}, True),
    ("0.66", "0.67", None, {"precision": 2}, False),
    ("2", "2.0", None, {"precision": 1, "answer_type": "float"}, True),
    ("5.0", "5", None, {"answer_type": "integer"}, True),
    ("5.4", "5", None, {"answer_type": "integer"}, False),
    ("4.9", "5", None, {"answer_type": "integer"}, False),
    ("[1, 2, 3]", "[1,2,3]", None, {"answer_type": "list"}, True),
    ("[1, 3, 2]", "[1,2,3]", None, {"answer_type": "list"}, False),
    ("[1, 2]", "[1,2,3]", None, {"answer_type": "list"}, False),
    ("red", "Red", None, {"answer_type": "text"}, True),
    # fractions
    ("3/4", "0.75", None, {}, True),
    ("0.75", "3/4", None, {}, True),
    ("\\frac{3}{4}", "0.75", None, {}, True),
    ("\\dfrac34", "3/4", None, {}, True),
    ("-\\frac{1}{2}", "-0.5", None, {}, True),
    ("6/8", "3/4", None, {}, True),
    ("4/3", "3/4", None, {}, False),
    ("0.33", "1/3", None, {}, True),  # a decimal that correctly rounds an exact fraction
    ("0.3", "1/3", None, {}, False),  # one decimal place is not enough
    ("0.34", "1/3", None, {}, False),
    # LaTeX / symbolic (math-verify)
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", None, {}, True),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", None, {}, True),
    ("2\\pi", "2*pi", None, {}, True),
    ("2 pi", "2\\pi", None, {}, True),
    ("sqrt(2)", "\\sqrt{2}", None, {}, True),
    ("3\\sqrt{3}", "\\sqrt{27}", None, {}, True),
    ("\\sqrt{3}", "\\sqrt{2}", None, {}, False),
    ("\\pi", "2\\pi", None, {}, False),
    ("(x+1)^2", "x^2+2x+1", None, {}, True),
    ("(x-1)^2", "x^2+2x+1", None, {}, False),
    ("2x", "2*x", None, {}, True),
    ("x=5", "5", None, {}, True),
    ("x=6", "5", None, {}, False),
    ("[1, 2]", "[1,2]", None, {}, True),
    ("(1,2)", "[1,2]", None, {}, False),  # open vs closed interval
    ("\\{2,1\\}", "\\{1,2\\}", None, {}, True),
    ("\\infty", "oo", None, {}, True),
    ("3.14", "\\pi", None, {}, True),
    ("3.1", "\\pi", None, {}, False),
    ("1.41", "\\sqrt{2}", None, {}, True),
    ("1.42", "\\sqrt{2}", None, {}, False),
    ("\\frac{\\sqrt{2}}{2}", "0.71", None, {"precision": 2}, True),
    ("0.71", "\\frac{\\sqrt{2}}{2}", None, {"precision": 2}, True),
    ("\\frac{\\sqrt{3}}{2}", "0.71", None, {"precision": 2}, False),
    # units and degrees
    ("5 cm", "5", None, {}, True),
    ("5", "5 cm", None, {}, True),
    ("5\\text{ cm}", "5", None, {}, True),
    ("5 centimeters", "5 cm", None, {}, True),
    ("5 cm", "5 m", None, {}, False),
    ("50 cm", "5", None, {}, False),
    ("5 cm^2", "5", None, {}, True),
    ("30°", "30", None, {}, True),
    ("30^\\circ", "30", None, {}, True),
    ("30^{\\circ}", "30 degrees", None, {}, True),
    ("30 degrees", "30°", None, {}, True),
    ("60°", "30", None, {}, False),
    ("3 apples", "three apples", None, {}, True),
    ("3 apples", "3 oranges", None, {}, False),
    ("2 x", "2", None, {}, False),  # a variable is not a unit
    # percentages (a "%" on exactly one side may also be read as /100)
    ("25%", "25", None, {}, True),
    ("25", "25%", None, {}, True),
    ("0.25", "25%", None, {}, True),
    ("25%", "0.25", None, {}, True),
    ("25\\%", "25", None, {}, True),
    ("25 percent", "25%", None, {}, True),
    ("0.25", "25", None, {}, False),
    ("25", "0.25", None, {}, False),
    ("0.25%", "25%", None, {}, False),
    ("2.5%", "25%", None, {}, False),
    ("30%", "25%", None, {}, False),
    # multiple choice: letters <-> option texts
    ("C", "5", ABCD, {}, True),
    ("(C)", "5", ABCD, {}, True),
    ("C.", "5", ABCD, {}, True),
    ("C)", "5", ABCD, {}, True),
    ("Option C", "5", ABCD, {}, True),
    ("option (c)", "5", ABCD, {}, True),
    ("c", "5", ABCD, {}, True),
    ("\\text{C}", "5", ABCD, {}, True),
    ("C. 5", "5", ABCD, {}, True),
    ("(C) 5", "C", ABCD, {}, True),
    ("5", "C", ABCD, {}, True),
    ("5.0", "C", ABCD, {}, True),
    ("C", "C", ABCD, {}, True),
    ("B", "5", ABCD, {}, False),
    ("D", "C", ABCD, {}, False),
    ("E", "5", ABCD, {}, False),  # out of range
    ("6", "C", ABCD, {}, False),
    ("blue", "C", COLORS, {}, True),
    ("Blue.", "blue", COLORS, {}, True),
    ("c", "blue", COLORS, {}, True),
    ("b", "blue", COLORS, {}, False),
    ("purple", "blue", COLORS, {}, False),
    ("a", "red", COLORS, {}, True),
    ("0.5", "A", SURDS, {}, True),
    ("\\frac{1}{\\sqrt{2}}", "B", SURDS, {}, True),
    ("\\frac{1}{\\sqrt{2}}", "A", SURDS, {}, False),
    ("0.5 m", "50 cm", UNITS, {}, False),  # no conversions
    ("5", "5 cm", UNITS, {}, False),  # ambiguous between two options
    ("True", "Yes", YES_NO, {}, True),
    ("B", "No", YES_NO, {}, True),
    ("no", "Yes", YES_NO, {}, False),
    ("A", "5", ["A. 3", "B. 5"], {}, False),  # labelled options: the labels are stripped
    ("B", "5", ["A. 3", "B. 5"], {}, True),
    # yes / no
    ("Yes", "yes", None, {}, True),
    ("yes.", "Yes", None, {}, True),
    ("YES", "Yes", None, {}, True),
    ("True", "Yes", None, {}, True),
    ("false", "No", None, {}, True),
    ("Yes, it is.", "yes", None, {}, True),
    ("no", "Yes", None, {}, False),
    ("yes", "No", None, {}, False),
    ("yes or no", "yes", None, {}, False),
    ("Yes, no", "yes", None, {}, False),
    ("maybe", "yes", None, {}, False),
    ("5", "yes", None, {}, False),
    # free text
    ("Red", "red", None, {}, True),
    ("the red cube", "Red cube.", None, {}, True),
    ("grey", "gray", None, {}, True),
    ("Colour", "color", None, {}, True),
    ("  left  ", "Left", None, {}, True),
    ("ＲＥＤ", "red", None, {}, True),  # full-width letters
    ("blue", "red", None, {}, False),
    ("red cube", "blue cube", None, {}, False),
    ("A", "a", None, {}, True),
    ("x", "x", None, {}, True),
    ("There are 5 apples", "5", None, {}, False),
    # missing / empty / non-text
    (None, "5", None, {}, False),
    ("", "5", None, {}, False),
    ("   ", "5", None, {}, False),
    ("5", "", None, {}, False),
    ("$$", "5", None, {}, False),
    (5, "5", None, {}, True),
    ("5", 5, None, {}, True),
    (True, "True", None, {}, False),
    (["5"], "5", None, {}, False),
    # whole responses are extracted first
    ("<think>2+3</think><answer>5</answer>", "5", None, {}, True),
    ("so \\boxed{6}", "5", None, {}, False),
]


@pytest.mark.parametrize(
    ("prediction", "truth", "choices", "kwargs", "expected"),
    GRADE_CASES,
    ids=[f"{i}:{c[0]!r}~{c[1]!r}" for i, c in enumerate(GRADE_CASES)],
)
def test_grade(prediction, truth, choices, kwargs, expected) -> None:
    assert grade(prediction, truth, choices, **kwargs) is expected


def test_grade_case_count() -> None:
    assert len(GRADE_CASES) >= 100
    assert sum(1 for c in GRADE_CASES if not c[-1]) >= 40


EXTRACT_CASES = [
    ("<think>r</think><answer>5</answer>", "5"),
    ("<think>r</think><answer> 5. </answer>", "5"),
    ("<answer>3</answer> then <answer>4</answer>", "4"),
    ("<answer>The answer is \\boxed{\\frac{1}{2}}.</answer>", "\\frac{1}{2}"),
    ("<answer>$x^2$</answer>", "x^2"),
    ("<ANSWER>b</ANSWER>", "b"),
    ("<answer>**C**</answer>", "C"),
    ("<answer>Answer: yes</answer>", "yes"),
    ('<answer>"red"</answer>', "red"),
    ("<answer></answer>", None),
    ("<answer>  </answer> \\boxed{3}", None),  # an empty answer block does not fall back
    ("<answer>\\boxed{}</answer>", None),
    ("<answer>5", None),  # truncated: no closing tag
    ("so \\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt{2}}{2}"),
    ("\\boxed{1} and later \\boxed{2}", "2"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("x\\boxed{a{b}c}y", "a{b}c"),
    ("\\boxed{unbalanced", None),
    ("\\boxed{3} \\boxed{unbalanced", "3"),
    ("$$\\boxed{2}$$", "2"),
    ("\\fbox{9}", "9"),
    ("\\boxed {10}", "10"),
    ("Reasoning...\nAnswer: B", "B"),
    ("Thus the answer is $12$.", "12"),
    ("My answer is 5", "5"),
    ("Final answer: 7 cm", "7 cm"),
    ("**Answer:** 42", "42"),
    ("The final answer is \\(\\frac{3}{4}\\)", "\\frac{3}{4}"),
    ("Answer: 5\nsome trailing text", "5"),
    ("Answer: 4\nno wait.\nThe answer is: (A)", "(A)"),
    ("no answer here", None),
    ("", None),
    ("\\boxed{" * 5000, None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT_CASES, ids=[repr(c[0])[:40] for c in EXTRACT_CASES])
def test_extract_answer(text, expected) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize("bad", [None, 5, b"<answer>5</answer>", ["<answer>5</answer>"]])
def test_extract_answer_non_text(bad) -> None:
    assert extract_answer(bad) is None


FORMAT_CASES = [
    ("<think>r</think><answer>5</answer>", True),
    (" <think>\nlong\nreasoning\n</think>\n<answer>5</answer>\n", True),
    ("<think>r</think><answer>\\boxed{5}</answer>", True),
    ("<think></think><answer>5</answer>", False),  # no reasoning
    ("<think>r</think><answer> </answer>", False),  # no answer
    ("<think>r</think><answer>5</answer><answer>6</answer>", False),  # several answers
    ("<think>r</think><answer>5</answer><answer>5</answer>", False),
    ("<think>r</think>x<answer>5</answer>", False),  # text between the blocks
    ("<answer>5</answer><think>r</think>", False),  # wrong order
    ("<think>r<answer>5</answer></think>", False),  # nested
    ("pre <think>r</think><answer>5</answer>", False),
    ("<think>r</think><answer>5</answer> post", False),
    ("<think>a</think><think>b</think><answer>5</answer>", False),
    ("<Think>r</Think><answer>5</answer>", False),
    ("<think>r</think><answer>5", False),
    ("<think>r</think>", False),
    ("<answer>5</answer>", False),
    ("\\boxed{5}", False),
    ("", False),
    (None, False),
]


@pytest.mark.parametrize(("text", "expected"), FORMAT_CASES, ids=[repr(c[0])[:40] for c in FORMAT_CASES])
def test_format_ok(text, expected) -> None:
    assert format_ok(text) is expected


GARBAGE = [
    "x" * 1_000_000,
    "\\boxed{" * 10_000,
    "{" * 500 + "}" * 499,
    "\\frac{" * 200,
    "$" * 1001,
    "\x00\x01\x02",
    "\ud800",  # lone surrogate
    "🙂🙃" * 50,
    "١٢٣",  # Arabic-Indic digits
    "∑∫∂√∞≈≠",
    "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
    "((((((((((((((((((((x))))))))))))))))))))",
    "(" * 10 + "x" + ")" * 10,
    "1/0",
    "\\frac{1}{0}",
    "0/0",
    "1e999999",
    "9" * 5000,
    "nan",
    "inf",
    "-" * 50,
    "2^{2^{100}}",
    "10^{10^{10}}",
    "99999!",
    "2**2**2**2**2**2",
    "x" * (MAX_ANSWER_CHARS + 1),
]


@pytest.mark.parametrize("text", GARBAGE, ids=[repr(g)[:30] for g in GARBAGE])
def test_garbage_never_raises(text: str) -> None:
    start = time.monotonic()
    assert grade(text, "5", timeout_s=0.5) is False
    assert grade("5", text, timeout_s=0.5) in (True, False)
    assert grade(text, "5", ABCD, timeout_s=0.5) is False
    extract_answer(text)
    format_ok(text)
    assert time.monotonic() - start < 3 * (0.5 + MARGIN_S)


def test_exponent_towers_are_refused_fast() -> None:
    start = time.monotonic()
    assert grade("2^{2^{100}}", "1") is False
    assert grade("1", "2^{2^{100}}") is False
    assert grade("2**2**100", "4") is False
    assert time.monotonic() - start < 0.5


def test_grade_huge_prediction_is_false_and_fast() -> None:
    start = time.monotonic()
    assert grade("5" * 1_000_000, "5") is False
    assert time.monotonic() - start < 0.5


# A symbolic comparison that sympy cannot finish in seconds, yet passes the cheap refusal rules.
SLOW_PRED, SLOW_TRUTH = "(x+y+z+2)^{40}", "(x+y+z+1)^{40}"


def test_timeout_main_thread_and_alarm_restored() -> None:
    marker = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    assert grade(SLOW_PRED, SLOW_TRUTH, timeout_s=0.5) is False
    assert time.monotonic() - start < 0.5 + MARGIN_S
    assert signal.getsignal(signal.SIGALRM) is marker
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert grade("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}") is True  # still works afterwards


def _in_thread(func, *args, **kwargs):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func, *args, **kwargs).result()


def test_timeout_worker_thread() -> None:
    assert _in_thread(grade, "2\\pi", "2*pi") is True  # warm a worker (its start-up is not timed)

    def timed() -> tuple[bool, float]:
        start = time.monotonic()
        return grade(SLOW_PRED, SLOW_TRUTH, timeout_s=0.5), time.monotonic() - start

    result, elapsed = _in_thread(timed)
    assert result is False
    assert elapsed < 0.5 + MARGIN_S
    assert _in_thread(grade, "(x+1)^2", "x^2+2x+1") is True  # a fresh worker replaces the killed one


def test_outer_alarm_is_left_alone() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert grade("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}") is True  # runs in a worker, not under our alarm
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 30.0
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


THREAD_CASES = [
    *[c for c in GRADE_CASES if c[0] is not None and not isinstance(c[0], list)][::3],
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", None, {}, True),
    ("(x+1)^2", "x^2+2x+1", None, {}, True),
    ("(x-1)^2", "x^2+2x+1", None, {}, False),
    ("\\frac{1}{\\sqrt{2}}", "B", SURDS, {}, True),
]


def test_grade_is_thread_safe() -> None:
    def check(case) -> bool:
        prediction, truth, choices, kwargs, expected = case
        return grade(prediction, truth, choices, **kwargs) is expected

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(check, THREAD_CASES * 2))
    assert all(results), [c for c, ok in zip(THREAD_CASES * 2, results, strict=True) if not ok]
    assert threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------------------------------------- rewards

GOOD = "<think>2 plus 3 is 5</think><answer>5</answer>"
WRONG = "<think>2 plus 3 is 6</think><answer>6</answer>"
TWO_ANSWERS = "<think>hmm</think><answer>5</answer><answer>6</answer>"
NO_FORMAT = "The answer is \\boxed{5}"


def test_rewards_plain_strings() -> None:
    completions = [GOOD, WRONG, TWO_ANSWERS, NO_FORMAT]
    assert accuracy_reward(completions, answer=["5"] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert format_reward(completions) == [1.0, 1.0, 0.0, 0.0]


def test_rewards_conversational_and_trl_kwargs() -> None:
    completions = [
        [{"role": "assistant", "content": GOOD}],
        [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}],
        [{"role": "assistant", "content": "<think>it is the third</think><answer>C</answer>"}],
        [{"role": "assistant", "content": WRONG}],
    ]
    rewards = accuracy_reward(
        prompts=[[{"role": "user", "content": "q"}]] * 4,
        completions=completions,
        completion_ids=[[1, 2]] * 4,
        answer=["5", "5", "5", "5"],
        choices=[None, None, ABCD, None],
        trainer_state=object(),
        log_extra=lambda *a, **k: None,
        log_metric=lambda *a, **k: None,
    )
    assert rewards == [1.0, 1.0, 1.0, 0.0]
    assert all(isinstance(r, float) for r in rewards)
    assert format_reward(completions=completions, prompts=None) == [1.0, 1.0, 1.0, 1.0]


def test_accuracy_reward_columns() -> None:
    completions = ["<think>r</think><answer>1.23</answer>", "<think>r</think><answer>B</answer>"]
    rewards = accuracy_reward(
        completions,
        answer=["1.2", "No"],
        choices=[None, '["Yes", "No"]'],  # a JSON-encoded column is accepted
        answer_type=["float", "text"],
        precision=[1.0, None],
    )
    assert rewards == [1.0, 1.0]
    assert accuracy_reward([], answer=[]) == []
    assert accuracy_reward([GOOD, GOOD], answer="5") == [1.0, 1.0]  # a scalar broadcasts
    assert accuracy_reward([GOOD, None, 7], answer=["5", "5", "5"]) == [1.0, 0.0, 0.0]


def test_grade_response() -> None:
    assert grade_response(GOOD, "5") is True
    assert grade_response(TWO_ANSWERS, "6") is False
    assert grade_response(NO_FORMAT, "5") is False
    assert grade_response(NO_FORMAT, "5", require_format=False) is True
