"""The offline teacher: a scripted R1-style reasoner for the synthetic task families.

It stands in for DeepSeek-R1-Distill (DESIGN §6) where no language model is available: it reads ONLY the
exact caption and the question (plus the `task` / `question_type` labels), never the ground truth, and
writes chains in the raw R1 form::

    <think>
    Okay, so the question asks ...

    First, ...

    So the answer is 7.
    </think>

    The answer is \\boxed{7}.

Each chain is drawn from its own `random.Random` seeded by (config seed, record id, sample index), so the
same inputs always give the same chains. Per chain, independently:

- with probability `error_prob` it makes one slip (misreads one object or value, slips by one or two in
  the arithmetic, or misremembers which way rows/columns are numbered) and ends with a wrong answer,
  written as naturally as a right one;
- with probability `reflection_prob` it reflects ("Wait, let me check again.", "But wait, ...",
  "But the question asks ..."), mid-chain or after a first answer; a correct chain may also make a slip
  and catch it ("Wait, that's not right.");
- it adds `verbosity_min..verbosity_max` filler sentences, and with probability `long_prob` it rambles
  past ~300 words, so length filters have something to drop.

`style` "focused" (the default) leaves out the opening overview of the whole scene (all four bars, every
shape, the whole table) where the rest of the chain names the values it needs (one bar, one or two
cells, the shapes of one colour, the number of shapes); "full" always writes it. A trace then asks a
model that answers from the image for only the reads the question needs.

It only knows the six synthetic families; real data needs an `openai` or `vllm` teacher. Everywhere it
is labelled `OFFLINE_TEACHER_NAME`.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlthinker.sources.synthetic import ANSWER_SPACES, COLORS, FAMILIES, N_CELLS, PLURAL, SHAPES

OFFLINE_TEACHER_NAME = "offline-scripted-teacher"
TASKS: tuple[str, ...] = tuple(FAMILIES)
REFLECTION_MARKERS: tuple[str, ...] = ("Wait,", "But wait,", "But the question")
MAX_SLIP_TRIES = 100
UNITS = 8  # side of the bar chart / geometry unit grid
MAX_BAR_VALUE = 7

Scene = dict[str, Any]
Query = dict[str, Any]


# full: every chain first restates the whole scene (all bars, every shape, the whole table), then reasons.
# focused: where the reasoning names the values it needs (one bar, two cells, the shapes of one colour,
# the number of shapes), that overview is left out, as a concise reasoner would.
TeacherStyle = Literal["full", "focused"]


class OfflineTeacherConfig(BaseModel):
    """Knobs of the offline teacher (all probabilities are per chain)."""

    model_config = ConfigDict(extra="forbid")

    reflection_prob: float = Field(default=0.35, ge=0.0, le=1.0)
    error_prob: float = Field(default=0.2, ge=0.0, le=1.0)
    verbosity_min: int = Field(default=0, ge=0, le=50)
    verbosity_max: int = Field(default=4, ge=0, le=50)
    long_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    style: TeacherStyle = "focused"
    seed: int = 0

    @model_validator(mode="after")
    def _verbosity_range(self) -> OfflineTeacherConfig:
        if self.verbosity_min > self.verbosity_max:
            raise ValueError(
                f"verbosity_min ({self.verbosity_min}) must not exceed verbosity_max ({self.verbosity_max})"
            )
        return self


# --------------------------------------------------------------------------------------------------
# Parsing captions and questions

_COLOR = "(" + "|".join(COLORS) + ")"
_SHAPE = "(" + "|".join(SHAPES) + ")"
_PLURAL = "(" + "|".join(PLURAL.values()) + ")"
_SINGULAR = {plural: shape for shape, plural in PLURAL.items()}
_REL = "(above|below|to the left of|to the right of)"
RELATION_TEXT = {"above": "above", "below": "below", "left": "to the left of", "right": "to the right of"}
_DIRECTION_OF = {text: key for key, text in RELATION_TEXT.items()}
DELTAS = {"above": (-1, 0), "below": (1, 0), "left": (0, -1), "right": (0, 1)}


def _caption_error(task: str, caption: str, why: str = "") -> ValueError:
    extra = f" ({why})" if why else ""
    return ValueError(f"offline teacher: cannot parse the {task!r} caption{extra}: {caption!r}")


def _split_parts(task: str, caption: str, head: str, sep: str) -> tuple[int, list[str]]:
    m = re.fullmatch(head + r"(.+)\.", caption.strip())
    if not m:
        raise _caption_error(task, caption)
    return int(m.group(1)), m.group(2).split(sep)


def _parse_grid(task: str, caption: str) -> Scene:
    head = rf"A {N_CELLS} by {N_CELLS} grid holds (\d+) shapes?: "
    n, parts = _split_parts(task, caption, head, "; ")
    objects = []
    for part in parts:
        m = re.fullmatch(rf"{_COLOR} {_SHAPE} at row (\d+) column (\d+)", part)
        if not m:
            raise _caption_error(task, caption, f"bad object {part!r}")
        row, col = int(m.group(3)), int(m.group(4))
        if not (1 <= row <= N_CELLS and 1 <= col <= N_CELLS):
            raise _caption_error(task, caption, f"cell outside the grid in {part!r}")
        objects.append({"color": m.group(1), "shape": m.group(2), "row": row, "col": col})
    if len(objects) != n:
        raise _caption_error(task, caption, f"says {n} shapes but lists {len(objects)}")
    if len({(o["row"], o["col"]) for o in objects}) != n:
        raise _caption_error(task, caption, "two shapes share a cell")
    return {"objects": objects}


def _parse_bars(task: str, caption: str) -> Scene:
    n, parts = _split_parts(task, caption, r"A bar chart with (\d+) bars from left to right: ", ", ")
    bars = []
    for part in parts:
        m = re.fullmatch(rf"{_COLOR} (\d+)", part)
        if not m:
            raise _caption_error(task, caption, f"bad bar {part!r}")
        bars.append({"color": m.group(1), "value": int(m.group(2))})
    if len(bars) != n or len({b["color"] for b in bars}) != n:
        raise _caption_error(task, caption, f"expected {n} bars of distinct colours")
    return {"bars": bars}


def _parse_rects(task: str, caption: str) -> Scene:
    head = rf"An {UNITS} by {UNITS} unit grid shows (\d+) rectangles?: "
    n, parts = _split_parts(task, caption, head, "; ")
    rects = []
    for part in parts:
        m = re.fullmatch(
            rf"{_COLOR} rectangle (\d+) wide and (\d+) tall with top left cell at row (\d+) column (\d+)",
            part,
        )
        if not m:
            raise _caption_error(task, caption, f"bad rectangle {part!r}")
        width, height, row, col = map(int, m.groups()[1:])
        rects.append({"color": m.group(1), "width": width, "height": height, "row": row, "col": col})
    if len(rects) != n:
        raise _caption_error(task, caption, f"says {n} rectangles but lists {len(rects)}")
    return {"rects": rects}


def _parse_table(task: str, caption: str) -> Scene:
    m = re.fullmatch(
        r"A table with 2 rows and 2 columns: row 1 holds (\d) and (\d); row 2 holds (\d) and (\d)\.",
        caption.strip(),
    )
    if not m:
        raise _caption_error(task, caption)
    a, b, c, d = map(int, m.groups())
    return {"cells": [[a, b], [c, d]]}


def _parse_clock(task: str, caption: str) -> Scene:
    m = re.fullmatch(
        r"An analog clock whose hour hand points at (\d+) and minute hand at 12\.", caption.strip()
    )
    if not m or not 1 <= int(m.group(1)) <= 12:
        raise _caption_error(task, caption)
    return {"hour": int(m.group(1))}


_SCENE_PARSERS: dict[str, Callable[[str, str], Scene]] = {
    "count": _parse_grid,
    "spatial": _parse_grid,
    "bar_chart": _parse_bars,
    "grid_geometry": _parse_rects,
    "table": _parse_table,
    "clock": _parse_clock,
}


def _check_task(task: str | None) -> str:
    if task not in _SCENE_PARSERS:
        raise ValueError(
            f"the offline teacher only knows the synthetic task families ({', '.join(TASKS)}); got task "
            f"{task!r}. Real data needs a real teacher: set the teacher backend to 'openai' or 'vllm'."
        )
    return task  # type: ignore[return-value]


def parse_scene(task: str, caption: str) -> Scene:
    """The scene a caption describes, as plain data (rows and columns counted from 1).

    count/spatial: {"objects": [{color, shape, row, col}, ...]} in reading order;
    bar_chart: {"bars": [{color, value}, ...]} left to right; grid_geometry: {"rects": [{color, width,
    height, row, col}, ...]}; table: {"cells": [[a, b], [c, d]]}; clock: {"hour": h}.
    """
    return _SCENE_PARSERS[_check_task(task)](task, caption)


_QUESTION_PATTERNS: dict[str, str] = {
    "count_all": r"How many shapes are there\?",
    "count_color": rf"How many (?P<color>{_COLOR[1:-1]}) shapes are there\?",
    "count_shape": rf"How many (?P<plural>{_PLURAL[1:-1]}) are there\?",
    "count_color_shape": rf"How many (?P<color>{_COLOR[1:-1]}) (?P<plural>{_PLURAL[1:-1]}) are there\?",
    "count_color_or": rf"How many shapes are (?P<color>{_COLOR[1:-1]}) or (?P<color2>{_COLOR[1:-1]})\?",
    "spatial_relation": (
        rf"Is the (?P<color>{_COLOR[1:-1]}) (?P<shape>{_SHAPE[1:-1]}) (?P<rel>{_REL[1:-1]}) "
        rf"the (?P<color2>{_COLOR[1:-1]}) (?P<shape2>{_SHAPE[1:-1]})\?"
    ),
    "spatial_neighbor_color": (
        rf"What colour is the shape directly (?P<rel>{_REL[1:-1]}) "
        rf"the (?P<color>{_COLOR[1:-1]}) (?P<shape>{_SHAPE[1:-1]})\?"
    ),
    "spatial_count_direction": (
        rf"How many shapes are (?P<rel>{_REL[1:-1]}) the (?P<color>{_COLOR[1:-1]}) (?P<shape>{_SHAPE[1:-1]})\?"
    ),
    "bar_value": rf"What is the value of the (?P<color>{_COLOR[1:-1]}) bar\?",
    "bar_max_color": r"Which colou?r is the tallest bar\?",
    "bar_max_value": r"What is the largest value in the chart\?",
    "bar_diff": (
        rf"What is the difference between the (?P<color>{_COLOR[1:-1]}) bar "
        rf"and the (?P<color2>{_COLOR[1:-1]}) bar\?"
    ),
    "bar_sum": rf"What is the sum of the (?P<color>{_COLOR[1:-1]}) and (?P<color2>{_COLOR[1:-1]}) bars\?",
    "rect_area": r"What is the area of the rectangle in grid units\?",
    "rect_perimeter": r"What is the perimeter of the rectangle in grid units\?",
    "rect_total_area": r"What is the total area of the two rectangles in grid units\?",
    "rect_area_diff": (
        rf"What is the difference between the areas of the (?P<color>{_COLOR[1:-1]}) rectangle "
        rf"and the (?P<color2>{_COLOR[1:-1]}) rectangle\?"
    ),
    "table_cell": r"What is the number in row (?P<row>[12]), column (?P<col>[12])\?",
    "table_line_sum": r"What is the sum of the numbers in (?P<line>row|column) (?P<index>[12])\?",
    "table_total": r"What is the sum of all four numbers\?",
    "table_range": r"What is the largest number in the table minus the smallest number\?",
    "clock_hour": r"What hour does the clock show\?",
    "clock_add": r"What hour will it be in (?P<hours>\d+) hours?\?",
    "clock_sub": r"What hour was it (?P<hours>\d+) hours? ago\?",
    "clock_until_12": r"How many hours are there from the time shown until 12 o'clock\?",
}


def parse_question(question_type: str, question: str) -> Query:
    """What the question asks about: colour(s), shape(s), direction, bar/cell/line, hours.

    Keys (present where the question names them): color, color2, shape, shape2, direction (above /
    below / left / right), row, col, line (row / column), index, hours.
    """
    if question_type not in _QUESTION_PATTERNS:
        raise ValueError(
            f"offline teacher: unknown question type {question_type!r}; known: {', '.join(_QUESTION_PATTERNS)}"
        )
    m = re.fullmatch(_QUESTION_PATTERNS[question_type], question.strip())
    if not m:
        raise ValueError(f"offline teacher: cannot parse the {question_type!r} question: {question!r}")
    query: Query = {}
    for key, value in m.groupdict().items():
        if key == "plural":
            query["shape"] = _SINGULAR[value]
        elif key == "rel":
            query["direction"] = _DIRECTION_OF[value]
        elif key in ("row", "col", "index", "hours"):
            query[key] = int(value)
        else:
            query[key] = value
    return query


# --------------------------------------------------------------------------------------------------
# Solving: correct step-by-step reasoning over a scene (optionally with one slip)


class _Say:
    """Picks one phrasing: the first without an RNG (plain `solve`), a random one with it."""

    def __init__(self, rng: random.Random | None) -> None:
        self.rng = rng

    def __call__(self, *options: str) -> str:
        return options[0] if self.rng is None else self.rng.choice(options)


@dataclass(frozen=True)
class _Body:
    """What a question solver returns: reasoning steps, the answer and a one-sentence re-check."""

    steps: list[str]
    answer: str
    check: str
    overview: int = 0  # leading steps that restate the whole scene; the focused style leaves them out


@dataclass(frozen=True)
class _Solution:
    steps: list[str]  # intro first, conclusion last
    answer: str
    check: str
    ask: str
    scene: Scene  # the scene as the chain (mis)read it


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


def _at(o: dict) -> str:
    return f"row {o['row']}, column {o['col']}"


def _the(o: dict) -> str:
    return f"the {o['color']} {o['shape']} at {_at(o)}"


# count ---------------------------------------------------------------------------------------------


def _listing(objs: list[dict], say: _Say) -> str:
    items = "; ".join(f"{i}. a {o['color']} {o['shape']} at {_at(o)}" for i, o in enumerate(objs, 1))
    lead = say(
        "First, let me list every shape in the grid, row by row: ",
        "First, I'll go through the shapes in reading order: ",
        "First, let me write down what is in the grid: ",
    )
    return lead + items + "."


def _pick(objs: list[dict], desc: str, pred: Callable[[dict], bool], say: _Say) -> tuple[str, list[dict]]:
    hits = [o for o in objs if pred(o)]
    if not hits:
        return say(f"None of them are {desc}, so that's 0.", f"I don't see any {desc} at all, so 0."), hits
    names, k = _join([_the(o) for o in hits]), len(hits)
    text = say(
        f"Now I pick out the {desc}: {names}. That's {k}.",
        f"Which of these are {desc}? {_cap(names)}. So there are {k}.",
        f"Looking for {desc}, I find {names}, which makes {k}.",
    )
    return text, hits


def _names_or_none(hits: list[dict], desc: str) -> str:
    if not hits:
        return f"there are no {desc}, so the count is 0."
    return f"the {desc} are {_join([_the(o) for o in hits])}, which makes {len(hits)}."


def _count_all(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    objs = scene["objects"]
    tally = ", ".join(str(i) for i in range(1, len(objs) + 1))
    steps = [
        _listing(objs, say),
        say(f"Counting them one by one: {tally}.", f"Now I count them: {tally}."),
        say(f"So there are {_n(len(objs), 'shape')} in total.", f"That makes {_n(len(objs), 'shape')}."),
    ]
    return _Body(steps, str(len(objs)), f"going through the grid once more, I count {tally}.", overview=2)


def _count_color(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    desc = f"{q['color']} shapes"
    text, hits = _pick(scene["objects"], desc, lambda o: o["color"] == q["color"], say)
    return _Body(
        [_listing(scene["objects"], say), text], str(len(hits)), _names_or_none(hits, desc), overview=1
    )


def _count_shape(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    desc = PLURAL[q["shape"]]
    text, hits = _pick(scene["objects"], desc, lambda o: o["shape"] == q["shape"], say)
    return _Body(
        [_listing(scene["objects"], say), text], str(len(hits)), _names_or_none(hits, desc), overview=1
    )


def _count_color_shape(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    color, shapes = q["color"], PLURAL[q["shape"]]
    first, by_color = _pick(scene["objects"], f"{color} shapes", lambda o: o["color"] == color, say)
    hits = [o for o in by_color if o["shape"] == q["shape"]]
    if not by_color:
        second = f"With no {color} shapes at all, there can't be any {color} {shapes}."
    elif not hits:
        second = f"None of these {color} shapes is a {q['shape']}, so there are 0 {color} {shapes}."
    else:
        names = _join([_the(o) for o in hits])
        second = say(
            f"Of these, the ones that are also {shapes}: {names}. That's {len(hits)}.",
            f"Now, among the {color} ones, which are {shapes}? {_cap(names)}. So {len(hits)}.",
        )
    steps = [_listing(scene["objects"], say), first, second]
    return _Body(steps, str(len(hits)), _names_or_none(hits, f"{color} {shapes}"), overview=1)


def _count_color_or(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    objs, c1, c2 = scene["objects"], q["color"], q["color2"]
    t1, h1 = _pick(objs, f"{c1} shapes", lambda o: o["color"] == c1, say)
    t2, h2 = _pick(objs, f"{c2} shapes", lambda o: o["color"] == c2, say)
    a, b = len(h1), len(h2)
    total = a + b + slip
    add = say(
        f"A shape can't be both colours, so I just add the two groups: {a} + {b} = {total}.",
        f"Together that's {a} + {b} = {total}.",
    )
    check = f"there are {a} {c1} and {b} {c2} shapes, and {a} + {b} = {total}."
    return _Body([_listing(objs, say), t1, t2, add], str(total), check, overview=1)


# spatial -------------------------------------------------------------------------------------------

_AXIS = {"above": "row", "below": "row", "left": "column", "right": "column"}
_KEY = {"row": "row", "column": "col"}
_SMALLER = {"above": True, "below": False, "left": True, "right": False}
_DIRECT_TEXT = {
    "above": "one row up, in the same column",
    "below": "one row down, in the same column",
    "left": "one column to the left, in the same row",
    "right": "one column to the right, in the same row",
}


def _find(objs: list[dict], color: str, shape: str) -> dict:
    hits = [o for o in objs if (o["color"], o["shape"]) == (color, shape)]
    if len(hits) != 1:
        what = "does not show" if not hits else "shows more than one"
        raise ValueError(f"offline teacher: the question names the {color} {shape}, but the scene {what}")
    return hits[0]


def _smaller(direction: str, flipped: bool) -> bool:
    """Does `direction` mean a smaller row/column number? (`flipped`: the numbering misremembered)."""
    return _SMALLER[direction] != flipped


def _holds(direction: str, a: dict, b: dict, flipped: bool = False) -> bool:
    key = _KEY[_AXIS[direction]]
    return a[key] < b[key] if _smaller(direction, flipped) else a[key] > b[key]


def _rule(direction: str, say: _Say, flipped: bool = False) -> str:
    axis, rel = _AXIS[direction], RELATION_TEXT[direction]
    order = ("top", "bottom") if axis == "row" else ("left", "right")
    start = order[flipped]
    size = "smaller" if _smaller(direction, flipped) else "larger"
    return say(
        f"{_cap(axis)}s are counted from the {start}, so being {rel} something means having a {size} "
        f"{axis} number.",
        f"Since {axis}s are numbered from the {start}, '{rel}' means a {size} {axis} number.",
    )


def _spatial_relation(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    objs, d, flipped = scene["objects"], q["direction"], slip != 0
    a, b = _find(objs, q["color"], q["shape"]), _find(objs, q["color2"], q["shape2"])
    an, bn = f"the {a['color']} {a['shape']}", f"the {b['color']} {b['shape']}"
    axis, rel = _AXIS[d], RELATION_TEXT[d]
    va, vb = a[_KEY[axis]], b[_KEY[axis]]
    locate = say(
        f"First, I find the two shapes. {_cap(an)} is at {_at(a)}, and {bn} is at {_at(b)}.",
        f"First, where are they? {_cap(an)} sits at {_at(a)} and {bn} at {_at(b)}.",
    )
    yes = _holds(d, a, b, flipped)
    cmp = "less" if _smaller(d, flipped) else "greater"
    if va == vb:
        verdict = f"Both are in {axis} {va}, so {an} is not {rel} {bn}."
    else:
        verdict = (
            f"{_cap(an)} is in {axis} {va} and {bn} is in {axis} {vb}. {va} is {'' if yes else 'not '}{cmp} "
            f"than {vb}, so {an} is {'' if yes else 'not '}{rel} {bn}."
        )
    check = f"{an} is in {axis} {va} and {bn} is in {axis} {vb}, so it is {'' if yes else 'not '}{rel} it."
    return _Body([locate, _rule(d, say, flipped), verdict], "yes" if yes else "no", check)


def _spatial_neighbor_color(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    objs, d = scene["objects"], q["direction"]
    ref = _find(objs, q["color"], q["shape"])
    name = f"the {ref['color']} {ref['shape']}"
    dr, dc = DELTAS[d]
    row, col = ref["row"] + dr, ref["col"] + dc
    hits = [o for o in objs if (o["row"], o["col"]) == (row, col)]
    if not hits:
        raise ValueError(f"offline teacher: no shape directly {RELATION_TEXT[d]} {name} in this scene")
    hit = hits[0]
    steps = [
        say(f"First, I find {name}: it is at {_at(ref)}.", f"First, {name} is at {_at(ref)}."),
        f"Directly {RELATION_TEXT[d]} it means {_DIRECT_TEXT[d]}: row {row}, column {col}.",
        say(
            f"The shape at row {row}, column {col} is the {hit['color']} {hit['shape']}.",
            f"Looking at row {row}, column {col}, I find the {hit['color']} {hit['shape']}.",
        ),
        f"So that shape is {hit['color']}.",
    ]
    check = f"{name} is at {_at(ref)}, and the shape at row {row}, column {col} is {hit['color']}."
    return _Body(steps, hit["color"], check)


def _spatial_count_direction(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    objs, d, flipped = scene["objects"], q["direction"], slip != 0
    ref = _find(objs, q["color"], q["shape"])
    name, rel, axis = f"the {ref['color']} {ref['shape']}", RELATION_TEXT[d], _AXIS[d]
    others = [o for o in objs if o is not ref]
    hits = [o for o in others if _holds(d, o, ref, flipped)]
    marks = "; ".join(
        f"the {o['color']} {o['shape']} is in {axis} {o[_KEY[axis]]}, {'yes' if o in hits else 'no'}"
        for o in others
    )
    steps = [
        say(f"First, I find {name}: it is at {_at(ref)}.", f"First, {name} is at {_at(ref)}."),
        _rule(d, say, flipped),
        f"Checking the other shapes against {axis} {ref[_KEY[axis]]}: {marks}.",
        f"So {_n(len(hits), 'shape')} {'is' if len(hits) == 1 else 'are'} {rel} {name}.",
    ]
    if hits:
        check = f"the shapes {rel} {name} are {_join([_the(o) for o in hits])}, which makes {len(hits)}."
    else:
        check = f"no other shape is {rel} {name}, so the count is 0."
    return _Body(steps, str(len(hits)), check)


# bar_chart -----------------------------------------------------------------------------------------


def _read_bars(bars: list[dict], say: _Say) -> str:
    parts = _join([f"{b['color']} is {b['value']}" for b in bars])
    return say(
        f"First, let me read the bars from left to right: {parts}.",
        f"First, reading the chart from left to right: {parts}.",
        f"First, the bars, from left to right: {parts}.",
    )


def _bar(bars: list[dict], color: str) -> int:
    for bar in bars:
        if bar["color"] == color:
            return bar["value"]
    raise ValueError(f"offline teacher: the question names the {color} bar, but the chart has none")


def _bar_value(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    v = _bar(scene["bars"], q["color"])
    steps = [_read_bars(scene["bars"], say), f"The {q['color']} bar has a value of {v}."]
    return _Body(steps, str(v), f"the {q['color']} bar reaches {v}.", overview=1)


def _bar_max_color(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    values = [b["value"] for b in scene["bars"]]
    top = max(values)
    tallest = [b["color"] for b in scene["bars"] if b["value"] == top]
    if len(tallest) != 1:
        raise ValueError("offline teacher: no single tallest bar in this scene")
    listed = _join([str(v) for v in values])
    steps = [
        _read_bars(scene["bars"], say),
        f"Comparing the values {listed}, the largest is {top}, which belongs to the {tallest[0]} bar.",
    ]
    return _Body(steps, tallest[0], f"the {tallest[0]} bar, at {top}, is taller than all the others.")


def _bar_max_value(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    values = [b["value"] for b in scene["bars"]]
    steps = [
        _read_bars(scene["bars"], say),
        f"The largest of {_join([str(v) for v in values])} is {max(values)}.",
    ]
    return _Body(steps, str(max(values)), f"none of the bars goes above {max(values)}.")


def _bar_pair(scene: Scene, q: Query) -> tuple[int, int, str]:
    v1, v2 = _bar(scene["bars"], q["color"]), _bar(scene["bars"], q["color2"])
    return v1, v2, f"The {q['color']} bar is {v1} and the {q['color2']} bar is {v2}."


def _bar_diff(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    v1, v2, both = _bar_pair(scene, q)
    big, small = max(v1, v2), min(v1, v2)
    d = big - small + slip
    calc = say(
        f"The difference is the larger minus the smaller: {big} - {small} = {d}.",
        f"Subtracting the smaller from the larger gives {big} - {small} = {d}.",
    )
    return _Body(
        [_read_bars(scene["bars"], say), both, calc],
        str(d),
        f"{both[4:]} and {big} - {small} = {d}.",
        overview=1,
    )


def _bar_sum(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    v1, v2, both = _bar_pair(scene, q)
    s = v1 + v2 + slip
    calc = say(f"Adding them: {v1} + {v2} = {s}.", f"So the sum is {v1} + {v2} = {s}.")
    return _Body(
        [_read_bars(scene["bars"], say), both, calc], str(s), f"{both[4:]} and {v1} + {v2} = {s}.", overview=1
    )


# grid_geometry ---------------------------------------------------------------------------------------


def _rect_text(r: dict) -> str:
    return (
        f"the {r['color']} rectangle is {_n(r['width'], 'unit')} wide and {_n(r['height'], 'unit')} tall, "
        f"with its top left cell at row {r['row']}, column {r['col']}"
    )


def _one_rect(scene: Scene) -> dict:
    if len(scene["rects"]) != 1:
        raise ValueError("offline teacher: the question is about one rectangle, but the scene has several")
    return scene["rects"][0]


def _rect(scene: Scene, color: str) -> dict:
    for r in scene["rects"]:
        if r["color"] == color:
            return r
    raise ValueError(f"offline teacher: the question names the {color} rectangle, but the grid has none")


def _rect_area(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    r = _one_rect(scene)
    w, h = r["width"], r["height"]
    area = w * h + slip
    steps = [
        f"First, {_rect_text(r)}.",
        say(
            f"The area of a rectangle is width times height, so the area is {w} × {h} = {area}.",
            f"Area = width × height = {w} × {h} = {area}.",
        ),
    ]
    return _Body(steps, str(area), f"{h} rows of {w} unit squares each give {w} × {h} = {area}.")


def _rect_perimeter(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    r = _one_rect(scene)
    w, h = r["width"], r["height"]
    p = 2 * (w + h) + slip
    steps = [
        f"First, {_rect_text(r)}.",
        say(
            f"The perimeter is twice the sum of width and height: 2 × ({w} + {h}) = 2 × {w + h} = {p}.",
            f"Perimeter = 2 × (width + height) = 2 × ({w} + {h}) = 2 × {w + h} = {p}.",
        ),
    ]
    return _Body(steps, str(p), f"going around the rectangle: {w} + {h} + {w} + {h} = {p}.")


def _areas(scene: Scene, say: _Say) -> tuple[list[int], str, str]:
    rects = scene["rects"]
    areas = [r["width"] * r["height"] for r in rects]
    what = f"First, there {'is' if len(rects) == 1 else 'are'} {_n(len(rects), 'rectangle')}: " + "; ".join(
        _rect_text(r) for r in rects
    )
    each = _join(
        [
            f"the {r['color']} one has area {r['width']} × {r['height']} = {a}"
            for r, a in zip(rects, areas, strict=True)
        ]
    )
    return areas, what + ".", say(f"Now the areas: {each}.", f"Computing each area: {each}.")


def _rect_total_area(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    areas, what, each = _areas(scene, say)
    total = sum(areas) + slip
    expr = " + ".join(str(a) for a in areas)
    calc = say(f"Together: {expr} = {total}.", f"So the total area is {expr} = {total}.")
    return _Body(
        [what, each, calc],
        str(total),
        f"the areas are {_join([str(a) for a in areas])}, and {expr} = {total}.",
    )


def _rect_area_diff(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    r1, r2 = _rect(scene, q["color"]), _rect(scene, q["color2"])
    _, what, each = _areas(scene, say)
    a1, a2 = r1["width"] * r1["height"], r2["width"] * r2["height"]
    big, small = max(a1, a2), min(a1, a2)
    d = big - small + slip
    calc = say(
        f"The difference is the larger area minus the smaller: {big} - {small} = {d}.",
        f"So the difference is {big} - {small} = {d}.",
    )
    check = f"the {q['color']} area is {a1}, the {q['color2']} area is {a2}, and {big} - {small} = {d}."
    return _Body([what, each, calc], str(d), check)


# table ---------------------------------------------------------------------------------------------


def _read_table(cells: list[list[int]], say: _Say) -> str:
    (a, b), (c, d) = cells
    return say(
        f"First, let me read the table. Row 1 holds {a} and {b}, and row 2 holds {c} and {d}.",
        f"First, the table: the top row has {a} and {b}; the bottom row has {c} and {d}.",
    )


def _table_cell(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    r, c = q["row"], q["col"]
    v = scene["cells"][r - 1][c - 1]
    where = "first" if c == 1 else "second"
    steps = [
        _read_table(scene["cells"], say),
        f"Row {r}, column {c} is the {where} number in row {r}, which is {v}.",
    ]
    return _Body(steps, str(v), f"in row {r}, column {c} I see {v}.", overview=1)


def _table_line_sum(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    i, cells = q["index"], scene["cells"]
    if q["line"] == "row":
        x, y = cells[i - 1]
        holds = f"Row {i} holds {x} and {y}"
    else:
        x, y = cells[0][i - 1], cells[1][i - 1]
        holds = f"Column {i} holds {x} in row 1 and {y} in row 2"
    s = x + y + slip
    steps = [_read_table(cells, say), f"{holds}, so the sum is {x} + {y} = {s}."]
    return _Body(steps, str(s), f"{holds[0].lower()}{holds[1:]}, and {x} + {y} = {s}.", overview=1)


def _table_total(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    a, b, c, d = (v for row in scene["cells"] for v in row)
    ab, abc, total = a + b, a + b + c, a + b + c + d + slip
    calc = say(
        f"Adding them up step by step: {a} + {b} = {ab}, {ab} + {c} = {abc}, and {abc} + {d} = {total}.",
        f"Adding: {a} + {b} = {ab}; then {ab} + {c} = {abc}; then {abc} + {d} = {total}.",
    )
    return _Body([_read_table(scene["cells"], say), calc], str(total), f"{a} + {b} + {c} + {d} = {total}.")


def _table_range(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    flat = [v for row in scene["cells"] for v in row]
    hi, lo = max(flat), min(flat)
    r = hi - lo + slip
    steps = [
        _read_table(scene["cells"], say),
        f"Among {_join([str(v) for v in flat])}, the largest number is {hi} and the smallest is {lo}.",
        f"So the largest minus the smallest is {hi} - {lo} = {r}.",
    ]
    return _Body(steps, str(r), f"the largest is {hi}, the smallest is {lo}, and {hi} - {lo} = {r}.")


# clock ---------------------------------------------------------------------------------------------


def _hours(k: int) -> str:
    return "1 hour" if k == 1 else f"{k} hours"


def _read_clock(h: int, say: _Say) -> str:
    return say(
        f"First, the hour hand points at {h} and the minute hand points at 12, so it is exactly {h} o'clock.",
        f"First, the minute hand is at 12 and the hour hand is at {h}: the clock shows {h} o'clock.",
    )


def _clock_hour(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    h = scene["hour"]
    return _Body([_read_clock(h, say)], str(h), f"the short hand is on {h} and the long hand on 12.")


def _clock_add(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    h, k = scene["hour"], q["hours"]
    if h + k <= 12:
        result = h + k + slip
        calc = f"Adding {_hours(k)}: {h} + {k} = {result}, which is still on the dial."
        check = f"{h} + {k} = {result}."
    else:
        result = h + k - 12 + slip
        calc = (
            f"Adding {_hours(k)}: {h} + {k} = {h + k}. The dial only goes up to 12, so I subtract 12: "
            f"{h + k} - 12 = {result}."
        )
        check = f"{h} + {k} = {h + k}, and {h + k} - 12 = {result}."
    return _Body([_read_clock(h, say), calc], str(result), check)


def _clock_sub(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    h, k = scene["hour"], q["hours"]
    if h - k >= 1:
        result = h - k + slip
        calc = f"Going back {_hours(k)}: {h} - {k} = {result}."
        check = f"{h} - {k} = {result}."
    else:
        result = h - k + 12 + slip
        calc = (
            f"Going back {_hours(k)}: {h} - {k} = {h - k}, which is not an hour on the dial, so I add 12: "
            f"{h - k} + 12 = {result}."
        )
        check = f"{h} - {k} = {h - k}, and {h - k} + 12 = {result}."
    return _Body([_read_clock(h, say), calc], str(result), check)


def _clock_until_12(scene: Scene, q: Query, say: _Say, slip: int) -> _Body:
    h = scene["hour"]
    n = 12 - h + slip
    calc = say(
        f"From {h} o'clock to 12 o'clock is 12 - {h} = {n} hours.",
        f"Counting forward from {h} to 12 takes 12 - {h} = {n} hours.",
    )
    return _Body([_read_clock(h, say), calc], str(n), f"12 - {h} = {n}.")


Solver = Callable[[Scene, Query, _Say, int], _Body]
_SOLVERS: dict[str, Solver] = {
    "count_all": _count_all,
    "count_color": _count_color,
    "count_shape": _count_shape,
    "count_color_shape": _count_color_shape,
    "count_color_or": _count_color_or,
    "spatial_relation": _spatial_relation,
    "spatial_neighbor_color": _spatial_neighbor_color,
    "spatial_count_direction": _spatial_count_direction,
    "bar_value": _bar_value,
    "bar_max_color": _bar_max_color,
    "bar_max_value": _bar_max_value,
    "bar_diff": _bar_diff,
    "bar_sum": _bar_sum,
    "rect_area": _rect_area,
    "rect_perimeter": _rect_perimeter,
    "rect_total_area": _rect_total_area,
    "rect_area_diff": _rect_area_diff,
    "table_cell": _table_cell,
    "table_line_sum": _table_line_sum,
    "table_total": _table_total,
    "table_range": _table_range,
    "clock_hour": _clock_hour,
    "clock_add": _clock_add,
    "clock_sub": _clock_sub,
    "clock_until_12": _clock_until_12,
}
# Question types whose solver has a step a `slip` can hit: an arithmetic result off by `slip`, or (spatial)
# the row/column numbering misremembered so the direction rule flips.
SLIP_TYPES: frozenset[str] = frozenset(
    {
        "spatial_relation",
        "spatial_count_direction",
        "count_color_or",
        "bar_diff",
        "bar_sum",
        "rect_area",
        "rect_perimeter",
        "rect_total_area",
        "rect_area_diff",
        "table_line_sum",
        "table_total",
        "table_range",
        "clock_add",
        "clock_sub",
        "clock_until_12",
    }
)


def _ask(question_type: str, q: Query) -> str:
    """The question restated as a clause: "the question asks <this>"."""
    rel = RELATION_TEXT.get(q.get("direction", ""), "")
    c1, c2, s1 = q.get("color"), q.get("color2"), q.get("shape")
    plural = PLURAL.get(s1 or "", "")
    asks = {
        "count_all": "how many shapes there are in total",
        "count_color": f"how many {c1} shapes there are",
        "count_shape": f"how many {plural} there are",
        "count_color_shape": f"how many {c1} {plural} there are",
        "count_color_or": f"how many shapes are {c1} or {c2}",
        "spatial_relation": f"whether the {c1} {s1} is {rel} the {c2} {q.get('shape2')}",
        "spatial_neighbor_color": f"what colour the shape directly {rel} the {c1} {s1} is",
        "spatial_count_direction": f"how many shapes are {rel} the {c1} {s1}",
        "bar_value": f"for the value of the {c1} bar",
        "bar_max_color": "which colour the tallest bar is",
        "bar_max_value": "for the largest value in the chart",
        "bar_diff": f"for the difference between the {c1} bar and the {c2} bar",
        "bar_sum": f"for the sum of the {c1} and {c2} bars",
        "rect_area": "for the area of the rectangle in grid units",
        "rect_perimeter": "for the perimeter of the rectangle in grid units",
        "rect_total_area": "for the total area of the two rectangles",
        "rect_area_diff": f"for the difference between the areas of the {c1} and {c2} rectangles",
        "table_cell": f"for the number in row {q.get('row')}, column {q.get('col')}",
        "table_line_sum": f"for the sum of the numbers in {q.get('line')} {q.get('index')}",
        "table_total": "for the sum of all four numbers",
        "table_range": "for the largest number in the table minus the smallest one",
        "clock_hour": "what hour the clock shows",
        "clock_add": f"what hour it will be in {_hours(q.get('hours', 0))}",
        "clock_sub": f"what hour it was {_hours(q.get('hours', 0))} ago",
        "clock_until_12": "how many hours there are from the time shown until 12 o'clock",
    }
    return asks[question_type]


def _check_types(task: str, question_type: str) -> None:
    _check_task(task)
    if question_type not in FAMILIES[task].answer_spaces:
        known = ", ".join(FAMILIES[task].answer_spaces)
        raise ValueError(
            f"offline teacher: question type {question_type!r} is not one of task {task!r} ({known})"
        )


def _solution(
    task: str,
    question_type: str,
    scene: Scene,
    query: Query,
    rng: random.Random | None = None,
    slip: int = 0,
    focused: bool = False,
) -> _Solution:
    _check_types(task, question_type)
    if slip and question_type not in SLIP_TYPES:
        raise ValueError(f"offline teacher: {question_type!r} has no reasoning step to slip on")
    say = _Say(rng)
    ask = _ask(question_type, query)
    body = _SOLVERS[question_type](scene, query, say, slip)
    intro = say(
        f"Okay, so the question asks {ask}.",
        f"Okay, let's see. The question asks {ask}.",
        f"Alright, so the question asks {ask}.",
    )
    conclusion = say(
        f"So the answer is {body.answer}.",
        f"Therefore, the answer is {body.answer}.",
        f"So the final answer is {body.answer}.",
    )
    steps = body.steps[body.overview :] if focused else body.steps
    return _Solution([intro, *steps, conclusion], body.answer, body.check, ask, scene)


def solve(
    task: str,
    question_type: str,
    scene: Scene,
    query: Query,
    *,
    rng: random.Random | None = None,
    slip: int = 0,
) -> tuple[list[str], str]:
    """Step-by-step reasoning over a parsed scene and the answer it reaches.

    With `slip=0` (the default) the reasoning is correct. A non-zero `slip` (only for `SLIP_TYPES`) adds
    that much to the final arithmetic result, or, for spatial questions, flips the row/column numbering.
    `rng` varies the phrasing; without it the first phrasing is used, so `solve` is a pure function of
    its arguments.
    """
    sol = _solution(task, question_type, scene, query, rng, slip)
    return list(sol.steps), sol.answer


# --------------------------------------------------------------------------------------------------
# Slips: misread one thing (or slip on a reasoning step) so the chain reaches a wrong answer

_DIGIT_CONFUSIONS = {
    0: (8, 6),
    1: (7,),
    2: (7,),
    3: (8, 9),
    4: (9,),
    5: (6, 9),
    6: (5, 8),
    7: (1,),
    8: (0, 6, 9),
    9: (8, 5),
}


def _focus(items: list[dict], relevant: list[dict], rng: random.Random) -> dict:
    """Usually one of the things the question is about (a slip there matters), sometimes any."""
    return rng.choice(relevant if relevant and rng.random() < 0.75 else items)


def _grid_relevant(objs: list[dict], query: Query) -> list[dict]:
    """The shapes a slip should touch to matter: the named ones (and their neighbours) or the matches."""
    if "direction" in query:  # spatial: the named shapes and the shapes next to the first one
        named = [(query.get("color"), query.get("shape")), (query.get("color2"), query.get("shape2"))]
        hits = [o for o in objs if (o["color"], o["shape"]) in named]
        ref = hits[:1]
        return hits + [
            o for o in objs for r in ref if abs(o["row"] - r["row"]) + abs(o["col"] - r["col"]) == 1
        ]
    colors = {query.get("color"), query.get("color2")} - {None}
    return [o for o in objs if o["color"] in colors or o["shape"] == query.get("shape")]


def _misread_grid(scene: Scene, query: Query, rng: random.Random) -> Scene:
    """Misread one shape's colour, kind or position, overlook one, or see one that is not there."""
    objs = scene["objects"]
    o = _focus(objs, _grid_relevant(objs, query), rng)
    spatial = "direction" in query
    kind = rng.choice(("color", "move", "move") if spatial else ("color", "shape", "move", "drop", "extra"))
    taken = {(x["row"], x["col"]) for x in objs}
    if kind == "color":
        o["color"] = rng.choice([c for c in COLORS if c != o["color"]])
    elif kind == "shape":
        o["shape"] = rng.choice([s for s in SHAPES if s != o["shape"]])
    elif kind == "move":
        line = [(r, o["col"]) for r in range(1, N_CELLS + 1)] + [(o["row"], c) for c in range(1, N_CELLS + 1)]
        free = [cell for cell in line if cell not in taken]
        if free:
            o["row"], o["col"] = rng.choice(free)
    elif kind == "drop" and len(objs) > 1:
        objs.remove(o)
    elif kind == "extra":
        free = [(r, c) for r in range(1, N_CELLS + 1) for c in range(1, N_CELLS + 1) if (r, c) not in taken]
        if free:
            r, c = rng.choice(free)
            color = query.get("color") if rng.random() < 0.5 else None
            objs.append(
                {"color": color or rng.choice(COLORS), "shape": rng.choice(SHAPES), "row": r, "col": c}
            )
    objs.sort(key=lambda x: (x["row"], x["col"]))
    return scene


