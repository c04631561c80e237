"""Synthetic visual-reasoning task families with exact answers and exact dense captions.

Each family draws a scene from a `random.Random`, renders it with `draw`, and asks one question at a
given difficulty (1 = read one thing, 2 = compare or aggregate, 3 = compositional: sums, differences,
multi-attribute counts, where reasoning over the caption step by step beats a direct answer).

Answers are chosen first and the scene is built around them, so every question type's answer
distribution is close to uniform over its answer space (`Family.answer_spaces`); yes/no questions
are 50/50 by construction.

Caption grammar (one per family, regular so a few regular expressions parse it back):
  count, spatial  "A 4 by 4 grid holds N shapes: <colour> <shape> at row R column C; ... ."
                  (objects in reading order: row by row, left to right)
  bar_chart       "A bar chart with 4 bars from left to right: <colour> V, <colour> V, ... ."
  grid_geometry   "An 8 by 8 unit grid shows N rectangle(s): <colour> rectangle W wide and H tall
                  with top left cell at row R column C; ... ."
  table           "A table with 2 rows and 2 columns: row 1 holds A and B; row 2 holds C and D."
  clock           "An analog clock whose hour hand points at H and minute hand at 12."
Rows and columns are counted from 1 at the top left.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from vlthinker.sources import draw

COLORS = draw.COLOR_NAMES
SHAPES = draw.SHAPES
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
N_CELLS = draw.GRID_CELLS
ALL_CELLS: tuple[tuple[int, int], ...] = tuple(itertools.product(range(N_CELLS), range(N_CELLS)))
ALL_COMBOS: tuple[tuple[str, str], ...] = tuple(itertools.product(COLORS, SHAPES))


@dataclass(frozen=True)
class Question:
    """What a question maker returns: the rendered scene and one question about it."""

    image: Image.Image
    question: str
    answer: str
    caption: str
    question_type: str
    scene_key: str | None = None  # scenes sharing a key go to one split (near-duplicate renderings)


@dataclass(frozen=True)
class Item:
    """One generated example (image not yet encoded)."""

    image: Image.Image
    question: str
    answer: str
    caption: str
    question_type: str
    difficulty: int
    scene_key: str | None = None


Maker = Callable[[random.Random, int], Question]


@dataclass(frozen=True)
class Family:
    """A task family: question makers per difficulty and the answer space of each question type."""

    name: str
    description: str
    makers: dict[int, tuple[Maker, ...]]
    answer_spaces: dict[str, tuple[str, ...]]

    def make(self, rng: random.Random, difficulty: int, size: int) -> Item:
        if difficulty not in self.makers:
            raise ValueError(
                f"{self.name}: difficulty must be one of {sorted(self.makers)}, got {difficulty}"
            )
        maker = rng.choice(self.makers[difficulty])
        q = maker(rng, size)
        return Item(q.image, q.question, q.answer, q.caption, q.question_type, difficulty, q.scene_key)


def _ints(lo: int, hi: int) -> tuple[str, ...]:
    return tuple(str(v) for v in range(lo, hi + 1))


# --------------------------------------------------------------------------------------------------
# Grid scenes (count, spatial)


@dataclass(frozen=True)
class GridObject:
    color: str
    shape: str
    row: int  # 0-based
    col: int  # 0-based


def render_grid(objects: Sequence[GridObject], size: int) -> Image.Image:
    image, canvas = draw.new_canvas(size)
    for obj in objects:
        draw.draw_cell_shape(canvas, obj.shape, obj.color, obj.row, obj.col, size)
    return image


def grid_caption(objects: Sequence[GridObject]) -> str:
    ordered = sorted(objects, key=lambda o: (o.row, o.col))
    parts = [f"{o.color} {o.shape} at row {o.row + 1} column {o.col + 1}" for o in ordered]
    noun = "shape" if len(ordered) == 1 else "shapes"
    return f"A {N_CELLS} by {N_CELLS} grid holds {len(ordered)} {noun}: " + "; ".join(parts) + "."


def _grid_question(
    objects: Sequence[GridObject], size: int, question: str, answer: object, qtype: str
) -> Question:
    return Question(render_grid(objects, size), question, str(answer), grid_caption(objects), qtype)


def _place(rng: random.Random, combos: Sequence[tuple[str, str]], cells: Sequence[tuple[int, int]]):
    """Objects for (colour, shape) pairs in distinct cells drawn from `cells`."""
    chosen = rng.sample(list(cells), len(combos))
    return [GridObject(c, s, r, k) for (c, s), (r, k) in zip(combos, chosen, strict=True)]


def _random_combos(rng: random.Random, n: int, allowed: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [rng.choice(list(allowed)) for _ in range(n)]


# --------------------------------------------------------------------------------------------------
# count


def count_all(rng: random.Random, size: int) -> Question:
    n = rng.randint(3, 8)
    objects = _place(rng, _random_combos(rng, n, ALL_COMBOS), ALL_CELLS)
    return _grid_question(objects, size, "How many shapes are there?", n, "count_all")


def count_color(rng: random.Random, size: int) -> Question:
    target = rng.choice(COLORS)
    k = rng.randint(1, 5)
    n = rng.randint(max(3, k + 1), 8)
    hits = [(target, rng.choice(SHAPES)) for _ in range(k)]
    rest = _random_combos(rng, n - k, [cs for cs in ALL_COMBOS if cs[0] != target])
    objects = _place(rng, hits + rest, ALL_CELLS)
    return _grid_question(objects, size, f"How many {target} shapes are there?", k, "count_color")


def count_shape(rng: random.Random, size: int) -> Question:
    target = rng.choice(SHAPES)
    k = rng.randint(1, 5)
    n = rng.randint(max(3, k + 1), 8)
    hits = [(rng.choice(COLORS), target) for _ in range(k)]
    rest = _random_combos(rng, n - k, [cs for cs in ALL_COMBOS if cs[1] != target])
    objects = _place(rng, hits + rest, ALL_CELLS)
    return _grid_question(objects, size, f"How many {PLURAL[target]} are there?", k, "count_shape")


def count_color_shape(rng: random.Random, size: int) -> Question:
    color, shape = rng.choice(COLORS), rng.choice(SHAPES)
    k = rng.randint(1, 4)
    n = rng.randint(k + 2, 8)
    # At least one distractor shares the colour and one shares the shape: both attributes matter.
    same_color = (color, rng.choice([s for s in SHAPES if s != shape]))
    same_shape = (rng.choice([c for c in COLORS if c != color]), shape)
    rest = _random_combos(rng, n - k - 2, [cs for cs in ALL_COMBOS if cs != (color, shape)])
    objects = _place(rng, [(color, shape)] * k + [same_color, same_shape] + rest, ALL_CELLS)
    question = f"How many {color} {PLURAL[shape]} are there?"
    return _grid_question(objects, size, question, k, "count_color_shape")


def count_color_or(rng: random.Random, size: int) -> Question:
    first, second = sorted(rng.sample(COLORS, 2), key=COLORS.index)
    k = rng.randint(2, 6)
    n = rng.randint(k + 1, 8)
    hits = _random_combos(rng, k, [cs for cs in ALL_COMBOS if cs[0] in (first, second)])
    rest = _random_combos(rng, n - k, [cs for cs in ALL_COMBOS if cs[0] not in (first, second)])
    objects = _place(rng, hits + rest, ALL_CELLS)
    question = f"How many shapes are {first} or {second}?"
    return _grid_question(objects, size, question, k, "count_color_or")


COUNT = Family(
    name="count",
    description="3-8 coloured shapes in a 4x4 grid; count all, by one attribute, or by two",
    makers={1: (count_all,), 2: (count_color, count_shape), 3: (count_color_shape, count_color_or)},
    answer_spaces={
        "count_all": _ints(3, 8),
        "count_color": _ints(1, 5),
        "count_shape": _ints(1, 5),
        "count_color_shape": _ints(1, 4),
        "count_color_or": _ints(2, 6),
    },
)


# --------------------------------------------------------------------------------------------------
# spatial

DIRECTIONS: dict[str, tuple[int, int]] = {"above": (-1, 0), "below": (1, 0), "left": (0, -1), "right": (0, 1)}
RELATION_TEXT = {"above": "above", "below": "below", "left": "to the left of", "right": "to the right of"}


def _name(obj: GridObject) -> str:
    return f"the {obj.color} {obj.shape}"


def _holds(direction: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Is cell `a` strictly in `direction` of cell `b`?"""
    return {
        "above": a[0] < b[0],
        "below": a[0] > b[0],
        "left": a[1] < b[1],
        "right": a[1] > b[1],
    }[direction]


