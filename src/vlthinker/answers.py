r"""Answer judging: extraction, format checking, grading, and the GRPO reward functions.

One module owns "is this answer right?": the distillation filters, the GRPO rewards and the evaluation
all call it, so a rule changed here changes everywhere at once.

Output format (paper): ``<think>reasoning</think><answer>final answer</answer>``.

Extraction (:func:`extract_answer`), first rule that applies:
  1. the content of the LAST ``<answer>...</answer>`` block (a ``\boxed{...}`` inside it is unwrapped);
     an ``<answer>`` block that is present but empty yields ``None`` (no fallback to other text);
  2. else the last balanced ``\boxed{...}`` / ``\fbox{...}`` (nested braces allowed);
  3. else the last line holding "Answer: X", "The answer is X" or "Final answer: X".
  The result is stripped of whitespace, surrounding ``$...$`` / ``\(...\)`` / ``\[...\]`` / ``**...**``,
  a leading "The answer is"/"Answer:" and one trailing period; ``None`` when nothing is found.

Format (:func:`format_ok`), strict on purpose (a lenient check taught a model to emit several answer
tags): exactly one ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` (lowercase), in that order,
non-empty reasoning and non-empty answer, nothing but whitespace outside the two blocks.

Grading (:func:`grade`), prediction = an extracted answer (a whole response is tolerated: if it holds
``<answer>`` or ``\boxed`` it is extracted first). ``None``/empty, non-text, or longer than
``MAX_ANSWER_CHARS`` is wrong. Garbage never raises: it is graded ``False``.

* Multiple choice (``choices`` given): the ground truth is resolved to an option index (exact option
  text first, then a letter "B", "(B)", "B.", "Option B"); the prediction likewise (option text, then a
  letter in range, case-insensitive: "b", "(B) 5", "B. 5", "Option B"; then the single option it is
  equivalent to under the rules below, e.g. "0.5" for an option "1/2" -- ambiguous matches count as no
  match). Right iff both indices exist and are equal. Unlike MathVista we never snap an unmatched
  prediction to the most similar option (that would reward garbage). If the ground truth is neither an
  option nor a letter, the prediction (a letter mapped to its option text) is graded as free form.
* Yes/no: when the ground truth is yes/no (or true/false), the prediction must be one of those with
  the same polarity ("Yes", "yes.", "True", "Yes, because ..." all mean yes; "yes or no" means nothing).
* Numbers (both sides parse as numbers): integers ("5", "5.0", "+5", "1,000"), decimals, scientific
  ("1e3"), fractions ("3/4", "\frac{3}{4}"), number words ("three", zero..twenty and the tens),
  currency signs ignored, units and degrees ("5 cm", "30°", "30^\circ", "30 degrees").
  - Units: a unit on one side only is ignored ("5 cm" == "5"); units on both sides must agree after
    normalisation (aliases and plurals: "5 centimeters" == "5 cm", "5 cm" != "5 m"). No conversions.
  - Percentages: when exactly ONE side carries "%", that side may be read as written or divided by 100:
    "25%" == "25" == "0.25" whichever side is the ground truth (25% is 0.25, and a model that writes 25
    for "25%" gave the number asked for). With "%" on both sides, or on neither, numbers compare as
    written: "25" != "0.25", "25%" != "0.25%".
  - ``answer_type="integer"``: exact equality ("5.0" == "5", "5.4" != "5"; MathVista truncates with
    int(float(x)), we do not).
  - ``precision`` given (MathVista ``float`` items): both sides rounded half-up to that many decimals
    must be equal ("1.25" and "1.2" differ at precision 2, agree at precision 1).
  - otherwise: exact for integers; relative tolerance 1e-6 for non-integers; a decimal with >= 2
    decimals also matches a non-decimal exact form (fraction, surd, pi) that it correctly rounds
    ("0.33" == "1/3", "3.14" == "\pi", "0.3" != "1/3").
* Symbolic / LaTeX (math-verify 0.9): "\sqrt{2}/2" == "\frac{\sqrt2}{2}", "2\pi" == "2*pi",
  "x=5" == "5", intervals, sets, "(x+1)^2" == "x^2+2x+1". Plain-text math ("2*pi", "sqrt(2)", "oo") is
  rewritten to LaTeX first. A numeric ground truth and a symbolic prediction (or the reverse) are
  compared through the expression's numeric value under the number rules above.
* Free text (neither side looks like math): case, unicode width, punctuation, whitespace and the
  articles a/an/the are ignored; a few spellings are merged ("grey" == "gray", "colour" == "color").

Timeouts and threads. Symbolic checks (sympy behind math-verify) share one wall-clock budget of
``timeout_s`` per :func:`grade` call. math-verify's own timeout uses ``signal.alarm`` (whole seconds,
main thread only, raises ``ValueError`` in other threads), so we call it with its timeouts off and bound
the work ourselves:
  - in the main thread (with no interval timer already running): in process, under
    ``signal.setitimer(ITIMER_REAL)`` with a float deadline; the timer re-fires every 50 ms until
    disarmed so that a swallowed interrupt cannot run on forever; the previous handler is restored;
  - in any other thread (or if a SIGALRM timer is already in use, e.g. pytest-timeout): in a small pool
    of worker subprocesses (``python -c``, JSON lines over pipes, at most min(4, cpus)); a worker that
    misses the deadline is killed and replaced, so a runaway sympy computation costs nothing after the
    deadline. Starting a worker (~0.6 s) and waiting for a free one do not count against ``timeout_s``.
    Workers cap their own address space and also run the alarm timer, exit on EOF of stdin.
  - before any of that, inputs that could blow up uninterruptibly in C (exponent towers such as
    ``2^{2^{100}}``, huge exponents or factorials, very long expressions) are refused outright.
A timed-out or refused symbolic check counts as "not equal".
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "MAX_ANSWER_CHARS",
    "accuracy_reward",
    "extract_answer",
    "format_ok",
    "format_reward",
    "grade",
    "grade_response",
]

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1000
"""grade(): a prediction or ground truth longer than this is graded False."""

_MAX_SYMBOLIC_CHARS = 300
_MAX_SYMBOLIC_NESTING = 10
_REL_TOL = 1e-6
_ABS_TOL = 1e-12
_ALARM_REFIRE_S = 0.05
_WORKER_STARTUP_S = 60.0
_WORKER_EXTRA_MEMORY = 2 << 30  # bytes of address space a worker may add after importing math-verify

# --------------------------------------------------------------------------------------------------
# Extraction and format
# --------------------------------------------------------------------------------------------------

_ANSWER_BLOCK_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_LINE_RE = re.compile(
    r"(?:the\s+)?(?:final\s+|correct\s+)?answer\b\s*(?:is\b\s*[:：]?|[:：])", re.IGNORECASE
)
_ANSWER_PREFIX_RE = re.compile(
    r"^(?:\*\*)?(?:the\s+)?(?:final\s+|correct\s+)?answer\b\s*(?:is\b\s*[:：]?|[:：])(?:\*\*)?\s*",
    re.IGNORECASE,
)
_STRAY_BOLD_RE = re.compile(r"^\*\*\s*|\s*\*\*$")
_FORMAT_RE = re.compile(r"\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL)
_FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`"), ('"', '"'))
_MAX_BOXED_TRIES = 32


def _balanced_group(text: str, open_index: int) -> tuple[str, int] | None:
    """Content of the brace group whose ``{`` is at ``open_index``, and the index after its ``}``."""
    depth, i = 0, open_index
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # an escaped character (\{ and \} are literal braces) never opens or closes a group
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : i], i + 1
        i += 1
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}``; ``None`` when there is none."""
    starts = [m.end() - 1 for m in _BOXED_RE.finditer(text)]
    for open_index in reversed(starts[-_MAX_BOXED_TRIES:]):
        group = _balanced_group(text, open_index)
        if group is not None:
            return group[0]
    return None