def _misread_bars(scene: Scene, query: Query, rng: random.Random) -> Scene:
    """Misread one bar's height, or mix up the colours of two neighbouring bars."""
    bars = scene["bars"]
    bar = _focus(bars, [b for b in bars if b["color"] in (query.get("color"), query.get("color2"))], rng)
    if rng.random() < 0.3:
        i = bars.index(bar)
        j = i + 1 if i + 1 < len(bars) and (i == 0 or rng.random() < 0.5) else i - 1
        bars[i]["color"], bars[j]["color"] = bars[j]["color"], bars[i]["color"]
    else:
        bar["value"] = min(UNITS, max(1, bar["value"] + rng.choice((-2, -1, -1, 1, 1, 2))))
    return scene


def _misread_rects(scene: Scene, query: Query, rng: random.Random) -> Scene:
    """Miscount one side of one rectangle by a unit."""
    rects = scene["rects"]
    rect = _focus(rects, [r for r in rects if r["color"] in (query.get("color"), query.get("color2"))], rng)
    side = rng.choice(("width", "height"))
    rect[side] = max(1, rect[side] + rng.choice((-1, 1)))
    return scene


def _misread_table(scene: Scene, query: Query, rng: random.Random) -> Scene:
    """Misread one seven-segment digit as a look-alike or a neighbouring digit."""
    cells = [(r, c) for r in range(2) for c in range(2)]
    if "row" in query:
        relevant = [(query["row"] - 1, query["col"] - 1)]
    elif "line" in query:
        i = query["index"] - 1
        relevant = [(i, 0), (i, 1)] if query["line"] == "row" else [(0, i), (1, i)]
    else:
        relevant = cells
    row, col = relevant[rng.randrange(len(relevant))] if rng.random() < 0.75 else rng.choice(cells)
    digit = scene["cells"][row][col]
    options = [*_DIGIT_CONFUSIONS[digit], *(d for d in (digit - 1, digit + 1) if 0 <= d <= 9)]
    scene["cells"][row][col] = rng.choice(options)
    return scene