def _unique_combos(
    rng: random.Random, n: int, first: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """`first` followed by distinct (colour, shape) pairs not in it, n in total."""
    pool = [cs for cs in ALL_COMBOS if cs not in first]
    return list(first) + rng.sample(pool, n - len(first))


def spatial_relation(rng: random.Random, size: int) -> Question:
    n = rng.randint(2, 4)
    direction = rng.choice(list(DIRECTIONS))
    answer = rng.choice(("yes", "no"))
    axis = 0 if direction in ("above", "below") else 1
    while True:
        a_cell, b_cell = rng.sample(ALL_CELLS, 2)
        if a_cell[axis] != b_cell[axis] and _holds(direction, a_cell, b_cell) == (answer == "yes"):
            break
    combos = _unique_combos(rng, n)
    others = [c for c in ALL_CELLS if c not in (a_cell, b_cell)]
    cells = [a_cell, b_cell, *rng.sample(others, n - 2)]
    objects = [GridObject(c, s, r, k) for (c, s), (r, k) in zip(combos, cells, strict=True)]
    question = f"Is {_name(objects[0])} {RELATION_TEXT[direction]} {_name(objects[1])}?"
    return _grid_question(objects, size, question, answer, "spatial_relation")


def spatial_neighbor_color(rng: random.Random, size: int) -> Question:
    n = rng.randint(2, 4)
    direction = rng.choice(list(DIRECTIONS))
    dr, dc = DIRECTIONS[direction]
    ref_cell = rng.choice([(r, c) for r, c in ALL_CELLS if 0 <= r + dr < N_CELLS and 0 <= c + dc < N_CELLS])
    nb_cell = (ref_cell[0] + dr, ref_cell[1] + dc)
    answer = rng.choice(COLORS)
    ref_combo = rng.choice(ALL_COMBOS)
    nb_combo = rng.choice([(answer, s) for s in SHAPES if (answer, s) != ref_combo])
    combos = _unique_combos(rng, n, [ref_combo, nb_combo])
    others = [c for c in ALL_CELLS if c not in (ref_cell, nb_cell)]
    cells = [ref_cell, nb_cell, *rng.sample(others, n - 2)]
    objects = [GridObject(c, s, r, k) for (c, s), (r, k) in zip(combos, cells, strict=True)]
    where = "directly " + RELATION_TEXT[direction]
    question = f"What colour is the shape {where} {_name(objects[0])}?"
    return _grid_question(objects, size, question, answer, "spatial_neighbor_color")


def spatial_count_direction(rng: random.Random, size: int) -> Question:
    direction = rng.choice(list(DIRECTIONS))
    k = rng.randint(0, 3)
    n = rng.randint(k + 2, 6)
    while True:
        ref_cell = rng.choice(ALL_CELLS)
        region = [c for c in ALL_CELLS if _holds(direction, c, ref_cell)]
        outside = [c for c in ALL_CELLS if c != ref_cell and c not in region]
        if len(region) >= k and len(outside) >= n - 1 - k:
            break
    cells = [ref_cell, *rng.sample(region, k), *rng.sample(outside, n - 1 - k)]
    combos = _unique_combos(rng, n)
    objects = [GridObject(c, s, r, q) for (c, s), (r, q) in zip(combos, cells, strict=True)]
    question = f"How many shapes are {RELATION_TEXT[direction]} {_name(objects[0])}?"
    return _grid_question(objects, size, question, k, "spatial_count_direction")


SPATIAL = Family(
    name="spatial",
    description="2-6 shapes with distinct (colour, shape) in a 4x4 grid; relations between them",
    makers={1: (spatial_relation,), 2: (spatial_neighbor_color,), 3: (spatial_count_direction,)},
    answer_spaces={
        "spatial_relation": ("yes", "no"),
        "spatial_neighbor_color": COLORS,
        "spatial_count_direction": _ints(0, 3),
    },
)


# --------------------------------------------------------------------------------------------------
# bar_chart

N_BARS = 4
MAX_VALUE = 7


def _bar_chart(rng: random.Random, size: int, values: list[int]) -> tuple[Image.Image, list[str], str]:
    colors = rng.sample(COLORS, N_BARS)
    image, canvas = draw.new_canvas(size)
    draw.draw_unit_grid(canvas, size, horizontal_only=True)
    for column, (color, value) in enumerate(zip(colors, values, strict=True)):
        draw.draw_bar(canvas, column, value, color, size)
    parts = ", ".join(f"{c} {v}" for c, v in zip(colors, values, strict=True))
    return image, colors, f"A bar chart with {N_BARS} bars from left to right: {parts}."


def bar_value(rng: random.Random, size: int) -> Question:
    values = [rng.randint(1, MAX_VALUE) for _ in range(N_BARS)]
    image, colors, caption = _bar_chart(rng, size, values)
    i = rng.randrange(N_BARS)
    return Question(image, f"What is the value of the {colors[i]} bar?", str(values[i]), caption, "bar_value")


def bar_max_color(rng: random.Random, size: int) -> Question:
    top = rng.randint(2, MAX_VALUE)
    values = [rng.randint(1, top - 1) for _ in range(N_BARS - 1)]
    i = rng.randrange(N_BARS)
    values.insert(i, top)
    image, colors, caption = _bar_chart(rng, size, values)
    return Question(image, "Which colour is the tallest bar?", colors[i], caption, "bar_max_color")


def bar_max_value(rng: random.Random, size: int) -> Question:
    top = rng.randint(2, MAX_VALUE)
    values = [rng.randint(1, top) for _ in range(N_BARS - 1)]
    values.insert(rng.randrange(N_BARS), top)
    image, _, caption = _bar_chart(rng, size, values)
    return Question(image, "What is the largest value in the chart?", str(top), caption, "bar_max_value")


def bar_diff(rng: random.Random, size: int) -> Question:
    diff = rng.randint(1, MAX_VALUE - 1)
    low = rng.randint(1, MAX_VALUE - diff)
    i, j = rng.sample(range(N_BARS), 2)
    values = [rng.randint(1, MAX_VALUE) for _ in range(N_BARS)]
    values[i], values[j] = (low + diff, low) if rng.random() < 0.5 else (low, low + diff)
    image, colors, caption = _bar_chart(rng, size, values)
    question = f"What is the difference between the {colors[i]} bar and the {colors[j]} bar?"
    return Question(image, question, str(diff), caption, "bar_diff")


def bar_sum(rng: random.Random, size: int) -> Question:
    total = rng.randint(2, 2 * MAX_VALUE)
    first = rng.randint(max(1, total - MAX_VALUE), min(MAX_VALUE, total - 1))
    i, j = sorted(rng.sample(range(N_BARS), 2))
    values = [rng.randint(1, MAX_VALUE) for _ in range(N_BARS)]
    values[i], values[j] = first, total - first
    image, colors, caption = _bar_chart(rng, size, values)
    question = f"What is the sum of the {colors[i]} and {colors[j]} bars?"
    return Question(image, question, str(total), caption, "bar_sum")


BAR_CHART = Family(
    name="bar_chart",
    description="4 bars of distinct colours with values 1-7 on a unit grid; read, compare, combine",
    makers={1: (bar_value,), 2: (bar_max_color, bar_max_value), 3: (bar_diff, bar_sum)},
    answer_spaces={
        "bar_value": _ints(1, MAX_VALUE),
        "bar_max_color": COLORS,
        "bar_max_value": _ints(2, MAX_VALUE),
        "bar_diff": _ints(1, MAX_VALUE - 1),
        "bar_sum": _ints(2, 2 * MAX_VALUE),
    },
)


# --------------------------------------------------------------------------------------------------
# grid_geometry


@dataclass(frozen=True)
class Rect:
    color: str
    col: int  # 0-based unit column of the top left cell
    row: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height

    def apart_from(self, other: Rect) -> bool:
        """No shared cell and no shared edge (at least one empty unit between them)."""
        return (
            self.col + self.width < other.col
            or other.col + other.width < self.col
            or self.row + self.height < other.row
            or other.row + other.height < self.row
        )


def _random_rect(rng: random.Random, color: str, max_side: int) -> Rect:
    width, height = rng.randint(1, max_side), rng.randint(1, max_side)
    return Rect(color, rng.randint(0, draw.UNITS - width), rng.randint(0, draw.UNITS - height), width, height)


def _geometry_scene(rects: Sequence[Rect], size: int) -> tuple[Image.Image, str]:
    image, canvas = draw.new_canvas(size)
    for rect in rects:
        draw.draw_unit_rect(canvas, rect.col, rect.row, rect.width, rect.height, rect.color, size)
    draw.draw_unit_grid(canvas, size)
    for rect in rects:  # outlines on top of the grid so the edges stay crisp
        unit = draw.unit_size(size)
        canvas.rectangle(
            (
                rect.col * unit,
                rect.row * unit,
                (rect.col + rect.width) * unit,
                (rect.row + rect.height) * unit,
            ),
            outline=draw.BLACK,
            width=max(1, size // 56),
        )
    noun = "rectangle" if len(rects) == 1 else "rectangles"
    parts = [
        f"{r.color} rectangle {r.width} wide and {r.height} tall with top left cell at row {r.row + 1} "
        f"column {r.col + 1}"
        for r in rects
    ]
    caption = (
        f"An {draw.UNITS} by {draw.UNITS} unit grid shows {len(rects)} {noun}: " + "; ".join(parts) + "."
    )
    return image, caption


def _two_rects(rng: random.Random) -> tuple[Rect, Rect]:
    first_color, second_color = rng.sample(COLORS, 2)
    while True:
        a, b = _random_rect(rng, first_color, 4), _random_rect(rng, second_color, 4)
        if a.apart_from(b) and a.area != b.area:
            return a, b


def rect_area(rng: random.Random, size: int) -> Question:
    rect = _random_rect(rng, rng.choice(COLORS), 6)
    image, caption = _geometry_scene([rect], size)
    return Question(
        image, "What is the area of the rectangle in grid units?", str(rect.area), caption, "rect_area"
    )


def rect_perimeter(rng: random.Random, size: int) -> Question:
    rect = _random_rect(rng, rng.choice(COLORS), 6)
    image, caption = _geometry_scene([rect], size)
    answer = str(2 * (rect.width + rect.height))
    return Question(
        image, "What is the perimeter of the rectangle in grid units?", answer, caption, "rect_perimeter"
    )


def rect_total_area(rng: random.Random, size: int) -> Question:
    a, b = _two_rects(rng)
    image, caption = _geometry_scene([a, b], size)
    question = "What is the total area of the two rectangles in grid units?"
    return Question(image, question, str(a.area + b.area), caption, "rect_total_area")


def rect_area_diff(rng: random.Random, size: int) -> Question:
    a, b = _two_rects(rng)
    image, caption = _geometry_scene([a, b], size)
    question = (
        f"What is the difference between the areas of the {a.color} rectangle and the {b.color} rectangle?"
    )
    return Question(image, question, str(abs(a.area - b.area)), caption, "rect_area_diff")


_SMALL_AREAS = sorted({w * h for w in range(1, 5) for h in range(1, 5)})
GRID_GEOMETRY = Family(
    name="grid_geometry",
    description="filled rectangles on a faint 8x8 unit grid; area, perimeter, sums and differences",
    makers={1: (rect_area,), 2: (rect_perimeter,), 3: (rect_total_area, rect_area_diff)},
    answer_spaces={
        "rect_area": tuple(str(v) for v in sorted({w * h for w in range(1, 7) for h in range(1, 7)})),
        "rect_perimeter": tuple(str(2 * s) for s in range(2, 13)),
        "rect_total_area": tuple(
            str(v) for v in sorted({a + b for a in _SMALL_AREAS for b in _SMALL_AREAS if a != b})
        ),
        "rect_area_diff": tuple(
            str(v) for v in sorted({abs(a - b) for a in _SMALL_AREAS for b in _SMALL_AREAS} - {0})
        ),
    },
)


# --------------------------------------------------------------------------------------------------
# table


def _table(size: int, digits: list[int]) -> tuple[Image.Image, str]:
    image, canvas = draw.new_canvas(size)
    draw.draw_table_lines(canvas, size, 2, 2)
    half = size // 2
    for index, digit in enumerate(digits):
        row, col = divmod(index, 2)
        draw.draw_digit_in_cell(
            canvas, digit, (col * half, row * half, (col + 1) * half - 1, (row + 1) * half - 1)
        )
    caption = (
        f"A table with 2 rows and 2 columns: row 1 holds {digits[0]} and {digits[1]}; "
        f"row 2 holds {digits[2]} and {digits[3]}."
    )
    return image, caption


def table_cell(rng: random.Random, size: int) -> Question:
    digits = [rng.randint(0, 9) for _ in range(4)]
    image, caption = _table(size, digits)
    index = rng.randrange(4)
    row, col = divmod(index, 2)
    question = f"What is the number in row {row + 1}, column {col + 1}?"
    return Question(image, question, str(digits[index]), caption, "table_cell")


def table_line_sum(rng: random.Random, size: int) -> Question:
    total = rng.randint(1, 17)
    first = rng.randint(max(0, total - 9), min(9, total))
    digits = [rng.randint(0, 9) for _ in range(4)]
    if rng.random() < 0.5:
        line = rng.randrange(2)
        slots, text = (2 * line, 2 * line + 1), f"row {line + 1}"
    else:
        line = rng.randrange(2)
        slots, text = (line, line + 2), f"column {line + 1}"
    digits[slots[0]], digits[slots[1]] = first, total - first
    image, caption = _table(size, digits)
    return Question(
        image, f"What is the sum of the numbers in {text}?", str(total), caption, "table_line_sum"
    )


def table_total(rng: random.Random, size: int) -> Question:
    total = rng.randint(6, 30)
    while True:
        digits = [rng.randint(0, 9) for _ in range(3)]
        last = total - sum(digits)
        if 0 <= last <= 9:
            break
    digits.insert(rng.randrange(4), last)
    image, caption = _table(size, digits)
    return Question(image, "What is the sum of all four numbers?", str(total), caption, "table_total")


def table_range(rng: random.Random, size: int) -> Question:
    spread = rng.randint(1, 9)
    low = rng.randint(0, 9 - spread)
    digits = [low, low + spread, rng.randint(low, low + spread), rng.randint(low, low + spread)]
    rng.shuffle(digits)
    image, caption = _table(size, digits)
    question = "What is the largest number in the table minus the smallest number?"
    return Question(image, question, str(spread), caption, "table_range")


TABLE = Family(
    name="table",
    description="a 2x2 table of large seven-segment digits; read a cell, add a line, add all, range",
    makers={1: (table_cell,), 2: (table_line_sum,), 3: (table_total, table_range)},
    answer_spaces={
        "table_cell": _ints(0, 9),
        "table_line_sum": _ints(1, 17),
        "table_total": _ints(6, 30),
        "table_range": _ints(1, 9),
    },
)


# --------------------------------------------------------------------------------------------------
# clock


def _clock(rng: random.Random, size: int, hour: int) -> tuple[Image.Image, str, str]:
    """The clock image, its caption, and its scene key: hour and colours, without the jitter.

    Clocks that differ only by a pixel or two of centre/radius jitter are near-duplicates for the
    contamination guard, so the split is decided by the scene key, not by the image bytes.
    """
    rim = rng.choice(COLORS)
    hand = rng.choice([c for c in COLORS if c != rim])
    jitter = max(1, size // 28)
    center = (size // 2 + rng.randint(-jitter, jitter), size // 2 + rng.randint(-jitter, jitter))
    radius = size * 2 // 5 + rng.randint(-(jitter // 2), 0)
    image, canvas = draw.new_canvas(size)
    draw.draw_clock(canvas, center, radius, hour, draw.COLORS[rim], draw.COLORS[hand], size)
    caption = f"An analog clock whose hour hand points at {hour} and minute hand at 12."
    return image, caption, f"clock:{hour}:{rim}:{hand}"


def _hours(k: int) -> str:
    return "1 hour" if k == 1 else f"{k} hours"


def clock_hour(rng: random.Random, size: int) -> Question:
    hour = rng.randint(1, 12)
    image, caption, scene = _clock(rng, size, hour)
    return Question(image, "What hour does the clock show?", str(hour), caption, "clock_hour", scene)


def clock_add(rng: random.Random, size: int) -> Question:
    hour, k = rng.randint(1, 12), rng.randint(1, 11)
    image, caption, scene = _clock(rng, size, hour)
    answer = (hour - 1 + k) % 12 + 1
    return Question(image, f"What hour will it be in {_hours(k)}?", str(answer), caption, "clock_add", scene)


def clock_sub(rng: random.Random, size: int) -> Question:
    hour, k = rng.randint(1, 12), rng.randint(1, 11)
    image, caption, scene = _clock(rng, size, hour)
    answer = (hour - 1 - k) % 12 + 1
    return Question(image, f"What hour was it {_hours(k)} ago?", str(answer), caption, "clock_sub", scene)


def clock_until_12(rng: random.Random, size: int) -> Question:
    hour = rng.randint(1, 11)
    image, caption, scene = _clock(rng, size, hour)
    question = "How many hours are there from the time shown until 12 o'clock?"
    return Question(image, question, str(12 - hour), caption, "clock_until_12", scene)


CLOCK = Family(
    name="clock",
    description="an analog clock on the hour; read the hour, add or subtract hours around the dial",
    makers={1: (clock_hour,), 2: (clock_add,), 3: (clock_sub, clock_until_12)},
    answer_spaces={
        "clock_hour": _ints(1, 12),
        "clock_add": _ints(1, 12),
        "clock_sub": _ints(1, 12),
        "clock_until_12": _ints(1, 11),
    },
)


FAMILIES: dict[str, Family] = {f.name: f for f in (COUNT, BAR_CHART, GRID_GEOMETRY, TABLE, SPATIAL, CLOCK)}
ANSWER_SPACES: dict[str, tuple[str, ...]] = {
    qtype: space for family in FAMILIES.values() for qtype, space in family.answer_spaces.items()
}