def _unwrap_whole_boxed(text: str) -> str:
    match = _BOXED_RE.match(text)
    if match:
        group = _balanced_group(text, match.end() - 1)
        if group is not None and not text[group[1] :].strip(" .$"):
            return group[0]
    return text


def _clean(text: str) -> str:
    """Strip the decorations around an answer: whitespace, $...$, bold, 'Answer:', one final period."""
    text = text.strip()
    for _ in range(4):
        before = text
        text = _ANSWER_PREFIX_RE.sub("", text, count=1).strip()
        text = _STRAY_BOLD_RE.sub("", text).strip()
        text = _unwrap_whole_boxed(text).strip()
        for left, right in _WRAPPERS:
            if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : len(text) - len(right)].strip()
        if text.endswith((".", "。")) and not text.endswith(".."):
            text = text[:-1].rstrip()
        if text == before:
            break
    return text


def _answer_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        matches = list(_ANSWER_LINE_RE.finditer(line))
        if matches:
            rest = line[matches[-1].end() :]
            boxed = _last_boxed(rest)
            candidate = _clean(boxed if boxed is not None else rest)
            if candidate:
                return candidate
    return None


def extract_answer(text: str) -> str | None:
    """The final answer in a model response (see the module docstring for the rules), or ``None``."""
    if not isinstance(text, str) or not text:
        return None
    try:
        blocks = _ANSWER_BLOCK_RE.findall(text)
        if blocks:
            content = blocks[-1]
            boxed = _last_boxed(content)
            answer = _clean(boxed if boxed is not None else content)
            return answer or None
        boxed = _last_boxed(text)
        if boxed is not None:
            return _clean(boxed) or None
        return _answer_line(text)
    except Exception:  # pragma: no cover - defensive: extraction must never raise
        logger.debug("extract_answer failed", exc_info=True)
        return None