def _misread_clock(scene: Scene, query: Query, rng: random.Random) -> Scene:
    """Read the hour hand as pointing at the neighbouring hour."""
    scene["hour"] = (scene["hour"] - 1 + rng.choice((-1, 1))) % 12 + 1
    return scene


_MISREADS: dict[str, Callable[[Scene, Query, random.Random], Scene]] = {
    "count": _misread_grid,
    "spatial": _misread_grid,
    "bar_chart": _misread_bars,
    "grid_geometry": _misread_rects,
    "table": _misread_table,
    "clock": _misread_clock,
}


def _slipped(
    task: str,
    question_type: str,
    scene: Scene,
    query: Query,
    correct: _Solution,
    rng: random.Random,
    phrasing: int,
    focused: bool = False,
) -> _Solution | None:
    """A solution with one natural slip whose answer differs from `correct` (None if none was found).

    Wrong answers inside the question type's answer space are preferred (they look plausible).
    """
    fallback: _Solution | None = None
    space = ANSWER_SPACES.get(question_type, ())
    for _ in range(MAX_SLIP_TRIES):
        try:
            if question_type in SLIP_TYPES and rng.random() < 0.5:
                slip = rng.choice((-2, -1, -1, 1, 1, 2))
                sol = _solution(task, question_type, scene, query, random.Random(phrasing), slip, focused)
            else:
                seen = _MISREADS[task](copy.deepcopy(scene), query, rng)
                sol = _solution(task, question_type, seen, query, random.Random(phrasing), 0, focused)
        except ValueError:
            continue
        if sol.answer == correct.answer:
            continue
        if sol.answer in space:
            return sol
        fallback = fallback or sol
    return fallback


