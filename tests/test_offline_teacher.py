"""The offline (scripted) teacher: exact when told not to err, realistic rates of slips and reflections,
varied lengths, deterministic chains, clear errors outside the synthetic families."""

from __future__ import annotations

import inspect
import re
import statistics

import pytest
from pydantic import ValidationError

from vlthinker.records import Record
from vlthinker.sources.generate import ALL_TASKS, generate_items
from vlthinker.sources.synthetic import ANSWER_SPACES
from vlthinker.teacher.offline import (
    OFFLINE_TEACHER_NAME,
    REFLECTION_MARKERS,
    OfflineTeacher,
    OfflineTeacherConfig,
    parse_question,
    parse_scene,
    solve,
)

RAW = re.compile(r"<think>\n(?P<think>.+)\n</think>\n\nThe answer is \\boxed\{(?P<answer>[^{}]+)\}\.", re.S)


@pytest.fixture(scope="module")
def items() -> list[Record]:
    return [record for record, _ in generate_items(300, seed=21, split="train")]


def _chains(records: list[Record], config: OfflineTeacherConfig, k: int = 1) -> list[tuple[Record, str]]:
    teacher = OfflineTeacher(config)
    return [
        (r, chain)
        for r in records
        for chain in teacher.sample(r.id, r.caption, r.question, r.task, r.question_type, k)  # type: ignore[attr-defined]
    ]


def _split(chain: str) -> tuple[str, str]:
    m = RAW.fullmatch(chain)
    assert m, chain
    return m.group("think"), m.group("answer").strip()


def _reflects(think: str) -> bool:
    return any(marker in think for marker in REFLECTION_MARKERS)


def test_items_cover_every_family_and_difficulty(items):
    assert {(r.task, r.difficulty) for r in items} == {(t, d) for t in ALL_TASKS for d in (1, 2, 3)}


def test_exact_without_slips_or_reflections(items):
    config = OfflineTeacherConfig(error_prob=0, reflection_prob=0, seed=1)
    for record, chain in _chains(items, config, k=2):
        think, answer = _split(chain)
        assert answer == record.answer.strip(), (record.id, chain)
        assert not _reflects(think), chain
        assert think.startswith(("Okay", "Alright")) and "caption" not in think.lower()


def test_every_slip_gives_a_wrong_plausible_answer(items):
    chains = _chains(items, OfflineTeacherConfig(error_prob=1.0, seed=2), k=2)
    answers = [(record, _split(chain)[1]) for record, chain in chains]
    assert all(answer != record.answer for record, answer in answers)
    inside = sum(answer in ANSWER_SPACES[record.question_type] for record, answer in answers)  # type: ignore[attr-defined]
    assert inside / len(answers) > 0.95


def test_default_rates_and_lengths(items):
    chains = _chains(items, OfflineTeacherConfig(seed=3), k=2)
    assert len(chains) == 600
    parts = [(record, *_split(chain)) for record, chain in chains]
    wrong = sum(answer != record.answer for record, _, answer in parts) / len(parts)
    reflective = sum(_reflects(think) for _, think, _ in parts) / len(parts)
    words = [len(think.split()) for _, think, _ in parts]
    assert 0.1 <= wrong <= 0.3
    assert 0.2 <= reflective <= 0.5
    assert max(words) > 3 * min(words)
    assert sum(w > 300 for w in words) >= 20
    # Marker kinds all occur, mid-chain and after a first answer.
    thinks = "\n".join(think for _, think, _ in parts)
    for marker in REFLECTION_MARKERS:
        assert marker in thinks
    assert "So the answer should be" in thinks and "Wait, that's not right." in thinks


def test_long_prob_zero_keeps_chains_short(items):
    chains = _chains(items[:120], OfflineTeacherConfig(long_prob=0, seed=4), k=2)
    assert max(len(_split(chain)[0].split()) for _, chain in chains) <= 300


def test_verbosity_lengthens_chains(items):
    def median_words(config: OfflineTeacherConfig) -> float:
        return statistics.median(len(_split(c)[0].split()) for _, c in _chains(items[:120], config))

    quiet = OfflineTeacherConfig(verbosity_min=0, verbosity_max=0, long_prob=0, reflection_prob=0)
    chatty = OfflineTeacherConfig(verbosity_min=6, verbosity_max=8, long_prob=0, reflection_prob=0)
    assert median_words(chatty) > median_words(quiet) + 30