def format_ok(text: str) -> bool:
    """True iff ``text`` is exactly ``<think>reasoning</think><answer>answer</answer>`` (whitespace aside)."""
    if not isinstance(text, str):
        return False
    if any(text.count(tag) != 1 for tag in _FORMAT_TAGS):
        return False
    match = _FORMAT_RE.fullmatch(text)
    return bool(match and match["think"].strip() and match["answer"].strip())


# --------------------------------------------------------------------------------------------------
# Normalisation helpers
# --------------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


_TEXT_COMMAND_RE = re.compile(
    r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)
_SPACING_RE = re.compile(r"\\(?:left|right|displaystyle|[,;:! ])|~")
_DEGREE_RE = re.compile(
    r"\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°|º|\bdeg(?:rees?|s)?\b)", re.IGNORECASE
)
_ARTICLES = frozenset({"a", "an", "the"})
_SPELLINGS = {"grey": "gray", "colour": "color", "colours": "colors", "centre": "center"}
_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        _words(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen twenty"
        )
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})
_MATH_CHARS = set("0123456789\\+-*/^=<>()[]{}|_√π∞×÷·")
_MATH_WORDS = frozenset(
    _words(
        "pi sqrt sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp lim inf infty "
        "infinity oo frac dfrac tfrac cdot times div circ leq geq neq le ge ne in cup cap emptyset "
        "varnothing mathbb text mathrm left right degree degrees"
    )
)


def _unwrap_text_commands(text: str) -> str:
    for _ in range(3):
        new = _TEXT_COMMAND_RE.sub(r"\1", text)
        if new == text:
            break
        text = new
    return text