# --------------------------------------------------------------------------------------------------
# Chains: reflections, fillers, rambling, final format

GENERIC_FILLERS: tuple[str, ...] = (
    "Let me think about this step by step.",
    "I should be careful here and not rush.",
    "Let me make sure I have all the details right before answering.",
    "It helps to write everything out explicitly.",
    "This looks simple, but small mistakes are easy to make.",
    "I'll take it one piece at a time.",
    "Okay, that part is clear.",
    "Let me keep track of each piece of information.",
    "Hmm, let me organise my thoughts.",
    "I want to be precise about this.",
)
TASK_FILLERS: dict[str, tuple[str, ...]] = {
    "count": (
        "Rows are counted from the top and columns from the left.",
        "Every shape has a colour and a shape type, and I need to look at the right one.",
        "Each cell of the grid holds at most one shape.",
        "It's easy to miscount, so I'll go slowly.",
    ),
    "spatial": (
        "Rows are counted from the top and columns from the left.",
        "Row 1 is the top row and column 1 is the leftmost column.",
        "Each shape here has its own combination of colour and shape, so the names are unambiguous.",
        "I need to compare positions carefully.",
    ),
    "bar_chart": (
        "The height of each bar gives its value.",
        "There are four bars, each with a different colour.",
        "The grid lines mark one unit each, which makes the values easy to read.",
    ),
    "grid_geometry": (
        "Each grid square is one unit long.",
        "The area of a rectangle is its width times its height.",
        "The perimeter is the distance all the way around a rectangle.",
    ),
    "table": (
        "The table has two rows and two columns.",
        "Rows go across and columns go down.",
        "Each cell holds a single digit.",
    ),
    "clock": (
        "A clock face has the numbers 1 to 12.",
        "The minute hand at 12 means it is exactly on the hour.",
        "After 12 the hours start again at 1.",
    ),
}
_OPENERS = ("First, ", "Next, ", "Now, ", "Then, ")


