"""Drawing primitives for the synthetic sources (Pillow, aliased, deterministic).

Everything is sized from the image side `size` so a scene drawn at 112 px and at 224 px is the same
picture at two resolutions. Scenes are laid out on the vision tokens of a Qwen2.5-VL-style model:
14-px patches merged 2x2 means one token sees a 28x28 px block at 112 px, i.e. a quarter of the
side — so grid cells are `size // 4` wide and objects never straddle two tokens.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
GRID_GREY: RGB = (205, 205, 205)

# Big saturated colours that stay far apart after resizing and JPEG-free PNG encoding.
COLORS: dict[str, RGB] = {
    "red": (220, 30, 30),
    "green": (20, 160, 40),
    "blue": (30, 70, 230),
    "yellow": (240, 195, 0),
    "purple": (140, 45, 200),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

GRID_CELLS = 4  # cells per side of the object grid: one cell per merged vision token
UNITS = 8  # unit steps per side for bar charts and the geometry grid

# Seven-segment layout: a top, b top right, c bottom right, d bottom, e bottom left, f top left, g middle.
SEGMENTS: dict[int, str] = {
    0: "abcdef",
    1: "bc",
    2: "abdeg",
    3: "abcdg",
    4: "bcfg",
    5: "acdfg",
    6: "acdefg",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


def new_canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white RGB square and a drawing context on it."""
    image = Image.new("RGB", (size, size), WHITE)
    return image, ImageDraw.Draw(image)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with fixed settings and no metadata, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6, optimize=False)
    return buffer.getvalue()


def cell_size(size: int) -> int:
    return size // GRID_CELLS


def unit_size(size: int) -> int:
    return size // UNITS


def cell_box(row: int, col: int, size: int) -> Box:
    """Pixel box of grid cell (row, col), both 0-based, as inclusive corners."""
    cell = cell_size(size)
    return (col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1)


def inset(box: Box, margin: int) -> Box:
    x0, y0, x1, y1 = box
    return (x0 + margin, y0 + margin, x1 - margin, y1 - margin)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, color: RGB, box: Box) -> None:
    """Fill a circle, square or upward triangle inside `box` (inclusive corners)."""
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    elif shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def draw_cell_shape(draw: ImageDraw.ImageDraw, shape: str, color: str, row: int, col: int, size: int) -> None:
    """A shape filling most of one grid cell (a margin of ~1/9 of the cell on each side)."""
    margin = max(1, cell_size(size) // 9)
    draw_shape(draw, shape, COLORS[color], inset(cell_box(row, col, size), margin))


def draw_unit_grid(draw: ImageDraw.ImageDraw, size: int, horizontal_only: bool = False) -> None:
    """Faint lines every unit (size / 8 px), including the image border."""
    unit = unit_size(size)
    for step in range(UNITS + 1):
        pos = min(step * unit, size - 1)
        draw.line([(0, pos), (size - 1, pos)], fill=GRID_GREY, width=1)
        if not horizontal_only:
            draw.line([(pos, 0), (pos, size - 1)], fill=GRID_GREY, width=1)


def draw_bar(draw: ImageDraw.ImageDraw, column: int, value: int, color: str, size: int) -> None:
    """A bar standing on the bottom edge in token column `column`, `value` units tall."""
    cell = cell_size(size)
    unit = unit_size(size)
    margin = max(1, cell * 3 // 20)
    x0 = column * cell + margin
    x1 = (column + 1) * cell - 1 - margin
    draw.rectangle((x0, size - value * unit, x1, size - 1), fill=COLORS[color])


def draw_unit_rect(
    draw: ImageDraw.ImageDraw, col: int, row: int, width: int, height: int, color: str, size: int
) -> None:
    """A filled rectangle on the unit grid; (col, row) is its 0-based top-left unit cell."""
    unit = unit_size(size)
    draw.rectangle(
        (col * unit, row * unit, (col + width) * unit, (row + height) * unit),
        fill=COLORS[color],
        outline=BLACK,
        width=max(1, size // 56),
    )


def draw_digit(draw: ImageDraw.ImageDraw, digit: int, box: Box, color: RGB, thickness: int) -> None:
    """One seven-segment digit filling `box` (inclusive corners)."""
    x0, y0, x1, y1 = box
    mid = (y0 + y1) // 2
    half = thickness // 2
    rects = {
        "a": (x0, y0, x1, y0 + thickness - 1),
        "b": (x1 - thickness + 1, y0, x1, mid),
        "c": (x1 - thickness + 1, mid, x1, y1),
        "d": (x0, y1 - thickness + 1, x1, y1),
        "e": (x0, mid, x0 + thickness - 1, y1),
        "f": (x0, y0, x0 + thickness - 1, mid),
        "g": (x0, mid - half, x1, mid - half + thickness - 1),
    }
    for segment in SEGMENTS[digit]:
        draw.rectangle(rects[segment], fill=color)


def draw_digit_in_cell(draw: ImageDraw.ImageDraw, digit: int, cell: Box, color: RGB = BLACK) -> None:
    """A large digit centred in a table cell: ~0.45 of the cell wide, ~0.7 tall."""
    x0, y0, x1, _ = cell
    side = x1 - x0 + 1
    width, height = side * 9 // 20, side * 7 // 10
    left, top = x0 + (side - width) // 2, y0 + (side - height) // 2
    thickness = max(2, side // 9)
    draw_digit(draw, digit, (left, top, left + width - 1, top + height - 1), color, thickness)


def draw_table_lines(draw: ImageDraw.ImageDraw, size: int, rows: int, cols: int) -> None:
    """Border and separators of a table filling the image."""
    width = max(2, size // 56)
    for r in range(rows + 1):
        y = min(r * size // rows, size - 1)
        draw.line([(0, y), (size - 1, y)], fill=BLACK, width=width)
    for c in range(cols + 1):
        x = min(c * size // cols, size - 1)
        draw.line([(x, 0), (x, size - 1)], fill=BLACK, width=width)


def clock_point(center: tuple[int, int], length: float, hour: float) -> tuple[int, int]:
    """Pixel at `length` from `center` in the direction of `hour` on a clock face (12 = up)."""
    angle = math.radians(hour * 30.0)
    return (round(center[0] + length * math.sin(angle)), round(center[1] - length * math.cos(angle)))


def draw_clock(
    draw: ImageDraw.ImageDraw,
    center: tuple[int, int],
    radius: int,
    hour: int,
    rim_color: RGB,
    hand_color: RGB,
    size: int,
) -> None:
    """Face, 12 ticks (longer at 12, 3, 6, 9), a thick hour hand at `hour`, a thin minute hand at 12."""
    cx, cy = center
    rim = max(2, size // 28)
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=rim_color, width=rim)
    tick_width = max(2, size // 56)
    for mark in range(12):
        inner = radius * (0.72 if mark % 3 == 0 else 0.8)
        draw.line(
            [clock_point(center, inner, mark), clock_point(center, radius * 0.92, mark)],
            fill=BLACK,
            width=tick_width,
        )
    draw.line([center, clock_point(center, radius * 0.8, 12)], fill=BLACK, width=max(2, size // 56))
    draw.line([center, clock_point(center, radius * 0.6, hour)], fill=hand_color, width=max(3, size // 14))
    dot = max(2, size // 28)
    draw.ellipse((cx - dot, cy - dot, cx + dot, cy + dot), fill=BLACK)