def _base_normalize(text: str) -> str:
    """NFKC, ASCII minus, no LaTeX spacing or \\text{} wrappers, \\dfrac -> \\frac, \\% -> %."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("−", "-").replace("–", "-")
    text = _SPACING_RE.sub(" ", text)
    text = _unwrap_text_commands(text)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    return text.replace("\\%", "%").replace("\\$", "$").strip()


def _norm_text(text: str, drop_articles: bool = True) -> str:
    text = _base_normalize(text).casefold()
    text = re.sub(r"[^\w\s]|_", " ", text)
    words = [_SPELLINGS.get(w, w) for w in text.split() if not (drop_articles and w in _ARTICLES)]
    return " ".join(words)


def _same_text(a: str, b: str) -> bool:
    """Free-text equality; articles are ignored unless nothing else is left ("A" vs "a" still compares)."""
    norm_a, norm_b = _norm_text(a), _norm_text(b)
    if not norm_a or not norm_b:
        norm_a, norm_b = _norm_text(a, drop_articles=False), _norm_text(b, drop_articles=False)
    return bool(norm_a) and norm_a == norm_b


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", _base_normalize(text)).rstrip(".")


def _looks_mathy(text: str) -> bool:
    return any(char in _MATH_CHARS for char in text)


def _prose_words(text: str) -> list[str]:
    """Alphabetic words of 3+ letters that are neither LaTeX commands nor math vocabulary."""
    stripped = re.sub(r"\\[A-Za-z]+", " ", _unwrap_text_commands(text))
    return [w for w in re.findall(r"[A-Za-z]{3,}", stripped) if w.lower() not in _MATH_WORDS]


def _yes_no(text: str) -> str | None:
    words = _norm_text(text).split()
    if not words:
        return None
    head = words[0]
    polarity = "yes" if head in _YES else "no" if head in _NO else None
    if polarity is None:
        return None
    if len(words) == 1:
        return polarity
    # "Yes, because ..." counts, but only with punctuation right after the word and no opposite word.
    if not re.match(r"^\W*\w+\s*[,.;:!]", unicodedata.normalize("NFKC", text).strip()):
        return None
    opposite = _NO if polarity == "yes" else _YES
    return None if any(word in opposite for word in words[1:]) else polarity


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------

_SIMPLE = r"[-+]?\d+(?:\.\d+)?"
_NUMBER_RE = re.compile(
    r"(?P<sign>[-+]?)\s*(?:"
    rf"\\frac\s*\{{\s*(?P<fn>{_SIMPLE})\s*\}}\s*\{{\s*(?P<fd>{_SIMPLE})\s*\}}"
    r"|\\frac\s*(?P<fn1>\d)(?P<fd1>\d)"
    rf"|(?P<n>{_SIMPLE})\s*/\s*(?P<d>{_SIMPLE})(?![\d.])"
    r"|(?P<dec>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE](?P<exp>[-+]?\d{1,3}))?"
    r"|(?P<word>[A-Za-z]+)"
    r")(?P<rest>.*)",
    re.DOTALL,
)
_UNIT_ALIASES = {
    "centimeter": "cm",
    "centimetre": "cm",
    "millimeter": "mm",
    "millimetre": "mm",
    "meter": "m",
    "metre": "m",
    "kilometer": "km",
    "kilometre": "km",
    "inch": "in",
    "inche": "in",
    "foot": "ft",
    "feet": "ft",
    "yard": "yd",
    "mile": "mi",
    "second": "s",
    "sec": "s",
    "minute": "min",
    "hour": "h",
    "hr": "h",
    "gram": "g",
    "kilogram": "kg",
    "liter": "l",
    "litre": "l",
    "deg": "deg",
    "degree": "deg",
    "radian": "rad",
    "dollar": "usd",
    "cent": "cent",
    "unit": "",
}
_SINGLE_LETTER_UNITS = frozenset("msghlvwj")
_NOT_UNITS = frozenset(
    _words(
        "pi sqrt sin cos tan log ln exp inf infty infinity oo frac cdot times or and to plus minus over "
        "divided by of is are"
    )
)


@dataclass(frozen=True)
class _Number:
    value: Fraction | float
    decimals: int | None  # digits after the point when written as a decimal; None for other forms
    percent: bool = False
    unit: str = ""


def _canon_unit(rest: str) -> str | None:
    """Canonical unit for the text after a number ('' for none); None when it is not a unit."""
    rest = rest.strip()
    if not rest:
        return ""
    if len(rest) > 40 or not re.fullmatch(r"[A-Za-zµμ][A-Za-zµμ0-9\s^/*·.{}]*", rest):
        return None
    tokens = re.findall(r"[A-Za-zµμ]+", rest)
    if len(tokens) > 3:
        return None
    canon = []
    for token in tokens:
        low = token.lower()
        if low in _NOT_UNITS or (len(low) == 1 and low not in _SINGLE_LETTER_UNITS):
            return None
        singular = low[:-1] if len(low) > 3 and low.endswith("s") and not low.endswith("ss") else low
        canon.append(_UNIT_ALIASES.get(singular, _UNIT_ALIASES.get(low, singular)))
    powers = "".join(re.findall(r"\d", rest))
    return "".join(canon) + powers


def _parse_number(text: str) -> _Number | None:
    """A plain number (with optional %, unit, degree sign, currency); None for anything else."""
    s = _base_normalize(text)
    if len(s) > 120:
        return None
    s = _DEGREE_RE.sub(" deg", s).strip()
    percent = False
    if s.endswith("%"):
        percent, s = True, s[:-1].rstrip()
    elif re.search(r"\s+percent$", s, re.IGNORECASE):
        percent, s = True, re.sub(r"\s+percent$", "", s, flags=re.IGNORECASE)
    s = re.sub(r"^([-+]?)\s*(?:\$|€|£|¥|usd\b)\s*", r"\1", s, flags=re.IGNORECASE)
    match = _NUMBER_RE.fullmatch(s)
    if match is None:
        return None
    unit = _canon_unit(match["rest"])
    if unit is None:
        return None
    negative = match["sign"] == "-"
    decimals: int | None = None
    if match["word"] is not None:
        word = match["word"].lower()
        if word not in _NUMBER_WORDS:
            return None
        value = Fraction(_NUMBER_WORDS[word])
        decimals = 0
    elif match["dec"] is not None:
        literal = match["dec"].replace(",", "")
        exponent = int(match["exp"] or 0)
        value = Fraction(literal) * Fraction(10) ** exponent
        fraction_digits = len(literal.partition(".")[2])
        decimals = max(0, fraction_digits - exponent)
    else:
        numerator = match["fn"] or match["fn1"] or match["n"]
        denominator = match["fd"] or match["fd1"] or match["d"]
        if Fraction(denominator) == 0:
            return None
        value = Fraction(numerator) / Fraction(denominator)
    if negative:
        value = -value
    return _Number(value, decimals, percent, unit)


def _round_half_up(value: Fraction, places: int) -> Fraction:
    scale = 10 ** max(0, min(places, 30))
    scaled = abs(value) * scale
    rounded = math.floor(scaled + Fraction(1, 2))
    return Fraction(rounded if value >= 0 else -rounded, scale)


def _as_fraction(value: Fraction | float) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(repr(value))


def _values_match(
    pred: Fraction | float,
    pred_decimals: int | None,
    gold: Fraction | float,
    gold_decimals: int | None,
    answer_type: str | None,
    precision: int | None,
) -> bool:
    if any(isinstance(v, float) and not math.isfinite(v) for v in (pred, gold)):
        return False
    if answer_type == "integer":
        return _as_fraction(pred) == _as_fraction(gold)
    if precision is not None:
        return _round_half_up(_as_fraction(pred), precision) == _round_half_up(_as_fraction(gold), precision)
    p, g = _as_fraction(pred), _as_fraction(gold)
    if p == g:
        return True
    # A decimal (>= 2 places) against a non-decimal exact form (fraction, surd, pi) it correctly rounds.
    sides = ((p, pred_decimals, gold_decimals, g), (g, gold_decimals, pred_decimals, p))
    for decimal, places, other_places, exact in sides:
        if places is None or places < 2 or other_places is not None:
            continue
        if abs(decimal - exact) <= Fraction(1, 2 * 10**places) * (1 + Fraction(1, 10**9)):
            return True
    if p.denominator == 1 and g.denominator == 1:
        return False
    return math.isclose(float(p), float(g), rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def _numbers_match(pred: _Number, gold: _Number, answer_type: str | None, precision: int | None) -> bool:
    if pred.unit and gold.unit and pred.unit != gold.unit:
        return False

    def readings(number: _Number, other: _Number) -> list[tuple[Fraction | float, int | None]]:
        out: list[tuple[Fraction | float, int | None]] = [(number.value, number.decimals)]
        if number.percent and not other.percent:
            value = number.value / 100
            out.append((value, None if number.decimals is None else number.decimals + 2))
        return out

    return any(
        _values_match(pv, pd, gv, gd, answer_type, precision)
        for pv, pd in readings(pred, gold)
        for gv, gd in readings(gold, pred)
    )


# --------------------------------------------------------------------------------------------------
# Symbolic checks (math-verify), bounded in time
# --------------------------------------------------------------------------------------------------

_mv_lock = threading.Lock()
_mv_module: Any = None


class _QuietMathVerify(logging.Filter):
    """We run math-verify with its signal timeouts off on purpose: drop its warning about that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