def _describe(task: str, scene: Scene) -> str:
    """The whole scene in one sentence (used when the chain rambles)."""
    if task in ("count", "spatial"):
        objs = scene["objects"]
        return (
            f"The grid holds {_n(len(objs), 'shape')}: "
            + _join([f"a {o['color']} {o['shape']} at {_at(o)}" for o in objs])
            + "."
        )
    if task == "bar_chart":
        return (
            "From left to right the bars are "
            + _join([f"{b['color']} at {b['value']}" for b in scene["bars"]])
            + "."
        )
    if task == "grid_geometry":
        return _cap("; ".join(_rect_text(r) for r in scene["rects"])) + "."
    if task == "table":
        (a, b), (c, d) = scene["cells"]
        return f"Row 1 holds {a} and {b}; row 2 holds {c} and {d}."
    return f"The hour hand points at {scene['hour']} and the minute hand at 12."


def _restate(step: str) -> str:
    for opener in _OPENERS:
        if step.startswith(opener):
            return _cap(step[len(opener) :])
    return step


def _reflect(
    paragraphs: list[str],
    sol: _Solution,
    kind: str,
    rng: random.Random,
    correct: _Solution,
    wrong: _Solution | None,
) -> list[str]:
    """Add one reflection of `kind` to the chain's paragraphs (intro first, conclusion last)."""
    out = list(paragraphs)
    check, x = _cap(sol.check), sol.answer
    if kind == "recheck":
        opener = rng.choice(
            (
                "Wait, let me check again.",
                "Wait, let me make sure I read that correctly.",
                "But wait, I should double-check this.",
            )
        )
        closer = rng.choice(("Okay, that's consistent.", "Yes, that holds.", "Good, that matches."))
        out.insert(rng.randint(2, len(out) - 1), f"{opener} {check} {closer}")
    elif kind == "double_check":
        verify = rng.choice(
            (
                f"But wait, let me verify that. {check} So it is indeed {x}.",
                f"Wait, let me check again to be sure. {check} Yes, {x}.",
            )
        )
        out[-1:-1] = [rng.choice((f"So the answer should be {x}.", f"That gives {x}.")), verify]
    elif kind == "question":
        out.insert(
            len(out) - 1,
            f"But the question asks {sol.ask}, so let me make sure that's what I found. {check} "
            + rng.choice(("Yes, that answers it.", "Right, that's exactly what is asked.")),
        )
    elif kind == "self_correct" and wrong is not None:
        idx = next(i for i, (a, b) in enumerate(zip(wrong.steps, correct.steps, strict=False)) if a != b)
        fix = rng.choice(
            ("Wait, that's not right.", "Wait, no, let me redo that.", "But wait, that doesn't look right.")
        )
        out = [*wrong.steps[: idx + 1], f"{fix} {_restate(correct.steps[idx])}", *correct.steps[idx + 1 :]]
    return out


