"""Public-dataset adapters: tiny fixtures in each dataset's real column layout, written at test time.

Layouts follow the dataset cards (features in the card YAML): AI4Math/MathVista, AI4Math/MathVerse
(config testmini), MathLLMs/MathVision, hiyouga/geometry3k, and the MathV360K subsets of
lmms-lab/LLaVA-OneVision-Data (FigureQA, TabMWP, CLEVR-Math). Everything runs offline.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import datasets
import pytest
from datasets import Features, Image, List, Value
from PIL import Image as PILImage

from vlthinker.errors import ConfigError, DatasetError, SourceUnavailableError
from vlthinker.records import read_records, sha256_bytes
from vlthinker.sources import adapters
from vlthinker.sources.adapters import (
    ADAPTERS,
    VISION_ONLY_QUESTION,
    answer_letter,
    encode_png,
    get_adapter,
    import_dataset,
    load_rows,
    parse_mathv360k_prompt,
    split_choices,
)

datasets.disable_progress_bars()


def picture(seed: int, mode: str = "RGB") -> PILImage.Image:
    colour = ((37 * seed) % 256, (91 * seed) % 256, (53 * seed + 100) % 256)
    image = PILImage.new("RGB", (12, 10), colour)
    image.putpixel((seed % 12, seed % 10), (0, 0, 0))
    return image.convert(mode) if mode != "RGB" else image


# ---- real layouts --------------------------------------------------------------------------------

MATHVISTA_FEATURES = Features(
    {
        "pid": Value("string"),
        "question": Value("string"),
        "image": Value("string"),
        "decoded_image": Image(),
        "choices": List(Value("string")),
        "unit": Value("string"),
        "precision": Value("float64"),
        "answer": Value("string"),
        "question_type": Value("string"),
        "answer_type": Value("string"),
        "metadata": {
            "category": Value("string"),
            "context": Value("string"),
            "grade": Value("string"),
            "img_height": Value("int64"),
            "img_width": Value("int64"),
            "language": Value("string"),
            "skills": List(Value("string")),
            "source": Value("string"),
            "split": Value("string"),
            "task": Value("string"),
        },
        "query": Value("string"),
    }
)


def mathvista_row(pid: str, question: str, answer: str, *, choices=None, unit=None, precision=None, seed=1):
    multi = choices is not None
    return {
        "pid": pid,
        "question": question,
        "image": f"images/{pid}.jpg",
        "decoded_image": picture(seed),
        "choices": choices,
        "unit": unit,
        "precision": precision,
        "answer": answer,
        "question_type": "multi_choice" if multi else "free_form",
        "answer_type": "text" if multi else ("float" if precision else "integer"),
        "metadata": {
            "category": "math-targeted-vqa",
            "context": "function plot",
            "grade": "college",
            "img_height": 10,
            "img_width": 12,
            "language": "english",
            "skills": ["algebraic reasoning"],
            "source": "FunctionQA",
            "split": "testmini",
            "task": "textbook question answering" if multi else "figure question answering",
        },
        "query": f"Hint: Please answer the question.\nQuestion: {question}",
    }


MATHVISTA_ROWS = [
    mathvista_row(
        "1",
        "The derivative of f(x) at x=2 is ____ that at x=5",
        "equal to",
        choices=["larger than", "equal to", "smaller than"],
        seed=1,
    ),
    mathvista_row("2", "What is the length of the segment?", "4.5", unit="cm", precision=1.0, seed=2),
    mathvista_row("3", "How many bars are there?", "7", seed=3),
]

MATHVERSE_FEATURES = Features(
    {
        "sample_index": Value("string"),
        "problem_index": Value("string"),
        "problem_version": Value("string"),
        "question": Value("string"),
        "image": Image(),
        "answer": Value("string"),
        "question_type": Value("string"),
        "metadata": {
            "split": Value("string"),
            "source": Value("string"),
            "subject": Value("string"),
            "subfield": Value("string"),
        },
        "query_wo": Value("string"),
        "query_cot": Value("string"),
        "question_for_eval": Value("string"),
    }
)


def mathverse_row(index: str, version: str, question: str, answer: str, qtype: str, seed: int):
    return {
        "sample_index": index,
        "problem_index": "1",
        "problem_version": version,
        "question": question,
        "image": picture(seed),
        "answer": answer,
        "question_type": qtype,
        "metadata": {
            "split": "testmini",
            "source": "GeoQA",
            "subject": "Plane Geometry",
            "subfield": "Angle",
        },
        "query_wo": "Please directly answer the question.\nQuestion: " + question,
        "query_cot": "Before answering the question, please first conduct reasoning.\nQuestion: " + question,
        "question_for_eval": question or "In triangle ABC, find angle BOC.",
    }


MC_QUESTION = (
    "As shown in the figure, in triangle ABC, angle A = 110°, then angle BOC = ()\n"
    "Choices:\nA:110°\nB:35°\nC:140°\nD:55°"
)
MATHVERSE_ROWS = [
    mathverse_row("1", "Text Dominant", MC_QUESTION, "C", "multi-choice", 4),
    mathverse_row("2", "Text Lite", "Find the distance between the two endpoints.", "8.246", "free-form", 5),
    mathverse_row("3", "Vision Only", "", "C", "multi-choice", 6),
]

MATHVISION_FEATURES = Features(
    {
        "id": Value("string"),
        "question": Value("string"),
        "options": List(Value("string")),
        "image": Value("string"),
        "decoded_image": Image(),
        "answer": Value("string"),
        "solution": Value("string"),
        "level": Value("int64"),
        "subject": Value("string"),
    }
)


def mathvision_rows(split: str) -> list[dict]:
    offset = 0 if split == "test" else 100
    return [
        {
            "id": str(offset + 1),
            "question": "Which number is hidden behind the square?",
            "options": ["2", "3", "4", "5", "6"],
            "image": f"images/{offset + 1}.jpg",
            "decoded_image": picture(7 + offset),
            "answer": "C",
            "solution": None,
            "level": 2,
            "subject": "arithmetic",
        },
        {
            "id": str(offset + 2),
            "question": "<image1>How many triangles are there?",
            "options": [],
            "image": f"images/{offset + 2}.jpg",
            "decoded_image": picture(8 + offset),
            "answer": "12",
            "solution": "Count them.",
            "level": 5,
            "subject": "metric geometry - angle",
        },
    ]


GEOMETRY3K_FEATURES = Features(
    {
        "images": List(Image()),
        "problem": Value("string"),
        "answer": Value("string"),
        "id": Value("int64"),
        "choices": List(Value("string")),
        "ground_truth": Value("string"),
    }
)
GEOMETRY3K_ROWS = [
    {
        "images": [picture(9)],
        "problem": "<image>Find x.",
        "answer": "2\\sqrt{221}",
        "id": 2,
        "choices": ["2\\sqrt{221}", "3", "4", "5"],
        "ground_truth": "A",
    },
    {
        "images": [picture(10)],
        "problem": "<image>Find the area of the figure. Round to the nearest tenth.",
        "answer": "72.0",
        "id": 5,
        "choices": ["36.0", "72.0", "144.0", "288.0"],
        "ground_truth": "B",
    },
]

MATHV360K_FEATURES = Features(
    {
        "id": Value("string"),
        "image": Image(),
        "conversations": List({"from": Value("string"), "value": Value("string")}),
        "data_source": Value("string"),
    }
)
HINT_MC = (
    "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
)
HINT_INT = (
    "Hint: Please answer the question requiring an integer answer and provide the final value, "
    "e.g., 1, 2, 3, at the end."
)
HINT_FREE = "Hint: Please answer the question and provide the final answer at the end."


def mathv360k_row(rid: str, prompt: str, reply: str, source: str, seed: int) -> dict:
    return {
        "id": rid,
        "image": picture(seed),
        "conversations": [{"from": "human", "value": "<image>\n" + prompt}, {"from": "gpt", "value": reply}],
        "data_source": source,
    }


FIGUREQA_ROWS = [
    mathv360k_row(
        "identity_50001",
        f"{HINT_MC}\nQuestion: Is Medium Purple the minimum?\nChoices:\n(A) no\n(B) yes",
        "The answer is B",
        "FigureQA(MathV360K)",
        11,
    ),
    mathv360k_row(
        "identity_50545",
        f"{HINT_FREE}\nQuestion: What is the approximate ratio of Cyan to Firebrick in the pie chart?",
        "The answer is Cyan is slightly more than 1:1 to Firebrick",
        "FigureQA(MathV360K)",
        12,
    ),
]
TABMWP_ROWS = [
    mathv360k_row(
        "identity_168434",
        f"{HINT_FREE}\nQuestion: If Myra wants to buy one of each item on the list, how much will it cost?",
        "The answer is $38.51",
        "TabMWP(MathV360K)",
        13,
    ),
    mathv360k_row(
        "identity_168500",
        f"{HINT_MC}\nQuestion: Which is heavier?\nChoices:\n(A) the dog\n(B) the cat",
        "The answer is the cat",
        "TabMWP(MathV360K)",
        14,
    ),
]
CLEVR_QUESTION = "Subtract all red things. Subtract all tiny matte balls. How many objects are left?"
CLEVR_ROWS = [
    mathv360k_row(
        "identity_7001",
        f"{HINT_INT}\nQuestion: {CLEVR_QUESTION}",
        "The answer is 5",
        "CLEVR-Math(MathV360K)",
        15,
    ),
    mathv360k_row(
        "identity_7002",
        f"{HINT_INT}\nQuestion: Add 2 big cubes. How many cubes exist?",
        "The answer is 3",
        "CLEVR-Math(MathV360K)",
        16,
    ),
]


def to_dataset(rows: list[dict], features: Features) -> datasets.Dataset:
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)


def write_parquet(rows: list[dict], features: Features, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    to_dataset(rows, features).to_parquet(str(path))
    return path


# ---- fixtures: each saved the way a local copy of that dataset usually looks ---------------------


@pytest.fixture
def mathvista_dir(tmp_path: Path) -> Path:
    """Like a clone of AI4Math/MathVista: data/testmini-*.parquet and data/test-*.parquet."""
    root = tmp_path / "MathVista"
    write_parquet(
        MATHVISTA_ROWS, MATHVISTA_FEATURES, root / "data" / "testmini-00000-of-00001-725687bf.parquet"
    )
    other = [mathvista_row("1001", "A test-split question?", "9", seed=20)]
    write_parquet(other, MATHVISTA_FEATURES, root / "data" / "test-00000-of-00001-6a611c71.parquet")
    (root / "annot_testmini.json").write_text("{}")  # not a data file; must be ignored
    return root


@pytest.fixture
def mathverse_dir(tmp_path: Path) -> Path:
    """Like a clone of AI4Math/MathVerse: testmini.parquet beside testmini_text_only.parquet."""
    root = tmp_path / "MathVerse"
    write_parquet(MATHVERSE_ROWS, MATHVERSE_FEATURES, root / "testmini.parquet")
    write_parquet(MATHVERSE_ROWS[:1], MATHVERSE_FEATURES, root / "testmini_text_only.parquet")
    return root


@pytest.fixture
def mathvision_dir(tmp_path: Path) -> Path:
    """A DatasetDict saved with save_to_disk, splits test and testmini."""
    root = tmp_path / "MathVision"
    datasets.DatasetDict(
        {split: to_dataset(mathvision_rows(split), MATHVISION_FEATURES) for split in ("test", "testmini")}
    ).save_to_disk(str(root))
    return root


@pytest.fixture
def geometry3k_file(tmp_path: Path) -> Path:
    return write_parquet(GEOMETRY3K_ROWS, GEOMETRY3K_FEATURES, tmp_path / "geo3k" / "train.parquet")


@pytest.fixture
def figureqa_dir(tmp_path: Path) -> Path:
    """A single Dataset saved with save_to_disk."""
    root = tmp_path / "figureqa"
    to_dataset(FIGUREQA_ROWS, MATHV360K_FEATURES).save_to_disk(str(root))
    return root


@pytest.fixture
def onevision_dir(tmp_path: Path) -> Path:
    """Like a clone of lmms-lab/LLaVA-OneVision-Data: one sub-directory per config."""
    root = tmp_path / "LLaVA-OneVision-Data"
    write_parquet(
        TABMWP_ROWS, MATHV360K_FEATURES, root / "TabMWP(MathV360K)" / "train-00000-of-00001.parquet"
    )
    write_parquet(
        FIGUREQA_ROWS, MATHV360K_FEATURES, root / "FigureQA(MathV360K)" / "train-00000-of-00001.parquet"
    )
    return root


@pytest.fixture
def clevr_jsonl(tmp_path: Path) -> Path:
    """A jsonl export whose image column holds paths relative to the file."""
    root = tmp_path / "clevr"
    (root / "images").mkdir(parents=True)
    lines = []
    for row in CLEVR_ROWS:
        name = f"images/{row['id']}.png"
        row["image"].save(root / name)
        lines.append(json.dumps({**row, "image": name}))
    path = root / "clevr_math.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def by_id(records) -> dict:
    return {r.id: r for r in records}


# ---- registry ------------------------------------------------------------------------------------


def test_registry_names_roles_and_hub_ids():
    for name in ("geometry3k", "figureqa", "tabmwp", "clevr"):
        assert ADAPTERS[name].role == "train"
    for name in ("mathvista", "mathverse", "mathvision"):
        assert ADAPTERS[name].role == "eval"
    assert (ADAPTERS["mathvista"].hub_id, ADAPTERS["mathvista"].split) == ("AI4Math/MathVista", "testmini")
    assert (ADAPTERS["mathverse"].config, ADAPTERS["mathverse"].split) == ("testmini", "testmini")
    assert (ADAPTERS["mathvision"].hub_id, ADAPTERS["mathvision"].split) == ("MathLLMs/MathVision", "test")
    assert ADAPTERS["geometry3k"].hub_id == "hiyouga/geometry3k"
    assert ADAPTERS["figureqa"].config == "FigureQA(MathV360K)"
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name and adapter.columns and adapter.card.startswith("https://")


def test_unknown_adapter_lists_known_ones(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        import_dataset("mathvistaa", tmp_path / "out")
    message = str(info.value)
    assert "'mathvistaa'" in message
    assert all(name in message for name in ("mathvista", "mathverse", "mathvision", "geometry3k"))


# ---- round trips ---------------------------------------------------------------------------------


def check_images(out: Path, records) -> None:
    for record in records:
        data = (out / record.image).read_bytes()
        assert record.image == f"images/{record.id}.png"
        assert sha256_bytes(data) == record.image_sha256
        assert PILImage.open(io.BytesIO(data)).format == "PNG"
        assert record.caption is None and record.caption_exact is False


def test_mathvista_round_trip_picks_the_split_and_maps_choices_to_letters(tmp_path, mathvista_dir):
    out = import_dataset("mathvista", tmp_path / "out", path=mathvista_dir)
    records = by_id(read_records(out))
    assert sorted(records) == ["mathvista-1", "mathvista-2", "mathvista-3"]  # not the test-split row
    check_images(out, records.values())

    mc = records["mathvista-1"]
    assert mc.answer == "B" and mc.answer_text == "equal to"
    assert mc.choices == ["larger than", "equal to", "smaller than"]
    assert mc.question == (
        "The derivative of f(x) at x=2 is ____ that at x=5\n"
        "Choices:\n(A) larger than\n(B) equal to\n(C) smaller than"
    )
    assert mc.task == "textbook_question_answering" and mc.split == "testmini" and mc.source == "mathvista"
    assert mc.question_type == "multi_choice" and mc.query.startswith("Hint:")
    assert mc.skills == ["algebraic reasoning"] and mc.source_dataset == "FunctionQA"

    free = records["mathvista-2"]
    assert free.choices is None and free.answer == "4.5"
    assert free.question == "What is the length of the segment? (Unit: cm)"
    assert free.unit == "cm" and free.precision == 1.0 and free.answer_type == "float"
    assert "precision" not in records["mathvista-3"].model_dump()  # null precision is dropped

    stats = json.loads((out / "stats.json").read_text())
    assert stats["hub_id"] == "AI4Math/MathVista" and stats["split"] == "testmini"
    assert (stats["rows_read"], stats["records"], stats["skipped"]) == (3, 3, 0)
    assert stats["multiple_choice"] == 1 and stats["origin"] == "local"
    assert stats["tasks"] == {"figure_question_answering": 2, "textbook_question_answering": 1}


def test_mathvista_other_split_from_the_same_clone(tmp_path, mathvista_dir):
    out = import_dataset("mathvista", tmp_path / "out", path=mathvista_dir, split="test")
    assert [r.id for r in read_records(out)] == ["mathvista-1001"]
    assert read_records(out)[0].split == "test"


def test_mathverse_round_trip(tmp_path, mathverse_dir):
    out = import_dataset("mathverse", tmp_path / "out", path=mathverse_dir)
    records = by_id(read_records(out))
    assert sorted(records) == ["mathverse-1", "mathverse-2", "mathverse-3"]  # not testmini_text_only
    check_images(out, records.values())

    mc = records["mathverse-1"]
    assert mc.question == MC_QUESTION  # options stay inline, as the benchmark shows them
    assert mc.choices == ["110°", "35°", "140°", "55°"]
    assert mc.answer == "C" and mc.answer_text == "140°"
    assert mc.task == "plane_geometry" and mc.problem_version == "Text Dominant"
    assert mc.query.startswith("Before answering")

    free = records["mathverse-2"]
    assert free.choices is None and free.answer == "8.246" and free.question_type == "free-form"

    vision_only = records["mathverse-3"]
    assert vision_only.question == VISION_ONLY_QUESTION and vision_only.question_in_image is True
    assert vision_only.answer == "C" and vision_only.choices is None


def test_mathvision_round_trip_from_save_to_disk(tmp_path, mathvision_dir):
    out = import_dataset("mathvision", tmp_path / "out", path=mathvision_dir)
    records = by_id(read_records(out))
    assert sorted(records) == ["mathvision-1", "mathvision-2"]
    check_images(out, records.values())

    mc = records["mathvision-1"]
    assert mc.choices == ["2", "3", "4", "5", "6"] and mc.answer == "C" and mc.answer_text == "4"
    assert mc.question.endswith("Choices:\n(A) 2\n(B) 3\n(C) 4\n(D) 5\n(E) 6")
    assert mc.difficulty == 2 and mc.level == 2 and mc.task == "arithmetic" and mc.split == "test"

    free = records["mathvision-2"]
    assert free.choices is None and free.answer == "12" and free.difficulty == 5
    assert free.task == "metric_geometry_angle" and free.question_type == "free_form"

    testmini = read_records(
        import_dataset("mathvision", tmp_path / "mini", path=mathvision_dir, split="testmini")
    )
    assert [r.id for r in testmini] == ["mathvision-101", "mathvision-102"]


def test_geometry3k_round_trip_from_a_parquet_file(tmp_path, geometry3k_file):
    out = import_dataset("geometry3k", tmp_path / "out", path=geometry3k_file)
    records = by_id(read_records(out))
    assert sorted(records) == ["geometry3k-2", "geometry3k-5"]
    check_images(out, records.values())
    first = records["geometry3k-2"]
    assert first.question == "Find x." and first.answer == "2\\sqrt{221}"
    assert first.choices is None and first.task == "geometry" and first.split == "train"
    assert first.source_choices == ["2\\sqrt{221}", "3", "4", "5"] and first.source_ground_truth == "A"


def test_figureqa_round_trip_from_save_to_disk(tmp_path, figureqa_dir):
    out = import_dataset("figureqa", tmp_path / "out", path=figureqa_dir)
    records = by_id(read_records(out))
    assert sorted(records) == ["figureqa-identity_50001", "figureqa-identity_50545"]
    check_images(out, records.values())
    mc = records["figureqa-identity_50001"]
    assert mc.question == "Is Medium Purple the minimum?\nChoices:\n(A) no\n(B) yes"
    assert mc.choices == ["no", "yes"] and mc.answer == "B" and mc.answer_text == "yes"
    assert mc.hint.startswith("Please answer the question and provide the correct option letter")
    assert mc.task == "figure_qa" and mc.data_source == "FigureQA(MathV360K)"
    free = records["figureqa-identity_50545"]
    assert free.answer == "Cyan is slightly more than 1:1 to Firebrick" and free.choices is None


def test_tabmwp_enters_the_config_directory_of_a_onevision_clone(tmp_path, onevision_dir):
    out = import_dataset("tabmwp", tmp_path / "out", path=onevision_dir)
    records = by_id(read_records(out))
    assert sorted(records) == ["tabmwp-identity_168434", "tabmwp-identity_168500"]  # no FigureQA rows
    assert records["tabmwp-identity_168434"].answer == "$38.51"
    mc = records["tabmwp-identity_168500"]  # the reply gives the option text: it becomes the letter
    assert mc.answer == "B" and mc.answer_text == "the cat" and mc.choices == ["the dog", "the cat"]
    assert mc.task == "table_mwp"


def test_clevr_round_trip_from_jsonl_with_relative_image_paths(tmp_path, clevr_jsonl):
    out = import_dataset("clevr", tmp_path / "out", path=clevr_jsonl, cache_dir=tmp_path / "hf-cache")
    records = by_id(read_records(out))
    assert sorted(records) == ["clevr-identity_7001", "clevr-identity_7002"]
    check_images(out, records.values())
    first = records["clevr-identity_7001"]
    assert first.answer == "5" and first.task == "clevr_math"
    assert first.question == CLEVR_QUESTION
    assert first.hint.startswith("Please answer the question requiring an integer answer")
    # the PNG holds the same pixels as the source image
    decoded = PILImage.open(out / first.image).convert("RGB")
    assert list(decoded.getdata()) == list(picture(15).getdata())


def test_import_is_deterministic(tmp_path, mathvista_dir):
    one = import_dataset("mathvista", tmp_path / "one", path=mathvista_dir)
    two = import_dataset("mathvista", tmp_path / "two", path=mathvista_dir)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for name in files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_limit_and_progress(tmp_path, mathvista_dir):
    calls = []
    out = import_dataset(
        "mathvista", tmp_path / "out", path=mathvista_dir, limit=2, progress=lambda d, t: calls.append((d, t))
    )
    assert [r.id for r in read_records(out)] == ["mathvista-1", "mathvista-2"]
    assert calls == [(1, 2), (2, 2)]
    assert len(load_rows("mathvista", path=mathvista_dir, limit=10)) == 3


# ---- rows that cannot be mapped ------------------------------------------------------------------


def test_row_without_image_names_adapter_row_and_id():
    row = dict(MATHVISTA_ROWS[2], decoded_image=None)
    with pytest.raises(DatasetError) as info:
        get_adapter("mathvista").map_row(row, index=7)
    message = str(info.value)
    assert message.startswith("mathvista: row 7 (id '3'):")
    assert "images/3.jpg" in message and "not found" in message


def test_empty_question_and_bad_choice_are_named_errors():
    with pytest.raises(DatasetError, match=r"geometry3k: row 0 \(id 2\): empty question"):
        get_adapter("geometry3k").map_row(dict(GEOMETRY3K_ROWS[0], problem="<image>  "))
    with pytest.raises(DatasetError, match=r"mathvista: row 1 \(id '1'\): multiple-choice answer 'maybe'"):
        get_adapter("mathvista").map_row(dict(MATHVISTA_ROWS[0], answer="maybe"), index=1)
    with pytest.raises(DatasetError, match=r"figureqa: row 0 \(id 'identity_50001'\): empty answer"):
        row = dict(
            FIGUREQA_ROWS[0], conversations=[{"from": "human", "value": "Q?"}, {"from": "gpt", "value": ""}]
        )
        get_adapter("figureqa").map_row(row)
    with pytest.raises(DatasetError, match="image cannot be decoded"):
        get_adapter("mathverse").map_row(
            dict(MATHVERSE_ROWS[1], image={"bytes": b"not an image", "path": None})
        )


def test_invalid_rows_stop_the_import_unless_skipped(tmp_path):
    rows = [
        MATHVISTA_ROWS[0],
        dict(MATHVISTA_ROWS[1], question="   "),
        dict(MATHVISTA_ROWS[2], decoded_image=None),
    ]
    source = write_parquet(rows, MATHVISTA_FEATURES, tmp_path / "bad" / "rows.parquet")

    with pytest.raises(DatasetError, match=r"mathvista: row 1 \(id '2'\): empty question"):
        import_dataset("mathvista", tmp_path / "out", path=source)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # temp dir cleaned

    out = import_dataset("mathvista", tmp_path / "out", path=source, skip_invalid=True)
    assert [r.id for r in read_records(out)] == ["mathvista-1"]
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["rows_read"], stats["records"], stats["skipped"]) == (3, 1, 2)
    assert [s["index"] for s in stats["skipped_rows"]] == [1, 2]
    assert "empty question" in stats["skipped_rows"][0]["reason"]
    assert "image file 'images/3.jpg' not found" in stats["skipped_rows"][1]["reason"]


def test_all_rows_invalid_is_an_error_even_when_skipping(tmp_path):
    source = write_parquet(
        [dict(MATHVISTA_ROWS[0], question="")], MATHVISTA_FEATURES, tmp_path / "bad" / "rows.parquet"
    )
    with pytest.raises(DatasetError, match="no records from 1 rows"):
        import_dataset("mathvista", tmp_path / "out", path=source, skip_invalid=True)
    assert not (tmp_path / "out").exists()


def test_duplicate_ids_are_invalid_rows(tmp_path):
    source = write_parquet(
        GEOMETRY3K_ROWS + GEOMETRY3K_ROWS[:1], GEOMETRY3K_FEATURES, tmp_path / "g" / "x.parquet"
    )
    with pytest.raises(DatasetError, match="duplicate record id 'geometry3k-2'"):
        import_dataset("geometry3k", tmp_path / "out", path=source)
    out = import_dataset("geometry3k", tmp_path / "out", path=source, skip_invalid=True)
    assert json.loads((out / "stats.json").read_text())["skipped"] == 1


# ---- loading: local copies and the hub -----------------------------------------------------------


def test_missing_split_and_missing_path_are_clear(tmp_path, mathvista_dir, mathvision_dir):
    with pytest.raises(DatasetError, match=r"no \.parquet files for split 'validation'"):
        load_rows("mathvista", path=mathvista_dir, split="validation")
    with pytest.raises(DatasetError, match=r"has no split 'dev' \(it has: test, testmini\)"):
        load_rows("mathvision", path=mathvision_dir, split="dev")
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        load_rows("mathvista", path=tmp_path / "nowhere")


def test_offline_hub_fails_fast_naming_the_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(SourceUnavailableError) as info:
        import_dataset("mathverse", tmp_path / "out", cache_dir=tmp_path / "hf-cache")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "AI4Math/MathVerse" in message and "'testmini'" in message and "--path" in message
    assert not (tmp_path / "out").exists()


def test_unresolvable_hub_falls_back_to_the_cache_and_fails_fast(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(adapters, "_hub_reachable", lambda timeout=3.0: False)
    before = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    start = time.monotonic()
    with pytest.raises(SourceUnavailableError, match=r"MathLLMs/MathVision.*does not resolve.*--path"):
        load_rows("mathvision", cache_dir=tmp_path / "hf-cache")
    assert time.monotonic() - start < 10
    assert before == (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)


# ---- helpers -------------------------------------------------------------------------------------


def test_encode_png_is_deterministic_and_lossless():
    image = picture(3)
    assert encode_png(image) == encode_png(image.copy())
    image.info["dpi"] = (300, 300)
    image.info["icc_profile"] = b"junk"
    assert encode_png(image) == encode_png(picture(3))  # metadata does not reach the bytes
    palette = picture(4).convert("P")
    palette.info["transparency"] = 0
    assert PILImage.open(io.BytesIO(encode_png(palette))).mode == "RGBA"
    assert PILImage.open(io.BytesIO(encode_png(picture(5, "CMYK")))).mode == "RGB"
    grey = PILImage.open(io.BytesIO(encode_png(picture(6, "L"))))
    assert grey.mode == "L" and list(grey.getdata()) == list(picture(6, "L").getdata())


def test_split_choices_and_answer_letters():
    assert split_choices("Q?\nChoices:\n(A) no\n(B) yes") == ("Q?", ["no", "yes"])
    assert split_choices("Q?\nChoices:\nA:1\nB:2\nC:3") == ("Q?", ["1", "2", "3"])
    assert split_choices("Q?\nChoices:\n(A) x\n(C) y") == ("Q?\nChoices:\n(A) x\n(C) y", None)
    assert split_choices("How many Choices: are there?") == ("How many Choices: are there?", None)
    assert answer_letter("b", ["x", "y"]) == "B"
    assert answer_letter("(A)", ["x", "y"]) == "A"
    assert answer_letter("y", ["x", "y"]) == "B"
    assert answer_letter("C", ["x", "y"]) is None
    hint, question, choices = parse_mathv360k_prompt(
        f"<image>\n{HINT_MC}\nQuestion: Is it?\nChoices:\n(A) no\n(B) yes"
    )
    assert question == "Is it?" and choices == ["no", "yes"] and hint.startswith("Please answer")
    assert parse_mathv360k_prompt("<image>\nWhat is shown?") == (None, "What is shown?", None)
