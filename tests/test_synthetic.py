"""Synthetic sources: determinism, split disjointness, valid records, answers that match the scene.

The answer checks re-derive every answer from the caption text with small parsers written here,
independently of the generator; the pixel checks confirm the caption describes the picture.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image

from vlthinker.errors import DatasetError
from vlthinker.records import Record, read_records, sha256_bytes, write_dataset
from vlthinker.sources import draw
from vlthinker.sources.generate import (
    ALL_TASKS,
    TASKS,
    chance_accuracy,
    check_disjoint,
    generate_dataset,
    generate_items,
    normalize_question,
    split_of_sha,
)
from vlthinker.sources.synthetic import ANSWER_SPACES

COLOR_RGB = dict(draw.COLORS)
WHITE = (255, 255, 255)
REL = r"(above|below|to the left of|to the right of)"


# --------------------------------------------------------------------------------------------------
# Fixtures: generated once per module, never written outside tmp dirs


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("syn") / "train", n=360, seed=7, split="train")


@pytest.fixture(scope="module")
def heldout_dir(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("syn") / "heldout", n=360, seed=7, split="heldout")


@pytest.fixture(scope="module")
def many_items() -> list[tuple[Record, bytes]]:
    return list(generate_items(1500, seed=11, split="train"))


def _image(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


def _dir_bytes(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# Independent caption parsers and answer recomputation


def parse_grid(caption: str) -> list[tuple[str, str, int, int]]:
    m = re.fullmatch(r"A 4 by 4 grid holds (\d+) shapes?: (.*)\.", caption)
    assert m, caption
    objs = []
    for part in m.group(2).split("; "):
        pm = re.fullmatch(r"(\w+) (circle|square|triangle) at row (\d) column (\d)", part)
        assert pm, part
        objs.append((pm.group(1), pm.group(2), int(pm.group(3)), int(pm.group(4))))
    assert len(objs) == int(m.group(1))
    return objs


def answer_count(question: str, caption: str) -> str:
    objs = parse_grid(caption)
    singular = {"circles": "circle", "squares": "square", "triangles": "triangle"}
    if question == "How many shapes are there?":
        return str(len(objs))
    if m := re.fullmatch(r"How many shapes are (\w+) or (\w+)\?", question):
        return str(sum(o[0] in m.groups() for o in objs))
    if m := re.fullmatch(r"How many (\w+) shapes are there\?", question):
        return str(sum(o[0] == m.group(1) for o in objs))
    if m := re.fullmatch(r"How many (circles|squares|triangles) are there\?", question):
        return str(sum(o[1] == singular[m.group(1)] for o in objs))
    if m := re.fullmatch(r"How many (\w+) (circles|squares|triangles) are there\?", question):
        return str(sum(o[0] == m.group(1) and o[1] == singular[m.group(2)] for o in objs))
    raise AssertionError(question)


def _strictly(rel: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    (ar, ac), (br, bc) = a, b
    return {"above": ar < br, "below": ar > br, "to the left of": ac < bc, "to the right of": ac > bc}[rel]


def answer_spatial(question: str, caption: str) -> str:
    objs = parse_grid(caption)
    where = {(c, s): (r, k) for c, s, r, k in objs}
    assert len(where) == len(objs), "spatial scenes have unique (colour, shape)"
    if m := re.fullmatch(rf"Is the (\w+) (\w+) {REL} the (\w+) (\w+)\?", question):
        a, rel, b = (m.group(1), m.group(2)), m.group(3), (m.group(4), m.group(5))
        axis = 0 if rel in ("above", "below") else 1
        assert where[a][axis] != where[b][axis], "relation must not be ambiguous"
        return "yes" if _strictly(rel, where[a], where[b]) else "no"
    if m := re.fullmatch(rf"What colour is the shape directly {REL} the (\w+) (\w+)\?", question):
        r, k = where[(m.group(2), m.group(3))]
        dr, dc = {"above": (-1, 0), "below": (1, 0), "to the left of": (0, -1), "to the right of": (0, 1)}[
            m.group(1)
        ]
        (hit,) = [c for c, _, rr, kk in objs if (rr, kk) == (r + dr, k + dc)]
        return hit
    if m := re.fullmatch(rf"How many shapes are {REL} the (\w+) (\w+)\?", question):
        ref = where[(m.group(2), m.group(3))]
        return str(sum(_strictly(m.group(1), (r, k), ref) for _, _, r, k in objs))
    raise AssertionError(question)


def answer_bar_chart(question: str, caption: str) -> str:
    m = re.fullmatch(r"A bar chart with 4 bars from left to right: (.*)\.", caption)
    assert m, caption
    bars = {c: int(v) for c, v in (p.split(" ") for p in m.group(1).split(", "))}
    assert len(bars) == 4
    if m := re.fullmatch(r"What is the value of the (\w+) bar\?", question):
        return str(bars[m.group(1)])
    if question == "Which colour is the tallest bar?":
        top = max(bars.values())
        (color,) = [c for c, v in bars.items() if v == top]
        return color
    if question == "What is the largest value in the chart?":
        return str(max(bars.values()))
    if m := re.fullmatch(r"What is the difference between the (\w+) bar and the (\w+) bar\?", question):
        return str(abs(bars[m.group(1)] - bars[m.group(2)]))
    if m := re.fullmatch(r"What is the sum of the (\w+) and (\w+) bars\?", question):
        return str(bars[m.group(1)] + bars[m.group(2)])
    raise AssertionError(question)


def parse_rects(caption: str) -> list[tuple[str, int, int, int, int]]:
    m = re.fullmatch(r"An 8 by 8 unit grid shows (\d) rectangles?: (.*)\.", caption)
    assert m, caption
    pat = r"(\w+) rectangle (\d) wide and (\d) tall with top left cell at row (\d) column (\d)"
    rects = [re.fullmatch(pat, p) for p in m.group(2).split("; ")]
    assert all(rects) and len(rects) == int(m.group(1))
    return [(r.group(1), *map(int, r.groups()[1:])) for r in rects]  # type: ignore[union-attr]


def answer_grid_geometry(question: str, caption: str) -> str:
    rects = parse_rects(caption)
    areas = {c: w * h for c, w, h, _, _ in rects}
    if question.startswith("What is the area of the rectangle"):
        return str(rects[0][1] * rects[0][2])
    if question.startswith("What is the perimeter of the rectangle"):
        return str(2 * (rects[0][1] + rects[0][2]))
    if question.startswith("What is the total area of the two rectangles"):
        return str(sum(areas.values()))
    if m := re.fullmatch(
        r"What is the difference between the areas of the (\w+) rectangle and the (\w+) rectangle\?", question
    ):
        return str(abs(areas[m.group(1)] - areas[m.group(2)]))
    raise AssertionError(question)


def answer_table(question: str, caption: str) -> str:
    m = re.fullmatch(
        r"A table with 2 rows and 2 columns: row 1 holds (\d) and (\d); row 2 holds (\d) and (\d)\.", caption
    )
    assert m, caption
    grid = [[int(m.group(1)), int(m.group(2))], [int(m.group(3)), int(m.group(4))]]
    flat = grid[0] + grid[1]
    if q := re.fullmatch(r"What is the number in row (\d), column (\d)\?", question):
        return str(grid[int(q.group(1)) - 1][int(q.group(2)) - 1])
    if q := re.fullmatch(r"What is the sum of the numbers in row (\d)\?", question):
        return str(sum(grid[int(q.group(1)) - 1]))
    if q := re.fullmatch(r"What is the sum of the numbers in column (\d)\?", question):
        return str(sum(row[int(q.group(1)) - 1] for row in grid))
    if question == "What is the sum of all four numbers?":
        return str(sum(flat))
    if question == "What is the largest number in the table minus the smallest number?":
        return str(max(flat) - min(flat))
    raise AssertionError(question)


def answer_clock(question: str, caption: str) -> str:
    m = re.fullmatch(r"An analog clock whose hour hand points at (\d+) and minute hand at 12\.", caption)
    assert m, caption
    hour = int(m.group(1))
    assert 1 <= hour <= 12
    on_dial = [12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    if question == "What hour does the clock show?":
        return str(hour)
    if q := re.fullmatch(r"What hour will it be in (\d+) hours?\?", question):
        return str(on_dial[(hour + int(q.group(1))) % 12])
    if q := re.fullmatch(r"What hour was it (\d+) hours? ago\?", question):
        return str(on_dial[(hour - int(q.group(1))) % 12])
    if question == "How many hours are there from the time shown until 12 o'clock?":
        return str(12 - hour)
    raise AssertionError(question)


SOLVERS = {
    "count": answer_count,
    "spatial": answer_spatial,
    "bar_chart": answer_bar_chart,
    "grid_geometry": answer_grid_geometry,
    "table": answer_table,
    "clock": answer_clock,
}


# --------------------------------------------------------------------------------------------------
# Tests


def test_registry_has_six_families_with_three_difficulties():
    assert set(SOLVERS) == set(ALL_TASKS) == set(TASKS)
    for family in TASKS.values():
        assert sorted(family.makers) == [1, 2, 3]


def test_same_arguments_give_byte_identical_datasets(tmp_path):
    a = generate_dataset(tmp_path / "a", n=60, seed=3, split="train")
    b = generate_dataset(tmp_path / "b", n=60, seed=3, split="train")
    files_a, files_b = _dir_bytes(a), _dir_bytes(b)
    assert files_a == files_b
    assert len([f for f in files_a if f.startswith("images/")]) == 60
    c = generate_dataset(tmp_path / "c", n=60, seed=4, split="train")
    assert (c / "records.jsonl").read_bytes() != files_a["records.jsonl"]


def test_generation_does_not_depend_on_the_process_hash_seed():
    code = (
        "import hashlib; from vlthinker.sources.generate import generate_items;"
        "h = hashlib.sha256();"
        "[h.update(r.model_dump_json().encode() + p) for r, p in generate_items(24, 5, 'heldout')];"
        "print(h.hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    h = hashlib.sha256()
    for record, png in generate_items(24, 5, "heldout"):
        h.update(record.model_dump_json().encode() + png)
    assert out.stdout.strip() == h.hexdigest()


def test_train_and_heldout_are_disjoint(train_dir, heldout_dir):
    train, heldout = read_records(train_dir), read_records(heldout_dir)
    assert len(train) == len(heldout) == 360
    assert {r.image_sha256 for r in train}.isdisjoint({r.image_sha256 for r in heldout})
    keys = lambda rs: {(r.image_sha256, normalize_question(r.question)) for r in rs}  # noqa: E731
    assert keys(train).isdisjoint(keys(heldout))
    assert all(r.split == "train" for r in train) and all(r.split == "heldout" for r in heldout)
    # families without a scene key are split by image hash (clocks by their scene: see below)
    assert all(split_of_sha(r.image_sha256) == "train" for r in train if r.task != "clock")
    assert all(split_of_sha(r.image_sha256) == "heldout" for r in heldout if r.task != "clock")
    assert check_disjoint(train_dir, heldout_dir) == {"train": 360, "heldout": 360}


def test_no_duplicate_image_question_pairs_within_a_dataset(many_items):
    keys = [(r.image_sha256, normalize_question(r.question)) for r, _ in many_items]
    assert len(keys) == len(set(keys))


def test_check_disjoint_detects_a_planted_overlap(tmp_path, train_dir, heldout_dir):
    heldout = read_records(heldout_dir)
    leaked = read_records(train_dir)[5]
    leaked_png = (train_dir / leaked.image).read_bytes()
    planted = leaked.model_copy(
        update={"id": "planted-copy", "image": "images/planted-copy.png", "split": "heldout"}
    )
    items = [(r, (heldout_dir / r.image).read_bytes()) for r in heldout[:20]] + [(planted, leaked_png)]
    bad = write_dataset(tmp_path / "bad", items)
    with pytest.raises(DatasetError, match=r"planted-copy") as err:
        check_disjoint(train_dir, bad)
    assert leaked.id in str(err.value)

    # Same pixels, different PNG bytes: the pixel hash still catches it.
    buffer = io.BytesIO()
    _image(leaked_png).save(buffer, format="PNG", compress_level=1)
    recoded = buffer.getvalue()
    assert recoded != leaked_png
    planted2 = planted.model_copy(update={"image_sha256": sha256_bytes(recoded)})
    bad2 = write_dataset(tmp_path / "bad2", [*items[:-1], (planted2, recoded)])
    with pytest.raises(DatasetError, match=r"pixels .*planted-copy"):
        check_disjoint(train_dir, bad2)


def test_every_family_and_difficulty_gives_valid_records(train_dir):
    records = read_records(train_dir)  # validated by the pydantic contract on read
    seen = {(r.task, r.difficulty) for r in records}
    assert seen == {(t, d) for t in ALL_TASKS for d in (1, 2, 3)}
    per_task = Counter(r.task for r in records)
    assert set(per_task.values()) == {60}
    for r in records:
        assert r.source == "synthetic" and r.caption_exact and r.caption
        assert r.image == f"images/{r.id}.png"
        assert sha256_bytes((train_dir / r.image).read_bytes()) == r.image_sha256
        assert r.answer in ANSWER_SPACES[r.question_type]  # type: ignore[attr-defined]
        assert len(r.caption.split()) <= 65
    stats = json.loads((train_dir / "stats.json").read_text())
    assert stats["count"] == 360 and stats["per_task"] == dict.fromkeys(ALL_TASKS, 60)
    assert stats["per_difficulty"] == {"1": 120, "2": 120, "3": 120}
    assert sum(stats["per_question_type"].values()) == 360
    assert stats["arguments"]["seed"] == 7 and stats["arguments"]["split"] == "train"


def test_answers_follow_from_the_captions(many_items):
    for record, _ in many_items:
        assert SOLVERS[record.task](record.question, record.caption) == record.answer, record.id


def test_answer_distributions_are_not_degenerate(many_items):
    answers: dict[str, Counter] = defaultdict(Counter)
    for record, _ in many_items:
        answers[record.question_type][record.answer] += 1  # type: ignore[attr-defined]
    assert len(answers) == len(ANSWER_SPACES)
    for qtype, counts in answers.items():
        share = counts.most_common(1)[0][1] / sum(counts.values())
        if set(ANSWER_SPACES[qtype]) == {"yes", "no"}:
            assert 0.3 <= share <= 0.7 and len(counts) == 2, (qtype, counts)
        else:
            assert share < 0.5, (qtype, counts)
            assert len(counts) >= 3, (qtype, counts)


def test_chance_accuracy():
    assert chance_accuracy("spatial_relation") == 0.5
    assert chance_accuracy("clock_hour") == pytest.approx(1 / 12)
    assert chance_accuracy("bar_max_color") == pytest.approx(1 / 5)
    assert all(0 < chance_accuracy(q) <= 0.5 for q in ANSWER_SPACES)
    with pytest.raises(ValueError, match="unknown question type"):
        chance_accuracy("nope")


@pytest.mark.parametrize("size", [112, 224])
def test_images_are_square_rgb_pngs(size):
    items = list(generate_items(18, seed=1, split="train", image_size=size))
    assert {r.task for r, _ in items} == set(ALL_TASKS)
    for _, png in items:
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        image = _image(png)
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (size, size)


def _grid_cell_centre(image: Image.Image, row: int, col: int) -> tuple[int, int, int]:
    cell = image.width // 4
    return image.getpixel((col * cell + cell // 2, row * cell + cell // 2 + cell // 8))


@pytest.mark.parametrize("size", [112, 224])
def test_pixels_match_captions(size):
    items = list(generate_items(72, seed=2, split="train", image_size=size))
    for record, png in items:
        image = _image(png).convert("RGB")
        if record.task in ("count", "spatial"):
            objs = {(r - 1, c - 1): color for color, _, r, c in parse_grid(record.caption)}
            for row in range(4):
                for col in range(4):
                    want = COLOR_RGB[objs[(row, col)]] if (row, col) in objs else WHITE
                    assert _grid_cell_centre(image, row, col) == want, (record.id, row, col)
        elif record.task == "bar_chart":
            bars = re.findall(r"(\w+) (\d)", record.caption.split(": ")[1])
            for col, (color, value) in enumerate(bars):
                x = col * size // 4 + size // 8
                height = sum(image.getpixel((x, y)) == COLOR_RGB[color] for y in range(size))
                assert height == int(value) * size // 8, (record.id, color)
        elif record.task == "grid_geometry":
            unit = size // 8
            for color, w, h, row, col in parse_rects(record.caption):
                for r in range(row - 1, row - 1 + h):
                    for c in range(col - 1, col - 1 + w):
                        assert (
                            image.getpixel((c * unit + unit // 2 - 1, r * unit + unit // 2 - 1))
                            == COLOR_RGB[color]
                        )
        elif record.task == "clock":
            _check_clock(image, int(re.search(r"points at (\d+)", record.caption).group(1)))


def _check_clock(image: Image.Image, hour: int) -> None:
    """The hand colour lies along the stated hour and nowhere along the other eleven."""
    x0, y0, x1, y1 = Image.eval(image.convert("L"), lambda v: 255 - v).getbbox()
    cx, cy, radius = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    saturated = set(COLOR_RGB.values())
    for h in range(1, 13):
        angle = math.radians(h * 30)
        pixel = image.getpixel(
            (round(cx + 0.42 * radius * math.sin(angle)), round(cy - 0.42 * radius * math.cos(angle)))
        )
        assert (pixel in saturated) == (h == hour), (hour, h, pixel)


def test_task_subset_and_progress_callback():
    calls: list[tuple[int, int]] = []
    items = list(
        generate_items(
            7, seed=0, split="heldout", tasks=["clock", "table"], progress=lambda i, n: calls.append((i, n))
        )
    )
    assert [r.task for r, _ in items] == ["clock", "table"] * 3 + ["clock"]
    assert [r.difficulty for r, _ in items] == [1, 1, 2, 2, 3, 3, 1]
    assert calls == [(i, 7) for i in range(1, 8)]
    ones = list(generate_items(4, seed=0, split="train", tasks=["count"], max_difficulty=1))
    assert {r.difficulty for r, _ in ones} == {1}


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"unknown task.*'nope'.*known tasks: count"):
        list(generate_items(3, seed=0, split="train", tasks=["count", "nope"]))
    with pytest.raises(ValueError, match="split"):
        list(generate_items(3, seed=0, split="test"))
    with pytest.raises(ValueError, match="image_size"):
        list(generate_items(3, seed=0, split="train", image_size=100))
    with pytest.raises(ValueError, match="max_difficulty"):
        list(generate_items(3, seed=0, split="train", max_difficulty=4))


def test_clock_renderings_that_differ_only_by_jitter_never_cross_splits():
    """Clocks with one hour and colours differ by a pixel or two: the contamination guard calls them
    near-duplicates, so they are split by scene, not by bytes (10k-item runs used to trip the guard)."""
    import numpy as np

    from vlthinker.validation.config import ValidationConfig
    from vlthinker.validation.contamination import perceptual_pairs
    from vlthinker.validation.images import thumbnail

    def thumbs(split: str, n: int) -> np.ndarray:
        pngs = [png for _, png in generate_items(n, seed=3, split=split, tasks=["clock"])]
        return np.stack(
            [
                np.frombuffer(thumbnail(Image.open(io.BytesIO(p))), dtype=np.uint8).reshape(16, 16, 3)
                for p in pngs
            ]
        )

    train, heldout = thumbs("train", 1200), thumbs("heldout", 300)
    assert perceptual_pairs(train, heldout, ValidationConfig().phash_max_distance) == []