def test_deterministic_and_seeded(items):
    sample = items[:60]
    a = _chains(sample, OfflineTeacherConfig(seed=5), k=4)
    b = _chains(sample, OfflineTeacherConfig(seed=5), k=4)
    c = _chains(sample, OfflineTeacherConfig(seed=6), k=4)
    assert a == b
    assert [chain for _, chain in a] != [chain for _, chain in c]
    per_item = [[chain for _, chain in a[4 * i : 4 * i + 4]] for i in range(len(sample))]
    assert sum(len(set(chains)) > 1 for chains in per_item) >= 0.9 * len(sample)


def test_never_reads_the_ground_truth():
    params = inspect.signature(OfflineTeacher.sample).parameters
    assert "answer" not in params and "record" not in params
    assert OfflineTeacher.name == OFFLINE_TEACHER_NAME == "offline-scripted-teacher"


def test_parse_scene_for_every_grammar():
    grid = parse_scene(
        "count", "A 4 by 4 grid holds 2 shapes: red circle at row 1 column 2; blue square at row 3 column 4."
    )
    assert grid == {
        "objects": [
            {"color": "red", "shape": "circle", "row": 1, "col": 2},
            {"color": "blue", "shape": "square", "row": 3, "col": 4},
        ]
    }
    bars = parse_scene(
        "bar_chart", "A bar chart with 4 bars from left to right: red 3, blue 5, green 2, yellow 7."
    )
    assert [b["value"] for b in bars["bars"]] == [3, 5, 2, 7]
    rects = parse_scene(
        "grid_geometry",
        "An 8 by 8 unit grid shows 1 rectangle: purple rectangle 4 wide and 3 tall with top left cell at row 2 column 5.",
    )
    assert rects["rects"] == [{"color": "purple", "width": 4, "height": 3, "row": 2, "col": 5}]
    table = parse_scene(
        "table", "A table with 2 rows and 2 columns: row 1 holds 3 and 5; row 2 holds 7 and 2."
    )
    assert table == {"cells": [[3, 5], [7, 2]]}
    assert parse_scene("clock", "An analog clock whose hour hand points at 9 and minute hand at 12.") == {
        "hour": 9
    }


def test_parse_question():
    assert parse_question("count_color_shape", "How many red circles are there?") == {
        "color": "red",
        "shape": "circle",
    }
    assert parse_question(
        "spatial_neighbor_color", "What colour is the shape directly to the left of the blue square?"
    ) == {
        "direction": "left",
        "color": "blue",
        "shape": "square",
    }
    assert parse_question("table_line_sum", "What is the sum of the numbers in column 2?") == {
        "line": "column",
        "index": 2,
    }
    assert parse_question("clock_sub", "What hour was it 1 hour ago?") == {"hours": 1}


def test_solve_step_by_step():
    scene = {"hour": 9}
    steps, answer = solve("clock", "clock_add", scene, {"hours": 5})
    assert answer == "2" and steps[0].startswith("Okay, so the question asks")
    assert any("9 + 5 = 14" in s and "14 - 12 = 2" in s for s in steps)
    assert solve("clock", "clock_sub", {"hour": 3}, {"hours": 5})[1] == "10"
    assert solve("clock", "clock_sub", {"hour": 5}, {"hours": 5})[1] == "12"
    bars = parse_scene(
        "bar_chart", "A bar chart with 4 bars from left to right: red 3, blue 5, green 2, yellow 7."
    )
    steps, answer = solve("bar_chart", "bar_diff", bars, {"color": "red", "color2": "yellow"})
    assert answer == "4" and any("7 - 3 = 4" in s for s in steps)
    assert solve("bar_chart", "bar_max_color", bars, {})[1] == "yellow"
    rect = {"rects": [{"color": "red", "width": 4, "height": 3, "row": 1, "col": 1}]}
    assert solve("grid_geometry", "rect_perimeter", rect, {})[1] == "14"
    assert solve("grid_geometry", "rect_area", rect, {}, slip=1)[1] == "13"
    table = {"cells": [[3, 5], [7, 2]]}
    assert solve("table", "table_range", table, {})[1] == "5"
    assert solve("table", "table_line_sum", table, {"line": "column", "index": 1})[1] == "10"
    grid = parse_scene(
        "spatial",
        "A 4 by 4 grid holds 2 shapes: red circle at row 1 column 2; blue square at row 3 column 4.",
    )
    relation = {"color": "red", "shape": "circle", "direction": "above", "color2": "blue", "shape2": "square"}
    assert solve("spatial", "spatial_relation", grid, relation)[1] == "yes"
    assert solve("spatial", "spatial_relation", grid, relation, slip=1)[1] == "no"  # numbering flipped