def _math_verify() -> Any:
    global _mv_module
    if _mv_module is None:
        with _mv_lock:
            if _mv_module is None:
                import math_verify

                for name in ("math_verify.parser", "math_verify.grader"):
                    logging.getLogger(name).addFilter(_QuietMathVerify())
                _mv_module = math_verify
    return _mv_module


_TOWER_RES = (
    re.compile(r"\^\s*\{[^{}]*\^"),  # 2^{3^{4}}
    re.compile(r"\^\s*\([^()]*\^"),  # 2^(3^(4))
    re.compile(r"\^\s*[\w.]+\s*\^"),  # 2^3^4
    re.compile(r"\*\*[^*]*\*\*"),  # 2**3**4
    re.compile(r"(?:\^|\*\*)\s*[{(]?\s*[-+]?\d{4,}"),  # x^{10000}
    re.compile(r"\d{3,}\s*!"),  # 1000!
    re.compile(r"\d{60,}"),  # very long literals
    re.compile(r"\\(?:binom|choose)\s*\{?\s*\d{4,}"),
)


def _symbolic_safe(text: str) -> bool:
    """Cheap refusal of inputs that could blow up inside sympy (uninterruptible big-int work, memory)."""
    if len(text) > _MAX_SYMBOLIC_CHARS or text.count("{") != text.count("}"):
        return False
    if text.count("\\frac") > 20 or text.count("^") > 20:
        return False
    depth = deepest = 0
    for char in text:  # the LaTeX parser slows down ~linearly per nesting level: refuse deep nesting
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    if deepest > _MAX_SYMBOLIC_NESTING:
        return False
    return not any(pattern.search(text) for pattern in _TOWER_RES)


