"""Arithmetic drills for base pretraining: the small sums, differences and products the traces need.

The instruct VLM the paper starts from can add and multiply; the tiny base cannot. Measured on the
default run's held-out traces (session 7), only 21% of the equations the base writes when it
reasons (``6 × 2 = 1``, ``7 + 6 = 11``) are right, so a chain fails even where it read the image
correctly. A drill shows a few expressions in the notation of the offline teacher's chains (``×``,
negative clock hours, running sums, ``2 × (w + h) = 2 × s = p``) and its target restates each with
its value, one equation per sentence. Operands cover the ranges the synthetic tasks produce (table
cells 0-9, bars up to 10, rectangle sides up to 8, clock hours 1-12 plus or minus up to 11).

Pure functions: :func:`drill` makes one (prompt, completion) pair from a ``random.Random``;
:func:`equations` and :func:`equation_accuracy` find and check the equations in any text.
"""

from __future__ import annotations

import itertools
import random
import re

DRILL_INSTRUCTION = "Work out each of these."
EXPRESSIONS_PER_DRILL = (3, 6)  # inclusive range of expressions in one drill

# kind -> weight: the share of each form among a drill's expressions
FORMS: dict[str, float] = {
    "add": 0.30,  # a + b: sums of two values, clock hours forward
    "sub": 0.22,  # a - b, negative results included (clock hours backward)
    "mul": 0.18,  # w × h
    "running": 0.15,  # a + b = s, s + c = t, ...: a table's or a chart's total
    "perimeter": 0.08,  # 2 × (w + h) = 2 × s = p
    "wrap": 0.07,  # -5 + 12 = 7 / 18 - 12 = 6: back onto the dial
}


def _expression(form: str, rng: random.Random) -> tuple[str, str]:
    """(expression as the prompt shows it, the equation chain as the target writes it)."""
    if form == "add":
        a = rng.randint(0, 12) if rng.random() < 0.6 else rng.randint(0, 40)
        b = rng.randint(0, 12)
        return f"{a} + {b}", f"{a} + {b} = {a + b}"
    if form == "sub":
        a, b = rng.randint(0, 24), rng.randint(0, 12)
        return f"{a} - {b}", f"{a} - {b} = {a - b}"
    if form == "mul":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return f"{a} × {b}", f"{a} × {b} = {a * b}"
    if form == "running":
        terms = [rng.randint(0, 10) for _ in range(rng.randint(3, 5))]
        steps, total = [], terms[0]
        for term in terms[1:]:
            steps.append(f"{total} + {term} = {total + term}")
            total += term
        return " + ".join(str(t) for t in terms), ", ".join(steps)
    if form == "perimeter":
        w, h = rng.randint(1, 8), rng.randint(1, 8)
        return f"2 × ({w} + {h})", f"2 × ({w} + {h}) = 2 × {w + h} = {2 * (w + h)}"
    if form == "wrap":
        if rng.random() < 0.5:
            a = rng.randint(-11, 0)
            return f"{a} + 12", f"{a} + 12 = {a + 12}"
        a = rng.randint(12, 23)
        return f"{a} - 12", f"{a} - 12 = {a - 12}"
    raise ValueError(f"unknown arithmetic form {form!r}")


def drill(rng: random.Random) -> tuple[str, str]:
    """One drill: (prompt listing the expressions, completion with one equation per sentence)."""
    n = rng.randint(*EXPRESSIONS_PER_DRILL)
    names, weights = list(FORMS), list(FORMS.values())
    shown, written = [], []
    for form in rng.choices(names, weights=weights, k=n):
        expression, equation = _expression(form, rng)
        shown.append(expression)
        written.append(equation)
    return f"{DRILL_INSTRUCTION}\n" + "\n".join(shown), ". ".join(written) + "."


def drills(n: int, seed: int, split: str = "train") -> list[tuple[str, str]]:
    """``n`` drills, deterministic in ``seed`` and ``split`` (each split its own stream; single
    equations such as ``3 × 4`` recur across splits, as there are few of them)."""
    rng = random.Random(f"arithmetic-drills:{split}:{seed}")
    return [drill(rng) for _ in range(n)]


_TERM = r"(?:-?\d+|\(\s*-?\d+(?:\s*[×+\-]\s*-?\d+)*\s*\))"
_EXPRESSION = rf"{_TERM}(?:\s*[×+\-]\s*{_TERM})*"
# two or more arithmetic expressions joined by "=", not inside a longer number or word
_CHAIN = re.compile(rf"(?<![\w)]){_EXPRESSION}(?:\s*=\s*{_EXPRESSION})+(?![\w(])")


def equations(text: str) -> list[tuple[str, str]]:
    """Every ``left = right`` in ``text`` whose two sides are plain arithmetic, as (left, right).

    In a chain ``2 × (2 + 6) = 2 × 8 = 16`` each link is its own equation."""
    found = []
    for match in _CHAIN.finditer(text):
        sides = [side.strip() for side in match.group(0).split("=")]
        found += [(left, right) for left, right in itertools.pairwise(sides) if not _is_number(left)]
    return found


def _is_number(side: str) -> bool:
    return re.fullmatch(r"-?\d+", side) is not None


def evaluate(side: str) -> int:
    """The value of one side of an equation (``×`` is multiplication)."""
    expression = side.replace("×", "*")
    if not re.fullmatch(r"[\d\s+\-*()]+", expression):
        raise ValueError(f"not an arithmetic expression: {side!r}")
    expression = re.sub(r"\d+", lambda number: str(int(number.group())), expression)  # "05" -> "5"
    return int(eval(expression, {"__builtins__": {}}, {}))  # digits, + - * and parentheses only


def equation_accuracy(texts: list[str]) -> tuple[int, int]:
    """(correct equations, equations) over ``texts``."""
    correct = total = 0
    for text in texts:
        for left, right in equations(text):
            total += 1
            correct += evaluate(left) == evaluate(right)
    return correct, total