def test_bad_captions_and_questions_are_named():
    with pytest.raises(ValueError, match=r"'count' caption.*'A picture of a cat\.'"):
        parse_scene("count", "A picture of a cat.")
    with pytest.raises(ValueError, match=r"'bar_chart' caption"):
        parse_scene("bar_chart", "An analog clock whose hour hand points at 9 and minute hand at 12.")
    with pytest.raises(ValueError, match=r"says 3 shapes but lists 1"):
        parse_scene("spatial", "A 4 by 4 grid holds 3 shapes: red circle at row 1 column 2.")
    with pytest.raises(ValueError, match=r"'clock' caption"):
        parse_scene("clock", "An analog clock whose hour hand points at 13 and minute hand at 12.")
    with pytest.raises(ValueError, match=r"cannot parse the 'bar_value' question"):
        parse_question("bar_value", "How many shapes are there?")
    with pytest.raises(ValueError, match=r"unknown question type 'nope'"):
        parse_question("nope", "Why?")


def test_unknown_tasks_need_a_real_teacher():
    teacher = OfflineTeacher()
    with pytest.raises(ValueError, match=r"only knows the synthetic task families.*'openai' or 'vllm'"):
        teacher.sample("m-1", "A plot of y = x^2.", "What is f(2)?", "mathvista", "free_form", 2)
    with pytest.raises(ValueError, match=r"question type 'clock_add' is not one of task 'table'"):
        teacher.sample("t-1", "A table ...", "What hour?", "table", "clock_add", 1)
    with pytest.raises(ValueError, match=r"k must be >= 1"):
        clock = "An analog clock whose hour hand points at 9 and minute hand at 12."
        teacher.sample("c-1", clock, "What hour does the clock show?", "clock", "clock_hour", 0)


def test_config_is_strict():
    with pytest.raises(ValidationError):
        OfflineTeacherConfig(error_prob=1.5)
    with pytest.raises(ValidationError, match="verbosity_min"):
        OfflineTeacherConfig(verbosity_min=5, verbosity_max=2)
    with pytest.raises(ValidationError):
        OfflineTeacherConfig(temperature=0.7)


def test_focused_style_leaves_out_the_scene_overview_and_reaches_the_same_answers(items):
    clean = {"error_prob": 0, "reflection_prob": 0, "verbosity_max": 0, "long_prob": 0, "seed": 3}
    full = {r.id: chain for r, chain in _chains(items, OfflineTeacherConfig(**clean, style="full"))}
    focused = _chains(items, OfflineTeacherConfig(**clean, style="focused"))
    shorter = set()
    for record, chain in focused:
        think, answer = _split(chain)
        full_think, full_answer = _split(full[record.id])
        assert answer == full_answer == record.answer.strip(), (record.id, chain)
        qtype = record.question_type  # type: ignore[attr-defined]
        if qtype in ("bar_value", "bar_sum", "bar_diff", "table_cell", "table_line_sum", "count_all"):
            assert len(think) < len(full_think), chain
            assert "from left to right" not in think and "let me read the table" not in think.lower()
            shorter.add(qtype)
        if qtype in ("bar_max_value", "table_total", "spatial_relation", "clock_add"):
            assert think == full_think, "the overview is the reasoning there: kept"
    assert shorter == {"bar_value", "bar_sum", "bar_diff", "table_cell", "table_line_sum", "count_all"}
    # slips and reflections work in the focused style too
    noisy = _chains(items, OfflineTeacherConfig(error_prob=0.5, reflection_prob=0.5, seed=3, style="focused"))
    wrong = [r for r, chain in noisy if _split(chain)[1] != r.answer.strip()]
    assert 0.2 < len(wrong) / len(noisy) < 0.7
    with pytest.raises(ValidationError):
        OfflineTeacherConfig(style="terse")  # type: ignore[arg-type]