def _fill(paragraphs: list[str], task: str, ask: str, n: int, rng: random.Random) -> list[str]:
    """Sprinkle `n` filler/restating sentences between the intro and the conclusion."""
    out = list(paragraphs)
    pool = [*GENERIC_FILLERS, *TASK_FILLERS[task], f"Just to restate: the question asks {ask}."]
    for filler in rng.sample(pool, min(n, len(pool))):
        i = rng.randint(1, len(out) - 2) if len(out) > 2 else 1
        if rng.random() < 0.5:
            out[i] = f"{out[i]} {filler}"
        else:
            out.insert(i + 1, filler)
    return out


def _words(paragraphs: list[str]) -> int:
    return sum(len(p.split()) for p in paragraphs)


def _ramble(paragraphs: list[str], task: str, sol: _Solution, rng: random.Random) -> list[str]:
    """Go over everything again and again until the chain is well past 300 words."""
    target = rng.randint(320, 560)
    pool = [*GENERIC_FILLERS, *TASK_FILLERS[task]]
    extra: list[str] = []
    rounds = [
        lambda: "Let me go over the whole picture once more to be thorough. " + _describe(task, sol.scene),
        lambda: f"Let me restate the problem to myself: the question asks {sol.ask}.",
        lambda: f"Could the question mean something else? I don't think so; it asks {sol.ask}.",
        lambda: "I also want to make sure I haven't mixed anything up. " + " ".join(rng.sample(pool, 2)),
        lambda: f"To be thorough, going through it again: {sol.check}",
        lambda: " ".join(_restate(s) for s in sol.steps[1:-1]),
    ]
    queue: list[Callable[[], str]] = []
    while _words(paragraphs) + _words(extra) < target:
        queue = queue or rng.sample(rounds, len(rounds))  # every kind of recap once per round, shuffled
        extra.append(queue.pop()())
    return [*paragraphs[:-1], *extra, paragraphs[-1]]