def _sqrt_to_latex(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text.startswith("sqrt(", i) and (i == 0 or text[i - 1] != "\\"):
            depth, j = 0, i + 4
            while j < len(text):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            if j < len(text):
                out.append("\\sqrt{" + _sqrt_to_latex(text[i + 5 : j]) + "}")
                i = j + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _to_latex(text: str) -> str:
    """Plain-text math to LaTeX that math-verify parses: 2*pi -> 2\\cdot\\pi, sqrt(2) -> \\sqrt{2}."""
    s = _base_normalize(text)
    s = _DEGREE_RE.sub("^{\\\\circ}", s) if "\\circ" not in s else s
    s = s.replace("**", "^").replace("×", "\\times ").replace("÷", "\\div ").replace("·", "\\cdot ")
    s = re.sub(r"(?<!\\)\*", "\\\\cdot ", s)
    s = re.sub(r"√\s*\(([^()]*)\)", r"\\sqrt{\1}", s)
    s = re.sub(r"√\s*([\w.]+)", r"\\sqrt{\1}", s)
    s = s.replace("π", "\\pi ").replace("∞", "\\infty ")
    s = re.sub(r"(?<![\\A-Za-z])pi(?![A-Za-z])", "\\\\pi ", s)
    s = re.sub(r"(?<![\\A-Za-z])(?:oo|infinity|inf)(?![A-Za-z])", "\\\\infty ", s)
    return _sqrt_to_latex(s)


def _mv_parse(text: str) -> list[Any]:
    mv = _math_verify()
    return mv.parse(f"${_to_latex(text)}$", parsing_timeout=None)


def _compute(op: str, gold: str, pred: str) -> Any:
    """The symbolic work itself, unbounded: ``eq`` -> bool, ``num`` -> float | None (value of ``gold``)."""
    import sympy

    mv = _math_verify()
    if op == "eq":
        gold_parsed, pred_parsed = _mv_parse(gold), _mv_parse(pred)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(mv.verify(gold_parsed, pred_parsed, timeout_seconds=None))
    if op == "num":
        parsed = [x for x in _mv_parse(gold) if isinstance(x, sympy.Basic)]
        if not parsed or not isinstance(parsed[0], sympy.Expr) or not parsed[0].is_number:
            return None
        value = complex(parsed[0].evalf(30))
        if abs(value.imag) > 1e-12 * max(1.0, abs(value.real)) or not math.isfinite(value.real):
            return None
        return value.real
    raise ValueError(f"unknown op {op!r}")


class _SymbolicTimeout(BaseException):
    """Raised from our SIGALRM handler; a BaseException so that sympy's ``except Exception`` lets it by."""


def _alarm_usable() -> bool:
    if os.name != "posix" or not hasattr(signal, "setitimer"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
            return False  # someone else's timer is running (pytest-timeout, the caller's own alarm)
        return signal.getsignal(signal.SIGALRM) is not None
    except (ValueError, OSError):
        return False


def _call_with_alarm(func: Callable[[], Any], timeout_s: float) -> tuple[bool, Any]:
    """(finished, result) of ``func()`` run under a SIGALRM deadline; main thread only."""
    armed = [True]

    def on_alarm(signum: int, frame: Any) -> None:
        if armed[0]:
            raise _SymbolicTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 1e-3), _ALARM_REFIRE_S)
            return True, func()
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _SymbolicTimeout:
        return False, None
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Worker:
    """One ``python -c`` subprocess answering JSON-line requests with :func:`_compute`."""

    def __init__(self) -> None:
        code = (
            "import importlib.util as u, sys\n"
            f"spec = u.spec_from_file_location('_vlthinker_answers_worker', {os.path.abspath(__file__)!r})\n"
            "module = u.module_from_spec(spec)\n"
            "sys.modules[spec.name] = module\n"
            "spec.loader.exec_module(module)\n"
            "module._worker_main()\n"
        )
        self._buffer = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        if self._read_line(time.monotonic() + _WORKER_STARTUP_S) != b"ready":
            self.kill()
            raise RuntimeError("answer-grading worker did not start")

    def _read_line(self, deadline: float) -> bytes | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def call(self, request: dict[str, Any], timeout_s: float) -> tuple[bool, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self.kill()
            return False, None
        line = self._read_line(time.monotonic() + timeout_s)
        if line is None:
            self.kill()
            return False, None
        try:
            return True, json.loads(line)["r"]
        except (ValueError, KeyError, TypeError):
            self.kill()
            return False, None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=1)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class _WorkerPool:
    """At most ``size`` workers; a worker that misses a deadline is killed, a fresh one replaces it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._warned = False
        self._reset()

    def _reset(self) -> None:
        """Fresh state; also run in a forked child, whose copies of the parent's workers are not its own."""
        self._slots = threading.BoundedSemaphore(self._size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def call(self, request: dict[str, Any], timeout_s: float) -> tuple[bool, Any]:
        with self._slots:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                try:
                    worker = _Worker()
                except (OSError, RuntimeError):
                    if not self._warned:
                        self._warned = True
                        logger.warning("cannot start the answer-grading worker: symbolic checks are skipped")
                    return False, None
            finished, result = worker.call(request, timeout_s)
            if finished and worker.alive:
                with self._lock:
                    self._idle.append(worker)
            else:
                worker.kill()
            return finished, result

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


_POOL = _WorkerPool(max(1, min(4, os.cpu_count() or 1)))
atexit.register(_POOL.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL._reset)


def _worker_main() -> None:  # pragma: no cover - runs in the worker subprocess
    """Worker loop: one JSON request per stdin line, one JSON reply per stdout line."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the protocol
    _compute("eq", "x^2+1", "1+x^2")  # import and warm up sympy, the LaTeX parser and the grader
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = current + _WORKER_EXTRA_MEMORY
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass
    protocol.write("ready\n")
    protocol.flush()
    for line in sys.stdin:
        result: Any = None
        try:
            request = json.loads(line)
            timeout_s = float(request["t"]) + 0.5
            _, result = _call_with_alarm(lambda r=request: _compute(r["op"], r["a"], r["b"]), timeout_s)
        except (Exception, _SymbolicTimeout):
            result = None
        protocol.write(json.dumps({"r": result}) + "\n")
        protocol.flush()


class _Budget:
    """Wall-clock budget shared by the symbolic checks of one grade() call."""

    def __init__(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + max(0.0, float(timeout_s))

    def _run(self, op: str, a: str, b: str) -> Any:
        if not (_symbolic_safe(a) and _symbolic_safe(b)):
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            if _alarm_usable():
                finished, result = _call_with_alarm(lambda: _compute(op, a, b), remaining)
            elif os.name == "posix":
                finished, result = _POOL.call({"op": op, "a": a, "b": b, "t": remaining}, remaining)
            else:  # pragma: no cover - no SIGALRM, no select() on pipes
                return None
        except Exception:  # a failed symbolic check is "unknown", the other rules still apply
            logger.debug("symbolic check failed", exc_info=True)
            return None
        return result if finished else None

    def equal(self, gold: str, pred: str) -> bool:
        return self._run("eq", gold, pred) is True

    def value(self, text: str) -> float | None:
        result = self._run("num", text, "")
        return float(result) if isinstance(result, int | float) and not isinstance(result, bool) else None


# --------------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------------

_LETTER_PREFIX_RE = re.compile(r"^(?:option|choice|answer)\b\s*[:\-]?\s*", re.IGNORECASE)
_LETTER_RES = (
    re.compile(r"^\(\s*([A-Za-z])\s*\)\s*(.*)$", re.DOTALL),
    re.compile(r"^\[\s*([A-Za-z])\s*\]\s*(.*)$", re.DOTALL),
    re.compile(r"^([A-Za-z])(?:$|[.):]\s*(.*)$)", re.DOTALL),
)
_CHOICE_LABEL_RE = re.compile(r"^\(?([A-Z])[.)]\s+")


def _to_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Fraction):
        return str(value)
    return None


def _prepare(text: str) -> str:
    if "<answer>" in text.lower() or "\\boxed" in text or "\\fbox" in text:
        extracted = extract_answer(text)
        text = extracted if extracted is not None else ""
    return _clean(text)


def _letter_index(text: str, n_choices: int) -> int | None:
    s = _LETTER_PREFIX_RE.sub("", _base_normalize(text).strip(" *"))
    for pattern in _LETTER_RES:
        match = pattern.match(s)
        if match:
            index = ord(match.group(1).upper()) - ord("A")
            return index if 0 <= index < n_choices else None
    return None


def _strip_choice_labels(choices: list[str]) -> list[str]:
    """['A. red', 'B. blue'] -> ['red', 'blue'] when every option carries its own sequential label."""
    labels = [_CHOICE_LABEL_RE.match(c.strip()) for c in choices]
    if all(m and m.group(1) == chr(ord("A") + i) for i, m in enumerate(labels)):
        return [c.strip()[m.end() :] for c, m in zip(choices, labels, strict=True) if m]
    return choices


def _text_index(text: str, choices: list[str]) -> int | None:
    """The one option whose text is ``text`` (verbatim, then without spaces, then as free text)."""
    for normalise in (str.strip, _compact):
        key = normalise(text)
        hits = [i for i, c in enumerate(choices) if key and normalise(c) == key]
        if len(hits) == 1:
            return hits[0]
    if not _looks_mathy(text):  # free-text folding would turn "-5" into "5": words only
        hits = [i for i, c in enumerate(choices) if not _looks_mathy(c) and _same_text(text, c)]
        if len(hits) == 1:
            return hits[0]
    return None


def _list_items(text: str) -> list[str]:
    s = text.strip()
    if len(s) >= 2 and s[0] in "[(" and s[-1] in "])":
        s = s[1:-1]
    items, depth, current = [], 0, []
    for char in s:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return items


def _equivalent(
    pred: str, gold: str, answer_type: str | None, precision: int | None, budget: _Budget
) -> bool:
    """Free-form equivalence of two cleaned answers (no multiple-choice logic)."""
    if not pred or not gold:
        return False
    if answer_type == "list":
        pred_items, gold_items = _list_items(pred), _list_items(gold)
        return len(pred_items) == len(gold_items) and all(
            _equivalent(p, g, None, precision, budget) for p, g in zip(pred_items, gold_items, strict=True)
        )
    polarity = _yes_no(gold)
    if polarity is not None:
        return _yes_no(pred) == polarity
    pred_number, gold_number = _parse_number(pred), _parse_number(gold)
    if pred_number is not None and gold_number is not None:
        return _numbers_match(pred_number, gold_number, answer_type, precision)
    pred_math, gold_math = _looks_mathy(pred), _looks_mathy(gold)
    if not pred_math and not gold_math:
        return _same_text(pred, gold)
    if _compact(pred) == _compact(gold):
        return True
    if _prose_words(pred) or _prose_words(gold):
        return False
    if gold_number is not None:  # numeric truth, symbolic prediction: compare values
        value = budget.value(pred)
        if value is not None:
            return _numbers_match(_Number(value, None), gold_number, answer_type, precision)
    elif pred_number is not None and answer_type != "integer":  # decimal prediction, symbolic truth
        value = budget.value(gold)
        if value is not None and _numbers_match(pred_number, _Number(value, None), answer_type, precision):
            return True
    return budget.equal(gold, pred)


def _grade_choices(
    pred: str, gold: str, choices: list[str], answer_type: str | None, precision: int | None, budget: _Budget
) -> bool:
    choices = _strip_choice_labels(choices)
    gold_index = _text_index(gold, choices)
    if gold_index is None:
        gold_index = _letter_index(gold, len(choices))
    pred_index = _text_index(pred, choices)
    if pred_index is None:
        pred_index = _letter_index(pred, len(choices))
    if gold_index is None:
        # The truth is not one of the options: grade free form (a predicted letter stands for its option).
        candidate = choices[pred_index] if pred_index is not None else pred
        return _equivalent(_clean(candidate), gold, answer_type, precision, budget)
    if pred_index is None:
        hits = [i for i, c in enumerate(choices) if _equivalent(pred, _clean(c), None, None, budget)]
        pred_index = hits[0] if len(hits) == 1 else None
    return pred_index is not None and pred_index == gold_index


def grade(
    prediction: str | None,
    ground_truth: str,
    choices: list[str] | None = None,
    *,
    answer_type: str | None = None,
    precision: int | None = None,
    timeout_s: float = 2.0,
) -> bool:
    """Is ``prediction`` (an extracted answer) equivalent to ``ground_truth``? Never raises.

    ``choices``: option texts in order (option A first) for multiple-choice items.
    ``answer_type``: MathVista's ``integer`` / ``float`` / ``text`` / ``list`` (optional).
    ``precision``: decimals both sides are rounded to before comparing numbers (MathVista floats).
    ``timeout_s``: wall-clock budget for all symbolic (sympy) checks of this call.
    """
    try:
        pred_text, gold_text = _to_text(prediction), _to_text(ground_truth)
        if pred_text is None or gold_text is None:
            return False
        if len(pred_text) > MAX_ANSWER_CHARS or len(gold_text) > MAX_ANSWER_CHARS:
            return False
        pred_text, gold_text = _prepare(pred_text), _clean(gold_text)
        if not pred_text or not gold_text:
            return False
        answer_type = answer_type.strip().lower() if isinstance(answer_type, str) and answer_type else None
        precision = _coerce_precision(precision)
        budget = _Budget(timeout_s)
        option_texts = _coerce_choices(choices)
        if option_texts:
            return _grade_choices(pred_text, gold_text, option_texts, answer_type, precision, budget)
        return _equivalent(pred_text, gold_text, answer_type, precision, budget)
    except (Exception, _SymbolicTimeout):
        logger.debug("grade() failed; graded False", exc_info=True)
        return False


def grade_response(
    response: str,
    ground_truth: str,
    choices: list[str] | None = None,
    *,
    require_format: bool = True,
    answer_type: str | None = None,
    precision: int | None = None,
    timeout_s: float = 2.0,
) -> bool:
    """Grade a whole model response: (optionally) :func:`format_ok`, then :func:`extract_answer` + :func:`grade`."""
    if require_format and not format_ok(response):
        return False
    return grade(
        extract_answer(response),
        ground_truth,
        choices,
        answer_type=answer_type,
        precision=precision,
        timeout_s=timeout_s,
    )


# --------------------------------------------------------------------------------------------------
# GRPO reward functions (TRL calling convention)
# --------------------------------------------------------------------------------------------------


def _coerce_precision(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number >= 0 else None


def _coerce_choices(value: Any) -> list[str] | None:
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list | tuple) and value:
        texts = [_to_text(v) for v in value]
        if all(t is not None for t in texts):
            return [t for t in texts if t is not None]
    return None


def _completion_text(completion: Any) -> str:
    """A completion as text: a string, or TRL's conversational ``[{"role", "content"}, ...]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list | tuple):
        parts: list[str] = []
        for message in completion:
            if isinstance(message, str):
                parts.append(message)
                continue
            if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
                continue
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
        return "".join(parts)
    return ""


def _column_value(column: Any, index: int) -> Any:
    if column is None or isinstance(column, str | int | float):
        return column
    try:
        return column[index]
    except (IndexError, KeyError, TypeError):
        return None


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 per completion in the strict ``<think>...</think><answer>...</answer>`` format, else 0.0."""
    return [1.0 if format_ok(_completion_text(c)) else 0.0 for c in completions]


def accuracy_reward(completions: Sequence[Any], answer: Sequence[Any] | str, **kwargs: Any) -> list[float]:
    """1.0 per completion that is well formatted AND whose extracted answer grades correct, else 0.0.

    TRL passes dataset columns as keyword lists: ``answer`` (ground truth, required) and optionally
    ``choices`` (option lists), ``answer_type`` and ``precision``.
    """
    choices_column = kwargs.get("choices")
    type_column = kwargs.get("answer_type")
    precision_column = kwargs.get("precision")
    rewards = []
    for i, completion in enumerate(completions):
        text = _completion_text(completion)
        correct = format_ok(text) and grade(
            extract_answer(text),
            _column_value(answer, i),
            _coerce_choices(_column_value(choices_column, i)),
            answer_type=_column_value(type_column, i),
            precision=_column_value(precision_column, i),
        )
        rewards.append(1.0 if correct else 0.0)
    return rewards