def format_chain(paragraphs: list[str], answer: str) -> str:
    """The raw R1 form: reasoning inside <think>, then a short final answer in \\boxed{}."""
    body = "\n\n".join(paragraphs)
    return f"<think>\n{body}\n</think>\n\nThe answer is \\boxed{{{answer}}}."


class OfflineTeacher:
    """Scripted R1-style teacher for the synthetic families (see the module docstring)."""

    name = OFFLINE_TEACHER_NAME

    def __init__(self, config: OfflineTeacherConfig | None = None) -> None:
        self.config = config or OfflineTeacherConfig()

    def sample(
        self, record_id: str, caption: str, question: str, task: str, question_type: str, k: int
    ) -> list[str]:
        """`k` reasoning chains for one item; the same arguments and config give the same chains."""
        _check_types(task, question_type)
        if k < 1:
            raise ValueError(f"offline teacher: k must be >= 1, got {k}")
        scene = parse_scene(task, caption)
        query = parse_question(question_type, question)
        return [self._chain(record_id, index, task, question_type, scene, query) for index in range(k)]

    def _chain(self, record_id: str, index: int, task: str, qtype: str, scene: Scene, query: Query) -> str:
        """Chain `index` of one item: its own RNG decides slip, reflection, fillers and rambling."""
        cfg = self.config
        rng = random.Random(f"{OFFLINE_TEACHER_NAME}:{cfg.seed}:{record_id}:{index}")
        errs = rng.random() < cfg.error_prob
        reflects = rng.random() < cfg.reflection_prob
        n_fill = rng.randint(cfg.verbosity_min, cfg.verbosity_max)
        rambles = rng.random() < cfg.long_prob
        phrasing = rng.getrandbits(32)
        focused = cfg.style == "focused"
        correct = _solution(task, qtype, scene, query, random.Random(phrasing), 0, focused)
        sol, wrong = correct, None
        if errs or reflects:
            wrong = _slipped(task, qtype, scene, query, correct, rng, phrasing, focused)
        if errs and wrong is not None:
            sol = wrong
        paragraphs = list(sol.steps)
        if reflects:
            kinds = ["recheck", "double_check", "question"]
            if sol is correct and wrong is not None:
                kinds.append("self_correct")
            paragraphs = _reflect(paragraphs, sol, rng.choice(kinds), rng, correct, wrong)
        paragraphs = _fill(paragraphs, task, sol.ask, n_fill, rng)
        if rambles:
            paragraphs = _ramble(paragraphs, task, sol, rng)
        return format_chain(paragraphs, sol.answer)
